"""Base model folders (mlx-lm layout): identity, fingerprint and a summary. No mlx here.

A packet records the fingerprint of the base model it was trained on; the engine refuses a
packet whose fingerprint differs from its own model's. Hashing 500 MB takes a second or
two, so the result is cached in the folder, keyed by each file's size and mtime.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fieldkit.errors import ModelError, PacketError
from fieldkit.store.files import write_atomically
from fieldkit.store.tensorfile import MAX_HEADER

FINGERPRINT_CACHE = ".fieldkit-fingerprint.json"
_CACHE_VERSION = 1
_SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "U32": "uint32"}


@dataclass(frozen=True)
class ModelInfo:
    """What `fieldkit model info` shows about a base model folder."""

    path: Path
    model_id: str
    architecture: str
    dtype: str
    n_layers: int
    fingerprint: str
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (path as a string)."""
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def read_config(model_dir: Path) -> dict[str, Any]:
    """Return the folder's config.json; raise ModelError if the folder is not a model."""
    model_dir = Path(model_dir)
    config_path = model_dir / "config.json"
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir} is not a folder.")
    if not config_path.is_file():
        raise ModelError(f"{model_dir} is not a model folder: it has no config.json.")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"The config.json in {model_dir} is not readable JSON.") from exc
    if not isinstance(config, dict) or "model_type" not in config:
        raise ModelError(f"The config.json in {model_dir} does not name a model_type.")
    return config


def projection_widths(config: Mapping[str, Any]) -> tuple[dict[str, tuple[int, int]], int]:
    """Return ({projection key: (in, out)} for the 7 LoRA projections, number of layers)
    of a llama-style model config; PacketError when it lacks a size."""
    try:
        hidden = int(config["hidden_size"])
        inter = int(config["intermediate_size"])
        heads = int(config["num_attention_heads"])
        kv_heads = int(config.get("num_key_value_heads", heads))
        head_dim = int(config.get("head_dim") or hidden // heads)
        layers = int(config["num_hidden_layers"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PacketError(
            "The base model's config lacks the sizes needed to check adapters."
        ) from exc
    widths = {
        "self_attn.q_proj": (hidden, heads * head_dim),
        "self_attn.k_proj": (hidden, kv_heads * head_dim),
        "self_attn.v_proj": (hidden, kv_heads * head_dim),
        "self_attn.o_proj": (heads * head_dim, hidden),
        "mlp.gate_proj": (hidden, inter),
        "mlp.up_proj": (hidden, inter),
        "mlp.down_proj": (inter, hidden),
    }
    return widths, layers


def weight_files(model_dir: Path) -> list[Path]:
    """Return the folder's *.safetensors files, sorted; raise ModelError if there are none."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise ModelError(f"{model_dir} is not a model folder: it has no .safetensors weights.")
    return files


def _stat_key(model_dir: Path, files: list[Path]) -> dict[str, list[int]]:
    paths = [Path(model_dir) / "config.json", *files]
    return {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in paths}


def _compute_fingerprint(config: dict[str, Any], files: list[Path]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    for path in files:
        file_hash = hashlib.sha256()
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                file_hash.update(block)
        digest.update(f"\n{path.name}:{file_hash.hexdigest()}".encode())
    return digest.hexdigest()


def model_fingerprint(model_dir: Path) -> str:
    """Return the hex sha256 over the canonical config.json and every *.safetensors file.

    Raises ModelError if the folder is not a model. The value is cached in
    `<model_dir>/.fieldkit-fingerprint.json` and recomputed when a file's size or mtime
    changes; a read-only folder simply goes uncached.
    """
    model_dir = Path(model_dir)
    config = read_config(model_dir)
    files = weight_files(model_dir)
    key = _stat_key(model_dir, files)
    cache_path = model_dir / FINGERPRINT_CACHE
    try:
        cached = json.loads(cache_path.read_text())
        if cached.get("version") == _CACHE_VERSION and cached.get("files") == key:
            return str(cached["fingerprint"])
    except (OSError, ValueError, AttributeError, KeyError):
        pass
    fingerprint = _compute_fingerprint(config, files)
    payload = {"version": _CACHE_VERSION, "files": key, "fingerprint": fingerprint}
    text = json.dumps(payload, indent=1).encode()
    with contextlib.suppress(PacketError):  # a read-only model folder: no cache, no harm
        write_atomically(cache_path, lambda out: out.write(text), "fingerprint cache")
    return fingerprint


def model_id(model_dir: Path) -> str:
    """Return a readable id for the model: config's `fieldkit_model_id`, else the folder name."""
    config = read_config(Path(model_dir))
    explicit = config.get("fieldkit_model_id")
    if isinstance(explicit, str) and explicit:
        return explicit
    return Path(model_dir).resolve().name


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """Return the JSON header of the safetensors file at `path` (its tensors, and
    `__metadata__` when present); raise ModelError unless it is a JSON object that fits in
    the file and in MAX_HEADER bytes."""
    bad = ModelError(f"{path.name} is not a readable safetensors file.")
    try:
        with path.open("rb") as fh:
            file_size = os.fstat(fh.fileno()).st_size
            (length,) = struct.unpack("<Q", fh.read(8))
            if length > min(MAX_HEADER, file_size - 8):
                raise bad
            header = json.loads(fh.read(length))
    except (OSError, struct.error, ValueError, RecursionError) as exc:  # bad UTF-8 or JSON
        raise bad from exc
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(header, dict) or not isinstance(metadata, dict | None):
        raise bad
    need = 8 + length + max((_end(v) for k, v in header.items() if k != "__metadata__"), default=0)
    if need > file_size:  # a copy cut short: mlx would fail to load it, with a traceback
        raise ModelError(
            f"{path.name} is cut short: its weights need {need:,} bytes and the file holds "
            f"{file_size:,}. Copy it again."
        )
    return header


def _end(entry: Any) -> int:
    """Return where a safetensors header entry's data ends (0 for an entry without any)."""
    offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
    if isinstance(offsets, list) and len(offsets) == 2 and isinstance(offsets[1], int):
        return offsets[1]
    return 0


def _safetensors_dtype(path: Path) -> str:
    """Return the dtype of the first weight (not quantisation scales) in a safetensors file."""
    header = read_safetensors_header(path)
    dtypes = [
        v["dtype"]
        for k, v in header.items()
        if k != "__metadata__" and isinstance(v, dict) and isinstance(v.get("dtype"), str)
    ]
    if not dtypes:
        return "unknown"
    if "U32" in dtypes:
        return "quantized"
    return _SAFETENSORS_DTYPES.get(dtypes[0], dtypes[0].lower())


def model_info(model_dir: Path) -> ModelInfo:
    """Return a ModelInfo for the folder; raise ModelError if it is not a model."""
    model_dir = Path(model_dir).resolve()
    config = read_config(model_dir)
    files = weight_files(model_dir)
    n_layers = config.get("num_hidden_layers") or config.get("n_layers") or 0
    size = sum(p.stat().st_size for p in model_dir.iterdir() if p.is_file())
    return ModelInfo(
        path=model_dir,
        model_id=model_id(model_dir),
        architecture=str(config["model_type"]),
        dtype=_safetensors_dtype(files[0]),
        n_layers=int(n_layers),
        fingerprint=model_fingerprint(model_dir),
        size_bytes=size,
    )
