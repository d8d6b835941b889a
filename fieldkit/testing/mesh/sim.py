"""The mesh simulator: N real devices meet in encounters and gossip with the real session.

Each encounter runs `fieldkit.gossip.session.run_session` on both devices (a hostile device
runs `hostile.run_hostile`) over an `EncounterLink` that carries rate x seconds bytes and is
then cut, so a long transfer stops midway and resumes at the next encounter, perhaps with
another peer (the part file and the transfers table are the real ones). Encounters run one
after another inside one event loop, so a seed gives the same run every time.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fieldkit.gossip.session import run_session
from fieldkit.gossip.stream import ByteStream
from fieldkit.gossip.summary import SyncOptions, SyncSummary
from fieldkit.home import Home
from fieldkit.store.library import Library
from fieldkit.testing.mesh.devices import SimDevice, SimPacket, open_device, synthetic_packet
from fieldkit.testing.mesh.encounters import (
    Encounter,
    EncounterModel,
    trace_rounds,
    uniform_rounds,
    village_of,
    village_rounds,
)
from fieldkit.testing.mesh.hostile import HOSTILE_MODES, hostile_packet, run_hostile
from fieldkit.testing.mesh.link import encounter_pair
from fieldkit.testing.mesh.report import MeshResult, RoundStats


@dataclass(frozen=True)
class MeshConfig:
    """One simulation. Sizes in bytes, times in seconds."""

    devices: int = 20
    model: str = "uniform"
    trace: Path | None = None
    hostile: float = 0.0  # share of devices that are hostile
    policy: str = "open"  # open | trusted-only | ask
    seed: int = 0
    packet_size: int = 64 * 1024  # the new packet that must spread
    chunk_size: int = 4096
    shared: int = 0  # packets every honest device already holds
    shared_size: int = 1024
    backlog: int = 0  # older packets only the author holds, besides the new one
    max_rounds: int = 60
    round_seconds: float = 60.0  # simulated time a round stands for
    protocol_version: int = 3
    send_order: str = "newest"
    resume: bool = True
    trust_degree: int = 8  # trusted-only: each device trusts this many others (or its village)
    ask_accept: float = 0.5  # ask: the chance a person accepts a pending peer
    encounters: EncounterModel = field(default_factory=EncounterModel)


def run_mesh(config: MeshConfig, root: Path) -> MeshResult:
    """Run one simulation with every device's home under `root`; return its measurements."""
    return asyncio.run(_Mesh(config, root).run())


class _Mesh:
    def __init__(self, config: MeshConfig, root: Path) -> None:
        self.config = config
        self.root = root
        self.rng = random.Random(config.seed)
        self.devices: list[SimDevice] = []
        self.honest: list[SimDevice] = []
        self.genuine: set[str] = set()
        self.new_packet: SimPacket | None = None
        self.bad: dict[int, SimPacket] = {}
        self.backlog: set[str] = set()
        self.stats = RoundStats()

    async def run(self) -> MeshResult:
        cfg = self.config
        started = time.perf_counter()
        self._build()
        setup = time.perf_counter() - started
        curve: list[float] = []
        seconds: list[float] = []
        for number, encounters in enumerate(self._rounds(), 1):
            for encounter in encounters:
                await self._encounter(encounter)
            curve.append(self._delivery())
            seconds.append(number * cfg.round_seconds)
            if cfg.model != "trace" and (curve[-1] >= 1.0 or number >= cfg.max_rounds):
                break
        bad = self._bad_admitted()
        self.stats.backlog_delivery = self._backlog_delivery()
        for device in self.devices:
            if device.library is not None:
                device.library.close()
        return self.stats.result(cfg, curve, seconds, bad, setup, time.perf_counter() - started)

    # --- building the mesh -------------------------------------------------------------

    def _build(self) -> None:
        cfg = self.config
        n = cfg.devices
        hostile = set(self.rng.sample(range(1, n), round(cfg.hostile * n))) if n > 1 else set()
        template = self._template() if cfg.shared else None
        for index in range(n):
            device = open_device(
                self.root, index, self.rng, template if index not in hostile else None
            )
            device.village = village_of(index, n, cfg.encounters)
            self.devices.append(device)
        author = self.devices[0]
        self.new_packet = synthetic_packet(
            author.identity, "news", cfg.packet_size, cfg.seed, 10_000, cfg.chunk_size
        )
        assert author.library is not None
        author.library.add(
            self.new_packet.manifest, self.new_packet.signature, self.new_packet.data
        )
        self.genuine.add(self.new_packet.packet_id)
        for i in range(cfg.backlog):  # made earlier, and named to sort before "news"
            old = synthetic_packet(
                author.identity,
                f"backlog-{i:03d}",
                cfg.packet_size,
                cfg.seed + 100 + i,
                5_000 + i,
                cfg.chunk_size,
            )
            author.library.add(old.manifest, old.signature, old.data)
            self.genuine.add(old.packet_id)
            self.backlog.add(old.packet_id)
        for i, index in enumerate(sorted(hostile)):
            device = self.devices[index]
            device.hostile = HOSTILE_MODES[i % len(HOSTILE_MODES)]
            assert device.library is not None
            device.library.close()
            device.library = None
            self.bad[index] = hostile_packet(
                device.identity, device.hostile, author.device_id, cfg.chunk_size * 2
            )
        self.honest = [d for d in self.devices if not d.hostile]
        if cfg.policy != "open":
            self._trust_graph()

    def _template(self) -> Path:
        """Build one library holding the shared packets; every honest device starts from a
        copy of its SQLite file (and hard links to its blobs): the same rows it would hold
        after receiving them, without a million verifications before the run starts."""
        cfg = self.config
        home = Home(self.root / "template")
        author = open_device(self.root / "authors", 0, random.Random(cfg.seed + 1))
        library = Library.open(home)
        for i in range(cfg.shared):
            packet = synthetic_packet(
                author.identity, f"shared-{i:05d}", cfg.shared_size, i, 1 + i, 4096
            )
            library.add(packet.manifest, packet.signature, packet.data)
            self.genuine.add(packet.packet_id)
        library.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        library.close()
        assert author.library is not None
        author.library.close()
        return home.root

    def _trust_graph(self) -> None:
        """trusted-only and ask: trust is mutual (people who know each other). In the villages
        model a device trusts its village; else each device picks `trust_degree / 2` others
        at random and each pair trusts both ways (so every device has at least that many).
        Nobody trusts a hostile device."""
        cfg = self.config
        edges: dict[int, set[int]] = {d.index: set() for d in self.honest}
        for device in self.honest:
            if cfg.model == "villages":
                mates = [d for d in self.honest if d.village == device.village and d is not device]
            else:
                others = [d for d in self.honest if d is not device]
                mates = self.rng.sample(others, min(-(-cfg.trust_degree // 2), len(others)))
            for mate in mates:
                edges[device.index].add(mate.index)
                edges[mate.index].add(device.index)
        for device in self.honest:
            assert device.library is not None
            with device.library.db.atomic():
                for mate in sorted(edges[device.index]):
                    device.library.set_trust(self.devices[mate].device_id, "trusted")

    def _rounds(self) -> Iterator[list[Encounter]]:
        cfg = self.config
        if cfg.model == "uniform":
            return uniform_rounds(cfg.devices, cfg.encounters, self.rng)
        if cfg.model == "villages":
            return village_rounds(cfg.devices, cfg.encounters, self.rng)
        assert cfg.trace is not None
        return iter(trace_rounds(cfg.trace, cfg.devices, cfg.round_seconds))

    # --- one encounter -----------------------------------------------------------------

    async def _encounter(self, encounter: Encounter) -> None:
        a, b = self.devices[encounter.a], self.devices[encounter.b]
        if a.hostile and b.hostile:
            return  # nobody honest takes part: nothing to simulate
        budget = int(encounter.rate * encounter.seconds)
        end_a, end_b, link = encounter_pair(budget, f"mesh:{a.index}", f"mesh:{b.index}")
        results = await asyncio.gather(self._side(a, end_a), self._side(b, end_b))
        self.stats.add_encounter(
            link.used, encounter, [(a.index, results[0]), (b.index, results[1])]
        )
        if not self.config.resume:
            for device, result in zip((a, b), results, strict=True):
                if isinstance(result, SyncSummary):
                    _forget_partial(device, result)

    async def _side(self, device: SimDevice, stream: ByteStream) -> SyncSummary | int:
        nonce = self.rng.randbytes(32)
        if device.hostile:
            return await run_hostile(
                stream, device.identity, device.hostile, self.bad[device.index], nonce
            )
        cfg = self.config
        options = SyncOptions(
            policy=cfg.policy,
            handshake_timeout=60,
            idle_timeout=60,
            compression_level=0,  # deterministic byte counts: no timing-driven codec choice
            protocol_version=cfg.protocol_version,
            send_order=cfg.send_order,
        )
        assert device.library is not None
        ask = self.rng.random() < cfg.ask_accept

        async def confirm(peer_id: str, name: str, sas: str) -> bool:
            return ask

        return await run_session(
            stream, device.identity, device.library, options, confirm=confirm, nonce=nonce
        )

    # --- measuring ---------------------------------------------------------------------

    def _delivery(self) -> float:
        assert self.new_packet is not None
        pid = self.new_packet.packet_id
        held = sum(1 for d in self.honest if d.library is not None and d.library.has(pid))
        return held / len(self.honest)

    def _backlog_delivery(self) -> float | None:
        """The share of (honest device, backlog packet) pairs held at the end."""
        if not self.backlog:
            return None
        held = 0
        for device in self.honest:
            assert device.library is not None
            held += sum(device.library.has(pid) for pid in self.backlog)
        return held / (len(self.honest) * len(self.backlog))

    def _bad_admitted(self) -> int:
        """Packets in honest libraries that no honest author made (target 0)."""
        bad = 0
        for device in self.honest:
            assert device.library is not None
            rows = device.library.db.execute("SELECT packet_id FROM packets").fetchall()
            bad += sum(1 for (pid,) in rows if pid not in self.genuine)
        return bad


def _forget_partial(device: SimDevice, summary: SyncSummary) -> None:
    """Without resume: drop the part files of transfers this encounter cut."""
    library = device.library
    assert library is not None
    for report in summary.packets:
        if report.direction == "received" and report.status != "ok":
            library.clear_transfer(report.packet_id)
            library.part_path(report.packet_id).unlink(missing_ok=True)
