"""The router's packets laid out for one matrix product: every exemplar (and note passage)
vector of every eligible packet, packet after packet, with the per-packet reductions
(nearest, top-k mean, centroid) done by numpy without a loop over packets.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from fieldkit.router.words import WordIndex, named_codes, plain_code, plain_tokens

if TYPE_CHECKING:
    from fieldkit.router.decision import PacketLike


def similarities(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Return the (B, N) cosines of (B, dim) unit queries with (N, dim) unit vectors.

    For one question, einsum's single-threaded loop: with torch loaded, numpy's 2-thread
    BLAS matrix-vector product over 12,000 exemplars took 8 ms here against 1.8 ms for
    einsum (both threading runtimes spin on 2 cores).
    """
    if len(queries) == 1:
        return np.einsum("nd,d->n", vectors, queries[0])[None, :]
    return (vectors @ queries.T).T


@dataclass
class ExemplarGrid:
    """Every eligible packet's exemplar vectors, laid out for one matrix product."""

    packets: list[PacketLike]
    vectors: np.ndarray  # (N, dim), all exemplars, packet after packet
    slots: np.ndarray  # (N,) position of each exemplar in the (P, width) padded grid
    counts: np.ndarray  # (P,) exemplars per packet
    centroids: np.ndarray  # (P, dim), unit length
    width: int
    starts: np.ndarray  # (P,) index of each packet's first exemplar in `vectors`
    noted: np.ndarray  # (P,) True where the packet is also scored against its notes
    domains: np.ndarray  # (P,) one integer per domain name
    lexicon: WordIndex | None = None  # the noted packets' exemplars and passages
    lexicon_starts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    lexicon_packets: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    tokens: list[set[str]] = field(default_factory=list)  # per packet, as words.plain_code
    position: dict[str, int] = field(default_factory=dict)  # packet id -> its place

    @classmethod
    def build(
        cls,
        packets: list[PacketLike],
        vectors: list[np.ndarray],
        dim: int,
        noted: list[bool] | None = None,
        texts: list[list[str]] | None = None,
        named: list[list[str]] | None = None,
    ) -> ExemplarGrid:
        """`texts`: per packet, the texts its shared rare words are counted in (those of
        the noted packets make the lexicon); `named`: per packet, the texts whose codes
        it names (`naming`)."""
        counts = np.array([len(v) for v in vectors], dtype=np.int64)
        width = int(counts.max()) if len(counts) else 1
        flat = np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)
        owner = np.repeat(np.arange(len(packets)), counts)
        offset = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else counts
        slots = owner * width + (np.arange(len(flat)) - np.repeat(offset, counts))
        sums = np.zeros((len(packets), dim), np.float32)
        np.add.at(sums, owner, flat)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centroids = sums / np.maximum(norms, 1e-12)
        flat = np.ascontiguousarray(flat)
        marks = np.array(noted if noted is not None else [False] * len(packets), dtype=bool)
        names: dict[str, int] = {}
        domains = np.array([names.setdefault(p.domain, len(names)) for p in packets], np.int64)
        starts = offset.astype(np.int64)
        index = cls(packets, flat, slots, counts, centroids, width, starts, marks, domains)
        index.tokens = [plain_tokens(t) for t in named or []]
        index.position = {p.packet_id: i for i, p in enumerate(packets)}
        chosen = [i for i in np.flatnonzero(marks) if texts and texts[i]]
        if chosen and texts:
            lengths = np.array([len(texts[i]) for i in chosen], np.int64)
            index.lexicon = WordIndex([t for i in chosen for t in texts[i]])
            index.lexicon_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
            index.lexicon_packets = np.array(chosen, np.int64)
        return index

    def shared_words(self, question: str) -> np.ndarray:
        """Return (P,) the best rarity-weighted share of the question's words that a noted
        packet's exemplar or passage holds (0 for a packet without notes)."""
        out = np.zeros(len(self.packets), np.float32)
        if self.lexicon is not None:
            out[self.lexicon_packets] = self.lexicon.best_per_group(question, self.lexicon_starts)
        return out

    def lead(self, row: np.ndarray, packet: int) -> tuple[int | None, float]:
        """Return the best packet of another domain than `packet`'s in a (P,) score row
        (None when there is none), and `packet`'s lead over it (its score when none)."""
        others = np.where(self.domains == self.domains[packet], -np.inf, row)
        if not np.isfinite(others).any():
            return None, float(row[packet])
        rival = int(others.argmax())
        return rival, float(row[packet]) - float(row[rival])

    def naming(self, question: str, common: AbstractSet[str]) -> tuple[list[int], list[str]]:
        """Return the packets whose texts name a code of the question (words.named_codes:
        a model number, a fault code) that `common` does not hold, and those codes."""
        codes = {plain_code(m.group()): m.group() for m in named_codes(question)}
        asked = set(codes) - common
        if not asked:
            return [], []
        held = [i for i, tokens in enumerate(self.tokens) if asked & tokens]
        return held, [
            codes[c] for c in codes if c in asked and any(c in self.tokens[i] for i in held)
        ]

    def scores(self, queries: np.ndarray, method: str, top_k: int, blend: float) -> np.ndarray:
        """Return (B, P) packet scores for (B, dim) unit query vectors."""
        centroid = (self.centroids @ queries.T).T
        if method == "centroid":
            return centroid
        sims = similarities(self.vectors, queries)  # the one big product, (B, N)
        if top_k == 1:  # nearest exemplar: a segmented max, packets being contiguous
            top_mean = np.maximum.reduceat(sims, self.starts, axis=1)
        else:
            grid = np.full((len(queries), len(self.packets) * self.width), -np.inf, np.float32)
            grid[:, self.slots] = sims
            grid = grid.reshape(len(queries), len(self.packets), self.width)
            k = min(top_k, self.width)
            top = -np.partition(-grid, k - 1, axis=2)[:, :, :k]
            top_mean = np.where(np.isfinite(top), top, 0.0).sum(axis=2) / np.minimum(k, self.counts)
        if method == "topk":
            return top_mean
        return blend * centroid + (1.0 - blend) * top_mean
