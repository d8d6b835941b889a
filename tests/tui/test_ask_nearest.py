"""Ctrl+N on the Ask screen: a question the notes found nothing on is answered again from
the nearest record they showed, which the asker may know to be theirs."""

from __future__ import annotations

from textual.widgets import Static

from fieldkit.tui.app import make_app
from fieldkit.tui.widgets.exchange import Exchange
from tests.tui.helpers import footer_keys, settle
from tests.tui.test_ask import ask, pick, route_line, wells  # noqa: F401 (a fixture)

OFFSIDE = "What is the offside rule in football?"  # the wells notes have nothing on it


async def test_ctrl_n_answers_again_from_the_nearest_record_shown(wells) -> None:  # noqa: F811
    app = make_app(wells, start_mode="ask")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pick(pilot, "wells")
        covered = await ask(pilot, "How much bleach do I need to disinfect a new well?")
        assert covered.answer
        assert "ctrl+n" not in footer_keys(app)  # no record to pick: not offered
        await pilot.press("ctrl+n")  # and does nothing
        await settle(pilot)
        assert len(app.screen.query(Exchange)) == 1
        gap = await ask(pilot, OFFSIDE)
        folded = str(gap.query_one(".sources", Static).render())
        nearest = folded.split("not used: ")[1].split(" ")[1]  # 'wells r3 (0.12)': r3
        assert footer_keys(app)["ctrl+n"] == "Use nearest"
        await pilot.press("ctrl+n")
        await settle(pilot)
        again = app.screen.query(Exchange).last()
        assert again is not gap
        assert again.question == OFFSIDE
        said = str(again.query_one(".notice", Static).render())
        assert said.startswith(f"Answered from the record you picked, wells {nearest}: ")
        sources = str(again.query_one(".sources", Static).render())
        assert sources.startswith(f"[1] wells {nearest} (")
        assert "picked by hand" in route_line(again)
        assert "ctrl+n" not in footer_keys(app)  # that answer showed no record it left out


async def test_a_nearest_record_whose_packet_went_is_not_answered_by_another(
    wells,  # noqa: F811
) -> None:
    """Removed between the gap answer and Ctrl+N: the router must not pick some other
    packet, whose record of the same id is another record."""
    from tests.tui.helpers import notices

    app = make_app(wells, start_mode="ask")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pick(pilot, "wells")
        await ask(pilot, OFFSIDE)
        wells.library.remove("wells")
        await pilot.press("ctrl+n")
        await settle(pilot)
        again = app.screen.query(Exchange).last()
        assert again.answer == ""
        assert str(again.query_one(".stats", Static).render()) == "[no answer: see the notice]"
        assert "The packet 'wells' is no longer in the library." in notices(pilot)
