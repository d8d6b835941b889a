"""Waiting for the app's workers without letting a failed one abort the test."""

from __future__ import annotations

import asyncio

from textual.pilot import Pilot


async def settle(pilot: Pilot, rounds: int = 3) -> None:
    """Wait until no worker is running (failures are notifications, checked by the tests)."""
    for _ in range(rounds):
        workers = [w for w in pilot.app.workers if w.is_running]
        if workers:
            await asyncio.gather(*(w.wait() for w in workers), return_exceptions=True)
        await pilot.pause()


def notices(pilot: Pilot) -> list[str]:
    """Return the text of every notification shown so far."""
    return [n.message for n in pilot.app._notifications]
