"""Chunk payload codec: stored raw, zstd, or zstd over byte-shuffled fp16.

Packet weights are fp16 safetensors. Splitting each 16-bit value into a plane of low bytes and
a plane of high bytes puts the sign and exponent bytes together; compressing the two planes
as two zstd frames (so each gets its own entropy tables) roughly doubles what zstd saves on
LoRA weights (see docs/BENCHMARKS.md "## Gossip"). A payload that does not shrink goes raw.

ZSTD_SHUFFLE2 payload: u32 big-endian length of frame 1, frame 1 (low bytes), frame 2 (high
bytes, then the odd trailing byte if any).
"""

from __future__ import annotations

import io
import struct
from enum import IntEnum

import numpy as np
import zstandard

from fieldkit.errors import ProtocolError

DEFAULT_LEVEL = 3
_LEN = struct.Struct(">I")


class Codec(IntEnum):
    """How a chunk's payload is stored on the wire (the `flags` field of a CHUNK message)."""

    RAW = 0
    ZSTD = 1
    ZSTD_SHUFFLE2 = 2


def shuffle2(data: bytes) -> bytes:
    """Return the low bytes of every 16-bit word, then the high bytes, then any odd tail."""
    even = len(data) - len(data) % 2
    planes = np.frombuffer(data, dtype=np.uint8, count=even).reshape(-1, 2).T.tobytes()
    return planes + data[even:]


def unshuffle2(data: bytes) -> bytes:
    """Invert shuffle2."""
    even = len(data) - len(data) % 2
    words = np.frombuffer(data, dtype=np.uint8, count=even).reshape(2, -1).T.tobytes()
    return words + data[even:]


class ChunkEncoder:
    """Compresses outgoing chunks; holds a reusable zstd context."""

    def __init__(self, level: int = DEFAULT_LEVEL, shuffle: bool = True) -> None:
        self._zstd = zstandard.ZstdCompressor(level=level, write_content_size=True)
        self.shuffle = shuffle
        self.enabled = level > 0

    def encode(self, data: bytes) -> tuple[Codec, bytes]:
        """Return (codec, payload), the smallest of the codecs tried (RAW if nothing helps)."""
        best: tuple[Codec, bytes] = (Codec.RAW, data)
        if not self.enabled or not data:
            return best
        if self.shuffle:
            planes = shuffle2(data)
            half = len(data) // 2
            low = self._zstd.compress(planes[:half])
            shuffled = _LEN.pack(len(low)) + low + self._zstd.compress(planes[half:])
            if len(shuffled) < len(best[1]):
                best = (Codec.ZSTD_SHUFFLE2, shuffled)
        else:
            plain = self._zstd.compress(data)
            if len(plain) < len(best[1]):
                best = (Codec.ZSTD, plain)
        return best


class ChunkDecoder:
    """Decompresses incoming chunks, never producing more than the expected length."""

    def __init__(self) -> None:
        self._zstd = zstandard.ZstdDecompressor()

    def decode(self, codec: int, payload: bytes, expected_size: int) -> bytes:
        """Return the chunk bytes; raise ProtocolError for an unknown codec, bad zstd data,
        or output of the wrong size (a zstd bomb stops at `expected_size + 1` bytes)."""
        if codec == Codec.RAW:
            data = payload
        elif codec == Codec.ZSTD:
            data = self._inflate(payload, expected_size)
        elif codec == Codec.ZSTD_SHUFFLE2:
            half = expected_size // 2
            if len(payload) < _LEN.size:
                raise ProtocolError("The peer sent a shuffled chunk without its header.")
            (first,) = _LEN.unpack_from(payload)
            if first > len(payload) - _LEN.size:
                raise ProtocolError("The peer sent a shuffled chunk with a bad length.")
            low = self._inflate(payload[_LEN.size : _LEN.size + first], half)
            high = self._inflate(payload[_LEN.size + first :], expected_size - half)
            if len(low) != half or len(high) != expected_size - half:
                raise ProtocolError("The peer sent a shuffled chunk of the wrong size.")
            data = unshuffle2(low + high)
        else:
            raise ProtocolError(f"The peer sent a chunk with unknown codec {codec}.")
        if len(data) != expected_size:
            raise ProtocolError(
                f"The peer sent a chunk of {len(data)} bytes where {expected_size} were expected."
            )
        return data

    def _inflate(self, frame: bytes, limit: int) -> bytes:
        """Decompress one zstd frame, reading at most `limit + 1` bytes (bomb guard)."""
        try:
            with self._zstd.stream_reader(io.BytesIO(frame)) as reader:
                return reader.read(limit + 1)
        except zstandard.ZstdError as exc:
            raise ProtocolError(f"The peer sent a chunk that is not valid zstd ({exc}).") from None
