"""One question and its answer in the Ask history: the route first, then streamed text."""

from __future__ import annotations

from dataclasses import replace

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from fieldkit.support import (
    CHECK_IT,
    NUMBERS_FOUND,
    none_supported,
    shown_marks,
    states_numbers,
)
from fieldkit.tui.views import RouteView, SourceView


def route_text(route: RouteView | None, first: bool = True) -> Text:
    """Return the one-line route decision: chosen packet, score, runner-up, or base model;
    first, on a line of its own, why a packet picked by hand was set aside. Before the
    decision, the `first` question of a session says why it waits."""
    if route is not None and route.dropped:
        line = route_text(replace(route, dropped=""))
        return Text.assemble((route.dropped, "italic"), "\n", line)
    if route is None:
        # the first question of a session also loads the router's embedder (seconds)
        why = " (the first question also loads the router)" if first else ""
        return Text(f"route: deciding...{why}", "italic")
    if route.manual:
        return Text.assemble(("route: ", "bold"), f"{route.label} (picked by hand)")
    if route.packet_id is None:  # the reason says why: no expert fits, an everyday question
        reason = f": {route.reason}" if route.reason else ": no expert fits"
        hint = f" (Ctrl+O to ask {route.nearest} anyway)" if route.nearest else ""
        return Text.assemble(("route: ", "bold"), "base model", reason, (hint, "italic"))
    return Text.assemble(
        ("route: ", "bold"),
        (route.label, "bold"),
        f" score {route.score:.2f} | runner-up {route.runner_up} | {route.route_ms:.0f} ms",
    )


def _passage_line(
    out: Text, head: str, source: SourceView, expanded: bool, width: int, fact_only: bool = False
) -> None:
    """Append `head` (bold) and the passage's title and text (`fact_only` and not
    expanded: its text alone): on one line cut to `width`, or whole when expanded."""
    titled = source.title and (expanded or not fact_only)
    body = f"{source.title}: {source.text}" if titled else source.text
    body = " ".join(body.split())
    room = max(width - len(head), 20)
    if not expanded and len(body) > room:
        body = body[: room - 3].rstrip() + "..."
    out.append(head, style="bold")
    out.append(body)


def sources_text(sources: list[SourceView], expanded: bool, width: int = 76) -> Text:
    """Return the source lines under an answer: the passages the model read (the first,
    or both for an answer in two parts) cut to one line each, or every passage in full
    when expanded."""
    if not sources:
        return Text("")
    out = Text()
    read = [s for s in sources if s.read] or sources[:1]
    shown = sources if expanded else read
    for n, source in enumerate(shown, 1):
        if n > 1:
            out.append("\n")
        _passage_line(out, f"[{n}] {source.label} ", source, expanded, width)
    if not expanded:
        more = f"{len(sources) - len(read)} more, " if len(sources) > len(read) else ""
        out.append(f"\n({more}Ctrl+E: full sources)", style="italic")
    return out


def nearest_text(
    note: str, nearest: SourceView, expanded: bool, width: int = 76, as_written: bool = False
) -> Text:
    """Return where a gap answer came from, then the passage nearest the question, which
    the notes did not find close enough to use: cut to one line (its fact: the gap sentence
    above names its title), or whole when expanded; only its label when it is the answer's
    text (`as_written`: Answer.as_written)."""
    out = Text(f"({note})\n", style="italic")
    if as_written:
        out.append(f"nearest record, as written above: {nearest.label}", style="bold")
        out.append("\n(Ctrl+N: have the packet answer from it)", style="italic")
        return out
    head = f"nearest record, not used: {nearest.label} "
    _passage_line(out, head, nearest, expanded, width, fact_only=True)
    if not expanded:
        out.append("\n(Ctrl+E: the whole record, Ctrl+N: answer from it)", style="italic")
    return out


def marked_answer(text: str, spans: list[tuple[int, int]]) -> Text:
    """Return the answer with each unsupported number marked."""
    out = Text(text)
    for start, end in spans:
        out.stylize("bold reverse", start, end)
    return out


STOPPED = "stopped, so incomplete"


def uncut(final: str, spans: list[tuple[int, int]], stopped: bool) -> list[tuple[int, int]]:
    """Return the marks of an answer, less one that runs to the end of an answer stopped
    by hand: "SD-40" cut from "SD-400" is no claim of the answer's."""
    return [(a, b) for a, b in spans if not (stopped and b >= len(final.rstrip()))]


def support_text(
    final: str,
    spans: list[tuple[int, int]],
    has_sources: bool,
    stopped: bool = False,
) -> Text:
    """Return the line that says which numbers no source states; an answer `stopped` by
    hand says first that it is incomplete, and is never called wholly supported."""
    head = (f"{STOPPED}; ", "bold") if stopped else ""
    if spans:
        marks = ", ".join(shown_marks(final, spans))
        said = "in no source"
        if none_supported(final, len(spans)):
            said = f"{said}: {CHECK_IT}"
        return Text.assemble(head, ("unsupported: ", "bold"), f"{marks} ({said})")
    if stopped:
        vouched = has_sources and states_numbers(final)
        so_far = ": the numbers so far are in a source" if vouched else ""
        return Text.assemble((STOPPED, "bold"), so_far)
    if has_sources and states_numbers(final):
        return Text(NUMBERS_FOUND)
    return Text("")


class Exchange(Vertical):
    """A question, its route line, its answer (growing as tokens arrive), where the answer
    came from (its source passages, or 'from the adapter only'), support marks and speed."""

    DEFAULT_CSS = """
    Exchange { height: auto; margin-bottom: 1; }
    Exchange > .question { color: $accent; text-style: bold; }
    Exchange > .route { color: $text-muted; }
    Exchange > .notice { color: $warning; }
    Exchange > .sources { color: $text-muted; }
    Exchange > .support { color: $warning; }
    Exchange > .stats { color: $text-muted; }
    Exchange > .empty { display: none; }
    """

    def __init__(self, question: str, first: bool = True) -> None:
        super().__init__()
        self.question = question
        self.first = first  # the session's first question: the router may still load
        self.answer = ""
        self.sources: list[SourceView] = []
        self.nearest: list[SourceView] = []  # a gap answer's nearest passage, not used
        self.as_written = False  # the answer's text is that passage (Answer.as_written)
        self.note = ""
        self.expanded = False

    def compose(self) -> ComposeResult:
        yield Static(Text(f"> {self.question}"), classes="question")
        yield Static(route_text(None, self.first), classes="route")
        yield Static("", classes="notice empty", markup=False)
        yield Static("", classes="answer", markup=False)
        yield Static("", classes="sources empty", markup=False)
        yield Static("", classes="support empty", markup=False)
        yield Static("", classes="stats", markup=False)

    def set_route(self, route: RouteView) -> None:
        self.query_one(".route", Static).update(route_text(route))
        if not self.answer:  # the prompt is read before the first sentence: seconds here
            self.query_one(".stats", Static).update("[reading the question...]")

    def set_notice(self, notice: str) -> None:
        """Show, before the answer, that the packet's notes have nothing on the question,
        or may not cover it."""
        self._show(".notice", Text(notice))

    def add_text(self, delta: str) -> None:
        """Append a streamed piece (whole sentences: the engine holds back a sentence until
        it ends, so pieces are no measure of tokens and no speed is shown until the end)."""
        if not self.answer:
            self.query_one(".stats", Static).update("[writing...]")
        self.answer += delta
        self.query_one(".answer", Static).update(self.answer)

    def set_grounding(
        self,
        final: str,
        sources: list[SourceView],
        unsupported: list[tuple[int, int]],
        note: str,
        nearest: list[SourceView] | None = None,
        stopped: bool = False,
        warnings: str | None = None,
        checked: bool = True,
        as_written: bool = False,
    ) -> None:
        """Show the whole answer with its marks, its sources (or where it came from, and
        for a gap answer the nearest record: not used, or `as_written` as the answer's text);
        an answer `stopped` by hand says it is incomplete; `warnings` (Answer.warnings:
        follows_unread, recites) follow the marks; an answer no model wrote (not `checked`:
        Answer.generated) has no support line."""
        self.answer, self.note = final, note
        self.sources, self.nearest = list(sources), list(nearest or [])
        self.as_written = as_written
        marks = uncut(final, unsupported, stopped)
        self.query_one(".answer", Static).update(marked_answer(final, marks))
        self._show_sources()
        support = support_text(final, marks, bool(sources), stopped) if checked else Text("")
        if warnings:
            support = Text.assemble(support, "\n" if support.plain else "", warnings)
        self._show(".support", support)

    @property
    def has_sources(self) -> bool:
        """Whether Ctrl+E has anything to expand: source passages or a nearest record (not
        one whose text is the answer's: `as_written`)."""
        return bool(self.sources or (self.nearest and not self.as_written))

    def toggle_sources(self) -> bool:
        """Expand or fold the source passages (or a gap's nearest record), bringing them
        into view; return True if there were any."""
        if not self.has_sources:
            return False
        self.expanded = not self.expanded
        self._show_sources()
        self.call_after_refresh(self.query_one(".sources", Static).scroll_visible, animate=False)
        return True

    def _show_sources(self) -> None:
        width = self._line_width()
        if self.sources:
            self._show(".sources", sources_text(self.sources, self.expanded, width))
        elif self.nearest:
            note, nearest = self.note, self.nearest[0]
            shown = nearest_text(note, nearest, self.expanded, width, self.as_written)
            self._show(".sources", shown)
        elif self.note:
            self._show(".sources", Text(f"({self.note})", style="italic"))

    def _line_width(self) -> int:
        """Return the characters a line of the exchange holds (76 at 80 columns): a source
        cut to one line fits it on a narrower terminal too."""
        width = self.content_size.width or self.app.size.width - 4
        return max(width - 1, 30)

    def on_resize(self) -> None:
        if self.has_sources and not self.expanded:
            self._show_sources()  # the one-line cut follows the width

    def finish(self, stats: str) -> None:
        self.query_one(".stats", Static).update(stats)

    def _show(self, selector: str, text: Text) -> None:
        widget = self.query_one(selector, Static)
        widget.update(text)
        widget.set_class(not text.plain, "empty")
