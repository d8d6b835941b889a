"""Peers mode with LAN discovery: real zeroconf announcements on 127.0.0.1, real TCP sync."""

from __future__ import annotations

import time

from textual.widgets import DataTable, Static

from fieldkit.gossip.lan import LanAdvertiser, discover
from fieldkit.gossip.summary import SyncOptions
from fieldkit.gossip.sync import start_listener
from fieldkit.tui.app import make_app
from fieldkit.tui.backend import TuiBackend
from fieldkit.tui.screens.dialogs import ConfirmDialog
from fieldkit.tui.screens.peers import LAN_LOOKING, NO_LAN
from fieldkit.tui.views import PeerRow
from tests.tui.helpers import notices, settle, wait_for_screen

LOOPBACK = ["127.0.0.1"]


async def wait_for_row(pilot, peer_id: str, limit_s: float = 10.0, **fields: str) -> list[str]:
    """Return the table row of `peer_id` once the screen's PeerRow has these field values."""
    deadline = time.monotonic() + limit_s
    while True:
        row = pilot.app.screen.peer_rows.get(peer_id)
        if row is not None and all(getattr(row, k) == v for k, v in fields.items()):
            table = pilot.app.screen.query_one("#peers", DataTable)
            return [str(cell) for cell in table.get_row(peer_id)]
        assert time.monotonic() < deadline, (peer_id, fields, pilot.app.screen.peer_rows)
        await pilot.pause(0.05)


def lan_note(pilot) -> str:
    return str(pilot.app.screen.query_one("#lan", Static).render())


async def test_an_announced_peer_is_listed_and_synced_with_one_key(stocked, make_bob) -> None:
    bob = make_bob()
    bob_id = bob.identity.device_id
    listener = await start_listener(bob, "127.0.0.1", 0, SyncOptions(policy="open"), once=True)
    advertiser = LanAdvertiser(bob_id, "bob", listener.port, host="127.0.0.1")
    await advertiser.start()
    app = make_app(stocked, start_mode="peers", load_model=False, ble=False)
    app.backend.lan_interfaces = LOOPBACK
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            address = f"127.0.0.1:{listener.port}"
            row = await wait_for_row(pilot, bob_id, via="lan")
            assert row == ["bob", bob_id, "lan", address, "new"]
            assert lan_note(pilot).startswith("LAN: 1 fieldkit peer(s) announced")
            await pilot.press("s")  # no address to type: the announcement gave it
            await wait_for_screen(pilot, ConfirmDialog, limit_s=20)
            await pilot.press("y")
            await settle(pilot)
            await listener.wait()
            state = str(app.screen.query_one("#sync-state", Static).render())
            assert state.startswith("Synced with bob"), (state, notices(pilot))
            assert "1 received" in state
            row = await wait_for_row(pilot, bob_id, trust="trusted")
            assert row == ["bob", bob_id, "lan", address, "trusted"], "known and announced: one row"
            await advertiser.stop()  # the goodbye: bob is known, no longer announced
            row = await wait_for_row(pilot, bob_id, via="-")
            assert row[4] == "trusted"
            assert lan_note(pilot) == LAN_LOOKING
    finally:
        await advertiser.stop()
        await listener.close()
    assert "wells" in [r.name for r in stocked.library.list_packets()]


async def test_discovery_runs_only_while_the_screen_is_shown(stocked) -> None:
    app = make_app(stocked, start_mode="peers", load_model=False, ble=False)
    app.backend.lan_interfaces = LOOPBACK

    def browsing() -> bool:
        return any(w.group == "lan" and not w.is_finished for w in app.workers)

    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert browsing()
        await pilot.press("f3")
        await settle(pilot)
        assert app.current_mode == "library"
        assert not browsing()
        await pilot.press("f2")
        await settle(pilot)
        assert browsing()
        assert lan_note(pilot) == LAN_LOOKING


async def test_discovery_that_cannot_start_is_a_calm_note(stocked) -> None:
    app = make_app(stocked, start_mode="peers", load_model=False, ble=False)
    app.backend.lan_interfaces = ["10.255.255.1"]  # no interface has this address
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        for _ in range(100):
            if lan_note(pilot) == NO_LAN:
                break
            await pilot.pause(0.05)
        assert lan_note(pilot) == NO_LAN
        assert notices(pilot) == []
        assert app.is_running


async def test_known_sighted_and_announced_peers_merge_into_one_row_each(stocked) -> None:
    alice_id = stocked.identity.device_id
    bob_id, carol_id = "bbbbbbbbbbbbbbbb", "cccccccccccccccc"
    app = make_app(stocked, start_mode="peers", load_model=False, ble=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        screen.known = [
            PeerRow(bob_id, "bob", "10.0.0.9:51000", "pending", "-"),
            PeerRow(alice_id[::-1], "dora", "-", "blocked", "-"),
        ]
        screen.sighted = [PeerRow(carol_id[:8], "carol", "BLE -40 dBm", "new", "ble")]
        screen.announced = [
            PeerRow(bob_id, "bob's new name", "10.0.0.2:7744", "new", "lan"),
            PeerRow(carol_id, "carol", "10.0.0.3:7744", "new", "lan"),
        ]
        screen.show_rows()
        rows = screen.peer_rows
        assert rows[bob_id] == PeerRow(bob_id, "bob", "10.0.0.2:7744", "pending", "lan")
        assert rows[carol_id] == PeerRow(carol_id, "carol", "10.0.0.3:7744", "new", "lan")
        assert rows[alice_id[::-1]].via == "-"
        assert len(rows) == 3, "carol's BLE sighting and her announcement are one peer"


async def test_listening_from_the_screen_announces_the_listener(stocked) -> None:
    backend = TuiBackend(stocked, lan_interfaces=LOOPBACK)
    alice_id = stocked.identity.device_id

    async def confirm(*_: str) -> bool:
        return False

    try:
        private = await backend.listen_tcp("127.0.0.1:0", print, confirm, print)
        assert private.advertiser is None, "a loopback listener is not announced by default"
        await private.close()
        announced = await backend.listen_tcp("127.0.0.1:0", print, confirm, print, advertise=True)
        try:
            [peer] = await discover(2.0, interfaces=LOOPBACK)
            assert (peer.device_id, peer.port) == (alice_id, announced.port)
        finally:
            await announced.close()
        assert await discover(1.5, interfaces=LOOPBACK) == []
    finally:
        backend.close()
