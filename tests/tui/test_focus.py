"""Where the keyboard goes is always visible: typed text is never dropped, and a focused
pane looks focused."""

from __future__ import annotations

from textual.widget import Widget
from textual.widgets import DataTable, Input

from fieldkit.gossip.summary import SyncOptions
from fieldkit.gossip.sync import start_listener
from fieldkit.tui.app import make_app
from fieldkit.tui.widgets.packet_detail import PacketDetailPane
from fieldkit.tui.widgets.transfers import TransferList
from tests.tui.helpers import held_question, settle
from tests.tui.test_peers import start_sync


def look(widget: Widget) -> tuple[object, object, object]:
    """Return what shows whether a pane has focus: its top rule, tint and left outline."""
    styles = widget.styles
    return styles.border_top, styles.background_tint, styles.outline_left


async def test_typing_out_of_the_question_box_goes_back_into_it(stocked) -> None:
    app = make_app(stocked, start_mode="ask", load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        box = app.screen.query_one(Input)
        await pilot.press("escape")  # no answer is being written: Escape does nothing
        await pilot.pause()
        assert app.focused is box
        await pilot.press("h", "o", "w")
        await pilot.pause()
        assert box.value == "how"
        await pilot.press("tab")  # into the history, as far from the box as Tab goes
        await pilot.pause()
        assert app.focused is not box
        await pilot.press("space", "m")
        await pilot.pause()
        assert app.focused is box
        assert box.value == "how m"
        await pilot.press("f3")  # the F-keys switch modes from the box
        await settle(pilot)
        assert app.current_mode == "library"


async def test_stopping_an_answer_goes_back_to_the_question_box(stocked) -> None:
    async with held_question(stocked) as (app, pilot, backend, gate):
        app.screen.query_one("#history").focus()
        await pilot.press("escape")  # stops the answer being written
        gate.set()
        await settle(pilot)
        assert isinstance(app.focused, Input)
        assert backend.chunks
        assert backend.chunks[-1].stopped


async def test_a_focused_library_pane_looks_focused(stocked) -> None:
    app = make_app(stocked, load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        pane = app.screen.query_one(PacketDetailPane)
        blurred = look(pane)
        pane.focus()
        await pilot.pause()
        assert look(pane) != blurred
        await pilot.press("f4")
        await settle(pilot)
        history = app.screen.query_one("#history")
        blurred = look(history)
        history.focus()
        await pilot.pause()
        assert look(history) != blurred


async def test_tab_on_peers_skips_an_empty_transfer_list(stocked, make_bob) -> None:
    bob = make_bob()
    stocked.library.set_trust(bob.identity.device_id, "trusted")
    listener = await start_listener(bob, "127.0.0.1", 0, SyncOptions(policy="open"), once=True)
    app = make_app(stocked, start_mode="peers", load_model=False, ble=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#peers", DataTable)
        transfers = app.screen.query_one(TransferList)
        assert app.focused is table
        await pilot.press("tab")
        await pilot.pause()
        assert app.focused is table, "nothing to see in an empty transfer list"
        await start_sync(pilot, f"127.0.0.1:{listener.port}")
        await settle(pilot)
        await listener.wait()
        await settle(pilot)
        assert transfers.rows
        blurred = look(transfers)
        await pilot.press("tab")
        await pilot.pause()
        assert app.focused is transfers
        assert look(transfers) != blurred
