"""Merge LoRA adapters into one (numpy only): every method of the published merging work.

Dense (default). For every LoRA module (layer i, projection k) each adapter j gives the
dense weight delta D_j = scale_j * (A_j @ B_j), shape (in, out) in mlx layout (the model
computes x @ D). The deltas are combined element-wise, with weights w_j (default all 1)
and a final scale lambda (default 1):

- linear:          D = sum_j w_j D_j / sum_j w_j                 (the weighted mean)
- task_arithmetic: D = lambda * sum_j w_j D_j                    (scaled sum; w_j may be < 0)
- ties:            trim each D_j to its top `density` share by magnitude (T_j); elect each
                   element's sign as the sign of sum_j w_j T_j; D = lambda * the weighted
                   mean of the T_j that have the elected sign (0 where none has)
- dare_linear:     T_j keeps each element of D_j with probability `density` and divides
                   the kept ones by `density` (seeded); D = lambda * sum_j w_j T_j / sum_j w_j
- dare_ties:       the DARE trim, then TIES' sign election and disjoint weighted mean
- slerp:           two deltas, t = w_2 / (w_1 + w_2) (or --t): flattened, the angle theta
                   between them; D = sin((1-t) theta)/sin(theta) D_1 + sin(t theta)/sin(theta) D_2,
                   and the linear (1-t) D_1 + t D_2 where they are near-parallel
                   (|cos theta| > 0.9995, as mergekit does). Endpoints: t=0 gives D_1, t=1 D_2.

Sequential (`sequential=True`, three or more adapters, in the order given): the method
merges the first two, then that result with the third, and so on; at each step the running
merge carries the sum of the weights it holds (so an equal-weight sequential linear merge
is the plain mean; TIES, DARE and SLERP depend on the order). A fixed `t` makes every SLERP
step use that t instead. Lambda scales the final result once.

D is then re-factored to a LoRA of rank r (default: the sum of the input ranks, at most
64) as its truncated SVD, D ~ U_r S_r V_r^T: A = U_r sqrt(S_r), B = sqrt(S_r) V_r^T, with
scale 1.0. This is the best rank-r approximation of D (Eckart-Young); `refactor`
(fieldkit/training/lora_factors.py) gets it from the smaller Gram matrix's eigenvectors.

Factor-wise (`factorwise=True`; linear, ties, dare_ties): what PEFT's
`add_weighted_adapter` does and what the Gossip Handshake reference measured. The stacked
A matrices and the stacked B matrices are each multiplied by sqrt(w_j * scale_j) (w
normalised to sum 1 for linear) and then summed (linear) or TIES-merged apart, keeping the
common rank with scale 1.0. The product of the merged factors is not the merge of the
products.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fieldkit.errors import PacketError
from fieldkit.store.adapter import MAX_RANK, Adapter, AdapterConfig, tensors_to_bytes
from fieldkit.store.quantize import is_trimmed
from fieldkit.training.lora_factors import dense_delta, refactor, refactor_factors

METHODS = ("linear", "task_arithmetic", "ties", "dare_linear", "dare_ties", "slerp")
TRIMMED = ("ties", "dare_linear", "dare_ties")  # the methods that use `density`
FACTORWISE = ("linear", "ties", "dare_ties")
SIGNED_WEIGHTS = ("task_arithmetic",)  # a negative weight subtracts a task; elsewhere >= 0
MAX_MERGED_RANK = 64
SLERP_PARALLEL = 0.9995

LINEAR_FAMILY = ("linear", "task_arithmetic", "slerp")  # each a sum c_j D_j per module


@dataclass(frozen=True)
class MergeSpec:
    """How to merge: method, its parameters, weights, output rank, variant.

    Raises PacketError (one sentence) for a parameter out of range; `check(n)` then checks
    it against the number of adapters before any work starts.
    """

    method: str = "ties"
    density: float = 0.5
    weights: tuple[float, ...] | None = None
    rank: int | None = None
    factorwise: bool = False
    seed: int = 0
    lam: float = 1.0
    t: float | None = None
    sequential: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise PacketError(f"The merge method must be one of {', '.join(METHODS)}.")
        if not (math.isfinite(self.density) and 0.0 < self.density <= 1.0):
            raise PacketError("The merge density must be above 0 and at most 1.")
        if not math.isfinite(self.lam):
            raise PacketError("The merge lambda must be a finite number.")
        if self.t is not None and not (math.isfinite(self.t) and 0.0 <= self.t <= 1.0):
            raise PacketError("SLERP's t must be a number from 0 to 1.")
        if self.t is not None and self.method != "slerp":
            raise PacketError("--t applies only to the slerp method.")
        if self.rank is not None and not (
            isinstance(self.rank, int) and 1 <= self.rank <= MAX_RANK
        ):
            raise PacketError(f"The merged rank must be an integer from 1 to {MAX_RANK}.")
        if self.weights is not None and not all(math.isfinite(w) for w in self.weights):
            raise PacketError("Every merge weight must be a finite number.")
        if self.factorwise and (self.sequential or self.method not in FACTORWISE):
            raise PacketError(
                "The factor-wise merge applies to linear, ties and dare_ties, not sequentially."
            )

    def check(self, n: int) -> tuple[float, ...]:
        """Return the weights for n adapters; raise PacketError if they or n do not fit."""
        if n < 2:
            raise PacketError("A merge needs at least two adapters.")
        if self.sequential and n < 3:
            raise PacketError("A sequential merge needs at least three packets.")
        if self.sequential and self.method == "task_arithmetic":
            raise PacketError(
                "Task arithmetic is a plain sum: merging in sequence changes nothing."
            )
        if self.method == "slerp" and n != 2 and not self.sequential:
            raise PacketError("SLERP merges two packets; add --sequential for more.")
        if self.method == "slerp" and self.t is not None and self.weights is not None:
            raise PacketError("Give SLERP either --t or --weights, not both.")
        weights = self.weights if self.weights is not None else (1.0,) * n
        if self.method == "slerp" and self.t is not None and not self.sequential:
            weights = (1.0 - self.t, self.t)
        if len(weights) != n:
            raise PacketError(f"The merge has {n} packets but {len(weights)} weights.")
        if self.method not in SIGNED_WEIGHTS:
            if any(w < 0 for w in weights):
                raise PacketError(f"The {self.method} merge needs weights of 0 or more.")
            if sum(weights) <= 0:
                raise PacketError(f"The {self.method} merge needs a weight above 0.")
        return tuple(float(w) for w in weights)

    def record(self, n: int, rank: int) -> dict[str, Any]:
        """Return the recipe as the merged packet's manifest stores it."""
        out: dict[str, Any] = {"method": self.method, "weights": list(self.check(n))}
        if self.method in TRIMMED:
            out["density"] = self.density
        if self.method.startswith("dare"):
            out["seed"] = self.seed
        if self.method == "slerp" and self.t is not None:
            out["t"] = self.t
        out |= {"lambda": self.lam, "sequential": self.sequential, "rank": rank}
        out["variant"] = "factor-wise" if self.factorwise else "dense"
        return out


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


def slerp_coefficients(a: np.ndarray, b: np.ndarray, t: float) -> tuple[float, float]:
    """Return (c_a, c_b) with c_a a + c_b b the spherical interpolation (linear where
    near-parallel or where one tensor is zero)."""
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 1.0 - t, t
    dot = float(np.clip(np.vdot(a, b) / (na * nb), -1.0, 1.0))
    if abs(dot) > SLERP_PARALLEL:
        return 1.0 - t, t
    theta = math.acos(dot)
    sin = math.sin(theta)
    return math.sin((1 - t) * theta) / sin, math.sin(t * theta) / sin


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Return the spherical interpolation of two tensors (linear where near-parallel)."""
    c_a, c_b = slerp_coefficients(a, b, t)
    return c_a * a + c_b * b


@dataclass(frozen=True)
class Coefficients:
    """A module merged as sum_j values[j] * D_j: re-factored from the LoRA factors, exactly."""

    values: tuple[float, ...]


ModuleMerge = Callable[[str, list[np.ndarray]], "np.ndarray | Coefficients"]


def combine(
    tensors: Sequence[np.ndarray],
    weights: Sequence[float],
    method: str,
    density: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Return the element-wise merge of same-shape tensors, before lambda (module docstring)."""
    stack = np.stack([t.astype(np.float64) for t in tensors])
    w = np.asarray(weights, dtype=np.float64).reshape((-1,) + (1,) * (stack.ndim - 1))
    if method == "slerp":
        return slerp(stack[0], stack[1], float(w[1].item() / w.sum()))
    if method == "task_arithmetic":
        return (stack * w).sum(axis=0)
    if method == "linear":
        return (stack * w).sum(axis=0) / w.sum()
    if method == "ties":
        trimmed = np.stack([magnitude_trim(t, density) for t in stack])
    else:
        trimmed = np.stack([random_trim(t, density, rng) for t in stack])
    if method == "dare_linear":
        return (trimmed * w).sum(axis=0) / w.sum()
    elected = np.where((trimmed * w).sum(axis=0) >= 0, 1.0, -1.0)
    agree = np.sign(trimmed) == elected
    total = (w * agree).sum(axis=0)
    merged = (trimmed * w * agree).sum(axis=0)
    return np.divide(merged, total, out=np.zeros_like(merged), where=total > 0)


def linear_coefficients(
    spec: MergeSpec, weights: Sequence[float], deltas: Sequence[np.ndarray]
) -> Coefficients:
    """Return a linear, task-arithmetic or SLERP merge (sequential too) as coefficients."""
    w = np.asarray(weights, dtype=np.float64)
    if not spec.sequential:
        if spec.method == "linear":
            c = w / w.sum()
        elif spec.method == "task_arithmetic":
            c = w
        else:
            c = np.asarray(slerp_coefficients(deltas[0], deltas[1], float(w[1] / w.sum())))
        return Coefficients(tuple(float(x) for x in spec.lam * c))
    c = np.zeros(len(deltas))
    c[0], running, held = 1.0, deltas[0], w[0]
    for k in range(1, len(deltas)):
        pair = (1.0 - spec.t, spec.t) if spec.t is not None else (held, w[k])
        total = pair[0] + pair[1]
        if total <= 0:  # nothing held yet and nothing added: skip
            continue
        if spec.method == "linear":
            keep, add = pair[0] / total, pair[1] / total
        else:
            keep, add = slerp_coefficients(running, deltas[k], pair[1] / total)
        c *= keep
        c[k] += add
        running = keep * running + add * deltas[k]
        held += w[k]
    return Coefficients(tuple(float(x) for x in spec.lam * c))


def module_merge(spec: MergeSpec, weights: Sequence[float]) -> ModuleMerge:
    """Return the function merging one module's dense deltas by spec (lambda included)."""
    rng = np.random.default_rng(spec.seed)

    def merge(_module: str, deltas: list[np.ndarray]) -> np.ndarray | Coefficients:
        if spec.method in LINEAR_FAMILY:
            return linear_coefficients(spec, weights, deltas)
        if not spec.sequential:
            return spec.lam * combine(deltas, weights, spec.method, spec.density, rng)
        running, held = deltas[0], weights[0]
        for delta, w in zip(deltas[1:], weights[1:], strict=True):
            if held + w <= 0:  # nothing held yet and nothing added: skip
                continue
            running = combine([running, delta], (held, w), spec.method, spec.density, rng)
            held += w
        return spec.lam * running

    return merge


def _modules(adapter: Adapter) -> list[str]:
    return sorted(n[: -len(".lora_a")] for n in adapter.tensors if n.endswith(".lora_a"))


def check_compatible(adapters: Sequence[Adapter]) -> list[str]:
    """Return the LoRA modules all adapters share; raise PacketError if they differ."""
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


def merged_rank(adapters: Sequence[Adapter], modules: Sequence[str], rank: int | None) -> int:
    """Return the output rank (default: the sum of the input ranks, at most 64).

    Raises PacketError, before any delta is built, if a given rank exceeds every module's
    smaller dimension (all the extra directions could only be zero).
    """
    if rank is None:
        return min(sum(a.config.rank for a in adapters), MAX_MERGED_RANK)
    first = adapters[0].tensors
    widest = max(min(first[f"{m}.lora_a"].shape[0], first[f"{m}.lora_b"].shape[1]) for m in modules)
    if rank > widest:
        raise PacketError(f"The merged rank {rank} exceeds every projection's width ({widest}).")
    return rank


def merge_dense(
    adapters: Sequence[Adapter], merge: ModuleMerge, rank: int | None = None
) -> Adapter:
    """Return the adapter whose every module is merge(module, dense deltas), re-factored."""
    modules = check_compatible(adapters)
    rank = merged_rank(adapters, modules, rank)
    tensors: dict[str, np.ndarray] = {}
    for module in modules:
        merged = merge(module, [dense_delta(a, module) for a in adapters])
        if isinstance(merged, Coefficients):
            a_mat, b_mat = refactor_factors(adapters, module, merged.values, rank)
        else:
            a_mat, b_mat = refactor(merged, rank)
        tensors[f"{module}.lora_a"] = a_mat.astype(np.float32)
        tensors[f"{module}.lora_b"] = b_mat.astype(np.float32)
    return _adapter(adapters[0].config, tensors, rank)


def _adapter(base: AdapterConfig, tensors: dict[str, np.ndarray], rank: int) -> Adapter:
    config = AdapterConfig(
        rank=rank, scale=1.0, dropout=0.0, num_layers=base.num_layers, keys=base.keys
    )
    key = hashlib.sha256(tensors_to_bytes(tensors)).hexdigest()
    return Adapter(config=config, tensors=tensors, key=key)


def merge_adapters(adapters: Sequence[Adapter], spec: MergeSpec = MergeSpec()) -> Adapter:  # noqa: B008
    """Return one adapter merging all of them by spec; raise PacketError if incompatible."""
    weights = spec.check(len(adapters))
    if not spec.factorwise:
        return merge_dense(adapters, module_merge(spec, weights), spec.rank)
    modules = check_compatible(adapters)
    ranks = {a.config.rank for a in adapters}
    if len(ranks) != 1 or any(is_trimmed(a) for a in adapters):
        raise PacketError("The factor-wise merge needs adapters of one rank, untrimmed.")
    rank = ranks.pop()
    shares = np.asarray(weights) / (sum(weights) if spec.method == "linear" else 1.0)
    factor_w = [float(np.sqrt(w * a.config.scale)) for w, a in zip(shares, adapters, strict=True)]
    method = "task_arithmetic" if spec.method == "linear" else spec.method
    rng = np.random.default_rng(spec.seed)
    tensors: dict[str, np.ndarray] = {}
    for module in modules:
        for part in ("lora_a", "lora_b"):
            parts = [
                f * a.tensors[f"{module}.{part}"] for f, a in zip(factor_w, adapters, strict=True)
            ]
            merged = spec.lam * combine(parts, [1.0] * len(parts), method, spec.density, rng)
            tensors[f"{module}.{part}"] = merged.astype(np.float32)
    return _adapter(adapters[0].config, tensors, rank)


def merge_with_coefficients(
    adapters: Sequence[Adapter],
    coefficients: Mapping[str, Sequence[float]],
    rank: int | None = None,
) -> Adapter:
    """Return sum_j c[module][j] * D_j per module (an adaptive merge's result), re-factored.

    Raises PacketError if a module has no coefficients or the wrong number of them.
    """

    def merge(module: str, deltas: list[np.ndarray]) -> Coefficients:
        c = coefficients.get(module)
        if c is None or len(c) != len(deltas):
            raise PacketError(f"The merge has no coefficients for {module}.")
        return Coefficients(tuple(float(w) for w in c))

    return merge_dense(adapters, merge, rank)
