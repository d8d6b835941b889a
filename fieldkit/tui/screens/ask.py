"""Ask mode: a question box, the route shown before the answer, streamed tokens, history."""

from __future__ import annotations

import threading
import time

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Input, Static

from fieldkit.errors import FieldkitError
from fieldkit.tui.backend import TuiBackend
from fieldkit.tui.screens.base import ModeScreen
from fieldkit.tui.screens.dialogs import PickDialog
from fieldkit.tui.views import AnswerChunk, RouteView
from fieldkit.tui.widgets.exchange import Exchange
from fieldkit.tui.widgets.status_line import StatusLine

AUTO = "auto"
BASE = "base"


class AskScreen(ModeScreen):
    """Ask the resident model; the router picks an expert unless one is picked by hand."""

    DEFAULT_CSS = """
    AskScreen #history { height: 1fr; padding: 0 1; }
    AskScreen .hint { color: $text-muted; margin-bottom: 1; }
    AskScreen #route-mode { height: 1; padding: 0 1; color: $text-muted; }
    AskScreen Input { dock: bottom; margin-bottom: 1; }
    """
    BINDINGS = [
        Binding("ctrl+o", "override", "Pick route"),
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+l", "clear", "Clear"),
        Binding("ctrl+e", "sources", "Sources"),
    ]

    class Routed(Message):
        def __init__(self, exchange: Exchange, route: RouteView) -> None:
            super().__init__()
            self.exchange = exchange
            self.route = route

    class Delta(Message):
        def __init__(self, exchange: Exchange, chunk: AnswerChunk) -> None:
            super().__init__()
            self.exchange = exchange
            self.chunk = chunk

    def __init__(self, backend: TuiBackend) -> None:
        super().__init__()
        self.backend = backend
        self.override: str = AUTO
        self.cancel = threading.Event()

    def compose(self) -> ComposeResult:
        yield StatusLine("Ask")
        yield VerticalScroll(
            Static(
                "Ask anything. The router picks the packet whose questions fit best, "
                "or the base model when none does; its choice shows before the answer.",
                classes="hint",
            ),
            id="history",
        )
        yield Static(self._route_mode_text(), id="route-mode")
        yield Input(placeholder="Ask a question and press Enter", id="question")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def _route_mode_text(self) -> str:
        if self.override == AUTO:
            return "route: automatic (Ctrl+O to pick by hand)"
        if self.override == BASE:
            return "route: base model, picked by hand (Ctrl+O to change)"
        return "route: one packet, picked by hand (Ctrl+O to change)"

    @on(Input.Submitted, "#question")
    def ask(self, event: Input.Submitted) -> None:
        question = event.value.strip()
        if not question:
            return
        event.input.clear()
        self.cancel.set()
        self.cancel = threading.Event()
        exchange = Exchange(question)
        history = self.query_one("#history", VerticalScroll)
        history.mount(exchange)
        history.scroll_end(animate=False)
        self.run_question(exchange, question, self.override, self.cancel)

    @work(thread=True, exit_on_error=False, group="ask", description="Answering")
    def run_question(
        self, exchange: Exchange, question: str, override: str, cancel: threading.Event
    ) -> None:
        if override == AUTO:
            try:
                route = self.backend.route(question)
            except (FieldkitError, ImportError) as exc:
                route = RouteView(None, "base model", 0.0, "-", f"router unavailable: {exc}", 0.0)
        else:
            route = self.backend.manual_route(None if override == BASE else override)
        self.post_message(self.Routed(exchange, route))
        started = time.perf_counter()
        count = 0
        last = AnswerChunk(done=True, stopped=True)
        try:
            abstained = route.packet_id is None and not route.manual
            for chunk in self.backend.answer(
                question, route.packet_id, cancel, abstained=abstained
            ):
                if chunk.notice:
                    self.post_message(self.Delta(exchange, AnswerChunk(notice=chunk.notice)))
                if chunk.text:
                    count += 1
                    self.post_message(self.Delta(exchange, AnswerChunk(text=chunk.text)))
                if chunk.done:
                    last = chunk
        except Exception:
            self.app.call_from_thread(exchange.finish, "[no answer: see the notice]")
            raise
        elapsed = max(time.perf_counter() - started, 1e-6)
        if last.tokens is None:
            last.tokens, last.tokens_per_s = count, count / elapsed
        self.post_message(self.Delta(exchange, last))

    @on(Routed)
    def show_route(self, message: Routed) -> None:
        message.exchange.set_route(message.route)

    @on(Delta)
    def show_delta(self, message: Delta) -> None:
        chunk = message.chunk
        if chunk.notice:
            message.exchange.set_notice(chunk.notice)
        if chunk.done:
            if chunk.final is not None:
                message.exchange.set_grounding(
                    chunk.final, chunk.sources, chunk.unsupported, chunk.note, chunk.nearest
                )
            stopped = ", stopped" if chunk.stopped else ""
            message.exchange.finish(
                f"[{chunk.tokens} tokens, {chunk.tokens_per_s or 0:.1f} tok/s{stopped}]"
            )
        elif chunk.text:
            message.exchange.add_text(chunk.text)
        self.query_one("#history", VerticalScroll).scroll_end(animate=False)

    def action_stop(self) -> None:
        """Stop the answer being written; with none running, leave the question box."""
        if any(w.group == "ask" and not w.is_finished for w in self.workers):
            self.cancel.set()
        else:
            self.set_focus(None)  # so 1 2 3 and ? reach the app; Tab comes back

    def action_sources(self) -> None:
        """Expand or fold the source passages of the latest answer that has any."""
        for exchange in reversed(list(self.query(Exchange))):
            if exchange.toggle_sources():
                return
        self.notify("No answer with sources yet.")

    def action_clear(self) -> None:
        self.query_one("#history", VerticalScroll).remove_children()

    @work(exit_on_error=False, group="ask-pick", description="Picking a route")
    async def action_override(self) -> None:
        import asyncio

        rows = await asyncio.to_thread(self.backend.packet_rows)
        choices = [(AUTO, "Automatic: let the router pick"), (BASE, "Base model: no packet")]
        choices += [
            (row.packet_id, f"{row.name} ({row.domain})") for row in rows if row.status.good
        ]
        picked = await self.app.push_screen_wait(PickDialog("Answer with:", choices))
        if picked is not None:
            self.override = picked
            self.query_one("#route-mode", Static).update(self._route_mode_text())
