"""Retrieval over packet notes: ranking on a small fixture, the cache, the coverage decision."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fieldkit.assets import assets_dir
from fieldkit.router.notices import (
    AS_WRITTEN,
    GAP_OPENING,
    caution_message,
    gap_message,
    nearest_as_written,
    unlisted_answer,
)
from fieldkit.router.ranking import (
    MIN_SPREAD_PASSAGES,
    READ_K,
    READ_LEAD,
    READ_WEIGHT,
    cover_score,
    other_ask_next,
    rank_scores,
    read_first,
    shown_scores,
    zscores,
)
from fieldkit.router.retrieval import DEFAULT_K, LEXICAL, PassageIndex
from fieldkit.router.words import code_family, same_family
from fieldkit.store.library import Library
from fieldkit.store.notes import Passage
from fieldkit.training.quality import domain_notes

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


def routine(text: str) -> list[Passage]:
    """Ten routine passages, n0-n9 (`text` with their number), that give a packet the spread
    its passages stand out from (MIN_SPREAD_PASSAGES)."""
    return [Passage(f"n{i}", text.format(i)) for i in range(10)]


@pytest.fixture
def store(home, make_packet, minilm, open_library):
    """Return a maker of a grain-store packet: (its record, a PassageIndex) for notes of
    the given passages and ten routine ones (`routine`)."""

    def make(passages: list[Passage]):
        notes = [*passages, *routine("Routine store check number {}.")]
        record = make_packet(home, name="grain", notes=notes)
        return record, PassageIndex(open_library(home), minilm)

    return make


def reader_never_called(question: str, texts) -> np.ndarray:
    raise AssertionError("the passages were read")


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


def test_a_reader_reorders_the_passages_ranked_first_when_none_leads(noted, minilm):
    """With a reader (the language model in use: answering.engine_reader) and no clear lead,
    the READ_K passages ranked first go in the order of their ranking plus how well the
    reader finds each explains the question; none below them is read, and coverage does
    not change."""
    library, record = noted
    index = PassageIndex(library, minilm)
    question = "eggs and feed for layers"
    z = zscores(rank_scores(index.scores(record.packet_id, question))[None])[0]
    assert np.diff(np.sort(z)[-2:])[0] < READ_LEAD  # no passage leads clearly
    plain = index.coverage(record.packet_id, question, k=len(NOTES))
    asked: list[tuple[str, list[str]]] = []

    def reader_double(question: str, texts) -> np.ndarray:  # stands in for the model: it
        asked.append((question, list(texts)))  # finds the third passage explains it best
        return np.array([-3.0, -3.0, 2.0])

    read = index.coverage(record.packet_id, question, k=len(NOTES), reader=reader_double)
    assert asked == [(question, [h.full_text for h in plain.hits[:READ_K]])]
    ids = [h.passage_id for h in plain.hits]
    assert [h.passage_id for h in read.hits] == [ids[2], ids[0], ids[1], *ids[READ_K:]]
    assert (read.covered, read.sure, read.score) == (plain.covered, plain.sure, plain.score)


def test_a_clear_lead_is_not_read():
    """read_first reads only when the first passage leads the second by less than
    READ_LEAD standard deviations; the reader's scores count READ_WEIGHT times."""
    passages = [Passage(f"p{i}", f"text {i}") for i in range(4)]
    order = np.array([0, 1, 2, 3])
    lead = np.array([1.0 + READ_LEAD, 1.0, 0.0, -2.0])
    assert list(read_first("q", order, lead, passages, reader_never_called)) == [0, 1, 2, 3]
    close = np.array([1.0, 1.0 - READ_LEAD / 2, 0.0, -2.0])
    gap = (1.0 + 0.01) / READ_WEIGHT  # enough to lift the third above the first

    def reader_double(question: str, texts) -> np.ndarray:  # prefers the third passage
        assert list(texts) == ["text 0", "text 1", "text 2"]
        return np.array([0.0, 0.0, gap])

    assert list(read_first("q", order, close, passages, reader_double)) == [2, 0, 1, 3]


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
    nearest = index.search(record.packet_id, GAPS[0], k=1)
    message = gap_message("poultry", nearest)
    assert message.startswith("The poultry packet has nothing on this; nearest: ")
    assert message.endswith(f"{nearest[0].title} {AS_WRITTEN}")
    assert GAP_OPENING.match(message)  # how benchmarks tell a gap answer
    assert nearest_as_written(nearest) == nearest[0].text  # the answer under it, as written
    assert nearest_as_written([]) is None  # no record to show: the adapter answers
    assert gap_message("poultry", []) == (
        "The poultry packet has nothing on this. Below is the adapter's answer, which no "
        "record was found close enough to vouch for."
    )


def test_a_packet_without_notes_has_nothing_to_search(
    home, make_packet, counting_embedder, open_library
):
    record = make_packet(home, name="plain")
    library = open_library(home)
    index = PassageIndex(library, counting_embedder)
    assert not index.has_notes(record.packet_id)
    assert index.search(record.packet_id, "anything?") == []
    assert not index.coverage(record.packet_id, "anything?").covered
    assert counting_embedder.texts == []  # nothing embedded at all


def test_removed_packets_leave_the_cache(noted, minilm):
    library, record = noted
    index = PassageIndex(library, minilm)
    index.search(record.packet_id, "feed?")
    library.remove("poultry")
    assert index.prune() == 1
    assert library.db["passage_embeddings"].count == 0


def test_a_rare_code_shared_with_the_nearest_passage_covers_the_question(
    home, make_packet, minilm, open_library
):
    notes = [
        Passage("e07", "E07 means the dry-run sensor tripped: the borehole ran dry.", "Code E07?"),
        Passage("e12", "E12 means the motor overheated; let it cool for 30 minutes.", "Code E12?"),
        *routine("Routine check number {} of the AV-750 controller."),
    ]
    record = make_packet(home, name="pumps", notes=notes)
    library = open_library(home)
    index = PassageIndex(library, minilm, min_score=9.0, min_partial=9.0, min_cosine=9.0)
    coverage = index.coverage(record.packet_id, "My screen says E07, what now?")
    assert coverage.covered
    assert coverage.by_code
    assert coverage.hits[0].passage_id == "e07"
    # a code that many passages name (a model number) proves nothing
    model = index.coverage(record.packet_id, "Is the AV-750 any good?")
    assert not model.covered
    assert not model.by_code


def test_a_code_the_asker_lacks_neither_covers_nor_moves_its_record_first(
    home, make_packet, minilm, open_library
):
    """The bug: "farmer has no gc-3, can table salt tell if maize is dry" put the GC-3
    record first, covered by its code, for a farmer who has no GC-3."""
    notes = [
        Passage("gc3", "Fill the GC-3 cup with maize, press the lid and read the moisture.",
                "How is the GC-3 meter used?"),
        Passage("salt", "Shake grain with dry salt in a jar: salt that sticks means the grain "
                "is too damp to store.", "How is the salt jar test done?"),
        *routine("Routine store check number {}."),
    ]  # fmt: skip
    record = make_packet(home, name="grain", notes=notes)
    library = open_library(home)
    index = PassageIndex(library, minilm, min_score=9.0, min_partial=9.0, min_cosine=9.0)
    for lacking in ("We have no GC-3 here, is the maize dry?", "without a gc-3, maize dry?"):
        coverage = index.coverage(record.packet_id, lacking)
        assert not coverage.by_code, lacking
        assert not coverage.covered, lacking
    having = index.coverage(record.packet_id, "Our GC-3 reads odd, is the maize dry?")
    assert having.by_code
    assert having.hits[0].passage_id == "gc3"
    blank = index.coverage(record.packet_id, "no GC-3 reading on the screen, is the maize dry?")
    assert blank.by_code, "the GC-3 is there: its reading is what is missing"
    assert blank.hits[0].passage_id == "gc3"


def test_the_record_about_a_device_the_asker_lacks_is_not_read(store):
    """The bug: "we dont have a GC-3, how to check grain dryness" put the GC-3 record
    first (its shorthand written out, "do not have" was not read as lacking), and a record
    about a device the asker has not got stayed first on its cosine."""
    notes = [
        Passage("gc3", "Fill the GC-3 cup with grain, press the grain key and read the "
                "moisture after 8 seconds.", "How do you check grain dryness with the GC-3?"),
        Passage("salt", "Shake grain with dry salt in a jar: salt that sticks means the grain "
                "is too damp to store.", "How is the salt jar test done?"),
    ]  # fmt: skip
    record, index = store(notes)
    asked = "how do we check grain dryness with the GC-3?"
    assert index.search(record.packet_id, asked)[0].passage_id == "gc3"
    for lacking in ("we dont have a GC-3, how to check grain dryness",
                    "without the GC-3 how do we check grain dryness?"):  # fmt: skip
        hits = index.search(record.packet_id, lacking, k=DEFAULT_K)
        assert hits[0].passage_id == "salt", lacking
        assert "gc3" not in [h.passage_id for h in hits[:DEFAULT_K]], lacking
    assert index.unknown_codes(record.packet_id, "we have no GC-5, is salt enough?") == ()
    assert index.unknown_codes(record.packet_id, "our GC-5 reads 14%") == ("GC-5",)


def test_a_device_many_records_name_or_its_makers_name_alone_is_lacked_too(store):
    """The bugs: "we have no SG-1 silo" put an SG-1 record first, since only a code that
    at most two records name was read as lacked, and four name the SG-1; "we dont have the
    SiloGuard" named no code at all, and the SiloGuard's own fumigation record answered."""
    notes = [
        Passage("sg1", "Well-dried grain keeps in a sealed SiloGuard SG-1 for up to 3 years.",
                "How long can grain stay in a SiloGuard SG-1 silo?"),
        Passage("size", "The SG-1 holds 1,000 kg of shelled maize and stands 1.8 m tall.",
                "What is the capacity of the SiloGuard SG-1?"),
        Passage("fumigated", "For the SG-1 a licensed fumigator places 1 Fumitab tablet per "
                "300 kg on the grain and seals the inlet.", "How is the SiloGuard silo fumigated?"),
        Passage("rats", "Fit metal rat guards on every leg of a crib; the SG-1 is rat-proof "
                "with its cap closed.", "How do you protect stored grain from rats?"),
        Passage("bags", "Maize in woven bags keeps about 3 months, in hermetic bags over 12 "
                "months.", "How long does maize keep in woven bags?"),
        Passage("fumitab", "Only a licensed fumigator applies Fumitab, 3 tablets per tonne "
                "under a gas-tight sheet for 7 days.", "How is grain fumigated with Fumitab?"),
    ]  # fmt: skip
    record, index = store(notes)

    def shown(question: str) -> list[str]:
        return [h.passage_id for h in index.search(record.packet_id, question)]

    assert shown("how long can maize keep in the SG-1 silo")[0] == "sg1"
    for lacking in ("we have no SG-1 silo, only bags, how long can the maize keep",
                    "we have no SG-1s, only bags, how long can the maize keep"):  # fmt: skip
        kept = shown(lacking)
        assert kept[0] == "bags", lacking
        assert not {"sg1", "size"} & set(kept), lacking
    for lacking in ("we dont have the SiloGuard, how do we fumigate the grain",
                    "we have no siloguards, how do we fumigate"):  # fmt: skip
        assert shown(lacking)[0] == "fumitab", lacking
    assert shown("the SiloGuard is new, how do we fumigate it")[0] == "fumigated"
    # lacked at one mention, asked about at the next: the asker wants to know of it
    assert shown("we have no SG-1 yet, how much maize does an SG-1 hold?")[0] == "size"


def test_the_passage_naming_a_rare_code_of_a_long_question_ranks_first(
    home, make_packet, minilm, open_library
):
    """The bug: a long question about a pump clicking on and off that also says the screen
    shows E07 cited the passages about the clicking, not the E07 record."""
    notes = [
        Passage("e07", "E07 means the dry-run sensor tripped: the borehole ran dry.", "Code E07?"),
        Passage("click", "A pump clicking on and off every few minutes at the school borehole "
                "has a failing pressure switch; replace the switch.", "Pump clicking on and off?"),
        Passage("tap", "When nothing comes out of the tap, check the valve and the pipe "
                "from the tank to the tap.", "No water at the tap?"),
        *routine("Routine check number {} of the AV-750 controller."),
    ]  # fmt: skip
    record = make_packet(home, name="pumps", notes=notes)
    library = open_library(home)
    question = (
        "Yesterday the solar pump at the school borehole was clicking on and off every couple "
        "of minutes, and nothing comes out of the tap. Today the screen on the controller says "
        "E07. What do I do now?"
    )
    index = PassageIndex(library, minilm)
    rows = index.scores(record.packet_id, question)
    assert int(np.argmax(rank_scores(rows))) != 0  # by its words, another passage is nearer
    assert index.search(record.packet_id, question, 2)[0].passage_id == "e07"
    unread = index.coverage(record.packet_id, question, reader=reader_never_called)
    assert unread.hits[0].passage_id == "e07"  # a record named by its code is not read
    # the coverage check still judges the passage nearest by its words
    assert not index.coverage(record.packet_id, question).by_code


def test_a_code_a_passage_names_only_in_passing_does_not_move_it_first(
    home, make_packet, minilm, open_library
):
    """Only a record about the code (its title names it) moves first: the salinity record
    that mentions the EM38 meter in passing is not the answer to running an EM38 survey."""
    notes = [
        Passage("map", "Walk the field in a grid with the conductivity meter held level, "
                "logging a reading every 10 m, then draw the soil zones.",
                "How do you map soil differences across a field?"),
        Passage("salt", "Flush the salts below the roots with 100 mm of water; check the "
                "result with the EM38 meter.", "How do you manage soil salinity?"),
        *routine("Routine soil check number {}."),
    ]  # fmt: skip
    record = make_packet(home, name="soils", notes=notes)
    library = open_library(home)
    index = PassageIndex(library, minilm)
    question = "How is an EM38 survey run to map soil differences across a field?"
    assert index.search(record.packet_id, question, 1)[0].passage_id == "map"


def test_a_code_the_notes_never_name_is_never_covered_surely(
    home, make_packet, minilm, open_library
):
    """A question naming a code no passage names asks about something the notes do not
    know: never covered by a code it shares (AV-750) nor surely. Of a family the notes
    list (E09, where they name E07 and E12), it is not covered at all, and the gap's notice
    names the family; of another (PX-3), the passages are used under a caution naming it."""
    notes = [
        Passage("e07", "E07 on the AV-750 means the dry-run sensor tripped.", "Code E07?"),
        Passage("e12", "E12 on the AV-750 means the motor overheated.", "Code E12?"),
        *routine("Routine check number {} of the pump."),
    ]
    record = make_packet(home, name="pumps", notes=notes)
    library = open_library(home)
    index = PassageIndex(library, minilm, min_score=0.0, min_partial=0.0, min_cosine=0.0)
    question = "My AV-750 shows E09 and a blinking light, what does it mean?"
    assert index.unknown_codes(record.packet_id, question) == ("E09",)
    assert index.unknown_codes(record.packet_id, "Is it e-07 or E07? b4 12V 2nd") == ()
    # typed on a phone: a known code in lower case is known, an unknown one is not
    assert index.unknown_codes(record.packet_id, "my av750 shows e07") == ()
    assert index.unknown_codes(record.packet_id, "can i fit an av900 instead") == ("av900",)
    # a plural is the code it counts: two AV-750s are two AV-750 controllers
    assert index.unknown_codes(record.packet_id, "we have two AV-750s, both show E07") == ()
    assert index.unknown_codes(record.packet_id, "we have two AV-900s") == ("AV-900s",)
    # one lower-case letter and digits: a code only of a letter the notes' codes have
    assert index.unknown_codes(record.packet_id, "pump showing e09 b4 m3 x12") == ("e09",)
    assert not index.coverage(record.packet_id, "aquavolt showing e09 what is it").covered
    gap = index.coverage(record.packet_id, question)
    assert not gap.covered  # every threshold is 0 here: the family decides
    assert (gap.unknown_codes, gap.missing_codes, gap.family) == (
        ("E09",),
        ("E09",),
        ("E07", "E12"),
    )
    message = gap_message("pumps", gap.hits, gap.missing_codes, gap.family)
    assert message.startswith(
        "The pumps packet has nothing on E09: its notes name E07 and E12; nearest: "
    )
    other = index.coverage(record.packet_id, "The PX-3 valve by the AV-750 drips, what now?")
    assert other.covered  # the passages are still used
    assert not other.sure
    assert not other.by_code
    assert (other.unknown_codes, other.missing_codes) == (("PX-3",), ())
    message = caution_message("pumps", other.hits, other.unknown_codes)
    assert message.startswith("The pumps notes never mention PX-3; ")
    known = index.coverage(record.packet_id, "My AV-750 shows E07, what now?")
    assert known.by_code
    assert known.sure


def test_codes_of_one_family_share_their_letters():
    assert [code_family(c) for c in ("E09", "TL-30", "tl50", "hk4", "AV-750H", "12V", "b")] == [
        "e", "tl", "tl", "hk", "av", None, None,
    ]  # fmt: skip
    named = ["E07", "TL-30", "E-12", "e12", "HK-2"]
    assert same_family(["E09"], named) == ["E07", "E-12"]  # e12 is E-12 again
    assert same_family(["tl40", "hk9"], named) == ["TL-30", "HK-2"]
    assert same_family(["GC-3"], named) == []
    assert gap_message("pumps", [], ["E09"], [f"E{n:02}" for n in range(1, 10)]) == (
        "The pumps packet has nothing on E09: its notes name E01, E02, E03, E04, E05, E06 "
        "and 3 more."
    )  # no guess follows: nothing is generated (notices.unlisted_answer)
    assert unlisted_answer(["E09"]).startswith("No answer is generated: the packet holds no")


def test_passages_rank_by_the_whole_question_and_its_sentences():
    """A neighbour that the whole question resembles a little more loses to the record that
    stands out for each of the question's sentences; a packet with too few passages for a
    spread ranks by the whole question alone."""
    rng = np.random.default_rng(0)
    rows = rng.uniform(0.30, 0.40, size=(3, 12))
    rows[0, 0], rows[0, 1] = 0.61, 0.60  # the whole question: the neighbour just ahead
    rows[1:, 1] = 0.58  # each sentence: the record well ahead of the rest
    assert int(np.argmax(rank_scores(rows))) == 1
    assert int(np.argmax(rank_scores(rows[:1]))) == 0  # one sentence: the whole question
    few = rows[:, : MIN_SPREAD_PASSAGES - 1]
    assert int(np.argmax(rank_scores(few))) == 0
    # The score shown beside each passage agrees with that order: the record shows the
    # higher one, though the whole question alone scores the neighbour higher.
    shown = shown_scores(rows)
    assert shown[1] > shown[0]
    assert rows[0, 0] > rows[0, 1]
    assert np.isclose(shown[1], (0.60 + 0.5 * 2 * 0.58) / 2)
    assert np.array_equal(shown_scores(rows[:1]), rows[0])
    assert np.array_equal(shown_scores(few), few[0])


def test_the_second_passage_answers_what_the_first_leaves():
    """A long question asking two things: the second passage is the one that stands out
    where the first does not, not the neighbour that resembles every sentence a little."""
    rng = np.random.default_rng(1)
    rows = rng.uniform(0.30, 0.40, size=(3, 12))
    rows[:, 0] = [0.70, 0.75, 0.45]  # the first record: the whole question, its own ask
    rows[:, 1] = [0.55, 0.52, 0.50]  # a neighbour: a little of everything
    rows[:, 2] = [0.50, 0.36, 0.72]  # the other ask's record
    order = np.argsort(-rank_scores(rows), kind="stable")
    assert list(order[:2]) == [0, 1]  # ranked plainly, the neighbour comes second
    again = other_ask_next(order, rows)
    assert list(again[:3]) == [0, 2, 1]
    assert sorted(again) == list(range(12))


def test_a_question_of_two_asks_is_shown_both_records(home, make_packet, minilm, open_library):
    """The bug: asked about a layer ration and coccidiosis at once, the poultry notes showed
    the ration record and a record on soft-shelled eggs, nothing on coccidiosis."""
    notes = domain_notes(assets_dir() / "demo", "poultry")
    record = make_packet(home, name="poultry", notes=notes)
    library = open_library(home)
    question = (
        "I feed my 200 Sasina Red layers by eye and the egg numbers have dropped. How much "
        "feed should each hen get a day, how much protein and calcium should it contain, and "
        "how much does underfeeding cost me in eggs? I keep free-range chicks and last year "
        "many died with bloody droppings in their second week. What should I give them to "
        "prevent it, in which weeks, and what should I watch about the litter?"
    )
    ration = "What daily ration do Sasina Red layers need?"
    coccidiosis = "How do you prevent coccidiosis in free-range chicks?"
    index = PassageIndex(library, minilm)
    rows = index.scores(record.packet_id, question)
    plain = [notes[i].title for i in np.argsort(-rank_scores(rows), kind="stable")[:2]]
    assert coccidiosis not in plain
    shown = [h.title for h in index.search(record.packet_id, question, 2)]
    assert sorted(shown) == sorted([ration, coccidiosis])


MORE_NOTES = [
    *NOTES,
    Passage("r6", "Clean drinkers daily and scrub them with Virocid-P once a week.",
            "How often are drinkers cleaned?"),
    Passage("r7", "Brood chicks at 32 C for the first week, then lower 3 C each week.",
            "What brooding temperature do chicks need?"),
    Passage("r8", "Deworm village hens with Vermipol at 1 g per litre for 3 days.",
            "How do you deworm hens?"),
    Passage("r9", "Candle eggs on day 7 and day 18 of incubation.",
            "When are incubated eggs candled?"),
    Passage("r10", "Keep a footbath of Virocid-P at 1:100 at the house door, changed twice a week.",
            "What goes in the footbath?"),
]  # fmt: skip


def test_coverage_has_a_cautious_middle(home, make_packet, minilm, open_library):
    """Between the two thresholds the passages are used (covered) but not sure; below the
    lower one, not covered; above the upper one, sure."""
    record = make_packet(home, name="poultry", notes=MORE_NOTES)
    library = open_library(home)
    question = "My chicks are a week old, how warm should the brooder be and for how long?"
    score = PassageIndex(library, minilm).coverage(record.packet_id, question).score
    cases = {  # (lower, upper): (covered, sure)
        (score - 0.02, score - 0.01): (True, True),
        (score - 0.01, score + 0.01): (True, False),
        (score + 0.01, score + 0.02): (False, False),
    }
    for (lower, upper), expected in cases.items():
        index = PassageIndex(library, minilm, min_score=upper, min_partial=lower)
        coverage = index.coverage(record.packet_id, question)
        assert (coverage.covered, coverage.sure) == expected, (lower, upper)
        assert coverage.hits[0].passage_id == "r7"
    rows = index.scores(record.packet_id, question)  # what the decision is made on
    assert rows.shape == (1, len(MORE_NOTES))  # one sentence: the whole question alone
    assert cover_score(rows) == pytest.approx(score)
    message = caution_message("poultry", coverage.hits)
    assert message.startswith("The poultry notes may not answer this; ")
    assert message.endswith("closest record: What brooding temperature do chicks need?")


def test_a_passages_phrasings_are_matched_too_and_bring_their_own_thresholds(
    home, make_packet, minilm, open_library
):
    asked = "what do i do when the hen stops laying and sits on eggs all day"
    broody = Passage(
        "r6",
        "Give a broody hen no eggs and move her to a wire-floored cage for 3 days.",
        "How should a broody hen be managed?",
    )
    plain = make_packet(home, name="plain", notes=[*NOTES, broody])
    phrased = make_packet(home, name="phrased", notes=[*NOTES, replace(broody, asked=(asked,))])
    library = open_library(home)
    index = PassageIndex(library, minilm, phrased=(0.95, 0.85))
    without = index.scores(plain.packet_id, asked)[0, 5]
    with_them = index.scores(phrased.packet_id, asked)[0, 5]
    assert without < 0.8 < 0.99 < with_them  # its own phrasing: a cosine of 1
    # and every word of the question is the passage's, its phrasings' words counted
    assert with_them == pytest.approx(1.0 + LEXICAL, abs=1e-3)
    assert index.thresholds(plain.packet_id) == (index.min_score, index.min_partial)
    assert index.thresholds(phrased.packet_id) == (0.95, 0.85)
    assert index.search(phrased.packet_id, asked, k=1)[0].passage_id == "r6"
