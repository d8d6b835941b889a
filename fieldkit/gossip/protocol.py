"""The gossip protocol as a pure object: bytes in, events out, bytes to send.

`GossipConnection` owns no socket, clock, task or random source: the session feeds it what
the transport received (`receive_data`), pulls events (`next_event`) and writes whatever
`send(message)` returns. Nonces come from the caller. Two kinds of error:

- `ProtocolError` (fieldkit.errors): the peer misbehaved. The connection is then broken and
  every later `next_event` raises the same error; the caller may still `send(Abort(...))`.
- `LocalProtocolError`: the caller broke the rules (sent out of order, asked for a chunk that
  was not wanted). A bug in this program, never shown to a person as a peer's fault.

The message order, the checks and the limits are in docs/PROTOCOL.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from fieldkit.errors import ProtocolError
from fieldkit.gossip.chunks import ChunkDecoder, ChunkEncoder
from fieldkit.gossip.framing import DEFAULT_MAX_FRAME, FrameDecoder, encode_frame
from fieldkit.gossip.messages import (
    Abort,
    Bye,
    Cancel,
    Chunk,
    Hello,
    Inventory,
    InventoryItem,
    Message,
    PacketEnd,
    PacketStart,
    Proof,
    RawChunk,
    Want,
    decode_message,
)
from fieldkit.gossip.pairing import proof_payload, sas_digits, verify_ed25519

PROTOCOL_VERSION = 1
_HEX64_CHARS = frozenset("0123456789abcdef")


class LocalProtocolError(RuntimeError):
    """This side used the connection out of order; a programming error, not the peer's."""


@dataclass(frozen=True)
class Limits:
    """Bounds that keep a hostile peer from exhausting memory or disk."""

    max_frame: int = DEFAULT_MAX_FRAME
    max_chunk: int = 1024 * 1024
    min_chunk: int = 1024
    max_packet: int = 512 * 1024 * 1024
    max_inventory: int = 5_000  # 5000 entries of ~140 bytes fit in one frame


@dataclass(frozen=True)
class PeerVerified:
    """Event: the peer proved it holds the key it announced."""

    device_id: str
    name: str
    public_key: bytes
    sas: str


@dataclass(frozen=True)
class Closed:
    """Event: the transport ended; `clean` is True if both sides had said Bye first."""

    clean: bool


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()
Event = Message | PeerVerified | Closed


class State(Enum):
    """Connection states; see docs/PROTOCOL.md for the table."""

    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSED = "closed"
    ERROR = "error"


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


class GossipConnection:
    """One side of a gossip session. Both sides run the same object (the protocol is symmetric).

    `device_id_for(public_key) -> str` is the id rule of fieldkit.store.identity, passed in so
    the core can check that a peer's id matches its key.
    """

    def __init__(
        self,
        hello: Hello,
        device_id_for: Callable[[bytes], str],
        limits: Limits | None = None,
        encoder: ChunkEncoder | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.our_hello = hello
        self.peer_hello: Hello | None = None
        self.peer: PeerVerified | None = None
        self.state = State.HANDSHAKE
        self.bytes_received = 0
        self.bytes_sent = 0
        self._device_id_for = device_id_for
        self._frames = FrameDecoder(self.limits.max_frame)
        self._encoder = encoder or ChunkEncoder()
        self._decoder = ChunkDecoder()
        self._eof = False
        self._error: ProtocolError | None = None
        self._sent: set[type[Message]] = set()
        self._got: set[type[Message]] = set()
        self._offered: dict[str, InventoryItem] = {}
        self._incoming: dict[str, _Incoming] = {}
        self._outgoing: dict[str, _Outgoing] = {}
        self._peer_inventory: dict[str, InventoryItem] = {}

    # --- properties --------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True once both sides said Bye: nothing more will be sent or expected."""
        return Bye in self._sent and Bye in self._got

    @property
    def said_bye(self) -> bool:
        """True once this side sent Bye."""
        return Bye in self._sent

    @property
    def peer_inventory(self) -> dict[str, InventoryItem]:
        """The packets the peer offered, by packet id (empty until its Inventory arrived)."""
        return dict(self._peer_inventory)

    def is_cancelled(self, packet_id: str) -> bool:
        """True if the transfer of `packet_id` (either direction) was cancelled by either side."""
        inc = self._incoming.get(packet_id)
        out = self._outgoing.get(packet_id)
        return bool((inc and inc.cancelled) or (out and out.cancelled))

    def pending_wants(self) -> list[str]:
        """Ids we asked for that have neither ended nor been cancelled."""
        return list(self._incoming)

    # --- receiving ---------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the transport; b"" means the peer closed its side."""
        if self._eof and data:
            raise LocalProtocolError("receive_data() after end of stream")
        if not data:
            self._eof = True
            return
        self.bytes_received += len(data)
        self._frames.feed(data)

    def next_event(self) -> Event | _NeedData:
        """Return the next event, or NEED_DATA. Raises ProtocolError if the peer misbehaved."""
        if self._error is not None:
            raise self._error
        try:
            return self._next_event()
        except ProtocolError as exc:
            self.state = State.ERROR
            self._error = exc
            raise

    def _next_event(self) -> Event | _NeedData:
        while True:
            if self.state is State.CLOSED:
                return Closed(clean=self.finished)
            frame = self._frames.next_message()
            if frame is None:
                if self._eof:
                    self.state = State.CLOSED
                    return Closed(clean=self.finished)
                return NEED_DATA
            raw, size = frame
            message = decode_message(raw, size, self.limits.max_inventory)
            event = self._accept(message)
            if event is not None:
                return event

    def _accept(self, message: Message | RawChunk) -> Event | None:
        """Check `message` against the state; return its event, or None to skip it."""
        if isinstance(message, RawChunk):
            return self._accept_chunk(message)
        kind = type(message)
        if isinstance(message, Abort):
            self.state = State.CLOSED
            self._got.add(Abort)
            return message
        if isinstance(message, Hello):
            return self._accept_hello(message)
        if Hello not in self._got:
            raise ProtocolError("The peer did not start with a Hello message.")
        if isinstance(message, Proof):
            return self._accept_proof(message)
        if self.peer is None:
            raise ProtocolError(f"The peer sent {kind.__name__} before proving its identity.")
        if isinstance(message, Inventory):
            self._once(Inventory)
            if Bye in self._got:
                raise ProtocolError("The peer sent an inventory after saying Bye.")
            self._peer_inventory = {item.packet_id: item for item in message.items}
            return message
        if isinstance(message, Want):
            return self._accept_want(message)
        if isinstance(message, PacketStart):
            return self._accept_start(message)
        if isinstance(message, PacketEnd):
            return self._accept_end(message)
        if isinstance(message, Cancel):
            return self._accept_cancel(message)
        if isinstance(message, Bye):
            self._once(Bye)
            if Inventory not in self._got:
                raise ProtocolError("The peer said Bye before sending its inventory.")
            return message
        raise ProtocolError(f"The peer sent an unexpected {kind.__name__} message.")

    def _once(self, kind: type[Message]) -> None:
        if kind in self._got:
            raise ProtocolError(f"The peer sent a second {kind.__name__} message.")
        self._got.add(kind)

    def _accept_hello(self, hello: Hello) -> Hello:
        self._once(Hello)
        if hello.version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"The peer speaks gossip protocol version {hello.version}; "
                f"this device speaks version {PROTOCOL_VERSION}."
            )
        if self._device_id_for(hello.public_key) != hello.device_id:
            raise ProtocolError("The peer's device id does not match its public key.")
        if hello.public_key == self.our_hello.public_key:
            raise ProtocolError("The peer presented this device's own key.")
        if hello.max_chunk < self.limits.min_chunk:
            raise ProtocolError(f"The peer accepts chunks of only {hello.max_chunk} bytes.")
        self.peer_hello = hello
        return hello

    def _accept_proof(self, proof: Proof) -> PeerVerified:
        self._once(Proof)
        peer = self.peer_hello
        if peer is None or Hello not in self._sent:
            raise ProtocolError("The peer sent its proof before the Hello exchange.")
        payload = proof_payload(
            peer.public_key, peer.nonce, self.our_hello.public_key, self.our_hello.nonce
        )
        if not verify_ed25519(peer.public_key, payload, proof.signature):
            raise ProtocolError("The peer could not prove it holds the key it announced.")
        self.peer = PeerVerified(
            device_id=peer.device_id,
            name=peer.name,
            public_key=peer.public_key,
            sas=sas_digits(
                self.our_hello.public_key, self.our_hello.nonce, peer.public_key, peer.nonce
            ),
        )
        self._update_state()
        return self.peer

    def _accept_want(self, want: Want) -> Want:
        if Inventory not in self._sent:
            raise ProtocolError("The peer asked for a packet before it was offered any.")
        if Bye in self._got:
            raise ProtocolError("The peer asked for a packet after saying Bye.")
        if want.packet_id not in self._offered:
            raise ProtocolError("The peer asked for a packet that was not offered.")
        if want.packet_id in self._outgoing:
            raise ProtocolError("The peer asked for the same packet twice.")
        self._outgoing[want.packet_id] = _Outgoing()
        return want

    def _accept_start(self, start: PacketStart) -> PacketStart | None:
        inc = self._incoming.get(start.packet_id)
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

    def _accept_chunk(self, raw: RawChunk) -> Chunk | None:
        if self.peer is None:
            raise ProtocolError("The peer sent a chunk before proving its identity.")
        inc = self._incoming.get(raw.packet_id)
        if inc is None or not inc.started:
            raise ProtocolError("The peer sent a chunk of a packet it had not started.")
        if inc.cancelled:
            return None  # chunks already in flight when we cancelled
        if raw.index not in inc.expected:
            raise ProtocolError(f"The peer sent chunk {raw.index}, which was not asked for.")
        inc.expected.discard(raw.index)
        length = chunk_length(inc.size, inc.chunk_size, raw.index)
        data = self._decoder.decode(raw.codec, raw.payload, length)
        if hashlib.sha256(data).hexdigest() != inc.hashes[raw.index]:
            raise ProtocolError(
                f"Chunk {raw.index} of packet {raw.packet_id[:12]} does not match its signed hash."
            )
        return Chunk(raw.packet_id, raw.index, data, wire_size=raw.wire_size)

    def _accept_end(self, end: PacketEnd) -> PacketEnd:
        inc = self._incoming.get(end.packet_id)
        if inc is None or not (inc.started or inc.cancelled):
            raise ProtocolError("The peer ended a packet it had not started.")
        if inc.expected and not inc.cancelled:
            raise ProtocolError("The peer ended a packet before sending every chunk.")
        del self._incoming[end.packet_id]
        return end

    def _accept_cancel(self, cancel: Cancel) -> Cancel | None:
        if cancel.packet_id in self._incoming:
            del self._incoming[cancel.packet_id]
            return cancel
        out = self._outgoing.get(cancel.packet_id)
        if out is None:
            raise ProtocolError("The peer cancelled a packet that was not being transferred.")
        if out.cancelled or out.ended:
            return None
        out.cancelled = True
        return cancel

    # --- sending -----------------------------------------------------------------------

    def send(self, message: Message) -> bytes:
        """Return the wire bytes for `message`; raise LocalProtocolError if it is out of order."""
        if self.state is State.CLOSED and not isinstance(message, Abort):
            raise LocalProtocolError(f"cannot send {type(message).__name__}: connection closed")
        check = getattr(self, f"_check_send_{type(message).__name__.lower()}", None)
        if check is None:
            raise LocalProtocolError(f"cannot send {type(message).__name__}")
        check(message)
        if isinstance(message, Chunk):
            codec, payload = self._encoder.encode(message.data)
            data = encode_frame([Chunk.code, message.packet_id, message.index, codec, payload])
        else:
            data = encode_frame(message.to_wire())
        self._sent.add(type(message))
        self._update_state()
        self.bytes_sent += len(data)
        return data

    def _require(self, condition: bool, what: str) -> None:
        if not condition:
            raise LocalProtocolError(what)

    def _check_send_hello(self, message: Hello) -> None:
        self._require(message == self.our_hello, "send the Hello given to the constructor")
        self._require(Hello not in self._sent, "Hello sent twice")

    def _check_send_proof(self, message: Proof) -> None:
        self._require(self.peer_hello is not None and Hello in self._sent, "Proof before Hellos")
        self._require(Proof not in self._sent, "Proof sent twice")

    def _check_send_inventory(self, message: Inventory) -> None:
        self._require(self.state is State.OPEN, "Inventory before the handshake completed")
        self._require(Inventory not in self._sent, "Inventory sent twice")
        self._offered = {item.packet_id: item for item in message.items}

    def _check_send_want(self, message: Want) -> None:
        self._require(self.state is State.OPEN and Bye not in self._sent, "Want out of order")
        item = self._peer_inventory.get(message.packet_id)
        self._require(item is not None, "Want for a packet the peer did not offer")
        self._require(message.packet_id not in self._incoming, "Want sent twice")
        self._incoming[message.packet_id] = _Incoming(message.have, item.sha256, item.size)

    def _check_send_packetstart(self, message: PacketStart) -> None:
        out = self._outgoing.get(message.packet_id)
        self._require(out is not None and not out.started, "PacketStart without a Want")
        self._require(not out.cancelled, "PacketStart of a cancelled packet")
        size = message.manifest["weights_size"]
        chunk_size = message.manifest["chunk_size"]
        out.started, out.size, out.chunk_size = True, size, chunk_size
        out.count = chunk_count(size, chunk_size)

    def _check_send_chunk(self, message: Chunk) -> None:
        out = self._outgoing.get(message.packet_id)
        self._require(out is not None and out.started, "Chunk before PacketStart")
        self._require(not out.cancelled, "Chunk of a cancelled packet")
        expected = chunk_length(out.size, out.chunk_size, message.index)
        self._require(message.index < out.count, "Chunk index out of range")
        self._require(len(message.data) == expected, "Chunk of the wrong length")

    def _check_send_packetend(self, message: PacketEnd) -> None:
        out = self._outgoing.get(message.packet_id)
        self._require(out is not None and not out.ended, "PacketEnd without a Want")
        self._require(out.started or out.cancelled, "PacketEnd before PacketStart")
        out.ended = True

    def _check_send_cancel(self, message: Cancel) -> None:
        if message.packet_id in self._incoming:
            self._incoming[message.packet_id].cancelled = True
            return
        out = self._outgoing.get(message.packet_id)
        self._require(out is not None and not out.ended, "Cancel for a packet not in transfer")
        out.cancelled = out.ended = True

    def _check_send_bye(self, message: Bye) -> None:
        self._require(Inventory in self._sent, "Bye before Inventory")
        self._require(not self._incoming, "Bye while packets we asked for are pending")
        self._require(Bye not in self._sent, "Bye sent twice")

    def _check_send_abort(self, message: Abort) -> None:
        self.state = State.CLOSED if self.state is not State.ERROR else self.state

    def _update_state(self) -> None:
        if self.state is State.HANDSHAKE and Proof in self._sent and self.peer is not None:
            self.state = State.OPEN


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_hex64(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX64_CHARS
