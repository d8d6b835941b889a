"""Check a GGUF file's structure in Python before mlx reads it.

mlx's GGUF loader (gguflib) trusts every length, count and offset in the file: on a
truncated or corrupt file it reads past the end of its memory map and the process dies
(SIGSEGV), leaving half-built install folders behind. `check_gguf` walks the whole file
first, every read checked against the file's size: the header, every metadata key and value
(arrays one level deep, as mlx reads them), every tensor info, the alignment, and that
each tensor's data lies inside the file. Anything mlx could not read safely is refused
with one sentence (ModelError). `check_llama_tensors` then holds those tensors against the
llama model the metadata describes, since mlx-lm fails deep inside model construction on
one that does not fit. No mlx here.
"""

from __future__ import annotations

import math
import mmap
import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fieldkit.errors import ModelError
from fieldkit.store.models import projection_widths

MAGIC = b"GGUF"
VERSIONS = (2, 3)
HEADER_BYTES = 24  # magic, version, tensor count, metadata key count
MAX_COUNT = 1 << 16  # tensors or metadata keys (a large llama has about a thousand tensors)
MAX_NAME = 1 << 10  # bytes of a metadata key or a tensor name
MAX_STRING = 1 << 24  # bytes of a string value (a chat template is a few KiB)
MAX_ARRAY = 1 << 24  # items of an array value (a vocabulary has a few 100,000 tokens)
MAX_NDIM = 4
MAX_DIM = (1 << 31) - 1  # mlx keeps shapes as int32
MAX_ALIGNMENT = 1 << 16
DEFAULT_ALIGNMENT = 32
# The ggml tensor types mlx reads: id -> (name, weights a block, bytes a block).
TENSOR_TYPES = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    8: ("Q8_0", 32, 34),
}
# Metadata value types of a fixed size: id -> bytes. 8 is a string and 9 an array; 12
# (float64) is left out because mlx reads it as 4 bytes and loses its place in the file.
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8}
_UINT32, _STRING, _ARRAY = 4, 8, 9
# llama.cpp's tensor names -> Hugging Face llama's (what mlx-lm's llama loads).
GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
BLOCK = re.compile(r"^blk\.(0|[1-9][0-9]*)\.([a-z_]+)\.weight$")
# The metadata that sizes each tensor (named in the sentence when a tensor does not fit).
_WIDTH, _VOCAB = "llama.embedding_length", "llama.embedding_length, llama.vocab_size"
_HEADS = "llama.embedding_length, llama.attention.head_count, llama.rope.dimension_count"
_KV = "llama.embedding_length, llama.attention.head_count_kv, llama.rope.dimension_count"
_FFN = "llama.embedding_length, llama.feed_forward_length"
_SIZED_BY = {
    "attn_q": _HEADS,
    "attn_output": _HEADS,
    "attn_k": _KV,
    "attn_v": _KV,
    "ffn_gate": _FFN,
    "ffn_up": _FFN,
    "ffn_down": _FFN,
    "attn_norm": _WIDTH,
    "ffn_norm": _WIDTH,
}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a checked GGUF: its data is `nbytes` bytes at `offset` in the file."""

    name: str
    dims: tuple[int, ...]  # ggml order: the row length first
    kind: str
    offset: int
    nbytes: int


class _Reader:
    """Little-endian reads from a buffer, each checked against its end."""

    def __init__(self, data: mmap.mmap, label: str) -> None:
        self.data, self.size, self.pos, self.label = data, len(data), 0, label

    def fail(self, why: str) -> ModelError:
        return ModelError(f"{self.label} is not a readable GGUF file: {why}.")

    def skip(self, n: int, what: str) -> int:
        """Step over `n` bytes of `what`; return where they start."""
        if n > self.size - self.pos:
            raise self.fail(f"it ends inside {what}")
        start, self.pos = self.pos, self.pos + n
        return start

    def number(self, fmt: str, what: str) -> int:
        return int(struct.unpack_from(fmt, self.data, self.skip(struct.calcsize(fmt), what))[0])

    def string(self, limit: int, what: str) -> int:
        """Step over a length-prefixed string of at most `limit` bytes; return its length."""
        length = self.number("<Q", what)
        if length > limit:
            raise self.fail(f"{what} claims {length} bytes")
        self.skip(length, what)
        return length

    def text(self, what: str) -> str:
        """Read a length-prefixed name: printable UTF-8 (it may appear in a sentence)."""
        length = self.string(MAX_NAME, what)
        try:
            name = self.data[self.pos - length : self.pos].decode()
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8") from None
        if not name.isprintable():
            raise self.fail(f"{what} is not printable text")
        return name


def metadata_value(metadata: Mapping[str, Any], key: str) -> Any:
    """Return one field of the metadata mlx read from a GGUF, None when it is absent: a
    number as a Python number (mlx gives numbers as arrays), anything else as it is.
    Raises ModelError for a field that holds several numbers where one is meant."""
    value = metadata.get(key)
    if hasattr(value, "item"):
        if value.size != 1:
            raise ModelError(f"The GGUF's field {key} holds {value.size} values, not one.")
        value = value.item()
    return value


def check_gguf(path: Path) -> list[TensorInfo]:
    """Return the tensors of the GGUF file at `path` once its whole structure is checked;
    raise ModelError (one sentence) if mlx could not read it safely."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            if os.fstat(fh.fileno()).st_size < HEADER_BYTES:
                raise ModelError(f"{path.name} is not a readable GGUF file: it is too short.")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return _check(_Reader(data, path.name))
    except OSError as exc:
        raise ModelError(f"{path.name} cannot be read ({exc.strerror or exc}).") from exc


def _check(r: _Reader) -> list[TensorInfo]:
    start = r.skip(len(MAGIC), "the magic")
    if r.data[start : start + len(MAGIC)] != MAGIC:
        raise r.fail("it does not start with GGUF")
    version = r.number("<I", "the header")
    if version not in VERSIONS:
        raise r.fail(f"its version is {version}, not 2 or 3")
    n_tensors, n_keys = r.number("<Q", "the header"), r.number("<Q", "the header")
    if not 0 < n_tensors <= MAX_COUNT or n_keys > MAX_COUNT:
        raise r.fail(f"it claims {n_tensors} tensors and {n_keys} metadata keys")
    alignment = _read_metadata(r, n_keys)
    infos = [_read_tensor_info(r, i) for i in range(n_tensors)]
    names = {info[0] for info in infos}
    if len(names) != len(infos):
        raise r.fail("two tensors have the same name")
    data_start = r.pos + (-r.pos) % alignment
    return [_place(r, *info, data_start=data_start, alignment=alignment) for info in infos]


def _read_metadata(r: _Reader, count: int) -> int:
    """Step over `count` metadata keys and values; return the alignment they set."""
    seen: set[str] = set()
    alignment = DEFAULT_ALIGNMENT
    for index in range(count):
        key = r.text(f"metadata key {index}")
        if key in seen:
            raise r.fail(f"the metadata key {key} appears twice")
        seen.add(key)
        value_type = r.number("<I", f"the metadata {key}")
        start = r.pos
        _skip_value(r, value_type, key, nested=False)
        if key == "general.alignment":
            alignment = _alignment(r, value_type, start)
    return alignment


def _skip_value(r: _Reader, value_type: int, key: str, *, nested: bool) -> None:
    what = f"the metadata {key}"
    if value_type in _FIXED:
        r.skip(_FIXED[value_type], what)
    elif value_type == _STRING:
        r.string(MAX_STRING, what)
    elif value_type == _ARRAY and not nested:
        item_type, length = r.number("<I", what), r.number("<Q", what)
        if item_type not in _FIXED and item_type != _STRING:
            raise r.fail(f"{what} is an array of a type mlx cannot read ({item_type})")
        if length > MAX_ARRAY:
            raise r.fail(f"{what} claims {length} items")
        if item_type in _FIXED:
            r.skip(length * _FIXED[item_type], what)
        else:
            for _ in range(length):
                r.string(MAX_STRING, what)
    else:
        raise r.fail(f"{what} has a value type mlx cannot read ({value_type})")


def _alignment(r: _Reader, value_type: int, start: int) -> int:
    value = struct.unpack_from("<I", r.data, start)[0] if value_type == _UINT32 else 0
    if not 0 < value <= MAX_ALIGNMENT or value & (value - 1):
        raise r.fail("its general.alignment is not a power of two (a uint32)")
    return int(value)


def _read_tensor_info(r: _Reader, index: int) -> tuple[str, tuple[int, ...], int, int]:
    """Read one tensor info: (name, dims, ggml type, offset in the data section)."""
    name = r.text(f"the name of tensor {index}")
    what = f"the tensor info of {name}"
    ndim = r.number("<I", what)
    if not 0 < ndim <= MAX_NDIM:
        raise r.fail(f"its tensor {name} has {ndim} dimensions")
    dims = tuple(r.number("<Q", what) for _ in range(ndim))
    if not all(0 < d <= MAX_DIM for d in dims):
        raise r.fail(f"its tensor {name} has the shape {list(dims)}")
    ggml_type, offset = r.number("<I", what), r.number("<Q", what)
    if ggml_type not in TENSOR_TYPES:
        raise ModelError(
            f"{r.label} stores the tensor {name} as {_type_name(ggml_type)}; only F32, F16, "
            "Q4_0, Q4_1 and Q8_0 GGUF files can be converted."
        )
    return name, dims, ggml_type, offset


def _place(
    r: _Reader,
    name: str,
    dims: tuple[int, ...],
    ggml_type: int,
    offset: int,
    *,
    data_start: int,
    alignment: int,
) -> TensorInfo:
    """Check that the tensor's data is aligned and lies inside the file."""
    kind, block, block_bytes = TENSOR_TYPES[ggml_type]
    if dims[0] % block:
        raise r.fail(f"its {kind} tensor {name} has rows of {dims[0]} weights")
    if offset % alignment:
        raise r.fail(f"its tensor {name} is not aligned to {alignment} bytes")
    nbytes = math.prod(dims) // block * block_bytes
    if data_start + offset + nbytes > r.size:
        raise r.fail(f"the data of its tensor {name} runs past the end of the file")
    return TensorInfo(name, dims, kind, data_start + offset, nbytes)


def check_llama_tensors(label: str, config: Mapping[str, Any], tensors: list[TensorInfo]) -> None:
    """Raise ModelError (one sentence naming the file `label`) unless `tensors` (from
    `check_gguf`) are exactly the llama.cpp tensors of the llama model `config` describes
    (a Hugging Face llama config read from the same file's metadata), each of the shape
    that model loads. The output tensor is optional (tied embeddings)."""
    widths, layers = projection_widths(config)
    hidden, vocab = int(config["hidden_size"]), int(config["vocab_size"])
    for info in tensors:
        if info.name in ("token_embd.weight", "output.weight"):
            want, sized_by = (hidden, vocab), _VOCAB
        elif info.name == "output_norm.weight":
            want, sized_by = (hidden,), _WIDTH
        else:
            match = BLOCK.match(info.name)
            if not match or match.group(2) not in LAYER_NAMES:
                raise ModelError(
                    f"{label} holds a tensor this converter does not know: {info.name}."
                )
            if int(match.group(1)) >= layers:
                raise ModelError(
                    f"{label} has the tensor {info.name}, but its llama.block_count "
                    f"says {layers} blocks."
                )
            kind = match.group(2)
            want, sized_by = widths.get(LAYER_NAMES[kind], (hidden,)), _SIZED_BY[kind]
        if info.dims != want:  # ggml order, the row length first: (in, out) of a projection
            raise ModelError(
                f"{label} has the tensor {info.name} of shape {list(info.dims)}, but its "
                f"metadata ({sized_by}) calls for {list(want)}."
            )
    present = {info.name for info in tensors}
    for name in ("token_embd.weight", "output_norm.weight"):
        if name not in present:
            raise ModelError(f"{label} has no tensor {name}, which every llama model needs.")
    for layer in range(layers):  # stops at the first gap, so a huge block count costs nothing
        for kind in LAYER_NAMES:
            if f"blk.{layer}.{kind}.weight" not in present:
                raise ModelError(
                    f"{label} has no tensor blk.{layer}.{kind}.weight, though its "
                    f"llama.block_count says {layers} blocks."
                )


def _type_name(ggml_type: int) -> str:
    import gguf

    try:
        return gguf.GGMLQuantizationType(ggml_type).name
    except ValueError:
        return f"the unknown ggml type {ggml_type}"
