"""Read safetensors bytes as numpy views, checking the header as strictly as `safetensors`.

Packet weights arrive as one bytes object; `safetensors.numpy.load` copies every tensor out
of it. Here each tensor is a read-only view into those bytes (no copy), which is all the
checks before a packet is stored need. The header must describe the buffer exactly: a JSON
object of tensors whose byte ranges are the right size for their dtype and shape and tile
the data section from its first byte to its last, without gaps or overlaps.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from fieldkit.errors import PacketError

MAX_HEADER = 100 * 1024 * 1024  # the limit `safetensors` itself applies
MAX_NDIM = 4
MAX_DIM = 1 << 20  # no LoRA factor of any model is wider
DTYPES = {
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "I8": np.dtype("i1"),  # int8 codes of a quantised packet
    "U8": np.dtype("u1"),  # two 4-bit codes a byte
}
BF16_BITS = np.dtype("<u2")  # numpy has no bfloat16: such tensors come back as raw bits


def tensor_views(
    data: bytes, label: str = "weights", *, bf16: bool = False
) -> dict[str, np.ndarray]:
    """Return every tensor of safetensors `data` as a read-only view; raise PacketError if
    the bytes are not a well-formed safetensors file of fp16/fp32/fp64/int8/uint8 tensors.

    `bf16=True` also accepts bfloat16 tensors, as uint16 views of their bits (BF16_BITS)."""
    dtypes = {**DTYPES, "BF16": BF16_BITS} if bf16 else DTYPES
    bad = f"The {label} are not a readable safetensors file"
    if len(data) < 8:
        raise PacketError(f"{bad} (too short).")
    size = int.from_bytes(data[:8], "little")
    if size > MAX_HEADER or 8 + size > len(data):
        raise PacketError(f"{bad} (its header length is out of bounds).")
    try:
        header = json.loads(data[8 : 8 + size])
    except (ValueError, RecursionError):  # bad UTF-8 or JSON, or hostile nesting
        raise PacketError(f"{bad} (its header is not JSON).") from None
    if not isinstance(header, dict):
        raise PacketError(f"{bad} (its header is not a JSON object).")
    metadata = header.pop("__metadata__", None)  # mlx writes null, as safetensors allows
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise PacketError(f"{bad} (its metadata is not a map of strings).")
    start, region = 8 + size, len(data) - 8 - size
    spans = [(name, *_span(name, info, bad, dtypes)) for name, info in header.items()]
    spans.sort(key=lambda span: (span[1], span[2]))
    end = 0
    views: dict[str, np.ndarray] = {}
    for name, begin, stop, dtype, shape in spans:
        if begin != end:
            raise PacketError(f"{bad} (tensor {name} does not follow the one before it).")
        if stop > region:
            raise PacketError(f"{bad} (tensor {name} runs past the end of the data).")
        end = stop
        count = stop - begin
        array = np.frombuffer(data, dtype, count // dtype.itemsize, start + begin)
        views[name] = array.reshape(shape)
    if end != region:
        raise PacketError(f"{bad} (its tensors do not cover the data exactly).")
    return views


def _span(
    name: str, info: Any, bad: str, dtypes: dict[str, np.dtype]
) -> tuple[int, int, np.dtype, tuple[int, ...]]:
    """Check one header entry; return (begin, end, dtype, shape)."""
    if type(info) is not dict:
        raise PacketError(f"{bad} (tensor {name} has no description).")
    raw = info.get("dtype")
    dtype = dtypes.get(raw) if isinstance(raw, str) else None
    if dtype is None:
        raise PacketError(f"{bad} (tensor {name} has dtype {info.get('dtype')!r}).")
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if type(shape) is not list or not all(type(n) is int and n >= 0 for n in shape):
        raise PacketError(f"{bad} (tensor {name} has a malformed shape).")
    if len(shape) > MAX_NDIM or not all(n <= MAX_DIM for n in shape):
        # checked before any size is computed or any array made: [2**64, 0] is 0 bytes
        raise PacketError(
            f"{bad} (tensor {name} has the shape {shape[: MAX_NDIM + 1]}: each of at most "
            f"{MAX_NDIM} dimensions may be at most {MAX_DIM})."
        )
    if type(offsets) is not list or len(offsets) != 2:
        raise PacketError(f"{bad} (tensor {name} has malformed offsets).")
    begin, end = offsets
    if type(begin) is not int or type(end) is not int or begin < 0:
        raise PacketError(f"{bad} (tensor {name} has malformed offsets).")
    if end < begin or end - begin != math.prod(shape) * dtype.itemsize:
        raise PacketError(f"{bad} (tensor {name} has the wrong number of bytes).")
    return begin, end, dtype, tuple(shape)
