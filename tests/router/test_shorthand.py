"""Texting shorthand written out before the router and retrieval read a question."""

from __future__ import annotations

import numpy as np
import pytest

from fieldkit.home import Home
from fieldkit.router.everyday import everyday_questions
from fieldkit.router.retrieval import LEXICAL, PassageIndex
from fieldkit.router.router import Router
from fieldkit.router.shorthand import SHORTHAND, written_out
from fieldkit.store.notes import Passage
from tests.fixtures.packets import TEST_BASE_FINGERPRINT


@pytest.mark.parametrize(
    ("typed", "read"),
    [
        (
            "giving vax thru the drinkers tmrw, what to mix in n how fast",
            "giving vaccine through the drinkers tomorrow, what to mix in and how fast",
        ),
        ("whats the temp limit b4 i bin them", "what is the temperature limit before i bin them"),
        ("Dont know whats wrong w/ it", "Do not know what is wrong with it"),
        ("checked w/o a meter, 3 hrs ago", "checked without a meter, 3 hours ago"),
        ("u sure the valve r shut?", "you sure the valve are shut?"),
    ],
)
def test_shorthand_is_written_out(typed: str, read: str) -> None:
    assert written_out(typed) == read


@pytest.mark.parametrize(
    "kept",
    [
        "E07 and B4 on the screen",  # a code in capitals
        "R 200 a bag",  # a currency
        "give 5 u of insulin, 2 n of force",  # a unit after a number
        "U-bend and R&D",  # part of a longer token
        "inject im",  # intramuscular, not "I am"
        "How is the pump wired?",  # nothing to write out
    ],
)
def test_what_is_not_shorthand_is_kept(kept: str) -> None:
    assert written_out(kept) == kept


def test_writing_out_is_idempotent_and_no_expansion_is_itself_shorthand() -> None:
    for short, full in SHORTHAND.items():
        assert written_out(full) == full, short
        once = written_out(f"so {short} then")
        assert written_out(once) == once


def test_router_and_retrieval_read_shorthand_as_written_out(
    home: Home, make_packet, minilm, open_library
) -> None:
    """The router and the passage index score a question typed in shorthand exactly as the
    same question written out (the embedder alone reads "n" and "thru" as noise)."""
    notes = [
        Passage("click", "A pump that clicks on and off every few minutes has a failing "
                "pressure switch or a waterlogged tank.", "Why does the pump click on and off?"),
        Passage("dry", "E07 means the dry-run sensor tripped.", "What does E07 mean?"),
        *(Passage(f"r{i}", f"Routine pump check number {i}.", f"Check {i}?") for i in range(8)),
    ]  # fmt: skip
    record = make_packet(home, name="pumps", notes=notes)
    typed, read = (
        "why does the pump click thru the day n what does E07 mean?",
        "why does the pump click through the day and what does E07 mean?",
    )
    library = open_library(home)
    index = PassageIndex(library, minilm)
    assert (index.scores(record.packet_id, typed) == index.scores(record.packet_id, read)).all()
    assert index.scores(record.packet_id, typed).shape[0] == 3  # split at its "and"
    assert index.scores(record.packet_id, typed.replace(" n ", " ")).shape[0] == 1
    assert index.coverage(record.packet_id, typed) == index.coverage(record.packet_id, read)
    router = Router(library, minilm, TEST_BASE_FINGERPRINT)
    shorthand, written = router.route_many([typed, read])
    assert (shorthand.route, shorthand.score) == (written.route, written.score)


def test_a_phrasing_in_shorthand_is_read_written_out(
    home: Home, make_packet, minilm, open_library
) -> None:
    """A passage's other phrasings are in the users' voice, shorthand and all: they are
    read as the asker's question is, so the same words typed either way meet exactly."""
    notes = [
        Passage("click", "Replace the pressure switch.", "Why does the pump cycle?",
                asked=("pump clicks on n off all day",)),
        *(Passage(f"r{i}", f"Routine pump check number {i}.", f"Check {i}?") for i in range(8)),
    ]  # fmt: skip
    record = make_packet(home, name="pumps", notes=notes)
    library = open_library(home)
    index = PassageIndex(library, minilm)
    for typed in ("pump clicks on n off all day", "pump clicks on and off all day"):
        rows = index.scores(record.packet_id, typed)
        cosine = rows[0, 0] - LEXICAL * index._words(record.packet_id).overlap(typed)[0]
        assert cosine == pytest.approx(1.0, abs=1e-4), typed


def test_the_phrasings_read_as_typed_leave_the_cache(
    home: Home, make_packet, counting_embedder, open_library
) -> None:
    """A home made before phrasings were written out holds their vectors as typed, under
    the earlier key: written again under the new key, the old row goes with it."""
    notes = [Passage("click", "Replace the pressure switch.", "Why?", asked=("clicks n off",))]
    record = make_packet(home, name="pumps", notes=notes)
    library = open_library(home)
    stale = counting_embedder.id + "+asked"
    library.vectors("passage_embeddings").put(record.packet_id, stale, np.ones((1, 8)))
    PassageIndex(library, counting_embedder).search(record.packet_id, "pump?")
    keys = {r["embedder_id"] for r in library.db["passage_embeddings"].rows}
    assert counting_embedder.id + "+asked-written" in keys
    assert stale not in keys


def test_the_everyday_questions_are_read_written_out(tmp_path) -> None:
    """The shipped list and a home's own are the router's questions too: written out where
    they are read, so they are embedded, cached and shipped as the router reads them."""
    own = tmp_path / "everyday.txt"
    own.write_text("easy stew recipe pls\n", encoding="utf-8")
    questions = everyday_questions(own)
    assert questions[-1] == "easy stew recipe please"
    assert all(written_out(q) == q for q in questions)
