"""Ctrl+N on the Ask screen: a question is answered again from a record its answer showed,
which the asker may know to be theirs where the notes could not tell: a gap answer's
nearest record at once, or one of the records a covered answer cites, picked from a list."""

from __future__ import annotations

from textual.widgets import OptionList, Static

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
        gap = await ask(pilot, OFFSIDE)
        folded = str(gap.query_one(".sources", Static).render())
        nearest = folded.split("as written above: ")[1].split(" ")[1]  # "wells r3 (0.12)": r3
        assert footer_keys(app)["ctrl+n"] == "Use record"
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
        assert "ctrl+n" not in footer_keys(app)  # answered from a pick: nothing more to pick
        await pilot.press("ctrl+n")  # and does nothing
        await settle(pilot)
        assert app.screen.query(Exchange).last() is again


async def test_ctrl_n_answers_again_from_a_record_the_answer_cites(wells) -> None:  # noqa: F811
    """A covered answer cites two records; the asker knows the second is theirs: Ctrl+N
    lists both, and the one picked answers, said first and cited alone."""
    from fieldkit.tui.screens.ask import PICK_WIDTH
    from fieldkit.tui.screens.dialogs import PickDialog

    app = make_app(wells, start_mode="ask")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pick(pilot, "wells")
        covered = await ask(pilot, "How much bleach do I need to disinfect a new well?")
        assert len(covered.sources) == 2, covered.sources
        second = covered.sources[1]
        assert footer_keys(app)["ctrl+n"] == "Use record"
        await pilot.press("ctrl+n")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, PickDialog)
        options = dialog.query_one(OptionList)
        listed = [str(options.get_option_at_index(i).prompt) for i in range(2)]
        assert listed[0].startswith(f"[1] wells {covered.sources[0].passage_id}: ")
        assert listed[1].startswith(f"[2] wells {second.passage_id}: ")
        assert all(len(line) <= PICK_WIDTH for line in listed)  # one line each at 80x24
        await pilot.press("escape")  # nothing picked: nothing asked
        await settle(pilot)
        assert len(app.screen.query(Exchange)) == 1
        await pilot.press("ctrl+n")
        await settle(pilot)
        app.screen.query_one(OptionList).highlighted = 1
        await pilot.press("enter")
        await settle(pilot)
        again = app.screen.query(Exchange).last()
        assert again is not covered
        said = str(again.query_one(".notice", Static).render())
        assert said.startswith(f"Answered from the record you picked, wells {second.passage_id}: ")
        cited = str(again.query_one(".sources", Static).render())
        assert cited.startswith(f"[1] wells {second.passage_id} (")
        assert [s.passage_id for s in again.sources] == [second.passage_id]


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
