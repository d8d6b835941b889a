"""The local library: packets in one SQLite file, their weights in a blob store beside it.

Peers, partial transfers, settings and events live in the same database; each concern has a
module of its own (peers.py, transfers.py, settings.py; authoring.py signs this device's
packets) mixed into `Library`, so one object and one connection serve a caller. Every write that touches a packet row and its blob runs
under SQLite's write lock (BEGIN IMMEDIATE): a blob is removed only by the transaction that
removes its last row, and a new row is inserted only after its blob is checked present
inside the same transaction, so concurrent processes never lose weights.
"""

from __future__ import annotations

import re
import shlex
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal

from sqlite_utils import Database

from fieldkit.errors import DamagedEntryError, LibraryError, PacketError, PacketRemoved
from fieldkit.formats import as_clause
from fieldkit.home import Home
from fieldkit.store.adapter import Adapter
from fieldkit.store.authoring import AuthoringStore
from fieldkit.store.blobs import BlobStore, fsync_file
from fieldkit.store.files import (
    READ_ONLY_HOME,
    read_only_database,
    read_whole,
    refuse_an_emptied_database,
)
from fieldkit.store.identity import Identity
from fieldkit.store.migrations import migrations
from fieldkit.store.packet import packet_id, read_packet_file, verify_manifest, verify_weights
from fieldkit.store.peers import TRUST_STATES, PeerStore
from fieldkit.store.records import PacketRecord, PeerRecord, packet_record, packet_row
from fieldkit.store.settings import SettingsStore
from fieldkit.store.transfers import TransferStore
from fieldkit.store.usable import removed_row
from fieldkit.store.vectors import VectorCache

__all__ = ["TRUST_STATES", "Arrival", "Library", "PacketRecord", "PeerRecord"]

_HEX_PREFIX = re.compile(r"[0-9a-f]{6,64}")
BUSY_SECONDS = 60.0
Arrival = Literal["added", "repaired", "held"]  # how a packet file came in (import_file)


class Library(AuthoringStore, PeerStore, TransferStore, SettingsStore):
    """The packets, peers and transfer state of one home."""

    def __init__(self, home: Home, db: Database, identity: Identity | None = None) -> None:
        self.home = home
        self.db = db
        self.identity = identity
        self.blobs = BlobStore(home.blobs_dir)
        self.read_only = False  # opened where this user cannot write (see `open`)
        self._listeners: list[Callable[[PacketRecord], None]] = []

    def add_listener(self, listener: Callable[[PacketRecord], None]) -> None:
        """Call `listener(record)` after each packet enters the library (e.g. to index it)."""
        self._listeners.append(listener)

    @classmethod
    def open(cls, home: Home, identity: Identity | None = None) -> Library:
        """Open (creating or migrating) the home's library and return it, or, where this
        user cannot write, open it to read; LibraryError when neither can be done."""
        home.ensure()
        refuse_an_emptied_database(Path(home.db_path), Path(home.blobs_dir))
        if not home.writable() and Path(home.db_path).is_file():  # see READ_ONLY_HOME
            lib = cls(home, read_only_database(Path(home.db_path)), identity)
            lib.read_only = True  # no write: caches go unwritten, events unlogged
            if migrations.pending(lib.db):
                lib.close()
                raise LibraryError(f"{READ_ONLY_HOME} (Its library needs a newer layout first.)")
            return lib
        try:
            db = Database(home.db_path)
            db.execute(f"PRAGMA busy_timeout = {int(BUSY_SECONDS * 1000)}")
            db.enable_wal()
            # WAL with synchronous=NORMAL stays consistent on any crash; a power cut may
            # lose the last commits, never corrupt them. Weights are fsynced before their row.
            db.execute("PRAGMA synchronous = NORMAL")
            lib = cls(home, db, identity)
            with lib.write_lock():
                migrations.apply(db)
        except sqlite3.DatabaseError as exc:
            if not home.writable():
                raise LibraryError(
                    f"The library at {home.db_path} cannot be opened: this user cannot write "
                    "to it (a read-only medium or another user's folder), and fieldkit writes "
                    "there even to read; give --home a folder this user can write."
                ) from None
            raise LibraryError(f"The library at {home.db_path} cannot be opened ({exc}).") from exc
        lib.blobs.remove_stale_temp_files()
        return lib

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Run the block as one transaction holding SQLite's write lock from its start.

        Waits up to BUSY_SECONDS for other writers; LibraryError if it cannot get the lock.
        Nested use joins the outer transaction.
        """
        if self.read_only:
            raise LibraryError(READ_ONLY_HOME)
        conn = self.db.conn
        if conn.in_transaction:
            yield
            return
        deadline = time.monotonic() + BUSY_SECONDS
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise LibraryError(f"The library cannot be written ({exc}).") from exc
                if time.monotonic() > deadline:
                    raise LibraryError("The library is busy: another fieldkit holds it.") from exc
                time.sleep(0.05)
        try:
            yield
        except BaseException:
            conn.rollback()
            raise
        conn.commit()

    # -- reading -----------------------------------------------------------------------------

    def list_packets(self) -> list[PacketRecord]:
        """Return every packet, sorted by name."""
        return [packet_record(row) for row in self.db["packets"].rows_where(order_by="name")]

    def find(self, packet_id: str) -> PacketRecord | None:
        """Return the packet with exactly this id, or None."""
        rows = list(self.db["packets"].rows_where("packet_id = ?", [packet_id]))
        return packet_record(rows[0]) if rows else None

    def has(self, packet_id: str) -> bool:
        return self.db["packets"].count_where("packet_id = ?", [packet_id]) > 0

    def get(self, name_or_id: str) -> PacketRecord:
        """Return the packet by exact name, full id or a hex id prefix of 6+ characters.

        Raises LibraryError when none or several match.
        """
        rows = list(self.db["packets"].rows_where("name = ?", [name_or_id]))
        prefix = name_or_id.lower()
        if not rows and _HEX_PREFIX.fullmatch(prefix):
            rows = list(
                self.db["packets"].rows_where("substr(packet_id, 1, ?) = ?", [len(prefix), prefix])
            )
        if not rows:
            raise LibraryError(f"No packet named {name_or_id[:80]!r} is in the library.")
        if len(rows) > 1:
            raise LibraryError(f"The id prefix {name_or_id!r} matches several packets.")
        return packet_record(rows[0])

    def name_conflict(self, name: str, author_id: str) -> PacketRecord | None:
        """Return the packet of this name by ANOTHER author, if the library holds one
        (a packet of that name would be refused)."""
        rows = self.db["packets"].rows_where("name = ?", [name])
        return next((packet_record(r) for r in rows if r["author_id"] != author_id), None)

    def vectors(self, table: str) -> VectorCache:
        """Return the cache of embedding vectors in `table` (see store/vectors.py)."""
        return VectorCache(self.db, table, keep=not self.read_only)

    def change_token(self) -> tuple[int, int]:
        """A cheap value that changes whenever any connection writes the library."""
        version = self.db.execute("PRAGMA data_version").fetchone()[0]
        return int(version), int(self.db.conn.total_changes)

    def weights_path(self, record: PacketRecord) -> Path:
        """Return the path of a packet's weights file in the blob store."""
        return self.blobs.path(record.sha256)

    def read_weights(self, record: PacketRecord) -> bytes:
        try:
            return self.weights_path(record).read_bytes()
        except OSError as exc:
            if not self.has(record.packet_id):  # removed by another process since it was read
                raise PacketRemoved(f"{record.name!r} was removed from the library.") from exc
            raise LibraryError(
                f"The weights of {record.name!r} are missing from the library; a good copy "
                f"repairs it (`fieldkit library import {record.name}.fkpkt`)."
            ) from exc

    def load_adapter(self, record: PacketRecord) -> Adapter:
        """Read, check and return a packet's adapter (weights verified against the manifest).

        Weights that are missing or fail their check set the packet aside, as `verify`
        does, and the error says how to repair it."""
        try:
            data = self.read_weights(record)
        except PacketRemoved:
            raise
        except LibraryError:  # missing: its message names the repair
            self._set_aside(record)
            raise
        try:
            return verify_weights(record.manifest, data)
        except PacketError as exc:
            self._set_aside(record)
            raise PacketError(
                f"{str(exc).rstrip('.')}; it is set aside until a good copy is imported "
                f"(`fieldkit library import {record.name}.fkpkt` repairs it)."
            ) from exc

    def _set_aside(self, record: PacketRecord) -> None:
        """Mark a packet whose weights failed as not verified (as `verify` does), if the
        database lets this process write now; the error raised next says why."""
        with suppress(LibraryError), self.write_lock():
            self.db["packets"].update(record.packet_id, {"verified": 0})

    # -- writing -----------------------------------------------------------------------------

    def import_file(self, path: Path, expected_base: str | None) -> tuple[PacketRecord, Arrival]:
        """Verify and store the packet file at `path` (from `library export`); return its
        record and how it arrived: "added" (new here), "repaired" (held here with weights
        missing, damaged or set aside by `verify`: the file's replace them) or "held" (held
        and whole: nothing is written). Raises as `add` does, PacketError for a file that is
        no packet, LibraryError when a repair leaves the packet failing its check."""
        packet = read_packet_file(path)
        held = self.find(packet_id(packet.manifest))
        if held is None:
            manifest, signature = packet.manifest, packet.signature
            return self.add(manifest, signature, packet.weights, "file", expected_base), "added"
        if held.verified and self.blobs.holds(held.sha256):
            return held, "held"
        return self._repair(held, packet.weights), "repaired"

    def add(
        self,
        manifest: dict[str, Any],
        signature: bytes,
        weights: Path | bytes,
        source: str = "local",
        expected_base: str | None = None,
        *,
        received: bool = False,
    ) -> PacketRecord:
        """Verify a packet completely, then store it; return its record.

        `received=True` is for a part file whose chunks were each verified against this
        manifest as they arrived: the chunk hashes are not computed again, and the file
        itself moves into the blob store (no copy) once everything else verified.

        Raises PacketError for any bad manifest, signature or weights, a base model other
        than `expected_base`, or a blocked author; LibraryError when another author's packet
        has the same name. The library is unchanged on any error.
        """
        pid = verify_manifest(manifest, signature)
        if expected_base is not None and manifest["base_fingerprint"] != expected_base:
            raise PacketError(
                f"Packet {manifest['name']!r} was made for another base model "
                f"({manifest['base_model_id']}, fingerprint {manifest['base_fingerprint'][:12]}), "
                "not the one this device runs."
            )
        blocked = self.blocked()
        if manifest["author_id"] in blocked:
            raise PacketError(f"Packet {manifest['name']!r} is by a blocked author.")
        if blocked.covers("", manifest["weights_sha256"], manifest.get("lineage", ())):
            raise PacketError(
                f"Packet {manifest['name']!r} copies a blocked author's packet "
                "(its weights or lineage)."
            )
        existing = self.find(pid)
        if existing is not None:
            return existing
        data = weights if isinstance(weights, bytes) else read_whole(weights)
        move = weights if received and isinstance(weights, Path) else None
        synced = False
        if move is None:
            verify_weights(manifest, data, check_chunks=not received, copy=False)
        else:  # the disk makes the part file durable while the CPU verifies it
            with ThreadPoolExecutor(1) as pool:
                flushing = pool.submit(fsync_file, move)
                verify_weights(manifest, data, check_chunks=False, copy=False)
            synced = flushing.result()
        self._name_holder(manifest)  # refuse early, before any blob is written
        sha = manifest["weights_sha256"]
        self.blobs.write(sha, data, move_from=move, synced=synced)
        row = packet_row(
            pid,
            manifest,
            signature,
            author_name=self._author_name(manifest["author_id"]),
            source=source,
            received_at=time.time(),
        )
        with self.write_lock():
            if self.has(pid):  # another process stored it meanwhile
                return self.find(pid)  # type: ignore[return-value]
            try:
                replaced = self._name_holder(manifest)
            except LibraryError:  # another process took the name meanwhile: keep no orphan
                self._drop_blob_if_unused(sha)
                raise
            if not self.blobs.path(sha).exists():  # a concurrent remove took the blob
                self.blobs.write(sha, data)
            if replaced is not None:
                self.db["packets"].delete(replaced.packet_id)
            self.db["packets"].insert(row)
            self._log("packet_added", name=row["name"], packet_id=pid, source=source)
            if replaced is not None:
                self._drop_blob_if_unused(replaced.sha256)
        record = self.find(pid)
        assert record is not None
        for listener in self._listeners:
            try:
                listener(record)
            except Exception as exc:  # a listener must never undo a stored packet
                self._log("listener_failed", packet_id=pid, error=str(exc))
        return record

    def remove(self, name_or_id: str) -> PacketRecord | None:
        """Remove a packet and, if no other packet shares them, its weights; return it
        (None for a packet whose entry was damaged: `_remove_damaged`)."""
        with self.write_lock():
            try:
                record = self.get(name_or_id)
            except DamagedEntryError:  # its entry goes; what its row names of it is all there is
                return self._remove_damaged(name_or_id)
            self.db["packets"].delete(record.packet_id)
            self.db["removed_packets"].upsert(removed_row(record), pk="packet_id")
            self._log("packet_removed", name=record.name, packet_id=record.packet_id)
            self._drop_blob_if_unused(record.sha256)
        return record

    def _remove_damaged(self, name_or_id: str) -> None:
        """`remove` for a damaged entry, keeping no record of it: a copy is welcome again."""
        rows = list(self.db["packets"].rows_where("name = ? or packet_id = ?", [name_or_id] * 2))
        if len(rows) != 1:
            raise LibraryError(f"Name the damaged packet by its exact name: {name_or_id!r}.")
        row = rows[0]
        self.db["packets"].delete(row["packet_id"])
        self._log("packet_removed", name=str(row["name"]), packet_id=row["packet_id"])
        if re.fullmatch(r"[0-9a-f]{64}", str(row.get("sha256"))):  # a blob's name, no path
            self._drop_blob_if_unused(row["sha256"])

    def verify(self, name_or_id: str) -> tuple[PacketRecord, str | None]:
        """Re-check a packet's signature and weights; return (record, problem or None).

        Raises LibraryError if no such packet is (still) in the library.
        """
        record, problem, _ = self._check(name_or_id)
        return record, problem

    def checked_weights(self, name_or_id: str) -> tuple[PacketRecord, bytes]:
        """Return a packet and its weights, read once and re-checked as `verify` does (an
        export sends on only what still verifies, and nothing a block covers). Raises
        PacketError naming the problem."""
        record, problem, weights = self._check(name_or_id)
        if problem is None and self.blocked().covers_record(record):
            problem = "its author is blocked here (`fieldkit trust` lifts the block)"
        if problem is not None:
            raise PacketError(f"{record.name!r} is not copied: {as_clause(problem)}.")
        return record, weights

    def _check(self, name_or_id: str) -> tuple[PacketRecord, str | None, bytes]:
        """Check a packet, record the outcome (`verified`); return it, the problem and the
        weights read (b"" when they could not be)."""
        record = self.get(name_or_id)
        problem: str | None = None
        weights = b""
        try:
            verify_manifest(record.manifest, record.signature)
            weights = self.read_weights(record)
            verify_weights(record.manifest, weights, copy=False)
        except (PacketError, LibraryError) as exc:
            problem = str(exc)
        with self.write_lock():
            if not self.has(record.packet_id):
                raise LibraryError(f"{record.name!r} was removed while it was being checked.")
            self.db["packets"].update(record.packet_id, {"verified": int(problem is None)})
        return self.get(record.packet_id), problem, weights

    def _repair(self, held: PacketRecord, weights: bytes) -> PacketRecord:
        """Store `weights` (verified against `held`'s manifest) in place of its missing or
        damaged ones, atomically as new weights are, then check the packet again as `verify`
        does (which marks it verified); return it. LibraryError if it still fails."""
        self.blobs.write(held.sha256, weights)  # a damaged blob fails `holds`: replaced whole
        record, problem, _ = self._check(held.packet_id)
        if problem is not None:
            raise LibraryError(
                f"{held.name!r} is still damaged after its weights were replaced: {problem}"
            )
        with self.write_lock():
            self._log("packet_repaired", name=held.name, packet_id=held.packet_id)
        return record

    def collect_garbage(self) -> dict[str, int]:
        """Remove blobs no packet refers to, stale part files and old pending peers; return
        the counts removed (`blobs`, `parts`, `peers`)."""
        with self.write_lock():
            live = {r["sha256"] for r in self.db["packets"].rows_where(select="sha256")}
            orphans = [sha for sha in self.blobs.stored() if sha not in live]
            for sha in orphans:
                self.blobs.remove(sha)
        return {
            "blobs": len(orphans),
            "parts": self.prune_transfers(),
            "peers": self.prune_pending_peers(),
        }

    # -- internals ---------------------------------------------------------------------------

    def _author_name(self, author_id: str) -> str:
        if self.identity is not None and author_id == self.identity.device_id:
            return self.identity.name
        peer = self.get_peer(author_id)
        return peer.name if peer and peer.name else ""

    def _name_holder(self, manifest: dict[str, Any]) -> PacketRecord | None:
        """Return the packet a newer version from the same author replaces, if any; raise
        LibraryError when the name belongs to another author or a newer version is held."""
        if self.name_conflict(manifest["name"], manifest["author_id"]) is not None:
            raise LibraryError(
                f"A packet named {manifest['name']!r} by another author is already in the "
                f"library: `fieldkit library remove {shlex.quote(manifest['name'])}` makes way for this "
                "one."
            )
        rows = list(self.db["packets"].rows_where("name = ?", [manifest["name"]]))
        if not rows:
            return None
        holder = packet_record(rows[0])
        if holder.manifest == manifest:
            return None  # this very packet, stored meanwhile by another process
        if manifest["created"] <= holder.manifest["created"]:
            raise LibraryError(
                f"The library already holds a newer or equal version of {manifest['name']!r}."
            )
        return holder

    def _drop_blob_if_unused(self, sha256: str) -> None:
        """Remove a blob no row refers to; call inside write_lock()."""
        if self.db["packets"].count_where("sha256 = ?", [sha256]) == 0:
            self.blobs.remove(sha256)
