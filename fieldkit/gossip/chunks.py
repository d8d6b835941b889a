"""Chunk payload codec: stored raw, zstd, or zstd over byte-shuffled fp16.

Packet weights are fp16 safetensors. Splitting each 16-bit value into a plane of low bytes and
a plane of high bytes puts the slowly varying exponents together, which zstd compresses much
better than the interleaved form (see docs/BENCHMARKS.md "## Gossip"). The sender tries the
codecs and keeps the smallest; a payload that does not shrink goes raw.
"""

from __future__ import annotations

import io
from enum import IntEnum

import numpy as np
import zstandard

from fieldkit.errors import ProtocolError

DEFAULT_LEVEL = 3


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
            shuffled = self._zstd.compress(shuffle2(data))
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
        elif codec in (Codec.ZSTD, Codec.ZSTD_SHUFFLE2):
            try:
                with self._zstd.stream_reader(io.BytesIO(payload)) as reader:
                    data = reader.read(expected_size + 1)
            except zstandard.ZstdError as exc:
                raise ProtocolError(
                    f"The peer sent a chunk that is not valid zstd ({exc})."
                ) from None
            if codec == Codec.ZSTD_SHUFFLE2:
                data = unshuffle2(data)
        else:
            raise ProtocolError(f"The peer sent a chunk with unknown codec {codec}.")
        if len(data) != expected_size:
            raise ProtocolError(
                f"The peer sent a chunk of {len(data)} bytes where {expected_size} were expected."
            )
        return data
