"""One exchange of the Ask history on its own: what it says under an answer."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import Static

from fieldkit.support import NUMBERS_FOUND
from fieldkit.tui.views import SourceView
from fieldkit.tui.widgets.exchange import Exchange


class OneExchange(App[None]):
    def compose(self) -> ComposeResult:
        yield Exchange("cold box packing for a 6 hour drive")


async def test_an_answer_drawn_from_a_passage_not_read_says_so_under_its_marks() -> None:
    """The answer's numbers were those of [2], shown as near but not given to the model,
    while [1] was cited: the line said only that every number is in a source."""
    read = SourceView("cold-chain r16 (0.67)", "Packing order?", "Ice packs at the bottom.")
    unread = SourceView("cold-chain r2 (0.66, near, not read)", "Conditioning?", "35-45 minutes.")
    follows = "its numbers are those of [2], which the model was not given, not of [1]: ..."
    app = OneExchange()
    async with app.run_test(size=(80, 24)) as pilot:
        exchange = app.query_one(Exchange)
        final = "Leave them out 35-45 minutes."
        exchange.set_grounding(final, [read, unread], [], "notes", warnings=follows)
        await pilot.pause()
        lines = str(exchange.query_one(".support", Static).render()).splitlines()
        assert " ".join(lines).startswith(NUMBERS_FOUND[:40])
        assert follows.split(":")[0] in " ".join(lines)
        exchange.set_grounding(final, [read, unread], [], "notes")  # without: as before
        await pilot.pause()
        assert "not given" not in str(exchange.query_one(".support", Static).render())
