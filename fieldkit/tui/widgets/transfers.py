"""Per-packet transfer progress: a bar, bytes, rate and a mark when a transfer resumed."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Label, ProgressBar

from fieldkit.formats import format_size
from fieldkit.tui.views import SyncProgress

NAME_WIDTH = 21  # "<- " and an 18-character packet name ("<- grain-storage" whole)


def progress_label(progress: SyncProgress) -> str:
    """Return '12.0 kB/40.0 kB  3.1 kB/s  resumed' for a transfer under way, and
    '40.0 kB  done' once it finished (short enough to show at 80 columns)."""
    if progress.finished:
        parts = [format_size(progress.total_bytes), "done"]
    else:
        parts = [
            f"{format_size(progress.done_bytes)}/{format_size(progress.total_bytes)}",
            f"{format_size(int(progress.rate_bps))}/s",
        ]
    if progress.resumed:
        parts.append("resumed")
    return "  ".join(parts)


def row_name(packet: str) -> str:
    """Return a transfer's name cut to its column, '~' marking a cut."""
    room = NAME_WIDTH - 1
    return packet if len(packet) <= room else packet[: room - 1] + "~"


class TransferRow(Horizontal):
    """One packet's transfer."""

    DEFAULT_CSS = """
    TransferRow { height: 1; }
    TransferRow > .name { width: 21; }
    TransferRow > ProgressBar { width: 24; }
    TransferRow > .info { width: 1fr; }
    """

    def __init__(self, packet: str) -> None:
        super().__init__()
        self.packet = packet
        self.latest: SyncProgress | None = None
        self._ready = False

    def compose(self) -> ComposeResult:
        yield Label(row_name(self.packet), classes="name")
        yield ProgressBar(show_eta=False, show_percentage=True)
        yield Label("", classes="info")

    def on_mount(self) -> None:
        self._ready = True
        self._apply()

    def update_progress(self, progress: SyncProgress) -> None:
        """Show `progress` now, or as soon as the row is mounted."""
        self.latest = progress
        if self._ready:
            self._apply()

    def _apply(self) -> None:
        progress = self.latest
        if progress is None:
            return
        self.query_one(ProgressBar).update(
            total=max(progress.total_bytes, 1), progress=progress.done_bytes
        )
        self.query_one(".info", Label).update(progress_label(progress))


class TransferList(VerticalScroll):
    """The transfers of the current sync, one row per packet."""

    DEFAULT_CSS = """
    TransferList { height: 6; border-top: solid $primary; }
    TransferList:focus { border-top: heavy $accent; background-tint: $foreground 5%; }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - textual's name
        super().__init__(id=id, can_focus=False)  # Tab skips it while it is empty
        self.rows: dict[str, TransferRow] = {}

    def reset(self) -> None:
        self.rows.clear()
        self.remove_children()
        self.can_focus = False
        if self.has_focus:
            self.screen.focus_next()

    def update_progress(self, progress: SyncProgress) -> None:
        row = self.rows.get(progress.packet)
        if row is None:
            row = self.rows[progress.packet] = TransferRow(progress.packet)
            self.mount(row)
            self.can_focus = True
        row.update_progress(progress)
