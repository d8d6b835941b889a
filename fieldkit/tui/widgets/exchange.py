"""One question and its answer in the Ask history: the route first, then streamed text."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from fieldkit.tui.views import RouteView


def route_text(route: RouteView | None) -> Text:
    """Return the one-line route decision: chosen packet, score, runner-up, or base model."""
    if route is None:
        return Text("route: deciding...", style="italic")
    if route.manual:
        return Text.assemble(("route: ", "bold"), f"{route.label} (picked by hand)")
    if route.packet_id is None:
        reason = f" ({route.reason})" if route.reason else ""
        return Text.assemble(("route: ", "bold"), "base model: no expert fits", reason)
    return Text.assemble(
        ("route: ", "bold"),
        (route.label, "bold"),
        f" score {route.score:.2f} | runner-up {route.runner_up} | {route.route_ms:.0f} ms",
    )


class Exchange(Vertical):
    """A question, its route line, its answer (growing as tokens arrive) and its speed."""

    DEFAULT_CSS = """
    Exchange { height: auto; margin-bottom: 1; }
    Exchange > .question { color: $accent; text-style: bold; }
    Exchange > .route { color: $text-muted; }
    Exchange > .stats { color: $text-muted; }
    """

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question
        self.answer = ""
        self.pieces = 0
        self.started = 0.0

    def compose(self) -> ComposeResult:
        yield Static(Text(f"> {self.question}"), classes="question")
        yield Static(route_text(None), classes="route")
        yield Static("", classes="answer", markup=False)
        yield Static("", classes="stats", markup=False)

    def set_route(self, route: RouteView) -> None:
        self.query_one(".route", Static).update(route_text(route))

    def add_text(self, delta: str) -> None:
        """Append a streamed piece; every few pieces, show the running speed."""
        if not self.answer:
            self.started = time.perf_counter()
        self.answer += delta
        self.pieces += 1
        self.query_one(".answer", Static).update(self.answer)
        if self.pieces % 8 == 0:
            rate = self.pieces / max(time.perf_counter() - self.started, 1e-6)
            self.query_one(".stats", Static).update(f"[writing... {rate:.1f} tok/s]")

    def finish(self, stats: str) -> None:
        self.query_one(".stats", Static).update(stats)
