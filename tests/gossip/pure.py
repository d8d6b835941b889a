"""A synchronous in-memory wire between two protocol cores, for sans-IO tests.

`Peer` is a tiny scripted device (what the session does, minus disk and asyncio), so the
same scenario can be replayed with the wire delivering any number of bytes at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fieldkit.gossip.messages import (
    Bye,
    Cancel,
    Chunk,
    Decline,
    Hello,
    Inventory,
    InventoryItem,
    Message,
    PacketEnd,
    PacketStart,
    Proof,
    Want,
)
from fieldkit.gossip.pairing import mark_nonce, proof_payload
from fieldkit.gossip.protocol import (
    NEED_DATA,
    GossipConnection,
    PeerVerified,
    chunk_count,
    have_bitmap,
    missing_chunks,
)
from fieldkit.store.identity import Identity, device_id_for


@dataclass
class Packet:
    manifest: dict[str, Any]
    signature: bytes
    data: bytes
    packet_id: str

    def item(self) -> InventoryItem:
        m = self.manifest
        return InventoryItem(
            self.packet_id,
            m["weights_sha256"],
            m["weights_size"],
            m["author_id"],
            m["base_fingerprint"],
            m["name"],
        )


@dataclass
class Peer:
    """A scripted device: offers `packets`, wants everything it lacks, keeps what arrives."""

    identity: Identity
    nonce: bytes
    packets: dict[str, Packet]
    have: dict[str, set[int]] = field(default_factory=dict)  # resume state per packet id
    cancel_on_start: bool = False
    core: GossipConnection = field(init=False)
    events: list[Any] = field(default_factory=list)
    chunks: dict[str, dict[int, bytes]] = field(default_factory=dict)
    out: bytearray = field(default_factory=bytearray)
    inventory_seen: bool = False
    version: int = 1  # the highest protocol version this peer speaks
    decline: bool = False  # decline every offered packet (version 3) instead of wanting it

    def __post_init__(self) -> None:
        self.nonce = mark_nonce(self.nonce, self.version)
        hello = Hello(
            1,
            self.identity.device_id,
            self.identity.name,
            self.identity.public_key,
            self.nonce,
            1024 * 1024,
        )
        self.core = GossipConnection(hello, device_id_for)
        self.send(hello)

    def send(self, message: Message) -> None:
        self.out += self.core.send(message)

    def feed(self, data: bytes) -> None:
        self.core.receive_data(data)
        while (event := self.core.next_event()) is not NEED_DATA:
            self.events.append(event)
            self.react(event)
            self.out += self.core.data_to_send()
        self.out += self.core.data_to_send()

    def react(self, event: Any) -> None:
        core = self.core
        if isinstance(event, Hello):
            payload = proof_payload(
                self.identity.public_key, self.nonce, event.public_key, event.nonce
            )
            self.send(Proof(self.identity.sign(payload)))
        elif isinstance(event, PeerVerified):
            self.send(Inventory(tuple(p.item() for p in self.packets.values())))
        elif isinstance(event, Inventory):
            for item in event.items:
                if item.packet_id not in self.packets and self.decline:
                    self.send(Decline(item.packet_id, "untrusted"))
                elif item.packet_id not in self.packets:
                    held = self.have.get(item.packet_id, set())
                    bits = have_bitmap(held, max(held) + 1) if held else b""
                    self.send(Want(item.packet_id, bits))
            self.inventory_seen = True
        elif isinstance(event, Want):
            packet = self.packets[event.packet_id]
            m = packet.manifest
            self.send(PacketStart(packet.packet_id, m, packet.signature))
            size, csize = m["weights_size"], m["chunk_size"]
            for i in missing_chunks(event.have, chunk_count(size, csize)):
                if core.is_cancelled(packet.packet_id):
                    break
                self.send(Chunk(packet.packet_id, i, packet.data[i * csize : (i + 1) * csize]))
            self.send(PacketEnd(packet.packet_id))
        elif isinstance(event, PacketStart) and self.cancel_on_start:
            self.send(Cancel(event.packet_id, "not wanted after all"))
        elif isinstance(event, Chunk):
            self.chunks.setdefault(event.packet_id, {})[event.index] = event.data
        if self.inventory_seen and not core.said_bye and not core.pending_wants():
            self.send(Bye())


def run_pair(a: Peer, b: Peer, piece: int | None = None, max_rounds: int = 100_000) -> None:
    """Shuttle bytes between a and b, `piece` bytes per delivery (None: all at once)."""
    for _ in range(max_rounds):
        moved = False
        for src, dst in ((a, b), (b, a)):
            if src.out:
                n = len(src.out) if piece is None else piece
                data, src.out[:] = bytes(src.out[:n]), src.out[n:]
                dst.feed(data)
                moved = True
        if not moved:
            return
    raise AssertionError("the scenario did not settle")
