"""A radio encounter as a ByteStream pair: both directions share one byte budget.

A double of a BLE or Wi-Fi link between two passing devices: `budget` bytes may cross it in
either direction (rate x encounter seconds; a BLE link carries one direction at a time), then
it is cut mid-frame and both ends see the end of the stream. No real time passes: the
simulated time an encounter took is `used / rate`.
"""

from __future__ import annotations

import asyncio

from fieldkit.testing.memory_link import QueueStream


class EncounterLink:
    """The shared state of one encounter's link."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.cut = False
        self.queues: tuple[asyncio.Queue[bytes], asyncio.Queue[bytes]] = (
            asyncio.Queue(),
            asyncio.Queue(),
        )

    def push(self, to: int, data: bytes) -> None:
        """Deliver `data` towards end `to`, or the part of it that fits, then cut."""
        room = self.budget - self.used
        keep = data[:room] if len(data) > room else data
        self.used += len(keep)
        if keep:
            self.queues[to].put_nowait(keep)
        if len(data) > room:
            self.cut_now()

    def cut_now(self) -> None:
        if not self.cut:
            self.cut = True
            for queue in self.queues:
                queue.put_nowait(b"")


class EncounterStream(QueueStream):
    """One end of an encounter; implements fieldkit.gossip.stream.ByteStream."""

    def __init__(self, link: EncounterLink, end: int, label: str) -> None:
        super().__init__(label, link.queues[end], link.queues[1 - end])
        self._link = link
        self._end = end

    def _cut(self) -> bool:
        return self._link.cut

    async def _deliver(self, data: bytes) -> None:
        await asyncio.sleep(0)  # let the other end run, as a real transport would
        self._link.push(1 - self._end, data)


def encounter_pair(
    budget: int, label_a: str, label_b: str
) -> tuple[EncounterStream, EncounterStream, EncounterLink]:
    """Return (a's end, b's end, link) of an encounter that can carry `budget` bytes."""
    link = EncounterLink(budget)
    return EncounterStream(link, 0, label_b), EncounterStream(link, 1, label_a), link
