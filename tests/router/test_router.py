"""The semantic router on real libraries with the real MiniLM embedder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from fieldkit.cli import main
from fieldkit.home import Home
from fieldkit.router.everyday import EVERYDAY_LEAD, everyday_questions
from fieldkit.router.grid import ExemplarGrid
from fieldkit.router.router import Router
from fieldkit.store.identity import Identity
from fieldkit.store.library import Library
from tests.fixtures.embedder import CountingEmbedder
from tests.fixtures.packets import TEST_BASE_FINGERPRINT, MakePacket

PUMPS = [
    "How do I reprime a hand pump that lost suction?",
    "The borehole pump runs but no water comes out.",
    "Which seal should I replace when the pump leaks?",
    "How often should the pump's foot valve be cleaned?",
    "The motor hums but the impeller does not turn.",
    "What causes air bubbles in the pump's delivery pipe?",
    "How deep can a surface pump lift water?",
    "The pressure switch keeps clicking on and off.",
    "How do I replace the diaphragm in a rope pump?",
    "Our pump's flow rate dropped by half this season.",
]
GOATS = [
    "My goat has a swollen, hot udder.",
    "When should kids be vaccinated against enterotoxaemia?",
    "How much deworming drench for a 30 kg goat?",
    "The goat is coughing and has a runny nose.",
    "A doe is straining to give birth for two hours.",
    "How do I trim overgrown goat hooves?",
    "Goat kid has diarrhoea and will not suckle.",
    "What mineral lick do dairy goats need?",
    "How can I tell if a goat is anaemic from worms?",
    "My buck has lost weight over the dry season.",
]
SOLAR = [
    "The solar charge controller shows a low battery error.",
    "How do I size a solar panel for a vaccine fridge?",
    "Why does the inverter beep at night?",
    "How should I clean dusty solar panels?",
    "What size cable runs from the panels to the controller?",
    "The lead-acid batteries swell in the heat.",
    "How many panels to run a water heater?",
    "Why is the panel output low on cloudy mornings?",
    "Can I mix old and new batteries in one bank?",
    "The fuse between battery and inverter keeps blowing.",
]


@pytest.fixture
def library(home: Home) -> Iterator[Library]:
    lib = Library.open(home, identity=Identity.load_or_create(home))
    yield lib
    lib.close()


@pytest.fixture
def stocked(home: Home, make_packet: MakePacket) -> Home:
    """A home with three packets for the test base model."""
    for name, exemplars in (("pumps", PUMPS), ("goats", GOATS), ("solar", SOLAR)):
        make_packet(home, name=name, exemplars=exemplars)
    return home


def router_for(library: Library, embedder: CountingEmbedder, **kw: object) -> Router:
    """The router as shipped; one whose threshold is forced (`min_score`) has the everyday
    rule off too unless `everyday` is given, so the forced route is what a test sees."""
    if "min_score" in kw:
        kw.setdefault("everyday", ())
    return Router(library, embedder, TEST_BASE_FINGERPRINT, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Water stopped flowing from our well pump this morning.", "pumps"),
        ("What dose of dewormer does a young goat need?", "goats"),
        ("My battery bank keeps running flat even with the panels in sun.", "solar"),
    ],
)
def test_ranks_the_right_packet_first(
    stocked: Home, library: Library, counting_embedder: CountingEmbedder, question, expected
) -> None:
    decision = router_for(library, counting_embedder).route(question)
    assert decision.route == expected, decision.reason
    assert decision.packet_id == library.get(expected).packet_id
    scores = [c.score for c in decision.candidates]
    assert [c.name for c in decision.candidates][0] == expected
    assert scores == sorted(scores, reverse=True)
    assert len(scores) == 3
    assert decision.margin == pytest.approx(scores[0] - scores[1])
    assert decision.score == pytest.approx(scores[0])
    assert decision.route_ms > 0
    assert decision.reason.startswith(f"routed to {expected}")


def test_abstains_on_questions_no_packet_covers(
    stocked: Home, library: Library, counting_embedder: CountingEmbedder
) -> None:
    router = router_for(library, counting_embedder)
    for question in ("How long do I bake banana bread?", "How do I turn on dark mode?"):
        decision = router.route(question)
        assert decision.route is None, decision.reason
        assert decision.packet_id is None
        assert decision.reason.startswith("no expert fits")
        assert decision.candidates  # the UI still shows the best guesses


def test_margin_threshold_abstains_when_too_close(
    stocked: Home, library: Library, counting_embedder: CountingEmbedder
) -> None:
    router = router_for(library, counting_embedder, min_score=-1.0, min_margin=2.0)
    decision = router.route("The borehole pump runs but no water comes out.")
    assert decision.route is None
    assert decision.reason.startswith("too close to call")


def test_known_packets_are_not_embedded_again(
    stocked: Home, library: Library, counting_embedder: CountingEmbedder
) -> None:
    first = router_for(library, counting_embedder)
    first.route("pump leaks")
    assert first.embedded_packets == 3
    # the everyday list is not embedded: its shipped vectors are cached beside the exemplars
    assert everyday_questions()
    assert sorted(counting_embedder.texts) == sorted([*PUMPS, *GOATS, *SOLAR, "pump leaks"])
    rows = library.db.execute("select count(*) from exemplar_embeddings").fetchone()[0]
    assert rows == 4

    counting_embedder.texts.clear()
    second = router_for(library, counting_embedder)  # e.g. the next CLI run
    assert second.route("pump leaks").route == "pumps"
    assert second.embedded_packets == 0
    assert counting_embedder.texts == ["pump leaks"]


def test_a_new_packet_is_indexed_on_arrival(
    stocked: Home, library: Library, counting_embedder: CountingEmbedder, make_packet: MakePacket
) -> None:
    router = router_for(library, counting_embedder)
    question = "How do I treat foot rot in cattle?"
    assert router.route(question).route != "cattle"
    record = make_packet(  # written by another connection, like a gossip session
        stocked,
        name="cattle",
        exemplars=[f"Cattle lameness case {i}: foot rot in cows" for i in range(10)],
    )
    router.index_packet(record)
    counting_embedder.texts.clear()
    assert router.route(question).route == "cattle"
    assert counting_embedder.texts == [question]  # arrival embedded it, not the question


def test_packets_for_another_base_model_are_never_routed_to(
    home: Home, library: Library, counting_embedder: CountingEmbedder, make_packet: MakePacket
) -> None:
    make_packet(home, name="pumps", exemplars=PUMPS)
    foreign = make_packet(home, name="foreign-goats", exemplars=GOATS, base_fingerprint="f" * 64)
    router = router_for(library, counting_embedder, min_score=-1.0)
    assert router.index_packet(foreign).shape == (0, 384)
    assert counting_embedder.texts == []  # arriving foreign packets are not even embedded
    decision = router.route(GOATS[0])  # word for word a foreign exemplar
    assert decision.route == "pumps"
    assert [c.name for c in decision.candidates] == ["pumps"]

    only_foreign = router_for(library, counting_embedder)
    library.remove("pumps")
    decision = only_foreign.route(GOATS[0])
    assert decision.route is None
    assert "base model" in decision.reason


def test_empty_library_abstains(library: Library, counting_embedder: CountingEmbedder) -> None:
    decisions = router_for(library, counting_embedder).route_many(["anything?", "else?"])
    assert [d.route for d in decisions] == [None, None]
    assert decisions[0].reason == "the library has no packets"
    assert counting_embedder.texts == []  # nothing to compare with: the embedder stays idle


def test_route_many_matches_route(
    stocked: Home, library: Library, counting_embedder: CountingEmbedder
) -> None:
    router = router_for(library, counting_embedder)
    questions = [
        "pump seal leaking",
        "goat vaccine schedule",
        "the solar inverter sounds an alarm",
        "banana bread",
    ] * 20  # more than one batch
    many = router.route_many(questions)
    assert [d.route for d in many[:4]] == ["pumps", "goats", "solar", None]
    for question, decision in zip(questions[:4], many[:4], strict=True):
        single = router.route(question)
        assert single.route == decision.route
        assert single.score == pytest.approx(decision.score, abs=1e-4)


@pytest.mark.parametrize("top_k", [1, 3])
@pytest.mark.parametrize("method", ["centroid", "topk", "blend"])
def test_vectorised_scores_match_a_plain_loop(method: str, top_k: int) -> None:
    rng = np.random.default_rng(7)
    groups = [rng.normal(size=(n, 16)).astype(np.float32) for n in (1, 5, 2, 9)]
    groups = [g / np.linalg.norm(g, axis=1, keepdims=True) for g in groups]
    packets = [SimpleNamespace(name=x, domain=x, packet_id=x) for x in "abcd"]
    index = ExemplarGrid.build(packets, groups, 16)  # type: ignore[arg-type]
    queries = rng.normal(size=(3, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    got = index.scores(queries, method, top_k=top_k, blend=0.3)
    for q, row in zip(queries, got, strict=True):
        for g, score in zip(groups, row, strict=True):
            centroid = g.mean(axis=0) / np.linalg.norm(g.mean(axis=0))
            top = np.sort(g @ q)[::-1][:top_k].mean()
            want = {"centroid": centroid @ q, "topk": top}.get(
                method, 0.3 * centroid @ q + 0.7 * top
            )
            assert score == pytest.approx(want, abs=1e-5)


# -- CLI ------------------------------------------------------------------------------------


@pytest.fixture
def cli_home(stocked: Home, minilm, monkeypatch: pytest.MonkeyPatch) -> Home:
    """The stocked home, with the CLI's router using the session's embedder and test base."""
    import fieldkit.router.router as router_module

    monkeypatch.setattr(router_module, "default_embedder", lambda: minilm)
    monkeypatch.setattr(
        "fieldkit.services.Services.base_fingerprint", TEST_BASE_FINGERPRINT, raising=False
    )
    return stocked


def test_cli_route_json(cli_home: Home) -> None:
    result = CliRunner().invoke(
        main, ["--home", str(cli_home.root), "route", "goat udder is swollen", "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["route"] == "goats"
    assert out["question"] == "goat udder is swollen"
    assert {"score", "margin", "route_ms", "reason", "packet_id"} <= set(out)
    assert [c["name"] for c in out["candidates"]][0] == "goats"
    assert all(set(c) == {"name", "packet_id", "score"} for c in out["candidates"])
    piped = CliRunner().invoke(
        main, ["--home", str(cli_home.root), "route", "-", "--json"],
        input="goat udder is swollen\n",
    )  # fmt: skip
    assert json.loads(piped.output)["question"] == "goat udder is swollen"


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".JSONL", ".json"])
def test_cli_route_file_keeps_order(cli_home: Home, tmp_path: Path, suffix: str) -> None:
    """JSON Lines by the suffix in any case, or by a first line that is a JSON object
    (`.json`): such lines were routed as questions, braces and all."""
    questions = ["inverter beeps", "banana bread recipe", "pump leaks at the seal"]
    path = tmp_path / f"questions{suffix}"
    lines = [json.dumps({"question": q}) for q in questions] if suffix != ".txt" else questions
    path.write_text("\n".join(lines) + "\n\n")
    result = CliRunner().invoke(
        main, ["--home", str(cli_home.root), "route", "--file", str(path), "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["question"] for r in rows] == questions
    assert [r["route"] for r in rows] == ["solar", None, "pumps"]

    plain = CliRunner().invoke(main, ["--home", str(cli_home.root), "route", "--file", str(path)])
    assert plain.exit_code == 0, plain.output
    assert plain.output.splitlines()[1].startswith("(base model)\t")
    assert [line.split("\t")[-1] for line in plain.output.splitlines()] == questions


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"question": "ok"}\n{"q": "wrong field"}\n', "line 2 has no question, instruction"),
        ("not json\n", "line 1 is not JSON"),
        ("\n\n", "holds no questions"),
    ],
)
def test_cli_route_bad_file_is_one_sentence(
    cli_home: Home, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    result = CliRunner().invoke(main, ["--home", str(cli_home.root), "route", "--file", str(path)])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    missing = CliRunner().invoke(
        main, ["--home", str(cli_home.root), "route", "--file", str(tmp_path / "nope.txt")]
    )
    assert missing.exit_code == 1
    assert "nope.txt cannot be read" in missing.output


@pytest.mark.parametrize("jsonl", [False, True])
def test_cli_route_file_from_stdin(cli_home: Home, jsonl: bool) -> None:
    questions = ["inverter beeps", "banana bread recipe", "pump leaks at the seal"]
    lines = [json.dumps({"question": q}) for q in questions] if jsonl else questions
    result = CliRunner().invoke(
        main,
        ["--home", str(cli_home.root), "route", "--file", "-", "--json"],
        input="\n" + "\n".join(lines) + "\n",
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["question"] for r in rows] == questions
    assert [r["route"] for r in rows] == ["solar", None, "pumps"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"q": "wrong field"}\n', "standard input line 1 has no question, instruction"),
        (b"\n\n", "Standard input holds no questions."),
        (b"\xff\xfe\n", "The questions on standard input are not UTF-8 text."),
    ],
)
def test_cli_route_bad_stdin_is_one_sentence(cli_home: Home, data: bytes, message: str) -> None:
    result = CliRunner().invoke(
        main, ["--home", str(cli_home.root), "route", "--file", "-"], input=data
    )
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_cli_route_stdin_over_the_limit_is_refused(
    cli_home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fieldkit.commands import route

    monkeypatch.setattr(route, "STDIN_QUESTIONS_LIMIT", 64)
    result = CliRunner().invoke(
        main, ["--home", str(cli_home.root), "route", "--file", "-"], input="pump leaks\n" * 10
    )
    assert result.exit_code == 1
    assert "The questions on standard input are larger than 64 B." in result.output


def test_cli_route_keeps_the_question_limits_of_ask(cli_home: Home) -> None:
    """`route -` took 300 KB of question that `ask -` refuses."""
    home = ["--home", str(cli_home.root), "route"]
    for argv, given, said in (
        (["-"], "a" * 200_000, "has more than 32000 characters; fieldkit takes at most 32000."),
        (["--file", "-"], "a" * 40_000, "The prompt has 40000 characters; fieldkit takes"),
        ([" "], None, "The question is empty."),
    ):
        result = CliRunner().invoke(main, [*home, *argv], input=given)
        assert result.exit_code == 1, result.output
        assert said in result.output


def test_cli_route_takes_a_question_unquoted(cli_home: Home) -> None:
    """`route pump leaks at the seal` said 'Got unexpected extra argument'."""
    home = ["--home", str(cli_home.root), "route", "--json"]
    quoted = CliRunner().invoke(main, [*home, "pump leaks at the seal"])
    unquoted = CliRunner().invoke(main, [*home, "pump", "leaks", "at", "the", "seal"])
    assert unquoted.exit_code == 0, unquoted.output
    loaded = [json.loads(r.output) for r in (quoted, unquoted)]
    assert loaded[1]["question"] == "pump leaks at the seal"
    assert loaded[1]["route"] == loaded[0]["route"] == "pumps"
    negative = CliRunner().invoke(main, [*home, "--", "-5", "degrees", "inverter", "beeps"])
    assert json.loads(negative.output)["question"] == "-5 degrees inverter beeps"


def test_cli_route_needs_a_question(cli_home: Home) -> None:
    result = CliRunner().invoke(main, ["--home", str(cli_home.root), "route"])
    assert result.exit_code == 2
    assert "Give a QUESTION" in result.output


def test_a_clear_winner_among_weak_scores_is_routed(
    stocked: Home, library: Library, counting_embedder: CountingEmbedder
) -> None:
    """Between the rescue score and the high tier, the lead over the runner-up decides."""
    question = "Water stopped flowing from our well pump this morning."
    free = router_for(library, counting_embedder, min_score=-1.0).route(question)
    assert free.route == "pumps"
    high = free.score + 0.01  # the high tier just out of reach
    lead = router_for(
        library, counting_embedder, min_score=high, rescue_score=-1.0, rescue_margin=0.0
    ).route(question)
    assert lead.route == "pumps", lead.reason
    close = router_for(
        library, counting_embedder, min_score=high, rescue_margin=free.margin + 0.01
    ).route(question)
    assert close.route is None
    assert f"{close.margin:.3f} ahead of the next domain <" in close.reason


LONG = (
    "Our village committee met last night because the taps at the school ran dry again. "
    "The caretaker says the little box on the pole shows a code he has never seen. "
    "What should we do before the term starts?"
)


def test_a_packet_is_scored_against_its_notes_too(
    home: Home, library: Library, make_packet: MakePacket, counting_embedder: CountingEmbedder
) -> None:
    from fieldkit.store.notes import Passage

    note = Passage(
        "r1",
        "When the taps at the school run dry and the controller box on the pole shows a "
        "code, the committee checks the borehole water level before term starts.",
        "What to do when the school taps run dry",
    )
    make_packet(home, name="pumps", exemplars=PUMPS, notes=[note])
    make_packet(home, name="goats", exemplars=GOATS)
    with_notes = router_for(library, counting_embedder, min_score=-1.0).route(LONG)
    without = router_for(library, counting_embedder, min_score=-1.0, use_notes=False).route(LONG)
    assert with_notes.route == without.route == "pumps"
    assert with_notes.score > without.score + 0.1  # the passage is nearer than any exemplar
    # A packet scored against its notes is held to its own tiers, not the exemplar ones.
    gate = router_for(
        library,
        counting_embedder,
        min_score=-1.0,
        notes_min_score=with_notes.score + 0.01,
        notes_rescue_score=9.0,
    )
    assert gate.route(LONG).route is None
    assert "no expert fits" in gate.route(LONG).reason
    opened = router_for(
        library,
        counting_embedder,
        min_score=9.0,
        rescue_score=9.0,
        notes_min_score=with_notes.score - 0.01,
    )
    assert opened.route(LONG).route == "pumps"


def test_shared_rare_words_lift_a_packet_with_notes(
    home: Home, library: Library, make_packet: MakePacket, counting_embedder: CountingEmbedder
) -> None:
    """A name that only one packet's notes hold adds NOTES_LEXICAL times the share of the
    question's words that its best text holds; packets without notes get nothing added."""
    from fieldkit.store.notes import Passage

    note = Passage("r1", "Fumitab tablets go under a sealed sheet for seven days.", "Fumitab")
    make_packet(home, name="pumps", exemplars=PUMPS, notes=[note])
    make_packet(home, name="goats", exemplars=GOATS)
    question = "The store man wants to use Fumitab on our sacks; how long does it take?"
    plain = router_for(library, counting_embedder, min_score=-1.0, notes_lexical=0.0)
    lifted = router_for(library, counting_embedder, min_score=-1.0, notes_lexical=0.3)
    before = {c.name: c.score for c in plain.route(question).candidates}
    after = {c.name: c.score for c in lifted.route(question).candidates}
    index = lifted._ensure_index()
    share = dict(zip((p.name for p in index.packets), index.shared_words(question), strict=True))
    assert share["pumps"] > 0.05
    assert share["goats"] == 0.0
    assert after["pumps"] == pytest.approx(before["pumps"] + 0.3 * share["pumps"], abs=1e-5)
    assert after["goats"] == pytest.approx(before["goats"], abs=1e-6)


def test_packets_of_one_domain_do_not_hold_each_other_back(
    home: Home, library: Library, make_packet: MakePacket, counting_embedder: CountingEmbedder
) -> None:
    """The rescue lead is measured against the best packet of another domain: two authors'
    packets on one topic score alike, and that is no reason to abstain."""
    make_packet(home, name="pumps-a", domain="pumps", exemplars=PUMPS, seed=1)
    make_packet(home, name="pumps-b", domain="pumps", exemplars=PUMPS, seed=2)
    make_packet(home, name="goats", exemplars=GOATS)
    question = "Water stopped flowing from our well pump this morning."
    free = router_for(library, counting_embedder, min_score=-1.0).route(question)
    assert free.route in {"pumps-a", "pumps-b"}
    twin = [c for c in free.candidates if c.name != free.route][0]
    assert twin.name in {"pumps-a", "pumps-b"}
    assert twin.score == pytest.approx(free.score)
    goats = next(c.score for c in free.candidates if c.name == "goats")
    assert free.margin == pytest.approx(free.score - goats)
    weak = router_for(
        library, counting_embedder, min_score=free.score + 0.01, rescue_score=-1.0,
        rescue_margin=free.margin - 0.01,
    ).route(question)  # fmt: skip
    assert weak.route in {"pumps-a", "pumps-b"}, weak.reason
    assert "ahead of goats (another domain's best)" in weak.reason  # not of its twin
    assert weak.reason.endswith(f"; under {free.score + 0.01:.2f}, but that far ahead")


PHONE = "Can I charge my phone from a small solar panel on the roof?"


def test_an_everyday_question_is_not_routed_to_a_packet_sharing_its_words(
    stocked: Home, library: Library, counting_embedder: CountingEmbedder
) -> None:
    without = router_for(library, counting_embedder, min_score=-1.0)  # the rule off
    assert without.route(PHONE).route == "solar"
    everyday = ["How do I charge my phone with a solar charger kit?", "How do I boil eggs?"]
    router = router_for(library, counting_embedder, min_score=-1.0, everyday=everyday)
    decision = router.route(PHONE)
    assert decision.route is None
    assert decision.packet_id is None
    assert decision.reason.startswith("an everyday question, not an expert's: nearer")
    assert "solar charger kit" in decision.reason
    assert "than solar's texts" in decision.reason
    assert decision.candidates[0].name == "solar"  # the UI still shows the best guess
    # the packets' own questions still route, and route_many agrees with route
    questions = [PHONE, "The solar charge controller shows a low battery error.", PUMPS[1]]
    routes = [d.route for d in router.route_many(questions)]
    assert routes == [None, "solar", "pumps"]


def test_a_packet_on_the_everyday_topic_still_gets_its_questions(
    home: Home, make_packet: MakePacket, library: Library, counting_embedder: CountingEmbedder
) -> None:
    kitchen = [
        "How long do I boil rice in a pot?",
        "How much water for two cups of rice?",
        "How do I make soft chapati?",
        "How long should eggs boil to be hard?",
        "How do I keep cooked beans from going sour?",
        "How long does a whole chicken take to roast?",
        "How do I stop ugali from getting lumps?",
        "How much salt goes into a pot of beans?",
        "How do I fry fish without it sticking?",
        "How long can leftover stew stay out?",
    ]
    make_packet(home, name="kitchen", exemplars=kitchen)
    make_packet(home, name="pumps", exemplars=PUMPS)
    router = router_for(library, counting_embedder, everyday=["How do I cook rice?"])
    decision = router.route("How long should I boil rice in a pot?")
    assert decision.route == "kitchen", decision.reason  # its own exemplar is nearer


def test_a_household_question_on_the_everyday_side_is_left_to_the_base_model(
    stocked: Home, library: Library, counting_embedder: CountingEmbedder
) -> None:
    question = "my pet goat at home eats the flowers in my garden"
    alone = router_for(library, counting_embedder, everyday_near_lead=EVERYDAY_LEAD)
    assert alone.route(question).route == "goats"  # the nearest everyday question alone
    # 30 exemplars are too few for a line (everyday.DIVIDE_MIN_TEXTS): the lead decides
    assert router_for(library, counting_embedder).route(question).route == "goats"
    router = router_for(library, counting_embedder, divide_min_texts=30)
    decision = router.route(question)
    assert decision.route is None
    assert decision.reason.startswith("an everyday question, not an expert's: nearer")
    assert "and on the everyday side of the library (-" in decision.reason
    assert decision.candidates[0].name == "goats"
    # the packets' own questions are on their side
    questions = [GOATS[2], "Why does the inverter beep at night?", PUMPS[0]]
    assert [d.route for d in router.route_many(questions)] == ["goats", "solar", "pumps"]


def test_a_weak_question_on_the_library_side_of_its_divide_is_routed(
    stocked: Home, library: Library, counting_embedder: CountingEmbedder
) -> None:
    """Below both tiers, a clear lead and the library's side of the divide route it."""
    question = "Water stopped flowing from our well pump this morning."
    free = router_for(library, counting_embedder, min_score=-1.0).route(question)
    assert free.route == "pumps"
    tiers: dict = {"min_score": free.score + 0.01, "rescue_score": 9.0, "everyday": None}
    lean = (free.score - 0.05, free.margin - 0.01, 0.1)
    off = router_for(library, counting_embedder, leaning=None, divide_min_texts=30, **tiers)
    assert off.route(question).reason.startswith("no expert fits")
    router = router_for(library, counting_embedder, leaning=lean, divide_min_texts=30, **tiers)
    decision = router.route(question)
    assert decision.route == "pumps", decision.reason
    assert "on the library's side of its divide (+" in decision.reason
    side = float(decision.reason.rsplit("(", 1)[1].rstrip(")"))
    assert side >= 0.1
    for strict in (
        (free.score - 0.05, free.margin - 0.01, side + 0.01),  # not far enough on its side
        (free.score - 0.05, free.margin + 0.01, 0.1),  # too small a lead
        (free.score + 0.001, free.margin - 0.01, 0.1),  # too weak a score
    ):
        kept = router_for(library, counting_embedder, leaning=strict, divide_min_texts=30, **tiers)
        assert kept.route(question).route is None, strict
    # with no divide (30 texts are fewer than DIVIDE_MIN_TEXTS), no route by it
    assert (
        router_for(library, counting_embedder, leaning=lean, **tiers).route(question).route is None
    )


CONTROLLER = [
    "What does fault E07 on the AV-750 controller mean?",
    "How do I reset the AV-750 after a dry-run stop?",
    "Which fuse does the AV-750 controller take?",
    "Where is the dip switch for the tank float on the AV-750?",
    "Why does the AV-750 show a blinking amber light at dawn?",
    "How long does the AV-750 wait before restarting after low water?",
    "What cable size goes from the array to the AV-750?",
    "Can the AV-750 run a pump from a generator?",
    "How do I read the pumped volume on the AV-750 display?",
    "What is the AV-750's maximum input voltage?",
]


def test_a_code_only_one_domain_names_routes_a_weak_question_there(
    stocked: Home, make_packet: MakePacket, library: Library, counting_embedder: CountingEmbedder
) -> None:
    make_packet(stocked, name="controllers", domain="pumps", exemplars=CONTROLLER)
    question = "asking for Amina, av750 at the school again"
    without = router_for(library, counting_embedder, codes=False)
    assert without.route(question).route is None  # too weak for either tier
    router = router_for(library, counting_embedder)
    decision = router.route(question)
    assert decision.route == "controllers", decision.reason
    assert decision.reason.endswith("and it alone names av750")
    assert decision.score < 0.45
    # a code that an everyday question names, or that packets of two domains name, is not
    # evidence
    listed = router_for(library, counting_embedder, everyday=["My AV750 hair dryer is dead"])
    assert listed.route(question).reason.startswith("no expert fits")
    spares = [f"Where can I buy an AV-750 spare part number {n}?" for n in range(10)]
    make_packet(stocked, name="spares", domain="solar", exemplars=spares)
    assert router_for(library, counting_embedder).route(question).reason.startswith("no expert")


def test_a_changed_everyday_list_is_embedded_again(
    stocked: Home, library: Library, counting_embedder: CountingEmbedder
) -> None:
    router_for(library, counting_embedder, everyday=["How do I boil eggs?"]).route("pump leaks")
    counting_embedder.texts.clear()
    router_for(library, counting_embedder, everyday=["How do I boil eggs?"]).route("pump leaks")
    assert counting_embedder.texts == ["pump leaks"]  # cached
    router_for(library, counting_embedder, everyday=["How do I fry eggs?"]).route("pump leaks")
    assert counting_embedder.texts == ["pump leaks", "How do I fry eggs?", "pump leaks"]
    keys = {r[0] for r in library.db.execute("select packet_id from exemplar_embeddings")}
    assert sum(k.startswith("everyday:") for k in keys) == 1  # the old list's vectors went


def test_a_missing_or_broken_everyday_list_leaves_the_rule_off(tmp_path, monkeypatch) -> None:
    from fieldkit.router import everyday

    folder = tmp_path / "router"
    monkeypatch.setattr(everyday, "assets_dir", lambda: tmp_path)
    assert everyday.everyday_questions() == []  # missing
    folder.mkdir()
    (folder / "everyday.txt").write_bytes(b"\xff\xfe not text \xff")
    assert everyday.everyday_questions() == []  # unreadable
    (folder / "everyday.txt").write_text("How do I boil eggs?\n\n  How do I fry fish?  \n")
    assert everyday.everyday_questions() == ["How do I boil eggs?", "How do I fry fish?"]


def test_a_home_adds_its_own_everyday_questions(cli_home: Home) -> None:
    question = "The pressure switch of the water heater in my kitchen keeps clicking, why?"
    args = ["--home", str(cli_home.root), "route", question, "--json"]
    before = CliRunner().invoke(main, args)
    assert before.exit_code == 0, before.output
    assert json.loads(before.output)["route"] == "pumps"
    cli_home.everyday_path.write_text(f"How do I descale a kettle?\n{question}\n")
    after = CliRunner().invoke(main, args)
    assert after.exit_code == 0, after.output
    out = json.loads(after.output)
    assert out["route"] is None
    assert out["reason"].startswith("an everyday question, not an expert's: nearer")
    assert "kitchen" in out["reason"]
    cli_home.everyday_path.write_bytes(b"\xff\xfe\xff broken")
    broken = CliRunner().invoke(main, args)
    assert broken.exit_code != 0
    assert broken.output.strip().count("\n") == 0, broken.output
    assert "everyday.txt cannot be read (not UTF-8 text)" in broken.output
    assert "Traceback" not in broken.output


def test_a_code_everyday_questions_name_is_neither_evidence_nor_named() -> None:
    """ExemplarGrid.naming: a code the everyday questions also name (A4 paper) neither
    picks a packet nor appears among the codes a route's reason names."""
    packet = SimpleNamespace(packet_id="p", domain="pumps", name="pumps")
    vectors = [np.eye(4, dtype=np.float32)[:1]]
    named = [["Print the AV-750 manual on A4 paper."]]
    index = ExemplarGrid.build([packet], vectors, 4, named=named)  # type: ignore[list-item]
    assert index.naming("av750 manual on A4?", {"a4"}) == ([0], ["av750"])
    assert index.naming("A4 paper?", {"a4"}) == ([], [])
