"""Grounded answering: the prompt, the support check, the grounding decision, the pipeline."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from fieldkit.answering import BASE_CAUTION, PROMPT_PASSAGES, Parts, answer, finish, ground
from fieldkit.answers import ADAPTER_ONLY, BASE, GAP, NOTES, grounded_messages
from fieldkit.cli import main
from fieldkit.engine.engine import Engine
from fieldkit.errors import FieldkitError
from fieldkit.prompts import MAX_PROMPT_CHARS
from fieldkit.router.retrieval import Hit, PassageIndex
from fieldkit.services import Services
from fieldkit.store.models import model_fingerprint
from fieldkit.store.notes import Passage
from fieldkit.support import Unsupported, support_check

PASSAGES = [
    "Dry maize to 12.5% moisture before storage; above 15% it moulds.",
    "Chicks get the eye drop at day 5 and a booster at day 26.",
    "Mount the pump 5 m above the borehole floor, on a 2.5 mm cable.",
    "E07 on the AV-750 means the dry-run sensor tripped.",
    "Keep vaccines between +4 and +8°C; a freezer runs at -20°C. Store at 4-8°C.",
]
PUMP_NOTES = [
    Passage("r1", "Clean the intake filter every 7 days in the dry season.", "Filter cleaning?"),
    Passage("r2", "Mount the panel at a 15 degree tilt facing the equator.", "Panel tilt?"),
    Passage("r3", "Reset the controller by holding STOP for 10 seconds.", "Controller reset?"),
]


@pytest.mark.parametrize(
    ("answer_text", "unsupported"),
    [
        ("Dry it to 12.5% moisture.", []),
        ("Dry it to 12.50 % moisture, never above 15 percent.", []),
        ("Dry it to 13% moisture.", ["13%"]),
        ("Vaccinate at day 5, boost after 26 days.", []),  # day 5 / 26 days: no unit clash
        ("Mount it 15 m above the floor.", ["15 m"]),  # 5 m is not inside 15 m
        ("Mount it 5 m up on a 2.5 mm cable.", []),
        ("Mount it 5 cm up.", ["5 cm"]),  # the number is there, the unit is not
        ("Use a 25 mm cable.", ["25 mm"]),  # 2.5 is not 25
        ("Give 2 doses.", ["2"]),
        ("Nothing numeric here.", []),
        ("E07 on the av750: check the sensor.", []),  # a code named, in any case or hyphen
        ("E09 on the AV-750 means the sensor tripped.", ["E09"]),  # a code no passage names
        ("Code E09 after 13% moisture.", ["E09", "13%"]),  # marks in the order they appear
        ("The SG-1 a day after 5 m.", ["SG-1"]),  # a code's digit is no number, "a" no unit
        ("Give it at day 14 and again at day 24.", ["14", "24"]),  # the word after is no unit
        ("Give it at day 7 and day 26.", ["7"]),  # day 26 is stated as "day 26"
        ("Keep them at -8°C.", ["-8°C"]),  # +8°C is stated, -8°C is not
        ("Keep them at 4 to 8°C, the freezer at \u221220°C.", []),  # + is no sign; − is minus
        ("The freezer runs at 20°C.", ["20°C"]),  # -20°C is stated, 20°C is not
        ("Store at 4-8°C, not -4°C.", ["-4°C"]),  # the dash of a range is no minus
        ("[1] Dry it to 12.5% moisture.\n\n[2] Mount it 5 m up.", []),  # parts' marks
        ("[1] Dry it to 13% moisture, as in [2].", ["13%"]),
    ],
)
def test_support_check_marks_numbers_and_codes_no_passage_states(answer_text, unsupported):
    marks = support_check(answer_text, PASSAGES)
    assert [m.text for m in marks] == unsupported
    for mark in marks:
        assert answer_text[mark.start : mark.end] == mark.text


def test_the_marks_of_an_answers_parts_are_no_numbers():
    from fieldkit.support import states_numbers

    assert not states_numbers("[1] Dust it.\n\n[2] Dip the legs.")
    assert states_numbers("[1] Dust it twice.\n\n[2] Dip the legs for 10 seconds.")


def test_support_check_without_passages_marks_every_number():
    assert [m.text for m in support_check("Use 5 kg on day 3.", [])] == ["5 kg", "3"]


def test_grounded_messages_put_the_passages_before_the_question():
    hits = [Hit("r1", 0.8, "Clean it every 7 days.", "Filter cleaning?"), Hit("r2", 0.6, "Tilt.")]
    (message,) = grounded_messages("How often do I clean the filter?", hits)
    assert message["role"] == "user"
    content = message["content"]
    assert content.index("Clean it every 7 days.") < content.index("Question: How often")
    assert "- Filter cleaning?: Clean it every 7 days." in content
    assert grounded_messages("Q?", []) == [{"role": "user", "content": "Q?"}]


@pytest.fixture
def noted_home(home, make_packet, make_adapter, tiny_model_dir):
    fingerprint = model_fingerprint(tiny_model_dir)
    make_packet(
        home, name="pumps", notes=PUMP_NOTES, base_fingerprint=fingerprint, adapter=make_adapter(1)
    )
    make_packet(home, name="plain", base_fingerprint=fingerprint, adapter=make_adapter(2))
    return home


def test_grounding_follows_the_notes(noted_home, minilm, tiny_model_dir):
    services = Services.build(noted_home.root, tiny_model_dir)
    try:
        index = PassageIndex(services.library, minilm)
        pumps, plain = services.library.get("pumps"), services.library.get("plain")
        covered = ground("How often should I clean the intake filter?", pumps, index)
        assert covered.grounding == NOTES
        assert covered.sources[0].passage_id == "r1"
        assert covered.sources[0].packet == "pumps"
        assert "every 7 days" in covered.messages[0]["content"]
        # the first passage is read; the next is shown beside the answer, not given to it
        assert [s.read for s in covered.sources] == [True, False]
        assert covered.sources[1].text not in covered.messages[0]["content"]
        assert covered.sources[1].label.endswith(", near, not read)")
        assert covered.sources[0].label == f"pumps r1 ({covered.sources[0].score:.2f})"
        gap = ground("What is the offside rule in football?", pumps, index)
        assert gap.grounding == GAP
        assert gap.sources == []
        assert gap.gap.startswith("The pumps packet has nothing on this; nearest: ")
        assert gap.said == gap.nearest[0].text  # that record, as written, is the answer
        assert gap.messages == [
            {"role": "user", "content": "What is the offside rule in football?"}
        ]
        bare = ground("How often should I clean the filter?", plain, index)
        assert bare.grounding == ADAPTER_ONLY
        assert bare.messages == [
            {"role": "user", "content": "How often should I clean the filter?"}
        ]
        by_hand = ground("Anything?", None, index)
        assert by_hand.grounding == BASE
        assert by_hand.notice is None  # asked for the base model: nothing said first
        left = ground("Anything?", None, index, abstained=True)
        assert (left.grounding, left.notice) == (BASE, BASE_CAUTION)
    finally:
        services.close()


def test_the_pipeline_answers_with_sources_and_marks(noted_home, minilm, tiny_model_dir):
    library = Services.build(noted_home.root, tiny_model_dir).library
    with Engine(tiny_model_dir) as engine:
        parts = Parts(engine, library, None, PassageIndex(library, minilm))
        question = "How often should I clean the intake filter?"
        got = answer(parts, question, packet="pumps", max_tokens=12)
        assert got.grounding == NOTES
        assert got.packet == "pumps"
        assert [s.passage_id for s in got.sources][0] == "r1"
        found = parts.passages.search(got.packet_id, question)
        prompt = grounded_messages(question, found[:PROMPT_PASSAGES])
        adapter = library.load_adapter(library.get("pumps"))
        expected = engine.answer(prompt, adapter, max_tokens=12, clean=True)
        assert got.text == expected.text  # the adapter applies to the grounded prompt
        assert got.unsupported == support_check(got.text, [s.full_text for s in got.sources])
        plain = answer(parts, question, packet="plain", max_tokens=6)
        assert plain.grounding == ADAPTER_ONLY
        assert plain.note == "from the adapter only"
        assert plain.sources == []
        bare = engine.answer(question, library.load_adapter(library.get("plain")), max_tokens=6,
                             clean=True)  # fmt: skip
        assert plain.text == bare.text  # a packet without notes answers as before
        offside = answer(parts, "What is the offside rule in football?", packet="pumps")
        assert (offside.grounding, offside.generated, offside.as_written) == (GAP, False, True)
        assert (offside.text, offside.unsupported) == (offside.nearest[0].text, [])
        assert offside.result is not None
        assert offside.result.generation_tokens == 0
        data = got.to_dict()
        assert data["sources"][0]["passage_id"] == "r1"
        assert isinstance(data["unsupported"], list)
    library.close()


def test_ask_json_gains_sources_and_unsupported(noted_home, tiny_model_dir):
    runner = CliRunner()
    base = ["--home", str(noted_home.root), "--model", str(tiny_model_dir)]
    question = "How often should I clean the intake filter?"
    result = runner.invoke(
        main, [*base, "ask", question, "--adapter", "pumps", "--json", "--max-tokens", "8"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["grounding"] == NOTES
    assert out["sources"][0]["packet"] == "pumps"
    assert out["sources"][0]["passage_id"] == "r1"
    assert "every 7 days" in out["sources"][0]["text"]
    assert "unsupported" in out
    text = runner.invoke(main, [*base, "ask", question, "--adapter", "pumps", "--max-tokens", "8"])
    assert text.exit_code == 0, text.output
    assert "[1] pumps r1 (" in text.output
    plain = runner.invoke(main, [*base, "ask", question, "--adapter", "plain", "--max-tokens", "4"])
    assert "(from the adapter only: plain carries no notes)" in plain.output
    gap = runner.invoke(
        main, [*base, "ask", "What is the offside rule in football?", "--adapter", "pumps",
               "--max-tokens", "4"],
    )  # fmt: skip
    assert gap.output.startswith("The pumps packet has nothing on this; nearest: ")


def test_ask_dash_reads_the_question_from_standard_input(noted_home, tiny_model_dir):
    base = ["--home", str(noted_home.root), "--model", str(tiny_model_dir), "ask", "--no-server"]
    question = "How often should I clean the intake filter?"
    args = [*base, "-", "--adapter", "pumps", "--json", "--max-tokens", "4"]
    result = CliRunner().invoke(main, args, input=f"\ufeff{question}\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["question"] == question
    words = CliRunner().invoke(main, [*base, *question.split(), "--json", "--max-tokens", "4"])
    assert words.exit_code == 0, words.output  # unquoted: its words joined
    assert json.loads(words.stdout)["question"] == question
    for given, said in (
        (b"\xff\xfe", "The question on standard input is not UTF-8 text."),
        (b" \n", "The question is empty."),
        (b"^\n", "The question has no words in it."),
        (b"a" * (MAX_PROMPT_CHARS + 10), "The prompt has 32010 characters; fieldkit takes"),
        (b"a" * 200_000, "standard input has more than 32000 characters; fieldkit takes"),
        (("a" + "\u00e9" * MAX_PROMPT_CHARS * 4).encode(), "more than 32000 characters"),  # cut
    ):
        refused = CliRunner().invoke(main, args, input=given)
        assert refused.exit_code == 1
        assert said in refused.output


def test_ask_refuses_a_question_over_the_prompt_limit_before_loading_anything(
    noted_home, tiny_model_dir, monkeypatch
):
    def loaded(self):  # noqa: ANN001, ANN202
        raise AssertionError("a part of the model was loaded")

    for part in ("engine", "router", "passages"):
        monkeypatch.setattr(Services, part, property(loaded))
    monkeypatch.setattr(Services, "pick_packet", loaded)
    base = ["--home", str(noted_home.root), "--model", str(tiny_model_dir), "ask", "--no-server"]
    for question in ("a" * 50_000, "a" * (MAX_PROMPT_CHARS + 1)):
        result = CliRunner().invoke(main, [*base, "--json", "--max-tokens", "8", question])
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        assert result.output == (
            f"fieldkit: The prompt has {len(question)} characters; fieldkit takes at most "
            f"{MAX_PROMPT_CHARS}.\n"
        )
    services = Services.build(noted_home.root, tiny_model_dir)
    try:  # every caller of the pipeline, not only `ask`
        with pytest.raises(FieldkitError, match="fieldkit takes at most 32000"):
            answer(services, "a" * 32_001)
    finally:
        services.close()


def test_a_question_no_packet_fits_is_answered_after_a_caution(noted_home, tiny_model_dir):
    runner = CliRunner()
    base = ["--home", str(noted_home.root), "--model", str(tiny_model_dir), "ask"]
    question = "What is the offside rule in football?"
    left = runner.invoke(main, [*base, question, "--max-tokens", "4"])
    assert left.exit_code == 0, left.output
    assert left.output.startswith(BASE_CAUTION + "\n")
    assert "(from the base model only: " in left.output
    data = json.loads(runner.invoke(main, [*base, question, "--json", "--max-tokens", "4"]).output)
    assert (data["route"], data["grounding"], data["caution"]) == (None, BASE, BASE_CAUTION)
    asked = runner.invoke(main, [*base, question, "--base", "--max-tokens", "4"])
    assert asked.exit_code == 0, asked.output
    assert BASE_CAUTION not in asked.output  # the base model asked for by name


def test_library_shows_notes_and_reissues_with_and_without_them(
    noted_home, tiny_model_dir, tmp_path: Path
):
    runner = CliRunner()
    base = ["--home", str(noted_home.root), "--model", str(tiny_model_dir), "library"]
    listed = json.loads(runner.invoke(main, [*base, "list", "--json"]).output)
    assert {row["name"]: row["notes"] for row in listed} == {"pumps": 3, "plain": 0}
    table = runner.invoke(main, [*base, "list"]).output
    assert "NOTES" in table
    notes = tmp_path / "notes.md"
    notes.write_text("# Pumps\n\nPrime the pump with 2 litres of water.\n\nCheck the seal.\n")
    result = runner.invoke(main, [*base, "reissue", "plain", "--notes", str(notes)])
    assert result.exit_code == 0, result.output
    assert "2 notes" in result.output
    exemplars = tmp_path / "q.txt"
    exemplars.write_text("\n".join(f"How do I prime pump {i}?" for i in range(12)))
    kept = runner.invoke(main, [*base, "reissue", "plain", "--exemplars", str(exemplars)])
    assert "2 notes" in kept.output  # a reissue keeps the notes unless told otherwise
    dropped = runner.invoke(main, [*base, "reissue", "plain", "--no-notes"])
    assert "0 notes" in dropped.output
    shown = json.loads(runner.invoke(main, [*base, "show", "plain", "--json"]).output)
    assert shown["notes"] == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "Q?"}\n')
    refused = runner.invoke(main, [*base, "reissue", "plain", "--notes", str(bad)])
    assert refused.exit_code == 1
    assert "Record 1 has no question and answer" in refused.output
    assert "Traceback" not in refused.output


def test_import_a_packet_file_with_notes_signs_it_again(noted_home, tiny_model_dir, tmp_path):
    runner = CliRunner()
    base = ["--home", str(noted_home.root), "--model", str(tiny_model_dir), "library"]
    exported = tmp_path / "plain.fkpkt"
    assert runner.invoke(main, [*base, "export", "plain", "-o", str(exported)]).exit_code == 0
    records = tmp_path / "train.jsonl"
    records.write_text('{"instruction": "How much water?", "output": "Prime with 2 litres."}\n')
    other = ["--home", str(tmp_path / "other"), "--model", str(tiny_model_dir), "library"]
    result = runner.invoke(main, [*other, "import", str(exported), "--notes", str(records)])
    assert result.exit_code == 0, result.output
    assert "1 notes" in result.output
    (row,) = json.loads(runner.invoke(main, [*other, "list", "--json"]).output)
    assert row["notes"] == 1
    assert row["verified"]
    again = runner.invoke(main, [*other, "import", str(exported), "--notes", str(records)])
    assert again.exit_code == 1
    assert "already in the library" in again.output


SPREAD_NOTES = [
    *PUMP_NOTES,
    *[
        Passage(f"m{i}", f"Check {part} of the surface pump every {i + 2} weeks.", f"{part}?")
        for i, part in enumerate(
            ["the seal", "the impeller", "the cable", "the float", "the valve", "the pipe",
             "the strainer", "the bearings", "the fuses"]
        )
    ],
]  # fmt: skip


def test_an_answer_from_passages_that_may_not_fit_says_so_first(
    home, make_packet, make_adapter, tiny_model_dir, minilm
):
    """In the cautious middle the passages are used and cited, and the answer opens with
    the caution: in the Grounding, the Answer's JSON and the text a person reads."""
    fingerprint = model_fingerprint(tiny_model_dir)
    make_packet(
        home,
        name="pumps",
        notes=SPREAD_NOTES,
        base_fingerprint=fingerprint,
        adapter=make_adapter(1),
    )
    services = Services.build(home.root, tiny_model_dir)
    try:
        pumps = services.library.get("pumps")
        question = "The water is dirty, how often should I clean the intake filter?"
        score = PassageIndex(services.library, minilm).coverage(pumps.packet_id, question).score
        index = PassageIndex(services.library, minilm, min_score=score + 0.01, min_partial=0.0)
        middle = ground(question, pumps, index)
        assert middle.grounding == NOTES
        assert middle.sources[0].passage_id == "r1"
        assert "every 7 days" in middle.messages[0]["content"]
        assert middle.gap is None
        assert middle.caution == middle.notice
        assert middle.caution.startswith("The pumps notes may not answer this; ")
        done = finish(middle, "Clean it every 7 days.")
        assert done.to_dict()["caution"] == middle.caution
        assert done.shown_text == f"{middle.caution}\nClean it every 7 days."
        assert done.note == "from the pumps notes and adapter"
        sure = ground(question, pumps, PassageIndex(services.library, minilm, min_score=0.0))
        assert sure.grounding == NOTES
        assert sure.notice is None
    finally:
        services.close()


def test_an_answer_the_router_left_to_the_base_model_says_why():
    from fieldkit.answers import Answer, Grounding, Source
    from fieldkit.commands.ask import answer_footer
    from fieldkit.router.router import Candidate, RouteDecision

    reason = 'an everyday question, not an expert\'s: nearer "How do I boil eggs?" (0.80)'
    decision = RouteDecision(None, None, 0.7, 0.2, [], 3.0, reason)
    abstained = Answer("How do I boil eggs?", "Boil them.", None, None, BASE, [], [], decision)
    assert answer_footer(abstained) == [f"(from the base model only: {reason})"]
    # the same through an agent, which sends Answer.to_dict()
    assert answer_footer(Answer.from_dict(abstained.to_dict())) == answer_footer(abstained)
    asked = Answer("How do I boil eggs?", "Boil them.", None, None, BASE, [], [])  # --base
    assert answer_footer(asked) == [
        "(from the base model only, picked with --base: it knows nothing of the packets' "
        "fields; check it before acting on it)"
    ]
    # notes left out by hand: no claim that the packet has none, nor of sources never read
    nine = [Unsupported("9 days", 13, 19)]
    bare = Answer("q", "Withhold for 9 days.", "poultry", "p", ADAPTER_ONLY, [], nine)
    assert answer_footer(bare, notes_off=True) == [
        "(from the adapter only: notes left out, --no-notes)",
        "unsupported by any source: 9 days",
    ]
    assert answer_footer(bare)[0] == "(from the adapter only: poultry carries no notes)"
    two = [Unsupported("9 days", 13, 19), Unsupported("5 days", 24, 30)]
    both = Answer("q", "Withhold for 9 days, or 5 days.", "poultry", "p", ADAPTER_ONLY, [], two)
    assert answer_footer(both, notes_off=True)[-1] == (  # no sources: no "them" to name
        "unsupported by any source: 9 days, 5 days (check it before acting on it)"
    )
    empty = Answer("q", "  ", None, None, BASE, [], [])
    assert answer_footer(empty)[0] == "(the model wrote no answer to this)"
    assert answer_footer(bare, cut_at=30)[-1] == (
        "(cut at 30 tokens, mid-answer: --max-tokens sets the limit)"
    )
    # an agent's reply keeps its generation numbers, so a cut answer is told as cut there too
    from fieldkit.engine.generation import GenerationResult

    cut = GenerationResult("Withhold for 9 days.", (5, 6), "k", 12, 30, 80.0, 20.0, 0.4, "length")
    sent = Answer.from_dict(replace(bare, result=cut).to_dict()).result
    assert sent == replace(cut, tokens=(), adapter="")
    # a gap answer is the record the notes found nearest, as written: nothing is generated
    near_record = Source("pumps", "p", "r3", 0.41, "Keep latrines 30 m away.", "Latrines?")
    gap = Answer(
        "q", near_record.text, "pumps", "p", GAP, [], [], nearest=[near_record], generated=False
    )
    assert gap.as_written
    assert answer_footer(gap) == [
        "(nothing generated: the nearest record as written)",
        "nearest record, as written above: pumps r3 (0.41)",  # its text is the answer
        "(to answer from it anyway: fieldkit ask --adapter pumps --passage r3 QUESTION)",
    ]
    assert gap.to_dict()["as_written"] is True
    assert Answer.from_dict(gap.to_dict()).as_written
    # a code the notes do not list: that sentence is the answer, the record shown unused
    unlisted = replace(gap, text="No answer is generated: the packet holds no record of E09.")
    assert not unlisted.as_written
    assert answer_footer(unlisted)[:2] == [
        "(nothing generated: the notes hold no record of it)",
        "nearest record, not used: pumps r3 (0.41): Keep latrines 30 m away.",  # its fact
    ]
    # an answer whose numbers are those of a passage shown but not given to the model
    unread = Source("pumps", "p", "r7", 0.38, "Prime with 2 litres.", "Priming?", read=False)
    copied = Answer("q", "Prime it with 2 litres.", "pumps", "p", NOTES, [near_record, unread], [])
    follows = (
        "its numbers are those of [2], which the model was not given, not of [1]: check that "
        "[2] answers the question"
    )
    assert copied.follows_unread == follows
    assert answer_footer(copied)[-1] == follows
    assert copied.to_dict()["follows_unread"] == follows
    backed = replace(copied, text="Keep it 30 m away, and prime it with 2 litres.")
    assert backed.follows_unread is None  # not all its numbers are in [2]
    assert replace(copied, text="Keep it 30 m away.").follows_unread is None  # [1] backs it
    # an answer with no number is not vouched for ("every number ... is in a source")
    plain = Answer("q", "Keep them apart.", "pumps", "p", NOTES, [near_record], [])
    assert answer_footer(plain) == ["[1] pumps r3 (0.41): Latrines? Keep latrines 30 m away."]
    # a code's plural is the code the source names (two HB-90s are HB-90 bags)
    assert support_check("Fill two HB-90s.", ["Fill the HB-90 liner."]) == []
    assert [u.text for u in support_check("Fill two HB-91s.", ["Fill the HB-90 liner."])] == [
        "HB-91s"
    ]
    # an answer none of whose numbers is in its sources most likely answers another question
    grounding = Grounding("q", "pumps", "p", NOTES, [], [near_record])
    wrong = finish(grounding, "Vaccinate at day 14 and again at day 24.")
    assert answer_footer(wrong)[1:] == [
        "unsupported by the sources: 14, 24 (no number of the answer is in them: "
        "check it before acting on it)",
        "[1] whole, to check the answer against: Latrines? Keep latrines 30 m away.",
    ]
    # the packet that came nearest can still be asked by name
    near = RouteDecision(None, None, 0.45, 0.1, [Candidate("grain", "g", 0.45)], 3.0, "no fit")
    crib = Answer("rats in the crib", "Get a cat.", None, None, BASE, [], [], near)
    assert answer_footer(crib) == [
        "(from the base model only: no fit)",
        "(to ask grain anyway: fieldkit ask --adapter grain QUESTION)",
    ]
    assert answer_footer(Answer.from_dict(crib.to_dict())) == answer_footer(crib)  # an agent
    far = RouteDecision(None, None, 0.3, 0.1, [Candidate("grain", "g", 0.3)], 3.0, "no fit")
    ringtone = Answer("my ringtone?", "Open settings.", None, None, BASE, [], [], far)
    assert answer_footer(ringtone) == ["(from the base model only: no fit)"]


def test_an_answer_is_called_wholly_unsupported_only_when_all_its_numbers_are() -> None:
    from fieldkit.support import none_supported

    def judged(text: str) -> bool:
        return none_supported(text, len(support_check(text, PASSAGES)))

    assert judged("Give it at day 14 and again at day 24.")  # neither is in a passage
    assert not judged("Dry it to 12.5%, not 13%.")  # one of the two is
    assert not judged("Give 2 doses.")  # one number alone: its mark says enough
    assert not judged("Nothing numeric here.")


def test_a_source_line_fits_the_terminal_it_is_printed_on():
    from fieldkit.answers import Answer, Source
    from fieldkit.commands.ask import SOURCE_CHARS, answer_footer

    long = Source("poultry", "p", "r34", 0.55, "A laying hen drinks about 250 mL. " * 12, "Water?")
    shown = Answer("q", "a", "poultry", "p", "notes", [long], [])
    [line, *_] = answer_footer(shown, columns=80)
    assert len(line) == 80
    assert line.endswith("...")
    [piped, *_] = answer_footer(shown)  # not a terminal: the passage's first characters
    assert len(piped) == len("[1] ") + len(long.label) + 2 + SOURCE_CHARS


def test_an_answer_with_marks_prints_the_record_it_read_whole():
    """A terminal cuts each source to one line, and `ask` cannot unfold it as the Ask
    screen does: when the answer states a number its record does not, the record it read
    follows whole, to check the answer against."""
    from fieldkit.answers import Answer, Source
    from fieldkit.commands.ask import answer_footer

    text = "Give 5 mL of vegetable oil by syringe, massage for 5 minutes. " * 4
    read = Source("poultry", "p", "r9", 0.8, text, "Impacted crop?")
    near = Source("poultry", "p", "r3", 0.6, "Dust the vent.", "Mites?", read=False)
    wrong = "Give 2 kg of maize bran."
    marked = Answer("q", wrong, "poultry", "p", "notes", [read, near], support_check(wrong, [text]))
    footer = answer_footer(marked, columns=80)
    whole = " ".join(read.full_text.split())
    assert footer[-1] == f"[1] whole, to check the answer against: {whole}"
    right = "Give 5 mL of vegetable oil."
    clean = Answer("q", right, "poultry", "p", "notes", [read, near], support_check(right, [text]))
    assert not any("whole" in line for line in answer_footer(clean, columns=80))
    both = replace(near, read=True)  # an answer in two parts read both records
    parts = f"[1] {wrong}\n\n[2] Dust it."
    two = Answer("q", parts, "poultry", "p", "notes", [read, both],
                 support_check(parts, [text, both.full_text]))  # fmt: skip
    assert answer_footer(two, columns=80)[-2:] == [
        f"[1] whole, to check the answer against: {whole}",
        "[2] whole, to check the answer against: Mites? Dust the vent.",
    ]


def test_a_range_both_of_whose_ends_are_unsupported_is_shown_as_one_mark():
    from fieldkit.support import shown_marks, support_check

    answer = "Boil it for 10 to 20 minutes, then cool it for 2-3 minutes, 5 or 6 times; 1 cup."
    spans = [(m.start, m.end) for m in support_check(answer, [])]
    assert shown_marks(answer, spans) == ["10 to 20 minutes", "2-3 minutes", "5 or 6", "1"]
    assert shown_marks(answer, spans[1:]) == ["20 minutes", "2-3 minutes", "5 or 6", "1"]


def test_a_long_question_says_first_that_reading_it_takes_a_while(noted_home, tiny_model_dir):
    from fieldkit.commands.ask import LONG_QUESTION

    base = ["--home", str(noted_home.root), "--model", str(tiny_model_dir), "ask", "--no-server"]
    question = "My hens stopped laying and drink less. " * (LONG_QUESTION // 38 + 1)
    result = CliRunner().invoke(main, [*base, "-", "--base", "--max-tokens", "2"], input=question)
    assert f"Reading a question of {len(question.strip()):,} characters" in result.stderr
    # the tiny model reads 2,048 tokens at once, fewer than this question takes: refused
    assert result.exit_code == 1, result.output
    assert "the model reads at most 2,048 at once: ask in fewer words." in result.stderr
    assert "Traceback" not in result.output
    short = CliRunner().invoke(main, [*base, "Why?", "--base", "--max-tokens", "2"])
    assert "Reading a question" not in short.stderr


CODE_NOTES = [
    Passage("e07", "E07 on the AV-750 means the dry-run sensor tripped.", "What is E07?"),
    Passage("e12", "E12 on the AV-750 means the controller overheated.", "What is E12?"),
    *PUMP_NOTES,
]


def test_a_code_the_notes_do_not_list_is_answered_without_the_model(
    home, make_packet, make_adapter, minilm, tiny_model_dir
):
    """The bug: asked about E09 where the notes list E07 and E12, the adapter wrote another
    code's meaning as E09's. The notes settle it: nothing is generated, and the answer says
    where to look instead."""
    fingerprint = model_fingerprint(tiny_model_dir)
    make_packet(home, name="pumps", notes=CODE_NOTES, base_fingerprint=fingerprint,
                adapter=make_adapter(1))  # fmt: skip
    library = Services.build(home.root, tiny_model_dir).library
    with Engine(tiny_model_dir) as engine:
        parts = Parts(engine, library, None, PassageIndex(library, minilm, min_cosine=0.0))
        got = answer(parts, "My AV-750 shows E09, what does it mean?", packet="pumps")
    library.close()
    assert got.grounding == GAP
    assert got.gap.startswith("The pumps packet has nothing on E09: its notes name E07 and E12")
    assert got.text.startswith("No answer is generated: the packet holds no record of E09.")
    assert (got.generated, got.note) == (False, "nothing generated: the notes hold no record of it")
    result = got.result  # no token generated, no adapter applied
    assert (result.tokens, result.generation_tokens, result.adapter) == ((), 0, None)
    assert got.unsupported == []
    assert got.to_dict()["generated"] is False
