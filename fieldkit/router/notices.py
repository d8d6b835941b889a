"""The sentence an answer starts with when its packet's notes may not cover the question.

`fieldkit.router.retrieval.Coverage` decides; these say it, the same way for `ask`, the
Ask screen, the agent and an HTTP client.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from fieldkit.store.notes import TitledText

# The second sentence of a gap answer's notice when the notes hold no passage at all: the
# generated text under it reads as confidently as a grounded answer does, so the notice says
# what it is.
GUESS = "Below is the adapter's answer, which no record was found close enough to vouch for."
# ... and when they hold a nearest record: that record, as written, is the answer's text and
# nothing is generated (`nearest_as_written`). On a question the notes do not cover, the
# adapter wrote out some record of its notes or made one up; the nearest record is one a
# person can judge, and on covered questions the check refused it held the facts asked far
# more often than the adapter's text did (docs/BENCHMARKS.md, "A gap answer: the nearest
# record as written").
AS_WRITTEN = "Below is that record as written; it may not answer this question."
NAMED_SHOWN = 6  # at most this many of the notes' codes are named in a gap's notice
GAP_OPENING = re.compile(r"The .+? packet has nothing on ")  # how every gap_message starts


def gap_message(
    packet_name: str,
    nearest: Sequence[TitledText],
    missing: Sequence[str] = (),
    family: Sequence[str] = (),
) -> str:
    """Return what an answer starts with when no passage covers the question: that the
    packet has nothing on it, its nearest record, and that the text below is that record as
    written (`nearest_as_written`; with no nearest record, the adapter's guess). On
    `missing` codes, whose `family` the notes name, it names them, and no text of a record
    follows (see `unlisted_answer`)."""
    if missing:
        subject = f"nothing on {_and(missing)}: its notes name {_and(family, NAMED_SHOWN)}"
    else:
        subject = "nothing on this"
    if not nearest:
        return f"The {packet_name} packet has {subject}.{'' if missing else f' {GUESS}'}"
    label = _label(nearest[0])
    stop = "" if label.endswith((".", "?", "!")) else "."
    below = "" if missing else f" {AS_WRITTEN}"
    return f"The {packet_name} packet has {subject}; nearest: {label}{stop}{below}"


def nearest_as_written(nearest: Sequence[TitledText]) -> str | None:
    """Return the whole text of a gap answer whose notes hold a nearest record: that
    record's text as written (its question is in the notice above it: `gap_message`), so
    nothing is generated; None when there is none (the adapter answers, under GUESS)."""
    return nearest[0].text if nearest else None


def unlisted_answer(missing: Sequence[str]) -> str:
    """Return the whole answer to a question about codes the notes do not list, of a family
    they do: the adapter learnt the same records, so whatever it wrote of them would be made
    up (it wrote another code's meaning as theirs), and nothing is generated."""
    return (
        f"No answer is generated: the packet holds no record of {_and(missing)}. Look "
        f"{'it' if len(missing) == 1 else 'them'} up in the equipment's own manual, or ask "
        "its supplier."
    )


def caution_message(
    packet_name: str,
    hits: Sequence[TitledText],
    unknown_codes: Sequence[str] = (),
    unstated: Sequence[str] = (),
) -> str:
    """Return the sentence an answer starts with when its passages may not cover the
    question (the cautious middle: see retrieval.DEFAULT_MIN_PARTIAL), naming any code in
    the question that the notes never mention, or else the kinds of quantity it asks for
    that their closest record states none of (fieldkit.router.kinds)."""
    if unstated and not unknown_codes:
        return (
            f"The {packet_name} notes' closest record states no {_and(unstated, or_=True)}; "
            f"check the answer against it: {_label(hits[0])}"
        )
    if unknown_codes:
        named = ", ".join(unknown_codes)
        return (
            f"The {packet_name} notes never mention {named}; check the answer against "
            f"their closest record: {_label(hits[0])}"
        )
    return (
        f"The {packet_name} notes may not answer this; check the answer against their "
        f"closest record: {_label(hits[0])}"
    )


def picked_message(packet_name: str, passage_id: str, hit: TitledText) -> str:
    """Return the sentence an answer starts with when a person picked its record (a gap
    answer's nearest, say): the notes did not choose it, so it names whose choice it was."""
    return f"Answered from the record you picked, {packet_name} {passage_id}: {_label(hit)}"


def recited_message(
    packet_name: str, part: int, parts: int, passage_id: str, hit: TitledText
) -> str:
    """Return the sentence after an answer (or its `part` of `parts`) that writes out
    another record of the packet than the one it was given (support.recited)."""
    other = f"another {packet_name} record, {passage_id} ({_label(hit)})"
    if parts == 1:
        return (
            f"The answer writes out {other}, not [1], the record found for this question: "
            "check it against [1]."
        )
    return (
        f"Part [{part}] writes out {other}, not the record it was given: check it against "
        f"source [{part}]."
    )


def written_instead_message(
    packet_name: str, part: int, parts: int, passage_id: str, hit: TitledText
) -> str:
    """Return the sentence after an answer (or its `part` of `parts`) whose opening wrote
    out another record of the packet than the one it was given, and which is therefore
    that record as written, with nothing generated (fieldkit.generating.Opening)."""
    other = f"another {packet_name} record, {passage_id} ({_label(hit)})"
    if parts == 1:
        return (
            f"Nothing generated: the adapter began to write out {other}, not [1], the "
            "record found for this question; the answer is [1] as written."
        )
    return (
        f"Part [{part}] is source [{part}] as written: the adapter began to write out "
        f"{other} instead."
    )


def _and(items: Sequence[str], most: int = 0, or_: bool = False) -> str:
    """'E07', 'E07 and E12', 'E07, E12 and E15' (and 'and N more' past `most`); with `or_`,
    'weight or price'."""
    shown = list(items[:most] if most else items)
    rest = len(items) - len(shown)
    if rest:
        return f"{', '.join(shown)} and {rest} more"
    word = "or" if or_ else "and"
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} {word} {shown[-1]}"


def _label(hit: TitledText) -> str:
    label = hit.title or hit.text
    return label if len(label) <= 120 else label[:117].rstrip() + "..."
