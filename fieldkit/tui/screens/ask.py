"""Ask mode: a question box, the route shown before the answer, streamed tokens, history."""

from __future__ import annotations

import threading
from dataclasses import replace

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Input, Static
from textual.worker import Worker

from fieldkit.errors import FieldkitError
from fieldkit.tui.backend import TuiBackend
from fieldkit.tui.screens.base import ModeScreen, keys_footer
from fieldkit.tui.screens.dialogs import PickDialog
from fieldkit.tui.views import AnswerChunk, RouteView, SourceView
from fieldkit.tui.widgets.exchange import Exchange
from fieldkit.tui.widgets.question_box import QuestionBox
from fieldkit.tui.widgets.status_line import StatusLine

AUTO = "auto"
BASE = "base"
PICK_WIDTH = 50  # a record's line in the pick dialog: one line of its list at 80x24


class AskScreen(ModeScreen):
    """Ask the resident model; the router picks an expert unless one is picked by hand."""

    DEFAULT_CSS = """
    AskScreen #history { height: 1fr; padding: 0 1; }
    AskScreen #history:focus { background-tint: $foreground 5%; outline-left: tall $accent; }
    AskScreen .hint { color: $text-muted; margin-bottom: 1; }
    AskScreen #route-mode { height: 1; padding: 0 1; color: $text-muted; }
    AskScreen Input { dock: bottom; margin-bottom: 1; }
    /* notices stand above the question box (3 rows) and the footer, never over them */
    AskScreen ToastRack { margin-bottom: 4; }
    """
    BINDINGS = [
        Binding("ctrl+o", "override", "Pick route"),
        Binding("escape", "stop", "Stop"),  # in the footer only while an answer is written
        Binding("ctrl+l", "clear", "Clear"),
        # priority: the question box has focus after asking, and its own ctrl+e (cursor
        # to the end) would take the key; it keeps the key while no answer has sources
        Binding("ctrl+e", "sources", "Sources", priority=True),
        # in the footer only after an answer that showed records to pick from: a gap's
        # nearest record, not used, or the records an answer cites
        Binding("ctrl+n", "use_record", "Use record", priority=True),
        # every key typed here goes into the box, q too (the app's own ctrl+q quits)
        Binding("ctrl+q", "quit", "Quit", priority=True),
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

    class Failed(Message):
        """The answer failed (a notice says why); posted after Routed, so shown after it."""

        def __init__(self, exchange: Exchange) -> None:
            super().__init__()
            self.exchange = exchange

    def __init__(self, backend: TuiBackend) -> None:
        super().__init__()
        self.backend = backend
        self.override: str = AUTO  # AUTO, BASE or the id of the packet picked by hand
        self.override_name = ""  # the name of the packet picked by hand
        self.routed = False  # a route was shown: the router has loaded
        self.cancel = threading.Event()
        # the last answer's question and the records it showed that a person may pick to
        # answer from (see `pickable`)
        self.records: tuple[str, list[SourceView]] | None = None

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
        yield QuestionBox("Ask a question and press Enter", id="question")
        yield keys_footer()

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Offer Ctrl+E (and show it in the footer) only when an answer has sources."""
        if action == "sources":
            return any(exchange.has_sources for exchange in self.query(Exchange))
        if action == "stop":
            return self.answering
        if action == "use_record":
            return self.records is not None and not self.answering
        return True

    def check_consume_key(self, key: str, character: str | None) -> bool:
        """Every printable key is the question's: the app's 1 2 3, q and ? never fire here
        (nor show in the footer), wherever the focus is; F2-F4, F1 and Ctrl+Q do."""
        return character is not None and character.isprintable()

    @property
    def answering(self) -> bool:
        """True while an answer is being written."""
        return any(w.group == "ask" and not w.is_finished for w in self.workers)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        super().on_worker_state_changed(event)
        self.refresh_bindings()  # Escape: Stop while an answer runs, Leave box after

    async def action_quit(self) -> None:
        await self.app.action_quit()

    def _route_mode_text(self) -> str:
        if self.override == AUTO:
            return "route: automatic (Ctrl+O to pick by hand)"
        if self.override == BASE:
            return "route: base model, picked by hand (Ctrl+O to change)"
        return f"route: {self.override_name}, picked by hand (Ctrl+O to change)"

    @on(Input.Submitted, "#question")
    def ask(self, event: Input.Submitted) -> None:
        question = event.value.strip()
        if not question:
            return
        try:  # a stray key ("^" from a burst of Escapes over SSH) asks nothing
            self.backend.check_question(question)
        except FieldkitError as exc:
            self.notify(str(exc), severity="warning")
            return
        self.query_one("#question", QuestionBox).remember(question)
        event.input.clear()
        exchange = self._new_exchange(question)
        self.run_question(exchange, question, self.override, self.cancel)

    def _new_exchange(self, question: str) -> Exchange:
        """Stop any answer being written, and add an exchange for `question` to the history."""
        self.cancel.set()
        self.cancel = threading.Event()
        self.records = None
        exchange = Exchange(question, first=not self.routed)
        history = self.query_one("#history", VerticalScroll)
        history.mount(exchange)
        history.scroll_end(animate=False)
        return exchange

    @work(exit_on_error=False, group="ask-pick", description="Picking a record")
    async def action_use_record(self) -> None:
        """Answer the last question again from one record its answer showed: the nearest
        record of a gap answer, which the notes did not use, or one the answer cites (its
        second, when the first is not the asker's). The asker may know which is theirs
        where the notes could not tell. One record is answered from at once; of several,
        the asker picks one."""
        if self.records is None:
            return
        question, records = self.records
        source: SourceView | None = records[0]
        if len(records) > 1:
            choices = [(str(n), pick_label(n, r)) for n, r in enumerate(records)]
            picked = await self.app.push_screen_wait(
                PickDialog("Answer again from the record:", choices)
            )
            source = None if picked is None else records[int(picked)]
        if source is None or self.records is None or self.records[0] != question:
            return  # escaped, or another question was asked meanwhile
        exchange = self._new_exchange(question)
        self.run_question(
            exchange, question, source.packet_id, self.cancel, source.passage_id, source.packet
        )

    @work(thread=True, exit_on_error=False, group="ask", description="Answering")
    def run_question(
        self,
        exchange: Exchange,
        question: str,
        override: str,
        cancel: threading.Event,
        passage: str | None = None,
        name: str = "",
    ) -> None:
        route, dropped = None, ""
        if override != AUTO:
            try:
                route = self.backend.manual_route(
                    None if override == BASE else override, name or self.override_name
                )
            except FieldkitError as exc:  # removed or blocked since it was picked
                if passage is not None:  # a record of that packet: no other packet answers
                    self.post_message(self.Failed(exchange))
                    raise
                dropped = f"{exc} The router picks instead (Ctrl+O to pick again)."
                self.app.call_from_thread(self.drop_pick, override)
        if route is None:
            try:
                route = self.backend.route(question)
            except (FieldkitError, ImportError) as exc:
                route = RouteView(None, "base model", 0.0, "-", f"router unavailable: {exc}", 0.0)
            route = replace(route, dropped=dropped)
        self.post_message(self.Routed(exchange, route))
        last = AnswerChunk(done=True, stopped=True)
        try:
            abstained = route.packet_id is None and not route.manual
            for chunk in self.backend.answer(
                question, route.packet_id, cancel, abstained=abstained, passage=passage
            ):
                if chunk.notice:
                    self.post_message(self.Delta(exchange, AnswerChunk(notice=chunk.notice)))
                if chunk.text:
                    self.post_message(self.Delta(exchange, AnswerChunk(text=chunk.text)))
                if chunk.done:
                    last = chunk
        except Exception:
            self.post_message(self.Failed(exchange))
            raise
        self.post_message(self.Delta(exchange, last))

    def drop_pick(self, override: str) -> None:
        """Go back to automatic routing: the packet picked by hand may answer no more."""
        if self.override == override:
            self.override, self.override_name = AUTO, ""
            self.query_one("#route-mode", Static).update(self._route_mode_text())

    @on(Routed)
    def show_route(self, message: Routed) -> None:
        self.routed = True
        message.exchange.set_route(message.route)

    @on(Failed)
    def show_failure(self, message: Failed) -> None:
        message.exchange.finish("[no answer: see the notice]")

    @on(Delta)
    def show_delta(self, message: Delta) -> None:
        chunk = message.chunk
        if chunk.notice:
            message.exchange.set_notice(chunk.notice)
        if chunk.done:
            if chunk.final is not None:
                message.exchange.set_grounding(
                    chunk.final,
                    chunk.sources,
                    chunk.unsupported,
                    chunk.note,
                    chunk.nearest,
                    stopped=chunk.stopped,
                    warnings=chunk.warnings,
                    checked=chunk.generated,
                    as_written=chunk.as_written,
                )
                records = pickable(chunk)
                if records:
                    self.records = (message.exchange.question, records)
                self.refresh_bindings()  # Ctrl+E, and Ctrl+N, may apply now
            stopped = ", stopped" if chunk.stopped else ""
            if not chunk.generated:  # the notes settled it: no model wrote a token
                message.exchange.finish("[nothing generated]")
            elif chunk.tokens is None:  # the stream ended without the engine's numbers
                message.exchange.finish("[stopped]")
            else:  # the engine's count and speed, timed from the first token
                message.exchange.finish(
                    f"[{chunk.tokens} tokens, {chunk.tokens_per_s or 0:.1f} tok/s{stopped}]"
                )
        elif chunk.text:
            message.exchange.add_text(chunk.text)
        self.query_one("#history", VerticalScroll).scroll_end(animate=False)

    def stop_answer(self) -> bool:
        """Stop the answer being written; return whether one was."""
        self.cancel.set()
        return self.answering

    def on_unmount(self) -> None:
        # The app is quitting: an answer left to run would hold the exit until it ends
        # (its thread is joined as the process exits), so it stops here like Escape.
        self.stop_answer()

    def action_stop(self) -> None:
        """Stop the answer being written and go back to the question box."""
        self.stop_answer()
        self.query_one("#question", Input).focus()

    def on_key(self, event: events.Key) -> None:
        """Out of the question box (in the history), a printable key goes into the box:
        typing is never silently dropped, and never switches modes or quits."""
        if isinstance(self.focused, Input) or not event.is_printable or not event.character:
            return
        event.stop()
        event.prevent_default()
        box = self.query_one("#question", Input)
        box.focus()
        box.insert_text_at_cursor(event.character)

    def action_sources(self) -> None:
        """Expand or fold the source passages of the lowest answer in view (the latest,
        unless the history was scrolled back to an earlier one); one that cites none says
        so, rather than opening an earlier answer's out of sight."""
        exchanges = list(self.query(Exchange))
        if not any(exchange.has_sources for exchange in exchanges):
            self.notify("No answer with sources yet.")
            return
        history = self.query_one("#history", VerticalScroll)
        top, bottom = history.scroll_y, history.scroll_y + history.size.height
        in_view = [
            e for e in exchanges if e.virtual_region.y < bottom and e.virtual_region.bottom > top
        ]
        lowest = (in_view or exchanges)[-1]
        if lowest.has_sources:
            lowest.toggle_sources()
        else:
            self.notify("The answer in view cites no passage.")

    async def action_clear(self) -> None:
        """Clear the answers (the hint above them stays), and say so: Ctrl+L clears a
        shell's screen, not its history, and nothing keeps these answers."""
        answers = len(self.query(Exchange))
        await self.query_one("#history", VerticalScroll).remove_children(Exchange)
        self.refresh_bindings()
        if answers:
            self.notify(f"Cleared {answers} answer{'' if answers == 1 else 's'} from the screen.")

    @work(exit_on_error=False, group="ask-pick", description="Picking a route")
    async def action_override(self) -> None:
        import asyncio

        rows = await asyncio.to_thread(self.backend.packet_rows)
        choices = [(AUTO, "Automatic: let the router pick"), (BASE, "Base model: no packet")]
        good = {row.packet_id: row for row in rows if row.status.good}
        choices += [(key, f"{row.name} ({row.domain})") for key, row in good.items()]
        dialog = PickDialog("Answer with:", choices, current=self.override)
        picked = await self.app.push_screen_wait(dialog)
        if picked is not None:
            self.override = picked
            self.override_name = good[picked].name if picked in good else ""
            self.query_one("#route-mode", Static).update(self._route_mode_text())


def pickable(chunk: AnswerChunk) -> list[SourceView]:
    """Return the records a finished answer showed that a person may pick to answer from:
    a gap answer's nearest record, else the records it cites; none for an answer from a
    record already picked, nor for records without an id."""
    if chunk.picked:
        return []
    return [r for r in chunk.nearest or chunk.sources if r.passage_id and r.packet_id]


def pick_label(n: int, record: SourceView) -> str:
    """Return a record as the pick dialog lists it: '[1] poultry r23: its title'."""
    title = record.title or record.text
    head = f"[{n + 1}] {record.packet} {record.passage_id}: "
    room = PICK_WIDTH - len(head)
    return head + (title if len(title) <= room else title[: room - 1] + "…")
