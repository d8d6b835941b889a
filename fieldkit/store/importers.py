"""Import adapters from mlx-lm and PEFT folders, and check they fit a base model.

mlx-lm folders hold `adapters.safetensors` + `adapter_config.json` (as `mlx_lm.lora`
writes them). PEFT folders hold `adapter_model.safetensors` + `adapter_config.json`; their
`lora_A.weight` is (rank, in) and `lora_B.weight` is (out, rank), so both are transposed into
mlx layout and the scale becomes lora_alpha / r (or / sqrt(r) with rsLoRA).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fieldkit.errors import PacketError
from fieldkit.store.adapter import (
    ALL_KEYS,
    Adapter,
    AdapterConfig,
    read_safetensors,
    validate_tensors,
)
from fieldkit.store.files import MIB, read_bounded, read_text_bounded

MAX_ADAPTER_FILE = 256 * 1024 * 1024
_PEFT_NAME = re.compile(
    r"^(?:base_model\.model\.)?model\.layers\.(\d+)\.([a-z_]+)\.([a-z_]+)\.lora_([AB])(?:\.default)?\.weight$"
)
_PEFT_ALLOWED = {
    "peft_type",
    "r",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "bias",
    "task_type",
    "base_model_name_or_path",
    "fan_in_fan_out",
    "inference_mode",
    "init_lora_weights",
    "layers_to_transform",
    "layers_pattern",
    "modules_to_save",
    "rank_pattern",
    "alpha_pattern",
    "use_rslora",
    "use_dora",
    "revision",
    "auto_mapping",
    "megatron_config",
    "megatron_core",
    "loftq_config",
    "layer_replication",
    "runtime_config",
    "eva_config",
    "lora_bias",
    "exclude_modules",
    "corda_config",
    "trainable_token_indices",
    "target_parameters",
    "qalora_group_size",
    "use_qalora",
    "peft_version",
}


@dataclass(frozen=True)
class PacketInfo:
    """What a person says about an adapter: name, domain, description, exemplars."""

    name: str
    domain: str
    description: str
    exemplars: list[str]


def read_adapter_folder(folder: Path) -> tuple[Adapter, str]:
    """Read an mlx-lm or PEFT adapter folder; return (adapter, kind) or raise PacketError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PacketError(f"{folder} is not a folder.")
    config_path = folder / "adapter_config.json"
    if not config_path.is_file():
        raise PacketError(f"{folder} has no adapter_config.json.")
    config = _read_json(config_path)
    if (folder / "adapters.safetensors").is_file():
        return _read_mlx(folder / "adapters.safetensors", config), "mlx-lm"
    if (folder / "adapter_model.safetensors").is_file():
        return _read_peft(folder / "adapter_model.safetensors", config), "peft"
    if (folder / "adapter_model.bin").is_file():
        raise PacketError("Pickled PEFT weights (adapter_model.bin) are refused; use safetensors.")
    raise PacketError(f"{folder} holds neither adapters.safetensors nor adapter_model.safetensors.")


def check_fits_model(adapter: Adapter, model_config: Mapping[str, Any]) -> None:
    """Raise PacketError unless every tensor's width fits the base model's projections."""
    try:
        hidden = int(model_config["hidden_size"])
        inter = int(model_config["intermediate_size"])
        heads = int(model_config["num_attention_heads"])
        kv_heads = int(model_config.get("num_key_value_heads", heads))
        head_dim = int(model_config.get("head_dim") or hidden // heads)
        layers = int(model_config["num_hidden_layers"])
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
    """Merge command-line values with an optional `packet.json` beside the adapter."""
    side: dict[str, Any] = {}
    if folder is not None and (folder / "packet.json").is_file():
        side = _read_json(folder / "packet.json")
    exemplars: list[str] = [str(q) for q in side.get("exemplars", [])]
    if exemplars_file is not None:
        exemplars = read_questions(exemplars_file)
    name = name or side.get("name")
    domain = domain or side.get("domain")
    if not name or not domain:
        raise PacketError("A packet needs a name and a domain (--name, --domain or packet.json).")
    return PacketInfo(
        str(name), str(domain), description or str(side.get("description", "")), exemplars
    )


def read_questions(path: Path) -> list[str]:
    """Read questions: one per line, or .jsonl objects with `question` or `instruction`."""
    text = read_text_bounded(Path(path), what="questions file")
    if Path(path).suffix != ".jsonl":
        return [line.strip() for line in text.splitlines() if line.strip()]
    questions = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PacketError(f"{path} line {number} is not JSON.") from exc
        question = obj.get("question") or obj.get("instruction") if isinstance(obj, dict) else None
        if not isinstance(question, str) or not question.strip():
            raise PacketError(f"{path} line {number} has no question or instruction.")
        questions.append(question.strip())
    return questions


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(read_text_bounded(path, 16 * MIB, "config"))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise PacketError(f"{path.name} is not readable JSON.") from exc
    if not isinstance(data, dict):
        raise PacketError(f"{path.name} is not a JSON object.")
    return data


def _check_size(path: Path) -> None:
    read_bounded(path, MAX_ADAPTER_FILE, "adapter weights", "the 256 MiB packet limit")


def _read_mlx(path: Path, config: Mapping[str, Any]) -> Adapter:
    _check_size(path)
    adapter_config = AdapterConfig.from_mlx_dict(config)
    tensors = read_safetensors(path)
    validate_tensors(adapter_config, tensors)
    return Adapter(config=adapter_config, tensors=tensors)


def _read_peft(path: Path, config: Mapping[str, Any]) -> Adapter:
    _check_size(path)
    unknown = set(config) - _PEFT_ALLOWED
    if unknown:
        raise PacketError(f"The PEFT config has unknown fields: {', '.join(sorted(unknown))}.")
    if config.get("peft_type") != "LORA":
        raise PacketError(
            f"Only LoRA adapters are accepted, not PEFT type {config.get('peft_type')!r}."
        )
    if (
        config.get("use_dora")
        or config.get("modules_to_save")
        or config.get("bias", "none") != "none"
    ):
        raise PacketError(
            "The PEFT adapter carries non-LoRA weights (DoRA, biases or saved modules)."
        )
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise PacketError("PEFT adapters with per-module ranks are not supported.")
    rank, alpha = config.get("r"), config.get("lora_alpha")
    if not isinstance(rank, int) or not isinstance(alpha, int | float) or rank < 1:
        raise PacketError("The PEFT config needs an integer r and a numeric lora_alpha.")
    scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    raw = read_safetensors(path)
    tensors: dict[str, np.ndarray] = {}
    layers: set[int] = set()
    keys: set[str] = set()
    for name, array in raw.items():
        m = _PEFT_NAME.match(name)
        if not m:
            raise PacketError(f"The PEFT adapter holds a tensor that is not LoRA: {name}.")
        layer, block, proj, part = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        key = f"{block}.{proj}"
        if key not in ALL_KEYS:
            raise PacketError(f"The PEFT adapter targets {key}, which fieldkit does not support.")
        if array.ndim != 2:
            raise PacketError(f"The tensor {name} is not a matrix.")
        layers.add(layer)
        keys.add(key)
        suffix = "lora_a" if part == "A" else "lora_b"
        tensors[f"model.layers.{layer}.{key}.{suffix}"] = np.ascontiguousarray(array.T)
    if not tensors:
        raise PacketError("The PEFT adapter holds no LoRA tensors.")
    top = max(layers) + 1
    if layers != set(range(top - len(layers), top)):
        raise PacketError("The PEFT adapter covers layers that are not the model's last ones.")
    ordered_keys = tuple(k for k in ALL_KEYS if k in keys)
    adapter_config = AdapterConfig(
        rank=rank,
        scale=float(scale),
        dropout=float(config.get("lora_dropout", 0.0) or 0.0),
        num_layers=len(layers),
        keys=ordered_keys,
    )
    validate_tensors(adapter_config, tensors, n_model_layers=top)
    return Adapter(config=adapter_config, tensors=tensors)
