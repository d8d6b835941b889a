"""`fieldkit bench mesh`: N devices gossiping in simulated encounters, on the real protocol.

Every device is a real identity and SQLite library in a temporary folder (on /dev/shm when
it exists: many small files and no disk to wait for); encounters run the real session over
links with a byte rate and a length, so long transfers are cut and resume. See docs/MESH.md.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import click

from fieldkit.errors import FieldkitError
from fieldkit.gossip.summary import SEND_ORDERS
from fieldkit.store.settings import RECEIVE_POLICIES as POLICIES
from fieldkit.testing.mesh import MODELS, EncounterModel, MeshConfig, run_mesh, spread_plot


def _by_round(value: int | None) -> str:
    return "never" if value is None else f"round {value}"


@click.command("mesh")
@click.option("--devices", default=100, show_default=True, help="How many devices.")
@click.option(
    "--encounters", "model", type=click.Choice(MODELS), default="uniform", show_default=True
)
@click.option(
    "--trace",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Contact trace for --encounters trace: lines `time a b seconds [rate]`.",
)
@click.option("--hostile", default=0.0, show_default=True, help="Share of hostile devices (0-0.5).")
@click.option("--policy", type=click.Choice(POLICIES), default="open", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--packet-kb", default=64, show_default=True, help="Size of the new packet.")
@click.option("--shared", default=0, show_default=True, help="Packets every device already holds.")
@click.option(
    "--backlog", default=0, show_default=True, help="Older packets only the author holds."
)
@click.option("--rate-kb", default=100.0, show_default=True, help="Link rate, kB/s (uniform).")
@click.option("--seconds", default=60.0, show_default=True, help="Encounter length (uniform).")
@click.option("--round-seconds", default=None, type=float, help="Simulated time of a round.")
@click.option("--village-size", default=50, show_default=True)
@click.option("--rounds", "max_rounds", default=60, show_default=True, help="Stop after this many.")
@click.option(
    "--protocol", "protocol_version", type=click.IntRange(1, 3), default=3, show_default=True
)
@click.option(
    "--order", "send_order", type=click.Choice(SEND_ORDERS), default="newest", show_default=True
)
@click.option("--no-resume", is_flag=True, help="Drop partial transfers when an encounter ends.")
@click.option("--json", "as_json", is_flag=True, help="Print the measurements as JSON.")
def mesh(
    devices: int,
    model: str,
    trace: Path | None,
    hostile: float,
    policy: str,
    seed: int,
    packet_kb: int,
    shared: int,
    backlog: int,
    rate_kb: float,
    seconds: float,
    round_seconds: float | None,
    village_size: int,
    max_rounds: int,
    protocol_version: int,
    send_order: str,
    no_resume: bool,
    as_json: bool,
) -> None:
    """Simulate a mesh of devices spreading one new packet; print the spread curve."""
    if devices < 2:
        raise FieldkitError("A mesh needs at least 2 devices.")
    if not 0 <= hostile <= 0.5:
        raise FieldkitError("--hostile is a share of the devices, from 0 to 0.5.")
    if (model == "trace") != (trace is not None):
        raise FieldkitError("--trace FILE goes with --encounters trace, and only with it.")
    if packet_kb < 1 or shared < 0 or backlog < 0 or rate_kb <= 0 or seconds <= 0:
        raise FieldkitError("Sizes, rates and lengths must be positive.")
    encounters = EncounterModel(rate=rate_kb * 1000, seconds=seconds, village_size=village_size)
    config = MeshConfig(
        devices=devices,
        model=model,
        trace=trace,
        hostile=hostile,
        policy=policy,
        seed=seed,
        packet_size=packet_kb * 1024,
        chunk_size=32 * 1024 if packet_kb >= 512 else 4096,
        shared=shared,
        backlog=backlog,
        max_rounds=max_rounds,
        round_seconds=round_seconds or (3600.0 if model == "villages" else seconds),
        protocol_version=protocol_version,
        send_order=send_order,
        resume=not no_resume,
        encounters=encounters,
    )
    scratch = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="fieldkit-mesh-", dir=scratch) as root:
        result = run_mesh(config, Path(root))
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    click.echo(spread_plot(result))
    r = result
    click.echo(
        f"delivery {r.delivery * 100:.1f}% after {r.rounds} rounds; 50/90/99%: "
        f"{_by_round(r.rounds_to_50)}, {_by_round(r.rounds_to_90)}, {_by_round(r.rounds_to_99)}\n"
        f"bytes per device {r.bytes_per_device / 1000:.1f} kB, overhead ratio "
        f"{r.overhead_ratio if r.overhead_ratio is None else round(r.overhead_ratio, 3)}, "
        f"inventory share {r.inventory_share * 100:.2f}%\n"
        f"transfers {r.transfers_completed}/{r.transfers_started} completed, "
        f"{r.resumed_transfers} resumed ({r.resume_saved_bytes / 1000:.0f} kB saved), "
        f"{r.duplicate_transfers} duplicate; bad packets admitted {r.bad_admitted}, "
        f"refused {r.refused}\n"
        f"wall {r.wall_seconds:.1f} s (setup {r.setup_seconds:.1f} s)"
    )
