"""80x24 snapshots of every mode, on real homes with fixed keys and timestamps."""

from __future__ import annotations

import asyncio

from fieldkit.errors import TransportError
from fieldkit.tui.app import make_app
from tests.tui.helpers import settle


class RadioOffBecauseSnapshotsIgnoreTheHost:
    """A radio whose Bluetooth is off, as on a machine without an adapter: a snapshot must
    not change with the host's Bluetooth (a Mac's real radio would find devices)."""

    async def scan(self, seconds: float, stop_early: str | None = None) -> list:
        raise TransportError("Bluetooth is off.")

    async def connect(self, address: str):
        raise TransportError("Bluetooth is off.")

    async def advertise(self, device_id: str, name: str, connects: bool = False):
        raise TransportError("Bluetooth is off.")


def test_library_snapshot(snap_compare, stocked) -> None:
    app = make_app(stocked, start_mode="library", load_model=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle)


def test_library_empty_snapshot(snap_compare, make_services) -> None:
    app = make_app(make_services("empty"), start_mode="library", load_model=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle)


def test_peers_snapshot(snap_compare, stocked) -> None:
    lib = stocked.library
    lib.set_trust("aaaabbbbccccdddd", "trusted")
    lib.set_trust("eeeeffffgggghhhh", "blocked")

    async def scanned(pilot) -> None:
        await settle(pilot)
        ble = [asyncio.ensure_future(w.wait()) for w in pilot.app.workers if w.group == "ble"]
        if ble:
            await asyncio.wait(ble, timeout=20)
        await pilot.pause()

    # the same screen on every machine, whatever Bluetooth the host has
    app = make_app(
        stocked, start_mode="peers", load_model=False, radio=RadioOffBecauseSnapshotsIgnoreTheHost()
    )
    assert snap_compare(app, terminal_size=(80, 24), run_before=scanned)


def test_ask_snapshot(snap_compare, stocked) -> None:
    app = make_app(stocked, start_mode="ask", load_model=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle)


def test_help_snapshot(snap_compare, stocked) -> None:
    async def open_help(pilot) -> None:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    app = make_app(stocked, start_mode="library", load_model=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=open_help)
