"""What a mesh run measured: counters per encounter, the result, its JSON and a terminal plot.

The result follows the ONE simulator's reports: delivery ratio over time, rounds and
simulated seconds to 50/90/99% spread, bytes per device, overhead ratio (bytes beyond the
packets each device lacked, over those packets' bytes), duplicate and resumed transfers,
inventory bytes as a share of all bytes, and bad packets admitted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from fieldkit.gossip.summary import SyncSummary

if TYPE_CHECKING:
    from fieldkit.testing.mesh.encounters import Encounter
    from fieldkit.testing.mesh.sim import MeshConfig

THRESHOLDS = (0.5, 0.9, 0.99)


@dataclass
class RoundStats:
    """Counters summed over every encounter of a run."""

    encounters: int = 0
    bytes_total: int = 0
    useful_bytes: int = 0
    inventory_bytes: int = 0
    hostile_bytes: int = 0
    transfers_started: int = 0
    transfers_completed: int = 0
    duplicate_transfers: int = 0
    resumed_transfers: int = 0
    resume_saved_bytes: int = 0
    refused: int = 0
    sessions_failed: int = 0
    link_seconds: float = 0.0
    backlog_delivery: float | None = None
    completed: set[tuple[int, str]] = field(default_factory=set)

    def add_encounter(
        self, used: int, encounter: Encounter, results: list[tuple[int, SyncSummary | int]]
    ) -> None:
        """Count one encounter: `used` bytes crossed the link; `results` are the two sides'
        (device index, session summary, or a hostile side's bytes sent)."""
        self.encounters += 1
        self.bytes_total += used
        self.link_seconds += used / encounter.rate
        for device, result in results:
            if not isinstance(result, SyncSummary):
                self.hostile_bytes += result
                continue
            self.inventory_bytes += result.inventory_bytes_sent
            self.sessions_failed += result.error is not None
            for report in result.packets:
                if report.direction != "received":
                    continue
                self.refused += report.status == "refused"
                if report.status == "refused":
                    continue
                self.transfers_started += 1
                if report.status != "ok":
                    continue
                key = (device, report.packet_id)
                self.transfers_completed += 1
                self.useful_bytes += report.size
                if report.resumed_from:
                    self.resumed_transfers += 1
                    self.resume_saved_bytes += report.resumed_from
                self.duplicate_transfers += key in self.completed  # a device got it twice
                self.completed.add(key)

    def result(
        self,
        config: MeshConfig,
        curve: list[float],
        seconds: list[float],
        bad_admitted: int,
        setup_seconds: float,
        wall_seconds: float,
    ) -> MeshResult:
        """Return the run's result."""
        reached: dict[str, int | None] = {}
        at: dict[str, float | None] = {}
        for share in THRESHOLDS:
            key = f"{round(share * 100)}"
            first = next((i for i, d in enumerate(curve) if d >= share), None)
            reached[key] = None if first is None else first + 1
            at[key] = None if first is None else seconds[first]
        useful = self.useful_bytes
        return MeshResult(
            devices=config.devices,
            model=config.model,
            policy=config.policy,
            seed=config.seed,
            protocol_version=config.protocol_version,
            send_order=config.send_order,
            resume=config.resume,
            packet_size=config.packet_size,
            shared=config.shared,
            backlog=config.backlog,
            backlog_delivery=self.backlog_delivery,
            hostile_share=config.hostile,
            delivery=curve[-1] if curve else 0.0,
            rounds=len(curve),
            rounds_to_50=reached["50"],
            rounds_to_90=reached["90"],
            rounds_to_99=reached["99"],
            seconds_to_50=at["50"],
            seconds_to_90=at["90"],
            seconds_to_99=at["99"],
            overhead_ratio=(self.bytes_total - useful) / useful if useful else None,
            inventory_share=self.inventory_bytes / self.bytes_total if self.bytes_total else 0.0,
            bad_admitted=bad_admitted,
            bytes_total=self.bytes_total,
            bytes_per_device=self.bytes_total / config.devices,
            useful_bytes=useful,
            inventory_bytes=self.inventory_bytes,
            hostile_bytes=self.hostile_bytes,
            encounters=self.encounters,
            transfers_started=self.transfers_started,
            transfers_completed=self.transfers_completed,
            duplicate_transfers=self.duplicate_transfers,
            resumed_transfers=self.resumed_transfers,
            resume_saved_bytes=self.resume_saved_bytes,
            refused=self.refused,
            sessions_failed=self.sessions_failed,
            curve=[round(d, 4) for d in curve],
            setup_seconds=round(setup_seconds, 2),
            wall_seconds=round(wall_seconds, 2),
        )


@dataclass
class MeshResult:
    """One run's measurements (the keys of `fieldkit bench mesh --json`)."""

    devices: int
    model: str
    policy: str
    seed: int
    protocol_version: int
    send_order: str
    resume: bool
    packet_size: int
    shared: int
    backlog: int
    backlog_delivery: float | None
    hostile_share: float
    delivery: float
    rounds: int
    rounds_to_50: int | None
    rounds_to_90: int | None
    rounds_to_99: int | None
    seconds_to_50: float | None
    seconds_to_90: float | None
    seconds_to_99: float | None
    overhead_ratio: float | None
    inventory_share: float
    bad_admitted: int
    bytes_total: int
    bytes_per_device: float
    useful_bytes: int
    inventory_bytes: int
    hostile_bytes: int
    encounters: int
    transfers_started: int
    transfers_completed: int
    duplicate_transfers: int
    resumed_transfers: int
    resume_saved_bytes: int
    refused: int
    sessions_failed: int
    curve: list[float]
    setup_seconds: float
    wall_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return asdict(self)


def spread_plot(result: MeshResult, width: int = 50, rows: int = 30) -> str:
    """Return the spread curve as text: one bar per round (at most `rows` rounds shown)."""
    curve = result.curve
    step = max(1, -(-len(curve) // rows))
    lines = [f"share of honest devices holding the new packet, by round ({result.model})"]
    for i in range(0, len(curve), step):
        share = curve[i]
        bar = "#" * round(share * width)
        lines.append(f"{i + 1:>5} |{bar:<{width}}| {share * 100:5.1f}%")
    return "\n".join(lines)
