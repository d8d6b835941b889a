"""Waiting for the app's workers without letting a failed one abort the test."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from textual.app import App
from textual.pilot import Pilot
from textual.screen import ModalScreen, Screen
from textual.widgets import Input

from fieldkit.tui.backend import TuiBackend
from fieldkit.tui.views import AnswerChunk

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


def footer_shown(app: App) -> list[str]:
    """Return the descriptions of the footer's keys that it shows whole, in its order."""
    from fieldkit.tui.screens.base import KeysFooter

    footer = app.screen.query_one(KeysFooter)
    right = footer.region.right
    keys = [w for w in footer.query("FooterKey") if w.region.width]
    return [k.description for k in keys if k.region.right <= right]


def footer_keys(app: App) -> dict[str, str]:
    """Return the keys the footer shows now, in its order, with their descriptions."""
    shown = app.screen.active_bindings.values()
    return {b.binding.key: b.binding.description for b in shown if b.binding.show}


class AnswersKept(TuiBackend):
    """The real backend, keeping every answer chunk it streamed so a test can read them
    after the app quit, and saying when a question has been grounded (from then on the
    answer needs only the engine)."""

    def __init__(self, services) -> None:
        super().__init__(services)
        self.chunks: list[AnswerChunk] = []
        self.grounded = threading.Event()

    def ground(self, *args, **kwargs):
        grounding = super().ground(*args, **kwargs)
        self.grounded.set()
        return grounding

    def answer(self, *args, **kwargs):
        for chunk in super().answer(*args, **kwargs):
            self.chunks.append(chunk)
            yield chunk


@asynccontextmanager
async def held_question(
    services: Any,
) -> AsyncIterator[tuple[App, Pilot, AnswersKept, threading.Event]]:
    """Run the app on the Ask screen at 80x24 and ask a question with the engine's thread
    held until the gate is set; yield (app, pilot, backend, gate) once the question is
    grounded (its answer then waits to be written). The gate opens on the way out."""
    from fieldkit.tui.app import FieldkitApp

    backend = AnswersKept(services)
    app = FieldkitApp(backend, start_mode="ask")
    gate = threading.Event()
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            assert app.model_state.endswith("ready")
            services.engine._submit(gate.wait)
            app.screen.query_one(Input).value = "How do I prime a hand pump?"
            await pilot.press("enter")
            deadline = time.monotonic() + 30
            while not backend.grounded.is_set():
                assert time.monotonic() < deadline, "the question was never grounded"
                await pilot.pause(0.05)
            yield app, pilot, backend, gate
    finally:
        gate.set()
