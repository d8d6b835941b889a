"""The TUI on a home this user can only read: every mode opens, a question is answered,
and a change is refused with the one sentence (store.files.READ_ONLY_HOME)."""

from __future__ import annotations

from textual.widgets import Input

from fieldkit.home import Home
from fieldkit.services import Services
from fieldkit.store.files import READ_ONLY_HOME
from fieldkit.tui.app import make_app
from fieldkit.tui.screens.dialogs import ConfirmDialog
from fieldkit.tui.widgets.exchange import Exchange
from tests.tui.helpers import notices, settle, wait_for_screen
from tests.tui.test_library import open_library


async def test_a_read_only_home_opens_answers_and_refuses_a_change(
    stocked, tiny_model_dir, monkeypatch
) -> None:
    root = stocked.home.root
    stocked.close()  # written and closed; now this user may only read it
    monkeypatch.setattr(Home, "writable", lambda self: False)
    services = Services.build(home=root, model_path=tiny_model_dir)
    try:
        assert services.library.read_only
        app = make_app(services, start_mode="library", load_model=True)
        async with app.run_test(size=(80, 24)) as pilot:
            table = await open_library(pilot)
            assert table.row_count == 3
            await pilot.press("f2")
            await settle(pilot)
            await pilot.press("f4")
            await settle(pilot)
            box = app.screen.query_one(Input)
            box.value = "How do I prime a hand pump?"
            await pilot.press("enter")
            await settle(pilot)
            assert app.is_running
            assert notices(pilot) == []  # nothing failed, nothing was written
            [exchange] = app.screen.query(Exchange)
            assert exchange.answer
            await pilot.press("f3")
            await open_library(pilot)
            await pilot.press("d")  # remove the packet under the cursor
            await wait_for_screen(pilot, ConfirmDialog)
            await pilot.press("y")
            await settle(pilot)
            assert any(READ_ONLY_HOME in n for n in notices(pilot)), notices(pilot)
            assert app.screen.query_one("PacketTable").row_count == 3
    finally:
        services.close()
