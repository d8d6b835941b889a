"""Peers mode: devices nearby and known, pairing by six-digit code, sync with progress."""

from __future__ import annotations

import asyncio

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Static

from fieldkit.gossip.tcp import DEFAULT_PORT
from fieldkit.screens.base import ModeScreen
from fieldkit.screens.dialogs import ConfirmDialog, TextDialog
from fieldkit.tui_services import PeerRow, SyncProgress, SyncResult, TuiBackend
from fieldkit.widgets.status_line import StatusLine
from fieldkit.widgets.transfers import TransferList


class PeersScreen(ModeScreen):
    """Nearby and known devices; sync with one key, watch each packet arrive."""

    DEFAULT_CSS = """
    PeersScreen .info { height: auto; padding: 0 1; }
    PeersScreen #ble { color: $warning; }
    PeersScreen #peers { height: 1fr; }
    PeersScreen #sync-state { height: 1; padding: 0 1; }
    """
    BINDINGS = [
        Binding("s", "sync", "Sync"),
        Binding("l", "listen", "Listen"),
        Binding("x", "cancel", "Cancel sync"),
        Binding("t", "trust", "Trust"),
        Binding("b", "block", "Block"),
        Binding("r", "refresh", "Rescan"),
    ]

    class Loaded(Message):
        def __init__(self, me: str, ble: str, peers: list[PeerRow]) -> None:
            super().__init__()
            self.me = me
            self.ble = ble
            self.peers = peers

    class Progress(Message):
        def __init__(self, progress: SyncProgress) -> None:
            super().__init__()
            self.progress = progress

    def __init__(self, backend: TuiBackend) -> None:
        super().__init__()
        self.backend = backend
        self.peer_rows: dict[str, PeerRow] = {}
        self.last_address = ""
        self.listening = ""

    def compose(self) -> ComposeResult:
        yield StatusLine("Peers")
        yield Static("This device: ...", id="me", classes="info")
        yield Static("Bluetooth: checking...", id="ble", classes="info")
        table: DataTable[str] = DataTable(id="peers", cursor_type="row")
        yield table
        yield Static(
            "No sync running. s: sync with a LAN peer, l: let peers sync with this one.",
            id="sync-state",
        )
        yield TransferList(id="transfers")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#peers", DataTable)
        for label, width in (("name", 16), ("id", 16), ("address", 21), ("trust", 9)):
            table.add_column(label, width=width, key=label)
        self.action_refresh()

    def action_refresh(self) -> None:
        self.load_peers()

    @work(
        thread=True,
        exit_on_error=False,
        group="peers",
        exclusive=True,
        description="Looking for peers",
    )
    def load_peers(self) -> None:
        me = f"This device: {self.backend.device_label()}"
        _available, ble = self.backend.bluetooth_status()
        self.post_message(self.Loaded(me, f"Bluetooth: {ble}", self.backend.peer_rows()))

    @on(Loaded)
    def show_peers(self, message: Loaded) -> None:
        self.query_one("#me", Static).update(message.me)
        self.query_one("#ble", Static).update(message.ble)
        table = self.query_one("#peers", DataTable)
        table.clear()
        self.peer_rows = {row.peer_id: row for row in message.peers}
        for row in message.peers:
            table.add_row(
                row.name or "?", row.peer_id, row.address or "-", row.trust, key=row.peer_id
            )

    def _selected(self) -> PeerRow | None:
        table = self.query_one("#peers", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return self.peer_rows.get(str(key.value))

    def action_trust(self) -> None:
        if peer := self._selected():
            self.run_trust(peer, "trusted")
        else:
            self.notify("No peer selected.", severity="warning")

    def action_block(self) -> None:
        if peer := self._selected():
            self.run_trust(peer, "blocked")
        else:
            self.notify("No peer selected.", severity="warning")

    @work(thread=True, exit_on_error=False, group="peers-trust", description="Setting trust")
    def run_trust(self, peer: PeerRow, state: str) -> None:
        self.backend.set_author_trust(peer.peer_id, state)
        self.app.call_from_thread(self.notify, f"{peer.name or peer.peer_id} is now {state}.")
        self.load_peers()

    @work(exit_on_error=False, group="sync-ask", description="Sync")
    async def action_sync(self) -> None:
        peer = self._selected()
        default = (peer.address if peer and peer.address not in ("", "-") else "") or (
            self.last_address
        )
        address = await self.app.push_screen_wait(
            TextDialog(
                "Sync with the LAN peer at host:port",
                value=default,
                placeholder=f"192.168.1.20:{DEFAULT_PORT}",
            )
        )
        if address:
            self.last_address = address
            self.run_sync(address)

    async def confirm_peer(self, peer_id: str, name: str, sas: str) -> bool:
        """Ask the person to compare the six-digit code with the other screen."""
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        question = (
            f"Pair with {name or '?'} ({peer_id})?\n\n"
            f"    code  {sas[:3]} {sas[3:]}\n\n"
            "Accept only if the other device shows the same code."
        )
        self.app.push_screen(ConfirmDialog(question), callback=answer.set_result)
        return await answer

    def _progress(self, progress: SyncProgress) -> None:
        self.post_message(self.Progress(progress))

    @work(exit_on_error=False, group="sync", exclusive=True, description="Sync")
    async def run_sync(self, address: str) -> None:
        state = self.query_one("#sync-state", Static)
        self.query_one(TransferList).reset()
        state.update(f"Syncing with {address}... (x to cancel)")
        try:
            result = await self.backend.sync_tcp(address, self._progress, self.confirm_peer)
        except asyncio.CancelledError:
            state.update(f"Sync with {address} cancelled; it resumes next time.")
            raise
        except Exception:
            state.update(f"Sync with {address} failed.")
            raise
        self._show_result(result)

    def _show_result(self, result: SyncResult) -> None:
        self.query_one("#sync-state", Static).update(result.text)
        self.notify(result.text, severity="information" if result.ok else "error")
        self.load_peers()

    @work(exit_on_error=False, group="listen", exclusive=True, description="Listening")
    async def run_listener(self, address: str) -> None:
        listener = await self.backend.listen_tcp(
            address, self._progress, self.confirm_peer, self._show_result
        )
        self.listening = f"{address.rsplit(':', 1)[0]}:{listener.port}"
        self.query_one("#sync-state", Static).update(
            f"Listening for LAN syncs on {self.listening} (l to stop)."
        )
        try:
            await listener.wait()
        finally:
            await listener.close()
            self.listening = ""

    def action_listen(self) -> None:
        if self.listening:
            self.workers.cancel_group(self, "listen")
            self.listening = ""
            self.query_one("#sync-state", Static).update("Stopped listening.")
        else:
            self.listening = "starting"
            self.run_listener(f"0.0.0.0:{DEFAULT_PORT}")

    @on(Progress)
    def show_progress(self, message: Progress) -> None:
        self.query_one(TransferList).update_progress(message.progress)

    def action_cancel(self) -> None:
        if not any(w.group == "sync" and not w.is_finished for w in self.workers):
            self.notify("No sync is running.")
            return
        self.workers.cancel_group(self, "sync")
