"""Peers mode: a real TCP sync between two homes on 127.0.0.1, driven from the screen."""

from __future__ import annotations

import asyncio
import re

from textual.widgets import DataTable, Input, Label, Static

from fieldkit.gossip.summary import SyncOptions
from fieldkit.gossip.sync import start_listener, sync_with
from fieldkit.tui.app import make_app
from fieldkit.tui.screens.dialogs import ConfirmDialog, TextDialog
from fieldkit.tui.widgets.transfers import TransferList
from tests.tui.helpers import footer_shown, notices, settle, wait_for_screen


async def start_sync(pilot, address: str) -> None:
    await pilot.press("s")
    dialog = await wait_for_screen(pilot, TextDialog)
    dialog.query_one(Input).value = address
    await pilot.press("enter")


async def test_sync_two_homes_over_tcp_with_pairing_code(stocked, make_bob) -> None:
    bob = make_bob()
    listener = await start_listener(bob, "127.0.0.1", 0, SyncOptions(policy="open"), once=True)
    app = make_app(stocked, start_mode="peers", load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "Bluetooth" in str(app.screen.query_one("#ble", Static).render())
        await start_sync(pilot, f"127.0.0.1:{listener.port}")
        confirm = await wait_for_screen(pilot, ConfirmDialog, limit_s=20)
        code = re.search(r"code\s+(\d{3}) (\d{3})", confirm.question)
        assert code, confirm.question
        await pilot.press("y")
        await settle(pilot)
        await listener.wait()
        state = str(app.screen.query_one("#sync-state", Static).render())
        assert state.startswith("Synced with bob"), (state, notices(pilot))
        assert "1 received" in state
        rows = app.screen.query_one(TransferList).rows
        assert any("wells" in name for name in rows)
        peers = app.screen.query_one("#peers", DataTable)
        for _ in range(200):  # the table is redrawn from the library after the sync
            if peers.row_count == 1 and "trusted" in [str(c) for c in peers.get_row_at(0)]:
                break
            await pilot.pause(0.05)
        assert peers.row_count == 1, [peers.get_row_at(i) for i in range(peers.row_count)]
        assert "trusted" in [str(c) for c in peers.get_row_at(0)]
    assert "wells" in [r.name for r in stocked.library.list_packets()]
    bob_summary = listener.summaries[0]
    assert bob_summary.sas == "".join(code.groups()), "both screens show the same code"
    assert {p.name for p in bob_summary.packets if p.status == "ok"} >= {"wells", "pumps"}


async def test_a_sync_with_a_peer_that_trusts_nobody_yet_says_how_to_trust_it(
    stocked, make_services
) -> None:
    bob = make_services("bob", seed=2)  # nothing to offer: this side is never asked
    bob_id = bob.identity.device_id
    for other in ("aaaaaaaaaaaaaaaa", "cccccccccccccccc"):  # listed, and selected, first
        stocked.library.set_trust(other, "trusted")
    listener = await start_listener(
        bob, "127.0.0.1", 0, SyncOptions(policy="trusted-only"), once=True
    )
    app = make_app(stocked, start_mode="peers", load_model=False, ble=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await start_sync(pilot, f"127.0.0.1:{listener.port}")
        await settle(pilot)
        await listener.wait()
        refused_there = listener.summaries[0].packets  # bob took none of ours
        assert refused_there
        assert all(p.status == "refused" for p in refused_there)
        state = str(app.screen.query_one("#sync-state", Static).render())
        sas = listener.summaries[0].sas
        assert state == (
            f"Synced with bob ({bob_id}): 0 received, 0 sent, {len(refused_there)} declined "
            "by the peer. bob is not trusted yet "
            f"(code {sas[:3]} {sas[3:]}): press t to trust it if both devices show this "
            "code; it takes this device's packets only once it trusts this device too."
        ), notices(pilot)
        peers = app.screen.query_one("#peers", DataTable)
        for _ in range(200):  # the table is redrawn from the library after the sync
            if peers.row_count == 3:
                break
            await pilot.pause(0.05)
        await settle(pilot)
        assert app.screen._selected().peer_id == bob_id, "t trusts the peer the result names"
        await pilot.press("t")
        await settle(pilot)
        assert stocked.library.get_peer(bob_id).trust == "trusted"
        state = str(app.screen.query_one("#sync-state", Static).render())
        assert state == "bob is now trusted. Sync again to take its packets."  # not "press t"


async def test_unreachable_peer_and_bad_address_are_notices(stocked) -> None:
    app = make_app(stocked, start_mode="peers", load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        for typed in ("not an address:xx", "not an address"):  # a bad port, or no port
            await start_sync(pilot, typed)
            await settle(pilot)
            assert f"{typed!r} is not an address like 192.168.1.20:" in notices(pilot)[-1]
        await start_sync(pilot, "127.0.0.1:1")
        await settle(pilot)
        assert any("Cannot reach 127.0.0.1:1" in n for n in notices(pilot))
        assert app.is_running


async def test_a_narrow_terminal_shows_every_key_of_the_peers_footer(stocked) -> None:
    """At 60 columns the footer had cut "? Help" to "? Hel"; it now shows every key but
    "q Quit" (Ctrl+Q quits anywhere), which comes back at 80 columns."""
    app = make_app(stocked, start_mode="peers", load_model=False, ble=False)
    async with app.run_test(size=(60, 20)) as pilot:
        await settle(pilot)
        shown = ["Sync", "Listen", "Cancel", "Trust", "Block", "Rescan", "Help"]
        assert footer_shown(app) == shown
        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        assert footer_shown(app) == [*shown, "Quit"]


async def start_listening(pilot):  # noqa: ANN001, ANN201
    """Press `l`, listen on a free port of 127.0.0.1; return the Peers screen once it does."""
    await pilot.press("l")
    dialog = await wait_for_screen(pilot, TextDialog)
    dialog.query_one(Input).value = "127.0.0.1:0"
    await pilot.press("enter")
    screen = pilot.app.screen
    for _ in range(100):
        if screen.listening not in ("", "starting"):
            break
        await pilot.pause(0.05)
    return screen


async def test_listen_accepts_a_new_peer_after_the_code_is_confirmed(stocked, make_bob) -> None:
    bob = make_bob()
    app = make_app(stocked, start_mode="peers", load_model=False, ble=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = await start_listening(pilot)
        assert screen.listening, notices(pilot)
        port = int(screen.listening.rsplit(":", 1)[1])
        bob_sync = asyncio.ensure_future(
            sync_with("127.0.0.1", port, bob, SyncOptions(policy="open"))
        )
        await wait_for_screen(pilot, ConfirmDialog, limit_s=20)
        await pilot.press("y")
        summary = await asyncio.wait_for(bob_sync, 30)
        assert summary.ok, summary.error
        await settle(pilot)
        line = str(screen.query_one("#sync-state", Static).render())
        assert line.startswith("Listening for LAN syncs on ")  # still listening: it says so
        assert "(l to stop). Synced with bob" in line
        await pilot.press("l")  # stop listening
        await settle(pilot)
        assert screen.listening == ""
    assert "wells" in [r.name for r in stocked.library.list_packets()]


async def test_q_asks_before_it_stops_a_listener(stocked) -> None:
    """`q` on Peers quit at once, stopping a listener the technician had left running."""
    app = make_app(stocked, start_mode="peers", load_model=False, ble=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await start_listening(pilot)
        await pilot.press("q")
        asked = await wait_for_screen(pilot, ConfirmDialog)
        said = str(asked.query_one(Label).render())
        assert said == "Quit fieldkit? This device listens for syncs: quitting stops it."
        await pilot.press("n")
        await settle(pilot)
        assert app.is_running
        assert app.screen.listening
        await pilot.press("q")
        await wait_for_screen(pilot, ConfirmDialog)
        await pilot.press("y")
        await pilot.pause()
        assert not app.is_running


async def test_cancel_a_sync_that_hangs_and_the_screen_stays_live(stocked) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # a peer that accepts and never speaks
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    app = make_app(stocked, start_mode="peers", load_model=False, ble=False)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await start_sync(pilot, f"127.0.0.1:{port}")
            await pilot.pause(0.3)
            await pilot.press("f3")  # the UI answers while the sync waits
            assert app.current_mode == "library"
            await pilot.press("f2", "x")
            await settle(pilot)
            state = str(app.screen.query_one("#sync-state", Static).render())
            assert "cancelled" in state
            await pilot.press("x")
            assert any("No sync is running" in n for n in notices(pilot))
    finally:
        server.close()


async def slow_proxy(target_port: int, rate: float) -> asyncio.Server:
    """A real TCP relay on 127.0.0.1 that passes at most `rate` bytes/s each way."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(2048):
                writer.write(data)
                await writer.drain()
                await asyncio.sleep(len(data) / rate)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    return await asyncio.start_server(relay, "127.0.0.1", 0)


async def test_cancelled_transfer_resumes_and_says_so(make_services, make_bob) -> None:
    carol = make_services("carol", seed=3)  # nothing to send: the link carries only wells
    bob = make_bob(16)
    carol.library.set_trust(bob.identity.device_id, "trusted")
    listener = await start_listener(bob, "127.0.0.1", 0, SyncOptions(policy="open"))
    proxy = await slow_proxy(listener.port, rate=60_000)
    address = f"127.0.0.1:{proxy.sockets[0].getsockname()[1]}"
    app = make_app(carol, start_mode="peers", load_model=False, ble=False)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            screen = app.screen
            await start_sync(pilot, address)
            transfers = screen.query_one(TransferList)
            for _ in range(400):  # until some of wells has arrived, but not all
                row = transfers.rows.get("<- wells")
                if row and row.latest and 0 < row.latest.done_bytes < row.latest.total_bytes:
                    break
                await pilot.pause(0.025)
            await pilot.press("x")
            await settle(pilot)
            assert "cancelled" in str(screen.query_one("#sync-state", Static).render())
            assert "wells" not in [r.name for r in carol.library.list_packets()]
            await start_sync(pilot, address)
            await settle(pilot)
            state = str(screen.query_one("#sync-state", Static).render())
            assert state.startswith("Synced with bob"), (state, notices(pilot))
            row = screen.query_one(TransferList).rows["<- wells"]
            assert row.latest.resumed
            assert "resumed" in str(row.query_one(".info", Label).render())
    finally:
        proxy.close()
        await listener.close()
    assert "wells" in [r.name for r in carol.library.list_packets()]


async def test_the_selection_stays_on_its_peer_when_the_list_refreshes(stocked) -> None:
    ids = ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc"]
    for peer_id in ids:
        stocked.library.set_trust(peer_id, "trusted")
    app = make_app(stocked, start_mode="peers", load_model=False, ble=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#peers", DataTable)
        table.focus()
        await pilot.press("down", "down")
        chosen = app.screen._selected()
        assert chosen is not None
        assert chosen.peer_id == table.get_row_at(2)[1]
        stocked.library.set_trust(chosen.peer_id, "blocked")
        await pilot.press("r")  # reload: the table is rebuilt from the library
        await settle(pilot)
        now = app.screen._selected()
        assert now is not None
        assert now.peer_id == chosen.peer_id
        assert now.trust == "blocked"


async def test_blocking_a_peer_and_lifting_the_block_ask_first(stocked) -> None:
    peer = "aaaaaaaaaaaaaaaa"
    stocked.library.set_trust(peer, "trusted")
    app = make_app(stocked, start_mode="peers", load_model=False, ble=False)

    async def no_then_yes(pilot, key: str, asked: str, after: str) -> None:  # noqa: ANN001
        before = stocked.library.get_peer(peer).trust
        await pilot.press(key)
        dialog = await wait_for_screen(pilot, ConfirmDialog)
        assert dialog.question.startswith(asked)
        await pilot.press("n")
        await settle(pilot)
        assert stocked.library.get_peer(peer).trust == before
        await pilot.press(key)
        await wait_for_screen(pilot, ConfirmDialog)
        await pilot.press("y")
        await settle(pilot)
        assert stocked.library.get_peer(peer).trust == after
        assert app.screen._selected().trust == after

    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.screen.query_one("#peers", DataTable).focus()
        await no_then_yes(pilot, "b", f"Block {peer}? Its packets here are", "blocked")
        # undoing a block asks too: `t` alone had lifted it
        await no_then_yes(pilot, "t", f"Trust {peer}, blocked now? Its packets", "trusted")


def test_a_fresh_transfer_is_not_shown_as_resumed(stocked) -> None:
    from fieldkit.gossip.session import ProgressUpdate
    from fieldkit.tui.backend import TuiBackend

    shown = []
    track = TuiBackend(stocked).progress_tracker(shown.append)
    for done in (0, 100, 200):  # what a session reports for a fresh 200-byte packet
        track(ProgressUpdate("p1", "pumps", "sent", done, 200))
    for done in (120, 200):  # and for one of which the peer already held 120 bytes
        track(ProgressUpdate("p2", "wells", "sent", done, 200))
    assert [p.resumed for p in shown] == [False, False, False, True, True]


def test_a_transfer_row_names_its_packet_whole_and_says_done_in_80_columns() -> None:
    from fieldkit.tui.views import SyncProgress
    from fieldkit.tui.widgets.transfers import NAME_WIDTH, progress_label, row_name

    assert row_name("<- grain-storage") == "<- grain-storage"  # it was "<- grain-storag"
    assert row_name("<- kisoro-clinic-cold-chain") == "<- kisoro-clinic-co~"  # 20 and a gap
    done = SyncProgress("<- grain-storage", 738_600, 738_600, 12_300.0, finished=True)
    running = SyncProgress("<- grain-storage", 1_200, 738_600, 12_300.0)
    assert progress_label(done) == "738.6 kB  done"
    for label in (progress_label(done), progress_label(running)):
        assert NAME_WIDTH + 24 + len(label) <= 80  # name, bar, label: one line at 80
