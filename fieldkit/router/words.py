"""Shared rare words: how much of a question's vocabulary a text holds, weighted by rarity.

A small embedder blurs names and codes ("Fumitab", "SD-400", "Mbarali"); a word that few
texts hold and that the question shares is evidence no cosine gives. Retrieval weighs the
words among one packet's passages; the router among every noted packet of the library.
The texts are held as one sparse presence matrix (word ids per text, CSR layout), so a
question is scored against every text with a few numpy gathers, not a loop over texts.

Codes (fault codes, model numbers: E09, GC-3) are compared here too, one way for the
coverage check (a code the notes never name) and the support check (a code in an answer
that no source names).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import numpy as np

_TOKEN = re.compile(r"[a-z0-9][a-z0-9'-]*")
_STOP_TEXT = """a an the and or of to in on at by for with from into is are was were be been it its
    this that these those which who what when where why how than then there their they them
    he she his her our your you we i as not no can could should would will may might must do
    does did has have had such also just so if but my me am"""
_STOP = frozenset(_STOP_TEXT.split())
_SUFFIXES = ("ing", "ed", "es", "s")
# A code such as a fault code or a model number: letters, then digits (E09, GC-3, TL-30),
# and as users type them on a phone (hk4, kc25, tl30). One lower-case letter ("b4") and
# tokens that start with a digit ("12v", "2nd") are too often words or units to count.
_NAMED_CODE = re.compile(r"(?<![\w-])(?:[A-Z]|[A-Za-z]{2,4})-?\d{1,4}[A-Za-z]?(?![\w-])")
_CODE_TOKEN = re.compile(r"[A-Za-z0-9][\w-]*")
_PLURAL = re.compile(r"(?<=\d)s$")  # a code's plural: HB-90s (not E07S, a code of its own)
_LONE_LETTER = re.compile(r"(?<![\w-])[a-z]-?\d{2,4}(?![\w-])")
_FAMILY = re.compile(r"([a-z]+)\d+[a-z]?")  # a plain code: its letters, then its number
_WORD = re.compile(r"(?<![\w-])[A-Za-z]+(?![\w-])")  # a word of letters alone
_BEFORE_CODE = re.compile(rf"(?<![\w-])([A-Z][A-Za-z]+) (?={_NAMED_CODE.pattern})")
# A code the asker says they lack ("has no GC-3", "without the GC-3", "we don't have a
# GC-3", and so as shorthand is written out: "we do not have a GC-3"; "instead of the
# GC-3"; "we lost our GC-3", "the GC-3 was stolen"), or says it is not ("not E07 this
# time, the screen says E12"), is not what they ask about: they ask what to do without
# it. A broken one is not lacked: its own record may be the answer. After an article or
# a possessive one word may stand between ("the co-op GC-3"), not a verb's -ing; with
# none, no word may ("no water, E12 on the screen" lacks water, not E12).
_LACKING = re.compile(
    r"(?:\b(?:no|without|lacks?|lacking|lost|stole|instead\s+of|other\s+than"
    r"|(?:do|does|did)(?:n'?t|\s+not)\s+have|ha(?:s|ve)(?:n'?t|\s+not)\s+got)"
    r"\s+(?:(?:a|an|the|any|my|our|their|his|her)\s+(?:(?![\w-]*ing\s)[\w-]+\s+)?)?"
    r"|\bnot\s+(?:(?:a|an|the)\s+)?)$",
    re.I,
)
_GONE_AFTER = re.compile(
    r"\s+(?:(?:is|was|were|got|has\s+been|have\s+been)\s+(?:stolen|lost|missing)"
    r"|stolen|missing)\b",  # not "the GC-3 lost its calibration"
    re.I,
)
# ...unless a word after the code says what of it is missing: "no GC-3 reading", "no TL-30
# signal" (the asker has the device; it shows nothing).
_PRESENT_AFTER = re.compile(
    r"[\s-]*(?:reading|readings|reads|display|screen|light|lights|signal|power|response"
    r"|result|results|number|numbers|value|values|figure|figures|data|alarm|beep)\b",
    re.I,
)


def words_of(text: str) -> set[str]:
    """Return a text's words, lower-cased, without stop words, crudely stemmed."""
    out = set()
    for word in _TOKEN.findall(text.lower()):
        if word in _STOP or len(word) < 2:
            continue
        for suffix in _SUFFIXES:
            if len(word) > 4 and word.endswith(suffix):
                word = word[: -len(suffix)]
                break
        out.add(word)
    return out


def named_codes(text: str) -> list[re.Match[str]]:
    """Return the codes in a text (see _NAMED_CODE), with their places."""
    return list(_NAMED_CODE.finditer(text))


def lone_letter_codes(text: str) -> list[re.Match[str]]:
    """Return the tokens of one lower-case letter and two to four digits (e09, p-10), as a
    code is typed on a phone, with their places; a caller counts them as codes only where
    the notes name codes of that letter (E07, E12). One digit (b4, m3) is too often a word
    or a unit to count."""
    return list(_LONE_LETTER.finditer(text))


def lacked(text: str, start: int) -> bool:
    """Whether the code at `start` of `text` is one the asker says they lack (_LACKING,
    _GONE_AFTER), not one whose reading or signal is missing (_PRESENT_AFTER)."""
    code = _CODE_TOKEN.match(text, start)
    end = code.end() if code else start
    if _GONE_AFTER.match(text, end):
        return True
    return bool(_LACKING.search(text[:start])) and not _PRESENT_AFTER.match(text, end)


def device_names(texts: Sequence[str]) -> set[str]:
    """Return the names the texts give devices, lower-cased: a word they write only with
    a capital that stands right before a code at least once (the SiloGuard of "SiloGuard
    SG-1", the Frostline of "Frostline FL-220"). A capitalised word alone may name a
    disease or a pest ("no Bluecap toxin" is what the asker hopes to find), so it does not
    count."""
    lower = {m.group() for text in texts for m in _WORD.finditer(text) if m.group().islower()}
    names = set()
    for text in texts:
        for match in _BEFORE_CODE.finditer(text):
            word = match.group(1)
            if word.lower() not in lower and word.lower() not in _STOP and len(word) >= 4:
                names.add(word.lower())
    return names


def singular_code(token: str) -> str:
    """Return a code as a text's word runs spell it: lower case, without a plural's "s"
    (two HB-90s are two HB-90 bags; E07S stays a code of its own)."""
    return _PLURAL.sub("", token).lower()


def plain_code(token: str) -> str:
    """Return a code as it is compared: `singular_code`, without hyphens (TL30 is TL-30)."""
    return singular_code(token).replace("-", "")


def code_family(code: str) -> str | None:
    """Return the letters a code's number follows, as compared (E09 and E21: "e"; TL-30
    and tl50: "tl"), or None for a token that is not a code of that shape."""
    match = _FAMILY.fullmatch(plain_code(code))
    return match.group(1) if match else None


def same_family(codes: Iterable[str], named: Iterable[str]) -> list[str]:
    """Return the codes of `named` in the family of any of `codes` (E07 and E21 for E09),
    each once, in their order."""
    families = {code_family(c) for c in codes} - {None}
    seen: dict[str, str] = {}
    for code in named:
        if code_family(code) in families:
            seen.setdefault(plain_code(code), code)
    return list(seen.values())


def plain_tokens(texts: Iterable[str]) -> set[str]:
    """Return every token of the texts, as `plain_code` compares them."""
    return {plain_code(t) for text in texts for t in _CODE_TOKEN.findall(text)}


class WordIndex:
    """Which words each of a list of texts holds, and how rare each word is among them.

    A word held by c of n texts weighs log(1 + n / c); a word no text holds weighs
    log(1 + 2n), so a question full of words foreign to the texts shares little with any.
    """

    def __init__(self, texts: Sequence[str]) -> None:
        docs = [words_of(t) for t in texts]
        vocab: dict[str, int] = {}
        ids = [[vocab.setdefault(w, len(vocab)) for w in sorted(doc)] for doc in docs]
        self.vocab = vocab
        self.size = len(texts)
        lengths = np.array([len(i) for i in ids], np.int64)
        self.starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self.lengths = lengths
        self.flat = np.array([w for i in ids for w in i], np.int64)
        counts = np.bincount(self.flat, minlength=len(vocab)).astype(np.float64)
        n = max(self.size, 1)
        self.weight = np.log1p(n / np.maximum(counts, 1.0))
        self.unseen = math.log1p(2 * n)

    def overlap(self, text: str) -> np.ndarray:
        """Return, per text, the rarity-weighted share of `text`'s words it holds (0..1)."""
        words = words_of(text)
        known = [self.vocab[w] for w in words if w in self.vocab]
        total = float(self.weight[known].sum()) + self.unseen * (len(words) - len(known))
        if not total or not self.size:
            return np.zeros(self.size, np.float32)
        asked = np.zeros(len(self.vocab), np.float64)
        asked[known] = self.weight[known]
        gathered = np.append(asked[self.flat], 0.0)  # a zero after the last text's words
        sums = np.where(self.lengths > 0, np.add.reduceat(gathered, self.starts), 0.0)
        return (sums / total).astype(np.float32)

    def best_per_group(self, text: str, starts: np.ndarray) -> np.ndarray:
        """Return the best `overlap` within each group of consecutive texts beginning at
        `starts` (one group per packet, every group non-empty)."""
        if not len(starts):
            return np.zeros(0, np.float32)
        return np.maximum.reduceat(self.overlap(text), starts)
