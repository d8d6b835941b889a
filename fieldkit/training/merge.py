"""Merge LoRA adapters into one (numpy only): linear, TIES and DARE-TIES.

Dense (default). For every LoRA module (layer i, projection k) each adapter j gives the
dense weight delta D_j = scale_j * (A_j @ B_j), shape (in, out) in mlx layout (the model
computes x @ D). The deltas are combined element-wise:

- linear:     D = sum_j w_j D_j                                  (w_j = 1/n by default)
- ties:       trim each D_j to its top `density` share by magnitude; elect each element's
              sign as the sign of sum_j trimmed D_j ("total"); D = sum_j w_j D_j over the
              adapters whose trimmed value has the elected sign, divided by how many
              there are (0 where none)                           (w_j = 1 by default)
- dare_ties:  as ties, but the trim keeps each element with probability `density` and
              divides the kept ones by `density` (seeded)

D is then re-factored to a LoRA of rank r (default: the sum of the input ranks, at most
64) by truncated SVD, D ~ U_r S_r V_r^T: A = U_r sqrt(S_r), B = sqrt(S_r) V_r^T, with
scale 1.0. This is the best rank-r approximation of D (Eckart-Young).

Factor-wise (`factorwise=True`): what PEFT's `add_weighted_adapter` does and what the
Gossip Handshake reference measured. The same combination is applied separately to the
stacked A matrices and to the stacked B matrices, with weights sqrt(w_j * scale_j), and
the result keeps the common rank with scale 1.0. Since A and B are merged apart, the
product of the merged factors is not the merge of the products.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fieldkit.errors import PacketError
from fieldkit.store.adapter import Adapter, AdapterConfig, tensors_to_bytes
from fieldkit.store.quantize import is_trimmed

METHODS = ("linear", "ties", "dare_ties")
MAX_MERGED_RANK = 64


@dataclass(frozen=True)
class MergeSpec:
    """How to merge: method, kept share for ties/dare_ties, weights, output rank, variant."""

    method: str = "ties"
    density: float = 0.5
    weights: tuple[float, ...] | None = None
    rank: int | None = None
    factorwise: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise PacketError(f"The merge method must be one of {', '.join(METHODS)}.")
        if not 0.0 < self.density <= 1.0:
            raise PacketError("The merge density must be above 0 and at most 1.")


def magnitude_trim(tensor: np.ndarray, density: float) -> np.ndarray:
    """Return tensor with all but its int(density * size) largest-magnitude entries zeroed."""
    k = int(density * tensor.size)
    flat = tensor.reshape(-1)
    out = np.zeros_like(flat)
    if k > 0:
        keep = np.argpartition(np.abs(flat), flat.size - k)[flat.size - k :]
        out[keep] = flat[keep]
    return out.reshape(tensor.shape)


def random_trim(tensor: np.ndarray, density: float, rng: np.random.Generator) -> np.ndarray:
    """Return tensor with each entry kept with probability density and rescaled by 1/density."""
    mask = rng.random(tensor.shape) < density
    return np.where(mask, tensor / density, 0.0).astype(tensor.dtype)


def combine(
    tensors: Sequence[np.ndarray],
    weights: Sequence[float],
    method: str,
    density: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Return the element-wise merge of same-shape tensors (see the module docstring)."""
    stack = np.stack([t.astype(np.float64) for t in tensors])
    w = np.asarray(weights, dtype=np.float64).reshape((-1,) + (1,) * (stack.ndim - 1))
    if method == "linear":
        return (stack * w).sum(axis=0)
    if method == "ties":
        trimmed = np.stack([magnitude_trim(t, density) for t in stack])
    else:
        trimmed = np.stack([random_trim(t, density, rng) for t in stack])
    elected = np.where(trimmed.sum(axis=0) >= 0, 1.0, -1.0)
    agree = np.sign(trimmed) == elected
    count = agree.sum(axis=0)
    return (trimmed * w * agree).sum(axis=0) / np.maximum(count, 1)


def _modules(adapter: Adapter) -> list[str]:
    return sorted(n[: -len(".lora_a")] for n in adapter.tensors if n.endswith(".lora_a"))


def _check_compatible(adapters: Sequence[Adapter]) -> list[str]:
    if len(adapters) < 2:
        raise PacketError("A merge needs at least two adapters.")
    first = adapters[0]
    modules = _modules(first)
    for other in adapters[1:]:
        same = (other.config.num_layers, set(other.config.keys)) == (
            first.config.num_layers,
            set(first.config.keys),
        )
        if not same or _modules(other) != modules:
            raise PacketError(
                "These adapters cover different layers or projections, so they cannot be merged."
            )
    return modules


def refactor(delta: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (A, B) with A @ B the best rank-`rank` approximation of delta (SVD)."""
    u, s, vt = np.linalg.svd(delta, full_matrices=False)
    r = min(rank, s.size)
    root = np.sqrt(s[:r])
    a, b = u[:, :r] * root, root[:, None] * vt[:r]
    if r < rank:  # pad with zero directions so every module keeps the declared rank
        a = np.pad(a, ((0, 0), (0, rank - r)))
        b = np.pad(b, ((0, rank - r), (0, 0)))
    return a, b


def merge_adapters(adapters: Sequence[Adapter], spec: MergeSpec = MergeSpec()) -> Adapter:  # noqa: B008
    """Return one adapter merging all of them by spec; raise PacketError if incompatible."""
    modules = _check_compatible(adapters)
    n = len(adapters)
    weights = spec.weights or ((1.0 / n,) * n if spec.method == "linear" else (1.0,) * n)
    if len(weights) != n:
        raise PacketError(f"The merge has {n} adapters but {len(weights)} weights.")
    rng = np.random.default_rng(spec.seed)
    base = adapters[0].config
    tensors: dict[str, np.ndarray] = {}
    if spec.factorwise:
        ranks = {a.config.rank for a in adapters}
        if len(ranks) != 1 or any(is_trimmed(a) for a in adapters):
            raise PacketError("The factor-wise merge needs adapters of one rank, untrimmed.")
        rank = ranks.pop()
        factor_w = [
            float(np.sqrt(w * a.config.scale)) for w, a in zip(weights, adapters, strict=True)
        ]
        for module in modules:
            for part in ("lora_a", "lora_b"):
                parts = [a.tensors[f"{module}.{part}"] for a in adapters]
                merged = combine(parts, factor_w, spec.method, spec.density, rng)
                tensors[f"{module}.{part}"] = merged.astype(np.float32)
    else:
        rank = spec.rank or min(sum(a.config.rank for a in adapters), MAX_MERGED_RANK)
        for module in modules:
            deltas = [dense_delta(a, module) for a in adapters]
            merged = combine(deltas, weights, spec.method, spec.density, rng)
            a_mat, b_mat = refactor(merged, rank)
            tensors[f"{module}.lora_a"] = a_mat.astype(np.float32)
            tensors[f"{module}.lora_b"] = b_mat.astype(np.float32)
    config = AdapterConfig(
        rank=rank, scale=1.0, dropout=0.0, num_layers=base.num_layers, keys=base.keys
    )
    key = hashlib.sha256(tensors_to_bytes(tensors)).hexdigest()
    return Adapter(config=config, tensors=tensors, key=key)


def dense_delta(adapter: Adapter, module: str) -> np.ndarray:
    """Return scale * (A @ B) of one module (float64, shape (in, out))."""
    a = adapter.tensors[f"{module}.lora_a"].astype(np.float64)
    b = adapter.tensors[f"{module}.lora_b"].astype(np.float64)
    return adapter.config.scale * (a @ b)
