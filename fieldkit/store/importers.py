"""Import adapters from mlx-lm and PEFT folders, and check they fit a base model.

mlx-lm folders hold `adapters.safetensors` + `adapter_config.json` (as `mlx_lm lora`
writes them). PEFT folders hold `adapter_model.safetensors` + `adapter_config.json` (as
`save_pretrained` writes them); see fieldkit.store.peft for its layout. Tensors may be
fp16, bf16, fp32 or fp64; a packet stores fp16.

A packet is rectangular: one rank and one scale, LoRA on the same projections of the
model's last N layers. A PEFT adapter need not be (per-module ranks and alphas, chosen
layers, modules excluded on some layers); it is made rectangular exactly: a smaller rank
is padded with zero columns of A and zero rows of B, a different scale is folded into B,
and a projection the adapter leaves alone gets zero A and B.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fieldkit.errors import PacketError
from fieldkit.store.adapter import ALL_KEYS, Adapter, AdapterConfig, validate_tensors
from fieldkit.store.exemplars import fit_exemplars
from fieldkit.store.files import MIB, jsonl_values, read_bounded, read_text_bounded
from fieldkit.store.models import projection_widths
from fieldkit.store.notes import Passage, check_notes
from fieldkit.store.tensorfile import BF16_BITS, tensor_views

MAX_ADAPTER_FILE = 256 * 1024 * 1024
# The weights files that make a folder an adapter folder: mlx-lm's, PEFT's, and PEFT's
# pickled ones (refused with the reason).
ADAPTER_WEIGHTS = ("adapters.safetensors", "adapter_model.safetensors", "adapter_model.bin")
# packet.json's field with the signed packet a folder was exported from (library export)
SIGNED_FIELD = "packet"
EXEMPLAR_FORMATS = (
    "a text file with one question per line, or .jsonl with one object per line: "
    "question, instruction or prompt fields, or chat messages (the user turns)"
)


@dataclass(frozen=True)
class PacketInfo:
    """What a person says about an adapter: name, domain, description, exemplars."""

    name: str
    domain: str
    description: str
    exemplars: list[str]
    questions_read: int = 0  # how many the exemplars file held (more than kept: spread)
    notes: list[Passage] | None = None  # the notes packet.json carries (library export)
    signed: tuple[dict[str, Any], bytes] | None = None  # the packet exported (SIGNED_FIELD)


def read_adapter_folder(folder: Path, n_model_layers: int | None = None) -> tuple[Adapter, str]:
    """Read an mlx-lm or PEFT adapter folder; return (adapter, "mlx-lm" or "peft").

    `n_model_layers` (the base model's depth) places a PEFT adapter's layers; without it
    the adapter is taken to end at the model's last layer. Raises PacketError.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PacketError(f"{folder} is not a folder.")
    config_path = folder / "adapter_config.json"
    if not config_path.is_file():
        raise PacketError(f"{folder} has no adapter_config.json.")
    config = _read_json(config_path)
    mlx, peft, pickled = (folder / name for name in ADAPTER_WEIGHTS)
    if mlx.is_file():
        return _read_mlx(mlx, config, n_model_layers), "mlx-lm"
    if peft.is_file():
        return _read_peft(peft, config, n_model_layers), "peft"
    if pickled.is_file():
        raise PacketError("Pickled PEFT weights (adapter_model.bin) are refused; use safetensors.")
    raise PacketError(f"{folder} holds neither adapters.safetensors nor adapter_model.safetensors.")


def check_fits_model(adapter: Adapter, model_config: Mapping[str, Any]) -> None:
    """Raise PacketError unless every tensor's width fits the base model's projections."""
    widths, layers = projection_widths(model_config)
    validate_tensors(adapter.config, adapter.tensors, n_model_layers=layers)
    for name, array in adapter.tensors.items():
        key = ".".join(name.split(".")[3:5])
        d_in, d_out = widths[key]
        want = (
            (d_in, adapter.config.rank) if name.endswith("lora_a") else (adapter.config.rank, d_out)
        )
        if tuple(array.shape) != want:
            raise PacketError(
                f"The tensor {name} has shape {tuple(array.shape)} but the base model needs {want}: "
                "the adapter was made for another base model."
            )


def read_packet_info(
    folder: Path | None,
    name: str | None,
    domain: str | None,
    description: str | None,
    exemplars_file: Path | None,
) -> PacketInfo:
    """Merge command-line values with an optional `packet.json` beside the adapter.

    A file of more than MAX_EXEMPLARS questions (a training file) gives MAX_EXEMPLARS of
    them, evenly spread; PacketInfo.questions_read says how many it held."""
    side: dict[str, Any] = {}
    if folder is not None and (folder / "packet.json").is_file():
        side = _read_json(folder / "packet.json")
    exemplars: list[str] = [str(q) for q in side.get("exemplars", [])]
    read = 0
    if exemplars_file is not None:
        exemplars = read_questions(exemplars_file)
        read = len(exemplars)
        exemplars = fit_exemplars(exemplars)  # a training file: spread over all of it
    name = name or side.get("name")
    domain = domain or side.get("domain")
    if not name or not domain:
        raise PacketError("A packet needs a name and a domain (--name, --domain or packet.json).")
    description = description or str(side.get("description", ""))
    notes = check_notes(side["notes"]) if side.get("notes") is not None else None
    return PacketInfo(str(name), str(domain), description, exemplars, read, notes, _signed(side))


def _signed(side: dict[str, Any]) -> tuple[dict[str, Any], bytes] | None:
    """Return the signed manifest and signature a packet.json carries, or None (none, or
    not in that shape: the folder is then imported as any adapter is)."""
    packet = side.get(SIGNED_FIELD)
    if not isinstance(packet, dict) or not isinstance(packet.get("manifest"), dict):
        return None
    try:
        return packet["manifest"], bytes.fromhex(str(packet.get("signature", "")))
    except ValueError:
        return None


def read_questions(path: Path) -> list[str]:
    """Read questions from a file; see EXEMPLAR_FORMATS. Returns them in file order.
    Raises PacketError for an unreadable file or a .jsonl line without a question.

    A .jsonl line is an object with `question`, `instruction` or `prompt` (mlx-lm's
    completion format), or with `messages` (chat format, as `mlx_lm lora` trains on),
    whose user turns are the questions.
    """
    text = read_text_bounded(Path(path), what="questions file")
    return parse_questions(text, str(path), jsonl=Path(path).suffix.lower() == ".jsonl")


def parse_questions(text: str, label: str, *, jsonl: bool = False) -> list[str]:
    """Return the questions in `text`: one a line, or read as JSON Lines (see
    `read_questions`) with `jsonl` or when its first line is a JSON object; PacketError
    naming `label` and the line for a bad JSON line."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    if not (jsonl or first.lstrip().startswith("{")):
        return [line.strip() for line in text.splitlines() if line.strip()]
    questions: list[str] = []
    for number, obj in jsonl_values(text, label):
        found = _line_questions(obj)
        if not found:
            raise PacketError(
                f"{label} line {number} has no question, instruction, prompt or user message."
            )
        questions.extend(found)
    return questions


def _line_questions(obj: Any) -> list[str]:
    if not isinstance(obj, dict):
        return []
    messages = obj.get("messages")
    if isinstance(messages, list):
        turns = [
            m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"
        ]
        return [t.strip() for t in turns if isinstance(t, str) and t.strip()]
    for field in ("question", "instruction", "prompt"):
        value = obj.get(field)
        if isinstance(value, str) and value.strip():
            return [value.strip()]
    return []


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(read_text_bounded(path, 16 * MIB, "config"))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise PacketError(f"{path.name} is not readable JSON.") from exc
    if not isinstance(data, dict):
        raise PacketError(f"{path.name} is not a JSON object.")
    return data


FLOAT16_MAX = float(np.finfo(np.float16).max)


def to_float16(name: str, array: np.ndarray) -> np.ndarray:
    """Return the tensor as C-contiguous float16 (packets store fp16).

    Raises PacketError if it is not floating point or a finite value lies beyond fp16's
    range (it would become infinite); NaN and infinities are left for validate_tensors.
    """
    if array.dtype.kind != "f":
        raise PacketError(f"The tensor {name} is not floating point.")
    if array.dtype != np.float16 and array.size:
        finite = np.abs(array[np.isfinite(array)])
        if finite.size and float(finite.max()) > FLOAT16_MAX:
            raise PacketError(
                f"The tensor {name} holds values beyond float16's range (±65504), "
                "which a packet cannot store."
            )
    return np.ascontiguousarray(array, dtype=np.float16)


def read_adapter_weights(path: Path, max_bytes: int) -> dict[str, np.ndarray]:
    """Read an adapter's safetensors file whose tensors are fp16, bf16, fp32 or fp64.

    Returns numpy arrays (bf16 widened exactly to fp32: numpy has no bfloat16, so
    safetensors' numpy loader cannot read it; here the raw 16-bit patterns are shifted
    into the top half of fp32 words). Raises PacketError if the file is larger than
    `max_bytes`, unreadable, or not well-formed safetensors.
    """
    data = read_bounded(
        path, max_bytes, "adapter weights", f"the {max_bytes >> 20} MiB packet limit"
    )
    views = tensor_views(data, f"tensors in {path.name}", bf16=True)
    return {
        name: (view.astype(np.uint32) << 16).view(np.float32)
        if view.dtype == BF16_BITS
        else view.copy()
        for name, view in views.items()
    }


def _read_mlx(path: Path, config: Mapping[str, Any], n_model_layers: int | None) -> Adapter:
    adapter_config = AdapterConfig.from_mlx_lm(config)
    raw = read_adapter_weights(path, MAX_ADAPTER_FILE)
    validate_tensors(adapter_config, raw, n_model_layers, check_values=False)
    tensors = {name: to_float16(name, array) for name, array in raw.items()}
    validate_tensors(adapter_config, tensors, n_model_layers)
    return Adapter(config=adapter_config, tensors=tensors)


def _read_peft(path: Path, config: Mapping[str, Any], n_model_layers: int | None) -> Adapter:
    from fieldkit.store.peft import TENSOR_NAME, check_config

    scales = check_config(config)
    pairs: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    scale_of: dict[tuple[int, str], float] = {}
    for name, array in read_adapter_weights(path, MAX_ADAPTER_FILE).items():
        m = TENSOR_NAME.match(name)
        if not m:
            raise PacketError(f"The PEFT adapter holds a tensor that is not LoRA: {name}.")
        module, layer, key, part = m.group(1), int(m.group(2)), m.group(3), m.group(4)
        if key not in ALL_KEYS:
            raise PacketError(
                f"The PEFT adapter targets {key}, which fieldkit does not support "
                "(only the attention and MLP projections q, k, v, o, gate, up and down)."
            )
        if array.ndim != 2:
            raise PacketError(f"The tensor {name} is not a matrix.")
        pairs.setdefault((layer, key), {})[part] = array.T  # mlx layout: A (in, r), B (r, out)
        scale_of[(layer, key)] = scales.scale(module)
        if array.shape[0 if part == "A" else 1] != scales.rank(module):
            raise PacketError(
                f"The tensor {name} has rank {array.shape[0 if part == 'A' else 1]}, but the "
                f"PEFT config gives {module} rank {scales.rank(module)}."
            )
    if not pairs:
        raise PacketError("The PEFT adapter holds no LoRA tensors.")
    for (layer, key), pair in pairs.items():
        if set(pair) != {"A", "B"}:
            raise PacketError(
                f"The PEFT adapter has only one of lora_A and lora_B on layer {layer} {key}."
            )
    return _rectangular(pairs, scale_of, n_model_layers)


def _rectangular(
    pairs: Mapping[tuple[int, str], Mapping[str, np.ndarray]],
    scale_of: Mapping[tuple[int, str], float],
    n_model_layers: int | None,
) -> Adapter:
    """Return one adapter of the highest rank and the commonest scale on every projection
    of the adapted layers through the model's last (exact: see the module docstring)."""
    layers = sorted({layer for layer, _ in pairs})
    depth = n_model_layers if n_model_layers is not None else layers[-1] + 1
    if layers[-1] >= depth:
        raise PacketError(
            f"The adapter has LoRA on layer {layers[-1]}, but the base model's layers are "
            f"0 to {depth - 1}: it was made for another base model."
        )
    keys = tuple(k for k in ALL_KEYS if any(key == k for _, key in pairs))
    rank = max(pair["A"].shape[1] for pair in pairs.values())
    scale = Counter(scale_of.values()).most_common(1)[0][0] or 1.0
    widths = {key: (pair["A"].shape[0], pair["B"].shape[1]) for (_, key), pair in pairs.items()}
    tensors: dict[str, np.ndarray] = {}
    for layer in range(layers[0], depth):
        for key in keys:
            d_in, d_out = widths[key]
            a = np.zeros((d_in, rank), np.float32)
            b = np.zeros((rank, d_out), np.float32)
            if (pair := pairs.get((layer, key))) is not None:
                r = pair["A"].shape[1]
                if pair["A"].shape[0] != d_in or pair["B"].shape[1] != d_out:
                    raise PacketError(
                        f"The adapter's {key} on layer {layer} has a shape unlike its siblings."
                    )
                a[:, :r] = pair["A"]
                b[:r] = pair["B"] * np.float32(scale_of[(layer, key)] / scale)
            prefix = f"model.layers.{layer}.{key}"
            tensors[f"{prefix}.lora_a"] = to_float16(f"{prefix}.lora_a", a)
            tensors[f"{prefix}.lora_b"] = to_float16(f"{prefix}.lora_b", b)
    config = AdapterConfig(rank=rank, scale=float(scale), num_layers=depth - layers[0], keys=keys)
    validate_tensors(config, tensors, n_model_layers=depth)
    return Adapter(config=config, tensors=tensors)
