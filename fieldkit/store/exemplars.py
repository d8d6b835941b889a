"""A packet's exemplar questions and description: their limits, and how many are kept.

The router embeds a packet's exemplars; every training question and its phrasings belong
there (routing holds on short questions only with the phrasings: docs/BENCHMARKS.md,
"Router"). Formats 1-3 hold at most FORMAT3_EXEMPLARS, format 4 up to MAX_EXEMPLARS; all
of them together, in any format, at most the characters format 3 could hold, so the
manifest still fits one gossip frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fieldkit.errors import PacketError
from fieldkit.formats import control_chars

MIN_EXEMPLARS, MAX_EXEMPLARS, FORMAT3_EXEMPLARS = 10, 256, 64
MAX_TEXT = 2000
MAX_EXEMPLAR_CHARS = FORMAT3_EXEMPLARS * MAX_TEXT


def packet_texts(description: str, exemplars: Iterable[str]) -> tuple[str, list[str]]:
    """Return a description and exemplar questions as a new manifest holds them: stripped,
    blank questions dropped (`check_texts` then says whether they may be signed)."""
    return description.strip(), [q.strip() for q in exemplars if q.strip()]


def spread(questions: Sequence[str], k: int = MAX_EXEMPLARS) -> list[str]:
    """Return k of `questions` spread evenly over them (all of them when k or fewer): a
    training file's questions as exemplars, or the exemplars of several merged packets."""
    if len(questions) <= k:
        return list(questions)
    return [questions[i * len(questions) // k] for i in range(k)]


def first_that_fit(questions: Iterable[str], k: int = MAX_EXEMPLARS) -> list[str]:
    """Return the first of `questions` (each once) that a packet holds: at most k, and at
    most MAX_EXEMPLAR_CHARS characters together."""
    picked: list[str] = []
    chars = 0
    for question in dict.fromkeys(questions):
        if len(picked) == k or chars + len(question) > MAX_EXEMPLAR_CHARS:
            break
        picked.append(question)
        chars += len(question)
    return picked


def fit_exemplars(questions: Sequence[str]) -> list[str]:
    """Return the exemplars a packet keeps of more questions than it holds (a training file,
    the exemplars of several merged packets): spread evenly over them, within the limits."""
    return first_that_fit(spread(questions))


def check_texts(description: str, exemplars: list[Any], most: int = MAX_EXEMPLARS) -> None:
    """Check a packet's description and exemplar questions (lengths, count up to `most`,
    no control characters: they are printed on terminals); raise PacketError if bad."""
    if len(description) > MAX_TEXT:
        raise PacketError("The packet's description is too long.")
    if control_chars(description, "\t\n"):
        raise PacketError("The packet's description holds control characters.")
    if not MIN_EXEMPLARS <= len(exemplars) <= most:
        raise PacketError(
            f"A packet needs {MIN_EXEMPLARS} to {most} exemplar questions, not {len(exemplars)}."
        )
    if not all(isinstance(q, str) and 0 < len(q) <= MAX_TEXT for q in exemplars):
        raise PacketError("Every exemplar must be a non-empty question of at most 2000 characters.")
    if (chars := sum(map(len, exemplars))) > MAX_EXEMPLAR_CHARS:
        raise PacketError(
            f"The packet's exemplar questions hold {chars} characters; the limit is "
            f"{MAX_EXEMPLAR_CHARS}."
        )
    if any(control_chars(q, "\t") for q in exemplars):
        raise PacketError("An exemplar of the packet holds control characters.")
