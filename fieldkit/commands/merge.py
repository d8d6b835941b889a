"""`fieldkit merge A B [...] --method ties --name M`: one packet from several, marked merged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from fieldkit.commands import services
from fieldkit.errors import LibraryError, PacketError

if TYPE_CHECKING:
    from fieldkit.store.adapter import Adapter

METHOD_CHOICES = (
    "linear", "task_arithmetic", "ties", "dare_linear", "dare_ties", "slerp", "adaptive",
)  # fmt: skip

HELP = """Merge PACKETS (names or ids) into a new packet in the library.

\b
Methods (dense deltas, re-factored by SVD; --weights for each, one per packet):
  linear           weighted mean (--weights 0.7,0.3: specialist + generalist)
  task_arithmetic  lambda * weighted sum (--lambda; weights may be negative)
  ties             top --density share, sign election, disjoint mean
  dare_linear      random drop to --density, rescale, weighted mean (--seed)
  dare_ties        random drop, then TIES' election (0.5/0.5: the common recipe)
  slerp            spherical interpolation of two packets (--t, or --weights)
  adaptive         per-module (or --granularity layer) coefficients learned with
                   MLX by minimising the merged model's next-token entropy on the
                   packets' exemplar questions (--steps, --minutes, --seed)
--sequential merges three or more in the order given: A+B, then +C.

Merging packets of different domains loses what each knows: on the 100 demo held-out
questions routing between the packets scored 61%, every single merge 0-2%, and one 80/20
merge per domain (an oracle picking the merge for each question) 50% (docs/BENCHMARKS.md,
"Every merging method"); `fieldkit ask` routes instead. Two packets of the same domain
(trained on disjoint halves of its records) are where a merge could help, and did not:
every single merge scored 3-19% keyword recall, below both packets alone (48% and 28%);
routing between the two scored 71%.
"""


def parse_weights(text: str | None) -> tuple[float, ...] | None:
    """Return the comma-separated weights as floats; raise PacketError if one is not a number."""
    if text is None:
        return None
    try:
        return tuple(float(w) for w in text.split(","))
    except ValueError as exc:
        raise PacketError("--weights must be numbers separated by commas.") from exc


@click.command("merge", help=HELP)
@click.argument("packets", nargs=-1, required=True)
@click.option("--name", required=True, help="Name of the merged packet.")
@click.option("--method", type=click.Choice(METHOD_CHOICES), default="ties", show_default=True)
@click.option("--density", default=0.5, show_default=True, help="Kept share (ties, dare_*).")
@click.option("--weights", default=None, help="Comma-separated weights, one per packet.")
@click.option("--lambda", "lam", default=1.0, show_default=True, help="Scale of the merged delta.")
@click.option("--t", "t", type=float, default=None, help="SLERP: share of the second packet (0.5).")
@click.option("--sequential", is_flag=True, help="Merge 3+ packets pairwise in the order given.")
@click.option(
    "--rank", type=int, default=None, help="Rank of the merged LoRA (default: sum, <=64)."
)
@click.option(
    "--factorwise",
    is_flag=True,
    help="Merge the A and B factors separately (PEFT add_weighted_adapter) instead of the dense deltas.",
)
@click.option("--domain", default=None, help="Domain label (default: the domains joined by +).")
@click.option(
    "--seed", default=0, show_default=True, help="Seed of DARE's drop and adaptive's batches."
)
@click.option(
    "--granularity",
    type=click.Choice(["module", "layer"]),
    default="module",
    show_default=True,
    help="adaptive: one coefficient per packet and module, or per packet and layer.",
)
@click.option("--steps", default=40, show_default=True, help="adaptive: most learning steps.")
@click.option("--minutes", type=float, default=None, help="adaptive: time budget.")
@click.option(
    "--lr", "learning_rate", default=0.02, show_default=True, help="adaptive: Adam's rate."
)
def merge_command(
    packets: tuple[str, ...],
    name: str,
    method: str,
    density: float,
    weights: str | None,
    lam: float,
    t: float | None,
    sequential: bool,
    rank: int | None,
    factorwise: bool,
    domain: str | None,
    seed: int,
    granularity: str,
    steps: int,
    minutes: float | None,
    learning_rate: float,
) -> None:
    from fieldkit.store.exemplars import fit_exemplars
    from fieldkit.training.merge import MergeSpec, merge_adapters

    svc = services()
    lib = svc.library
    parsed = parse_weights(weights)
    # Every parameter is checked before a packet is read.
    if method == "adaptive":
        from fieldkit.training.adaptive_merge import AdaptiveConfig

        config = AdaptiveConfig(
            granularity=granularity,
            steps=steps,
            learning_rate=learning_rate,
            time_budget_s=None if minutes is None else 60.0 * minutes,
            seed=seed,
            weights=parsed,
            rank=rank,
        )
        MergeSpec("linear", weights=parsed, rank=rank).check(len(packets))
    else:
        spec = MergeSpec(
            method=method,
            density=density,
            weights=parsed,
            rank=rank,
            factorwise=factorwise,
            seed=seed,
            lam=lam,
            t=t,
            sequential=sequential,
        )
        spec.check(len(packets))
    lib.require_free_name(name.strip())
    records = [lib.get(p) for p in packets]
    ids = [r.packet_id for r in records]
    twice = next((r for r in records if ids.count(r.packet_id) > 1), None)
    if twice is not None:
        raise PacketError(f"The packet {twice.name!r} is named twice; a merge needs distinct ones.")
    if len({r.base_fingerprint for r in records}) != 1:
        raise PacketError("These packets were trained on different base models.")
    exemplars: list[str] = []
    for record in records:
        exemplars += [q for q in record.exemplars if q not in exemplars]
    adapters = [lib.load_adapter(r) for r in records]
    if method == "adaptive":
        from fieldkit.errors import ModelError
        from fieldkit.training.adaptive_merge import learn_merge

        if svc.require_model()[1] != records[0].base_fingerprint:
            raise ModelError("These packets adapt another base model than the one installed.")
        model_dir = svc.model_dir

        with click.progressbar(length=config.steps, label="Learning coefficients") as bar:
            result = learn_merge(
                model_dir, adapters, exemplars, config, on_progress=lambda p: bar.update(1)
            )
        merged, recipe = result.adapter, result.record()
        summary = (
            f"adaptive merge ({granularity}, {result.steps} steps, entropy "
            f"{result.entropy_before:.3f} -> {result.entropy_after:.3f})"
        )
    else:
        merged = merge_adapters(adapters, spec)
        recipe = spec.record(len(adapters), merged.config.rank)
        summary = f"{method} merge ({recipe['variant']}" + (
            f", density {density})" if "density" in recipe else ")"
        )
    record = add_merged(
        lib,
        merged,
        recipe,
        records,
        name=name,
        domain=domain or "+".join(dict.fromkeys(r.domain for r in records)),
        description=f"{summary} of " + ", ".join(r.name for r in records),
        exemplars=fit_exemplars(exemplars),
    )
    click.echo(f"Added {record.name} ({record.short_id}): {summary} of {len(records)} packets.")


def add_merged(
    lib: Any,
    adapter: Adapter,
    recipe: dict[str, Any],
    records: Sequence[Any],
    *,
    name: str,
    domain: str,
    description: str,
    exemplars: Sequence[str],
) -> Any:
    """Sign the merged packet with its recipe in the manifest and store it; return its record."""
    from fieldkit.store.packet import build_manifest

    if lib.identity is None:
        raise LibraryError("This library was opened without a device identity.")
    manifest, signature, data = build_manifest(
        adapter,
        lib.identity,
        name=name,
        domain=domain,
        description=description,
        exemplars=exemplars,
        base_model_id=records[0].base_model_id,
        base_fingerprint=records[0].base_fingerprint,
        merged=True,
        lineage=[r.packet_id for r in records],
        merge=recipe,
    )
    return lib.add(manifest, signature, data, source="local")
