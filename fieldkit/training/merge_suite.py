"""The merges `fieldkit bench quality` scores: every recipe the published merging work names.

Each recipe builds one merged adapter from the n specialists (in the order of the domains)
and is timed. Two kinds are special:

- `favour` recipes (linear 70/30, 80/20: "specialist + generalist") give one packet the
  share `favour` and split the rest evenly among the others. One such merge is built per
  domain and each question is answered by the merge that favours its own domain: an oracle
  choice, the most generous reading of fixed weights. The quality harness also scores the
  same merges chosen by the router (`<name> routed`): the merge favouring the routed packet.
- `adaptive` learns per-module coefficients on the packets' exemplar questions (no
  answers) within a time budget (fieldkit/training/adaptive_merge.py).

A recipe that needs more packets than there are (sequential: three) is left out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fieldkit.errors import FieldkitError
from fieldkit.training.merge import MergeSpec, merge_adapters


@dataclass(frozen=True)
class Recipe:
    """One merge of the suite: a spec for n packets, or a favoured share, or adaptive."""

    name: str
    spec: Callable[[int], MergeSpec] | None = None
    favour: float | None = None
    adaptive: bool = False
    min_packets: int = 2


def _slerp(n: int) -> MergeSpec:
    # Two packets: t = 0.5. More: pairwise in order with equal running shares (1/2, 1/3, ...).
    return MergeSpec("slerp", t=0.5) if n == 2 else MergeSpec("slerp", sequential=True)


SUITE: tuple[Recipe, ...] = (
    Recipe("linear", lambda n: MergeSpec("linear")),
    Recipe("linear-70/30", favour=0.7),
    Recipe("linear-80/20", favour=0.8),
    Recipe("task-arithmetic-0.5", lambda n: MergeSpec("task_arithmetic", lam=0.5)),
    Recipe("ties-0.2", lambda n: MergeSpec("ties", 0.2)),
    Recipe("ties", lambda n: MergeSpec("ties", 0.5)),
    Recipe("ties-0.8", lambda n: MergeSpec("ties", 0.8)),
    Recipe("dare-linear-0.2", lambda n: MergeSpec("dare_linear", 0.2)),
    Recipe("dare-linear-0.5", lambda n: MergeSpec("dare_linear", 0.5)),
    Recipe("dare-linear-0.8", lambda n: MergeSpec("dare_linear", 0.8)),
    Recipe("dare-ties-0.5/0.5", lambda n: MergeSpec("dare_ties", 0.5, weights=(0.5,) * n)),
    Recipe("slerp-0.5", _slerp),
    Recipe("sequential-ties-0.5", lambda n: MergeSpec("ties", 0.5, sequential=True), min_packets=3),
    Recipe("adaptive", adaptive=True),
)
DEFAULT = ",".join(r.name for r in SUITE)


def choose(names: str | None) -> list[Recipe]:
    """Return the recipes named (comma-separated; None: the whole suite) in suite order.

    Raises FieldkitError naming the first unknown recipe.
    """
    if names is None:
        return list(SUITE)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = {r.name: r for r in SUITE}
    for name in wanted:
        if name not in known and name != "ties-factorwise":
            raise FieldkitError(f"No merge recipe named {name!r}; the suite is: {DEFAULT}.")
    return [r for r in SUITE if r.name in wanted]


@dataclass
class SuiteResult:
    """What the suite built: adapters by system name, per-domain choices, costs in seconds."""

    adapters: dict[str, Any] = field(default_factory=dict)
    favoured: dict[str, dict[str, str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    recipes: dict[str, Any] = field(default_factory=dict)


def build_suite(
    recipes: Sequence[Recipe],
    domains: Sequence[str],
    specialists: Sequence[Any],
    exemplars: Sequence[str],
    model_dir: Path,
    adaptive_budget_s: float = 240.0,
    log: Callable[[str], None] = print,
) -> SuiteResult:
    """Build and time every recipe's merge of the specialists (one per domain, same order)."""
    n = len(specialists)
    out = SuiteResult()
    for recipe in recipes:
        if n < recipe.min_packets:
            continue
        start = time.perf_counter()
        if recipe.favour is not None:
            out.favoured[recipe.name] = {}
            for k, domain in enumerate(domains):
                rest = (1.0 - recipe.favour) / (n - 1)
                weights = tuple(recipe.favour if j == k else rest for j in range(n))
                system = f"{recipe.name}:{domain}"
                out.adapters[system] = merge_adapters(
                    specialists, MergeSpec("linear", weights=weights)
                )
                out.favoured[recipe.name][domain] = system
            out.recipes[recipe.name] = {"method": "linear", "favour": recipe.favour}
        elif recipe.adaptive:
            from fieldkit.training.adaptive_merge import AdaptiveConfig, learn_merge

            config = AdaptiveConfig(steps=60, learning_rate=0.05, time_budget_s=adaptive_budget_s)
            result = learn_merge(model_dir, specialists, exemplars, config)
            out.adapters[recipe.name] = result.adapter
            recipe_record = result.record()
            recipe_record.pop("coefficients")
            out.recipes[recipe.name] = recipe_record
        else:
            spec = recipe.spec(n)
            out.adapters[recipe.name] = merge_adapters(specialists, spec)
            out.recipes[recipe.name] = spec.record(n, out.adapters[recipe.name].config.rank)
        out.seconds[recipe.name] = round(time.perf_counter() - start, 1)
        log(f"{recipe.name}: merged in {out.seconds[recipe.name]} s")
    return out
