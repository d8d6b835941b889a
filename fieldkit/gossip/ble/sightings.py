"""What one Bluetooth LE scan saw: the fieldkit peers, by short id.

Both centrals (bumble's and bleak's) turn each advertisement into an `Advertisement` in
their own library's terms and hand it here, so the rules for a sighting live in one place:
an advertisement without a name keeps the name seen before, the newest signal strength
wins, and a scan for one peer (`stop_early`) ends as soon as that peer is seen.
"""

from __future__ import annotations

import asyncio
import contextlib

from fieldkit.formats import shown_text
from fieldkit.gossip.ble.link import Advertisement, Sighting


class Sightings:
    """The peers one scan has seen; `stop_early` is a short id (or prefix; "" = anyone)."""

    def __init__(self, stop_early: str | None = None) -> None:
        self.seen: dict[str, Sighting] = {}
        self._stop_early = stop_early.lower() if stop_early is not None else None
        self._found = asyncio.Event()

    def add(self, ours: Advertisement, name: str | None, rssi: int, address: str) -> None:
        """Record one advertisement heard from `address` with `name` (None: none sent)."""
        previous = self.seen.get(ours.short_id)
        self.seen[ours.short_id] = Sighting(
            name=shown_text(name) if name else (previous.name if previous else ""),
            short_id=ours.short_id,
            rssi=rssi,
            address=address,
            version=ours.version,
            connects=ours.connects,
        )
        if self._stop_early is not None and ours.short_id.startswith(self._stop_early):
            self._found.set()

    async def wait(self, seconds: float) -> None:
        """Return after `seconds`, or as soon as the `stop_early` peer was seen."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._found.wait(), seconds)

    def strongest_first(self) -> list[Sighting]:
        """Return the sightings, strongest signal first."""
        return sorted(self.seen.values(), key=lambda s: -s.rssi)
