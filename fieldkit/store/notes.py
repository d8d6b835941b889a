"""Packet notes: the source passages an author may let a packet carry, inside its manifest.

Notes are opt-in (raw training data stays on the device unless its author says otherwise).
They travel in the signed manifest as `"notes": [{"id", "text"[, "title"][, "asked"]}, ...]`,
so the author's signature covers them and a forwarder cannot alter them. A manifest with
notes is packet format 2; one without is format 1 exactly as before (same bytes, same packet
id). `asked` (format 4) lists other phrasings of the question a passage answers (a Q&A
record's paraphrases): retrieval matches a question against them too.
Nothing heavy is imported here: the router and the CLI both read notes cheaply.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fieldkit.errors import PacketError
from fieldkit.formats import control_chars
from fieldkit.store.files import jsonl_values, read_text_bounded

NOTES_FIELD = "notes"
MAX_NOTES = 1024  # passages per packet
MAX_NOTE_TEXT = 4000  # characters per passage
MAX_NOTE_TITLE = 300
MAX_NOTE_ID = 64
MAX_ASKED = 16  # other phrasings per passage, each at most MAX_NOTE_TITLE characters
# All notes of a packet, as canonical JSON. The manifest travels in one gossip frame
# (about 1 MiB), beside up to a few hundred KiB of chunk hashes for the largest weights.
MAX_NOTES_BYTES = 384 * 1024
MAX_NOTES_FILE = 4 * 1024 * 1024
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


class TitledText:
    """A passage's `full_text` (mixed into the dataclasses that carry a passage)."""

    title: str | None
    text: str

    @property
    def full_text(self) -> str:
        """Title and text together: what is embedded, shown and checked for support."""
        return f"{self.title}\n{self.text}" if self.title else self.text


@dataclass(frozen=True)
class Passage(TitledText):
    """One source passage of a packet: an id unique in the packet, its text, a title."""

    passage_id: str
    text: str
    title: str | None = None
    asked: tuple[str, ...] = ()  # other phrasings of the question it answers (format 4)

    def to_manifest(self) -> dict[str, Any]:
        """Return the passage as it is stored in a manifest."""
        out: dict[str, Any] = {"id": self.passage_id, "text": self.text}
        if self.title:
            out["title"] = self.title
        if self.asked:
            out["asked"] = list(self.asked)
        return out


def has_phrasings(passages: Iterable[Passage]) -> bool:
    """True when any passage lists other phrasings (`asked`: a format-4 manifest)."""
    return any(p.asked for p in passages)


def check_notes(value: Any, phrasings: bool = True) -> list[Passage]:
    """Validate a manifest's `notes` value; return its passages or raise PacketError.
    `phrasings`: whether a passage may list other phrasings (`asked`, format 4)."""
    keys = {"id", "text", "title"} | ({"asked"} if phrasings else set())
    if not isinstance(value, list) or not value:
        raise PacketError("The packet's notes must be a non-empty list of passages.")
    if len(value) > MAX_NOTES:
        raise PacketError(f"A packet carries at most {MAX_NOTES} note passages, not {len(value)}.")
    passages: list[Passage] = []
    seen: set[str] = set()
    for n, item in enumerate(value, 1):
        if not isinstance(item, dict) or not {"id", "text"} <= set(item) <= keys:
            raise PacketError(
                f"The packet's note {n} is not a passage ({', '.join(sorted(keys))})."
            )
        pid, text, title = item["id"], item["text"], item.get("title")
        if not isinstance(pid, str) or not _ID.match(pid) or pid in seen:
            raise PacketError(f"The packet's note {n} has a missing, bad or repeated id.")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_NOTE_TEXT:
            raise PacketError(
                f"The packet's note {pid!r} must hold 1 to {MAX_NOTE_TEXT} characters of text."
            )
        if title is not None and (
            not isinstance(title, str) or not title.strip() or len(title) > MAX_NOTE_TITLE
        ):
            raise PacketError(
                f"The packet's note {pid!r} has a title that is empty or over "
                f"{MAX_NOTE_TITLE} characters."
            )
        if control_chars(text, "\t\n\r") or (title is not None and control_chars(title, "\t")):
            raise PacketError(f"The packet's note {pid!r} holds control characters.")
        asked = _check_asked(item.get("asked", []), pid)
        seen.add(pid)
        passages.append(Passage(pid, text, title, asked))
    size = notes_bytes(value)
    if size > MAX_NOTES_BYTES:
        raise PacketError(
            f"The packet's notes take {size} bytes; the limit is {MAX_NOTES_BYTES // 1024} KiB."
        )
    return passages


def _check_asked(value: Any, pid: str) -> tuple[str, ...]:
    """Return a passage's other phrasings, checked (PacketError)."""
    if (
        not isinstance(value, list)
        or len(value) > MAX_ASKED
        or not all(isinstance(q, str) and q.strip() and len(q) <= MAX_NOTE_TITLE for q in value)
    ):
        raise PacketError(
            f"The packet's note {pid!r} must list at most {MAX_ASKED} other phrasings of "
            f"1 to {MAX_NOTE_TITLE} characters each."
        )
    if any(control_chars(q, "\t") for q in value):
        raise PacketError(f"The packet's note {pid!r} holds control characters.")
    return tuple(value)


def notes_bytes(value: Any) -> int:
    """Return the byte cost of a notes value in the signed manifest (canonical JSON)."""
    return len(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode())


def notes_of(manifest: Mapping[str, Any]) -> list[Passage]:
    """Return the passages a (checked) manifest carries; [] when it has no notes."""
    value = manifest.get(NOTES_FIELD)
    if value is None:
        return []
    return [
        Passage(item["id"], item["text"], item.get("title"), tuple(item.get("asked", ())))
        for item in value
    ]


def notes_count(manifest: Mapping[str, Any]) -> int:
    """Return how many passages a manifest carries (0 without notes)."""
    value = manifest.get(NOTES_FIELD)
    return len(value) if isinstance(value, list) else 0


def to_manifest_notes(passages: Iterable[Passage]) -> list[dict[str, Any]]:
    """Return passages in manifest form, checked against every limit (PacketError)."""
    value = [p.to_manifest() for p in passages]
    check_notes(value)
    return value


def passages_from_records(records: Iterable[Mapping[str, Any]]) -> list[Passage]:
    """Turn Q&A training records into passages: the question as title, the answer as text,
    the record's `paraphrases` (if any) as other phrasings of it (`asked`).

    Records use `instruction` (or `question`), optional `input`, and `output` (or
    `answer`). Passage ids are `r1`, `r2`, ... in record order. Raises PacketError for a
    record without a question or an answer.
    """
    passages = []
    for n, record in enumerate(records, 1):
        question = record.get("instruction") or record.get("question")
        extra = record.get("input") or ""
        answer = record.get("output") or record.get("answer")
        if not isinstance(question, str) or not isinstance(answer, str) or not answer.strip():
            raise PacketError(f"Record {n} has no question and answer to keep as a note.")
        title = " ".join(part for part in (question.strip(), str(extra).strip()) if part)
        asked = record.get("paraphrases") or ()
        if not isinstance(asked, list | tuple) or not all(isinstance(q, str) for q in asked):
            raise PacketError(f"Record {n} has paraphrases that are not a list of questions.")
        asked = tuple(dict.fromkeys(q.strip() for q in asked if q.strip()))[:MAX_ASKED]
        passage = Passage(f"r{n}", answer.strip(), title[:MAX_NOTE_TITLE] or None, asked)
        passages.append(passage)
    return passages


def passages_from_text(text: str, max_chars: int = 800) -> list[Passage]:
    """Split a text or markdown file into passages: one per paragraph, long ones cut.

    A markdown heading becomes the title of the paragraphs under it. Paragraphs longer
    than `max_chars` are cut at sentence ends. Passage ids are `p1`, `p2`, ...
    """
    passages: list[Passage] = []
    heading: str | None = None
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
        while lines and lines[0].startswith("#"):
            heading = lines.pop(0).lstrip("#").strip()[:MAX_NOTE_TITLE] or None
        body = " ".join(lines)
        for piece in _cut(body, max_chars):
            passages.append(Passage(f"p{len(passages) + 1}", piece, heading))
    return passages


def _cut(body: str, max_chars: int) -> list[str]:
    if not body:
        return []
    sentences = re.split(r"(?<=[.!?])\s+", body)
    pieces, current = [], ""
    for sentence in sentences:
        while len(sentence) > max_chars:  # one very long sentence: a hard cut
            if current:
                pieces.append(current)
                current = ""
            pieces.append(sentence[:max_chars])
            sentence = sentence[max_chars:]
        if current and len(current) + 1 + len(sentence) > max_chars:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    return pieces


def read_notes_file(path: Path) -> list[Passage]:
    """Read notes from a file: .jsonl Q&A records, else text/markdown split into passages.

    Raises PacketError for an unreadable file, a bad JSON line, no passages, or notes over
    the packet limits.
    """
    path = Path(path)
    text = read_text_bounded(path, MAX_NOTES_FILE, "notes file", "the 4 MiB notes file limit")
    if path.suffix.lower() == ".jsonl":
        records = []
        for n, item in jsonl_values(text, path.name):
            if not isinstance(item, dict):
                raise PacketError(f"{path.name} line {n} is not a JSON object.")
            records.append(item)
        passages = passages_from_records(records)
    else:
        passages = passages_from_text(text)
    if not passages:
        raise PacketError(f"{path.name} holds no passages to keep as notes.")
    to_manifest_notes(passages)  # the packet limits, checked before anything is signed
    return passages
