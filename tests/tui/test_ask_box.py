"""The Ask screen's question box at 80x24: Up and Down recall the questions asked, and
notices never cover the box."""

from __future__ import annotations

from textual.widgets import Footer, Input

from fieldkit.tui.app import make_app
from fieldkit.tui.widgets.exchange import Exchange
from tests.tui.helpers import settle
from tests.tui.test_ask import ask


async def test_up_and_down_recall_the_questions_asked(stocked) -> None:
    app = make_app(stocked, start_mode="ask")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        box = app.screen.query_one(Input)
        await pilot.press("up")  # nothing asked yet
        assert box.value == ""
        await ask(pilot, "How do I prime a hand pump?")
        await ask(pilot, "Why does the water pump lose pressure?")
        await ask(pilot, "^")  # a stray key asks nothing, so it is not recalled
        box.value = ""
        await pilot.press("w", "h", "y")
        recalled = []
        for key in ("up", "up", "up", "down", "down", "down"):
            await pilot.press(key)
            recalled.append(box.value)
        assert recalled == [
            "Why does the water pump lose pressure?",
            "How do I prime a hand pump?",
            "How do I prime a hand pump?",  # the oldest stays
            "Why does the water pump lose pressure?",
            "why",  # what was typed before Up
            "why",
        ]
        await pilot.press("up", "up", "enter")  # a recalled question is asked again
        await settle(pilot)
        assert app.screen.query(Exchange).last().question == "How do I prime a hand pump?"
        assert box.value == ""


async def test_a_notice_leaves_the_question_box_and_footer_in_sight(stocked) -> None:
    app = make_app(stocked, start_mode="ask", load_model=False)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:  # shown as toasts
        await settle(pilot)
        app.notify("Cleared 3 answers from the screen, and this notice runs to two lines.")
        app.notify("A second notice, stacked above the first.", severity="warning")
        await pilot.pause(0.2)
        toasts = list(app.screen.query("Toast"))
        assert len(toasts) == 2
        box = app.screen.query_one(Input).region
        footer = app.screen.query_one(Footer).region
        for toast in toasts:
            assert not toast.region.overlaps(box), (toast.region, box)
            assert not toast.region.overlaps(footer), (toast.region, footer)
