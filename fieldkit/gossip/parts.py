"""Partial transfers: chunks written in place into a part file, resumable after a restart.

The library's transfers table keeps the signed manifest; the part file keeps the bytes. On
resume every chunk of the part file is hashed against the manifest, so a chunk counts as held
only if its bytes really are on disk (a crash between the write and the table update costs
nothing, and a damaged part file costs only its damaged chunks).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from fieldkit.gossip.protocol import chunk_count, chunk_length
from fieldkit.store.library import Library, PacketRecord
from fieldkit.store.writeback import start_writeback

SAVE_EVERY = 256  # chunks between updates of the transfers table (the part file is the truth)
WRITEBACK_EVERY = 1024 * 1024  # bytes written between asking the disk to start on them


def held_chunks(library: Library, packet_id: str) -> tuple[set[int], dict[str, Any] | None]:
    """Return (indices of verified chunks in the part file, the stored manifest or None)."""
    state = library.transfer_state(packet_id)
    path = library.part_path(packet_id)
    if state is None or not path.exists():
        return set(), None
    manifest = state["manifest"]
    size, chunk_size = manifest["weights_size"], manifest["chunk_size"]
    held = set()
    with open(path, "rb") as f:
        for index, expected in enumerate(manifest["chunk_hashes"]):
            f.seek(index * chunk_size)
            data = f.read(chunk_length(size, chunk_size, index))
            if hashlib.sha256(data).hexdigest() == expected:
                held.add(index)
    return held, manifest


class PartFile:
    """One packet being received: write chunks, then hand the whole file to the library."""

    def __init__(
        self,
        library: Library,
        packet_id: str,
        peer_id: str,
        manifest: dict[str, Any],
        signature: bytes,
        held: set[int],
    ) -> None:
        self.library = library
        self.packet_id = packet_id
        self.peer_id = peer_id
        self.manifest = manifest
        self.signature = signature
        self.received = set(held)
        size, chunk_size = manifest["weights_size"], manifest["chunk_size"]
        self.held_bytes = sum(chunk_length(size, chunk_size, i) for i in self.received)
        self.path: Path = library.part_path(packet_id)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        os.ftruncate(self._fd, manifest["weights_size"])
        self._unsaved = 0
        self._unflushed = 0
        self.save()

    @property
    def complete(self) -> bool:
        count = chunk_count(self.manifest["weights_size"], self.manifest["chunk_size"])
        return len(self.received) == count

    def write(self, index: int, data: bytes) -> None:
        """Write one verified chunk in place."""
        os.pwrite(self._fd, data, index * self.manifest["chunk_size"])
        if index not in self.received:
            self.received.add(index)
            self.held_bytes += len(data)
        self._unsaved += 1
        self._unflushed += len(data)
        if self._unflushed >= WRITEBACK_EVERY:  # the final fsync then has less to wait for
            start_writeback(self._fd)
            self._unflushed = 0
        if self._unsaved >= SAVE_EVERY:
            self.save()

    def save(self) -> None:
        """Record the manifest and the received chunks in the library's transfers table."""
        self.library.save_transfer(
            self.packet_id, self.peer_id, self.manifest, self.signature, self.received
        )
        self._unsaved = 0

    def close(self, save: bool = True) -> None:
        """Close the part file, keeping it for a later resume (`save`: record the chunks
        received; only informative, since resume re-hashes the part file)."""
        if self._fd >= 0:
            if self._unsaved and save:
                self.save()
            os.close(self._fd)
            self._fd = -1

    def finish(self, expected_base: str | None) -> PacketRecord:
        """Verify the whole packet into the library; remove the partial state on success.

        Raises PacketError or LibraryError (from Library.add); the part file stays then.
        """
        self.close(save=False)  # the stored manifest is all a resume needs
        record = self.library.add(
            self.manifest,
            self.signature,
            self.path,
            source=self.peer_id,
            expected_base=expected_base,
            received=True,
        )
        self.library.clear_transfer(self.packet_id)
        self.path.unlink(missing_ok=True)
        return record

    def discard(self) -> None:
        """Drop the partial state (the packet was refused)."""
        self.close(save=False)
        self.library.clear_transfer(self.packet_id)
        self.path.unlink(missing_ok=True)
