"""Shared rare words: the vectorised index against a plain loop."""

import math

import numpy as np
import pytest

from fieldkit.router.words import WordIndex, device_names, lacked, words_of

TEXTS = [
    "Fumigate the sealed store with Fumitab tablets for seven days.",
    "",
    "Dry maize to 13% moisture before it goes into the store.",
    "Check the tablets' expiry date; old tablets release less gas.",
    "",
]


def plain_overlap(texts: list[str], question: str) -> list[float]:
    docs = [words_of(t) for t in texts]
    counts: dict[str, int] = {}
    for doc in docs:
        for word in doc:
            counts[word] = counts.get(word, 0) + 1
    n = len(texts)
    weight = {w: math.log(1 + n / c) for w, c in counts.items()}
    words = words_of(question)
    total = sum(weight.get(w, math.log(1 + 2 * n)) for w in words)
    return [sum(weight[w] for w in words & doc) / total if total else 0.0 for doc in docs]


@pytest.mark.parametrize(
    "question",
    [
        "How many days do Fumitab tablets need in a sealed store?",
        "What moisture should maize have before storing it?",
        "Completely unrelated words here",
        "the and of",  # only stop words: nothing to share
    ],
)
def test_overlap_matches_a_plain_loop(question: str) -> None:
    index = WordIndex(TEXTS)
    got = index.overlap(question)
    assert got.shape == (len(TEXTS),)
    assert got == pytest.approx(plain_overlap(TEXTS, question), abs=1e-6)
    assert got[1] == got[4] == 0.0  # empty texts hold nothing


def test_words_are_stemmed_and_stop_words_dropped() -> None:
    assert words_of("The tablets were fumigating the stores") == {"tablet", "fumigat", "stor"}


def test_best_per_group() -> None:
    index = WordIndex(TEXTS)
    question = "Fumitab tablets and maize moisture"
    per_text = index.overlap(question)
    best = index.best_per_group(question, np.array([0, 2]))
    assert best.tolist() == pytest.approx([per_text[:2].max(), per_text[2:].max()])
    assert WordIndex([]).overlap(question).shape == (0,)


@pytest.mark.parametrize(
    ("text", "lacking"),
    [
        ("farmer has no gc-3, can table salt tell", True),
        ("we don't have a GC-3 meter", True),
        ("without the GC-3 how do we check", True),
        ("we haven't got any GC-3", True),
        ("we do not have a GC-3 meter", True),  # "dont", as shorthand is written out
        ("she does not have the GC-3", True),
        ("we have not got a GC-3", True),
        ("our GC-3 reads 14%", False),
        ("no GC-3 reading on the screen", False),  # the GC-3 is there; its reading is not
        ("there is no GC-3 signal", False),
        ("we lost our GC-3 at the market", True),
        ("someone stole the GC-3", True),
        ("someone stole the co-op GC-3", True),  # one word between
        ("no idea what the GC-3 shows", False),
        ("not GC-3 this time, the screen says something else", True),
        ("why does it not clear GC-3", False),  # "not" before a verb
        ("can i clear it without resetting GC-3", False),
        ("without resetting the GC-3", False),
        ("pump running but no water GC-3 on the display", False),  # no water, not no GC-3
        ("we lost power GC-3 came up", False),
        ("we lost our old GC-3", True),
        ("the GC-3 was stolen last week, another way?", True),
        ("GC-3 missing from the store", True),
        ("what can we use instead of the GC-3", True),
        ("our GC-3 is broken, how to fix it", False),  # its own record may answer that
        ("we lost the GC-3 reading when it switched off", False),
        ("the GC-3 lost its calibration", False),
        ("no reading on the GC-3", False),  # "no" before another word, not the code
        ("snow GC-3", False),  # "no" inside a word
    ],
)
def test_a_code_the_asker_lacks(text: str, lacking: bool) -> None:
    start = text.lower().index("gc-3")
    assert lacked(text, start) is lacking


def test_a_device_is_named_by_a_capitalised_word_before_its_code() -> None:
    texts = [
        "Well-dried grain keeps in a sealed SiloGuard SG-1 for years.",
        "Fill the Hermabag HB-90 liner. Bluecap toxin shows as blue mould.",
        "Press Start on the ThermoLog TL-30. Start it again after 3 days.",
        "Ring the Hotline CCH-3 number; the hotline answers day and night.",
        "Wait 90 seconds. Then E07 clears.",  # a sentence's first word
    ]
    assert device_names(texts) == {"siloguard", "hermabag", "thermolog"}
