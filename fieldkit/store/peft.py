"""PEFT's LoRA layout, both ways: which adapter_config.json fields fieldkit can honour, what
its tensors are called, and the per-module scales it implies.

PEFT computes `y = W x + s * B (A x)` per module, with `lora_A.weight` (r, in),
`lora_B.weight` (out, r) and `s = alpha / r` (or `alpha / sqrt(r)` with rsLoRA), where r and
alpha may differ per module (rank_pattern, alpha_pattern). A packet holds one rank and one
scale; `fieldkit.store.importers` folds the differences into the tensors exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fieldkit.errors import PacketError
from fieldkit.store.adapter import AdapterConfig, is_unset

TENSOR_NAME = re.compile(
    r"^(?:base_model\.model\.)?(model\.layers\.(\d+)\.([a-z_]+\.[a-z_]+))"
    r"\.lora_([AB])(?:\.default)?\.weight$"
)
EXPORT_PREFIX = "base_model.model."
# Fields that say nothing about what the weights mean: which modules were targeted (the
# tensors say that), dropout, provenance, and the settings of initialisations whose own
# field, init_lora_weights, is checked below.
_NEUTRAL = {
    "peft_type",
    "r",
    "lora_alpha",
    "use_rslora",
    "rank_pattern",
    "alpha_pattern",
    "init_lora_weights",
    "bias",
    "task_type",
    "base_model_name_or_path",
    "revision",
    "inference_mode",
    "auto_mapping",
    "peft_version",
    "lora_dropout",
    "target_modules",
    "exclude_modules",
    "layers_to_transform",
    "layers_pattern",
    "megatron_config",
    "megatron_core",
    "runtime_config",
    "ensure_weight_tying",
    "qalora_group_size",
    "eva_config",
    "corda_config",
    "lora_ga_config",
    "loftq_config",
}
_CARRIES = "which a packet cannot carry"
# Fields that change what the weights mean when set; each with the reason it is refused.
_REFUSED = {
    "use_dora": "DoRA rescales every adapted weight by a learned magnitude vector, " + _CARRIES,
    "modules_to_save": "it saves whole modules of the base model, " + _CARRIES,
    "trainable_token_indices": "it trains rows of the token embeddings, " + _CARRIES,
    "lora_bias": "it adds a trained bias to every LoRA B, " + _CARRIES,
    "layer_replication": "it stacks copies of base layers into a deeper model",
    "use_qalora": "QA-LoRA pools each input group before LoRA A, a different forward pass",
    "fan_in_fan_out": "its weights are laid out for GPT-2 style Conv1D layers",
    "target_parameters": "it puts LoRA on raw parameters such as MoE experts, not on projections",
}
_VARIANTS = (
    "velora_config",
    "alora_invocation_tokens",
    "monteclora_config",
    "use_bdlora",
    "arrow_config",
    "kasa_config",
)
# init_lora_weights values that leave the base model as it was (B = 0 at the start, or a
# delta trained on top of the stock weights): the trained B A is all the adapter means.
_PLAIN_INITS = ("gaussian", "eva", "orthogonal", "mica")  # and True or False
# These subtract their initial B A from the base weights when training starts.
_BASE_ALTERING = {"pissa": "PiSSA", "olora": "OLoRA", "corda": "CorDA", "loftq": "LoftQ"}
_BASE_ALTERING["lora_ga"] = "LoRA-GA"


@dataclass(frozen=True)
class PeftScales:
    """A checked PEFT LoRA config: the default rank and alpha, and each module's scale."""

    r: int
    alpha: float
    rslora: bool
    rank_pattern: Mapping[str, int]
    alpha_pattern: Mapping[str, float]

    def rank(self, module: str) -> int:
        """Return the rank PEFT gives `module` ("model.layers.3.self_attn.q_proj")."""
        return int(self.rank_pattern.get(_pattern_key(self.rank_pattern, module), self.r))

    def scale(self, module: str) -> float:
        """Return the scale PEFT applies to `module`'s B A."""
        alpha = float(self.alpha_pattern.get(_pattern_key(self.alpha_pattern, module), self.alpha))
        rank = self.rank(module)
        return alpha / math.sqrt(rank) if self.rslora else alpha / rank


def check_config(config: Mapping[str, Any]) -> PeftScales:
    """Check a PEFT adapter_config.json; return its scales or raise PacketError.

    A known field that changes what the weights mean is refused when set, with the
    reason; an unknown field is ignored when unset (`is_unset`) and refused otherwise.
    """
    if config.get("peft_type") != "LORA":
        raise PacketError(
            f"Only LoRA adapters are accepted, not PEFT type {config.get('peft_type')!r}."
        )
    for name, reason in _REFUSED.items():
        if not is_unset(config.get(name)):
            raise PacketError(
                f"The PEFT adapter sets {name} = {config[name]!r}, which fieldkit refuses: {reason}."
            )
    for name in _VARIANTS:
        if not is_unset(config.get(name)):
            raise PacketError(
                f"The PEFT adapter sets {name}: a LoRA variant whose forward pass differs "
                "from plain LoRA, which fieldkit refuses."
            )
    if config.get("bias", "none") not in ("none", None):
        raise PacketError(
            f"The PEFT adapter sets bias = {config['bias']!r}, which fieldkit refuses: it "
            f"trains biases of the base model, {_CARRIES}."
        )
    _check_init(config.get("init_lora_weights", True))
    unknown = sorted(
        name
        for name in set(config) - _NEUTRAL - set(_REFUSED) - set(_VARIANTS)
        if not is_unset(config[name])
    )
    if unknown:
        raise PacketError(
            f"The PEFT config sets {unknown[0]} = {config[unknown[0]]!r}, which fieldkit does "
            "not know; it may change what the weights mean, so the adapter is refused."
        )
    r, alpha = config.get("r"), config.get("lora_alpha")
    if not _is_int(r) or r < 1 or not _is_number(alpha):
        raise PacketError("The PEFT config needs a positive integer r and a numeric lora_alpha.")
    ranks, alphas = config.get("rank_pattern") or {}, config.get("alpha_pattern") or {}
    if not isinstance(ranks, Mapping) or not all(_is_int(v) and v >= 1 for v in ranks.values()):
        raise PacketError("The PEFT config's rank_pattern must map module names to ranks.")
    if not isinstance(alphas, Mapping) or not all(_is_number(v) for v in alphas.values()):
        raise PacketError("The PEFT config's alpha_pattern must map module names to numbers.")
    return PeftScales(r, float(alpha), bool(config.get("use_rslora")), ranks, alphas)


def export_config(config: AdapterConfig, layers: Iterable[int], base_model: str) -> dict:
    """Return the adapter_config.json PEFT reads for a packet's adapter on those layers."""
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": config.rank,
        "lora_alpha": config.scale * config.rank,
        "lora_dropout": config.dropout,
        "use_rslora": False,
        "target_modules": sorted(key.split(".")[1] for key in config.keys),
        "layers_to_transform": list(layers),
        "bias": "none",
        "init_lora_weights": True,
        "inference_mode": True,
        "fan_in_fan_out": False,
        "modules_to_save": None,
        "use_dora": False,
    }


def export_name(mlx_name: str) -> str:
    """Return PEFT's tensor name for an mlx-lm one ("...q_proj.lora_a" -> "...lora_A.weight")."""
    module, part = mlx_name.rsplit(".", 1)
    return f"{EXPORT_PREFIX}{module}.lora_{part[-1].upper()}.weight"


def _check_init(init: Any) -> None:
    if init is True or init is False or (isinstance(init, str) and init in _PLAIN_INITS):
        return
    method = next(
        (label for prefix, label in _BASE_ALTERING.items() if str(init).startswith(prefix)), None
    )
    if method is not None:
        raise PacketError(
            f"The PEFT adapter was initialised with init_lora_weights = {init!r} ({method}), "
            "which changed the base model's own weights when training began; its LoRA weights "
            "only fit that changed base. Save it with PEFT's "
            "path_initial_model_for_weight_conversion to get a plain LoRA, and import that."
        )
    raise PacketError(
        f"The PEFT adapter was initialised with init_lora_weights = {init!r}, which fieldkit "
        "does not know; it may change what the weights mean, so the adapter is refused."
    )


def _pattern_key(patterns: Mapping[str, Any], module: str) -> str:
    """PEFT's own matching (peft.utils.other.get_pattern_key): the first pattern that
    matches the end of the module name at a dot boundary."""
    for pattern in patterns:
        if re.match(rf"(.*\.)?({pattern})$", module):
            return pattern
    return module


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
