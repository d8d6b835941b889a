"""Packet transfers inside a gossip session: which chunks were asked for, sent and received.

`Transfers` keeps the per-packet rules of fieldkit.gossip.protocol.GossipConnection (the
connection checks the message order with the table in fieldkit.gossip.states first): a
PacketStart only for a wanted packet and with a manifest that matches the offer, only the
chunks asked for, each checked against its signed hash, PacketEnd once all arrived.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from fieldkit.errors import ProtocolError
from fieldkit.gossip.chunks import ChunkDecoder
from fieldkit.gossip.framing import DEFAULT_MAX_FRAME
from fieldkit.gossip.messages import (
    Cancel,
    Chunk,
    InventoryItem,
    PacketEnd,
    PacketStart,
    RawChunk,
    Want,
)
from fieldkit.gossip.states import require

_HEX64_CHARS = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Limits:
    """Bounds that keep a hostile peer from exhausting memory or disk."""

    max_frame: int = DEFAULT_MAX_FRAME
    max_chunk: int = 1024 * 1024
    min_chunk: int = 1024
    max_packet: int = 512 * 1024 * 1024
    max_inventory: int = 5_000  # 5000 entries of ~140 bytes fit in one frame


def chunk_count(size: int, chunk_size: int) -> int:
    """Return how many chunks a file of `size` bytes has (at least one)."""
    return max(1, -(-size // chunk_size))


def chunk_length(size: int, chunk_size: int, index: int) -> int:
    """Return the length of chunk `index` of a file of `size` bytes."""
    return max(0, min(chunk_size, size - index * chunk_size))


def have_bitmap(indices: set[int] | frozenset[int], count: int) -> bytes:
    """Return the bitmap (bit i of byte i//8, LSB first) of the chunks held."""
    bits = bytearray(-(-count // 8))
    for i in indices:
        bits[i // 8] |= 1 << (i % 8)
    return bytes(bits)


def missing_chunks(have: bytes, count: int) -> list[int]:
    """Return the chunk indices not set in a `have` bitmap (bits past `have` count as unset)."""
    return [i for i in range(count) if i // 8 >= len(have) or not have[i // 8] >> (i % 8) & 1]


@dataclass
class _Incoming:
    have: bytes
    item_sha256: str
    item_size: int
    started: bool = False
    cancelled: bool = False
    size: int = 0
    chunk_size: int = 0
    hashes: list[str] = field(default_factory=list)
    expected: set[int] = field(default_factory=set)


@dataclass
class _Outgoing:
    started: bool = False
    cancelled: bool = False
    ended: bool = False
    size: int = 0
    chunk_size: int = 0
    count: int = 0


class Transfers:
    """The packets in flight both ways: `incoming` (we asked) and `outgoing` (the peer asked)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.incoming: dict[str, _Incoming] = {}
        self.outgoing: dict[str, _Outgoing] = {}

    def is_cancelled(self, packet_id: str) -> bool:
        """True if the transfer of `packet_id` (either direction) was cancelled by either side."""
        inc = self.incoming.get(packet_id)
        out = self.outgoing.get(packet_id)
        return bool((inc and inc.cancelled) or (out and out.cancelled))

    def got_want(self, want: Want) -> None:
        if want.packet_id in self.outgoing:
            raise ProtocolError("The peer asked for the same packet twice.")
        self.outgoing[want.packet_id] = _Outgoing()

    def got_start(self, start: PacketStart) -> PacketStart | None:
        inc = self.incoming.get(start.packet_id)
        if inc is None or inc.started:
            raise ProtocolError("The peer sent a packet that was not asked for.")
        inc.started = True
        if inc.cancelled:
            return None
        manifest = start.manifest
        size = manifest.get("weights_size")
        chunk_size = manifest.get("chunk_size")
        hashes = manifest.get("chunk_hashes")
        lim = self.limits
        if not (_is_uint(size) and _is_uint(chunk_size) and isinstance(hashes, list)):
            raise ProtocolError("The peer sent a manifest without sizes and chunk hashes.")
        if not lim.min_chunk <= chunk_size <= lim.max_chunk:
            raise ProtocolError(f"The peer's packet uses {chunk_size}-byte chunks, out of bounds.")
        if size > lim.max_packet:
            raise ProtocolError(
                f"The peer's packet has {size} bytes; the limit is {lim.max_packet}."
            )
        if len(hashes) != chunk_count(size, chunk_size) or not all(map(_is_hex64, hashes)):
            raise ProtocolError("The peer's manifest has a malformed list of chunk hashes.")
        if manifest.get("weights_sha256") != inc.item_sha256 or size != inc.item_size:
            raise ProtocolError("The peer's manifest does not match the packet it offered.")
        inc.size, inc.chunk_size, inc.hashes = size, chunk_size, hashes
        inc.expected = set(missing_chunks(inc.have, len(hashes)))
        return start

    def got_chunk(self, raw: RawChunk, decoder: ChunkDecoder) -> Chunk | None:
        inc = self.incoming.get(raw.packet_id)
        if inc is None or not inc.started:
            raise ProtocolError("The peer sent a chunk of a packet it had not started.")
        if inc.cancelled:
            return None  # chunks already in flight when we cancelled
        if raw.index not in inc.expected:
            raise ProtocolError(f"The peer sent chunk {raw.index}, which was not asked for.")
        inc.expected.discard(raw.index)
        length = chunk_length(inc.size, inc.chunk_size, raw.index)
        data = decoder.decode(raw.codec, raw.payload, length)
        if hashlib.sha256(data).hexdigest() != inc.hashes[raw.index]:
            raise ProtocolError(
                f"Chunk {raw.index} of packet {raw.packet_id[:12]} does not match its signed hash."
            )
        return Chunk(raw.packet_id, raw.index, data, wire_size=raw.wire_size)

    def got_end(self, end: PacketEnd) -> PacketEnd:
        inc = self.incoming.get(end.packet_id)
        if inc is None or not (inc.started or inc.cancelled):
            raise ProtocolError("The peer ended a packet it had not started.")
        if inc.expected and not inc.cancelled:
            raise ProtocolError("The peer ended a packet before sending every chunk.")
        del self.incoming[end.packet_id]
        return end

    def got_cancel(self, cancel: Cancel) -> Cancel | None:
        if cancel.packet_id in self.incoming:
            del self.incoming[cancel.packet_id]
            return cancel
        out = self.outgoing.get(cancel.packet_id)
        if out is None:
            raise ProtocolError("The peer cancelled a packet that was not being transferred.")
        if out.cancelled or out.ended:
            return None
        out.cancelled = True
        return cancel

    def sending_want(self, message: Want, item: InventoryItem) -> None:
        require(message.packet_id not in self.incoming, "Want sent twice")
        self.incoming[message.packet_id] = _Incoming(message.have, item.sha256, item.size)

    def sending_start(self, message: PacketStart) -> None:
        out = self.outgoing.get(message.packet_id)
        require(out is not None and not out.started, "PacketStart without a Want")
        assert out is not None
        require(not out.cancelled, "PacketStart of a cancelled packet")
        size = message.manifest["weights_size"]
        chunk_size = message.manifest["chunk_size"]
        out.started, out.size, out.chunk_size = True, size, chunk_size
        out.count = chunk_count(size, chunk_size)

    def sending_chunk(self, message: Chunk) -> None:
        out = self.outgoing.get(message.packet_id)
        require(out is not None and out.started, "Chunk before PacketStart")
        assert out is not None
        require(not out.cancelled, "Chunk of a cancelled packet")
        require(message.index < out.count, "Chunk index out of range")
        expected = chunk_length(out.size, out.chunk_size, message.index)
        require(len(message.data) == expected, "Chunk of the wrong length")

    def sending_end(self, message: PacketEnd) -> None:
        out = self.outgoing.get(message.packet_id)
        require(out is not None and not out.ended, "PacketEnd without a Want")
        assert out is not None
        require(out.started or out.cancelled, "PacketEnd before PacketStart")
        out.ended = True

    def sending_cancel(self, message: Cancel) -> None:
        if message.packet_id in self.incoming:
            self.incoming[message.packet_id].cancelled = True
            return
        out = self.outgoing.get(message.packet_id)
        require(out is not None and not out.ended, "Cancel for a packet not in transfer")
        assert out is not None
        out.cancelled = out.ended = True


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_hex64(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX64_CHARS
