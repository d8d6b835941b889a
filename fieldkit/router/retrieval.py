"""Retrieval over packet notes: the passages of one packet nearest a question.

A packet's note passages are embedded once with the router's embedder and cached in the
library database (table `passage_embeddings`, keyed by packet id and embedder id). A
search is one matrix-vector product over them. `coverage` adds the calibrated decision
whether any passage covers the question, so an answer can say the packet has nothing on
it instead of passing a neighbouring passage off as the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from fieldkit.router.codes import NoteCodes, without
from fieldkit.router.decision import LibraryLike
from fieldkit.router.embedder import Embedder, default_embedder
from fieldkit.router.kinds import unstated_kinds
from fieldkit.router.ranking import (
    MIN_SPREAD_PASSAGES,
    MOST_PARTS,
    Reader,
    cover_score,
    in_asked_order,
    other_ask_next,
    other_asks,
    question_sentences,
    rank_scores,
    read_first,
    shown_scores,
    zscores,
)
from fieldkit.router.shorthand import written_out
from fieldkit.router.words import WordIndex
from fieldkit.store.notes import Passage, TitledText, has_phrasings, notes_of
from fieldkit.store.vectors import VectorCache

DEFAULT_K = 2
# A passage's score for a question: the best cosine of the question with the passage's
# title and text together, its title alone, or its text alone (a long question in a
# user's words can resemble any of them), plus LEXICAL times the share of the question's
# words (weighted by their rarity among the packet's passages) that the passage holds in its
# title, text or other phrasings: names and codes that a small embedder blurs, and the
# words users type for what they see. Passages are ranked by how far each stands out
# from the packet's others (its z-score among them) for the whole question, plus FUSE times
# the sum of its z-scores for each of the question's sentences: a long question asks
# several things, and the record that answers it stands out for most of them, while a
# neighbour resembles the whole question only in its wording.
# Whether a passage covers the question: the best score plus STANDOUT times how far it
# stands out (its z-score), for the whole question or for any one of its sentences (a long
# question often holds its point in one sentence). A question in a packet's gap sits near
# many passages of its domain and stands out from none; a covered one has one passage well
# ahead. At DEFAULT_MIN_COVER or above the passages answer it; between DEFAULT_MIN_PARTIAL
# and that, they are used and cited but the answer says first that they may not cover it
# (long questions in users' words score lower than short ones, and below the upper
# threshold the score no longer tells a covered question from a gap); below, the answer says
# the packet has nothing on it. LEXICAL, STANDOUT and the upper threshold were chosen on
# the demo packets' short held-out questions against the short gap questions (at least 80%
# of those refused); FUSE and the lower threshold on the long question sets written before
# the `unseen` ones (docs/BENCHMARKS.md, "Packet notes and grounded answers" and "Ranking
# by sentences, a cautious middle, and a set written after them").
# STANDOUT, FUSE and MIN_SPREAD_PASSAGES live with the ranking math (fieldkit.router.ranking).
LEXICAL = 0.1
PARTS_KEY = "+parts"  # the cache key of the titles' and texts' own vectors
ASKED_KEY = "+asked-written"  # the cache key of the passages' other phrasings, as read: _asked
ASKED_AS_TYPED = "+asked"  # their earlier key, read as typed: dropped when written again
DEFAULT_MIN_COVER = 0.91
DEFAULT_MIN_PARTIAL = 0.80
# Notes whose passages list other phrasings of their question (Passage.asked) score higher,
# covered questions and gaps alike, so they have thresholds of their own. The upper: the
# lowest (in steps of 0.01) that leaves at least 80% of the short gap questions (`gaps`),
# as DEFAULT_MIN_COVER does, and over all the gap sets at least as many as before the demo
# packets' phrasings in the users' voice were added (70.9%), not covered surely. The
# lower: the highest at which the long demo sets are cited right at least as often as
# before those phrasings (96.7% over eight long sets, at 0.85 with three phrasings a
# record); there short questions are cited right far more often than before, and gap
# questions are refused about as often (docs/BENCHMARKS.md, "Every phrasing as a key of
# its passage" and "Phrasings in the users' voice").
PHRASED_MIN_COVER = 0.96
PHRASED_MIN_PARTIAL = 0.88
# A packet with fewer than MIN_SPREAD_PASSAGES passages gives no spread to stand out
# from: there the score alone decides, at the threshold that separated the same questions
# best by cosine alone.
COSINE_MIN_COVER = 0.55


@dataclass(frozen=True)
class Hit(TitledText):
    """One passage found for a question, with its score for it (see shown_scores)."""

    passage_id: str
    score: float
    text: str
    title: str | None = None


@dataclass(frozen=True)
class Coverage:
    """Whether a packet's notes cover a question, and the passages nearest it.

    `covered`: the passages are used and cited; `sure`: the score clears the upper
    threshold too (a covered answer that is not sure says first that it may not be).
    """

    covered: bool
    hits: list[Hit] = field(default_factory=list)
    score: float = 0.0  # the cover score (see STANDOUT), compared with min_score
    min_score: float = DEFAULT_MIN_COVER
    by_code: bool = False  # covered by a rare code it shares (codes.CODE_MAX_PASSAGES)
    sure: bool = True  # False in the cautious middle (see DEFAULT_MIN_PARTIAL)
    unknown_codes: tuple[str, ...] = ()  # codes in the question no passage names
    # Those of them whose family the notes name (E09, when they name E07 and E21), and those
    # codes: a question about such a code is not covered (see `coverage`).
    missing_codes: tuple[str, ...] = ()
    family: tuple[str, ...] = ()
    # The kinds of quantity the question asks for that no passage its answer reads (the
    # first, and one a part) states any of (fieldkit.router.kinds): such a question is
    # covered at most in the cautious middle.
    unstated: tuple[str, ...] = ()
    # For each passage after the first that answers part of the question apart, the
    # sentences it answers (ranking.other_asks); () for a question of one ask.
    other_asks: tuple[tuple[str, ...], ...] = ()

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
        min_partial: float = DEFAULT_MIN_PARTIAL,
        min_cosine: float = COSINE_MIN_COVER,
        phrased: tuple[float, float] = (PHRASED_MIN_COVER, PHRASED_MIN_PARTIAL),
    ) -> None:
        self.library = library
        self.embedder = embedder or default_embedder()
        self.min_score, self.min_partial, self.min_cosine = min_score, min_partial, min_cosine
        self.phrased = phrased  # (upper, lower) for notes that list phrasings
        self._passages: dict[str, list[Passage]] = {}
        self._vectors: dict[str, np.ndarray] = {}
        self._word_index: dict[str, WordIndex] = {}
        self._codes: dict[str, NoteCodes] = {}  # per packet: the codes its notes name
        self._askers: dict[str, np.ndarray] = {}  # per packet: each phrasing's passage
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
        """Embed a packet's notes unless cached; return its (3 x count, dim) vectors.

        Fits `Library.add_listener`, so notes are embedded as a packet arrives.
        """
        self._passages[record.packet_id] = notes_of(record.manifest)
        return self._ensure(record.packet_id)

    def _ensure(self, packet_id: str) -> np.ndarray:
        """Return the packet's passage vectors: every title and text together (the rows the
        router shares), then every title alone, then every text alone, then every other
        phrasing a passage lists (`Passage.asked`; whose passage each is: `_askers`)."""
        if packet_id in self._vectors:
            return self._vectors[packet_id]
        passages = self.passages(packet_id)
        if not passages:
            return np.zeros((0, self.embedder.dim), np.float32)
        whole = [p.full_text for p in passages]
        parts = [p.title or p.text for p in passages] + [p.text for p in passages]
        asked = [q for p in passages for q in _asked(p)]
        embedded = 0
        blocks = []
        for suffix, texts in (("", whole), (PARTS_KEY, parts), (ASKED_KEY, asked)):
            if not texts:
                continue
            cached = self.cache.get_many([packet_id], self.embedder.id + suffix).get(packet_id)
            if cached is None or len(cached) != len(texts):
                cached = self.embedder.embed(texts)
                stale = [self.embedder.id + ASKED_AS_TYPED] if suffix == ASKED_KEY else []
                self.cache.put(packet_id, self.embedder.id + suffix, cached, replaces=stale)
                embedded = 1
            blocks.append(cached)
        self.embedded_packets += embedded
        self._askers[packet_id] = np.array(
            [i for i, p in enumerate(passages) for _ in p.asked], np.int64
        )
        self._vectors[packet_id] = vectors = np.concatenate(blocks)
        return vectors

    def prepare(self, packet_id: str) -> None:
        """Load all a search of the packet needs (passages, vectors, words, codes), so that
        searching it later touches no database: a caller may then search it on another
        thread while the library's own thread does other work (the TUI does, while the
        model reads the passages: READ_K)."""
        self._ensure(packet_id)
        self._words(packet_id)
        self._codes_of(packet_id)

    def prune(self) -> int:
        """Drop cached vectors of packets no longer in the library; return how many went."""
        keep = [r.packet_id for r in self.library.list_packets()]
        for gone in set(self._vectors) - set(keep):
            self._vectors.pop(gone, None)
            self._passages.pop(gone, None)
            self._word_index.pop(gone, None)
            self._codes.pop(gone, None)
            self._askers.pop(gone, None)
        return self.cache.prune(keep)

    def search(self, packet_id: str, question: str, k: int = DEFAULT_K) -> list[Hit]:
        """Return the packet's `k` passages nearest the question, best first ([] without notes).
        Every method here reads the question with its shorthand written out (`written_out`)."""
        return self._search(packet_id, written_out(question), k)[0]

    def hit(self, packet_id: str, question: str, passage_id: str) -> Hit | None:
        """Return the packet's passage `passage_id` as a hit for the question, at the score
        a search would show it with; None when the notes hold no passage of that id."""
        passages = self.passages(packet_id)
        at = next((i for i, p in enumerate(passages) if p.passage_id == passage_id), None)
        if at is None:
            return None
        score = float(shown_scores(self.scores(packet_id, question))[at])  # written out there
        return Hit(passage_id, score, passages[at].text, passages[at].title)

    def coverage(
        self, packet_id: str, question: str, k: int = DEFAULT_K, reader: Reader | None = None
    ) -> Coverage:
        """Return the nearest passages and whether the best of them covers the question
        (surely, or in the cautious middle: see DEFAULT_MIN_PARTIAL); with a `reader`,
        the passages ranked first in the order it reads them (see READ_K). A question
        naming a code the notes never name, of a family they do name (E09, when they name
        E07 and E21), is not covered whatever its score: the notes list that family's codes
        and this is not one of them, and the nearest passage is another code's record."""
        question = written_out(question)
        found, rows, order = self._search(packet_id, question, max(k, MOST_PARTS), reader)
        hits = found[:k]
        upper, lower = self.thresholds(packet_id)
        if not hits:
            return Coverage(False, [], 0.0, upper, sure=False)
        unknown = self.unknown_codes(packet_id, question)
        if not unknown and self._shares_a_code(packet_id, question, rows):
            hits, other = self._in_parts(question, found, order, rows, k)
            best = float(rows[0].max())
            return Coverage(True, hits, best, upper, by_code=True, other_asks=other)
        missing = tuple(c for c in unknown if self.family_of(packet_id, [c]))
        codes = {"unknown_codes": unknown, "missing_codes": missing}
        codes["family"] = self.family_of(packet_id, missing)
        if rows.shape[1] < MIN_SPREAD_PASSAGES or not float(rows[0].std()):
            best = float(rows.max())
            covered = best >= self.min_cosine and not missing
            unstated = unstated_kinds(question, [hits[0].full_text]) if covered else ()
            sure = covered and not unknown and not unstated
            return Coverage(
                covered, hits, best, self.min_cosine, sure=sure, unstated=unstated, **codes
            )
        score = cover_score(rows)
        covered = score >= min(lower, upper) and not missing
        other: tuple[tuple[str, ...], ...] = ()
        if covered:
            hits, other = self._in_parts(question, found, order, rows, k)
        read = [h.full_text for h in hits[: 1 + len(other)]]  # a part's record each
        unstated = unstated_kinds(question, read) if covered else ()
        sure = covered and score >= upper and not unknown and not unstated
        return Coverage(
            covered, hits, score, upper, sure=sure, other_asks=other, unstated=unstated, **codes
        )

    def thresholds(self, packet_id: str) -> tuple[float, float]:
        """Return the (upper, lower) cover thresholds for the packet's notes: `phrased`
        when its passages list other phrasings, else min_score and min_partial."""
        if has_phrasings(self.passages(packet_id)):
            return self.phrased
        return self.min_score, self.min_partial

    def scores(self, packet_id: str, question: str) -> np.ndarray:
        """Return the (texts, passages) scores `coverage` decides on: row 0 the whole
        question, then each of its sentences; one column per passage, in notes order."""
        return self._search(packet_id, written_out(question), 1)[1]

    def unknown_codes(self, packet_id: str, question: str) -> tuple[str, ...]:
        """Return the codes in the question that the notes never name (NoteCodes.unknown):
        no passage covers it surely, and none covers it by a code it shares."""
        return self._codes_of(packet_id).unknown(written_out(question))

    def family_of(self, packet_id: str, codes: Sequence[str]) -> tuple[str, ...]:
        """Return the codes the notes name in the family of any of `codes` (E07 and E21
        for E09: NoteCodes.family_of)."""
        return self._codes_of(packet_id).family_of(codes)

    @staticmethod
    def _in_parts(
        question: str, found: list[Hit], order: np.ndarray, rows: np.ndarray, k: int
    ) -> tuple[list[Hit], tuple[tuple[str, ...], ...]]:
        """Return the hits a covered question is shown (the `k` first, and every passage an
        answer's parts read) and the sentences each hit after the first answers apart
        (ranking.other_asks), the parts in the order the question asks them
        (ranking.in_asked_order), in a packet with a spread to stand out from; `order`:
        the found hits' passage indices."""
        if len(order) < 2 or rows.shape[1] < MIN_SPREAD_PASSAGES:
            return found[:k], ()
        sentences = question_sentences(question)
        places, asks = in_asked_order(other_asks(rows, order, sentences), sentences)
        found = [found[i] for i in places] + found[len(places) :]  # as the question asks
        return found[: max(k, 1 + len(asks))], tuple(tuple(s) for s in asks)

    def _codes_of(self, packet_id: str) -> NoteCodes:
        if packet_id not in self._codes:
            self._codes[packet_id] = NoteCodes(self.passages(packet_id))
        return self._codes[packet_id]

    def _shares_a_code(self, packet_id: str, question: str, rows: np.ndarray) -> bool:
        """True when a rare code in the question (see codes.CODE_MAX_PASSAGES) names the
        passage nearest it by its scores `rows` alone (before those naming a code move
        first)."""
        nearest = int(np.argmax(rank_scores(rows)))
        return nearest in self._codes_of(packet_id).naming(question)

    def _search(
        self, packet_id: str, question: str, k: int, reader: Reader | None = None
    ) -> tuple[list[Hit], np.ndarray, np.ndarray]:
        """Return the top `k` hits (see FUSE, and READ_K with a `reader`), the (texts,
        passages) scores (row 0 the whole question, then each of its sentences) and the
        hits' passage indices. A hit's score is `shown_scores`'."""
        vectors = self._ensure(packet_id)
        if not len(vectors) or k < 1:
            return [], np.zeros((1, 0), np.float32), np.zeros(0, np.int64)
        texts = [question, *question_sentences(question)]
        codes = self._codes_of(packet_id)
        gone = codes.lacked(question)
        if gone:  # what the asker lacks is not what they ask about: read without it
            texts = [without(t, gone) for t in texts]
        queries = self.embedder.embed(texts)
        n = len(self.passages(packet_id))
        sims = np.einsum("nd,qd->qn", vectors, queries)
        cosines = sims[:, : 3 * n].reshape(len(texts), 3, n).max(axis=1)
        askers = self._askers[packet_id]
        if len(askers):  # a passage's score is also its nearest other phrasing's
            rows = np.arange(len(texts))[:, None]
            np.maximum.at(cosines, (rows, askers[None, :]), sims[:, 3 * n :])
        words = self._words(packet_id)
        rows = cosines + LEXICAL * np.stack([words.overlap(t) for t in texts])
        if gone:  # a record about a device the asker has not got does not answer them
            rows[:, codes.about(gone)] = rows.min(axis=1, keepdims=True)
        ranking = rank_scores(rows)
        named = codes.naming(question, in_title=True)
        if named:  # the records about a rare code of the question come first
            ranking = ranking + np.isin(np.arange(n), named) * (np.ptp(ranking) + 1.0)
        passages = self.passages(packet_id)
        top = np.argsort(-ranking, kind="stable")
        if reader is not None and not named and n > 1:
            top = read_first(question, top, zscores(ranking[None])[0], passages, reader)
        if len(named) < 2 and len(rows) > 1 and n >= MIN_SPREAD_PASSAGES:
            for taken in range(1, min(MOST_PARTS, n)):  # the second, then the third
                top = other_ask_next(top, rows, taken)
        top = top[:k]
        shown = shown_scores(rows)
        hits = [
            Hit(passages[i].passage_id, float(shown[i]), passages[i].text, passages[i].title)
            for i in top
        ]
        return hits, rows, top

    def _words(self, packet_id: str) -> WordIndex:
        if packet_id not in self._word_index:
            # a passage's words are its title's, its text's and its other phrasings'
            passages = self.passages(packet_id)
            texts = [" ".join((p.full_text, *_asked(p))) for p in passages]
            self._word_index[packet_id] = WordIndex(texts)
        return self._word_index[packet_id]


def _asked(passage: Passage) -> list[str]:
    """A passage's other phrasings, read as a question is (router.shorthand.written_out)."""
    return [written_out(q) for q in passage.asked]


def _find(library: Any, packet_id: str) -> Any:
    find = getattr(library, "find", None)
    if callable(find):
        return find(packet_id)
    return next((r for r in library.list_packets() if r.packet_id == packet_id), None)
