"""`fieldkit merge A B [...] --method ties --name M`: one packet from several, marked merged."""

from __future__ import annotations

import click

from fieldkit.commands import services
from fieldkit.errors import LibraryError, PacketError

MAX_EXEMPLARS = 64


@click.command("merge")
@click.argument("packets", nargs=-1, required=True)
@click.option("--name", required=True, help="Name of the merged packet.")
@click.option(
    "--method",
    type=click.Choice(["linear", "ties", "dare_ties"]),
    default="ties",
    show_default=True,
)
@click.option("--density", default=0.5, show_default=True, help="Kept share (ties, dare_ties).")
@click.option("--weights", default=None, help="Comma-separated weights, one per packet.")
@click.option(
    "--rank", type=int, default=None, help="Rank of the merged LoRA (default: sum, <=64)."
)
@click.option(
    "--factorwise",
    is_flag=True,
    help="Merge the A and B factors separately (PEFT add_weighted_adapter) instead of the dense deltas.",
)
@click.option("--domain", default=None, help="Domain label (default: the domains joined by +).")
@click.option("--seed", default=0, show_default=True, help="Seed of dare_ties' random trim.")
def merge_command(
    packets: tuple[str, ...],
    name: str,
    method: str,
    density: float,
    weights: str | None,
    rank: int | None,
    factorwise: bool,
    domain: str | None,
    seed: int,
) -> None:
    """Merge PACKETS (names or ids) into a new packet in the library."""
    from fieldkit.training.merge import MergeSpec, merge_adapters

    svc = services()
    lib = svc.library
    if len(packets) < 2:
        raise PacketError("A merge needs at least two packets.")
    if any(r.name == name.strip() for r in lib.list_packets()):
        raise LibraryError(f"A packet named {name.strip()!r} is already in the library.")
    records = [lib.get(p) for p in packets]
    if len({r.base_fingerprint for r in records}) != 1:
        raise PacketError("These packets were trained on different base models.")
    try:
        parsed = tuple(float(w) for w in weights.split(",")) if weights else None
    except ValueError as exc:
        raise PacketError("--weights must be numbers separated by commas.") from exc
    spec = MergeSpec(
        method=method,
        density=density,
        weights=parsed,
        rank=rank,
        factorwise=factorwise,
        seed=seed,
    )
    merged = merge_adapters([lib.load_adapter(r) for r in records], spec)
    exemplars: list[str] = []
    for record in records:
        exemplars += [q for q in record.exemplars if q not in exemplars]
    step = max(1, -(-len(exemplars) // MAX_EXEMPLARS))
    variant = "factor-wise" if factorwise else "dense"
    record = lib.add_local(
        merged,
        name=name,
        domain=domain or "+".join(dict.fromkeys(r.domain for r in records)),
        description=f"{method} merge ({variant}, density {density}) of "
        + ", ".join(r.name for r in records),
        exemplars=exemplars[::step][:MAX_EXEMPLARS],
        base_model_id=records[0].base_model_id,
        base_fingerprint=records[0].base_fingerprint,
        merged=True,
        lineage=[r.packet_id for r in records],
    )
    click.echo(
        f"Added {record.name} ({record.short_id}): {method} merge of {len(records)} packets."
    )
