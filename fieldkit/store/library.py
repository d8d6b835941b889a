"""The local library: packets, peers, partial transfers and an event log in one SQLite file.

Weights live beside the database, content-addressed under `home.blobs_dir`, written
atomically (temp file, fsync, rename) before the row that points at them, so nothing
half-written is ever visible.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from fieldkit.errors import LibraryError, PacketError, PeerRefused
from fieldkit.home import Home
from fieldkit.store.adapter import Adapter, AdapterConfig
from fieldkit.store.identity import Identity, device_id_for
from fieldkit.store.migrations import migrations
from fieldkit.store.packet import build_manifest, verify_manifest, verify_weights

TRUST_STATES = ("trusted", "pending", "blocked")


@dataclass(frozen=True)
class PacketRecord:
    """One packet in the library, as stored."""

    packet_id: str
    name: str
    domain: str
    description: str
    exemplars: list[str]
    sha256: str
    size: int
    author_id: str
    author_name: str
    base_model_id: str
    base_fingerprint: str
    adapter: AdapterConfig
    source: str
    received_at: float
    verified: bool
    merged: bool
    manifest: dict[str, Any]
    signature: bytes

    @property
    def short_id(self) -> str:
        return self.packet_id[:12]


@dataclass(frozen=True)
class PeerRecord:
    """A device this one has met or been told to trust."""

    peer_id: str
    name: str
    public_key: bytes | None
    trust: str
    address: str
    first_seen: float | None
    last_seen: float | None


class Library:
    """The packets, peers and transfer state of one home."""

    def __init__(self, home: Home, db: Database, identity: Identity | None = None) -> None:
        self.home = home
        self.db = db
        self.identity = identity
        self._listeners: list[Callable[[PacketRecord], None]] = []

    def add_listener(self, listener: Callable[[PacketRecord], None]) -> None:
        """Call `listener(record)` after each packet enters the library (e.g. to index it)."""
        self._listeners.append(listener)

    @classmethod
    def open(cls, home: Home, identity: Identity | None = None) -> Library:
        """Open (creating or migrating) the home's library and return it."""
        home.ensure()
        db = Database(home.db_path)
        db.enable_wal()
        # WAL with synchronous=NORMAL stays consistent on any crash; a power cut may lose
        # the last commits, never corrupt them. Weights are fsynced before their row.
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA busy_timeout = 5000")
        migrations.apply(db)
        lib = cls(home, db, identity)
        lib._remove_stale_temp_files()
        return lib

    def close(self) -> None:
        self.db.close()

    # -- packets ---------------------------------------------------------------------------

    def list_packets(self) -> list[PacketRecord]:
        """Return every packet, sorted by name."""
        return [_record(row) for row in self.db["packets"].rows_where(order_by="name")]

    def find(self, packet_id: str) -> PacketRecord | None:
        """Return the packet with exactly this id, or None."""
        rows = list(self.db["packets"].rows_where("packet_id = ?", [packet_id]))
        return _record(rows[0]) if rows else None

    def has(self, packet_id: str) -> bool:
        return self.db["packets"].count_where("packet_id = ?", [packet_id]) > 0

    def get(self, name_or_id: str) -> PacketRecord:
        """Return the packet by name, full id or an id prefix of 6+ characters."""
        rows = list(self.db["packets"].rows_where("name = ?", [name_or_id]))
        if not rows and len(name_or_id) >= 6:
            rows = list(
                self.db["packets"].rows_where("packet_id LIKE ?", [name_or_id.lower() + "%"])
            )
        if not rows:
            raise LibraryError(f"No packet named {name_or_id!r} is in the library.")
        if len(rows) > 1:
            raise LibraryError(f"The id prefix {name_or_id!r} matches several packets.")
        return _record(rows[0])

    def weights_path(self, record: PacketRecord) -> Path:
        """Return the path of a packet's weights file in the blob store."""
        return self.home.blobs_dir / record.sha256[:2] / f"{record.sha256}.safetensors"

    def read_weights(self, record: PacketRecord) -> bytes:
        try:
            return self.weights_path(record).read_bytes()
        except OSError as exc:
            raise LibraryError(
                f"The weights of {record.name!r} are missing from the library."
            ) from exc

    def load_adapter(self, record: PacketRecord) -> Adapter:
        """Read, check and return a packet's adapter (weights verified against the manifest)."""
        return verify_weights(record.manifest, self.read_weights(record))

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

        Raises PacketError for any bad manifest, signature or weights, or a base model other
        than `expected_base`; LibraryError when another author's packet has the same name.
        The library is unchanged on any error.
        """
        pid = verify_manifest(manifest, signature)
        if expected_base is not None and manifest["base_fingerprint"] != expected_base:
            raise PacketError(
                f"Packet {manifest['name']!r} was made for another base model "
                f"({manifest['base_model_id']}), not the one this device runs."
            )
        existing = self.find(pid)
        if existing is not None:
            return existing
        data = weights if isinstance(weights, bytes) else _read(weights)
        move = weights if received and isinstance(weights, Path) else None
        synced = False
        if move is None:
            verify_weights(manifest, data, check_chunks=not received, copy=False)
        else:  # the disk makes the part file durable while the CPU verifies it
            with ThreadPoolExecutor(1) as pool:
                flushing = pool.submit(_fsync_file, move)
                verify_weights(manifest, data, check_chunks=False, copy=False)
            synced = flushing.result()
        replaced = self._name_holder(manifest)
        self._write_blob(manifest["weights_sha256"], data, move_from=move, synced=synced)
        row = {
            "packet_id": pid,
            "name": manifest["name"],
            "domain": manifest["domain"],
            "description": manifest["description"],
            "exemplars": json.dumps(manifest["exemplars"]),
            "sha256": manifest["weights_sha256"],
            "size": manifest["weights_size"],
            "author_id": manifest["author_id"],
            "author_name": self._author_name(manifest["author_id"]),
            "base_model_id": manifest["base_model_id"],
            "base_fingerprint": manifest["base_fingerprint"],
            "adapter": json.dumps(manifest["adapter"]),
            "merged": int(manifest["merged"]),
            "source": source,
            "received_at": time.time(),
            "verified": 1,
            "manifest": json.dumps(manifest, sort_keys=True),
            "signature": signature.hex(),
        }
        with self.db.atomic():
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

    def add_local(
        self,
        adapter: Adapter,
        *,
        name: str,
        domain: str,
        description: str,
        exemplars: Iterable[str],
        base_model_id: str,
        base_fingerprint: str,
        merged: bool = False,
        lineage: Iterable[str] = (),
    ) -> PacketRecord:
        """Sign a new packet by this device and store it; return its record."""
        if self.identity is None:
            raise LibraryError("This library was opened without a device identity.")
        if self.db["packets"].count_where("name = ?", [name.strip()]):
            raise LibraryError(f"A packet named {name.strip()!r} is already in the library.")
        manifest, signature, data = build_manifest(
            adapter,
            self.identity,
            name=name,
            domain=domain,
            description=description,
            exemplars=exemplars,
            base_model_id=base_model_id,
            base_fingerprint=base_fingerprint,
            merged=merged,
            lineage=lineage,
        )
        return self.add(manifest, signature, data, source="local")

    def reissue(
        self,
        name_or_id: str,
        *,
        exemplars: Iterable[str] | None = None,
        description: str | None = None,
        name: str | None = None,
    ) -> PacketRecord:
        """Sign a new version of a packet by this device, same weights, new exemplars or
        description; return its record.

        The old packet's id joins the lineage. A packet of this device is replaced under
        its name; another author's packet stays, and its new version needs a `name` of its
        own. Raises LibraryError (and changes nothing) otherwise.
        """
        if self.identity is None:
            raise LibraryError("This library was opened without a device identity.")
        old = self.get(name_or_id)
        new_name = (name or old.name).strip()
        if old.author_id != self.identity.device_id and new_name == old.name:
            raise LibraryError(
                f"{old.name!r} is by another author: give the new version a name of its own."
            )
        if new_name != old.name and self.db["packets"].count_where("name = ?", [new_name]):
            raise LibraryError(f"A packet named {new_name!r} is already in the library.")
        manifest, signature, data = build_manifest(
            self.load_adapter(old),
            self.identity,
            name=new_name,
            domain=old.domain,
            description=old.description if description is None else description,
            exemplars=old.exemplars if exemplars is None else exemplars,
            base_model_id=old.base_model_id,
            base_fingerprint=old.base_fingerprint,
            merged=old.merged,
            lineage=[*old.manifest.get("lineage", []), old.packet_id],
            dtype=old.manifest["dtype"],
            created=max(int(time.time()), int(old.manifest["created"]) + 1),
        )
        return self.add(manifest, signature, data, source="local")

    def remove(self, name_or_id: str) -> PacketRecord:
        """Remove a packet and, if no other packet shares them, its weights; return it."""
        record = self.get(name_or_id)
        with self.db.atomic():
            self.db["packets"].delete(record.packet_id)
            self._log("packet_removed", name=record.name, packet_id=record.packet_id)
        self._drop_blob_if_unused(record.sha256)
        return record

    def verify(self, name_or_id: str) -> tuple[PacketRecord, str | None]:
        """Re-check a packet's signature and weights; return (record, problem or None)."""
        record = self.get(name_or_id)
        problem: str | None = None
        try:
            verify_manifest(record.manifest, record.signature)
            verify_weights(record.manifest, self.read_weights(record), copy=False)
        except (PacketError, LibraryError) as exc:
            problem = str(exc)
        self.db["packets"].update(record.packet_id, {"verified": int(problem is None)})
        return self.get(record.packet_id), problem

    # -- peers -----------------------------------------------------------------------------

    def get_peer(self, peer_id: str) -> PeerRecord | None:
        rows = list(self.db["peers"].rows_where("peer_id = ?", [peer_id]))
        return _peer(rows[0]) if rows else None

    def list_peers(self) -> list[PeerRecord]:
        return [_peer(r) for r in self.db["peers"].rows_where(order_by="name, peer_id")]

    def upsert_peer(
        self,
        public_key: bytes,
        name: str,
        address: str = "",
        default_trust: str = "pending",
    ) -> PeerRecord:
        """Record a contact with a peer; pin its key on first contact.

        Raises PeerRefused if a known id now shows a different key (never silently replaced).
        """
        peer_id = device_id_for(public_key)
        now = time.time()
        known = self.get_peer(peer_id)
        if known is not None and known.public_key is not None and known.public_key != public_key:
            self._log("peer_key_changed", peer_id=peer_id)
            raise PeerRefused(f"Peer {peer_id} presented a different key than before; refusing it.")
        row = {
            "peer_id": peer_id,
            "name": name[:64],
            "public_key": public_key.hex(),
            "address": address or (known.address if known else ""),
            "last_seen": now,
            "first_seen": known.first_seen if known and known.first_seen else now,
            "trust": known.trust if known else default_trust,
        }
        self.db["peers"].upsert(row, pk="peer_id")
        peer = self.get_peer(peer_id)
        assert peer is not None
        return peer

    def set_trust(self, peer_id: str, trust: str) -> PeerRecord:
        """Set a peer's trust state; works before first contact (the id is a key hash)."""
        if trust not in TRUST_STATES:
            raise LibraryError(f"Trust must be one of {', '.join(TRUST_STATES)}.")
        peer_id = peer_id.strip().lower()
        if len(peer_id) != 16 or not peer_id.isalnum():
            raise LibraryError(f"{peer_id!r} is not a device id (16 letters and digits).")
        if self.get_peer(peer_id) is None:
            self.db["peers"].insert(
                {"peer_id": peer_id, "name": "", "public_key": None, "trust": trust, "address": ""}
            )
        else:
            self.db["peers"].update(peer_id, {"trust": trust})
        self._log("peer_trust", peer_id=peer_id, trust=trust)
        peer = self.get_peer(peer_id)
        assert peer is not None
        return peer

    # -- transfers (resume state) ----------------------------------------------------------

    def transfer_state(self, packet_id: str) -> dict[str, Any] | None:
        """Return {'peer_id', 'manifest', 'signature', 'received'} of a partial transfer."""
        rows = list(self.db["transfers"].rows_where("packet_id = ?", [packet_id]))
        if not rows:
            return None
        row = rows[0]
        return {
            "packet_id": packet_id,
            "peer_id": row["peer_id"],
            "manifest": json.loads(row["manifest"]),
            "signature": bytes.fromhex(row["signature"]),
            "received": json.loads(row["received"]),
        }

    def save_transfer(
        self,
        packet_id: str,
        peer_id: str,
        manifest: dict[str, Any],
        signature: bytes,
        received: Iterable[int],
    ) -> None:
        """Persist which chunks of a packet have been received (and written to the part file)."""
        self.db["transfers"].upsert(
            {
                "packet_id": packet_id,
                "peer_id": peer_id,
                "manifest": json.dumps(manifest, sort_keys=True),
                "signature": signature.hex(),
                "received": json.dumps(sorted(set(received))),
                "updated_at": time.time(),
            },
            pk="packet_id",
        )

    def clear_transfer(self, packet_id: str) -> None:
        self.db["transfers"].delete_where("packet_id = ?", [packet_id])

    def part_path(self, packet_id: str) -> Path:
        """Return the part file that holds a partial transfer's chunks."""
        return self.home.parts_dir / f"{packet_id}.part"

    # -- settings and events ---------------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        rows = list(self.db["settings"].rows_where("key = ?", [key]))
        return json.loads(rows[0]["value"]) if rows else default

    def set_setting(self, key: str, value: Any) -> None:
        self.db["settings"].upsert({"key": key, "value": json.dumps(value)}, pk="key")

    def log_event(self, kind: str, **data: Any) -> None:
        """Append an event to the log."""
        self._log(kind, **data)

    def events(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.db["events"].rows_where(order_by="id desc", limit=limit)
        return [{"ts": r["ts"], "kind": r["kind"], **json.loads(r["data"])} for r in rows]

    # -- internals -------------------------------------------------------------------------

    def _log(self, kind: str, **data: Any) -> None:
        self.db["events"].insert({"ts": time.time(), "kind": kind, "data": json.dumps(data)})

    def _author_name(self, author_id: str) -> str:
        if self.identity is not None and author_id == self.identity.device_id:
            return self.identity.name
        peer = self.get_peer(author_id)
        return peer.name if peer and peer.name else ""

    def _name_holder(self, manifest: dict[str, Any]) -> PacketRecord | None:
        """Return the packet a newer version from the same author replaces, if any."""
        rows = list(self.db["packets"].rows_where("name = ?", [manifest["name"]]))
        if not rows:
            return None
        holder = _record(rows[0])
        if holder.author_id != manifest["author_id"]:
            raise LibraryError(
                f"A packet named {manifest['name']!r} by another author is already in the library."
            )
        if manifest["created"] <= holder.manifest["created"]:
            raise LibraryError(
                f"The library already holds a newer or equal version of {manifest['name']!r}."
            )
        return holder

    def _write_blob(
        self, sha256: str, data: bytes, move_from: Path | None = None, synced: bool = False
    ) -> None:
        """Store verified bytes as the blob `sha256`, durably; `move_from` is a file holding
        exactly those bytes on the same disk, renamed into place instead of copied (`synced`:
        it was fsynced already)."""
        path = self.home.blobs_dir / sha256[:2] / f"{sha256}.safetensors"
        if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if move_from is not None and (synced or _fsync_file(move_from)):
            try:
                os.replace(move_from, path)
                _fsync_dir(path.parent)
                return
            except OSError:
                pass  # another disk, or gone: write a copy below
        tmp = path.parent / f".tmp-{os.getpid()}-{sha256[:16]}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    def _drop_blob_if_unused(self, sha256: str) -> None:
        if self.db["packets"].count_where("sha256 = ?", [sha256]) == 0:
            (self.home.blobs_dir / sha256[:2] / f"{sha256}.safetensors").unlink(missing_ok=True)

    def _remove_stale_temp_files(self) -> None:
        for tmp in self.home.blobs_dir.glob("*/.tmp-*"):
            pid = tmp.name.split("-")[1]
            if not pid.isdigit() or not _process_alive(int(pid)):
                tmp.unlink(missing_ok=True)


def _record(row: dict[str, Any]) -> PacketRecord:
    return PacketRecord(
        packet_id=row["packet_id"],
        name=row["name"],
        domain=row["domain"],
        description=row["description"],
        exemplars=json.loads(row["exemplars"]),
        sha256=row["sha256"],
        size=row["size"],
        author_id=row["author_id"],
        author_name=row["author_name"] or "",
        base_model_id=row["base_model_id"],
        base_fingerprint=row["base_fingerprint"],
        adapter=AdapterConfig.from_mlx_dict(json.loads(row["adapter"])),
        source=row["source"],
        received_at=row["received_at"],
        verified=bool(row["verified"]),
        merged=bool(row["merged"]),
        manifest=json.loads(row["manifest"]),
        signature=bytes.fromhex(row["signature"]),
    )


def _peer(row: dict[str, Any]) -> PeerRecord:
    key = row.get("public_key")
    return PeerRecord(
        peer_id=row["peer_id"],
        name=row.get("name") or "",
        public_key=bytes.fromhex(key) if key else None,
        trust=row.get("trust") or "pending",
        address=row.get("address") or "",
        first_seen=row.get("first_seen"),
        last_seen=row.get("last_seen"),
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PacketError(f"{path} cannot be read ({exc.strerror}).") from exc


def _fsync_file(path: Path) -> bool:
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


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
