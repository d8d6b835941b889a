"""The gossip protocol as a pure object: bytes in, events out, bytes to send.

`GossipConnection` owns no socket, clock, task or random source: the session feeds it what
the transport received (`receive_data`), pulls events (`next_event`) and writes whatever
`send(message)` returns. Nonces come from the caller. Two kinds of error:

- `ProtocolError` (fieldkit.errors): the peer misbehaved. The connection is then broken and
  every later `next_event` raises the same error; the caller may still `send(Abort(...))`.
- `LocalProtocolError`: the caller broke the rules (sent out of order, asked for a chunk that
  was not wanted). A bug in this program, never shown to a person as a peer's fault.

Either way the connection is then errored: every later `send`, `receive_data` and
`next_event` raises (the same ProtocolError, or a LocalProtocolError naming the first
failure), except one `send(Abort(...))` to tell the peer. The order of messages is the one
table in fieldkit.gossip.states; the checks and limits are in docs/PROTOCOL.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from fieldkit.errors import ProtocolError
from fieldkit.gossip.chunks import ChunkDecoder, ChunkEncoder
from fieldkit.gossip.events import NEED_DATA, Closed, Event, NeedData, PeerVerified
from fieldkit.gossip.framing import FrameDecoder, encode_frame
from fieldkit.gossip.inventories import InventoryExchange
from fieldkit.gossip.messages import (
    Abort,
    Bye,
    Cancel,
    Chunk,
    Decline,
    Hello,
    Inventory,
    InventoryItem,
    Message,
    Offer,
    PacketEnd,
    PacketStart,
    Ping,
    Proof,
    RawChunk,
    Summary,
    Want,
    decode_message,
)
from fieldkit.gossip.pairing import nonce_version, proof_payload, sas_digits, verify_ed25519
from fieldkit.gossip.states import (
    LocalProtocolError,
    Side,
    State,
    after,
    local_out_of_order,
    peer_out_of_order,
    precondition_holds,
    require,
)
from fieldkit.gossip.transfers import (
    Limits,
    Transfers,
    chunk_count,
    chunk_length,
    have_bitmap,
    missing_chunks,
)

PROTOCOL_VERSION = 1  # the Hello's version field; what more a side speaks is in its nonce
NEWEST_VERSION = 4  # 2: compact inventory (Summary, Offer) and offers that carry `created`;
# 3: a receiver says which offered packets it declines, and why (Decline); 4: a side that has
# sent nothing for a while says it is still there (Ping)
INVENTORY_KINDS = (Inventory, Summary, Offer)
PING_FRAME = encode_frame(Ping().to_wire())  # every Ping is these bytes
__all__ = [  # what other modules import from here (events, states and chunk helpers live apart)
    "NEED_DATA",
    "Closed",
    "GossipConnection",
    "LocalProtocolError",
    "Limits",
    "PeerVerified",
    "State",
    "chunk_count",
    "chunk_length",
    "have_bitmap",
    "missing_chunks",
    "only_pings",
]


def only_pings(data: bytes) -> bool:
    """True if `data` is nothing but whole Ping frames: bytes that carry no progress. Every
    read of a session asks, so a read longer than a few Pings is answered at once, and no
    read is copied."""
    size = len(data)
    if not size or size > 16 * len(PING_FRAME) or size % len(PING_FRAME):
        return False
    return data.count(PING_FRAME) * len(PING_FRAME) == size


class GossipConnection:
    """One side of a gossip session. Both sides run the same object (the protocol is symmetric).

    `device_id_for(public_key) -> str` is the id rule of fieldkit.store.identity, passed in so
    the core can check that a peer's id matches its key. The highest protocol version this
    side speaks is the one its Hello's nonce announces (fieldkit.gossip.pairing.mark_nonce);
    `version` is the one both speak, known once the peer's Hello arrived.
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
        self.ours = Side.START
        self.theirs = Side.START
        self.version = 1
        self.bytes_received = 0
        self.bytes_sent = 0
        self.inventory_bytes_sent = 0  # Inventory, Summary and Offer frames
        self.declined: set[str] = set()  # the packets of ours the peer declined (version 3)
        self._device_id_for = device_id_for
        self._frames = FrameDecoder(self.limits.max_frame)
        self._encoder = encoder or ChunkEncoder()
        self._decoder = ChunkDecoder()
        self._eof = False
        self._closed = False
        self._error: Exception | None = None
        self._outbox = bytearray()
        self.inventories = InventoryExchange(self.limits.max_inventory, self._answer)
        self.transfers = Transfers(self.limits)
        self._receive_rules: dict[type, Callable[[Any], Event | None]] = {
            Hello: self._got_hello,
            Proof: self._got_proof,
            Inventory: self.inventories.got_inventory,
            Summary: self.inventories.got_summary,
            Offer: self.inventories.got_offer,
            Want: self._got_want,
            Decline: self._got_decline,
            Ping: self._got_ping,
            PacketStart: self.transfers.got_start,
            PacketEnd: self.transfers.got_end,
            Cancel: self.transfers.got_cancel,
        }
        self._send_rules: dict[type, Callable[[Any], None]] = {
            Hello: self._sending_hello,
            Inventory: self.inventories.sending_inventory,
            Want: self._sending_want,
            Decline: self._sending_decline,
            Ping: self._sending_ping,
            PacketStart: self.transfers.sending_start,
            Chunk: self.transfers.sending_chunk,
            PacketEnd: self.transfers.sending_end,
            Cancel: self.transfers.sending_cancel,
            Bye: self._sending_bye,
        }

    # --- properties --------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The connection as a whole: ERROR, CLOSED, OPEN (both proved) or HANDSHAKE."""
        if self._error is not None:
            return State.ERROR
        if self._closed or Side.ABORTED in (self.ours, self.theirs):
            return State.CLOSED
        if min(self.ours.value, self.theirs.value) >= Side.PROVED.value and self.peer:
            return State.OPEN
        return State.HANDSHAKE

    @property
    def finished(self) -> bool:
        """True once both sides said Bye: nothing more will be sent or expected."""
        return self.ours is Side.DONE and self.theirs is Side.DONE

    @property
    def said_bye(self) -> bool:
        """True once this side sent Bye."""
        return self.ours is Side.DONE

    @property
    def peer_inventory(self) -> dict[str, InventoryItem]:
        """The packets the peer offered, by packet id (empty until its Inventory arrived)."""
        return dict(self.inventories.peer_items)

    def is_cancelled(self, packet_id: str) -> bool:
        """True if the transfer of `packet_id` (either direction) was cancelled by either side."""
        return self.transfers.is_cancelled(packet_id)

    def pending_wants(self) -> list[str]:
        """Ids we asked for that have neither ended nor been cancelled."""
        return list(self.transfers.incoming)

    @property
    def has_data_to_send(self) -> bool:
        """True if the core made frames on its own that `data_to_send` would return."""
        return bool(self._outbox)

    def data_to_send(self) -> bytes:
        """Return (and forget) the frames the core made on its own: in version 2, its answers
        to the peer's inventory summaries. `send` returns them too, ahead of its own frame."""
        data, self._outbox = bytes(self._outbox), bytearray()
        self.bytes_sent += len(data)
        return data

    # --- receiving ---------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the transport; b"" means the peer closed its side."""
        self._raise_if_errored()
        if self._eof and data:
            self._fail(LocalProtocolError("receive_data() after end of stream"))
        if not data:
            self._eof = True
            return
        self.bytes_received += len(data)
        self._frames.feed(data)

    def next_event(self) -> Event | NeedData:
        """Return the next event, or NEED_DATA. Raises ProtocolError if the peer misbehaved."""
        self._raise_if_errored()
        try:
            return self._next_event()
        except Exception as exc:
            self._fail(exc)

    def _next_event(self) -> Event | NeedData:
        while True:
            if self.state is State.CLOSED:
                return Closed(clean=self.finished)
            frame = self._frames.next_message()
            if frame is None:
                if self._eof:
                    self._closed = True
                    return Closed(clean=self.finished)
                return NEED_DATA
            raw, size = frame
            message = decode_message(raw, size, self.limits.max_inventory)
            event = self._accept(message)
            if event is not None:
                return event

    def _accept(self, message: Message | RawChunk) -> Event | None:
        """Check `message` against the table and its rule; return its event, or None."""
        kind = Chunk if isinstance(message, RawChunk) else type(message)
        nxt = after(self.theirs, kind)
        if nxt is None or not precondition_holds(kind, self.ours):
            raise ProtocolError(peer_out_of_order(kind, self.theirs, self.ours))
        if (kind is Inventory) != (self.version < 2) and kind in INVENTORY_KINDS:
            raise ProtocolError(
                f"The peer sent {kind.__name__} in protocol version {self.version}."
            )
        if isinstance(message, RawChunk):
            event = self.transfers.got_chunk(message, self._decoder)
        else:
            rule = self._receive_rules.get(kind)
            event = rule(message) if rule is not None else message
        self.theirs = nxt
        return event

    def _got_hello(self, hello: Hello) -> Hello:
        if hello.version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"The peer speaks gossip protocol version {hello.version}; "
                f"this device speaks version {PROTOCOL_VERSION}."
            )
        if self._device_id_for(hello.public_key) != hello.device_id:
            raise ProtocolError("The peer's device id does not match its public key.")
        if hello.public_key == self.our_hello.public_key:
            raise ProtocolError(
                "The peer has this device's own key: one home was copied from the other. "
                "Give one of them a new identity with `fieldkit id --new`."
            )
        if hello.max_chunk < self.limits.min_chunk:
            raise ProtocolError(f"The peer accepts chunks of only {hello.max_chunk} bytes.")
        self.peer_hello = hello
        self.version = min(nonce_version(hello.nonce), nonce_version(self.our_hello.nonce))
        return hello

    def _got_proof(self, proof: Proof) -> PeerVerified:
        peer = self.peer_hello
        assert peer is not None  # the table: the peer's Proof follows its Hello
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
        return self.peer

    def _got_want(self, want: Want) -> Want:
        if not self.inventories.offered(want.packet_id):
            raise ProtocolError("The peer asked for a packet that was not offered.")
        if want.packet_id in self.declined:
            raise ProtocolError("The peer asked for a packet it had declined.")
        self.transfers.got_want(want)
        return want

    def _got_decline(self, decline: Decline) -> Decline:
        if self.version < 3:
            raise ProtocolError(f"The peer sent Decline in protocol version {self.version}.")
        if not self.inventories.offered(decline.packet_id):
            raise ProtocolError("The peer declined a packet that was not offered.")
        if decline.packet_id in self.declined or decline.packet_id in self.transfers.outgoing:
            raise ProtocolError("The peer declined a packet it had already answered for.")
        self.declined.add(decline.packet_id)
        return decline

    def _got_ping(self, ping: Ping) -> Ping:
        if self.version < 4:
            raise ProtocolError(f"The peer sent Ping in protocol version {self.version}.")
        return ping

    @property
    def may_ping(self) -> bool:
        """True if this side may send Ping now (version 4, after its proof, still open)."""
        live = self.state not in (State.CLOSED, State.ERROR) and not self.finished
        return live and self.version >= 4 and after(self.ours, Ping) is not None

    # --- sending -----------------------------------------------------------------------

    def send(self, message: Message) -> bytes:
        """Return the wire bytes for `message` (after any frames in `data_to_send`).

        Raises LocalProtocolError if it is out of order; the connection is then errored.
        """
        kind = type(message)
        if self._error is not None and not (kind is Abort and self.ours is not Side.ABORTED):
            self._raise_if_errored(sending=True)
        try:
            if self._closed and kind is not Abort:
                raise LocalProtocolError(f"cannot send {kind.__name__}: the link closed")
            nxt = after(self.ours, kind)
            if nxt is None or not precondition_holds(kind, self.theirs):
                raise LocalProtocolError(local_out_of_order(kind, self.ours, self.theirs))
            if kind is Inventory and self.version >= 2:
                replies = self.inventories.start_summary(message)  # type: ignore[arg-type]
                data = b"".join(self._frame(reply) for reply in replies)
            else:
                rule = self._send_rules.get(kind)
                if rule is not None:
                    rule(message)
                data = self._frame(message)
            self.ours = nxt
        except Exception as exc:
            if self._error is None or kind is not Abort:
                self._fail(exc)
            raise
        out = self.data_to_send() + data
        self.bytes_sent += len(data)
        return out

    def _frame(self, message: Message) -> bytes:
        if isinstance(message, Chunk):
            codec, payload = self._encoder.encode(message.data)
            return encode_frame([Chunk.code, message.packet_id, message.index, codec, payload])
        data = encode_frame(message.to_wire())
        if isinstance(message, INVENTORY_KINDS):
            self.inventory_bytes_sent += len(data)
        return data

    def _answer(self, message: Message) -> None:
        """Queue a frame the core makes on its own, for `data_to_send`."""
        self._outbox += self._frame(message)

    def _sending_hello(self, message: Hello) -> None:
        require(message == self.our_hello, "send the Hello given to the constructor")

    def _sending_want(self, message: Want) -> None:
        require(self.inventories.done or self.version < 2, "Want before the inventories matched")
        item = self.inventories.peer_items.get(message.packet_id)
        require(item is not None, "Want for a packet the peer did not offer")
        assert item is not None
        self.transfers.sending_want(message, item)

    def _sending_decline(self, message: Decline) -> None:
        require(self.version >= 3, "Decline before protocol version 3")
        require(self.inventories.done, "Decline before the inventories matched")
        require(message.packet_id in self.inventories.peer_items, "Decline of a packet not offered")
        require(message.packet_id not in self.transfers.incoming, "Decline of a wanted packet")

    def _sending_ping(self, message: Ping) -> None:
        require(self.version >= 4, "Ping before protocol version 4")

    def _sending_bye(self, message: Bye) -> None:
        require(self.inventories.done or self.version < 2, "Bye before the inventories matched")
        require(not self.transfers.incoming, "Bye while packets we asked for are pending")

    # --- errors ------------------------------------------------------------------------

    def _fail(self, exc: Exception) -> NoReturn:
        """Mark the connection errored by `exc` (the first failure wins) and raise it."""
        if self._error is None:
            self._error = exc
        raise exc

    def _raise_if_errored(self, sending: bool = False) -> None:
        """Raise the first failure again: the peer's ProtocolError to a reader, else (and to
        a sender, whose call is then a misuse) a LocalProtocolError that names it."""
        error = self._error
        if error is None:
            return
        if isinstance(error, ProtocolError) and not sending:
            raise error
        raise LocalProtocolError(f"the connection failed earlier: {error}")
