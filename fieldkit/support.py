"""The support check: which numbers and codes in an answer no passage states.

A number is a claim a technician acts on ("dry to 12.5%", "a booster at day 26"); one that
the passages shown beside the answer do not hold is marked, in `ask --json` and on screen.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from fieldkit.formats import SENTENCE_END
from fieldkit.router.words import named_codes, plain_code, plain_tokens, words_of


@dataclass(frozen=True)
class Unsupported:
    """A number (with its unit, if any) in an answer that no retrieved passage states."""

    text: str
    start: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_UNITS = {
    "%": "%", "percent": "%", "per cent": "%",
    "°c": "c", "c": "c", "°": "c", "degrees": "c", "degree": "c",
    "°f": "f", "f": "f",
    "mm": "mm", "cm": "cm", "m": "m", "metre": "m", "metres": "m", "meter": "m", "meters": "m",
    "km": "km", "kg": "kg", "g": "g", "grams": "g", "mg": "mg", "t": "t", "tonnes": "t",
    "l": "l", "litre": "l", "litres": "l", "liter": "l", "liters": "l", "ml": "ml",
    "h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
    "min": "min", "mins": "min", "minute": "min", "minutes": "min",
    "s": "s", "sec": "s", "second": "s", "seconds": "s",
    "day": "d", "days": "d", "week": "wk", "weeks": "wk", "month": "mo", "months": "mo",
    "year": "y", "years": "y",
    "w": "w", "watt": "w", "watts": "w", "kw": "kw", "kwh": "kwh", "wh": "wh",
    "v": "v", "volt": "v", "volts": "v", "a": "a", "amp": "a", "amps": "a",
    "bar": "bar", "psi": "psi", "ppm": "ppm", "am": "am", "pm": "pm",
}  # fmt: skip
# A number, with a minus sign before it when one stands alone there ("at -10°C"; not the
# dash of a range, "2-8", nor of a code: SG-1, HK-2, see words.named_codes), and its unit.
_NUMBER = re.compile(
    r"(?:(?<![\w.])([-\u2212])(?=\d))?(?<![\w.])(?<![A-Za-z]-)(\d+(?:[.,]\d+)*)"
    r"(?:\s*(per cent|°[cf]|%|°|[a-z]+)\b|\s*(%|°))?",
    re.IGNORECASE,
)


_BEFORE = re.compile(r"\b(day|week|month|year|hour)\s*$", re.IGNORECASE)  # "day 5"


def _mentions(text: str) -> list[tuple[str, str | None, int, int]]:
    """Return (number, unit or None, start, end) for each number in the text."""
    out = []
    for m in _NUMBER.finditer(text):
        if text[m.start(2) - 1 : m.start(2)] == "[" and text[m.end(2) : m.end(2) + 1] == "]":
            continue  # "[2]": a source's number (an answer in parts marks its parts so)
        raw_unit = m.group(3) or m.group(4) or ""
        # "a" after a number is the article ("1 a day"); amperes are written "A"
        unit = None if raw_unit == "a" else _UNITS.get(raw_unit.lower())
        end = m.end() if unit else m.end(2)  # the word after is its unit, or not its own
        if unit is None and (before := _BEFORE.search(text, 0, m.start())):
            unit = _UNITS[before.group(1).lower()]
        number = m.group(2).replace(",", "")
        if "." in number:
            number = number.rstrip("0").rstrip(".") or "0"
        if m.group(1) and number.strip("0."):  # -8 is not +8 (or 8); -0 is 0
            number = "-" + number
        out.append((number, unit, m.start(), end))
    return out


def units_stated(text: str) -> set[str]:
    """Return the units of the numbers the text states ("c" for °C, "kg", "%": _UNITS)."""
    return {unit for _, unit, _, _ in _mentions(text) if unit}


def support_check(answer: str, passages: Sequence[str]) -> list[Unsupported]:
    """Return each number (with its unit) and each code in the answer that no passage
    states, in the order they appear.

    A number is supported when a passage holds the same number, as a whole number (5 is
    not inside 15 or 2.5), with the same unit or where either side names none (day 5 and
    5 days), and the same sign (-8°C is not +8°C). A code (words.named_codes: E09, GC-3)
    is supported when a passage names it, whatever its case and hyphen. An answer drawn from no passages has every number and
    code unsupported.
    """
    stated: dict[str, set[str | None]] = {}
    for passage in passages:
        for number, unit, _, _ in _mentions(passage):
            stated.setdefault(number, set()).add(unit)
    marks = []
    for number, unit, start, end in _mentions(answer):
        units = stated.get(number)
        if units is not None and (unit is None or None in units or unit in units):
            continue
        marks.append(Unsupported(answer[start:end], start, end))
    named = plain_tokens(passages)
    for code in named_codes(answer):
        if plain_code(code.group()) not in named:
            marks.append(Unsupported(code.group(), code.start(), code.end()))
    return sorted(marks, key=lambda mark: mark.start)


CHECK_IT = "check it before acting on it"  # said when no number is in the sources
NONE_SUPPORTED = f"no number of the answer is in them: {CHECK_IT}"


# The line under an answer whose every number is in a source: what that checks, and what
# it does not (read as a check that the answer is right, it vouched for answers drawn from
# the wrong record).
NUMBERS_FOUND = (
    "every number in the answer is in a source; that checks the numbers, not that it answers "
    "the question"
)


def states_numbers(answer: str) -> bool:
    """True when the answer states a number or a code: only then can it be said that every
    number in it is in a source (said of an answer with none, it vouches for nothing)."""
    return bool(_mentions(answer) or named_codes(answer))


def none_supported(answer: str, marks: int) -> bool:
    """True when `marks` unsupported marks cover every number and code of the answer, two
    or more: an answer whose facts are all missing from its sources most likely answers
    another question than the one asked. The one rule for `ask` and the Ask screen."""
    return marks >= 2 and marks >= len(_mentions(answer)) + len(named_codes(answer))


_RANGE_GAP = re.compile(r"\s*(?:-|–|to|and|or)\s*")


def shown_marks(answer: str, spans: Sequence[tuple[int, int]]) -> list[str]:
    """Return the unsupported marks as a person reads them: a range whose ends are both
    marked ("10 to 20 minutes", "2-3 days") as one, not as "10, 20 minutes"."""
    shown: list[str] = []
    last_end = None
    for start, end in spans:
        if last_end is not None and _RANGE_GAP.fullmatch(answer[last_end:start]):
            shown[-1] += answer[last_end:end]
        else:
            shown.append(answer[start:end])
        last_end = end
    return shown


# An answer that writes out another record: a packet's adapter has learnt its records by
# heart, and given one record it sometimes writes out another, word for word ("Remove all
# litter, scrub with detergent..." for a question on feeders). When another record of the
# packet holds at least RECITED_SHARE of the answer's words and RECITED_LEAD more of them
# than the record it was given, the answer says so. It finds 42 of the 706 answers the
# demo benchmarks cached; of the 23 whose question is known, the question's own record was
# the one given for 21, and they recall 11% of their facts, the others 85% (RECITED_SHARE
# and RECITED_LEAD of 0.4-0.7 and 0.1-0.4 find 35-46 of them; docs/BENCHMARKS.md, "An
# answer that writes out another record").
RECITED_SHARE = 0.5
RECITED_LEAD = 0.3
RECITED_MIN_WORDS = 4


def recited(
    answer: str,
    given: str,
    others: Sequence[str],
    share: float = RECITED_SHARE,
    lead: float = RECITED_LEAD,
) -> int | None:
    """Return the index in `others` of the record `answer` writes out instead of the record
    it was `given` (see RECITED_SHARE), or None when it follows that record or none."""
    words = words_of(answer)
    if len(words) < RECITED_MIN_WORDS or not others:
        return None
    shares = [len(words & words_of(text)) / len(words) for text in others]
    best = max(range(len(others)), key=shares.__getitem__)
    own = len(words & words_of(given)) / len(words)
    if shares[best] >= share and shares[best] - own >= lead:
        return best
    return None


def opening(text: str, done: bool = False) -> str | None:
    """Return the answer's opening: its first sentences, up to the first end after which
    they hold RECITED_MIN_WORDS words (`recited` decides on fewer none). While the answer is
    being written (`done` False), None until that end is written; once it is done, all of
    it when it never gets there. An adapter that is to write out another record than its
    own begins it in its opening (docs/BENCHMARKS.md, "An answer that begins another record
    is given as its own record"). Sentences end as clean decoding shows them
    (formats.SENTENCE_END)."""
    for end in SENTENCE_END.finditer(text):
        if len(words_of(text[: end.end()])) >= RECITED_MIN_WORDS:
            return text[: end.end()]
    return text if done else None
