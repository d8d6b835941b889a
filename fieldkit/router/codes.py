"""The codes one packet's notes name (fault codes, model numbers) and the names they give
devices, and a question's codes against them: which the notes never name, which records
are about one the question names, and which are about one the asker says they lack.

"E07 on the screen" is the E07 record, whatever the cosine; "E09" when the notes list E07
and E21 is a code the notes do not know; "we have no GC-3" (or "no SiloGuard") asks what
to do without it, so its records neither cover the question nor answer it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from fieldkit.router.words import (
    device_names,
    lacked,
    lone_letter_codes,
    named_codes,
    plain_code,
    plain_tokens,
    same_family,
    singular_code,
)
from fieldkit.store.notes import Passage

# A code of letters and digits (a fault code, a model number) that the question and its
# nearest passage share, and that at most this many of the packet's passages name, covers
# the question whatever the cosine: "E07" on the screen is the E07 record.
CODE_MAX_PASSAGES = 2
_CODE = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[A-Za-z0-9][\w-]*[A-Za-z0-9]")
_RUN = re.compile(r"[\w-]+")  # a code is named where a whole run of these spells it
_RUN_OR_GAP = re.compile(r"[\w-]+|[^\w-]+")


def _runs(text: str) -> frozenset[str]:
    return frozenset(_RUN.findall(text.lower()))


class NoteCodes:
    """The codes of one packet's passages, read once."""

    def __init__(self, passages: Sequence[Passage]) -> None:
        self.tokens = plain_tokens(p.full_text for p in passages)  # as codes compare
        self.named = [m.group() for p in passages for m in named_codes(p.full_text)]
        self.texts = [_runs(p.full_text) for p in passages]  # what each passage names
        self.titles = [_runs(p.title or "") for p in passages]
        self.names = device_names([p.full_text for p in passages])

    def unknown(self, question: str) -> tuple[str, ...]:
        """Return the codes in the question (`words.named_codes`: E09, GC-3; and typed in
        lower case after one letter, e09, when the notes name codes of that letter:
        `words.lone_letter_codes`) that no passage names, whatever their case and hyphen
        (TL30 is TL-30), less those the asker says they lack (`lacked`). Such a question
        asks about something the notes do not know."""
        found = named_codes(question)
        found += [m for m in lone_letter_codes(question) if self.family_of([m.group()])]
        gone = self.lacked(question)
        codes = [m.group() for m in found if singular_code(m.group()) not in gone]
        return tuple(dict.fromkeys(c for c in codes if plain_code(c) not in self.tokens))

    def family_of(self, codes: Sequence[str]) -> tuple[str, ...]:
        """Return the codes the notes name in the family of any of `codes`
        (words.same_family: E07 and E21 for E09), each once, in notes order."""
        return tuple(same_family(codes, self.named))

    def naming(self, question: str, in_title: bool = False) -> list[int]:
        """Return the indices of the passages that name a rare code of the question (one
        that at most CODE_MAX_PASSAGES passages name), or with `in_title` those whose
        title names it: the record about E07, not one that mentions it in passing. A code
        the asker says they lack ("we have no GC-3") names none (see `lacked`)."""
        codes = {singular_code(m.group()) for m in _CODE.finditer(question)}
        codes -= self.lacked(question)
        return self._titled(codes, in_title, rare=True)

    def about(self, codes: set[str]) -> list[int]:
        """Return the indices of the passages whose title names any of `codes` (lower-cased
        codes and device names: `lacked`), however many passages name it: with the codes
        the asker lacks, the records about a device they do not have."""
        return self._titled(codes, in_title=True, rare=False)

    def lacked(self, question: str) -> set[str]:
        """Return the codes and device names (words.device_names: SiloGuard) of the
        question, lower-cased, that the asker says they lack at every mention
        (words.lacked: "we have no SG-1", "we do not have the SiloGuard")."""
        said: dict[str, bool] = {}
        for m in _CODE.finditer(question):
            code = singular_code(m.group())
            said[code] = said.get(code, True) and lacked(question, m.start())
        for m in _RUN.finditer(question):
            name = _spelt(m.group(), self.names)
            if name is not None:
                said[name] = said.get(name, True) and lacked(question, m.start())
        return {code for code, gone in said.items() if gone}

    def _titled(self, codes: set[str], in_title: bool, rare: bool) -> list[int]:
        found: list[int] = []
        for code in codes:
            naming = [i for i, runs in enumerate(self.texts) if code in runs]
            if not rare or len(naming) <= CODE_MAX_PASSAGES:
                chosen = [i for i in naming if code in self.titles[i]] if in_title else naming
                found.extend(i for i in chosen if i not in found)
        return found


def without(text: str, names: set[str]) -> str:
    """Return `text` without the runs that spell any of `names` (lower-cased codes and
    device names, as NoteCodes.lacked returns them)."""
    kept = [m.group() for m in _RUN_OR_GAP.finditer(text) if _spelt(m.group(), names) is None]
    return " ".join("".join(kept).split())


def _spelt(run: str, names: set[str]) -> str | None:
    """Return the one of `names` a run of the question spells, or its plural does (two
    Hermabags are two Hermabag bags); None when it spells none."""
    run = run.lower()
    if run in names:
        return run
    return run[:-1] if run.endswith("s") and run[:-1] in names else None
