"""What a gossip session reports: options in, progress updates during, a summary after."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from fieldkit.gossip.protocol import NEWEST_VERSION, Limits

SEND_ORDERS = ("newest", "offered")


@dataclass(frozen=True)
class SyncOptions:
    """How one session behaves. `policy=None` reads the library's receive policy setting.

    `accept_pending`: under the `ask` policy with nobody to ask, accept a pending peer anyway.
    `base_fingerprint`: refuse packets made for another base model (None accepts any base).
    Timeouts are in seconds; slow links (BLE) want the generous defaults. `idle_timeout`:
    how long a session may make no progress (a person confirming a code on the other side).
    With a peer of protocol version 4, each side sends a Ping after `keepalive` seconds of
    sending nothing, so a link that carries nothing at all for `dead_after` is dead.
    `protocol_version`: the highest version this side speaks (2: compact inventory).
    `send_order`: which offered packets to ask for first: "newest" (by the manifest's
    creation time, known from version 2 offers) or "offered" (the peer's order, by name).
    """

    policy: str | None = None
    accept_pending: bool = False
    base_fingerprint: str | None = None
    handshake_timeout: float = 30.0
    idle_timeout: float = 60.0
    keepalive: float = 5.0
    dead_after: float = 20.0
    compression_level: int = 3
    shuffle: bool = True
    limits: Limits = field(default_factory=Limits)
    protocol_version: int = NEWEST_VERSION
    send_order: str = "newest"


@dataclass(frozen=True)
class ProgressUpdate:
    """One packet's transfer progress; `direction` is "sent" or "received"."""

    packet_id: str
    name: str
    direction: str
    done: int
    total: int


@dataclass
class PacketReport:
    """One packet in a session: `status` is ok, refused or failed (`reason` says why)."""

    packet_id: str
    name: str
    sha256: str
    direction: str
    status: str
    size: int = 0
    reason: str = ""
    wire_bytes: int = 0
    resumed_from: int = 0


@dataclass
class SyncSummary:
    """Everything a session did; `error` is set when it ended early."""

    peer_id: str = ""
    peer_name: str = ""
    peer_label: str = ""
    peer_trust: str = ""
    sas: str = ""
    packets: list[PacketReport] = field(default_factory=list)
    error: str | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    inventory_bytes_sent: int = 0  # Inventory, Summary and Offer frames
    protocol_version: int = 1

    def count(self, direction: str, status: str) -> int:
        return sum(1 for p in self.packets if p.direction == direction and p.status == status)

    @property
    def refused(self) -> int:
        """The packets offered by the peer that this side refused."""
        return self.count("received", "refused")

    @property
    def declined(self) -> int:
        """This side's packets the peer refused (a Decline, or a Cancel after the manifest)."""
        return self.count("sent", "refused")

    @property
    def ok(self) -> bool:
        """True if the session finished and no packet failed (refusals are not failures)."""
        return self.error is None and not any(p.status == "failed" for p in self.packets)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form printed by `fieldkit sync --json`."""
        return {
            "ok": self.ok,
            "peer": {
                "id": self.peer_id,
                "name": self.peer_name,
                "address": self.peer_label,
                "trust": self.peer_trust,
                "sas": self.sas,
            },
            "sent": self.count("sent", "ok"),
            "received": self.count("received", "ok"),
            "refused": self.refused,
            "declined": self.declined,
            "failed": sum(1 for p in self.packets if p.status == "failed"),
            "error": self.error,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "packets": [asdict(p) for p in self.packets],
        }


ProgressCallback = Callable[[ProgressUpdate], None]
# Asked under the `ask` policy: (peer id, peer name, SAS digits) -> accept this peer?
ConfirmCallback = Callable[[str, str, str], Awaitable[bool]]
# Told once the peer has proved who it is: the session's summary so far (its peer id, name,
# trust and pairing code), so a listener can show the code while the other side compares.
PeerCallback = Callable[["SyncSummary"], None]


def report_progress(progress: ProgressCallback | None, report: PacketReport, done: int) -> None:
    """Tell `progress` (if given) that `done` bytes of the packet in `report` have moved."""
    if progress is not None:
        progress(ProgressUpdate(report.packet_id, report.name, report.direction, done, report.size))
