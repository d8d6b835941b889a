"""Everyday questions: what no packet is for.

A short question that shares one word with a packet ("How do I cook rice?", "How long do
boiled eggs keep?") can score as high against it as a real one, and no score threshold
tells the two apart. So the router also holds a list of everyday questions (cooking, the
home fridge, phones, family health, money, sport...; assets/router/everyday.txt) and
abstains when the question is nearer one of them than the best packet's own texts by
EVERYDAY_LEAD: a nearest-neighbour rule with a class for "none of the packets". A packet
about cooking still gets cooking questions, since its own exemplars are nearer still.

A home may add its own (`<home>/everyday.txt`, one question a line): a question that
belongs to no packet but was routed to one, and others like it, are then left to the base
model. The list's vectors are cached in the library database like a packet's exemplars,
under a key holding the list's hash, so a changed list is embedded again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fieldkit.assets import assets_dir
from fieldkit.router.grid import similarities
from fieldkit.router.shorthand import written_out
from fieldkit.router.words import plain_tokens

if TYPE_CHECKING:
    from fieldkit.router.embedder import Embedder
    from fieldkit.store.vectors import VectorCache

# Abstain when an everyday question is nearer the question than the routed packet's texts
# are, by this much or more (cosines). Picked with the list's first 320 questions on the
# sets written before bench/data/out_of_domain_fresh.txt and assets/demo/*/fresh.jsonl:
# the middle of the range (0.11-0.13) that routes every in-domain question as before, with
# notes or without. The list then grew to 638 (a second writer, the same brief), then to
# 1,038 (a third, household cousins of every domain), at the same lead, which still routes
# every in-domain question alike; sets written after each were scored once
# (bench/data/out_of_domain_blind.txt, _final.txt, _last.txt, _after.txt; docs/BENCHMARKS.md,
# "Router", "Everyday questions").
EVERYDAY_LEAD = 0.12
# Nearer by less than that, but by EVERYDAY_NEAR_LEAD or more, the router abstains too when
# the question lies on the everyday side of the library's divide (`Divide`): a line fitted
# between every packet's texts and the everyday questions, cut halfway between their means.
# The nearest neighbour alone let short household questions through ("weevils in my
# flour", "cool box for a picnic how much ice"): one everyday question is only a little
# nearer than a packet's record, but the whole list leans their way. Half the lead and the
# midpoint were taken as they come; the shrinkage (DIVIDE_SHRINK, added to the scatter's
# diagonal) is the middle of the range (0.001-0.01) that gave the same routes on the sets
# written before assets/demo/*/terse.jsonl and bench/data/out_of_domain_closing.txt, which
# were written blind and scored once (docs/BENCHMARKS.md, "The library's divide, codes,
# and four sets written blind for them").
EVERYDAY_NEAR_LEAD = 0.06
DIVIDE_SHRINK = 3e-3
# A line fitted on fewer texts than this follows their wording more than their domain: a
# library of one packet with 10 exemplars and no notes lost 2-3 of each demo domain's 123
# in-domain questions to it and gained 0-2 of 712 out-of-domain refusals; with 40
# exemplars it lost 0-1 and gained 0-5 (bench_route.py --only small-libraries). Below it,
# the lead alone decides.
DIVIDE_MIN_TEXTS = 40
EVERYDAY_FILE = ("router", "everyday.txt")
# The shipped list's vectors, made by `python -m fieldkit.router.everyday` with the
# default embedder (float16, about 0.7 MB), so a new home need not embed the list (about
# 7 s on two cores). Used only when they were made by the same embedder for exactly the
# list's first questions (keyed by cache_key): a changed list is embedded as before.
VECTORS_FILE = ("router", "everyday.npz")
KEY_PREFIX = "everyday:"  # the cache key's prefix (never a packet id: those are hex)


def everyday_questions(extra: Path | None = None) -> list[str]:
    """Return the shipped everyday questions ([] when that file is missing or unreadable:
    the router then routes as it did before the list), then those of `extra` (a home's
    own list, one question a line; ignored when missing), each as the router reads a
    question: with its texting shorthand written out (shorthand.written_out), so they are
    embedded, cached and shipped (VECTORS_FILE) so too. Raises RouterError when `extra`
    exists but cannot be read."""
    try:
        text = assets_dir().joinpath(*EVERYDAY_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    own = ""
    if extra is not None and extra.exists():
        try:
            own = extra.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            from fieldkit.errors import RouterError

            why = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else exc.strerror
            raise RouterError(
                f"The everyday questions in {extra} cannot be read ({why}); "
                "fix the file (one question a line) or remove it."
            ) from None
    lines = [*text.splitlines(), *own.splitlines()]
    return list(dict.fromkeys(written_out(line.strip()) for line in lines if line.strip()))


def cache_key(texts: Sequence[str]) -> str:
    """Return the key the list's vectors are cached under (changes with the list)."""
    digest = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()[:16]
    return KEY_PREFIX + digest


def shipped_vectors(texts: Sequence[str], embedder_id: str, dim: int) -> np.ndarray:
    """Return the shipped vectors of the first questions of `texts` (see VECTORS_FILE):
    (n, dim) float32, or (0, dim) when there are none for this embedder and this list."""
    none = np.zeros((0, dim), np.float32)
    try:
        with np.load(assets_dir().joinpath(*VECTORS_FILE)) as data:
            key, made_by, vectors = str(data["key"]), str(data["embedder"]), data["vectors"]
    except (OSError, KeyError, ValueError, EOFError):
        return none
    count = len(vectors)
    if made_by != embedder_id or vectors.shape[1:] != (dim,) or count > len(texts):
        return none
    if cache_key(texts[:count]) != key:
        return none
    return vectors.astype(np.float32)


def write_shipped_vectors(embedder: Embedder, path: Path | None = None) -> Path:
    """Embed the shipped list with `embedder` and write VECTORS_FILE (or `path`)."""
    texts = everyday_questions()
    path = path or assets_dir().joinpath(*VECTORS_FILE)
    vectors = embedder.embed(texts).astype(np.float16)
    with path.open("wb") as out:
        np.savez_compressed(out, key=cache_key(texts), embedder=embedder.id, vectors=vectors)
    return path


@dataclass(frozen=True)
class Everyday:
    """The everyday questions and their unit vectors."""

    texts: list[str]
    vectors: np.ndarray  # (count, dim)

    @classmethod
    def load(cls, texts: Sequence[str], cache: VectorCache, embedder: Embedder) -> Everyday:
        """Return the questions with their vectors, from `cache` (under `cache_key`), else
        the shipped vectors of the shipped questions (`shipped_vectors`) and the rest
        embedded; what was not cached is cached."""
        texts = list(texts)
        if not texts:
            return cls([], np.zeros((0, embedder.dim), np.float32))
        key = cache_key(texts)
        vectors = cache.get_many([key], embedder.id).get(key)
        if vectors is None or len(vectors) != len(texts):
            ready = shipped_vectors(texts, embedder.id, embedder.dim)
            rest = texts[len(ready) :]
            vectors = np.concatenate([ready, embedder.embed(rest)]) if rest else ready
            cache.put(key, embedder.id, vectors)
        return cls(texts, vectors)

    @cached_property
    def tokens(self) -> set[str]:
        """Every token of the questions (words.plain_tokens): a code that an everyday
        question names (A4, R2) names no packet."""
        return plain_tokens(self.texts)

    def nearest(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return, per (B, dim) query, the index of the nearest everyday question and its
        cosine (-inf for an empty list)."""
        if not len(self.texts):
            return np.zeros(len(queries), np.int64), np.full(len(queries), -np.inf, np.float32)
        sims = similarities(self.vectors, queries)
        best = sims.argmax(axis=1)
        return best, sims[np.arange(len(queries)), best]

    def objection(
        self,
        which: int,
        score: float,
        own: float,
        packet: str,
        leads: tuple[float, float],
        side: float = np.nan,
    ) -> str:
        """Return why a route to `packet` (its texts' cosine `own`) is abstained on, else "":
        everyday question `which` (cosine `score`) is nearer by the first of `leads` or more,
        or by the second or more with the question on the everyday side (`side` < 0) of the
        library's divide (`Divide.side`; nan: the library has none)."""
        lead, near_lead = leads
        far = score >= own + lead
        if not far and not (score >= own + near_lead and side < 0):
            return ""
        text = self.texts[which]
        shown = text if len(text) <= 60 else text[:57].rstrip() + "..."
        why = (
            f'an everyday question, not an expert\'s: nearer "{shown}" ({score:.2f}) '
            f"than {packet}'s texts ({own:.2f})"
        )
        return why if far else f"{why}, and on the everyday side of the library ({side:.2f})"


def _scatter(vectors: np.ndarray) -> np.ndarray:
    """Return the covariance of (count, dim) `vectors` (zeros for a single one)."""
    centred = vectors - vectors.mean(axis=0)
    return centred.T @ centred / max(len(vectors) - 1, 1)


@dataclass(frozen=True)
class Divide:
    """A line between a library's texts and the everyday questions: Fisher's linear
    discriminant, its scatter shrunk towards the identity (DIVIDE_SHRINK). `side` is +1 at
    the mean of the packets' texts, -1 at the mean of the everyday questions, 0 halfway."""

    weights: np.ndarray  # (dim,)
    bias: float

    @classmethod
    def fit(
        cls,
        texts: np.ndarray,
        everyday: np.ndarray,
        shrink: float = DIVIDE_SHRINK,
        min_texts: int | None = None,
    ) -> Divide | None:
        """Return the divide between (count, dim) `texts` and `everyday` vectors, or None
        when there are fewer texts than `min_texts` (None: DIVIDE_MIN_TEXTS; at least one),
        no everyday vector, or the two means coincide."""
        least = DIVIDE_MIN_TEXTS if min_texts is None else min_texts
        if len(texts) < max(least, 1) or not len(everyday):
            return None
        texts, everyday = texts.astype(np.float64), everyday.astype(np.float64)
        ours, theirs = texts.mean(axis=0), everyday.mean(axis=0)
        scatter = (_scatter(texts) + _scatter(everyday)) / 2
        scatter[np.diag_indices_from(scatter)] += shrink
        weights = np.linalg.solve(scatter, ours - theirs)
        high, low = float(ours @ weights), float(theirs @ weights)
        if not high - low > 1e-9:
            return None
        scale = 2 / (high - low)
        return cls((weights * scale).astype(np.float32), -(high + low) / (high - low))

    def side(self, queries: np.ndarray) -> np.ndarray:
        """Return each (B, dim) query's side: > 0 the packets', < 0 the everyday questions'."""
        return queries @ self.weights + np.float32(self.bias)


if __name__ == "__main__":  # python -m fieldkit.router.everyday: remake VECTORS_FILE
    from fieldkit.router.embedder import default_embedder

    print(write_shipped_vectors(default_embedder()))
