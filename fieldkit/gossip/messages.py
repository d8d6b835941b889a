"""Gossip messages: one frozen dataclass per message, and their msgpack array form.

Every message is `[code, field, ...]`. `decode_message` checks the code, the field count and
every field's type and bounds, so the protocol core only ever sees well-formed events.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import astuple, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from fieldkit.errors import ProtocolError

MAX_TEXT = 1024
MAX_REASON = 500
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
T = TypeVar("T")


@dataclass(frozen=True)
class Message:
    """Base: `code` is the wire tag; `wire_size` is the frame size when received (else 0)."""

    code: ClassVar[int] = 0
    wire_size: int = field(default=0, compare=False, repr=False, kw_only=True)

    def to_wire(self) -> list[Any]:
        """Return the msgpack array for this message."""
        return [self.code, *(getattr(self, f.name) for f in fields(self) if f.name != "wire_size")]


@dataclass(frozen=True)
class Hello(Message):
    """First message from each side: who I am and a fresh nonce for this session."""

    code: ClassVar[int] = 1
    version: int
    device_id: str
    name: str
    public_key: bytes
    nonce: bytes
    max_chunk: int


@dataclass(frozen=True)
class Proof(Message):
    """Ed25519 signature over `pairing.proof_payload(...)`: I hold the key I announced."""

    code: ClassVar[int] = 2
    signature: bytes


@dataclass(frozen=True)
class InventoryItem:
    """One packet a peer offers."""

    packet_id: str
    sha256: str
    size: int
    author_id: str
    base_fingerprint: str
    name: str
    created: int = 0  # the manifest's creation time; version 2 offers carry it (send order)

    def to_wire(self, version: int = 1) -> list[Any]:
        """Return the item's msgpack array: six fields in version 1, seven in version 2."""
        fields_ = list(astuple(self))
        return fields_ if version >= 2 else fields_[:6]


@dataclass(frozen=True)
class Inventory(Message):
    """Every packet the sender is willing to share (version 1)."""

    code: ClassVar[int] = 3
    items: tuple[InventoryItem, ...]

    def to_wire(self) -> list[Any]:
        return [self.code, [item.to_wire(1) for item in self.items]]


@dataclass(frozen=True)
class Want(Message):
    """Ask for a packet; `have` is a bitmap of the chunks the asker already holds."""

    code: ClassVar[int] = 4
    packet_id: str
    have: bytes = b""


@dataclass(frozen=True)
class PacketStart(Message):
    """The signed manifest of a wanted packet; its chunks follow."""

    code: ClassVar[int] = 5
    packet_id: str
    manifest: dict[str, Any]
    signature: bytes


@dataclass(frozen=True)
class Chunk(Message):
    """One chunk of a packet's weights. On the wire: [6, id, index, codec, payload]."""

    code: ClassVar[int] = 6
    packet_id: str
    index: int
    data: bytes


@dataclass(frozen=True)
class PacketEnd(Message):
    """The sender has sent every chunk that was asked for."""

    code: ClassVar[int] = 7
    packet_id: str


@dataclass(frozen=True)
class Cancel(Message):
    """Either side stops one packet: the sender cannot give it, or the receiver refuses it."""

    code: ClassVar[int] = 8
    packet_id: str
    reason: str


@dataclass(frozen=True)
class Bye(Message):
    """The sender wants nothing more; the session ends once both sides said Bye."""

    code: ClassVar[int] = 9


@dataclass(frozen=True)
class Abort(Message):
    """The sender ends the session now, with a reason for the person on the other side."""

    code: ClassVar[int] = 10
    reason: str


@dataclass(frozen=True)
class SummaryEntry:
    """The packets whose id starts with `prefix` (hex): how many, and a digest of their ids."""

    prefix: str
    count: int
    digest: bytes


@dataclass(frozen=True)
class Summary(Message):
    """Version 2: a digest of the inventory, prefix by prefix (see fieldkit.gossip.reconcile)."""

    code: ClassVar[int] = 11
    entries: tuple[SummaryEntry, ...]

    def to_wire(self) -> list[Any]:
        return [self.code, [[e.prefix, e.count, e.digest] for e in self.entries]]


@dataclass(frozen=True)
class Offer(Message):
    """Version 2: every packet the sender shares under `prefix`, where the summaries differ."""

    code: ClassVar[int] = 12
    prefix: str
    items: tuple[InventoryItem, ...]

    def to_wire(self) -> list[Any]:
        return [self.code, self.prefix, [item.to_wire(2) for item in self.items]]


@dataclass(frozen=True)
class Decline(Message):
    """Version 3: the receiver will not ask for a packet it was offered, and says why:
    `reason` is one word of DECLINE_REASONS, which the offering side puts in its own words."""

    code: ClassVar[int] = 13
    packet_id: str
    reason: str


@dataclass(frozen=True)
class Ping(Message):
    """Version 4: the sender is still there. A side sends it when it has sent nothing for a
    while (SyncOptions.keepalive), so its peer can tell a link gone silent from a slow
    session; it is no progress, and carries nothing."""

    code: ClassVar[int] = 14


# Why a receiver declines an offered packet (`Decline.reason`); a newer peer may send
# another word, which the offering side reports as a refusal without a reason it knows.
DECLINE_REASONS = (
    "untrusted", "not-accepted", "blocked", "base-model", "busy", "too-large", "name-taken",
)  # fmt: skip


# An offered packet the peer declined (protocol version 3: Decline), said from this side.
DECLINED_BECAUSE = {
    "untrusted": "the peer takes packets only from devices it trusts, and does not trust this one",
    "not-accepted": "the person at the peer did not accept this device",
    "blocked": "the peer has blocked its author (or the author of the packet it copies)",
    "base-model": "the peer runs another base model",
    "busy": "the peer is receiving it from another device",
    "too-large": "it is larger than the peer's packet size limit",
    "name-taken": "the peer holds another author's packet of that name",
}


# --- decoding ---------------------------------------------------------------------------


def _text(limit: int = MAX_TEXT) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and len(v) <= limit


def _printable(limit: int = MAX_TEXT) -> Callable[[Any], bool]:
    """A text shown to a person (a device or packet name): no control characters."""
    return lambda v: isinstance(v, str) and len(v) <= limit and v.isprintable()


def _blob(size: int | None = None, limit: int = 1 << 20) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, bytes) and (len(v) == size if size else len(v) <= limit)


def _uint(limit: int = 1 << 40) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= limit


def _hex64(v: Any) -> bool:
    return isinstance(v, str) and bool(_HEX64.match(v))


_ITEM_FIELDS = (_hex64, _hex64, _uint(), _text(200), _text(200), _printable(200))
_ITEM_FIELDS_V2 = (*_ITEM_FIELDS, _uint())
_PREFIX = re.compile(r"^[0-9a-f]{0,16}$")


def _prefix(v: Any) -> bool:
    return isinstance(v, str) and bool(_PREFIX.match(v))


_SCHEMAS: dict[int, tuple[type[Message], tuple[Callable[[Any], bool], ...]]] = {
    Hello.code: (
        Hello,
        (_uint(1 << 16), _text(200), _printable(200), _blob(32), _blob(32), _uint()),
    ),
    Proof.code: (Proof, (_blob(64),)),
    Inventory.code: (Inventory, (lambda v: isinstance(v, list),)),
    Want.code: (Want, (_hex64, _blob(limit=1 << 16))),
    PacketStart.code: (PacketStart, (_hex64, lambda v: isinstance(v, dict), _blob(64))),
    Chunk.code: (Chunk, (_hex64, _uint(1 << 24), _uint(255), _blob())),
    PacketEnd.code: (PacketEnd, (_hex64,)),
    Cancel.code: (Cancel, (_hex64, _text(MAX_REASON))),
    Bye.code: (Bye, ()),
    Abort.code: (Abort, (_text(MAX_REASON),)),
    Summary.code: (Summary, (lambda v: isinstance(v, list),)),
    Offer.code: (Offer, (_prefix, lambda v: isinstance(v, list))),
    Decline.code: (Decline, (_hex64, _printable(64))),
    Ping.code: (Ping, ()),
}


SHOWN_CODE = 40  # characters of an unknown message type said in the error


def decode_message(raw: list[Any], wire_size: int, max_inventory: int) -> Message | RawChunk:
    """Return the message for a decoded frame; raise ProtocolError if it is malformed.

    CHUNK frames come back as `RawChunk` (still compressed); the core decodes the payload.
    """
    code = raw[0]
    schema = _SCHEMAS.get(code) if isinstance(code, int) and not isinstance(code, bool) else None
    if schema is None:
        shown = repr(code)  # the peer's own value: at most SHOWN_CODE characters of it
        shown = shown if len(shown) <= SHOWN_CODE else shown[: SHOWN_CODE - 3] + "..."
        raise ProtocolError(f"The peer sent an unknown message type {shown}.")
    cls, checks = schema
    values = raw[1:]
    name = cls.__name__
    if len(values) != len(checks):
        raise ProtocolError(f"The peer sent a {name} message with the wrong number of fields.")
    for position, (value, check) in enumerate(zip(values, checks, strict=True)):
        if not check(value):
            raise ProtocolError(f"The peer sent a {name} message with a bad field {position + 1}.")
    if cls is Chunk:
        return RawChunk(values[0], values[1], values[2], values[3], wire_size)
    if cls is Inventory:
        return Inventory(_items(values[0], max_inventory), wire_size=wire_size)
    if cls is Offer:
        items = _items(values[1], max_inventory, _ITEM_FIELDS_V2)
        if not all(item.packet_id.startswith(values[0]) for item in items):
            raise ProtocolError("The peer offered a packet outside the prefix it answered.")
        return Offer(values[0], items, wire_size=wire_size)
    if cls is Summary:
        return Summary(_entries(values[0]), wire_size=wire_size)
    return cls(*values, wire_size=wire_size)


MAX_SUMMARY = 256  # entries in one Summary: 16 children of at most 16 prefixes


def _entries(raw_entries: list[Any]) -> tuple[SummaryEntry, ...]:
    if len(raw_entries) > MAX_SUMMARY:
        raise ProtocolError(f"The peer sent a summary of {len(raw_entries)} entries.")
    checks = (_prefix, _uint(), _blob(8))
    return tuple(_rows(raw_entries, checks, SummaryEntry, "an inventory summary"))


def _items(
    raw_items: list[Any], max_inventory: int, checks: tuple[Callable[[Any], bool], ...] = ()
) -> tuple[InventoryItem, ...]:
    if len(raw_items) > max_inventory:
        raise ProtocolError(
            f"The peer offered {len(raw_items)} packets; the limit is {max_inventory}."
        )
    items = _rows(raw_items, checks or _ITEM_FIELDS, InventoryItem, "an inventory")
    if len({item.packet_id for item in items}) != len(items):
        raise ProtocolError("The peer sent an inventory that lists a packet twice.")
    return tuple(items)


def _rows(
    raw_rows: list[Any],
    checks: tuple[Callable[[Any], bool], ...],
    make: Callable[..., T],
    what: str,
) -> list[T]:
    """Return `make(*row)` for each row that passes `checks` field by field; raise
    ProtocolError, naming `what` the peer sent, for the first row that does not."""
    rows = []
    for raw in raw_rows:
        ok = isinstance(raw, list) and len(raw) == len(checks)
        if not ok or not all(check(v) for check, v in zip(checks, raw, strict=True)):
            raise ProtocolError(f"The peer sent {what} with a malformed entry.")
        rows.append(make(*raw))
    return rows


@dataclass(frozen=True)
class RawChunk:
    """A CHUNK frame before its payload is decompressed and checked."""

    packet_id: str
    index: int
    codec: int
    payload: bytes
    wire_size: int
