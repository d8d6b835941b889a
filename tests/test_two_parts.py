"""A question that asks two (or three) things as many records answer: answered in as many
parts, one per record (fieldkit.router.ranking.other_asks, fieldkit.generating)."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest

from fieldkit.answering import Parts, answer, engine_reader, ground
from fieldkit.answers import NOTES, Answer
from fieldkit.assets import assets_dir
from fieldkit.engine.engine import Engine
from fieldkit.engine.generation import GenerationResult
from fieldkit.generating import FIRST_PART, astream, in_parts, joined, mark, part_options, stream
from fieldkit.router.ranking import (
    OTHER_ASK_LEAD,
    OTHER_ASK_MARGIN,
    OTHER_ASK_STANDOUT,
    in_asked_order,
    other_asks,
    own_ask,
    question_sentences,
)
from fieldkit.router.retrieval import PassageIndex
from fieldkit.services import Services
from fieldkit.store.models import model_fingerprint
from fieldkit.support import support_check
from fieldkit.training.quality import domain_notes

TWO_ASKS = (
    "We lost three hens to something overnight. What is the rule for disposing of dead "
    "birds? Also what do I dip the legs of birds with scaly leg mites in?"
)
OTHER_ASK = "Also what do I dip the legs of birds with scaly leg mites in?"
ONE_ASK = "How should dead birds be disposed of, and how deep is the pit?"


@pytest.mark.parametrize(
    ("question", "sentences"),
    [
        (  # two asks in one sentence: each its own, the first given its "?"
            "How do I pack them for the ride and how long can they stay in the carrier?",
            ["How do I pack them for the ride?", "how long can they stay in the carrier?"],
        ),
        (  # "and" before an auxiliary and its subject starts an ask too
            "We bought Hermabags. How do we seal them and can we use them again next year?",
            ["We bought Hermabags.", "How do we seal them?", "can we use them again next year?"],
        ),
        (  # a statement's "and" splits nothing: the sentence does not ask
            "I fed them and how they grew surprised me. What should I do now?",
            ["I fed them and how they grew surprised me.", "What should I do now?"],
        ),
        (  # "and" before no question word: one ask
            "What should I feed and water the chicks with?",
            [],
        ),
        (  # a clause that does not open as a question is not made one
            "My hens are coughing and what should I do about it?",
            ["My hens are coughing", "what should I do about it?"],
        ),
        (  # ", and" splits as before; the clause before it is left as it is
            "How full do I fill the bag, and how long before the insects die?",
            ["How full do I fill the bag", "how long before the insects die?"],
        ),
    ],
)
def test_two_asks_joined_by_and_are_two_sentences(question, sentences):
    assert question_sentences(question) == sentences


def test_two_asks_in_one_sentence_are_answered_in_two_parts(poultry):
    """The bug: asked in one sentence joined by "and", two asks of two records were one
    sentence to the ranking, and the answer read the first record alone."""
    library, index = poultry
    record = library.get("poultry")
    question = (
        "Our chicks arrive on Monday, so how many can I keep per square metre on the "
        "deep litter and when do they get the bursal fever vaccine?"
    )
    grounding = ground(question, record, index)
    asks = {
        "How much floor space do Kivu Gold broilers need in a deep-litter house?":
            "how many can I keep per square metre on the deep litter?",
        "When should chicks be vaccinated against bursal fever?":
            "when do they get the bursal fever vaccine?",
    }  # fmt: skip
    assert {s.title for s in grounding.sources[:2]} == set(asks)
    assert grounding.other_asks == (asks[grounding.sources[1].title],)
    assert [s.read for s in grounding.sources[:2]] == [True, True]


def test_two_asks_typed_in_shorthand_are_answered_in_two_parts(poultry):
    """Typed with "n" for "and", the two asks above split as written out, and the first
    part asks its own sentence alone: the model reads the question as the ranking did
    (fieldkit.router.shorthand), not the typed one, which no sentence of it matches."""
    library, index = poultry
    record = library.get("poultry")
    question = (  # the question above, as typed on a phone
        "Our chicks arrive on Monday, so how many can I keep per square metre on the "
        "deep litter n when do they get the bursal fever vax?"
    )
    grounding = ground(question, record, index)
    assert len(grounding.other_asks) == 1
    first = grounding.messages[-1]["content"].split("Question:")[-1]  # the first part's ask
    assert grounding.other_asks[0] not in first
    assert "deep litter" not in first
    assert "vaccine" in first
    assert "vax" not in first
    assert grounding.question == question  # shown as typed


def test_the_sentences_a_second_record_answers_apart():
    """The second passage answers apart the sentences where it stands out beyond the first,
    once it does so by OTHER_ASK_LEAD for one of them."""
    rng = np.random.default_rng(2)
    rows = rng.uniform(0.30, 0.32, size=(4, 12))  # the whole question, then three sentences
    rows[:, 0] = [0.70, 0.80, 0.75, 0.31]  # the first record: the first two sentences
    rows[:, 1] = [0.50, 0.31, 0.30, 0.80]  # the second: the third sentence alone
    sentences = ["Hens died.", "I must dispose of them.", "Then the scaly legs."]  # no "?"
    assert other_asks(rows, [0, 1], sentences) == [["Then the scaly legs."]]
    near = rows.copy()
    near[3, 1] = 0.325  # standing out by less than the lead: no second part
    z = (near[3] - near[3].mean()) / near[3].std()
    assert z[1] - z[0] < OTHER_ASK_LEAD
    assert other_asks(near, [0, 1], sentences) == []
    assert other_asks(rows[:1], [0, 1], []) == []  # one sentence: one ask


def test_asks_that_divide_between_two_records_are_answered_apart():
    """Two sentences ending in "?", the first record ahead for one and the second ahead
    for the other by OTHER_ASK_MARGIN, standing out by OTHER_ASK_STANDOUT: a second part,
    though its lead over the first is under OTHER_ASK_LEAD."""
    rows = np.tile(np.linspace(0.30, 0.36, 12), (3, 1))  # the others: an even spread
    rows[:, 0] = [0.60, 0.60, 0.45]  # the first record: best for the first ask
    rows[:, 1] = [0.50, 0.40, 0.49]  # the second: ahead for the second ask
    asks = ["How should I bury them?", "And the scaly legs?"]
    z = (rows[2] - rows[2].mean()) / rows[2].std()
    assert z[1] >= OTHER_ASK_STANDOUT
    assert OTHER_ASK_MARGIN <= z[1] - z[0] < OTHER_ASK_LEAD
    assert other_asks(rows, [0, 1], asks) == [["And the scaly legs?"]]
    statements = ["I should bury them.", "The scaly legs."]  # no ask, no second part
    assert other_asks(rows, [0, 1], statements) == []
    third = rows.copy()
    third[2, 5] = 0.52  # another record is best for the second ask: still these two apart
    assert other_asks(third, [0, 1], asks) == [["And the scaly legs?"]]
    close = rows.copy()
    close[2, 1] = 0.46  # the second a hair ahead of the first: under the margin, one part
    zc = (close[2] - close[2].mean()) / close[2].std()
    assert 0 < zc[1] - zc[0] < OTHER_ASK_MARGIN
    assert other_asks(close, [0, 1], asks) == []
    first_everywhere = rows.copy()
    first_everywhere[1, 1] = 0.65  # the second ahead for both asks: nothing divides them
    assert other_asks(first_everywhere, [0, 1], asks) == []


def test_three_asks_of_three_records_are_answered_in_three_parts():
    """Three sentences ending in "?", each best answered by its own record: three parts,
    each sentence answered by the record best for it; no more than MOST_PARTS; and a third
    record that would take every sentence of the second is not added."""
    rows = np.tile(np.linspace(0.30, 0.36, 12), (4, 1))  # the others: an even spread
    rows[:, 0] = [0.60, 0.70, 0.40, 0.40]  # the first record: the first ask
    rows[:, 1] = [0.50, 0.40, 0.70, 0.40]  # the second: the second ask
    rows[:, 2] = [0.50, 0.40, 0.40, 0.70]  # the third: the third ask
    asks = ["What is it?", "How do I treat it?", "And the visitors?"]
    assert other_asks(rows, [0, 1, 2], asks) == [["How do I treat it?"], ["And the visitors?"]]
    assert other_asks(rows, [0, 1, 2], asks, most=2) == [["How do I treat it?"]]
    assert other_asks(rows, [0, 1], asks) == [["How do I treat it?"]]  # two passages found
    steals = rows.copy()
    steals[2, 2] = 0.75  # the third ahead of the second for its ask too: the second empty
    assert other_asks(steals, [0, 1, 2], asks) == [["How do I treat it?"]]
    assert own_ask(" ".join(asks), ["How do I treat it?", "And the visitors?"]) == "What is it?"


def test_the_first_part_answers_what_the_second_does_not():
    """The bug: asked the whole question, the first record's adapter recited the second
    record (a fridge move answered with the wall-gap record, twice). The first part is
    asked the sentences the second part does not answer."""
    question = "We are moving the fridge. How do we carry it? How level must it be?"
    assert own_ask(question, ["How level must it be?"]) == (
        "We are moving the fridge. How do we carry it?"
    )
    assert own_ask(question, []) == question  # one part: the whole question
    every = question_sentences(question)
    assert own_ask(question, every) == question  # nothing left: the whole question


def test_the_parts_follow_the_order_of_the_asks():
    """The parts of an answer come in the order of the first sentence each answers: a
    record the whole question ranks first, but which answers its last ask, answers last."""
    asks = ["What is it?", "How do I treat it?", "And the visitors?"]
    assert in_asked_order([["How do I treat it?"]], asks[:2]) == ([0, 1], [["How do I treat it?"]])
    moved = ["Three hens died, how do I get rid of them?", "And the scaly legs?"]
    assert in_asked_order([moved[:1]], moved) == ([1, 0], [moved[1:]])
    told = ["We lost three hens.", "How do I get rid of them?", "Also the scaly legs?"]
    order, after = in_asked_order([told[:2]], told)  # the first part: the scaly legs
    assert (order, after) == ([1, 0], [told[2:]])
    assert own_ask(" ".join(told), after[0]) == "We lost three hens. How do I get rid of them?"
    kept = in_asked_order([told[1:2]], told)  # what the asker tells is the first part's
    assert kept == ([0, 1], [told[1:2]])
    three = in_asked_order([[asks[0]], [asks[2]]], asks)  # the first part: the second ask
    assert three == ([1, 0, 2], [[asks[1]], [asks[2]]])
    weevils = ["My store has had weevils.", "How much Kilnox per bag?", "When can we eat it?"]
    assert in_asked_order([weevils[:1]], weevils) == ([0, 1], [weevils[:1]])  # told, no ask
    later = in_asked_order([asks[2:], asks[1:2]], asks)  # the first stays, the others swap
    assert later == ([0, 2, 1], [asks[1:2], asks[2:]])
    every = [asks[:1], asks[1:]]  # the other parts take every sentence: the first stays
    assert in_asked_order(every, asks) == ([0, 1, 2], every)
    assert in_asked_order([], asks) == ([0], [])


def test_an_answer_in_parts_answers_the_first_ask_first(poultry):
    """The bug: asked how to get rid of dead birds and then about scaly legs, the answer
    read the scaly-leg record first, since it ranks first for the whole question."""
    library, index = poultry
    question = (
        "Three of my hens died overnight, how should I get rid of the dead birds? "
        "Also what do I dip the legs of birds with scaly leg mites in?"
    )
    grounding = ground(question, library.get("poultry"), index)
    titles = [s.title for s in grounding.sources[:2]]
    assert titles == ["How should dead birds be disposed of?", "How do you treat scaly leg mites?"]
    assert grounding.other_asks == (OTHER_ASK,)
    assert "dead birds" in grounding.messages[-1]["content"].split("Question:")[-1]


def test_two_results_make_one():
    first = GenerationResult("A.", (1, 2), "k", 10, 2, 100.0, 20.0, 0.5, "stop")
    second = GenerationResult("B.", (3,), "k", 30, 1, 100.0, 10.0, 0.25, "length")
    both = joined([first, second])
    assert both.text == "[1] A.\n\n[2] B." == in_parts("A.", "B.")
    assert (both.tokens, both.prompt_tokens, both.generation_tokens) == ((1, 2, 3), 40, 3)
    assert both.prompt_tps == pytest.approx(40 / (0.1 + 0.3))
    assert both.generation_tps == pytest.approx(3 / (0.1 + 0.1))
    assert (both.swap_ms, both.finish_reason) == (0.75, "length")
    cut_first = joined(
        [replace(first, finish_reason="length"), replace(second, finish_reason="stop")]
    )
    assert cut_first.finish_reason == "length"  # a first part cut at its half is a cut answer
    alone = joined([GenerationResult("A", (1,), "k", 5, 1, 0.0, 0.0, 0.0, "cancelled")])
    assert (alone.text, alone.prompt_tps, alone.finish_reason) == ("[1] A", 0.0, "cancelled")


def test_the_parts_share_the_answers_token_budget():
    """The first part may use half of max_tokens (rounded up), the second what is left; no
    part follows a cancelled one or a spent budget, nor a second one."""

    def done(tokens: int, reason: str = "stop") -> GenerationResult:
        return GenerationResult("x", (), None, 1, tokens, 1.0, 1.0, 0.0, reason)

    options = {"max_tokens": 9, "clean": True}
    assert part_options(options, []) == {"max_tokens": 5, "clean": True}
    assert part_options(options, [done(2)]) == {"max_tokens": 7, "clean": True}
    assert part_options(options, [done(5)])["max_tokens"] == 4
    assert part_options({"max_tokens": 1}, [done(1)]) is None  # spent
    assert part_options(options, [done(2, "cancelled")]) is None
    assert part_options(options, [done(2), done(2)]) is None
    assert part_options({}, [])["max_tokens"] == 128  # half the engine's default
    assert part_options(options, [], 3)["max_tokens"] == 3  # a third each for three parts
    assert part_options(options, [done(1)], 3)["max_tokens"] == 4  # half of what is left
    assert part_options(options, [done(1), done(4)], 3)["max_tokens"] == 4  # the rest
    assert part_options(options, [done(1), done(1), done(1)], 3) is None


@pytest.fixture
def poultry(home, make_packet, make_adapter, tiny_model_dir, minilm):
    notes = domain_notes(assets_dir() / "demo", "poultry")
    fingerprint = model_fingerprint(tiny_model_dir)
    make_packet(home, name="poultry", notes=notes, base_fingerprint=fingerprint,
                adapter=make_adapter(1))  # fmt: skip
    services = Services.build(home.root, tiny_model_dir)
    yield services.library, PassageIndex(services.library, minilm)
    services.close()


def test_a_question_of_two_asks_is_answered_in_two_parts(poultry, tiny_model_dir):
    """The bug: asked how to dispose of dead birds and how to treat scaly legs, the answer
    came from the disposal record alone; the scaly-leg record was shown, never read. (The
    first record leads clearly here, so the model does not reorder them by reading.)"""
    library, index = poultry
    record = library.get("poultry")
    single = ground(ONE_ASK, record, index)
    assert (single.also, single.other_asks) == ([], ())
    assert [s.read for s in single.sources] == [True, False]
    adapter = library.load_adapter(record)
    with Engine(tiny_model_dir) as engine:
        grounding = ground(TWO_ASKS, record, index, reader=engine_reader(engine))  # as `ask`
        got = answer(Parts(engine, library, None, index), TWO_ASKS, packet="poultry",
                     max_tokens=8)  # fmt: skip
        first = engine.answer(grounding.messages, adapter, max_tokens=4, clean=True)  # half
        left = 8 - first.generation_tokens  # the second part: what the first left
        second = engine.answer(grounding.also[0], adapter, max_tokens=left, clean=True)
        chunks = list(stream(engine, grounding, adapter, max_tokens=8, clean=True))
    assert grounding.grounding == NOTES
    assert [s.title for s in grounding.sources] == [
        "How should dead birds be disposed of?",
        "How do you treat scaly leg mites?",
    ]
    assert [s.read for s in grounding.sources] == [True, True]
    assert grounding.other_asks == (OTHER_ASK,)
    prompt = grounding.also[0][0]["content"]
    assert "Scalex oil" in prompt
    assert OTHER_ASK in prompt
    assert "1.2 m" not in prompt
    own = grounding.messages[0]["content"]  # the first part: the rest of the question
    assert "1.2 m" in own
    assert "dead birds" in own
    assert "scaly leg" not in own
    assert got.text == in_parts(first.text, second.text)
    assert got.result.generation_tokens <= 8  # the parts share the answer's budget
    assert got.text.startswith(FIRST_PART)
    assert mark(2) in got.text
    assert "".join(c.text for c in chunks) == chunks[-1].result.text == got.text
    assert got.unsupported == support_check(got.text, [s.full_text for s in got.sources])
    assert got.to_dict()["other_ask"] == OTHER_ASK
    assert got.to_dict()["other_asks"] == [OTHER_ASK]
    assert Answer.from_dict(got.to_dict()).other_asks == (OTHER_ASK,)  # an agent's reply


async def test_the_agent_streams_both_parts_and_a_cancel_ends_after_the_first(
    poultry, tiny_model_dir
):
    library, index = poultry
    record = library.get("poultry")
    grounding = ground(TWO_ASKS, record, index)
    adapter = library.load_adapter(record)
    with Engine(tiny_model_dir) as engine:
        synced = list(stream(engine, grounding, adapter, max_tokens=6))
        chunks = [c async for c in astream(engine, grounding, adapter, max_tokens=6)]
        cancel = threading.Event()
        cancel.set()
        stopped = list(stream(engine, grounding, adapter, max_tokens=6, cancel=cancel))
    assert "".join(c.text for c in chunks) == chunks[-1].result.text
    assert chunks[-1].result.text == synced[-1].result.text
    assert stopped[-1].result.finish_reason == "cancelled"
    assert mark(2) not in "".join(c.text for c in stopped)
    assert stopped[-1].result.text.startswith(FIRST_PART)
