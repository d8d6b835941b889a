"""An answer that writes out another record of its packet than the one it was given: said
after the answer, in JSON, on the command line and through an agent's reply
(support.recited, answering.recites)."""

from __future__ import annotations

from fieldkit.answering import finish
from fieldkit.answers import NOTES, Answer, Grounding, Source
from fieldkit.commands.ask import answer_footer
from fieldkit.generating import in_parts, parts_of
from fieldkit.router.words import words_of
from fieldkit.store.notes import Passage
from fieldkit.support import RECITED_LEAD, RECITED_SHARE, recited

FEEDERS = Passage(
    "r5",
    "Hang one tube feeder and one bell drinker per 25 layers, at the height of the birds' backs.",
    "How many feeders and drinkers are needed per 100 layers?",
)
CLEANING = Passage(
    "r12",
    "Remove all litter, scrub with detergent, spray Virocid-P at 1:100 and leave the house "
    "empty for 14 days. Lime-wash the walls before spreading new litter.",
    "How should the poultry house be cleaned between batches?",
)
LIGHT = Passage("r7", "Give laying hens 16 hours of light a day.", "What lighting do layers need?")
NOTES_OF_PACKET = (FEEDERS, CLEANING, LIGHT)
RECITAL = (
    "Remove all litter, scrub with detergent, spray Virocid-P at 1:100 and leave the house "
    "empty for 14 days."
)


def source(passage: Passage, read: bool = True) -> Source:
    return Source("poultry", "p1", passage.passage_id, 0.6, passage.text, passage.title, read)


def grounding(*sources: Source, other_asks: tuple[str, ...] = ()) -> Grounding:
    return Grounding(
        "How many feeders for 300 layers?", "poultry", "p1", NOTES, [], list(sources),
        other_asks=other_asks, notes=NOTES_OF_PACKET,
    )  # fmt: skip


def test_a_text_that_writes_out_another_record_is_found():
    others = [CLEANING.full_text, LIGHT.full_text]
    assert recited(RECITAL, FEEDERS.full_text, others) == 0
    following = "Hang one tube feeder and one bell drinker per 25 layers."
    assert recited(following, FEEDERS.full_text, others) is None
    assert recited("Scrub it.", FEEDERS.full_text, others) is None  # too few words to tell
    assert recited(RECITAL, FEEDERS.full_text, []) is None
    # half its words in the other record, not RECITED_LEAD more than in its own record
    mixed = (
        "Hang one tube feeder and one bell drinker per 25 layers, then remove all litter, "
        "scrub with detergent, spray Virocid-P and leave the house empty."
    )
    words = words_of(mixed)
    in_other = len(words & words_of(CLEANING.full_text)) / len(words)
    in_own = len(words & words_of(FEEDERS.full_text)) / len(words)
    assert in_other >= RECITED_SHARE
    assert in_other - in_own < RECITED_LEAD
    assert recited(mixed, FEEDERS.full_text, others) is None


def test_an_answer_that_writes_out_another_record_says_so():
    done = finish(grounding(source(FEEDERS), source(LIGHT, read=False)), RECITAL)
    said = (
        "The answer writes out another poultry record, r12 (How should the poultry house be "
        "cleaned between batches?), not [1], the record found for this question: check it "
        "against [1]."
    )
    assert done.recites == said
    assert done.warnings == [said]
    assert answer_footer(done)[-1] == said
    assert done.to_dict()["recites"] == said
    assert Answer.from_dict(done.to_dict()).recites == said  # an agent's reply
    right = finish(grounding(source(FEEDERS)), "Hang one tube feeder per 25 layers.")
    assert right.recites is None
    assert right.warnings == []
    shown = finish(grounding(source(FEEDERS), source(CLEANING, read=False)), RECITAL)
    assert shown.recites is None  # a record shown beside it is follows_unread's to name


def test_each_part_is_checked_against_its_own_record():
    both = grounding(
        source(LIGHT), source(FEEDERS), other_asks=("How many feeders do I need?",)
    )  # fmt: skip
    text = in_parts("Give them 16 hours of light a day.", RECITAL)
    assert parts_of(text, 2) == ["Give them 16 hours of light a day.", RECITAL]
    assert finish(both, text).recites == (
        "Part [2] writes out another poultry record, r12 (How should the poultry house be "
        "cleaned between batches?), not the record it was given: check it against source [2]."
    )
    assert (
        finish(both, in_parts("Give them 16 hours of light.", "One feeder per 25.")).recites is None
    )


def test_parts_of_undoes_in_parts():
    assert parts_of("One part.", 1) == ["One part."]
    assert parts_of(in_parts("A.", "B.", "C."), 3) == ["A.", "B.", "C."]
    assert parts_of(in_parts("A."), 3) == ["A."]  # stopped before the second
    assert parts_of("No marks.", 2) == ["No marks."]
