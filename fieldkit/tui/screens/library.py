"""Library mode: the packet table, a detail pane, and verify / remove / export / import /
trust."""

from __future__ import annotations

import asyncio
from pathlib import Path, PurePath

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Static

from fieldkit.errors import PacketFileExists
from fieldkit.tui.backend import FolderMissingError, TuiBackend
from fieldkit.tui.screens.base import ModeScreen, keys_footer
from fieldkit.tui.screens.dialogs import ConfirmDialog, TextDialog
from fieldkit.tui.views import PacketDetail, PacketRow
from fieldkit.tui.widgets.packet_detail import PacketDetailPane
from fieldkit.tui.widgets.packet_table import PacketTable
from fieldkit.tui.widgets.status_line import StatusLine


class LibraryScreen(ModeScreen):
    """The packets on this device and what can be done with each."""

    DEFAULT_CSS = """
    LibraryScreen #library-count { height: 1; padding: 0 1; color: $text-muted; }
    LibraryScreen PacketTable { height: 1fr; }
    LibraryScreen PacketDetailPane { height: 10; }
    """
    BINDINGS = [
        Binding("r", "refresh", "Refresh", show=False),  # in the help; the footer keeps ? Help
        Binding("v", "verify", "Verify"),
        Binding("d", "remove", "Remove"),
        Binding("e", "export", "Export"),
        Binding("i", "import_packets", "Import"),
        Binding("t", "trust", "Trust"),
        Binding("b", "block", "Block"),
    ]

    class Loaded(Message):
        """Fresh rows from the library."""

        def __init__(self, rows: list[PacketRow]) -> None:
            super().__init__()
            self.rows = rows

    class DetailLoaded(Message):
        """The detail of the packet under the cursor."""

        def __init__(self, detail: PacketDetail | None) -> None:
            super().__init__()
            self.detail = detail

    def __init__(self, backend: TuiBackend) -> None:
        super().__init__()
        self.backend = backend
        # the folder last exported to or imported from (a USB stick), offered again
        self.export_folder = str(backend.export_dir())

    def compose(self) -> ComposeResult:
        yield StatusLine("Library")
        yield Static("Loading the library...", id="library-count")
        yield PacketTable(id="packets")
        yield PacketDetailPane()
        yield keys_footer()

    def on_mount(self) -> None:
        self.action_refresh()

    def on_screen_resume(self) -> None:
        self.action_refresh()

    @property
    def table(self) -> PacketTable:
        return self.query_one(PacketTable)

    def action_refresh(self) -> None:
        self.load_rows()

    @work(
        thread=True,
        exit_on_error=False,
        group="library",
        exclusive=True,
        description="Reading the library",
    )
    def load_rows(self) -> None:
        self.post_message(self.Loaded(self.backend.packet_rows()))

    @on(Loaded)
    def show_rows(self, message: Loaded) -> None:
        self.table.show(message.rows)
        bad = sum(1 for row in message.rows if not row.status.good)
        count = f"{len(message.rows)} packets"
        if bad:
            count += f", {bad} NOT usable (see state)"
        if not message.rows:
            count = "No packets yet: sync with a peer (F2), or press i to import packet files."
        self.query_one("#library-count", Static).update(count)

    @on(PacketTable.Highlighted)
    def highlight(self, message: PacketTable.Highlighted) -> None:
        self.load_detail(message.packet_id)

    @work(
        thread=True,
        exit_on_error=False,
        group="detail",
        exclusive=True,
        description="Reading a packet",
    )
    def load_detail(self, packet_id: str | None) -> None:
        detail = self.backend.packet_detail(packet_id) if packet_id else None
        self.post_message(self.DetailLoaded(detail))

    @on(DetailLoaded)
    def show_detail(self, message: DetailLoaded) -> None:
        self.query_one(PacketDetailPane).show(message.detail)

    def _selected(self) -> PacketRow | None:
        packet_id = self.table.current_packet_id
        if packet_id is None:
            self.notify("The library is empty.", severity="warning")
            return None
        return self.table.rows_by_key[packet_id]

    def action_verify(self) -> None:
        if row := self._selected():
            self.run_verify(row)

    @work(thread=True, exit_on_error=False, group="library-action", description="Verifying")
    def run_verify(self, row: PacketRow) -> None:
        problem = self.backend.verify(row.packet_id)
        if problem is None:
            self.app.call_from_thread(self.notify, f"{row.name}: signature and weights intact.")
        else:
            self.app.call_from_thread(
                self.notify, f"{row.name} FAILED verification: {problem}", severity="error"
            )
        self.load_rows()

    @work(exit_on_error=False, group="library-action", description="Removing a packet")
    async def action_remove(self) -> None:
        row = self._selected()
        if row is None:
            return
        if not await self.app.push_screen_wait(ConfirmDialog(f"Remove {row.name}?")):
            return
        await asyncio.to_thread(self.backend.remove, row.packet_id)
        self.notify(f"Removed {row.name}.")
        self.load_rows()

    @work(exit_on_error=False, group="library-action", description="Exporting a packet")
    async def action_export(self) -> None:
        row = self._selected()
        if row is None:
            return
        folder = await self.app.push_screen_wait(
            TextDialog(f"Export {row.name} to folder:", value=self.export_folder)
        )
        if not folder:
            return
        self.export_folder = folder
        try:
            path = await asyncio.to_thread(self.backend.export, row.packet_id, Path(folder))
        except FolderMissingError:
            question = (
                f"{folder} does not exist (a USB stick not mounted, a typing slip?). "
                f"Make it and export {row.name} there?"
            )
            if not await self.app.push_screen_wait(ConfirmDialog(question)):
                self.notify(f"Nothing was exported; {folder} was not made.")
                return
            path = await asyncio.to_thread(
                self.backend.export, row.packet_id, Path(folder), create=True
            )
        except PacketFileExists as exists:
            question = f"{exists.path} already exists. Replace it with {row.name}?"
            if not await self.app.push_screen_wait(ConfirmDialog(question)):
                self.notify(f"Kept {exists.path}; nothing was exported.")
                return
            path = await asyncio.to_thread(
                self.backend.export, row.packet_id, Path(folder), replace=True
            )
        await asyncio.to_thread(self.backend.remember_folder, Path(folder))
        self.notify(f"Exported to {path}.")

    @work(exit_on_error=False, group="library-action", description="Importing packets")
    async def action_import_packets(self) -> None:
        where = await self.app.push_screen_wait(
            TextDialog(
                "Import a packet file, or every .fkpkt file in a folder:",
                value=self.export_folder,
            )
        )
        if not where:
            return
        outcome = await asyncio.to_thread(self.backend.import_packets, Path(where))
        is_file = where.lower().endswith(".fkpkt")  # its folder is offered next time
        self.export_folder = str(PurePath(where).parent) if is_file else where
        if outcome.ok:
            await asyncio.to_thread(self.backend.remember_folder, Path(self.export_folder))
        self.notify(outcome.text, severity="information" if outcome.ok else "error", timeout=8)
        self.load_rows()

    def action_trust(self) -> None:
        self.ask_author_trust("trusted")

    def action_block(self) -> None:
        self.ask_author_trust("blocked")

    @work(exit_on_error=False, group="library-action", description="Setting an author's trust")
    async def ask_author_trust(self, state: str) -> None:
        """Trust or block the author of the packet under the cursor, once the user says yes
        (one stray key changes nobody's trust)."""
        row = self._selected()
        if row is None:
            return
        if row.author_trust == state:  # nothing to ask: say so once
            self.notify(f"The author of {row.name!r} is already {state}.")
            return
        verb, then = AUTHOR_QUESTIONS[state]
        question = f"{verb} {row.author}, the author of {self._their_packets(row)}? {then}"
        if await self.app.push_screen_wait(ConfirmDialog(question)):
            self.run_trust(row, state)

    def _their_packets(self, row: PacketRow) -> str:
        """Name the packets here by the author of `row` (three, then a count)."""
        names = [r.name for r in self.table.rows_by_key.values() if r.author_id == row.author_id]
        names = sorted(names, key=lambda name: name != row.name)  # the one chosen first
        shown = ", ".join(names[:3])
        return shown if len(names) <= 3 else f"{shown} and {len(names) - 3} more"

    @work(thread=True, exit_on_error=False, group="library-action", description="Setting trust")
    def run_trust(self, row: PacketRow, state: str) -> None:
        self.backend.set_author_trust(row.author_id, state)
        self.app.call_from_thread(self.notify, f"Author {row.author} is now {state}.")
        self.load_rows()


# what trusting or blocking an author does, as the Library screen asks it
AUTHOR_QUESTIONS = {
    "trusted": ("Trust", "Their packets are then taken from any sync, and answer here."),
    "blocked": (
        "Block",
        "Their packets here are set aside, unused, and no more are taken from them.",
    ),
}
