"""Reading input files a user (or a peer) hands fieldkit: regular files only, bounded.

`/dev/zero` would be read until memory ran out and a FIFO would block for ever; a file that
grows while it is read is cut at the limit and refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from fieldkit.errors import LibraryError, PacketError

MIB = 1024 * 1024


def read_bounded(path: Path, limit: int, what: str = "file", limit_text: str = "") -> bytes:
    """Return the bytes of the regular file at `path`; PacketError if it is not a regular
    file, cannot be read, or holds more than `limit` bytes (`limit_text` names the limit in
    the message, e.g. "the 256 MiB packet limit")."""
    too_big = f"The {what} {path.name} is larger than {limit_text or f'{limit // MIB} MiB'}."
    try:
        info = os.stat(path)
    except OSError as exc:
        raise PacketError(f"The {what} {path} cannot be read ({exc.strerror}).") from exc
    if not stat.S_ISREG(info.st_mode):
        raise PacketError(f"The {what} {path} is not a regular file.")
    if info.st_size > limit:
        raise PacketError(too_big)
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise PacketError(f"The {what} {path} cannot be read ({exc.strerror}).") from exc
    if len(data) > limit:
        raise PacketError(too_big)
    return data


def read_whole(path: Path) -> bytes:
    """Return the bytes of the file at `path`; PacketError, in one sentence, if it cannot
    be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PacketError(f"{path} cannot be read ({exc.strerror}).") from exc


def read_text_bounded(
    path: Path, limit: int = 64 * MIB, what: str = "file", limit_text: str = ""
) -> str:
    """Return a regular file's UTF-8 text, a leading byte-order mark dropped (see
    read_bounded); PacketError if it is not UTF-8. Every text file a user hands fieldkit
    is read here."""
    try:
        return read_bounded(path, limit, what, limit_text).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PacketError(f"The {what} {path} is not UTF-8 text.") from exc


def jsonl_values(text: str, label: str) -> Iterator[tuple[int, Any]]:
    """Yield (line number, value) for each non-blank line of JSON Lines text; PacketError
    ("<label> line N is not JSON.") at the first line that is not JSON."""
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PacketError(f"{label} line {number} is not JSON.") from exc
        yield number, value


def write_atomically(target: Path, write: Callable[[BinaryIO], None], what: str = "file") -> None:
    """Write a file through `write(stream)` into a temporary file beside `target`, fsync it,
    then rename it over `target`: a reader sees the old file or the whole new one.

    Raises PacketError (one sentence, nothing left behind) when `target` exists and is not a
    regular file (a device such as /dev/full, a folder, a FIFO) or cannot be written.
    """
    try:
        info = os.stat(target)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise PacketError(f"Cannot write the {what} {target} ({exc.strerror}).") from exc
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise PacketError(f"Cannot write the {what} {target}: it is not a regular file.")
    tmp = target.with_name(f".{target.name[:200]}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        raise PacketError(f"Cannot write the {what} {target} ({exc.strerror}).") from exc
    finally:  # also on Ctrl-C or SIGTERM: no partial temporary file stays beside `target`
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def inside(folder: Path, file_name: str) -> Path:
    """Return folder/file_name; PacketError if the name would leave the folder ('../x')."""
    path = folder / file_name
    if Path(file_name).name != file_name or not path.resolve().is_relative_to(folder.resolve()):
        raise PacketError(f"The file name {file_name[:80]!r} would leave {folder}.")
    return path


def refuse_an_emptied_database(db_path: Path, blobs_dir: Path) -> None:
    """Raise LibraryError when the database file is empty but packet weights are stored
    beside it: SQLite would take the empty file as a new library and every packet would
    silently vanish from view (a truncated or replaced file, not a fresh home)."""
    if not db_path.is_file() or db_path.stat().st_size:
        return
    stored = sum(1 for p in blobs_dir.rglob("*") if p.is_file())
    if stored:
        raise LibraryError(
            f"The library database {db_path} is empty, yet {stored} packet weight files are "
            "stored beside it: restore the database from a backup, or move it away to start "
            "a new library (the packets then need importing again)."
        )


# Said when a command would change a home this user can only read (a read-only medium, or
# another user's folder): reading it (listing, routing, answering) works.
READ_ONLY_HOME = (
    "This home is read-only here: fieldkit can list its packets and answer from them, not "
    "change it; give --home a folder this user can write to do that."
)


def read_only_database(db_path: Path) -> Any:
    """Return the sqlite-utils Database of a library this user can only read, so that a
    write is refused by SQLite itself: immutable (no lock, nothing written beside it) when
    no write-ahead log holds commits the file lacks, else read-only through that log (its
    index must be there already). Raises LibraryError when it cannot be read."""
    import sqlite3
    from urllib.parse import quote

    from sqlite_utils import Database

    wal = db_path.with_name(db_path.name + "-wal")
    logged = wal.is_file() and wal.stat().st_size > 0  # immutable would not read the log
    uri = f"file:{quote(str(db_path.resolve()))}?mode=ro{'' if logged else '&immutable=1'}"
    try:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        conn.execute("select count(*) from sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise LibraryError(
            f"The library at {db_path} cannot be read ({exc}): this user cannot write to "
            "it (a read-only medium or another user's folder); give --home a folder this "
            "user can write."
        ) from None
    return Database(conn)
