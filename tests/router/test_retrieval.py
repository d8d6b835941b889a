"""Retrieval over packet notes: ranking on a small fixture, the cache, the coverage decision."""

from __future__ import annotations

import pytest

from fieldkit.router.retrieval import PassageIndex, gap_message
from fieldkit.store.library import Library
from fieldkit.store.notes import Passage

NOTES = [
    Passage("r1", "Chicks get the eye-drop vaccine at day 5 and a booster at day 26.",
            "When should chicks be vaccinated?"),
    Passage("r2", "Give layers 120 g of feed per bird per day, with crushed shell for calcium.",
            "How much feed does a laying hen need?"),
    Passage("r3", "Allow 4 birds per square metre of floor in a deep-litter house.",
            "How many birds fit in a poultry house?"),
    Passage("r4", "Wattle-rot shows as purple spots on the wattles; separate the hen the same day.",
            "What are the signs of wattle-rot?"),
    Passage("r5", "Collect eggs twice a day and store them pointed end down below 20 C.",
            "How should eggs be stored?"),
]  # fmt: skip
QUESTIONS = {
    "At what age do I give my chicks their vaccine drops?": "r1",
    "How many grams of feed should each layer get daily?": "r2",
    "How many birds can I keep per square metre of my poultry house floor?": "r3",
    "There are dark spots on my hen's wattles, what is it?": "r4",
    "What is the best way to keep eggs after collecting them?": "r5",
}
GAPS = [
    "How do I change the ringtone on my phone?",
    "What is the offside rule in football?",
]


@pytest.fixture
def noted(home, make_packet):
    record = make_packet(home, name="poultry", notes=NOTES)
    library = Library.open(home)
    yield library, record
    library.close()


def test_retrieval_ranks_the_right_passage_first(noted, minilm):
    library, record = noted
    index = PassageIndex(library, minilm)
    for question, expected in QUESTIONS.items():
        hits = index.search(record.packet_id, question, k=2)
        assert [h.passage_id for h in hits][0] == expected, question
        assert len(hits) == 2
        assert hits[0].score >= hits[1].score
        assert hits[0].text == next(p.text for p in NOTES if p.passage_id == expected)


def test_passage_vectors_are_cached_in_the_library(noted, counting_embedder):
    library, record = noted
    first = PassageIndex(library, counting_embedder)
    first.search(record.packet_id, "feed per hen?")
    assert first.embedded_packets == 1
    counting_embedder.texts.clear()
    second = PassageIndex(library, counting_embedder)  # a new process, the same database
    second.search(record.packet_id, "feed per hen?")
    assert second.embedded_packets == 0
    assert counting_embedder.texts == ["feed per hen?"]  # only the question is embedded
    assert library.db["passage_embeddings"].count == 2  # whole passages; titles and texts


def test_coverage_says_when_no_passage_covers_the_question(noted, minilm):
    library, record = noted
    index = PassageIndex(library, minilm)
    for question in QUESTIONS:
        assert index.coverage(record.packet_id, question).covered, question
    for question in GAPS:
        coverage = index.coverage(record.packet_id, question)
        assert not coverage.covered, (question, coverage.best)
        assert coverage.hits  # the nearest passages are still given
    message = gap_message("poultry", index.search(record.packet_id, GAPS[0], k=1))
    assert message.startswith("The poultry packet has nothing on this; nearest: ")


def test_a_packet_without_notes_has_nothing_to_search(home, make_packet, counting_embedder):
    record = make_packet(home, name="plain")
    library = Library.open(home)
    try:
        index = PassageIndex(library, counting_embedder)
        assert not index.has_notes(record.packet_id)
        assert index.search(record.packet_id, "anything?") == []
        assert not index.coverage(record.packet_id, "anything?").covered
        assert counting_embedder.texts == []  # nothing embedded at all
    finally:
        library.close()


def test_removed_packets_leave_the_cache(noted, minilm):
    library, record = noted
    index = PassageIndex(library, minilm)
    index.search(record.packet_id, "feed?")
    library.remove("poultry")
    assert index.prune() == 1
    assert library.db["passage_embeddings"].count == 0


def test_a_rare_code_shared_with_the_nearest_passage_covers_the_question(home, make_packet, minilm):
    notes = [
        Passage("e07", "E07 means the dry-run sensor tripped: the borehole ran dry.", "Code E07?"),
        Passage("e12", "E12 means the motor overheated; let it cool for 30 minutes.", "Code E12?"),
        *[
            Passage(f"n{i}", f"Routine check number {i} of the AV-750 controller.")
            for i in range(10)
        ],
    ]
    record = make_packet(home, name="pumps", notes=notes)
    library = Library.open(home)
    try:
        index = PassageIndex(library, minilm, min_score=9.0, min_cosine=9.0)  # cosine never
        coverage = index.coverage(record.packet_id, "My screen says E07, what now?")
        assert coverage.covered
        assert coverage.by_code
        assert coverage.hits[0].passage_id == "e07"
        # a code that many passages name (a model number) proves nothing
        model = index.coverage(record.packet_id, "Is the AV-750 any good?")
        assert not model.covered
        assert not model.by_code
    finally:
        library.close()
