"""The app shell: modes by key, help, command palette, quitting, model state at start-up."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from textual.command import CommandPalette
from textual.widgets import HelpPanel, Input

from fieldkit.tui.app import make_app
from fieldkit.tui.screens.dialogs import ConfirmDialog
from fieldkit.tui.screens.help import HELP_TEXT, HelpScreen
from tests.tui.helpers import footer_keys, held_question, settle, wait_for_screen


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


@pytest.mark.parametrize("mode", ["peers", "library"])
async def test_q_quits_where_no_text_box_has_focus(stocked, mode: str) -> None:
    app = make_app(stocked, start_mode=mode, load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert list(footer_keys(app).items())[-1] == ("q", "Quit")  # after ? Help
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running
    assert "`q` quits" in HELP_TEXT


async def test_on_ask_every_key_typed_is_the_questions_and_ctrl_q_quits(stocked) -> None:
    app = make_app(stocked, start_mode="ask", load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert list(footer_keys(app).items())[-2] == ("ctrl+q", "Quit")  # q types: Ctrl+Q
        await pilot.press("q")
        assert app.screen.query_one(Input).value == "q"
        app.screen.query_one("#history").focus()  # reading the answers (Tab)
        await pilot.pause()
        assert "q" not in footer_keys(app)  # nothing shows a key that would not work
        assert list(footer_keys(app).items())[-2] == ("ctrl+q", "Quit")
        await pilot.press("u", "a", "i", "l", "space", "1", "question_mark", "2")
        await settle(pilot)
        assert app.is_running  # a fast typist's next question neither quits nor switches
        assert app.current_mode == "ask"
        assert app.screen.query_one(Input).value == "quail 1?2"
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert not app.is_running


async def test_q_in_a_dialog_does_not_quit(stocked) -> None:
    app = make_app(stocked, start_mode="library", load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.screen.query_one("PacketTable").focus()
        await pilot.press("d")  # remove: asks first
        await wait_for_screen(pilot, ConfirmDialog)
        await pilot.press("q")
        await pilot.pause()
        assert app.is_running
        assert isinstance(app.screen, ConfirmDialog)


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


async def test_quitting_stops_the_answer_being_written(stocked) -> None:
    async with held_question(stocked) as (app, pilot, backend, gate):
        await pilot.press("ctrl+q")
    assert not app.is_running
    # the engine goes on now (the gate is open): the answer must stop, not run its course
    deadline = time.monotonic() + 30
    while not (backend.chunks and backend.chunks[-1].done):
        assert time.monotonic() < deadline, "the answer never ended"
        await asyncio.sleep(0.05)
    assert backend.chunks[-1].stopped


def test_the_header_keeps_the_models_state_on_a_narrow_terminal() -> None:
    from fieldkit.tui.widgets.status_line import status_text

    wide = status_text("Ask", "smollm2-135m-instruct ready", 78).plain
    assert wide.endswith("model: smollm2-135m-instruct ready")
    narrow = status_text("Ask", "smollm2-135m-instruct ready", 58).plain
    assert len(narrow) <= 58  # "model:" and nothing after it, cut off at 60 columns
    assert narrow.endswith("instruct ready")  # the word that says whether it can answer


async def open_keys_panel(pilot) -> None:
    """Open the keys panel as a user does: Ctrl+P, then the palette's Keys entry."""
    await pilot.press("ctrl+p")
    palette = await wait_for_screen(pilot, CommandPalette)
    palette.query_one(Input).value = "Keys"
    await pilot.pause(0.5)
    await pilot.press("enter")
    for _ in range(100):
        if pilot.app.screen.query(HelpPanel):
            return
        await pilot.pause(0.05)
    raise AssertionError("the keys panel never opened")


async def test_escape_closes_the_keys_panel(stocked) -> None:
    app = make_app(stocked, start_mode="library", load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await open_keys_panel(pilot)
        await pilot.press("escape")
        await pilot.pause()
        assert not app.screen.query(HelpPanel)
        await pilot.press("escape")  # nothing left to close: the screen's own Escape
        await pilot.pause()
        assert app.is_running
        assert app.current_mode == "library"


async def test_escape_closes_the_keys_panel_before_it_stops_an_answer(stocked) -> None:
    async with held_question(stocked) as (app, pilot, backend, gate):
        await open_keys_panel(pilot)
        await pilot.press("escape")
        await pilot.pause()
        assert not app.screen.query(HelpPanel)
        assert app.screen.answering  # the first Escape closed the panel only
        await pilot.press("escape")
        gate.set()
        await settle(pilot)
        assert backend.chunks[-1].stopped
