"""Chunk payload codec: stored raw, zstd, or zstd over byte-shuffled fp16.

Packet weights are fp16 safetensors. Splitting each 16-bit value into a plane of low bytes and
a plane of high bytes puts the sign and exponent bytes together; compressing the two planes
as two zstd frames (so each gets its own entropy tables) roughly doubles what zstd saves on
LoRA weights (see docs/BENCHMARKS.md "## Gossip"). A payload that does not shrink goes raw.

Compressing only pays when the link, not the CPU, is the bottleneck: `AdaptiveCompression`
(fed the measured encode and send times by the session) sends chunks raw while the link keeps
up with uncompressed bytes (loopback, a fast LAN), and compresses on slow links (BLE).

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
    half = even // 2
    src = np.frombuffer(data, dtype=np.uint8)
    out = np.empty(len(data), dtype=np.uint8)
    out[0:even:2] = src[:half]  # strided stores: ~5x faster than a transposed copy
    out[1:even:2] = src[half:even]
    out[even:] = src[even:]
    return out.tobytes()


class AdaptiveCompression:
    """Decides chunk by chunk whether compressing pays on this link.

    Compressing a chunk pays when the link time it saves exceeds the CPU it costs (the
    sender's encode time, doubled to cover the receiver's decode). The session reports each
    chunk's sizes and its measured encode and send times (`observe`); the estimates are
    moving averages. While compression does not pay, every `probe_every`-th chunk is still
    compressed to keep the estimates current (the link may slow down later).
    """

    def __init__(self, probe_every: int = 16, weight: float = 0.25) -> None:
        self.probe_every = probe_every
        self.weight = weight
        self.saved: float | None = None  # fraction of the bytes compression saves
        self.encode_s_per_byte: float | None = None
        self.link_s_per_byte: float | None = None
        self._since_probe = 0

    def pays(self) -> bool:
        """True if compressing the next chunk is expected to save time."""
        if self.saved is None or self.encode_s_per_byte is None or self.link_s_per_byte is None:
            return True  # measure first
        return self.saved * self.link_s_per_byte > 2 * self.encode_s_per_byte

    def next_is_compressed(self) -> bool:
        """Return what `compress_next` will answer, without counting a chunk."""
        return self.pays() or self._since_probe + 1 >= self.probe_every

    def compress_next(self) -> bool:
        """Return whether to compress the next chunk (compression pays, or it is a probe)."""
        if self.pays():
            self._since_probe = 0
            return True
        self._since_probe += 1
        if self._since_probe >= self.probe_every:
            self._since_probe = 0
            return True
        return False

    def observe(
        self, size: int, wire: int, encode_s: float, send_s: float, compressed: bool
    ) -> None:
        """Record one sent chunk: `size` bytes became `wire` bytes; `compressed` if tried."""
        if size <= 0 or wire <= 0:
            return
        self.link_s_per_byte = self._mix(self.link_s_per_byte, send_s / wire)
        if compressed:
            self.saved = self._mix(self.saved, max(0.0, 1 - wire / size))
            self.encode_s_per_byte = self._mix(self.encode_s_per_byte, encode_s / size)

    def _mix(self, old: float | None, new: float) -> float:
        return new if old is None else old + self.weight * (new - old)


class ChunkEncoder:
    """Compresses outgoing chunks; holds a reusable zstd context."""

    def __init__(
        self,
        level: int = DEFAULT_LEVEL,
        shuffle: bool = True,
        adaptive: AdaptiveCompression | None = None,
    ) -> None:
        self._zstd = zstandard.ZstdCompressor(level=level, write_content_size=True)
        self.shuffle = shuffle
        self.enabled = level > 0
        self.adaptive = adaptive
        self.tried = False  # whether the last encode() tried compressing

    def next_is_compressed(self, data: bytes) -> bool:
        """Return whether `encode(data)`, called next, will try compressing (no side effect)."""
        return bool(self.enabled and data) and (
            self.adaptive is None or self.adaptive.next_is_compressed()
        )

    def encode(self, data: bytes) -> tuple[Codec, bytes]:
        """Return (codec, payload), the smallest of the codecs tried (RAW if nothing helps)."""
        best: tuple[Codec, bytes] = (Codec.RAW, data)
        self.tried = bool(self.enabled and data)
        if self.tried and self.adaptive is not None:
            self.tried = self.adaptive.compress_next()
        if not self.tried:
            return best
        if self.shuffle:
            planes = memoryview(shuffle2(data))
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
