"""The one rule for which packets may answer a question.

A packet may answer when it verified, its author is not blocked, and it was made for the
base model in use. `fieldkit ask`, `fieldkit route`, the router, the TUI (which shows the
same states in the Library) and the server all ask here.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fieldkit.store.library import Library
    from fieldkit.store.records import PacketRecord


class PacketState(enum.Enum):
    """Whether a packet may answer here, and if not, the first reason why."""

    OK = "ok"
    UNVERIFIED = "unverified"
    BLOCKED = "blocked"
    FOREIGN_BASE = "foreign base"


def packet_state(
    record: Any,
    base_fingerprint: str | None,
    blocked_authors: Collection[str],
) -> PacketState:
    """Return the state of a packet on this device.

    `base_fingerprint` None means the base model is not known here: such a packet counts as
    made for it (routing needs no model; `shown_state` says "no model").
    """
    if not getattr(record, "verified", False):
        return PacketState.UNVERIFIED
    if getattr(record, "author_id", None) in blocked_authors:
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
    state = packet_state(record, base_fingerprint, library.blocked_authors())
    return {
        PacketState.OK: None,
        PacketState.UNVERIFIED: f"The packet {record.name!r} failed verification "
        "(see `fieldkit library verify`).",
        PacketState.BLOCKED: f"The packet {record.name!r} is by a blocked author "
        f"({record.author_id}; `fieldkit trust` lifts the block).",
        PacketState.FOREIGN_BASE: f"The packet {record.name!r} was made for another base model "
        f"({record.base_model_id}, fingerprint {record.base_fingerprint[:12]}).",
    }[state]


def usable_packets(library: Library, base_fingerprint: str | None) -> list[PacketRecord]:
    """Return the packets that may answer on this base model, sorted by name."""
    blocked = library.blocked_authors()
    return [
        r
        for r in library.list_packets()
        if packet_state(r, base_fingerprint, blocked) is PacketState.OK
    ]
