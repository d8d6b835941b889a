"""How passages rank for a question and how far the best stands out: pure numpy over the
(texts, passages) score rows that `fieldkit.router.retrieval.PassageIndex` computes, row 0
the whole question and then each of its sentences (`question_sentences`). The constants
STANDOUT, FUSE and MIN_SPREAD_PASSAGES are explained where retrieval scores passages (the
comment at the top of that module)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from fieldkit.store.notes import TitledText

STANDOUT = 0.1
FUSE = 0.5
MIN_SPREAD_PASSAGES = 10
# Reading: a short question gives the embedder little to go on, and within the right packet
# it puts a neighbouring record first for about one short question in ten. When the first
# passage leads the second by less than READ_LEAD (in standard deviations of the ranking
# over the packet's passages), a `Reader` (the resident language model:
# fieldkit.answering.engine_reader) reads each of the READ_K passages ranked first and
# scores how well it explains the question: the mean log-probability of the question's
# words after the passage. Those passages are reordered by their ranking's z-score plus
# READ_WEIGHT times that. READ_K holds the question's own record for 99% of short questions
# ranked on their own packet. READ_WEIGHT and READ_LEAD were chosen on the brisk, hasty,
# rushed and terse sets: the weight that put the most questions' own record first, and the
# smallest lead that kept that (a third of the questions read; docs/BENCHMARKS.md, "Reading
# the passages ranked first").
READ_K = 3
READ_WEIGHT = 4.0
READ_LEAD = 1.0
Reader = Callable[[str, Sequence[str]], np.ndarray]  # (question, passage texts) -> scores
_SENTENCE = re.compile(r"(?<=[.!?;])\s+")
_CLAUSE = re.compile(r",\s+(?:and|but|so)\s+")
# Two asks in one sentence: "How do I pack them for the ride and how long can they stay in
# the carrier?". Within a sentence that ends in "?", "and" before a question word, or
# before an auxiliary and its subject ("and can we", "and should I"), starts a second ask;
# the clause before that "and" asks too when it opens with such a word, and is given the
# "?" its sentence ends in (docs/BENCHMARKS.md, "Two asks in one sentence").
_QUESTION_WORD = r"(?:how|what|when|where|which|why|who|whose)\b"
_ASKING_VERB = (
    r"(?:can|could|should|would|will|do|does|did|is|are|must|may|shall)\s+"
    r"(?:i|we|you|they|it|he|she|the|my|our|this|that|these|those|there)\b"
)
_JOINED_ASK = re.compile(rf"\s+and\s+(?=(?:{_QUESTION_WORD}|{_ASKING_VERB}))", re.I)
_OPENS_AN_ASK = re.compile(rf"(?:{_QUESTION_WORD}|{_ASKING_VERB})", re.I)
_LEAD = re.compile(r"^(?:(?:and|also|so|but|then|plus|or|like)\b[\s,]*)+", re.I)


def read_first(
    question: str,
    order: np.ndarray,
    z: np.ndarray,
    passages: Sequence[TitledText],
    reader: Reader,
    weight: float = READ_WEIGHT,
    lead: float = READ_LEAD,
) -> np.ndarray:
    """Return `order` (passage indices, best first) with its first READ_K passages reordered
    by their ranking z-scores `z` plus `weight` times the `reader`'s scores, unless the first
    leads the second by `lead` or more (then it is returned as it is, unread). Other weights
    and leads are for bench/bench_read.py, which chose these."""
    if z[order[0]] - z[order[1]] >= lead:
        return order
    head = order[:READ_K]
    read = np.asarray(reader(question, [passages[i].full_text for i in head]), np.float64)
    fused = z[head] + weight * read
    return np.concatenate([head[np.argsort(-fused, kind="stable")], order[READ_K:]])


# The other ask: a long question often asks two things with two records (or three with
# three). The second passage shown is the one that stands out where the first does not,
# and a third the one that stands out where neither does (other_ask_next); ranked plainly,
# the second was a neighbour of the first. On long two-record questions (pairs of the long
# demo questions, same domain) both records were shown for 59% ranked plainly, 83% so
# (docs/BENCHMARKS.md, "The other ask").
def other_ask_next(order: np.ndarray, rows: np.ndarray, taken: int = 1) -> np.ndarray:
    """Return `order` with the passage at position `taken` the one that best answers what
    the `taken` passages before it leave (see the comment above): its whole-question
    z-score plus FUSE times how far it stands out beyond the best of them for each
    sentence, summed over the sentences where it does."""
    z = zscores(rows)
    head = order[:taken]
    beyond = z[1:] - z[1:, head].max(axis=1, keepdims=True)
    gain = z[0] + FUSE * np.maximum(beyond, 0.0).sum(axis=0)
    gain[head] = -np.inf
    chosen = int(np.argmax(gain))
    rest = order[taken:]
    return np.concatenate([head, [chosen], rest[rest != chosen]]).astype(order.dtype)


# More parts: a sentence of the question asks what the passages before do not answer, and
# the next passage answers it apart (other_asks). Either that passage stands out beyond
# the best of those before it by OTHER_ASK_LEAD standard deviations or more for some
# sentence, or the asks divide (_asks_apart): of the question's sentences that end in "?"
# (two or more), a passage before it scores above it for one, and it leads them by
# OTHER_ASK_MARGIN and stands out by OTHER_ASK_STANDOUT for another. Each sentence is
# answered by the part whose passage is best for it; at most MOST_PARTS parts. The lead is
# the lowest (of 0.5-3.5) that splits at most 5% of the single-record long demo questions
# (3.7% of 328). The asks' margin and standout are the lowest (of 0.5-2.5 and 0-2.0) that
# split no more of those than the rules before them (4.6%, one question more); on pairs of
# questions asked together, long ones then split 81% and short ones 85%, against 75% and
# 71% before (docs/BENCHMARKS.md, "The other ask"). Since two asks joined by "and" in one
# sentence are two sentences (_JOINED_ASK), they split 7.3% of the single-record long
# questions, with no fact lost ("Two asks in one sentence").
OTHER_ASK_LEAD = 3.0
OTHER_ASK_STANDOUT = 1.5
OTHER_ASK_MARGIN = 0.5
MOST_PARTS = 3


def other_asks(
    rows: np.ndarray, order: Sequence[int], sentences: Sequence[str], most: int = MOST_PARTS
) -> list[list[str]]:
    """Return, for each part of the answer after the first, the question's `sentences` it
    answers from the passage at that position of `order` (see OTHER_ASK_LEAD); [] for an
    answer in one part, and for a question of one sentence. A passage is not added when
    the sentences it would take leave a part before it with none."""
    if len(rows) < 2 or len(rows) - 1 != len(sentences):
        return []
    z = zscores(rows)[1:]
    owner = np.zeros(len(sentences), np.int64)  # the part that answers each sentence
    parts = 1
    while parts < min(most, len(order)):
        passage = int(order[parts])
        lead = z[:, passage] - z[:, list(order[:parts])].max(axis=1)
        if float(lead.max()) < OTHER_ASK_LEAD and not _asks_apart(lead, z[:, passage], sentences):
            break
        taken = np.where(lead > 0, parts, owner)
        if len(set(taken.tolist()) - {0}) < parts:  # a part before it would answer nothing
            break
        owner, parts = taken, parts + 1
    return [[s for s, o in zip(sentences, owner, strict=True) if o == p] for p in range(1, parts)]


def in_asked_order(
    asks: Sequence[Sequence[str]], sentences: Sequence[str]
) -> tuple[list[int], list[list[str]]]:
    """Return the parts of an answer in the order the question asks them: the parts'
    positions in that order (0 the first part, which answers the sentences `asks` leave),
    and the sentences each part after the new first answers (`asks` for them). A part's
    place is the first sentence it answers, what the asker tells before asking included:
    the record that stands out for "Three hens died overnight, how do I get rid of them?"
    answers before the one for "Also, the scaly legs?", though the second ranks first
    for the whole question. A part after the first that answers no sentence that asks
    (`_an_ask`), only what the asker tells, comes after those that do: a neighbouring
    record that stands out for "My store has had weevils two years in a row" does not
    answer before the Kilnox record the question asks about. When the other parts take
    every sentence, the first part answers the whole question and stays first."""
    claimed = {s for ask in asks for s in ask}
    rest = [s for s in sentences if s not in claimed]
    if not asks or not rest:
        return list(range(len(asks) + 1)), [list(a) for a in asks]
    parts = [rest, *asks]

    def place(part: int) -> tuple[bool, int]:
        at = [i for i, s in enumerate(sentences) if s in parts[part]]
        told = part > 0 and not any(_an_ask(sentences[i]) for i in at)
        return told, at[0]

    order = sorted(range(len(parts)), key=place)
    return order, [list(parts[p]) for p in order[1:]]


def own_ask(question: str, other_ask: Sequence[str]) -> str:
    """Return what the first part of an answer in parts answers: the question's sentences
    the other parts do not (`other_ask`), or the whole question when that leaves none.
    Asked the whole question, the first record's adapter often recites the second record,
    whose words the other ask shares (docs/BENCHMARKS.md, "The other ask")."""
    own = [s for s in question_sentences(question) if s not in other_ask]
    return " ".join(own) if own and other_ask else question


def _asks_apart(lead: np.ndarray, standout: np.ndarray, sentences: Sequence[str]) -> bool:
    """True when the sentences ending in "?" divide between a passage and those before it:
    two or more of them, one of those before scoring above it for one (`lead` below 0:
    its z-score minus the best of theirs, per sentence), and it leading them by
    OTHER_ASK_MARGIN and standing out by OTHER_ASK_STANDOUT (its z-score) for another."""
    asks = asks_in(sentences)
    ahead = (lead[asks] >= OTHER_ASK_MARGIN) & (standout[asks] >= OTHER_ASK_STANDOUT)
    return len(asks) > 1 and bool((lead[asks] < 0).any()) and bool(ahead.any())


def cover_score(rows: np.ndarray) -> float:
    """Return the cover score of (texts, passages) scores with a spread: the best score plus
    STANDOUT times how far it stands out, for the whole question or any one sentence."""
    return float((rows.max(axis=1) + STANDOUT * zscores(rows).max(axis=1)).max())


def rank_scores(rows: np.ndarray) -> np.ndarray:
    """Return the ranking score of each passage (see FUSE) from the (texts, passages)
    scores; a packet with too few passages for a spread ranks by row 0 alone."""
    if rows.shape[1] < MIN_SPREAD_PASSAGES:
        return rows[0]
    z = zscores(rows)
    return z[0] + FUSE * z[1:].sum(axis=0)


def shown_scores(rows: np.ndarray) -> np.ndarray:
    """Return each passage's score as an answer shows it: its scores for the whole question
    and for each sentence, averaged with the ranking's weights (1 and FUSE). On the scale
    of a cosine, unlike the ranking's z-scores, and in the ranking's order far more often
    than the whole question's score alone (docs/ARCHITECTURE.md)."""
    if rows.shape[1] < MIN_SPREAD_PASSAGES or len(rows) == 1:
        return rows[0]
    return (rows[0] + FUSE * rows[1:].sum(axis=0)) / (1 + FUSE * (len(rows) - 1))


def zscores(rows: np.ndarray) -> np.ndarray:
    """Return how far each passage stands out from the packet's others, per text (row)."""
    spread = np.maximum(rows.std(axis=1, keepdims=True), 1e-9)
    return (rows - rows.mean(axis=1, keepdims=True)) / spread


def asks_in(sentences: Sequence[str]) -> list[int]:
    """Return the indices of the sentences that ask (`_asks`)."""
    return [i for i, sentence in enumerate(sentences) if _asks(sentence)]


def _an_ask(sentence: str) -> bool:
    """Whether a sentence asks (`_asks`), or opens as a question does: a long ask split at
    ", and" leaves its first clauses without their "?" ("How far may we tilt it, what must
    we do first"), and "Also", "and" or "so" may lead it."""
    return _asks(sentence) or bool(_OPENS_AN_ASK.match(_LEAD.sub("", sentence.lstrip())))


def _asks(sentence: str) -> bool:
    """Whether a sentence asks: it ends in "?"."""
    return sentence.rstrip().endswith("?")


def question_sentences(question: str) -> list[str]:
    """Return the sentences of a long question (three words or more each; [] for one):
    split at a full stop, "!", "?" or ";", at ", and" (", but", ", so"), and, in a
    sentence that asks, where "and" starts a second ask (see _JOINED_ASK)."""
    parts: list[str] = []
    for sentence in _SENTENCE.split(question.strip()):
        asks = _asks(sentence)
        for clause in _CLAUSE.split(sentence):
            joined = _JOINED_ASK.split(clause) if asks else [clause]
            parts += [_as_ask(c) for c in joined[:-1]] + joined[-1:]
    parts = [p.strip() for p in parts if len(p.split()) >= 3]
    return parts if len(parts) > 1 else []


def _as_ask(clause: str) -> str:
    """Return a clause that an "and" starting a second ask follows (_JOINED_ASK), ending in
    "?" when it opens as a question does, as it is when it does not ("My hens cough and
    what is it?": "My hens cough")."""
    clause = clause.strip().rstrip(",")
    return f"{clause}?" if _OPENS_AN_ASK.match(clause) else clause
