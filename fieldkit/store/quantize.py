"""Smaller packets: int8 and 4-bit LoRA tensors with per-group scales, and rank trimming.

No mlx here, numpy only: the library and the gossip layer check a quantised packet without
a model, and the engine turns it back into floats once, on first use.

Quantised layout (packet format 3, docs/PACKET.md "Quantised and trimmed weights"). Each
LoRA tensor is stored rank-major: a row per rank component, which is a column of `lora_a`
(shape (in, r), stored as its transpose (r, in)) or a row of `lora_b` (shape (r, out)). Each
row is cut into groups of GROUP_SIZE consecutive values (the last group may be shorter), and
each group has one float16 scale, as GGUF's Q8_0/Q4_0 blocks and mlx's groups have:

- `int8`: codes are int8, value = code * scale, shape (r, width);
- `int4`: codes are 4-bit two's complement (-8..7), value = code * scale, two to a byte, the
  even position in the low nibble, shape (r, width / 2) of uint8 (widths must be even);
- `<name>.scales`: float16, shape (r, ceil(width / GROUP_SIZE)), finite and not negative.

Trimming: the delta of each module, A @ B, is factored by SVD and keeps the smallest rank
whose singular values hold a stated share of its energy (sum of squares); the kept factors
are balanced, A = U_k sqrt(S_k), B = sqrt(S_k) V_k^T, so both quantise alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from fieldkit.errors import PacketError
from fieldkit.store.adapter import Adapter

GROUP_SIZE = 64
QUANT_BITS = {"int8": 8, "int4": 4}
SCALES = ".scales"
# int4 scales: each group tries these divisors of its largest magnitude and keeps the one
# with the least squared error (cheap; about 10% less error than absmax / 7 alone)
_INT4_DIVISORS = (7.0, 7.5, 8.0, 8.5, 9.0)


def dtype_for_bits(bits: int) -> str:
    """Return the packet dtype for a bit width (8 -> "int8", 4 -> "int4"); raise PacketError."""
    for dtype, n in QUANT_BITS.items():
        if n == bits:
            return dtype
    raise PacketError(f"Packets can be quantised to 8 or 4 bits, not {bits}.")


def quantize_rows(rows: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantise a (r, width) float matrix row by row in groups; return (codes, scales).

    Raises PacketError for a bit width other than 8 or 4, or an odd width at 4 bits.
    """
    dtype_for_bits(bits)
    r, width = rows.shape
    if bits == 4 and width % 2:
        raise PacketError(f"4-bit packets need even tensor widths, not {width}.")
    groups = -(-width // GROUP_SIZE)
    padded = np.zeros((r, groups * GROUP_SIZE), dtype=np.float32)
    padded[:, :width] = rows
    blocks = padded.reshape(r, groups, GROUP_SIZE)
    peak = np.abs(blocks).max(axis=-1, keepdims=True)
    if bits == 8:
        scales = _half(peak / 127.0)
        codes = _codes(blocks, scales, -127, 127)
    else:
        candidates = np.stack([_half(peak / d) for d in _INT4_DIVISORS])
        trials = np.stack([_codes(blocks, s, -8, 7) for s in candidates])
        error = ((trials * candidates - blocks) ** 2).sum(axis=-1, keepdims=True)
        best = error.argmin(axis=0)[None]
        scales = np.take_along_axis(candidates, best, axis=0)[0]
        codes = np.take_along_axis(trials, best, axis=0)[0]
    if not np.isfinite(scales).all():
        raise PacketError("A tensor holds values too large for float16 scales, or not finite.")
    codes = codes.reshape(r, -1)[:, :width].astype(np.int8)
    if bits == 4:
        nibbles = codes.astype(np.uint8) & 0x0F
        codes = nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)
    return np.ascontiguousarray(codes), scales.reshape(r, groups).astype(np.float16)


def dequantize_rows(codes: np.ndarray, scales: np.ndarray, bits: int) -> np.ndarray:
    """Return the float32 (r, width) matrix that `quantize_rows` codes and scales stand for."""
    if bits == 4:
        low = (codes & 0x0F).astype(np.int8)
        high = (codes >> 4).astype(np.int8)
        values = np.empty((codes.shape[0], codes.shape[1] * 2), dtype=np.int8)
        values[:, 0::2] = np.where(low > 7, low - 16, low)
        values[:, 1::2] = np.where(high > 7, high - 16, high)
    else:
        values = codes
    width = values.shape[1]
    per_value = np.repeat(scales.astype(np.float32), GROUP_SIZE, axis=1)[:, :width]
    return values.astype(np.float32) * per_value


class QuantizedTensors(Mapping[str, np.ndarray]):
    """The tensors of a quantised adapter: read by LoRA name as float32 (dequantised on
    each access, nothing kept), written back as the stored codes and scales, unchanged."""

    def __init__(self, dtype: str, stored: Mapping[str, np.ndarray]) -> None:
        self.dtype = dtype
        self.bits = QUANT_BITS[dtype]
        self.stored = dict(stored)
        self._names = sorted(n for n in self.stored if not n.endswith(SCALES))

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.stored or name.endswith(SCALES):
            raise KeyError(name)
        rows = dequantize_rows(self.stored[name], self.stored[name + SCALES], self.bits)
        return np.ascontiguousarray(rows.T) if name.endswith(".lora_a") else rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def shape(self, name: str) -> tuple[int, int]:
        """Return the float tensor's shape without dequantising it."""
        rank, cols = self.stored[name].shape
        width = cols * 2 if self.bits == 4 else cols
        return (width, rank) if name.endswith(".lora_a") else (rank, width)

    def placeholders(self) -> dict[str, np.ndarray]:
        """Return a zero-memory float32 stand-in of each tensor's shape (for shape checks)."""
        zero = np.zeros((), dtype=np.float32)
        return {name: np.broadcast_to(zero, self.shape(name)) for name in self._names}

    @property
    def nbytes(self) -> int:
        return sum(array.nbytes for array in self.stored.values())

    def to_bytes(self) -> bytes:
        """Return the safetensors bytes of the stored codes and scales (sorted by name)."""
        from safetensors.numpy import save

        return save({k: np.ascontiguousarray(self.stored[k]) for k in sorted(self.stored)})


def quantize_tensors(tensors: Mapping[str, np.ndarray], dtype: str) -> QuantizedTensors:
    """Return the LoRA tensors quantised to `dtype` ("int8" or "int4"); raise PacketError."""
    if dtype not in QUANT_BITS:
        raise PacketError(f"The dtype {dtype!r} is not a quantised packet dtype.")
    stored: dict[str, np.ndarray] = {}
    for name, array in tensors.items():
        rows = np.asarray(array, dtype=np.float32)
        if name.endswith(".lora_a"):
            rows = rows.T
        stored[name], stored[name + SCALES] = quantize_rows(rows, QUANT_BITS[dtype])
    return QuantizedTensors(dtype, stored)


def read_quantized(views: Mapping[str, np.ndarray], dtype: str) -> QuantizedTensors:
    """Check the stored codes and scales of a `dtype` packet; return them as a mapping.

    Raises PacketError (one sentence) for a tensor without scales, scales without a tensor,
    codes of another bit width, scales of the wrong dtype or shape, or a scale that is
    negative, NaN or infinite.
    """
    bits = QUANT_BITS[dtype]
    code_dtype = np.dtype(np.int8 if bits == 8 else np.uint8)
    for name, array in views.items():
        if name.endswith(SCALES):
            owner = name.removesuffix(SCALES)
            if owner.endswith(SCALES) or owner not in views:
                raise PacketError(f"The scales {name} belong to no tensor.")
            continue
        scales = views.get(name + SCALES)
        if scales is None:
            raise PacketError(f"The {dtype} tensor {name} has no scales.")
        if array.dtype != code_dtype or array.ndim != 2:
            raise PacketError(
                f"The tensor {name} is not {bits}-bit codes (it is {array.dtype}, "
                f"{array.ndim} dimensions)."
            )
        width = array.shape[1] * (2 if bits == 4 else 1)
        expected = (array.shape[0], math.ceil(width / GROUP_SIZE))
        if scales.dtype != np.float16 or scales.shape != expected:
            raise PacketError(
                f"The scales of {name} must be float16 of shape {expected}, "
                f"not {scales.dtype} {scales.shape}."
            )
        if not bool(np.isfinite(scales).all()) or bool((scales < 0).any()):
            raise PacketError(f"The scales of {name} hold a negative, NaN or infinite value.")
    return QuantizedTensors(dtype, views)


def is_quantized(adapter: Adapter) -> bool:
    """Return True if the adapter's tensors are stored quantised."""
    return isinstance(adapter.tensors, QuantizedTensors)


def is_trimmed(adapter: Adapter) -> bool:
    """Return True if some module carries a rank below the adapter's declared rank."""
    tensors = adapter.tensors
    if isinstance(tensors, QuantizedTensors):
        return any(tensors.stored[n].shape[0] != adapter.config.rank for n in tensors)
    return any(
        a.shape[1 if n.endswith(".lora_a") else 0] != adapter.config.rank
        for n, a in tensors.items()
    )


def kept_rank(singular: np.ndarray, energy: float) -> int:
    """Return the smallest rank whose singular values hold `energy` of the total (>= 1)."""
    power = singular.astype(np.float64) ** 2
    total = power.sum()
    if total <= 0:
        return 1
    share = np.cumsum(power) / total
    return int(min(np.searchsorted(share, energy * (1 - 1e-12)) + 1, len(singular)))


def trim_module(a: np.ndarray, b: np.ndarray, energy: float) -> tuple[np.ndarray, np.ndarray]:
    """Return balanced factors (in, k) and (k, out) of the best rank-k approximation of
    a @ b, with k the smallest rank holding `energy` of its squared singular values."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    qa, ra = np.linalg.qr(a64)
    qb, rb = np.linalg.qr(b64.T)
    u, s, vt = np.linalg.svd(ra @ rb.T)
    k = kept_rank(s, energy)
    root = np.sqrt(s[:k])
    new_a = (qa @ u[:, :k]) * root
    new_b = root[:, None] * (vt[:k] @ qb.T)
    return new_a.astype(np.float32), new_b.astype(np.float32)


def trim_tensors(tensors: Mapping[str, np.ndarray], energy: float) -> dict[str, np.ndarray]:
    """Return every module trimmed to the rank holding `energy` of its delta's energy.

    Raises PacketError unless 0 < energy <= 1.
    """
    from threadpoolctl import threadpool_limits

    if not 0.0 < energy <= 1.0:
        raise PacketError(f"The kept energy must be above 0 and at most 1, not {energy}.")
    out: dict[str, np.ndarray] = {}
    # Hundreds of tiny QRs and SVDs: BLAS threads only add waiting (35x slower on a busy
    # 2-core machine: 11.6 s instead of 0.33 s for a demo packet).
    with threadpool_limits(1, user_api="blas"):
        for name in tensors:
            if name.endswith(".lora_a"):
                stem = name.removesuffix(".lora_a")
                pair = trim_module(tensors[name], tensors[f"{stem}.lora_b"], energy)
                out[name], out[f"{stem}.lora_b"] = pair
    return out


@dataclass(frozen=True)
class Compaction:
    """How to make a packet smaller: a bit width (None: keep floats) and a kept energy
    share for rank trimming (None: keep every rank)."""

    bits: int | None = None
    energy: float | None = None

    def __post_init__(self) -> None:
        if self.bits is not None:
            dtype_for_bits(self.bits)
        if self.energy is not None and not 0.0 < self.energy <= 1.0:
            raise PacketError(f"The kept energy must be above 0 and at most 1, not {self.energy}.")

    def apply(self, adapter: Adapter) -> Adapter:
        """Return the adapter trimmed and then quantised as this compaction says."""
        tensors: Mapping[str, np.ndarray] = adapter.tensors
        if self.energy is not None:
            tensors = trim_tensors(tensors, self.energy)
        if self.bits is not None:
            tensors = quantize_tensors(tensors, dtype_for_bits(self.bits))
        return Adapter(config=adapter.config, tensors=tensors)  # type: ignore[arg-type]


def ranks(adapter: Adapter) -> list[int]:
    """Return each module's rank, in name order."""
    tensors = adapter.tensors
    if isinstance(tensors, QuantizedTensors):
        return [tensors.stored[n].shape[0] for n in tensors if n.endswith(".lora_a")]
    return [a.shape[1] for n, a in sorted(tensors.items()) if n.endswith(".lora_a")]


def _half(scales: np.ndarray) -> np.ndarray:
    """Round scales to float16 (what is stored) and back, so codes use the stored value."""
    with np.errstate(over="ignore"):  # an overflow becomes inf, refused by the caller
        return scales.astype(np.float16).astype(np.float32)


def _codes(blocks: np.ndarray, scales: np.ndarray, low: int, high: int) -> np.ndarray:
    safe = np.where(scales > 0, scales, 1.0)
    return np.where(scales > 0, np.clip(np.rint(blocks / safe), low, high), 0.0)
