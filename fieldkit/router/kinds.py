"""What kind of quantity a question asks for, and whether a passage states one.

A question that asks how heavy something is, how many litres, what amp rating or what it
costs asks for a quantity of one kind; a record that states no quantity of that kind does
not answer it, however near its words are: "kc-4 carrier fully loaded, how many kg?" is
not answered by the record on packing the KC-4, which gives no weight. Such a question is
covered at most in the cautious middle (retrieval.Coverage.unstated): the answer says
first that the record it reads states no weight. A question in parts is checked against
every record its parts read. Only the sentences that ask (those ending in
"?", else the last) are read: a long question's story mentions prices and distances in
passing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from fieldkit.router.ranking import asks_in, question_sentences
from fieldkit.support import units_stated

_LENGTH = frozenset({"mm", "cm", "m", "km"})
# kind: (how a question asks for it, the units that state it; None: a price, see _PRICE)
KINDS: dict[str, tuple[re.Pattern[str], frozenset[str] | None]] = {
    "weight": (
        re.compile(r"\bhow heavy\b|\bweigh(?:s|t|ts)?\b|\bhow many (?:kg|kilos?|grams?|tonnes?)\b"),
        frozenset({"kg", "g", "mg", "t"}),
    ),
    "volume": (
        re.compile(r"\bhow many (?:ml|litres?|liters?)\b"),
        frozenset({"l", "ml"}),
    ),
    "distance": (  # not "how far": how far it may lean, how far two readings may differ
        re.compile(r"\bhow (?:deep|high|tall|wide|thick)\b|\bwhat (?:diameter|depth|height|distance)\b"),
        _LENGTH,
    ),
    "duration": (  # "how long" may be a length too
        re.compile(r"\bhow long\b|\bhow many (?:days|hours|weeks|months|minutes|years)\b|\bshelf life\b"),
        frozenset({"h", "min", "s", "d", "wk", "mo", "y"}) | _LENGTH,
    ),
    "temperature": (
        re.compile(r"\bwhat temp(?:erature)?\b|\bhow (?:hot|cold|warm)\b"),
        frozenset({"c", "f"}),
    ),
    "percentage": (
        re.compile(r"\bwhat (?:%|percent)|\bhow many percent\b|\bhumidity\b"),
        frozenset({"%"}),
    ),
    "current": (re.compile(r"\b(?:amps?|amperes?|fuse rating)\b"), frozenset({"a"})),
    "voltage": (re.compile(r"\bwhat voltage\b|\bhow many volts\b"), frozenset({"v"})),
    # a price asked for, not "how much does dust cost us"
    "price": (
        re.compile(
            r"\bprices?\b|\bwhat (?:does|do|will) [^?.]{0,60}\bcost\b|\bcosts? (?:to buy|now)\b"
            r"|\bhow much (?:is|are|does|do) [^?.]{0,60}\bcost\s*(?:\?|$)"
        ),
        None,
    ),
}  # fmt: skip
_PRICE = re.compile(r"\b(?:ksh|kes|tsh|ugx|usd|shillings?|dollars?|price|costs?)\b|\$", re.I)
# a duration said in words ("for the first week", "overnight") states one too
_TIME_WORDS = re.compile(r"\b(?:days?|weeks?|months?|years?|hours?|minutes?|overnight)\b", re.I)


def asked_kinds(question: str) -> tuple[str, ...]:
    """Return the kinds of quantity the question's asking sentences ask for, in KINDS order
    (its sentences as ranking splits them, those that end in "?", else the last)."""
    sentences = question_sentences(question) or [question]
    asking = [sentences[i] for i in asks_in(sentences)] or sentences[-1:]
    text = " ".join(asking).lower()
    return tuple(kind for kind, (asks, _) in KINDS.items() if asks.search(text))


def unstated_kinds(question: str, passages: Sequence[str]) -> tuple[str, ...]:
    """Return the kinds of quantity the question asks for that none of the passages (those
    an answer reads: one, or one a part) states any quantity of."""
    asked = asked_kinds(question)
    if not asked:
        return ()
    text = "\n".join(passages)
    units = units_stated(text)
    out = []
    for kind in asked:
        stating = KINDS[kind][1]
        stated = bool(_PRICE.search(text)) if stating is None else bool(units & stating)
        stated = stated or (kind == "duration" and bool(_TIME_WORDS.search(text)))
        if not stated:
            out.append(kind)
    return tuple(out)
