"""Peers mode over Bluetooth LE: bumble's virtual controllers, a real BLE stack in-process."""

from __future__ import annotations

import asyncio

from textual.widgets import DataTable, Static

from fieldkit.app import make_app
from fieldkit.gossip.ble_bumble import BumbleRadio, VirtualRadio, power_on
from fieldkit.gossip.ble_sync import serve
from fieldkit.gossip.summary import SyncOptions
from fieldkit.screens.dialogs import ConfirmDialog
from tests.tui.conftest import PUMP_QUESTIONS
from tests.tui.helpers import notices, settle, wait_for_screen


async def test_discover_and_sync_a_peer_over_ble(
    stocked, make_services, make_packet, make_adapter, base_fp
) -> None:
    bob = make_services("bob", seed=2)
    make_packet(
        bob.home,
        name="wells",
        domain="water",
        base_fingerprint=base_fp,
        adapter=make_adapter(7),
        exemplars=[q.replace("pump", "well") for q in PUMP_QUESTIONS],
    )
    air = VirtualRadio()
    alice_dev = air.device(stocked.identity.device_id, "alice")
    bob_dev = air.device(bob.identity.device_id, "bob")
    await power_on(alice_dev)
    await power_on(bob_dev)
    serving = asyncio.ensure_future(
        serve(
            BumbleRadio(bob_dev),
            bob.identity,
            bob.library,
            SyncOptions(policy="open", handshake_timeout=10, idle_timeout=5),
            once=True,
        )
    )
    app = make_app(stocked, start_mode="peers", load_model=False, radio=BumbleRadio(alice_dev))
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            table = app.screen.query_one("#peers", DataTable)
            for _ in range(200):  # the first scan takes a few seconds
                if any(app.screen.peer_rows[k].via == "ble" for k in app.screen.peer_rows):
                    break
                await pilot.pause(0.05)
            [row] = list(app.screen.peer_rows.values())
            assert row.via == "ble"
            assert row.address.startswith("BLE ")
            assert row.address.endswith("dBm")
            table.focus()
            await pilot.press("s")
            await wait_for_screen(pilot, ConfirmDialog, limit_s=30)
            await pilot.press("y")
            [summary] = await asyncio.wait_for(serving, 60)
            assert summary.ok, summary.error
            await settle(pilot)
            state = str(app.screen.query_one("#sync-state", Static).render())
            assert state.startswith("Synced with bob"), (state, notices(pilot))
    finally:
        serving.cancel()
    assert "wells" in [r.name for r in stocked.library.list_packets()]
