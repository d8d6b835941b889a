"""Waiting for the app's workers without letting a failed one abort the test."""

from __future__ import annotations

import asyncio
import time

from textual.app import App
from textual.pilot import Pilot
from textual.screen import ModalScreen, Screen

LONG_RUNNING = {"ble", "lan", "listen"}  # loops that run while their screen is up


async def settle(pilot: Pilot, rounds: int = 3, limit_s: float = 60.0) -> None:
    """Wait until no worker is running, or a dialog waits for the user.

    Failed workers are notifications, which the tests check; they do not raise here.
    """
    for _ in range(rounds):
        if isinstance(pilot.app.screen, ModalScreen):
            await pilot.pause()
            return
        workers = [
            w for w in pilot.app.workers if not w.is_finished and w.group not in LONG_RUNNING
        ]
        if workers:
            waits = [asyncio.ensure_future(w.wait()) for w in workers]
            done, pending = await asyncio.wait(waits, timeout=limit_s)
            for task in pending:
                task.cancel()
            for task in done:
                task.exception()  # consumed: a failure is reported as a notification
        await pilot.pause()


async def wait_for_screen(pilot: Pilot, kind: type[Screen], limit_s: float = 30.0) -> Screen:
    """Return the app's screen once it is of type `kind`; fail after `limit_s` seconds."""
    deadline = time.monotonic() + limit_s
    while not isinstance(pilot.app.screen, kind):
        assert time.monotonic() < deadline, f"{kind.__name__} never appeared"
        await pilot.pause(0.05)
    return pilot.app.screen


def notices(pilot: Pilot) -> list[str]:
    """Return the text of every notification shown so far."""
    return [n.message for n in pilot.app._notifications]


def footer_keys(app: App) -> dict[str, str]:
    """Return the keys the footer shows now, in its order, with their descriptions."""
    shown = app.screen.active_bindings.values()
    return {b.binding.key: b.binding.description for b in shown if b.binding.show}
