"""Bluetooth LE link layer, sans-IO: frames, credits, advertisement payload, role rule.

A BLE connection carries the gossip byte stream as GATT values: the central writes
(without response) to the RX characteristic, the peripheral notifies the TX
characteristic. Each value is one frame, at most `value_size(mtu)` bytes:

    0x00 DATA    + stream bytes            costs the sender one credit
    0x01 CREDIT  + u16 count               the receiver freed `count` frames of buffer
    0x02 FIN                               the sender will send no more data
    0x03 HELLO   + u8 version + u16 window + u16 value size
                                           the receiver's buffer in frames, and the
                                           largest value its stack takes

Both sides send HELLO first; a sender holds no credits until the peer's HELLO arrives,
so a fast sender never overruns a slow receiver. Each side frames to the smaller of its
own value size and the peer's: ATT MTU is one number per connection, but some stacks
(bless, CoreBluetooth as peripheral) never tell the peripheral what it is. GATT over LE is reliable and ordered,
so frames need no sequence numbers. `BleLink` holds no sockets, clocks or tasks: the
transports (ble_bumble, ble_bleak, ble_bless) feed it values and send what it returns.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections import deque
from dataclasses import dataclass
from enum import Enum

from fieldkit.errors import ProtocolError

SERVICE_UUID = "6f1d0001-7c2b-4e8a-9d3f-5a1e0b6c4f21"
RX_UUID = "6f1d0002-7c2b-4e8a-9d3f-5a1e0b6c4f21"  # central -> peripheral, write without response
TX_UUID = "6f1d0003-7c2b-4e8a-9d3f-5a1e0b6c4f21"  # peripheral -> central, notify

PROTOCOL_VERSION = 1
DEFAULT_MTU = 23
MAX_VALUE_SIZE = 512  # GATT caps attribute values at 512 bytes
DEFAULT_WINDOW = 64  # frames a receiver buffers before the application reads them

DATA, CREDIT, FIN, HELLO = 0, 1, 2, 3
_HELLO = struct.Struct("<BBHH")
_CREDIT = struct.Struct("<BH")

# Advertising: flags + complete list of 128-bit service UUIDs + manufacturer data.
COMPANY_ID = 0xFFFF  # the Bluetooth SIG's id for tests and unassigned use
SHORT_ID_CHARS = 8  # of the base32 device id: 40 bits, 5 bytes on the air
SHORT_ID_BYTES = 5
_AD_FLAGS, _AD_UUIDS128, _AD_NAME, _AD_SHORT_NAME, _AD_MANUFACTURER = 0x01, 0x07, 0x09, 0x08, 0xFF
_ADV_FLAGS = 0x06  # LE general discoverable, BR/EDR not supported


def value_size(mtu: int) -> int:
    """Return the largest GATT value for an ATT MTU: min(mtu - 3, 512)."""
    if mtu < DEFAULT_MTU:
        raise ValueError(f"ATT MTU must be at least {DEFAULT_MTU}, got {mtu}")
    return min(mtu - 3, MAX_VALUE_SIZE)


class Role(Enum):
    CENTRAL = "central"
    PERIPHERAL = "peripheral"


def choose_role(my_id: str, peer_id: str) -> Role:
    """Return this device's role when two devices both scan and advertise.

    The device whose short id sorts lower connects (central); the other waits
    (peripheral), so two devices that see each other never both connect.

    Raises ValueError if the ids are equal (a device does not sync with itself).
    """
    mine, theirs = short_id(my_id), short_id(peer_id)
    if mine == theirs:
        raise ValueError("a device cannot pick a role against its own id")
    return Role.CENTRAL if mine < theirs else Role.PERIPHERAL


def short_id(device_id: str) -> str:
    """Return the short id advertised for a device id: its first 8 base32 characters."""
    text = device_id.strip().lower()
    if len(text) < SHORT_ID_CHARS:
        raise ValueError(f"device id {device_id!r} is shorter than {SHORT_ID_CHARS} characters")
    try:
        base64.b32decode(text[:SHORT_ID_CHARS].upper())
    except binascii.Error as exc:
        raise ValueError(f"device id {device_id!r} is not base32") from exc
    return text[:SHORT_ID_CHARS]


def _id_bytes(short: str) -> bytes:
    return base64.b32decode(short.upper())


def _id_text(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").lower()


@dataclass(frozen=True)
class Advertisement:
    """What a fieldkit peripheral advertises: enough to list it without connecting."""

    short_id: str
    version: int = PROTOCOL_VERSION
    connects: bool = False  # also scans and connects (the role rule applies), not listen-only

    def encode(self) -> bytes:
        """Return the advertising data (31 bytes at most): flags, service UUID, id, version."""
        uuid_le = bytes.fromhex(SERVICE_UUID.replace("-", ""))[::-1]
        manufacturer = struct.pack("<HB", COMPANY_ID, self._version_byte()) + _id_bytes(
            self.short_id
        )
        return (
            _ad(_AD_FLAGS, bytes([_ADV_FLAGS]))
            + _ad(_AD_UUIDS128, uuid_le)
            + _ad(_AD_MANUFACTURER, manufacturer)
        )

    @classmethod
    def decode(cls, data: bytes) -> Advertisement | None:
        """Return the advertisement in raw AD structures, or None if it is not fieldkit's."""
        if not cls.has_service(data):
            return None
        return cls.from_manufacturer_data(parse_ad(data).get(_AD_MANUFACTURER, b""))

    @staticmethod
    def has_service(data: bytes) -> bool:
        """True if raw advertising data lists the fieldkit service UUID."""
        uuids = parse_ad(data).get(_AD_UUIDS128, b"")
        service = bytes.fromhex(SERVICE_UUID.replace("-", ""))[::-1]
        return service in {uuids[i : i + 16] for i in range(0, len(uuids), 16)}

    @classmethod
    def from_manufacturer_data(cls, data: bytes) -> Advertisement | None:
        """Return the advertisement from manufacturer data (company id first), or None."""
        if len(data) != 3 + SHORT_ID_BYTES:
            return None
        company, version = struct.unpack_from("<HB", data)
        if company != COMPANY_ID:
            return None
        return cls(
            short_id=_id_text(data[3:]),
            version=version & ~_CONNECTS_BIT,
            connects=bool(version & _CONNECTS_BIT),
        )

    def manufacturer_payload(self) -> bytes:
        """Return the manufacturer data without the company id (bleak and bless key by id)."""
        return bytes([self._version_byte()]) + _id_bytes(self.short_id)

    def _version_byte(self) -> int:
        return self.version | (_CONNECTS_BIT if self.connects else 0)


_CONNECTS_BIT = 0x80  # in the version byte
NAME_PREFIX = "fk-"


def advertised_name(short: str) -> str:
    """Return the local name that carries a short id where no manufacturer data fits."""
    return f"{NAME_PREFIX}{short}"


def id_from_name(name: str | None) -> str | None:
    """Return the short id in a name made by `advertised_name`, or None."""
    if not name or not name.startswith(NAME_PREFIX):
        return None
    try:
        return short_id(name[len(NAME_PREFIX) :])
    except ValueError:
        return None


def scan_response(name: str) -> bytes:
    """Return scan-response data carrying the device name, cut to fit 31 bytes."""
    raw = name.encode("utf-8")
    if len(raw) <= 29:
        return _ad(_AD_NAME, raw)
    return _ad(_AD_SHORT_NAME, raw[:29].decode("utf-8", "ignore").encode("utf-8"))


def parse_ad(data: bytes) -> dict[int, bytes]:
    """Return {AD type: value} from raw advertising data; malformed tails are ignored."""
    fields: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        length = data[i]
        if length == 0 or i + 1 + length > len(data):
            break
        ad_type = data[i + 1]
        fields[ad_type] = fields.get(ad_type, b"") + data[i + 2 : i + 1 + length]
        i += 1 + length
    return fields


def _ad(ad_type: int, value: bytes) -> bytes:
    return bytes([len(value) + 1, ad_type]) + value


@dataclass(frozen=True)
class Sighting:
    """A fieldkit peer seen in a scan: its name, short id, RSSI and radio address."""

    name: str
    short_id: str
    rssi: int
    address: str
    version: int
    connects: bool = False


class BleLink:
    """One BLE connection's byte stream, both directions, as a pure object.

    Feed every received GATT value to `receive_value`; send every value that
    `values_to_send` returns, in order. `send` queues stream bytes, `read` takes
    received ones (and frees the credits they held), `finish` queues FIN.
    """

    def __init__(self, mtu: int = DEFAULT_MTU, window: int = DEFAULT_WINDOW) -> None:
        if not 2 <= window <= 0xFFFF:
            raise ValueError("window must be between 2 and 65535 frames")
        self.value_size = value_size(mtu)
        self.window = window
        self.peer_version: int | None = None
        self.peer_value_size: int | None = None
        self.credits = 0  # frames we may still send
        self.peer_finished = False  # FIN received
        self._out = bytearray()  # stream bytes not yet framed
        self._control: deque[bytes] = deque()
        self._hello_sent = False
        self._finish_queued = False
        self._fin_sent = False
        self._inbox = bytearray()
        self._held = 0  # frames received and not yet read by the application
        self._freed = 0  # frames read but not yet credited back to the peer

    # -- sending ------------------------------------------------------------
    def set_mtu(self, mtu: int) -> None:
        """Use a newly negotiated ATT MTU for the frames not yet built."""
        self.value_size = value_size(mtu)

    def send(self, data: bytes) -> None:
        """Queue stream bytes. Raises ValueError after `finish`."""
        if self._finish_queued:
            raise ValueError("cannot send after finish()")
        self._out += data

    def finish(self) -> None:
        """Queue FIN after the bytes already queued (idempotent)."""
        self._finish_queued = True

    @property
    def pending(self) -> int:
        """Stream bytes queued and not yet framed (waiting for credits)."""
        return len(self._out)

    @property
    def drained(self) -> bool:
        """True when every queued byte, and FIN if asked, has been framed."""
        return not self._out and not self._control and (self._fin_sent or not self._finish_queued)

    @property
    def frame_size(self) -> int:
        """The size of the data frames built now: our value size, capped by the peer's."""
        return min(self.value_size, self.peer_value_size or self.value_size)

    def values_to_send(self) -> list[bytes]:
        """Return the frames that may go out now (control first, then data within credits)."""
        frames = []
        if not self._hello_sent:  # built late, so it carries the MTU as polled just now
            self._hello_sent = True
            frames.append(_HELLO.pack(HELLO, PROTOCOL_VERSION, self.window, self.value_size))
        frames += self._control
        self._control.clear()
        room = self.frame_size - 1
        while self._out and self.credits > 0:
            chunk = bytes(self._out[:room])
            del self._out[:room]
            self.credits -= 1
            frames.append(bytes([DATA]) + chunk)
        if self._finish_queued and not self._out and not self._fin_sent:
            self._fin_sent = True
            frames.append(bytes([FIN]))
        return frames

    # -- receiving ----------------------------------------------------------
    def receive_value(self, value: bytes) -> None:
        """Take one GATT value from the peer. Raises ProtocolError if the peer misbehaves."""
        if not value:
            raise ProtocolError("The Bluetooth peer sent an empty frame.")
        kind = value[0]
        if kind == HELLO:
            if len(value) != _HELLO.size:
                raise ProtocolError("The Bluetooth peer sent a malformed greeting.")
            _, version, window, peer_value_size = _HELLO.unpack(value)
            if version != PROTOCOL_VERSION:
                raise ProtocolError(
                    f"The Bluetooth peer speaks link version {version}, "
                    f"this device speaks {PROTOCOL_VERSION}."
                )
            if self.peer_version is not None:
                raise ProtocolError("The Bluetooth peer greeted twice on one connection.")
            if not 2 <= peer_value_size <= MAX_VALUE_SIZE:
                raise ProtocolError("The Bluetooth peer announced an impossible value size.")
            self.peer_version = version
            self.peer_value_size = peer_value_size
            self.credits += window
        elif self.peer_version is None:
            raise ProtocolError("The Bluetooth peer sent data before its greeting.")
        elif kind == DATA:
            if self.peer_finished:
                raise ProtocolError("The Bluetooth peer sent data after closing its stream.")
            if self._held >= self.window:
                raise ProtocolError("The Bluetooth peer sent more than its credits allow.")
            self._held += 1
            self._inbox += value[1:]
        elif kind == CREDIT:
            if len(value) != _CREDIT.size:
                raise ProtocolError("The Bluetooth peer sent a malformed credit frame.")
            self.credits += _CREDIT.unpack(value)[1]
            if self.credits > 0xFFFF:
                raise ProtocolError("The Bluetooth peer granted more credits than possible.")
        elif kind == FIN:
            self.peer_finished = True
        else:
            raise ProtocolError(f"The Bluetooth peer sent an unknown frame type {kind}.")

    def read(self) -> bytes:
        """Return and remove every received stream byte; queue credits for the freed frames."""
        data = bytes(self._inbox)
        self._inbox.clear()
        self._freed += self._held
        self._held = 0
        # Credit in batches: one CREDIT frame per quarter window keeps overhead small, and
        # a stalled sender (zero credits) always has a full window freed, so it never waits.
        if self._freed and self._freed >= max(1, self.window // 4):
            self._control.append(_CREDIT.pack(CREDIT, self._freed))
            self._freed = 0
        return data

    @property
    def readable(self) -> bool:
        """True when `read` would return bytes."""
        return bool(self._inbox)
