"""Retrieval over packet notes: the passages of one packet nearest a question.

A packet's note passages (title and text together) are embedded once with the router's
embedder and cached in the library database beside the exemplar vectors (table
`passage_embeddings`, keyed by packet id and embedder id). A search is one matrix-vector
product over the packet's passages. `coverage` adds the calibrated decision whether any
passage covers the question at all, so an answer can say the packet has nothing on it
instead of passing a neighbouring passage off as the answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from fieldkit.router.embedder import Embedder, default_embedder
from fieldkit.router.router import LibraryLike
from fieldkit.store.notes import Passage, TitledText, notes_of
from fieldkit.store.vectors import VectorCache

DEFAULT_K = 2
# Whether a passage covers a question: the nearest passage's cosine plus STANDOUT times
# how far it stands out from the packet's other passages (its z-score among all of the
# packet's scores for this question). A question in a packet's gap sits near many passages
# of its domain and stands out from none; a covered one has one passage well ahead.
# Chosen in bench/bench_notes.py (docs/BENCHMARKS.md, "Packet notes and grounded
# answers") on the demo packets' held-out questions against questions written to fall
# in each domain's gaps; each domain's threshold fitted on the other three gave 89% covered
# and 81% of gap questions refused, against 80% and 69% for the cosine alone.
STANDOUT = 0.1
DEFAULT_MIN_COVER = 0.82
# A packet with few passages gives no spread to stand out from: there the cosine alone
# decides, at the threshold that separated the same questions best by cosine alone.
MIN_SPREAD_PASSAGES = 10
COSINE_MIN_COVER = 0.55
# A code of letters and digits (a fault code, a model number) that the question and its
# nearest passage share, and that at most this many of the packet's passages name, covers
# the question whatever the cosine: "E07" on the screen is the E07 record.
CODE_MAX_PASSAGES = 2
_CODE = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[A-Za-z0-9][\w-]*[A-Za-z0-9]")


@dataclass(frozen=True)
class Hit(TitledText):
    """One passage found for a question, with its cosine similarity."""

    passage_id: str
    score: float
    text: str
    title: str | None = None


@dataclass(frozen=True)
class Coverage:
    """Whether a packet's notes cover a question, and the passages nearest it."""

    covered: bool
    hits: list[Hit] = field(default_factory=list)
    score: float = 0.0  # the cover score (see STANDOUT), compared with min_score
    min_score: float = DEFAULT_MIN_COVER

    @property
    def best(self) -> float:
        """The nearest passage's cosine (0 without notes)."""
        return self.hits[0].score if self.hits else 0.0


class PassageIndex:
    """Searches the notes of the packets in one library with one embedder.

    Vectors are cached in the database and in memory (per packet id: a packet id names
    one immutable manifest, so its vectors never go stale).
    """

    def __init__(
        self,
        library: LibraryLike,
        embedder: Embedder | None = None,
        *,
        min_score: float = DEFAULT_MIN_COVER,
        min_cosine: float = COSINE_MIN_COVER,
    ) -> None:
        self.library = library
        self.embedder = embedder or default_embedder()
        self.min_score, self.min_cosine = min_score, min_cosine
        self._passages: dict[str, list[Passage]] = {}
        self._vectors: dict[str, np.ndarray] = {}
        self.embedded_packets = 0  # how many packets this index had to embed (not cached)

    @cached_property
    def cache(self) -> VectorCache:
        return self.library.vectors("passage_embeddings")

    def passages(self, packet_id: str) -> list[Passage]:
        """Return the packet's note passages ([] for an unknown packet or one without notes)."""
        if packet_id not in self._passages:
            record = _find(self.library, packet_id)
            self._passages[packet_id] = notes_of(record.manifest) if record is not None else []
        return self._passages[packet_id]

    def has_notes(self, packet_id: str) -> bool:
        return bool(self.passages(packet_id))

    def index_packet(self, record: Any) -> np.ndarray:
        """Embed a packet's notes unless cached; return its (count, dim) vectors.

        Fits `Library.add_listener`, so notes are embedded as a packet arrives.
        """
        self._passages[record.packet_id] = notes_of(record.manifest)
        return self._ensure(record.packet_id)

    def _ensure(self, packet_id: str) -> np.ndarray:
        if packet_id in self._vectors:
            return self._vectors[packet_id]
        passages = self.passages(packet_id)
        if not passages:
            return np.zeros((0, self.embedder.dim), np.float32)
        cached = self.cache.get_many([packet_id], self.embedder.id).get(packet_id)
        if cached is None or len(cached) != len(passages):
            cached = self.embedder.embed([p.full_text for p in passages])
            self.cache.put(packet_id, self.embedder.id, cached)
            self.embedded_packets += 1
        self._vectors[packet_id] = cached
        return cached

    def prune(self) -> int:
        """Drop cached vectors of packets no longer in the library; return how many went."""
        keep = [r.packet_id for r in self.library.list_packets()]
        for gone in set(self._vectors) - set(keep):
            self._vectors.pop(gone, None)
            self._passages.pop(gone, None)
        return self.cache.prune(keep)

    def search(self, packet_id: str, question: str, k: int = DEFAULT_K) -> list[Hit]:
        """Return the packet's `k` passages nearest the question, best first ([] without notes)."""
        return self._search(packet_id, question, k)[0]

    def coverage(self, packet_id: str, question: str, k: int = DEFAULT_K) -> Coverage:
        """Return the nearest passages and whether the best of them covers the question."""
        hits, scores = self._search(packet_id, question, k)
        if not hits:
            return Coverage(False, [], 0.0, self.min_score)
        if self._shares_a_code(packet_id, question, hits[0]):
            return Coverage(True, hits, float(scores.max()), self.min_score)
        best = float(scores.max())
        spread = float(scores.std())
        if len(scores) < MIN_SPREAD_PASSAGES or not spread:
            return Coverage(best >= self.min_cosine, hits, best, self.min_cosine)
        score = best + STANDOUT * (best - float(scores.mean())) / spread
        return Coverage(score >= self.min_score, hits, score, self.min_score)

    def _shares_a_code(self, packet_id: str, question: str, best: Hit) -> bool:
        """True when a rare code in the question (see CODE_MAX_PASSAGES) names `best`."""
        codes = {c.lower() for c in _CODE.findall(question)}
        if not codes:
            return False
        texts = [p.full_text.lower() for p in self.passages(packet_id)]
        best_text = best.full_text.lower()
        for code in codes:
            pattern = re.compile(rf"(?<![\w-]){re.escape(code)}(?![\w-])")
            if (
                pattern.search(best_text)
                and sum(bool(pattern.search(t)) for t in texts) <= CODE_MAX_PASSAGES
            ):
                return True
        return False

    def _search(self, packet_id: str, question: str, k: int) -> tuple[list[Hit], np.ndarray]:
        vectors = self._ensure(packet_id)
        if not len(vectors) or k < 1:
            return [], np.zeros(0, np.float32)
        query = self.embedder.embed([question])[0]
        scores = np.einsum("nd,d->n", vectors, query)
        top = np.argsort(-scores, kind="stable")[:k]
        passages = self.passages(packet_id)
        hits = [
            Hit(passages[i].passage_id, float(scores[i]), passages[i].text, passages[i].title)
            for i in top
        ]
        return hits, scores


def gap_message(packet_name: str, nearest: list[Hit]) -> str:
    """Return the sentence an answer starts with when no passage covers the question."""
    if not nearest:
        return f"The {packet_name} packet has nothing on this."
    first = nearest[0]
    label = first.title or first.text
    if len(label) > 120:
        label = label[:117].rstrip() + "..."
    return f"The {packet_name} packet has nothing on this; nearest: {label}"


def _find(library: Any, packet_id: str) -> Any:
    find = getattr(library, "find", None)
    if callable(find):
        return find(packet_id)
    return next((r for r in library.list_packets() if r.packet_id == packet_id), None)
