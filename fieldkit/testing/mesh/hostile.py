"""Hostile devices of the mesh: real keys and the real protocol core, lying on purpose.

Each runs the sans-IO `GossipConnection` directly (no library) and offers one bad packet:

- `tamper`: a packet it signed itself, whose chunks it changes on the way out;
- `forge`: a manifest that names another device (the mesh's author) as its author, signed
  with its own key;
- `flood`: an inventory of `max_inventory + 1` made-up entries (an oversized inventory).

The honest side runs the real session; `bad_admitted` counts what got through anyway.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Awaitable, Callable

from fieldkit.errors import FieldkitError
from fieldkit.gossip.framing import encode_frame
from fieldkit.gossip.messages import (
    Bye,
    Chunk,
    Hello,
    Inventory,
    InventoryItem,
    PacketEnd,
    PacketStart,
    Proof,
    Want,
)
from fieldkit.gossip.pairing import proof_payload
from fieldkit.gossip.protocol import (
    NEED_DATA,
    Closed,
    GossipConnection,
    LocalProtocolError,
    PeerVerified,
    chunk_count,
    missing_chunks,
)
from fieldkit.gossip.stream import ByteStream
from fieldkit.store.identity import Identity, device_id_for
from fieldkit.store.packet import SIGNING_CONTEXT, canonical_bytes
from fieldkit.testing.mesh.devices import SimPacket, synthetic_packet

HOSTILE_MODES = ("tamper", "forge", "flood")


def hostile_packet(identity: Identity, mode: str, victim_id: str, size: int) -> SimPacket:
    """Return the packet a hostile device of `mode` offers."""
    packet = synthetic_packet(identity, f"bad-{identity.device_id[:6]}", size, 7, 2, 4096)
    if mode != "forge":
        return packet
    manifest = dict(packet.manifest, author_id=victim_id)
    signature = identity.sign(SIGNING_CONTEXT + canonical_bytes(manifest))
    return SimPacket(manifest, signature, packet.data)


def _item(packet: SimPacket) -> InventoryItem:
    m = packet.manifest
    return InventoryItem(
        packet.packet_id,
        m["weights_sha256"],
        m["weights_size"],
        m["author_id"],
        m["base_fingerprint"],
        m["name"],
    )


def _flood_frame(count: int) -> bytes:
    items = [[hashlib.sha256(b"%d" % i).hexdigest(), "0" * 64, 1, "x", "y", "z"]
             for i in range(count)]  # fmt: skip
    return encode_frame([Inventory.code, items])


async def run_hostile(
    stream: ByteStream, identity: Identity, mode: str, packet: SimPacket, nonce: bytes
) -> int:
    """Run one session as a hostile device (speaking version 1); return the bytes it sent."""
    hello = Hello(1, identity.device_id, identity.name, identity.public_key, nonce, 1 << 20)
    core = GossipConnection(hello, device_id_for)
    sent = 0

    async def send(data: bytes) -> None:
        nonlocal sent
        sent += len(data)
        await stream.send(data)

    try:
        await send(core.send(hello))
        while True:
            event = core.next_event()
            if event is NEED_DATA:
                core.receive_data(await stream.receive())
                continue
            if isinstance(event, Closed) or core.finished:
                break
            if isinstance(event, Hello):
                payload = proof_payload(identity.public_key, nonce, event.public_key, event.nonce)
                await send(core.send(Proof(identity.sign(payload))))
            elif isinstance(event, PeerVerified):
                if mode == "flood":
                    await send(_flood_frame(core.limits.max_inventory + 1))
                    break
                await send(core.send(Inventory((_item(packet),))))
            elif isinstance(event, Inventory):
                await send(core.send(Bye()))
            elif isinstance(event, Want):
                await _serve(core, send, packet, mode, event)
            if core.finished:
                break
    except (FieldkitError, LocalProtocolError):
        pass  # the honest side refused: that is the point
    finally:
        with contextlib.suppress(Exception):
            await stream.close()
    return sent


async def _serve(
    core: GossipConnection,
    send: Callable[[bytes], Awaitable[None]],
    packet: SimPacket,
    mode: str,
    want: Want,
) -> None:
    m = packet.manifest
    await send(core.send(PacketStart(packet.packet_id, m, packet.signature)))
    size, chunk_size = m["weights_size"], m["chunk_size"]
    for index in missing_chunks(want.have, chunk_count(size, chunk_size)):
        piece = bytearray(packet.data[index * chunk_size : (index + 1) * chunk_size])
        if mode == "tamper":
            piece[len(piece) // 2] ^= 0x40
        if core.is_cancelled(packet.packet_id):
            break
        await send(core.send(Chunk(packet.packet_id, index, bytes(piece))))
    await send(core.send(PacketEnd(packet.packet_id)))
