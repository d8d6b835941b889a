"""An answer whose opening writes out another record of its packet than the one it was
given: the rest is not generated, and the part is its own record as written
(support.opening, generating.Opening, answering.finish)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

from fieldkit.answering import finish
from fieldkit.answers import Answer
from fieldkit.commands.ask import answer_footer, speed_line
from fieldkit.engine.generation import GenerationChunk, GenerationResult
from fieldkit.generating import (
    Opening,
    WrittenResult,
    _aopened,
    _opened,
    as_streamed,
    in_parts,
    joined,
    openings,
)
from fieldkit.support import NUMBERS_FOUND, opening
from tests.test_recited import CLEANING, FEEDERS, LIGHT, RECITAL, grounding, source

DONE = GenerationResult("", (1, 2, 3), "k", 9, 3, 90.0, 30.0, 1.5, "stop")
OWN_ANSWER = "Hang one tube feeder per 25 layers. Raise it as they grow."


def test_the_opening_is_held_until_its_sentences_hold_enough_words():
    assert opening("Remove all") is None  # no sentence ended yet
    assert opening("Yes. ") is None  # ended, with too few words to tell
    assert opening("Yes. Remove all litter and scrub. Then") == "Yes. Remove all litter and scrub."
    assert opening("Remove all", done=True) == "Remove all"  # it ended there
    assert opening("Line one with four words\nmore") == "Line one with four words\n"


def test_an_opening_that_writes_out_another_record_stops_the_part():
    check = Opening(source(FEEDERS), [CLEANING, LIGHT])
    assert check.feed("Remove all litter, ") == ""  # held
    assert check.feed("scrub with detergent, spray Virocid-P at 1:100. Then") == ""
    assert check.other == CLEANING
    assert check.feed("more words") == ""
    result = check.result(None)
    assert (result.text, result.finish_reason, result.recited) == (
        FEEDERS.text,
        "stop",
        ((1, "r12"),),
    )


def test_an_opening_that_follows_its_own_record_is_let_through():
    check = Opening(source(FEEDERS), [CLEANING, LIGHT])
    assert check.feed("Hang one tube feeder ") == ""
    assert check.feed("per 25 layers. Raise") == "Hang one tube feeder per 25 layers. Raise"
    assert check.other is None
    assert check.feed(" it.") == " it."


def written() -> WrittenResult:
    """The result of a part given FEEDERS that began to write out CLEANING."""
    check = Opening(source(FEEDERS), [CLEANING])
    check.feed(RECITAL, done=True)
    return check.result(DONE)


def _chunks(texts: list[str], closed: list[bool]) -> Iterator[GenerationChunk]:
    try:
        for text in texts:
            yield GenerationChunk(text)
        yield GenerationChunk("", DONE)
    finally:
        closed.append(True)


def test_a_stream_that_writes_out_another_record_is_closed_and_given_its_record():
    closed: list[bool] = []
    check = Opening(source(FEEDERS), [CLEANING, LIGHT])
    got = list(_opened(_chunks([RECITAL, " Lime-wash the walls.", " More."], closed), check))
    assert closed == [True]  # leaving the engine's stream cancels the generation
    assert [c.text for c in got] == [FEEDERS.text, ""]
    assert isinstance(got[-1].result, WrittenResult)
    assert got[-1].result.text == FEEDERS.text
    assert got[-1].result.recited == ((1, "r12"),)


def test_a_stream_that_follows_its_record_is_passed_on_whole():
    closed: list[bool] = []
    check = Opening(source(FEEDERS), [CLEANING, LIGHT])
    texts = ["Hang one tube feeder per 25 layers.", " Raise it as they grow."]
    got = list(_opened(_chunks(texts, closed), check))
    assert "".join(c.text for c in got) == OWN_ANSWER
    assert got[-1].result is DONE
    assert closed == [True]


def test_a_short_answer_is_decided_when_it_ends():
    check = Opening(source(FEEDERS), [CLEANING, LIGHT])
    got = list(_opened(_chunks(["One per 25."], []), check))
    assert [c.text for c in got] == ["One per 25.", ""]  # too few words: as written
    assert got[-1].result is DONE


def test_the_async_stream_does_the_same():
    async def chunks(texts: list[str]) -> AsyncIterator[GenerationChunk]:
        for text in texts:
            yield GenerationChunk(text)
        yield GenerationChunk("", DONE)

    async def run(texts: list[str]) -> list[GenerationChunk]:
        check = Opening(source(FEEDERS), [CLEANING, LIGHT])
        return [c async for c in _aopened(chunks(texts), check)]

    recited = asyncio.run(run([RECITAL]))
    assert [c.text for c in recited] == [FEEDERS.text, ""]
    assert recited[-1].result.recited == ((1, "r12"),)
    kept = asyncio.run(run([OWN_ANSWER]))
    assert "".join(c.text for c in kept) == OWN_ANSWER


def test_only_records_not_shown_are_checked_against():
    checks = openings(grounding(source(FEEDERS), source(CLEANING, read=False)))
    assert [c.own.passage_id for c in checks] == ["r5"]
    assert [p.passage_id for p in checks[0].others] == ["r7"]  # r12 is shown: follows_unread
    assert openings(grounding(source(FEEDERS), source(CLEANING), source(LIGHT))) == []


def test_the_answer_is_its_record_as_written_and_says_why():
    g = grounding(source(FEEDERS), source(LIGHT, read=False))
    done = finish(g, FEEDERS.text, result=written())
    said = (
        "Nothing generated: the adapter began to write out another poultry record, r12 (How "
        "should the poultry house be cleaned between batches?), not [1], the record found for "
        "this question; the answer is [1] as written."
    )
    assert (done.text, done.generated, done.written_instead) == (FEEDERS.text, False, (1,))
    assert done.recites == said
    assert done.note == "nothing generated: the record found, as written"
    assert done.unsupported == []
    assert answer_footer(done)[-1] == said
    assert NUMBERS_FOUND not in answer_footer(done)  # a record as written vouches for nothing
    back = Answer.from_dict(done.to_dict())  # an agent's reply
    assert (back.written_instead, back.recites, back.generated) == ((1,), said, False)
    # the swap and speed of a generation stopped at its opening are not the answer's
    assert speed_line(done) == "[poultry · nothing generated]"
    plain = finish(g, OWN_ANSWER, result=DONE)
    assert (plain.generated, plain.written_instead, plain.recites) == (True, (), None)
    assert speed_line(plain, by="agent") == "[poultry · swap 1.5 ms · 30.0 tok/s · agent]"


def test_a_part_given_as_written_is_numbered_as_the_parts_are():
    both = grounding(source(LIGHT), source(FEEDERS), other_asks=("How many feeders?",))
    whole = joined([replace(DONE, text="Give them 16 hours of light."), written()])
    assert whole.recited == ((2, "r12"),)
    done = finish(both, whole.text, result=whole)
    assert done.text == in_parts("Give them 16 hours of light.", FEEDERS.text)
    assert done.generated  # the first part is the model's
    assert "tok/s" in speed_line(done)
    assert done.written_instead == (2,)
    assert done.recites.startswith("Part [2] is source [2] as written: the adapter began")


def test_the_quality_harness_reads_a_held_answer_as_the_stream_shows_it():
    one = grounding(source(FEEDERS), source(LIGHT, read=False))
    assert as_streamed(one, RECITAL) == (FEEDERS.text, ((1, "r12"),))
    assert as_streamed(one, OWN_ANSWER) == (OWN_ANSWER, ())
    both = grounding(source(LIGHT), source(FEEDERS), other_asks=("How many feeders?",))
    text = in_parts("Give them 16 hours of light a day.", RECITAL)
    assert as_streamed(both, text) == (
        in_parts("Give them 16 hours of light a day.", FEEDERS.text),
        ((2, "r12"),),
    )
