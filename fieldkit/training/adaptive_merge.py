"""Adaptive merging (AdaMerging, Yang et al., ICLR 2024) of LoRA packets, learned with MLX.

Instead of fixed weights, each packet j gets a coefficient c[g][j] per group g (a LoRA
module, or a whole layer), and the merged delta of a module in group g is
sum_j c[g][j] * D_j (D_j = scale_j * A_j @ B_j). The coefficients start at the weights'
shares (the linear merge) and are learned by minimising the merged model's mean
next-token entropy on unlabeled questions: the input packets' exemplar questions, in the
chat template, no answers. As in AdaMerging they stay within [0, 1] (clipped after each
Adam step). The packets' LoRA factors act unmerged during learning (y = base(x) +
sum_j c_j (x A_j) B_j, exactly the merged delta), so a step costs one forward and backward
pass. The result is re-factored like every other merge (fieldkit/training/merge.py).

Deterministic for a seed and a step count (batches are drawn by a seeded numpy generator;
MLX on the CPU is deterministic); a time budget may stop it earlier. mlx is imported
inside the functions, after OpenBLAS.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fieldkit.errors import PacketError
from fieldkit.store.adapter import Adapter
from fieldkit.training.merge import MergeSpec, check_compatible, merge_with_coefficients

GRANULARITIES = ("module", "layer")


@dataclass(frozen=True)
class AdaptiveConfig:
    """How to learn the coefficients. Raises PacketError for a value out of range."""

    granularity: str = "module"
    steps: int = 40
    learning_rate: float = 0.02
    batch_size: int = 8
    time_budget_s: float | None = None
    seed: int = 0
    weights: tuple[float, ...] | None = None
    rank: int | None = None

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise PacketError("The adaptive merge learns per module or per layer.")
        if not (isinstance(self.steps, int) and self.steps >= 1):
            raise PacketError("The adaptive merge needs at least one step.")
        if not (np.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise PacketError("The adaptive merge's learning rate must be above 0.")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise PacketError("The adaptive merge's batch size must be at least 1.")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise PacketError("The adaptive merge's time budget must be above 0.")
        MergeSpec("linear", weights=self.weights, rank=self.rank)  # the shared checks


@dataclass(frozen=True)
class AdaptiveProgress:
    """One step: its number, the most steps, the batch's mean entropy, seconds so far."""

    step: int
    total: int
    entropy: float
    elapsed_s: float


@dataclass(frozen=True)
class AdaptiveResult:
    """The merged adapter, the learned coefficients per group, and how the run went."""

    adapter: Adapter
    coefficients: dict[str, list[float]]
    entropy_before: float
    entropy_after: float
    steps: int
    seconds: float
    config: AdaptiveConfig
    questions: int

    def record(self) -> dict[str, Any]:
        """Return the recipe and the coefficients as the merged packet's manifest stores them."""
        c = self.config
        return {
            "method": "adaptive",
            "objective": "mean next-token entropy on the packets' exemplar questions",
            "granularity": c.granularity,
            "weights": list(c.weights) if c.weights is not None else None,
            "steps": self.steps,
            "learning_rate": c.learning_rate,
            "batch_size": c.batch_size,
            "seed": c.seed,
            "time_budget_s": c.time_budget_s,
            "questions": self.questions,
            "entropy_before": round(self.entropy_before, 6),
            "entropy_after": round(self.entropy_after, 6),
            "rank": self.adapter.config.rank,
            "coefficients": self.coefficients,
        }


def group_of(module: str, granularity: str) -> str:
    """Return the group a LoRA module's coefficients belong to (itself, or its layer)."""
    if granularity == "module":
        return module
    parts = module.split(".")
    return ".".join(parts[: parts.index("layers") + 2])


def _submodule(root: Any, path: str) -> tuple[Any, str]:
    """Return (parent object, attribute name) of a dotted module path like model.layers.3.mlp.up_proj."""
    obj = root
    parts = path.split(".")
    for part in parts[:-1]:
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj, parts[-1]


def learn_merge(
    model_dir: Path,
    adapters: Sequence[Adapter],
    questions: Sequence[str],
    config: AdaptiveConfig = AdaptiveConfig(),  # noqa: B008 - frozen dataclass
    on_progress: Callable[[AdaptiveProgress], None] | None = None,
) -> AdaptiveResult:
    """Learn per-group merge coefficients on unlabeled questions; return the merged adapter.

    Raises PacketError if the adapters cannot be merged, the weights do not fit, or there
    are no questions; ModelError if the base model cannot be loaded.
    """
    modules = check_compatible(adapters)
    n = len(adapters)
    shares = np.asarray(MergeSpec("linear", weights=config.weights).check(n))
    shares = shares / shares.sum()
    questions = [q for q in dict.fromkeys(questions) if q.strip()]
    if not questions:
        raise PacketError("The adaptive merge needs exemplar questions to learn from.")
    groups = sorted({group_of(m, config.granularity) for m in modules})
    index = {g: k for k, g in enumerate(groups)}

    from fieldkit.training.train import _load_model

    model, tokenizer = _load_model(model_dir)
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim

    class MultiLoRALinear(nn.Module):
        """A frozen projection plus n LoRA deltas, each weighted by its coefficient."""

        def __init__(self, base: Any, a: list[Any], b: list[Any]) -> None:
            super().__init__()
            self.base, self.a, self.b = base, a, b
            self.coef = mx.zeros((len(a),))

        def __call__(self, x: Any) -> Any:
            y = self.base(x)
            for j in range(len(self.a)):
                y = y + self.coef[j] * ((x @ self.a[j]) @ self.b[j])
            return y

    model.freeze()
    layers: list[tuple[Any, int]] = []
    for module in modules:
        parent, attr = _submodule(model, module)
        a = [mx.array(ad.config.scale * ad.tensors[f"{module}.lora_a"].astype(np.float32))
             for ad in adapters]  # fmt: skip
        b = [mx.array(ad.tensors[f"{module}.lora_b"].astype(np.float32)) for ad in adapters]
        layer = MultiLoRALinear(getattr(parent, attr), a, b)
        setattr(parent, attr, layer)
        layers.append((layer, index[group_of(module, config.granularity)]))
    model.eval()

    encoded = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], add_generation_prompt=True, return_dict=False
        )
        for q in questions
    ]

    def batch(ids: Sequence[int]) -> tuple[Any, Any]:
        rows = [encoded[i] for i in ids]
        width = max(len(r) for r in rows)
        tokens = np.zeros((len(rows), width), dtype=np.int32)
        mask = np.zeros((len(rows), width), dtype=np.float32)
        for k, r in enumerate(rows):
            tokens[k, : len(r)], mask[k, : len(r)] = r, 1.0
        return mx.array(tokens), mx.array(mask)

    def entropy(coef: Any, tokens: Any, mask: Any) -> Any:
        for layer, g in layers:
            layer.coef = coef[g]
        logp = nn.log_softmax(model(tokens).astype(mx.float32), axis=-1)
        per_token = -(mx.exp(logp) * logp).sum(axis=-1)
        return (per_token * mask).sum() / mask.sum()

    def full_entropy(coef: Any) -> float:
        total, count = 0.0, 0.0
        for start in range(0, len(encoded), config.batch_size):
            tokens, mask = batch(range(start, min(start + config.batch_size, len(encoded))))
            value = entropy(coef, tokens, mask)
            weight = float(mask.sum().item())
            total, count = total + float(value.item()) * weight, count + weight
        return total / count

    coef = mx.array(np.tile(shares, (len(groups), 1)).astype(np.float32))
    start = time.perf_counter()
    before = full_entropy(coef)
    optimizer = optim.Adam(learning_rate=config.learning_rate)
    state = {"coef": coef}
    grad_fn = mx.value_and_grad(entropy)
    rng = np.random.default_rng(config.seed)
    order: list[int] = []
    step = 0
    for step in range(1, config.steps + 1):  # noqa: B007 - the last step is reported
        if len(order) < config.batch_size:
            order += [int(i) for i in rng.permutation(len(encoded))]
        ids, order = order[: config.batch_size], order[config.batch_size :]
        tokens, mask = batch(ids)
        value, grad = grad_fn(state["coef"], tokens, mask)
        state = optimizer.apply_gradients({"coef": grad}, state)
        state["coef"] = mx.clip(state["coef"], 0.0, 1.0)
        mx.eval(state["coef"], value)
        elapsed = time.perf_counter() - start
        if on_progress is not None:
            on_progress(AdaptiveProgress(step, config.steps, float(value.item()), elapsed))
        if config.time_budget_s is not None and elapsed >= config.time_budget_s:
            break
    after = full_entropy(state["coef"])
    learned = np.array(state["coef"], dtype=np.float64)
    coefficients = {g: [round(float(c), 6) for c in learned[index[g]]] for g in groups}
    per_module = {m: coefficients[group_of(m, config.granularity)] for m in modules}
    adapter = merge_with_coefficients(adapters, per_module, config.rank)
    return AdaptiveResult(
        adapter=adapter,
        coefficients=coefficients,
        entropy_before=before,
        entropy_after=after,
        steps=step,
        seconds=time.perf_counter() - start,
        config=config,
        questions=len(questions),
    )


def mean_entropy(model_dir: Path, adapter: Adapter | None, questions: Sequence[str]) -> float:
    """Return the mean next-token entropy of the base model plus one adapter on questions.

    The adapter is applied as mlx-lm's LoRA layers, as answering applies it: an
    independent check of what an adaptive merge stored.
    """
    from fieldkit.training.train import _load_model

    model, tokenizer = _load_model(model_dir)
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_lm.tuner.utils import linear_to_lora_layers

    if adapter is not None:
        cfg = adapter.config
        n_layers = len(model.layers)
        linear_to_lora_layers(
            model,
            n_layers if cfg.num_layers == -1 else cfg.num_layers,
            cfg.to_mlx_dict()["lora_parameters"],
        )
        model.load_weights(
            [(k, mx.array(v.astype(np.float32))) for k, v in adapter.tensors.items()],
            strict=False,
        )
    model.eval()
    total, count = 0.0, 0
    for q in questions:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], add_generation_prompt=True, return_dict=False
        )
        logp = nn.log_softmax(model(mx.array([ids])).astype(mx.float32), axis=-1)
        total += float((-(mx.exp(logp) * logp).sum(axis=-1)).sum().item())
        count += len(ids)
    return total / count
