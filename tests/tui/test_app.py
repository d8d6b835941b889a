"""The app shell: modes by key, help, command palette, model state at start-up."""

from __future__ import annotations

import threading

from textual.command import CommandPalette
from textual.widgets import Input

from fieldkit.tui.app import make_app
from fieldkit.tui.screens.help import HelpScreen
from tests.tui.helpers import settle, wait_for_screen


async def test_modes_help_and_palette_by_keyboard(stocked) -> None:
    app = make_app(stocked, start_mode="library", load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        for key, mode in (("f2", "peers"), ("f4", "ask"), ("f3", "library"), ("1", "peers")):
            await pilot.press(key)
            await settle(pilot)
            assert app.current_mode == mode, key
        await pilot.press("question_mark")
        await wait_for_screen(pilot, HelpScreen)
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        palette = await wait_for_screen(pilot, CommandPalette)
        palette.query_one(Input).value = "Go to Ask"
        await pilot.pause(0.5)
        await pilot.press("enter")
        await settle(pilot)
        assert app.current_mode == "ask"


async def test_digits_type_into_the_question_box_not_switch_modes(stocked) -> None:
    app = make_app(stocked, start_mode="ask", load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("1", "2", "question_mark")
        assert app.current_mode == "ask"
        assert app.screen.query_one(Input).value == "12?"


async def test_screen_first_then_model_loads_in_background(stocked) -> None:
    # Hold the engine's MLX thread so the load cannot finish before the first look.
    gate = threading.Event()
    stocked.engine._submit(gate.wait)
    app = make_app(stocked, start_mode="library")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        assert app.model_state in ("not loaded", "loading...")  # the screen did not wait
        assert app.screen.query("PacketTable")  # and it is already usable
        gate.set()
        await settle(pilot)
        assert app.model_state == "tiny-llama ready"
