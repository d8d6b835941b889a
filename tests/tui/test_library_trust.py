"""Library mode shows whether each packet's author is trusted, and `t` on an author
trusted already says so instead of asking."""

from __future__ import annotations

from fieldkit.tui.screens.dialogs import ConfirmDialog
from tests.tui.helpers import notices, settle, wait_for_screen
from tests.tui.test_library import detail_text, library_with_carol


def author_line(app) -> str:
    """Return the detail pane's author line, its blanks squeezed."""
    [line] = [line for line in detail_text(app).splitlines() if line.startswith("author")]
    return " ".join(line.split())


async def test_the_detail_shows_the_authors_trust_and_t_says_when_it_is_trusted(
    stocked, make_home, make_adapter, base_fp
) -> None:
    async with library_with_carol(stocked, make_home, make_adapter, base_fp) as (carol, app, pilot):
        # on aqua, by carol
        who = f"author {carol.device_id[:8]} ({carol.device_id}),"
        assert author_line(app) == f"{who} neither trusted nor blocked"
        await pilot.press("t")
        await wait_for_screen(pilot, ConfirmDialog)
        await pilot.press("y")
        await settle(pilot)
        assert author_line(app) == f"{who} trusted"
        await pilot.press("t")  # trusted already: nothing to ask
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmDialog)
        assert notices(pilot)[-1] == "The author of 'aqua' is already trusted."
        await pilot.press("b")
        await wait_for_screen(pilot, ConfirmDialog)
        await pilot.press("y")
        await settle(pilot)
        assert author_line(app) == f"{who} BLOCKED"
        await pilot.press("b")  # so does b on an author blocked already
        await settle(pilot)
        assert notices(pilot)[-1] == "The author of 'aqua' is already blocked."
        await pilot.press("down")  # pumps, made on this device
        await settle(pilot)
        assert author_line(app).endswith("), this device")
