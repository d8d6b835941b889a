"""Peers mode: devices nearby and known, pairing by six-digit code, sync with progress."""

from __future__ import annotations

import asyncio

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Static

from fieldkit.errors import FieldkitError
from fieldkit.tui.backend import TuiBackend
from fieldkit.tui.screens.base import ModeScreen, keys_footer
from fieldkit.tui.screens.dialogs import ConfirmDialog, TextDialog
from fieldkit.tui.sync_backend import AgentRadioError
from fieldkit.tui.views import Outcome, PeerRow, SyncProgress, peer_label, peer_name
from fieldkit.tui.widgets.status_line import StatusLine
from fieldkit.tui.widgets.transfers import TransferList

SCAN_SECONDS = 4.0
SCAN_PAUSE = 6.0
NO_BLUETOOTH = (
    "Bluetooth: not available on this machine (no adapter, switched off or not permitted). "
    "Turn it on or plug in a USB adapter, then press r. LAN sync (s, l) works without it."
)
LAN_LOOKING = "LAN: looking for fieldkit peers announced nearby (mDNS)."
NO_LAN = "LAN: discovery cannot run here (no mDNS); s syncs with a typed host:port."


class PeersScreen(ModeScreen):
    """Nearby and known devices; sync with one key, watch each packet arrive."""

    DEFAULT_CSS = """
    PeersScreen .info { height: auto; padding: 0 1; }
    PeersScreen #ble { color: $warning; }
    PeersScreen #peers { height: 1fr; }
    PeersScreen #sync-state { height: auto; max-height: 4; padding: 0 1; }
    """
    BINDINGS = [
        Binding("s", "sync", "Sync"),
        Binding("l", "listen", "Listen"),
        Binding("x", "cancel", "Cancel"),
        Binding("t", "trust", "Trust"),
        Binding("b", "block", "Block"),
        Binding("r", "refresh", "Rescan"),
    ]

    class Loaded(Message):
        """Known peers from the library."""

        def __init__(self, me: str, peers: list[PeerRow]) -> None:
            super().__init__()
            self.me = me
            self.peers = peers

    class Sighted(Message):
        """Peers seen over Bluetooth LE in the last scan (None: Bluetooth unavailable)."""

        def __init__(self, peers: list[PeerRow] | None, note: str) -> None:
            super().__init__()
            self.peers = peers
            self.note = note

    class Discovered(Message):
        """Peers announced on the LAN now (None: discovery cannot run here)."""

        def __init__(self, peers: list[PeerRow] | None) -> None:
            super().__init__()
            self.peers = peers

    class Progress(Message):
        def __init__(self, progress: SyncProgress) -> None:
            super().__init__()
            self.progress = progress

    def __init__(self, backend: TuiBackend, *, ble: bool = True) -> None:
        super().__init__()
        self.backend = backend
        self.ble = ble
        self.known: list[PeerRow] = []
        self.sighted: list[PeerRow] = []
        self.announced: list[PeerRow] = []
        self.peer_rows: dict[str, PeerRow] = {}
        self.last_address = ""
        self.listening = ""
        self.untrusted_peer = ""  # the peer the sync line says to trust with t
        self.to_select = ""  # a peer whose row the cursor goes to once it is listed

    def compose(self) -> ComposeResult:
        yield StatusLine("Peers")
        yield Static("This device: ...", id="me", classes="info")
        yield Static("Bluetooth: scanning...", id="ble", classes="info")
        yield Static(LAN_LOOKING, id="lan", classes="info")
        table: DataTable[str] = DataTable(id="peers", cursor_type="row")
        yield table
        yield Static(
            "No sync running. s: sync with a peer, l: let LAN peers sync with this one.",
            id="sync-state",
            markup=False,  # it shows peers' names
        )
        yield TransferList(id="transfers")
        yield keys_footer()

    def on_mount(self) -> None:
        table = self.query_one("#peers", DataTable)
        for label, width in (
            ("name", 16),
            ("id", 16),
            ("via", 4),
            ("address / signal", 21),
            ("trust", 8),
        ):
            table.add_column(label, width=width, key=label)
        self.action_refresh()
        self.discover_lan()

    def on_screen_suspend(self) -> None:
        self.workers.cancel_group(self, "ble")  # no radio use while another mode is shown
        if self not in self.app.screen_stack:  # another mode; a dialog keeps this one shown
            self.workers.cancel_group(self, "lan")

    def on_screen_resume(self) -> None:
        if not self.is_mounted:
            return
        if self.ble:
            self.scan_ble()
        if not any(w.group == "lan" and not w.is_finished for w in self.workers):
            self.discover_lan()

    def on_unmount(self) -> None:
        self.workers.cancel_group(self, "lan")

    def action_refresh(self) -> None:
        self.load_peers()
        if self.ble:
            self.scan_ble()
        else:
            self.query_one("#ble", Static).update("Bluetooth: scanning is off.")

    @work(
        thread=True,
        exit_on_error=False,
        group="peers",
        exclusive=True,
        description="Reading known peers",
    )
    def load_peers(self) -> None:
        me = f"This device: {self.backend.device_label()}"
        self.post_message(self.Loaded(me, self.backend.peer_rows()))

    @work(exit_on_error=False, group="ble", exclusive=True, description="Bluetooth scan")
    async def scan_ble(self) -> None:
        """Scan now and then while the screen is up; stop with a clear note if no radio."""
        while True:
            try:
                peers = await self.backend.ble_scan(SCAN_SECONDS)
            except AgentRadioError as exc:
                note = f"Bluetooth (through the agent): {exc} r rescans."
                self.post_message(self.Sighted(None, note))
                return
            except FieldkitError:
                self.post_message(self.Sighted(None, NO_BLUETOOTH))
                return
            note = f"Bluetooth: {len(peers)} fieldkit peer(s) in range; r rescans."
            self.post_message(self.Sighted(peers, note))
            await asyncio.sleep(SCAN_PAUSE)

    @work(exit_on_error=False, group="lan", exclusive=True, description="LAN discovery")
    async def discover_lan(self) -> None:
        """Follow LAN announcements while the screen is up; a calm note if mDNS cannot run."""
        try:
            await self.backend.lan_discovery(lambda rows: self.post_message(self.Discovered(rows)))
        except FieldkitError:
            self.post_message(self.Discovered(None))

    @on(Loaded)
    def show_known(self, message: Loaded) -> None:
        self.query_one("#me", Static).update(message.me)
        self.known = message.peers
        self.show_rows()

    @on(Sighted)
    def show_sighted(self, message: Sighted) -> None:
        self.query_one("#ble", Static).update(message.note)
        self.sighted = message.peers or []
        self.show_rows()

    @on(Discovered)
    def show_announced(self, message: Discovered) -> None:
        if message.peers is None:
            note = NO_LAN
        elif message.peers:
            note = f"LAN: {len(message.peers)} fieldkit peer(s) announced nearby; s syncs."
        else:
            note = LAN_LOOKING
        self.query_one("#lan", Static).update(note)
        self.announced = message.peers or []
        self.show_rows()

    def show_rows(self) -> None:
        """Merge known peers with BLE sightings, then LAN announcements (TCP is faster).

        A BLE sighting's short id prefixes a device id; a LAN announcement carries the
        whole id. A known peer keeps its name and trust and takes the address seen.
        """
        rows = {row.peer_id: row for row in self.known}
        for seen in self.sighted:
            match = next((pid for pid in rows if pid.startswith(seen.peer_id)), None)
            if match is None:
                rows[seen.peer_id] = seen
            else:
                known = rows[match]
                rows[match] = PeerRow(match, known.name, seen.address, known.trust, "ble")
        for seen in self.announced:
            match = next((pid for pid in rows if seen.peer_id.startswith(pid)), None)
            earlier = rows.pop(match) if match is not None else None
            if earlier is not None and earlier.trust != "new":
                seen = PeerRow(seen.peer_id, earlier.name, seen.address, earlier.trust, "lan")
            rows[seen.peer_id] = seen
        table = self.query_one("#peers", DataTable)
        chosen = self._selected()  # clear() sends the cursor home: keep it on its peer
        table.clear()
        self.peer_rows = rows
        for row in rows.values():
            table.add_row(
                peer_name(row.name),
                row.peer_id,
                row.via,
                row.address or "-",
                row.trust,
                key=row.peer_id,
            )
        wanted = self.to_select or (chosen.peer_id if chosen is not None else "")
        if wanted:
            keys = list(rows)
            same = [n for n, pid in enumerate(keys) if pid.startswith(wanted)]
            if same:
                table.move_cursor(row=same[0])
                if wanted == self.to_select:
                    self.to_select = ""

    def _selected(self) -> PeerRow | None:
        table = self.query_one("#peers", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return self.peer_rows.get(str(key.value))

    @work(exit_on_error=False, group="peers-ask", description="Trusting a peer")
    async def action_trust(self) -> None:
        """Trust the selected peer; a blocked one only once the user says yes (its packets
        answer again, and it may send more: one key should not undo a block)."""
        peer = self._selected()
        if peer is None:
            self.notify("No peer selected.", severity="warning")
            return
        if peer.trust == "blocked":
            who = peer_label(peer.name, peer.peer_id)
            question = (
                f"Trust {who}, blocked now? Its packets here answer again, and it may send more."
            )
            if not await self.app.push_screen_wait(ConfirmDialog(question)):
                return
        self.run_trust(peer, "trusted")

    @work(exit_on_error=False, group="peers-ask", description="Blocking a peer")
    async def action_block(self) -> None:
        """Block the selected peer once the user says yes, as Library's `b` asks first."""
        peer = self._selected()
        if peer is None:
            self.notify("No peer selected.", severity="warning")
            return
        who = peer_label(peer.name, peer.peer_id)
        question = (
            f"Block {who}? Its packets here are set aside, unused, and no more are taken from it."
        )
        if await self.app.push_screen_wait(ConfirmDialog(question)):
            self.run_trust(peer, "blocked")

    @work(thread=True, exit_on_error=False, group="peers-trust", description="Setting trust")
    def run_trust(self, peer: PeerRow, state: str) -> None:
        self.backend.set_author_trust(peer.peer_id, state)
        said = f"{peer.name or peer.peer_id} is now {state}."
        self.app.call_from_thread(self.notify, said)
        if peer.peer_id == self.untrusted_peer:  # the line that said to press t is done
            self.untrusted_peer = ""
            then = " Sync again to take its packets." if state == "trusted" else ""
            self.app.call_from_thread(self._state_line, f"{said}{then}")
        self.load_peers()

    def _state_line(self, text: str) -> None:
        """Show `text` on the sync line, after the listener's own line while one runs."""
        running = self.listening and self.listening != "starting"
        head = f"Listening for LAN syncs on {self.listening} (l to stop). " if running else ""
        self.query_one("#sync-state", Static).update(f"{head}{text}")

    @work(exit_on_error=False, group="sync-ask", description="Sync")
    async def action_sync(self) -> None:
        peer = self._selected()
        if peer is not None and peer.via == "ble":
            self.workers.cancel_group(self, "ble")  # one radio: stop scanning to connect
            self.run_sync(peer.peer_id, ble=True)
            return
        if peer is not None and peer.via == "lan":  # announced: its address is current
            self.last_address = peer.address
            self.run_sync(peer.address)
            return
        default = (peer.address if peer and peer.address not in ("", "-") else "") or (
            self.last_address
        )
        address = await self.app.push_screen_wait(
            TextDialog(
                "Sync with the LAN peer at host:port",
                value=default,
                placeholder=f"192.168.1.20:{self.backend.default_port}",
            )
        )
        if address:
            self.last_address = address
            self.run_sync(address)

    async def confirm_peer(self, peer_id: str, name: str, sas: str) -> bool:
        """Ask the person to compare the six-digit code with the other screen."""
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        question = (
            f"Pair with {peer_label(name, peer_id)}?\n\n"
            f"    code  {sas[:3]} {sas[3:]}\n\n"
            "Accept only if the other device shows the same code."
        )
        self.app.push_screen(ConfirmDialog(question), callback=answer.set_result)
        return await answer

    def _progress(self, progress: SyncProgress) -> None:
        self.post_message(self.Progress(progress))

    @work(exit_on_error=False, group="sync", exclusive=True, description="Sync")
    async def run_sync(self, address: str, ble: bool = False) -> None:
        state = self.query_one("#sync-state", Static)
        self.query_one(TransferList).reset()
        state.update(f"Syncing with {address}... (x to cancel)")
        try:
            result = await self.backend.sync(address, self._progress, self.confirm_peer, ble=ble)
        except asyncio.CancelledError:
            state.update(f"Sync with {address} cancelled; it resumes next time.")
            raise
        except Exception:
            state.update(f"Sync with {address} failed.")
            raise
        self._show_result(result)

    def _show_result(self, result: Outcome) -> None:
        self._state_line(result.text)
        self.untrusted_peer = result.peer_id if result.untrusted else ""
        if not result.ok:
            self.notify(result.text, severity="error")
        elif result.untrusted:
            self.notify(result.text, severity="warning", timeout=10)
        else:
            self.notify(result.text)
        if result.untrusted:
            self.to_select = result.peer_id  # so that `t`, as the result says, trusts it
        self.action_refresh()

    @work(exit_on_error=False, group="listen", exclusive=True, description="Listening")
    async def run_listener(self, address: str) -> None:
        try:
            listener = await self.backend.listen_tcp(
                address, self._progress, self.confirm_peer, self._show_result
            )
        except Exception:
            self.listening = ""
            raise
        self.listening = f"{address.rsplit(':', 1)[0]}:{listener.port}"
        self.query_one(TransferList).reset()  # rows from an earlier sync are not this one's
        announced = ", announced on the LAN" if listener.advertiser is not None else ""
        self.query_one("#sync-state", Static).update(
            f"Listening for LAN syncs on {self.listening}{announced} (l to stop)."
        )
        if listener.note:
            self.notify(f"{listener.note} Peers can still sync with this host:port.")
        try:
            await listener.wait()
        finally:
            await listener.close()
            self.listening = ""

    @work(exit_on_error=False, group="listen-ask", description="Listening")
    async def action_listen(self) -> None:
        if self.listening:
            self.workers.cancel_group(self, "listen")
            self.listening = ""
            self.query_one("#sync-state", Static).update("Stopped listening.")
            return
        address = await self.app.push_screen_wait(
            TextDialog(
                "Let LAN peers sync with this device on",
                value=f"0.0.0.0:{self.backend.default_port}",
            )
        )
        if address:
            self.listening = "starting"
            self.run_listener(address)

    @on(Progress)
    def show_progress(self, message: Progress) -> None:
        self.query_one(TransferList).update_progress(message.progress)

    def action_cancel(self) -> None:
        if not any(w.group == "sync" and not w.is_finished for w in self.workers):
            self.notify("No sync is running.")
            return
        self.workers.cancel_group(self, "sync")
