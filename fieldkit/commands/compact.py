"""`fieldkit library compact NAME --bits 8|4 [--energy E] [--name NEW]`: a smaller packet."""

from __future__ import annotations

import click

from fieldkit.commands import services


@click.command("compact")
@click.argument("name")
@click.option(
    "--bits",
    type=click.Choice(["8", "4", "16"]),
    required=True,
    help="Weights as int8, 4-bit (per-group scales), or float16 (16: trim only).",
)
@click.option(
    "--energy",
    type=float,
    default=None,
    help="Trim each module to the smallest rank holding this share of its energy (e.g. 0.95).",
)
@click.option("--name", "new_name", help="Name of the new packet (default: replace NAME).")
def compact_command(name: str, bits: str, energy: float | None, new_name: str | None) -> None:
    """Sign a smaller copy of a packet: quantised and/or rank-trimmed, naming its source."""
    from fieldkit.store.compact import compact_packet
    from fieldkit.store.quantize import Compaction, ranks

    compaction = Compaction(bits=None if bits == "16" else int(bits), energy=energy)
    library = services().library
    source, record = compact_packet(library, name, compaction, name=new_name)
    kept = ranks(library.load_adapter(record))
    click.echo(
        f"Compacted {source.name!r} into {record.name!r} (id {record.short_id}, "
        f"{record.manifest['dtype']}, ranks {min(kept)}-{max(kept)} mean "
        f"{sum(kept) / len(kept):.1f}): {source.size:,} -> {record.size:,} bytes, "
        "signed by this device."
    )
