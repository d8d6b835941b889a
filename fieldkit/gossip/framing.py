"""Frames: a 4-byte big-endian length, then one msgpack message of at most `max_frame` bytes.

The length comes first so a hostile peer can never make us buffer more than one frame: a
header announcing more than the limit ends the session before its body arrives.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from fieldkit.errors import ProtocolError

HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME = 1024 * 1024 + 64 * 1024


def encode_frame(message: list[Any]) -> bytes:
    """Return the wire bytes of one message (a msgpack array)."""
    body = msgpack.packb(message, use_bin_type=True)
    return HEADER.pack(len(body)) + body


class FrameDecoder:
    """Incremental: `feed(bytes)` then `next_message()` until it returns None."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._pos = 0

    @property
    def buffered(self) -> int:
        """How many received bytes are not yet part of a returned message."""
        return len(self._buffer) - self._pos

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        if self._pos:
            del self._buffer[: self._pos]
            self._pos = 0
        self._buffer += data

    def next_message(self) -> tuple[list[Any], int] | None:
        """Return (message, frame size in bytes), or None until a whole frame is buffered.

        Raises ProtocolError for an oversized frame or a body that is not one msgpack array.
        """
        if self.buffered < HEADER.size:
            return None
        (length,) = HEADER.unpack_from(self._buffer, self._pos)
        if length > self.max_frame:
            head = bytes(self._buffer[self._pos : self._pos + HEADER.size])
            if head.isascii() and head.decode().isprintable():  # "HTTP", "SSH-": not fieldkit
                raise ProtocolError(
                    f"The peer is not a fieldkit device: it speaks another protocol "
                    f"(it began with {head.decode()!r})."
                )
            raise ProtocolError(
                f"The peer sent a {length}-byte frame; the limit is {self.max_frame} bytes."
            )
        end = self._pos + HEADER.size + length
        if len(self._buffer) < end:
            return None
        start, self._pos = self._pos + HEADER.size, end
        with memoryview(self._buffer) as view:  # decoded in place: no copy of the body
            message = _unpack(view[start:end])
        return message, HEADER.size + length


def _unpack(body: memoryview) -> list[Any]:
    """Decode one body as exactly one msgpack message (limits against hostile nesting)."""
    try:
        message = msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_array_len=100_000,
            max_map_len=10_000,
            max_ext_len=0,
        )
    except msgpack.ExtraData:
        raise ProtocolError("The peer sent a frame with bytes after its message.") from None
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        # FormatError, StackError, truncation, bad UTF-8, unhashable map keys: the peer's fault.
        if "incomplete input" in str(exc):
            raise ProtocolError("The peer sent a frame that ends inside a message.") from None
        raise ProtocolError(f"The peer sent a frame that is not valid msgpack ({exc}).") from None
    finally:
        body.release()
    if not isinstance(message, list) or not message:
        raise ProtocolError("The peer sent a frame that is not a message.")
    return message
