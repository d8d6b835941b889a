"""Two devices (home, identity, library) and ways to sync them over real parts."""

from __future__ import annotations

import asyncio
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from fieldkit.gossip.session import run_session
from fieldkit.gossip.summary import SyncOptions, SyncSummary
from fieldkit.home import Home
from fieldkit.store.identity import Identity
from fieldkit.store.library import Library
from fieldkit.testing.memory_link import Faults, MemoryStream, memory_pair
from tests.fixtures.processes import FIELDKIT


@dataclass
class Device:
    """One simulated laptop."""

    home: Home
    identity: Identity
    library: Library
    base_fingerprint: str | None = None  # None: packets for any base model are accepted

    @classmethod
    def open(cls, home: Home) -> Device:
        identity = Identity.load_or_create(home)
        return cls(home, identity, Library.open(home, identity=identity))

    @property
    def device_id(self) -> str:
        return self.identity.device_id

    def trust(self, other: Device) -> None:
        self.library.set_trust(other.device_id, "trusted")

    def packet_ids(self) -> set[str]:
        return {r.packet_id for r in self.library.list_packets()}


FAST = SyncOptions(handshake_timeout=5, idle_timeout=2)


@dataclass
class SlowPerson:
    """A confirm callback: a person who takes `seconds` to compare the code, then accepts;
    `asked` keeps each code shown."""

    seconds: float
    asked: list[str] = field(default_factory=list)

    async def __call__(self, peer_id: str, name: str, sas: str) -> bool:
        self.asked.append(sas)
        await asyncio.sleep(self.seconds)
        return True


async def sync_memory(
    a: Device,
    b: Device,
    a_to_b: Faults | None = None,
    b_to_a: Faults | None = None,
    options_a: SyncOptions | None = None,
    options_b: SyncOptions | None = None,
) -> tuple[SyncSummary, SyncSummary]:
    """Run one session between a and b over the in-memory pair; return both summaries."""
    sa, sb, _ = await sync_memory_link(a, b, a_to_b, b_to_a, options_a, options_b)
    return sa, sb


async def sync_memory_link(
    a: Device,
    b: Device,
    a_to_b: Faults | None = None,
    b_to_a: Faults | None = None,
    options_a: SyncOptions | None = None,
    options_b: SyncOptions | None = None,
) -> tuple[SyncSummary, SyncSummary, MemoryStream]:
    """Like sync_memory, and also return a's end of the link (its `delivered` bytes)."""
    link_a, link_b = memory_pair(a_to_b, b_to_a)
    sa, sb = await asyncio.gather(
        run_session(link_a, a.identity, a.library, options_a or FAST),
        run_session(link_b, b.identity, b.library, options_b or FAST),
    )
    return sa, sb, link_a


def start_listener_process(home: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    """Run `fieldkit sync --listen --once --json` on 127.0.0.1 in a real process; return it
    and its port (`extra`: more `sync` options)."""
    proc = subprocess.Popen(
        [*FIELDKIT, "--home", str(home),
         "sync", "--listen", "--port", "0", "--once", "--json", "--idle-timeout", "5", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
        cwd=Path(__file__).parents[2],
    )  # fmt: skip
    line = proc.stderr.readline()
    assert "Listening on" in line, line + proc.stderr.read()
    return proc, int(line.split(":")[1].split()[0])
