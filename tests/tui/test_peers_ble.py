"""Peers mode over Bluetooth LE: bumble's virtual controllers, a real BLE stack in-process."""

from __future__ import annotations

import asyncio

from textual.widgets import DataTable, Static

from fieldkit.gossip.ble.radio_bumble import BumbleRadio, power_on
from fieldkit.gossip.parts import held_chunks
from fieldkit.gossip.summary import SyncOptions
from fieldkit.gossip.sync import serve_ble
from fieldkit.testing.virtual_radio import ThrottledLink, VirtualRadio
from fieldkit.tui.app import make_app
from fieldkit.tui.screens.dialogs import ConfirmDialog
from fieldkit.tui.screens.peers import PeersScreen
from fieldkit.tui.views import SyncProgress
from fieldkit.tui.widgets.transfers import TransferList
from tests.tui.helpers import notices, settle, wait_for_screen


async def test_discover_and_sync_a_peer_over_ble(stocked, make_bob) -> None:
    bob = make_bob()
    air = VirtualRadio()
    alice_dev = air.device(stocked.identity.device_id, "alice")
    bob_dev = air.device(bob.identity.device_id, "bob")
    await power_on(alice_dev)
    await power_on(bob_dev)
    serving = asyncio.ensure_future(
        serve_ble(
            BumbleRadio(bob_dev),
            bob,
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


async def wait_until(pilot, done, what: str, limit_s: float = 30.0) -> float:
    """Let the app run until `done()`; return the seconds it took, fail after `limit_s`."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not done():
        assert loop.time() - started < limit_s, f"{what}: not within {limit_s} s"
        await pilot.pause(0.02)
    return loop.time() - started


async def wait_for_sighting(pilot, screen: PeersScreen, limit_s: float = 30.0) -> None:
    """Let the app run until the screen lists a peer seen over Bluetooth LE."""
    await wait_until(
        pilot,
        lambda: any(row.via == "ble" for row in screen.peer_rows.values()),
        "the BLE sighting",
        limit_s,
    )


def transfer(screen: PeersScreen, packet: str) -> SyncProgress | None:
    """The latest progress the screen shows for `packet` ("<- name" when received)."""
    row = screen.query_one(TransferList).rows.get(packet)
    return row.latest if row is not None else None


async def sync_from_screen(pilot, screen: PeersScreen) -> None:
    """Select the peer seen over BLE, press s, and accept the pairing code if asked."""
    table = screen.query_one("#peers", DataTable)
    [peer_id] = [key for key, row in screen.peer_rows.items() if row.via == "ble"]
    table.move_cursor(row=table.get_row_index(peer_id))
    table.focus()
    state = screen.query_one("#sync-state", Static)
    await pilot.press("s")
    await wait_until(pilot, lambda: str(state.render()).startswith("Syncing"), "the sync start")
    assert str(state.render()).startswith(f"Syncing with {peer_id}")
    await wait_until(
        pilot,
        lambda: isinstance(pilot.app.screen, ConfirmDialog) or transfer(screen, "<- wells"),
        "the pairing question or the transfer",
    )
    if isinstance(pilot.app.screen, ConfirmDialog):
        await pilot.press("y")


async def test_a_ble_sync_cancelled_from_the_screen_keeps_its_chunks_and_resumes(
    stocked, make_services, make_packet, base_fp
) -> None:
    bob = make_services("bob", seed=2)
    # ~130 KB, 5 chunks, made for alice's base model (a foreign one is refused before transfer)
    wells = make_packet(bob.home, name="wells", size_scale=8, base_fingerprint=base_fp)
    chunk, count = wells.manifest["chunk_size"], len(wells.manifest["chunk_hashes"])
    air = VirtualRadio(link=ThrottledLink(rate=30_000, interval=0.0075))  # seconds per packet
    alice_dev = air.device(stocked.identity.device_id, "alice")
    bob_dev = air.device(bob.identity.device_id, "bob")
    await power_on(alice_dev)
    await power_on(bob_dev)
    bob_radio = BumbleRadio(bob_dev)
    # bob takes nothing from alice, so only wells crosses the air
    options = SyncOptions(policy="trusted-only", handshake_timeout=10, idle_timeout=5)
    library = stocked.library
    serving = asyncio.ensure_future(serve_ble(bob_radio, bob, options, once=True))
    app = make_app(stocked, start_mode="peers", load_model=False, radio=BumbleRadio(alice_dev))
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            state = screen.query_one("#sync-state", Static)
            await wait_for_sighting(pilot, screen)
            await sync_from_screen(pilot, screen)
            await wait_until(
                pilot,
                lambda: len(held_chunks(library, wells.packet_id)[0]) >= 2,
                "two chunks of wells on disk",
            )
            assert not transfer(screen, "<- wells").finished
            await pilot.press("x")
            took = await wait_until(
                pilot, lambda: "cancelled" in str(state.render()), "the cancelled note", 5.0
            )
            assert took < 2.0, took  # a cancelled sync drops the link at once
            assert str(state.render()).endswith("cancelled; it resumes next time.")
            await pilot.press("x")  # the screen still takes keys, and knows the sync is over
            await wait_until(pilot, lambda: "No sync is running." in notices(pilot), "the notice")
            [first] = await asyncio.wait_for(serving, 30)
            assert first.error, "bob saw the link go"
            assert wells.packet_id not in [r.packet_id for r in library.list_packets()]
            held, _ = held_chunks(library, wells.packet_id)
            assert 0 < len(held) < count, held
            held_bytes = sum(min(chunk, wells.size - i * chunk) for i in held)

            serving = asyncio.ensure_future(serve_ble(bob_radio, bob, options, once=True))
            await sync_from_screen(pilot, screen)
            [second] = await asyncio.wait_for(serving, 60)
            await settle(pilot)
            assert second.ok, second.error
            [sent] = [p for p in second.packets if p.direction == "sent"]
            assert sent.resumed_from == held_bytes  # only the missing chunks crossed again
            assert str(state.render()).startswith("Synced with bob"), notices(pilot)
            progress = transfer(screen, "<- wells")
            assert progress.resumed
            assert progress.finished
    finally:
        serving.cancel()
    record = library.find(wells.packet_id)
    assert record is not None
    assert record.verified
    assert library.read_weights(record) == bob.library.read_weights(wells)
    assert library.transfer_state(wells.packet_id) is None
    assert not library.part_path(wells.packet_id).exists()


async def test_a_ble_sync_from_the_screen_refuses_a_packet_for_another_base_model(
    stocked, make_services, make_packet
) -> None:
    bob = make_services("bob", seed=2)
    make_packet(bob.home, name="dams", domain="water", seed=5)  # the fixtures' foreign base
    air = VirtualRadio()
    alice_dev = air.device(stocked.identity.device_id, "alice")
    bob_dev = air.device(bob.identity.device_id, "bob")
    await power_on(alice_dev)
    await power_on(bob_dev)
    serving = asyncio.ensure_future(
        serve_ble(
            BumbleRadio(bob_dev),
            bob,
            SyncOptions(policy="open", handshake_timeout=10, idle_timeout=5),
            once=True,
        )
    )
    app = make_app(stocked, start_mode="peers", load_model=False, radio=BumbleRadio(alice_dev))
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            await wait_for_sighting(pilot, screen)
            await sync_from_screen(pilot, screen)
            [summary] = await asyncio.wait_for(serving, 60)
            state = screen.query_one("#sync-state", Static)
            await wait_until(pilot, lambda: "Synced with bob" in str(state.render()), "the result")
            assert "1 refused" in str(state.render())
    finally:
        serving.cancel()
    assert summary.ok, summary.error
    assert "dams" not in [r.name for r in stocked.library.list_packets()]
