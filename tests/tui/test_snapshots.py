"""80x24 snapshots of every mode, on real homes with fixed keys and timestamps."""

from __future__ import annotations

import asyncio

from fieldkit.errors import TransportError
from fieldkit.tui.app import make_app
from tests.tui.helpers import settle


def screen_text(svg: str) -> str:
    """Return the words of an exported screenshot, one space for any run of blanks."""
    import html
    import re

    words = "".join(re.findall(r">([^<>]+)</text>", svg))
    return re.sub(r"\s+", " ", html.unescape(words).replace("\xa0", " "))


class RadioOffBecauseSnapshotsIgnoreTheHost:
    """A radio whose Bluetooth is off, as on a machine without an adapter: a snapshot must
    not change with the host's Bluetooth (a Mac's real radio would find devices)."""

    async def scan(self, seconds: float, stop_early: str | None = None) -> list:
        raise TransportError("Bluetooth is off.")

    async def connect(self, address: str):
        raise TransportError("Bluetooth is off.")

    async def advertise(self, device_id: str, name: str, connects: bool = False):
        raise TransportError("Bluetooth is off.")


def test_library_snapshot(snap_compare, stocked) -> None:
    app = make_app(stocked, start_mode="library", load_model=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle)


def test_library_empty_snapshot(snap_compare, make_services) -> None:
    app = make_app(make_services("empty"), start_mode="library", load_model=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle)


def test_peers_snapshot(snap_compare, stocked) -> None:
    lib = stocked.library
    lib.set_trust("aaaabbbbccccdddd", "trusted")
    lib.set_trust("eeeeffffgggghhhh", "blocked")

    async def scanned(pilot) -> None:
        await settle(pilot)
        ble = [asyncio.ensure_future(w.wait()) for w in pilot.app.workers if w.group == "ble"]
        if ble:
            await asyncio.wait(ble, timeout=20)
        await pilot.pause()

    # the same screen on every machine, whatever Bluetooth the host has
    app = make_app(
        stocked, start_mode="peers", load_model=False, radio=RadioOffBecauseSnapshotsIgnoreTheHost()
    )
    assert snap_compare(app, terminal_size=(80, 24), run_before=scanned)


def test_ask_snapshot(snap_compare, stocked) -> None:
    app = make_app(stocked, start_mode="ask", load_model=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle)


def test_help_snapshot(snap_compare, stocked) -> None:
    async def open_help(pilot) -> None:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    app = make_app(stocked, start_mode="library", load_model=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=open_help)


async def test_ask_sources_screen(stocked, make_packet, make_adapter, base_fp) -> None:
    from fieldkit.store.notes import Passage
    from fieldkit.tui.widgets.exchange import Exchange

    notes = [
        Passage("r1", "Chlorinate a new well with 50 g of bleach powder per 1000 litres.",
                "How do I disinfect a new well?"),
        Passage("r2", "Replace the hand pump's leather cup seals every 12 months.",
                "How often are pump seals replaced?"),
    ]  # fmt: skip
    make_packet(
        stocked.home, name="wells", domain="water", base_fingerprint=base_fp,
        adapter=make_adapter(4), notes=notes,
    )  # fmt: skip

    async def answered(pilot) -> None:
        from textual.widgets import Input, OptionList, Static

        from fieldkit.tui.screens.dialogs import PickDialog

        await settle(pilot)
        await pilot.press("ctrl+o")
        await pilot.pause()
        await pilot.pause()
        assert isinstance(pilot.app.screen, PickDialog)
        options = pilot.app.screen.query_one(OptionList)
        for i in range(options.option_count):
            if "wells" in str(options.get_option_at_index(i).prompt):
                options.highlighted = i
        await pilot.press("enter")
        await settle(pilot)
        pilot.app.screen.query_one(Input).value = "How much bleach for a new well?"
        await pilot.press("enter")
        await settle(pilot)
        exchange = pilot.app.screen.query(Exchange).last()
        for _ in range(200):  # the last Delta message may still be on its way
            if exchange.sources:
                break
            await pilot.pause(0.05)
        assert exchange.sources
        await settle(pilot)  # the answer's worker has finished: nothing repaints after us
        # The tiny random model writes noise: show a fixed answer through the same widget
        # calls, its marks from the real support check against the real sources.
        from fieldkit.support import support_check

        final = "Use 50 g of bleach powder per 1000 litres, then wait 24 hours."
        passages = [f"{s.title}\n{s.text}" for s in exchange.sources]
        spans = [(u.start, u.end) for u in support_check(final, passages)]
        exchange.set_grounding(final, exchange.sources, spans, "")
        exchange.query_one(".stats", Static).update("[tokens, tok/s: vary from run to run]")
        await settle(pilot)
        await pilot.pause()

    # Compared as text at 80x24: the same screen drew with other styling under load in a
    # fresh clone (cursor and focus timing), never with other words.
    app = make_app(stocked, start_mode="ask")
    async with app.run_test(size=(80, 24)) as pilot:
        await answered(pilot)
        screen = screen_text(app.export_screenshot())
    for expected in (
        "route: wells (picked by hand)",
        "Use 50 g of bleach powder per 1000 litres, then wait 24 hours.",
        "[1] wells r1",
        "How do I disinfect a new well?: Chlorinate a new well",
        "(1 more, Ctrl+E: full sources)",
        "unsupported: 24 hours (in no source)",
    ):
        assert expected in screen, screen
