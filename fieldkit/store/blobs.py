"""Content-addressed weights files beside the database, written atomically and durably.

A blob is named by the sha256 of its bytes. It is written (temp file, fsync, rename) before
the row that points at it, and removed only by the transaction that removes its last row
(see Library), so a reader never finds a row without its weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path


class BlobStore:
    """The `blobs/` folder of one home."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        """Return where the blob `sha256` lives (whether or not it exists)."""
        return self.root / sha256[:2] / f"{sha256}.safetensors"

    def holds(self, sha256: str) -> bool:
        """True if the blob exists with exactly the bytes its name promises."""
        path = self.path(sha256)
        try:
            return hashlib.sha256(path.read_bytes()).hexdigest() == sha256
        except OSError:
            return False

    def write(
        self, sha256: str, data: bytes, move_from: Path | None = None, synced: bool = False
    ) -> None:
        """Store verified bytes as the blob `sha256`, durably.

        `move_from` is a file holding exactly those bytes on the same disk, renamed into
        place instead of copied (`synced`: it was fsynced already).
        """
        path = self.path(sha256)
        if self.holds(sha256):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if move_from is not None and (synced or fsync_file(move_from)):
            try:
                os.replace(move_from, path)
                fsync_dir(path.parent)
                return
            except OSError:
                pass  # another disk, or gone: write a copy below
        tmp = path.parent / f".tmp-{os.getpid()}-{sha256[:16]}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:  # also on Ctrl-C or SIGTERM: no temporary copy of the weights stays behind
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        fsync_dir(path.parent)

    def remove(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def stored(self) -> list[str]:
        """Return the sha256 of every blob on disk."""
        return [p.name.removesuffix(".safetensors") for p in self.root.glob("*/*.safetensors")]

    def remove_stale_temp_files(self) -> None:
        """Delete temp files left by processes that died while writing."""
        for tmp in self.root.glob("*/.tmp-*"):
            pid = tmp.name.split("-")[1]
            if not pid.isdigit() or not process_alive(int(pid)):
                tmp.unlink(missing_ok=True)


def fsync_file(path: Path) -> bool:
    """fsync the file at `path`; return False if it cannot be opened or synced."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        os.fsync(fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
