"""The one rule for which packets may answer a question.

A packet may answer when it verified, its author is not blocked, and it was made for the
base model in use. `fieldkit ask`, `fieldkit route`, the router, the TUI (which shows the
same states in the Library) and the server all ask here.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fieldkit.store.library import Library
    from fieldkit.store.records import PacketRecord


@dataclass(frozen=True)
class Blocked:
    """What a block covers: the blocked devices' ids, and the weights (sha256) and packet
    ids of every packet here that is theirs or copies theirs, so that a copy another
    device re-signed (a reissue keeps the weights, a compacted packet names its source in
    its lineage) is blocked with them. `in` asks about an author id."""

    authors: frozenset[str] = frozenset()
    weights: frozenset[str] = frozenset()
    packets: frozenset[str] = frozenset()

    def __contains__(self, author_id: object) -> bool:
        return author_id in self.authors

    def covers(self, author_id: str, sha256: str, lineage: Iterable[str] = ()) -> bool:
        """True for a packet by a blocked author, with a blocked packet's weights, or
        made from one (its lineage)."""
        if author_id in self.authors or sha256 in self.weights:
            return True
        return any(pid in self.packets for pid in lineage)

    def covers_record(self, record: Any) -> bool:
        """True if the block covers the packet `record` (its author, weights or lineage)."""
        lineage = (getattr(record, "manifest", None) or {}).get("lineage", ())
        return self.covers(record.author_id, getattr(record, "sha256", ""), lineage)

    @classmethod
    def of(cls, authors: Collection[str], records: Iterable[Any]) -> Blocked:
        """Return what blocking `authors` covers among `records` (the library's packets),
        following copies of copies."""
        block, records = cls(frozenset(authors)), list(records)
        while more := [
            r for r in records if r.packet_id not in block.packets and block.covers_record(r)
        ]:
            block = cls(
                block.authors,
                block.weights | {r.sha256 for r in more},
                block.packets | {r.packet_id for r in more},
            )
        return block


@dataclass(frozen=True)
class Removed:
    """A packet removed from the library, as much of it as a block needs: removing a
    blocked author's packet must not admit the copies others re-signed of it."""

    packet_id: str
    sha256: str
    author_id: str
    manifest: dict[str, Any]  # {"lineage": [...]}, as a record's manifest holds it

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Removed:
        lineage = json.loads(row["lineage"] or "[]")
        return cls(row["packet_id"], row["sha256"], row["author_id"], {"lineage": lineage})


def removed_row(record: Any) -> dict[str, Any]:
    """Return the `removed_packets` row that keeps what a block needs of `record`."""
    lineage = (getattr(record, "manifest", None) or {}).get("lineage", [])
    return {
        "packet_id": record.packet_id,
        "sha256": record.sha256,
        "author_id": record.author_id,
        "lineage": json.dumps(list(lineage)),
        "removed_at": time.time(),
    }


class PacketState(enum.Enum):
    """Whether a packet may answer here, and if not, the first reason why."""

    OK = "ok"
    UNVERIFIED = "unverified"
    BLOCKED = "blocked"
    FOREIGN_BASE = "foreign base"


def packet_state(
    record: Any,
    base_fingerprint: str | None,
    blocked: Blocked,
) -> PacketState:
    """Return the state of a packet on this device.

    `base_fingerprint` None means the base model is not known here: such a packet counts as
    made for it (routing needs no model; `shown_state` says "no model").
    """
    if not getattr(record, "verified", False):
        return PacketState.UNVERIFIED
    if blocked.covers_record(record):
        return PacketState.BLOCKED
    if base_fingerprint is None:
        return PacketState.OK
    if record.base_fingerprint != base_fingerprint:
        return PacketState.FOREIGN_BASE
    return PacketState.OK


NO_MODEL = "no model"  # shown, not a state: see shown_state


def shown_state(state: PacketState, base_fingerprint: str | None) -> str:
    """Return a packet's state as a person is shown it (`library list`, the Library screen):
    the state's value, or NO_MODEL for a packet that passes the rule while no base model is
    installed (it may be routed to, yet nothing can answer with it until one is)."""
    if state is PacketState.OK and base_fingerprint is None:
        return NO_MODEL
    return state.value


def usable_problem(
    library: Library, record: PacketRecord, base_fingerprint: str | None
) -> str | None:
    """Return why `record` may not answer here (one sentence), or None when it may."""
    blocked = library.blocked()
    state = packet_state(record, base_fingerprint, blocked)
    why = (
        f"is by a blocked author ({record.author_id}; `fieldkit trust` lifts the block)"
        if record.author_id in blocked
        else "copies a blocked author's packet (its weights or lineage)"
    )
    return {
        PacketState.OK: None,
        PacketState.UNVERIFIED: f"The packet {record.name!r} failed verification "
        "(see `fieldkit library verify`).",
        PacketState.BLOCKED: f"The packet {record.name!r} {why}.",
        PacketState.FOREIGN_BASE: f"The packet {record.name!r} was made for another base model "
        f"({record.base_model_id}, fingerprint {record.base_fingerprint[:12]}).",
    }[state]


def usable_packets(library: Library, base_fingerprint: str | None) -> list[PacketRecord]:
    """Return the packets that may answer on this base model, sorted by name."""
    records = library.list_packets()
    blocked = library.blocked(records)
    return [r for r in records if packet_state(r, base_fingerprint, blocked) is PacketState.OK]
