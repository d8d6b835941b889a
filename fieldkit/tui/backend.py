"""The blocking and async operations behind the screens: a thin facade over Services.

No textual here. Blocking methods (SQLite, hashing, MLX) are called from thread workers,
gossip coroutines from async workers; what they return is plain data from tui_views.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fieldkit.errors import LibraryError, TransportError
from fieldkit.formats import format_size, parse_address
from fieldkit.tui.views import (
    PEER_ID_LENGTH,
    AnswerChunk,
    PacketDetail,
    PacketRow,
    PeerRow,
    RouteView,
    SyncProgress,
    SyncResult,
    human_time,
    packet_status,
    sync_result,
)

if TYPE_CHECKING:
    from fieldkit.services import Services

T = TypeVar("T")


class TuiBackend:
    """The blocking operations behind the screens, built from one Services object.

    SQLite connections belong to the thread that opened them, so the library and the
    router (whose cache lives in the library) run on one thread owned by this object,
    with a Library of their own; callers on any worker thread wait for the result.
    """

    def __init__(
        self, services: Services, radio: Any = None, lan_interfaces: Sequence[str] | None = None
    ) -> None:
        """`radio` is a fieldkit.gossip.ble.sync.Radio; None means the platform's stack.

        `lan_interfaces` lists the interface addresses LAN discovery uses (None: those set
        with `fieldkit peers lan`, else all).
        """
        from fieldkit.gossip.lan import configured_interfaces

        self.services = services
        self._radio = radio
        if lan_interfaces is None:
            lan_interfaces = configured_interfaces(services.library)
        self.lan_interfaces = lan_interfaces
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fieldkit-library")
        self._lib: Any = None
        self._router: Any = None

    def _on_library_thread(self, func: Callable[[Any], T]) -> T:
        """Run func(library) on the library thread and return its result (or raise)."""
        return self._pool.submit(lambda: func(self._open_library())).result()

    def _open_library(self) -> Any:
        if self._lib is None:
            self._lib = self.services.open_library()
        return self._lib

    def close(self) -> None:
        """Close the library connection on its own thread and stop that thread."""

        def shut() -> None:
            if self._lib is not None:
                self._lib.close()
                self._lib = None

        self._pool.submit(shut).result()
        self._pool.shutdown(wait=True)

    # -- device and model -------------------------------------------------------------

    def device_label(self) -> str:
        """Return 'name (device id)' for the header, or a note when keys are missing."""
        try:
            ident = self.services.identity
        except (ImportError, AttributeError):
            return "this device"
        return f"{ident.name} ({ident.device_id})"

    @property
    def default_port(self) -> int:
        """The TCP port sync listens on unless told otherwise."""
        from fieldkit.gossip.tcp import DEFAULT_PORT

        return DEFAULT_PORT

    def model_installed(self) -> bool:
        return self.services.model_installed

    def export_dir(self) -> Path:
        """Where the Library screen offers to export packets."""
        return self.services.home.root / "exports"

    def model_label(self) -> str:
        """Return the base model folder's name."""
        return self.services.model_dir.name

    def base_fingerprint(self) -> str | None:
        """Return the base model's fingerprint, or None when the model is not installed."""
        with self._lock:  # hashing the model once, whichever worker asks first
            return self.services.base_fingerprint

    def load_model(self) -> str:
        """Load the base model on the engine's thread; return a one-line description.

        Raises ModelError when the model folder is missing or broken.
        """
        model_dir = self.services.model_dir
        self.services.require_model()
        engine = self.services.engine
        engine.load()
        return f"{model_dir.name} ready"

    # -- library ----------------------------------------------------------------------

    def blocked_authors(self) -> frozenset[str]:
        """Return the ids of authors this device has blocked."""
        peers = self._on_library_thread(lambda lib: lib.list_peers())
        return frozenset(p.peer_id for p in peers if p.trust == "blocked")

    def packet_rows(self) -> list[PacketRow]:
        """Return every packet in the library, sorted by name."""
        base = self.base_fingerprint()
        blocked = self.blocked_authors()
        records = self._on_library_thread(lambda lib: lib.list_packets())
        rows = [self._row(r, base, blocked) for r in records]
        return sorted(rows, key=lambda row: (row.name, row.packet_id))

    def _row(self, rec: Any, base: str | None, blocked: frozenset[str]) -> PacketRow:
        source = rec.source if len(rec.source) != PEER_ID_LENGTH else f"peer {rec.source[:8]}"
        return PacketRow(
            packet_id=rec.packet_id,
            name=rec.name,
            domain=rec.domain,
            size=format_size(rec.size),
            author=rec.author_name or rec.author_id[:8],
            author_id=rec.author_id,
            status=packet_status(rec, base, blocked),
            source=source,
            received=human_time(rec.received_at),
        )

    def packet_detail(self, packet_id: str) -> PacketDetail:
        """Return the detail of one packet. Raises LibraryError when it is gone."""
        rec = self._on_library_thread(lambda lib: lib.get(packet_id))
        base = self.base_fingerprint()
        row = self._row(rec, base, self.blocked_authors())
        return PacketDetail(
            row=row,
            description=rec.description,
            exemplars=list(rec.exemplars),
            base_model_id=rec.base_model_id,
            base_match=base is not None and rec.base_fingerprint == base,
            signature_ok=bool(rec.verified),
            manifest=dict(rec.manifest),
        )

    def verify(self, packet_id: str) -> str | None:
        """Re-check a packet's signature and weights; return the problem, or None if intact."""
        _record, problem = self._on_library_thread(lambda lib: lib.verify(packet_id))
        return problem

    def remove(self, packet_id: str) -> None:
        """Remove a packet and its weights from the library."""
        self._on_library_thread(lambda lib: lib.remove(packet_id))

    def export(self, packet_id: str, dest_dir: Path) -> Path:
        """Write the packet as one file in `dest_dir`; return its path."""
        from fieldkit.store.packet import write_packet_file

        rec, weights = self._on_library_thread(
            lambda lib: (lib.get(packet_id), lib.read_weights(lib.get(packet_id)))
        )
        try:
            dest_dir.mkdir(parents=True, exist_ok=True)
            path = dest_dir / f"{rec.name}.fkpkt"
            tmp = path.with_suffix(".fkpkt.tmp")
            with tmp.open("wb") as out:
                write_packet_file(out, rec.manifest, rec.signature, weights)
            tmp.replace(path)
        except OSError as exc:
            raise LibraryError(f"Cannot write to {dest_dir} ({exc.strerror}).") from exc
        return path

    def set_author_trust(self, author_id: str, state: str) -> None:
        """Mark an author 'trusted' or 'blocked'."""
        self._on_library_thread(lambda lib: lib.set_trust(author_id, state))

    # -- peers ------------------------------------------------------------------------

    def peer_rows(self) -> list[PeerRow]:
        """Return the peers this device knows, sorted by name (via "-": not seen now)."""
        rows = [
            PeerRow(
                peer_id=p.peer_id,
                name=p.name or "?",
                address=p.address or "-",
                trust=p.trust,
                via="-",
            )
            for p in self._on_library_thread(lambda lib: lib.list_peers())
        ]
        return sorted(rows, key=lambda r: (r.name, r.peer_id))

    def radio(self) -> Any:
        """Return the BLE radio: the one given, or the platform's (bleak and bless)."""
        if self._radio is None:
            from fieldkit.gossip.ble.sync import PlatformRadio

            self._radio = PlatformRadio()
        return self._radio

    async def ble_scan(self, seconds: float) -> list[PeerRow]:
        """Scan for fieldkit peers over Bluetooth LE; rows carry the signal strength.

        Raises TransportError when Bluetooth is off, absent or not permitted.
        """
        try:
            sightings = await self.radio().scan(seconds)
        except ImportError as exc:
            raise TransportError("Bluetooth LE support is not installed.") from exc
        return [
            PeerRow(
                peer_id=s.short_id,
                name=s.name or "?",
                address=f"BLE {s.rssi} dBm",
                trust="new",
                via="ble",
            )
            for s in sightings
        ]

    async def lan_discovery(self, on_peers: Callable[[list[PeerRow]], None]) -> None:
        """Browse the LAN for announced fieldkit peers until cancelled.

        Calls `on_peers` with every peer announced now (via "lan", address host:port,
        trust "new": the screen knows the trust of known peers) once browsing has started
        and after each change. Raises TransportError when mDNS cannot start.
        """
        from fieldkit.gossip.lan import LanBrowser

        own_id = self.services.identity.device_id
        async with LanBrowser(own_id, interfaces=self.lan_interfaces) as browser:
            on_peers([])
            async for _change in browser:
                on_peers(
                    [PeerRow(p.device_id, p.name, p.address, "new", "lan") for p in browser.peers]
                )

    async def sync_ble(
        self,
        short_id: str,
        on_progress: Callable[[SyncProgress], None],
        confirm: Callable[[str, str, str], Awaitable[bool]],
    ) -> SyncResult:
        """Find the peer with this short id over Bluetooth LE and sync with it."""
        from fieldkit.gossip.sync import sync_ble_peer

        summary = await sync_ble_peer(
            self.radio(),
            self.services,
            self.sync_options(),
            peer=short_id,
            progress=self.progress_tracker(on_progress),
            confirm=confirm,
        )
        return sync_result(summary)

    # -- ask --------------------------------------------------------------------------

    def route(self, question: str) -> RouteView:
        """Ask the router which packet should answer; 'base model' when none fits."""
        decision = self._on_library_thread(lambda lib: self._get_router(lib).route(question))
        records = {r.packet_id: r for r in self._on_library_thread(lambda lib: lib.list_packets())}
        packet_id = decision.packet_id
        runner = ""
        cands = list(decision.candidates or [])
        rest = [c for c in cands if c.packet_id != packet_id]
        if rest:
            runner = f"{rest[0].name} {rest[0].score:.2f}"
        label = "base model"
        reason = str(decision.reason or "")
        if packet_id:  # the router only picks usable packets (store/usable.py)
            rec = records.get(packet_id)
            label = rec.name if rec else packet_id[:8]
        return RouteView(
            packet_id=packet_id,
            label=label,
            score=float(decision.score or 0.0),
            runner_up=runner or "-",
            reason=reason,
            route_ms=float(decision.route_ms or 0.0),
        )

    def _get_router(self, lib: Any) -> Any:
        if self._router is None:
            self._router = self.services.make_router(lib)
        return self._router

    def manual_route(self, packet_id: str | None) -> RouteView:
        """Return a decision picked by hand: a packet, or None for the base model."""
        if packet_id is None:
            return RouteView(None, "base model", 0.0, "-", "picked by hand", 0.0, manual=True)
        rec = self._on_library_thread(lambda lib: lib.get(packet_id))
        return RouteView(rec.packet_id, rec.name, 0.0, "-", "picked by hand", 0.0, manual=True)

    def answer(
        self, question: str, packet_id: str | None, cancel: threading.Event, max_tokens: int = 256
    ) -> Iterator[AnswerChunk]:
        """Stream the answer from the engine (its own thread does the MLX work)."""
        adapter = None
        if packet_id:
            adapter = self._on_library_thread(lambda lib: lib.load_adapter(lib.get(packet_id)))
        for chunk in self.services.engine.generate(
            question, adapter, max_tokens=max_tokens, cancel=cancel
        ):
            result = chunk.result
            if result is None:
                yield AnswerChunk(text=chunk.text)
            else:
                yield AnswerChunk(
                    text=chunk.text,
                    done=True,
                    tokens_per_s=result.generation_tps,
                    tokens=result.generation_tokens,
                    stopped=result.finish_reason == "cancelled",
                )

    # -- sync -------------------------------------------------------------------------

    def progress_tracker(
        self, on_progress: Callable[[SyncProgress], None]
    ) -> Callable[[Any], None]:
        """Wrap a SyncProgress callback as a gossip ProgressCallback (adds rate and resume)."""
        started: dict[str, tuple[float, int, bool]] = {}

        def track(update: Any) -> None:
            if update.packet_id not in started:
                # a session reports each packet once before its first chunk, with the bytes
                # already held from an earlier, interrupted transfer
                resumed = 0 < update.done < update.total
                started[update.packet_id] = (time.monotonic(), update.done, resumed)
            since, first, resumed = started[update.packet_id]
            elapsed = time.monotonic() - since
            rate = (update.done - first) / elapsed if elapsed > 0 else 0.0
            arrow = "<-" if update.direction == "received" else "->"
            on_progress(
                SyncProgress(
                    packet=f"{arrow} {update.name}",
                    done_bytes=update.done,
                    total_bytes=update.total,
                    rate_bps=rate,
                    resumed=resumed,
                    finished=update.done >= update.total,
                )
            )

        return track

    def sync_options(self) -> Any:
        """Return the options for a sync started from the screen: a person confirms peers."""
        from fieldkit.gossip.summary import SyncOptions

        policy = self.services.library.receive_policy()
        return SyncOptions(policy="open" if policy == "open" else "ask")

    async def sync_tcp(
        self,
        address: str,
        on_progress: Callable[[SyncProgress], None],
        confirm: Callable[[str, str, str], Awaitable[bool]],
    ) -> SyncResult:
        """Sync with a LAN peer at 'host[:port]' on the running event loop.

        Raises TransportError when the address is bad or the peer cannot be reached.
        """
        from fieldkit.gossip.sync import DEFAULT_PORT, sync_with

        host, port = parse_address(address, DEFAULT_PORT)
        summary = await sync_with(
            host,
            port,
            self.services,
            options=self.sync_options(),
            progress=self.progress_tracker(on_progress),
            confirm=confirm,
        )
        return sync_result(summary)

    async def listen_tcp(
        self,
        address: str,
        on_progress: Callable[[SyncProgress], None],
        confirm: Callable[[str, str, str], Awaitable[bool]],
        on_result: Callable[[SyncResult], None],
        advertise: bool | None = None,
    ) -> AnnouncedListener:
        """Start accepting LAN syncs at 'host[:port]'; return the listener (close() stops it).

        The listener is announced on the LAN when `advertise` is True, or when it is None and
        the host is not a loopback address; a failed announcement leaves it unannounced.
        """
        from fieldkit.gossip.lan import LanAdvertiser, advertise_by_default
        from fieldkit.gossip.sync import DEFAULT_PORT, start_listener

        host, port = parse_address(address, DEFAULT_PORT, any_port=True)
        listener = await start_listener(
            self.services,
            host,
            port,
            options=self.sync_options(),
            on_summary=lambda summary: on_result(sync_result(summary)),
            progress=self.progress_tracker(on_progress),
            confirm=confirm,
        )
        announced = AnnouncedListener(listener)
        if advertise or (advertise is None and advertise_by_default(host)):
            ident = self.services.identity
            advertiser = LanAdvertiser(
                ident.device_id,
                ident.name,
                listener.port,
                host=host,
                interfaces=self.lan_interfaces,
            )
            try:
                announced.advertiser = await advertiser.start()
            except TransportError as exc:
                announced.note = str(exc)
        return announced


class AnnouncedListener:
    """A TCP sync listener and its LAN announcement (`advertiser` None: not announced)."""

    def __init__(self, listener: Any) -> None:
        self.listener = listener
        self.advertiser: Any = None
        self.note = ""  # why the listener is not announced, when announcing failed

    @property
    def port(self) -> int:
        return int(self.listener.port)

    async def wait(self) -> None:
        await self.listener.wait()

    async def close(self) -> None:
        """Withdraw the announcement, then stop listening."""
        if self.advertiser is not None:
            await self.advertiser.stop()
        await self.listener.close()
