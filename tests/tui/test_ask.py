"""Ask mode on a real home: real router, tiny real MLX model, streamed answers."""

from __future__ import annotations

import threading
import time

import pytest
from textual.widgets import Input, OptionList, Static

from fieldkit.router.notices import AS_WRITTEN
from fieldkit.store.notes import Passage
from fieldkit.support import NUMBERS_FOUND, states_numbers
from fieldkit.tui.app import make_app
from fieldkit.tui.screens.dialogs import PickDialog
from fieldkit.tui.views import RouteView
from fieldkit.tui.widgets.exchange import Exchange
from tests.tui.helpers import footer_keys, notices, settle, wait_for_screen


async def ask(pilot, question: str) -> Exchange:
    """Ask `question` in the box; return its exchange, once the answer settled."""
    pilot.app.screen.query_one(Input).value = question
    await pilot.press("enter")
    await settle(pilot)
    return pilot.app.screen.query(Exchange).last()


def route_line(exchange: Exchange) -> str:
    return str(exchange.query_one(".route", Static).render())


async def test_route_shows_before_answer_and_answer_streams(stocked) -> None:
    app = make_app(stocked, start_mode="ask")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.model_state.endswith("ready")
        await ask(pilot, "How do I prime a hand pump?")
        [exchange] = app.screen.query(Exchange)
        line = route_line(exchange)
        assert "pumps" in line
        assert "score" in line
        assert "runner-up" in line
        assert exchange.answer, notices(pilot)
        stats = str(exchange.query_one(".stats", Static).render())
        assert "tok/s" in stats
        await ask(pilot, "Something else entirely about the weather")
        assert len(app.screen.query(Exchange)) == 2, "the history keeps every question"
        assert app.screen.query(Exchange).last().first is False  # the router is loaded
        assert not [n for n in notices(pilot) if "failed" in n.lower()]


async def test_route_can_be_picked_by_hand(stocked) -> None:
    app = make_app(stocked, start_mode="ask")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+o")
        dialog = await wait_for_screen(pilot, PickDialog)
        options = dialog.query_one(OptionList)
        labels = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert any("pumps" in label for label in labels)
        # only good packets are offered: the unverified and the foreign one are not
        assert not any("solar" in label or "vaccines" in label for label in labels)
        options.highlighted = 1  # base model
        await pilot.press("enter")
        await settle(pilot)
        await ask(pilot, "How do I prime a hand pump?")
        exchange = app.screen.query(Exchange).last()
        assert "base model (picked by hand)" in route_line(exchange)
        assert exchange.answer


async def test_the_base_model_left_to_answer_is_cautioned_first(stocked) -> None:
    from fieldkit.answering import BASE_CAUTION

    app = make_app(stocked, start_mode="ask")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await ask(pilot, "How do I cook rice for six people?")  # no packet fits
        left = app.screen.query(Exchange).last()
        assert route_line(left).startswith("route: base model: ")
        assert left.answer, notices(pilot)
        said = str(left.query_one(".notice", Static).render())
        assert " ".join(said.split()) == BASE_CAUTION
        await pilot.press("ctrl+o")
        dialog = await wait_for_screen(pilot, PickDialog)
        dialog.query_one(OptionList).highlighted = 1  # base model
        await pilot.press("enter")
        await settle(pilot)
        await ask(pilot, "How do I cook rice for six people?")
        picked = app.screen.query(Exchange).last()
        assert "base model (picked by hand)" in route_line(picked)
        assert picked.query_one(".notice", Static).has_class("empty")
        await pilot.press("ctrl+o")  # the picker opens on the choice in force
        dialog = await wait_for_screen(pilot, PickDialog)
        assert dialog.query_one(OptionList).highlighted == 1
        await pilot.press("escape")


async def test_unverified_packet_is_never_used(stocked) -> None:
    lib = stocked.library
    pumps = lib.get("pumps")
    lib.db["packets"].update(pumps.packet_id, {"verified": 0})
    app = make_app(stocked, start_mode="ask")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await ask(pilot, "How do I prime a hand pump?")
        line = route_line(app.screen.query(Exchange).last())
        assert "base model" in line
        assert "pumps" in line
        assert "failed verification" in line


async def test_missing_model_is_a_notice_not_a_crash(make_services, tmp_path) -> None:
    services = make_services("bare", model=tmp_path / "no-model-here")
    app = make_app(services, start_mode="ask")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.model_state == "not installed"
        await ask(pilot, "Anyone there?")
        assert any("No base model" in n for n in notices(pilot))
        stats = app.screen.query(Exchange).last().query_one(".stats", Static).render()
        assert "no answer" in str(stats)
        assert app.is_running


WELL_NOTES = [
    Passage("r1", "Chlorinate a new well with 50 g of bleach powder per 1000 litres.",
            "How do I disinfect a new well?"),
    Passage("r2", "Replace the hand pump's leather cup seals every 12 months.",
            "How often are pump seals replaced?"),
    Passage("r3", "Keep latrines at least 30 m from any well.", "How far from a latrine?"),
    Passage("r4", "Fault F-21 on the pump counter means its wheel jammed.", "What is F-21?"),
]  # fmt: skip


async def pick(pilot, name: str) -> None:
    await pilot.press("ctrl+o")
    dialog = await wait_for_screen(pilot, PickDialog)
    options = dialog.query_one(OptionList)
    for i in range(options.option_count):
        if name in str(options.get_option_at_index(i).prompt):
            options.highlighted = i
    await pilot.press("enter")
    await settle(pilot)


@pytest.fixture
def wells(stocked, make_packet, make_adapter, base_fp):
    make_packet(
        stocked.home,
        name="wells",
        domain="water",
        base_fingerprint=base_fp,
        adapter=make_adapter(4),
        notes=WELL_NOTES,
    )
    return stocked


async def test_answers_show_their_source_and_support_marks(wells) -> None:
    app = make_app(wells, start_mode="ask")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pick(pilot, "wells")
        exchange = await ask(pilot, "How much bleach do I need to disinfect a new well?")
        assert exchange.answer, notices(pilot)
        sources = str(exchange.query_one(".sources", Static).render())
        assert "[1] wells r1 (" in sources
        assert "Ctrl+E" in sources
        assert "[2]" not in sources  # folded: the first passage only
        support = str(exchange.query_one(".support", Static).render())
        if states_numbers(exchange.answer):
            assert "unsupported" in support or NUMBERS_FOUND in support
        else:  # nothing to vouch for
            assert support == ""
        assert isinstance(app.focused, Input)  # Ctrl+E works from the question box
        await pilot.press("ctrl+e")
        await pilot.pause()
        expanded = str(exchange.query_one(".sources", Static).render())
        assert "[2] wells " in expanded
        assert "50 g of bleach powder per 1000 litres" in expanded
        await ask(pilot, "What is the offside rule in football?")
        gap = app.screen.query(Exchange).last()
        said = str(gap.query_one(".notice", Static).render())
        assert said.startswith("The wells packet has nothing on this; nearest: ")
        assert said.endswith(AS_WRITTEN)
        # the record the notes found nearest is the answer, as written: nothing generated
        nearest = next(n for n in WELL_NOTES if said.split("nearest: ")[1].startswith(n.title))
        assert gap.answer == nearest.text
        where = str(gap.query_one(".sources", Static).render())
        assert where.splitlines() == [
            "(nothing generated: the nearest record as written)",
            f"nearest record, as written above: wells {nearest.passage_id} "
            f"({where.split('(')[2].split(')')[0]})",
            "(Ctrl+N: have the packet answer from it)",
        ]
        assert not gap.has_sources  # Ctrl+E has nothing more of it to show
        assert str(gap.query_one(".support", Static).render()) == ""  # no model wrote it
        assert str(gap.query_one(".stats", Static).render()) == "[nothing generated]"
        # a code the notes never name: answered from the nearest passage, cited, with the
        # caution shown above the answer
        await ask(pilot, "How much bleach do I need to disinfect the new well BH-7?")
        cautioned = app.screen.query(Exchange).last()
        assert cautioned.answer, notices(pilot)
        said = str(cautioned.query_one(".notice", Static).render())
        assert said.startswith("The wells notes never mention BH-7; check the answer against ")
        assert "[1] wells r1 (" in str(cautioned.query_one(".sources", Static).render())


async def test_a_code_the_notes_do_not_list_is_answered_without_generating(wells) -> None:
    """F-23 where the notes list F-21: the notes settle it, no model writes a word, and
    nothing is marked or counted as if one had."""
    app = make_app(wells, start_mode="ask")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pick(pilot, "wells")
        exchange = await ask(pilot, "The pump counter shows F-23, what does it mean?")
        said = str(exchange.query_one(".notice", Static).render())
        assert said.startswith("The wells packet has nothing on F-23: its notes name F-21; ")
        assert exchange.answer.startswith("No answer is generated: the packet holds no record")
        where = str(exchange.query_one(".sources", Static).render())
        assert "nothing generated: the notes hold no record of it" in where
        assert "nearest record, not used: wells r4" in where
        assert str(exchange.query_one(".support", Static).render()) == ""
        assert str(exchange.query_one(".stats", Static).render()) == "[nothing generated]"


async def test_ctrl_e_is_offered_in_the_question_box_once_an_answer_has_sources(
    wells,
) -> None:
    app = make_app(wells, start_mode="ask")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        box = app.screen.query_one(Input)
        box.value = "abc"
        box.cursor_position = 0
        await pilot.press("ctrl+e")  # no sources yet: the box keeps its own key
        assert box.cursor_position == 3
        assert "ctrl+e" not in footer_keys(app)
        await pick(pilot, "wells")
        await ask(pilot, "How much bleach do I need to disinfect a new well?")
        assert app.focused is box
        assert footer_keys(app)["ctrl+e"] == "Sources"
        exchange = app.screen.query(Exchange).last()
        await pilot.press("ctrl+e")
        await pilot.pause()
        assert "[2] wells " in str(exchange.query_one(".sources", Static).render())
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert "ctrl+e" not in footer_keys(app)
        assert not app.screen.query(Exchange)
        assert app.screen.query_one("#history .hint")  # the answers go, the hint stays
        assert "Cleared 1 answer from the screen." in notices(pilot)  # not silently


async def test_the_route_picked_by_hand_is_named_under_the_history(stocked) -> None:
    app = make_app(stocked, start_mode="ask", load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)

        def route_mode() -> str:
            return str(app.screen.query_one("#route-mode", Static).render())

        await pick(pilot, "pumps")
        assert route_mode() == "route: pumps, picked by hand (Ctrl+O to change)"
        await pick(pilot, "Base model")
        assert route_mode() == "route: base model, picked by hand (Ctrl+O to change)"
        await pick(pilot, "Automatic")
        assert route_mode() == "route: automatic (Ctrl+O to pick by hand)"


async def test_a_packet_picked_by_hand_that_may_answer_no_more_is_set_aside(stocked) -> None:
    """Removed (or its author blocked) after it was picked, it answered anyway, or the
    question hung at "deciding..." with a notice naming its id."""
    app = make_app(stocked, start_mode="ask")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pick(pilot, "pumps")
        stocked.library.remove("pumps")
        await ask(pilot, "How do I prime a hand pump?")
        exchange = app.screen.query(Exchange).last()
        said, line = route_line(exchange).split("\n")
        assert said == (
            "The packet 'pumps' is no longer in the library. The router picks instead "
            "(Ctrl+O to pick again)."
        )
        assert line.startswith("route: base model: ")  # the router's own decision
        assert exchange.answer, notices(pilot)
        mode = str(app.screen.query_one("#route-mode", Static).render())
        assert mode == "route: automatic (Ctrl+O to pick by hand)"


async def test_no_speed_is_made_up_from_sentences_while_the_answer_is_written() -> None:
    """The engine streams whole sentences, not tokens: counting them showed 0.7 tok/s for
    an answer written at 7.1 tok/s. The speed shows at the end, from the engine's count."""
    from textual.app import App, ComposeResult

    class OneExchange(App[None]):
        def compose(self) -> ComposeResult:
            yield Exchange("How do I prime a hand pump?")

    app = OneExchange()
    async with app.run_test(size=(80, 24)) as pilot:
        exchange = app.query_one(Exchange)
        exchange.set_route(RouteView("p", "pumps", 0.8, "-", "fits", 0.3))
        await pilot.pause()  # the seconds before the first sentence say what is going on
        assert str(exchange.query_one(".stats", Static).render()) == "[reading the question...]"
        for n in range(16):
            exchange.add_text(f"Sentence {n}. ")
        await pilot.pause()
        assert str(exchange.query_one(".stats", Static).render()) == "[writing...]"


async def test_a_packet_without_notes_says_so(stocked) -> None:
    app = make_app(stocked, start_mode="ask")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pick(pilot, "pumps")
        await ask(pilot, "How do I prime a hand pump?")
        exchange = app.screen.query(Exchange).last()
        assert exchange.answer
        assert "from the adapter only" in str(exchange.query_one(".sources", Static).render())
        assert exchange.query_one(".notice", Static).has_class("empty")


def test_the_route_line_says_why_the_base_model_answers() -> None:
    from fieldkit.tui.views import RouteView
    from fieldkit.tui.widgets.exchange import route_text

    reason = 'an everyday question, not an expert\'s: nearer "How do I boil eggs?" (0.80)'
    everyday = RouteView(None, "base model", 0.7, "pumps", reason, 3.0)
    assert route_text(everyday).plain == f"route: base model: {reason}"
    unexplained = RouteView(None, "base model", 0.2, "pumps", "", 3.0)
    assert route_text(unexplained).plain == "route: base model: no expert fits"
    near = RouteView(None, "base model", 0.45, "pumps 0.45", "no fit", 3.0, nearest="pumps")
    assert route_text(near).plain == "route: base model: no fit (Ctrl+O to ask pumps anyway)"


@pytest.mark.parametrize(
    ("question", "named"),
    [
        ("How do I prime a hand pump?", ""),  # routed
        ("How do I cook rice for six people?", ""),  # abstained, no packet near
        ("pump goat", "pumps"),  # abstained, pumps near
    ],
)
def test_the_route_names_the_packet_to_pick_by_hand_only_when_it_came_near(
    stocked, question, named
) -> None:
    """An abstained route names its best packet (for Ctrl+O) only when that packet scored
    at least the lowest score any tier routes at (router.LEANING, router.near_miss)."""
    from fieldkit.router.router import LEANING
    from fieldkit.tui.backend import TuiBackend

    backend = TuiBackend(stocked)
    try:
        view = backend.route(question)
        decision = backend.services.make_router(backend.services.library).route(question)
    finally:
        backend.close()
    best = decision.candidates[0]
    near = decision.route is None and best.score >= LEANING[0]
    assert view.nearest == (best.name if near else "")
    assert view.nearest == named


def test_the_route_line_says_why_the_first_question_waits() -> None:
    """The first question showed "route: deciding..." for about 20 s with no word of why
    (the router's embedder loads then), and then a route time of a few hundred ms."""
    from fieldkit.tui.widgets.exchange import route_text

    assert route_text(None).plain == (
        "route: deciding... (the first question also loads the router)"
    )
    assert len(route_text(None).plain) <= 78  # one line at 80 columns
    assert route_text(None, first=False).plain == "route: deciding..."  # loaded by then


def test_the_support_line_says_when_no_number_of_the_answer_is_in_its_sources() -> None:
    from fieldkit.tui.widgets.exchange import support_text

    final = "Vaccinate at day 14 and again at day 24."
    spans = [(final.index("14"), final.index("14") + 2), (final.index("24"), final.index("24") + 2)]
    assert support_text(final, spans, True).plain == (
        "unsupported: 14, 24 (in no source: check it before acting on it)"
    )
    assert support_text(final, spans[:1], True).plain == "unsupported: 14 (in no source)"


async def test_a_stray_key_is_not_asked(stocked) -> None:
    app = make_app(stocked, start_mode="ask", load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("circumflex_accent", "enter")  # a burst of Escapes over SSH
        await settle(pilot)
        assert not list(app.screen.query(Exchange))  # nothing asked
        assert any("no words" in n for n in notices(pilot))


def test_a_stopped_answer_says_it_is_incomplete_and_its_cut_number_is_not_marked() -> None:
    from fieldkit.tui.widgets.exchange import support_text, uncut

    final = "Keep the brooder at 33°C at chick height for the first 3"
    assert support_text(final, [], True, stopped=True).plain == (
        "stopped, so incomplete: the numbers so far are in a source"
    )  # not "every number is in a source"
    # an answer that states no number is not said to have its numbers in a source
    assert support_text("Keep the brooder warm and dry.", [], True).plain == ""
    assert support_text("Keep it warm", [], True, stopped=True).plain == "stopped, so incomplete"
    cut = "Clean the SD-40"  # SD-400, cut by the stop
    spans = [(10, 15)]
    assert uncut(cut, spans, stopped=True) == []
    assert uncut(cut, spans, stopped=False) == spans  # a whole answer keeps its marks
    assert uncut("SD-40 and 12 L", [(0, 5)], stopped=True) == [(0, 5)]  # not at the end
    assert support_text("SD-40 and 12 L", [(0, 5)], True, stopped=True).plain == (
        "stopped, so incomplete; unsupported: SD-40 (in no source)"
    )


async def test_a_source_cut_to_one_line_fits_a_narrow_terminal() -> None:
    """At 60 columns the one-line source, cut for 80, wrapped onto a second line."""
    from textual.app import App, ComposeResult

    from fieldkit.tui.views import SourceView

    class OneExchange(App[None]):
        def compose(self) -> ComposeResult:
            yield Exchange("chicks huddling under the brooder")

    passage = SourceView("poultry r7 (0.47)", "What causes soft-shelled eggs?", "x " * 80)
    app = OneExchange()
    async with app.run_test(size=(60, 20)) as pilot:
        exchange = app.query_one(Exchange)
        exchange.set_grounding("Keep it warm.", [passage], [], "from the notes")
        await pilot.pause()
        shown = exchange.query_one(".sources", Static)
        first = str(shown.render()).splitlines()[0]
        assert first.endswith("...")
        assert len(first) <= shown.content_size.width  # one line, not two
        await pilot.resize_terminal(100, 20)
        await pilot.pause()
        wider = str(shown.render()).splitlines()[0]
        assert len(first) < len(wider) <= shown.content_size.width


async def test_ctrl_e_expands_the_answer_in_view_when_the_history_was_scrolled_back(
    stocked,
) -> None:
    from textual.containers import VerticalScroll

    from fieldkit.tui.views import SourceView

    app = make_app(stocked, start_mode="ask", load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        history = app.screen.query_one("#history", VerticalScroll)
        first, last = Exchange("first question"), Exchange("second question")
        for exchange in (first, last):
            await history.mount(exchange)
            passage = SourceView("pumps r1 (0.80)", "Priming?", "Pour 2 litres in.")
            exchange.set_grounding("A long answer. " * 120, [passage, passage], [], "notes")
        await pilot.pause()
        history.scroll_home(animate=False)  # reading the first answer again
        await pilot.pause()
        await pilot.press("ctrl+e")
        await pilot.pause()
        assert first.expanded
        assert not last.expanded  # the latest, out of view, stays as it was
        history.scroll_end(animate=False)
        await pilot.pause()
        await pilot.press("ctrl+e")
        await pilot.pause()
        assert last.expanded
        # the base model's answer below cites nothing: said, not an earlier answer opened
        bare = Exchange("how long do I boil an egg")
        await history.mount(bare)
        bare.set_grounding("Ten minutes. " * 120, [], [], "base")
        await pilot.pause()
        history.scroll_end(animate=False)
        await pilot.pause()
        await pilot.press("ctrl+e")
        await pilot.pause()
        assert "The answer in view cites no passage." in notices(pilot)
        assert (first.expanded, last.expanded) == (True, True)  # as they were: untouched


def test_the_library_stays_free_while_the_model_reads_the_passages(stocked, make_packet) -> None:
    """The bug: the model's reading of the passages ranked first (ranking.READ_K) ran on
    the library thread, so the Library and Peers screens waited up to seconds behind it."""
    from concurrent.futures import ThreadPoolExecutor

    from fieldkit.tui.backend import TuiBackend
    from tests.router.test_retrieval import NOTES

    record = make_packet(stocked.home, name="layers", domain="poultry", notes=NOTES)
    backend = TuiBackend(stocked)
    release = threading.Event()
    stocked.engine._submit(release.wait)  # the MLX thread is busy: a reading waits for it
    pool = ThreadPoolExecutor(2)
    try:  # a question no passage leads clearly, so the model reads (test_retrieval)
        grounding = pool.submit(backend.ground, "eggs and feed for layers", record.packet_id)
        deadline = time.monotonic() + 30
        while backend._passages is None or record.packet_id not in backend._passages._vectors:
            assert time.monotonic() < deadline
            assert not grounding.done(), grounding
            time.sleep(0.01)  # the passages are loaded: reading comes next
        rows = pool.submit(backend.packet_rows)
        assert "layers" in [row.name for row in rows.result(timeout=10)]
        assert not grounding.done()  # still waiting for the model, as it should
    finally:
        release.set()
        pool.shutdown(wait=True)
        backend.close()
    assert [s.passage_id for s in grounding.result().sources]  # read, then grounded


async def test_a_question_of_two_asks_is_answered_in_two_parts_with_both_sources(
    stocked, make_packet, make_adapter, base_fp
) -> None:
    """Both records were read, so both are listed under the answer before Ctrl+E, and the
    answer comes as "[1] ..." then "[2] ..." (fieldkit.generating)."""
    from fieldkit.assets import assets_dir
    from fieldkit.training.quality import domain_notes
    from tests.test_two_parts import TWO_ASKS

    notes = domain_notes(assets_dir() / "demo", "poultry")
    make_packet(stocked.home, name="hens", domain="hens", base_fingerprint=base_fp,
                adapter=make_adapter(5), notes=notes)  # fmt: skip
    app = make_app(stocked, start_mode="ask")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pick(pilot, "hens")
        exchange = await ask(pilot, TWO_ASKS)
        assert exchange.answer.startswith("[1] "), notices(pilot)
        assert "\n\n[2] " in exchange.answer
        sources = str(exchange.query_one(".sources", Static).render())
        assert "[1] hens " in sources
        assert "[2] hens " in sources
        assert "not read" not in sources
        assert sources.endswith("(Ctrl+E: full sources)")
