"""Clean decoding: no run-on repeats, no half sentence at the end.

`CleanText` sits between the token stream and the person. It lets text through a whole
sentence at a time, stops the generation when the model starts repeating itself (a run of
`ngram` words it has already written, or a sentence it has already written), and at the
end drops a sentence the model had not finished when the token budget ran out. Plain
Python, no mlx: the engine feeds it text deltas on its MLX thread.
"""

from __future__ import annotations

import re

from fieldkit.formats import SENTENCE_END

REPEAT_WORDS = 8  # a run of this many words written twice is a repeat
# A stutter inside one word: a unit of 1-4 characters written 16 times in a row
# ("vvvvvvvv...", "abababab..."), which no run of words catches (the word never ends).
_STUTTER = re.compile(r"(\S{1,4}?)\1{15,}")
_WORD = re.compile(r"[\w%°.,:/-]+")
# A list item's number ("3." or "3)") at the start of a line: not a sentence of its own,
# so it is held back with the item's text (never shown alone, dangling at the end).
_MARKER = re.compile(r"\s*\d{1,3}[.)]")
_PIECE = re.compile(r"\s*\S+")  # a word and the space before it


def _item_text(sentence: str) -> str:
    """Return a sentence without its list number ("3. Tap Sounds." -> " Tap Sounds."), so
    that a list item repeated under a new number is still a repeat."""
    lead = _MARKER.match(sentence)
    if lead and sentence[lead.end() : lead.end() + 1].isspace():
        return sentence[lead.end() :]
    return sentence


def _words(text: str) -> list[str]:
    return [w.strip(".,:").lower() for w in _WORD.findall(text) if w.strip(".,:")]


class CleanText:
    """Holds back the sentence being written; says when to stop on a repeat.

    `feed(delta)` returns the text that is safe to show (whole sentences); after it sets
    `stopped`, the generation should end. `finish(natural)` returns what is left to show:
    the last sentence if the model ended it (EOS, `natural=True`), nothing if the budget
    cut it off mid-sentence, unless nothing at all was shown yet.
    """

    def __init__(self, ngram: int = REPEAT_WORDS) -> None:
        self.ngram = ngram
        self.shown = ""
        self.pending = ""
        self.stopped = False
        self.repeated = False
        self._sentences: set[str] = set()
        self._grams: set[tuple[str, ...]] = set()  # word runs of the shown text
        self._pending_grams: set[tuple[str, ...]] = set()
        self._tail: list[str] = []  # the shown text's last ngram - 1 words
        self._next = 0  # the first run of the pending sentence not yet checked

    def feed(self, delta: str) -> str:
        if self.stopped:
            return ""
        self.pending += delta
        if (at := self._repeats()) is not None:
            # With nothing shown yet, the words before the repeat are better than nothing.
            head = self.pending[:at].rstrip() if not self.shown.strip() else ""
            self._stop()
            self.shown += head
            return head
        out = ""
        start = 0
        while (m := SENTENCE_END.search(self.pending, start)) is not None:
            if _MARKER.fullmatch(self.pending[: m.end()]):
                start = m.end()  # "3.": wait for the item's text
                continue
            sentence, self.pending = self.pending[: m.end()], self.pending[m.end() :]
            start = 0
            key = " ".join(_words(_item_text(sentence)))
            if key and key in self._sentences:
                self._stop()
                break
            if key:
                self._sentences.add(key)
            out += sentence
            self.shown += sentence
            self._grams |= self._pending_grams
            self._pending_grams, self._next = set(), 0
            self._tail = _words(self.shown)[-(self.ngram - 1) :]
        return out

    def finish(self, natural: bool) -> str:
        """Return the held-back tail to show when the generation ended (see the class)."""
        tail, self.pending = self.pending, ""
        if self.repeated:
            return ""
        if natural or not self.shown.strip():
            self.shown += tail
            return tail
        return ""

    def _stop(self) -> str:
        self.stopped = self.repeated = True
        self.pending = ""
        return ""

    def _repeats(self) -> int | None:
        """Return where in `pending` a run of `ngram` words already written starts again
        (0 if it starts in the shown text), or a stutter starts, or None when nothing
        repeats."""
        if (stutter := _STUTTER.search(self.pending)) is not None:
            return stutter.start()
        spans = [m for m in _WORD.finditer(self.pending) if m.group().strip(".,:")]
        words = self._tail + [m.group().strip(".,:").lower() for m in spans]
        if self.pending and not self.pending[-1].isspace():
            words = words[:-1]  # the last word may still grow
        n = self.ngram
        while self._next + n <= len(words):
            gram = tuple(words[self._next : self._next + n])
            if gram in self._grams or gram in self._pending_grams:
                first = self._next - len(self._tail)
                return spans[first].start() if first >= 0 else 0
            self._pending_grams.add(gram)
            self._next += 1
        return None


def fed(text: str, natural: bool) -> tuple[str, CleanText]:
    """Feed a whole generated `text` to a CleanText a word at a time, as the engine feeds
    it tokens, then finish it (`natural`: the model ended it, not the token budget);
    return what a person is shown and the cleaner (its `repeated`, `stopped`)."""
    cleaner = CleanText()
    shown = "".join(cleaner.feed(piece) for piece in _PIECE.findall(text))
    return shown + cleaner.finish(natural), cleaner


def cleaned(text: str, natural: bool) -> str:
    """Return a whole generated `text` as clean decoding shows it (`fed`), for answers
    generated in a batch (the quality harness)."""
    return fed(text, natural)[0].strip()
