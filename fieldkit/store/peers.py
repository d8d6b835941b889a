"""Peers and trust: who this device has met, the key pinned for each, and its trust state."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from fieldkit.errors import LibraryError, PeerRefused
from fieldkit.formats import shown_text
from fieldkit.store.identity import device_id_for, is_device_id
from fieldkit.store.records import PacketRecord, PeerRecord, peer_record
from fieldkit.store.usable import Blocked, Removed

if TYPE_CHECKING:
    from sqlite_utils import Database

TRUST_STATES = ("trusted", "pending", "blocked")
# Peers met once and never trusted or blocked are forgotten after this long, and at most
# this many are kept: a stream of junk handshakes cannot grow the table without bound.
PENDING_PEER_DAYS = 30
PENDING_PEER_CAP = 1000


def checked_device_id(text: str) -> str:
    """Return a device id as typed, trimmed and in lower case; LibraryError if it cannot be
    one (16 base32 characters: letters and the digits 2 to 7)."""
    peer_id = text.strip().lower()
    if not is_device_id(peer_id):
        shown = shown_text(peer_id[:40])
        raise LibraryError(
            f"{shown!r} is not a device id (16 characters: letters and the digits 2-7)."
        )
    return peer_id


class PeerStore:
    """The `peers` table (mixed into Library)."""

    db: Database
    _log: Callable[..., None]  # the event log's (SettingsStore)
    write_lock: Callable[[], AbstractContextManager[None]]  # Library's one transaction
    list_packets: Callable[[], list[PacketRecord]]  # Library's

    def get_peer(self, peer_id: str) -> PeerRecord | None:
        rows = list(self.db["peers"].rows_where("peer_id = ?", [peer_id]))
        return peer_record(rows[0]) if rows else None

    def list_peers(self) -> list[PeerRecord]:
        return [peer_record(r) for r in self.db["peers"].rows_where(order_by="name, peer_id")]

    def peer_names(self) -> dict[str, str]:
        """Return the names peers told this device, by id (those that told one)."""
        rows = self.db["peers"].rows_where("name != ''", select="peer_id, name")
        return {row["peer_id"]: row["name"] for row in rows}

    def blocked_authors(self) -> set[str]:
        """Return the ids of every blocked device."""
        rows = self.db["peers"].rows_where("trust = ?", ["blocked"], select="peer_id")
        return {row["peer_id"] for row in rows}

    def blocked(self, records: list[PacketRecord] | None = None) -> Blocked:
        """Return what this device's blocks cover (store.usable.Blocked): the blocked
        authors, and the packets here that are theirs or copy theirs (among `records`,
        the library's packets when a caller has listed them already), following copies
        through the packets removed from here too."""
        authors = self.blocked_authors()
        if not authors:
            return Blocked()
        held = self.list_packets() if records is None else records
        removed = [Removed.from_row(row) for row in self.db["removed_packets"].rows]
        return Blocked.of(authors, [*held, *removed])  # a removed original still counts

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
            "address": (address or (known.address if known else ""))[:300],
            "last_seen": now,
            "first_seen": known.first_seen if known and known.first_seen else now,
            "trust": known.trust if known else default_trust,
        }
        self.db["peers"].upsert(row, pk="peer_id")
        if known is None:
            self.prune_pending_peers()
        peer = self.get_peer(peer_id)
        assert peer is not None
        return peer

    def set_trust(self, peer_id: str, trust: str) -> PeerRecord:
        """Set a peer's trust state; works before first contact (the id is a key hash)."""
        if trust not in TRUST_STATES:
            raise LibraryError(f"Trust must be one of {', '.join(TRUST_STATES)}.")
        peer_id = checked_device_id(peer_id)
        me = getattr(self, "identity", None)
        if me is not None and peer_id == me.device_id:
            raise LibraryError(f"{peer_id} is this device; only another device can be {trust}.")
        with self.write_lock():  # the trust and its event together, or neither (Ctrl-C)
            if self.get_peer(peer_id) is None:
                self.db["peers"].insert(
                    {
                        "peer_id": peer_id,
                        "name": "",
                        "public_key": None,
                        "trust": trust,
                        "address": "",
                    }
                )
            else:
                self.db["peers"].update(peer_id, {"trust": trust})
            self._log("peer_trust", peer_id=peer_id, trust=trust)
        peer = self.get_peer(peer_id)
        assert peer is not None
        return peer

    def forget_peer(self, peer_id: str) -> PeerRecord:
        """Remove a peer's record (its trust, name, address and pinned key): it is a
        stranger again, as before the first contact. Returns what was removed; LibraryError
        for an id this device does not know."""
        peer_id = checked_device_id(peer_id)
        with self.write_lock():
            peer = self.get_peer(peer_id)
            if peer is None:
                raise LibraryError(f"No peer {peer_id} is known on this device.")
            self.db["peers"].delete(peer_id)
            self._log("peer_forgotten", peer_id=peer_id, trust=peer.trust)
        return peer

    def prune_pending_peers(self, now: float | None = None) -> int:
        """Forget pending peers older than PENDING_PEER_DAYS and beyond PENDING_PEER_CAP
        (oldest first); return how many were removed. Trusted and blocked peers stay."""
        now = time.time() if now is None else now
        cutoff = now - PENDING_PEER_DAYS * 86400
        with self.db.atomic():
            gone = self.db.execute(
                "delete from peers where trust = 'pending' and coalesce(last_seen, 0) < ?",
                [cutoff],
            ).rowcount
            gone += self.db.execute(
                "delete from peers where peer_id in (select peer_id from peers where trust = "
                "'pending' order by last_seen desc limit -1 offset ?)",
                [PENDING_PEER_CAP],
            ).rowcount
        return gone
