"""The blocking and async operations behind the screens: a thin facade over Services.

No textual here. Blocking methods (SQLite, hashing, MLX) are called from thread workers,
gossip coroutines from async workers; what they return is plain data from tui_views.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fieldkit.errors import LibraryError
from fieldkit.formats import format_size
from fieldkit.store.notes import notes_count
from fieldkit.store.packet import packet_files_in
from fieldkit.store.usable import Blocked, usable_problem
from fieldkit.tui.sync_backend import SyncBackend
from fieldkit.tui.views import (
    PEER_ID_LENGTH,
    THIS_DEVICE,
    AnswerChunk,
    Outcome,
    PacketDetail,
    PacketRow,
    PeerRow,
    RouteView,
    SourceView,
    human_time,
    import_outcome,
    packet_status,
)

if TYPE_CHECKING:
    from fieldkit.services import Services

T = TypeVar("T")


class FolderMissingError(LibraryError):
    """An export's folder does not exist (the screen asks before making it)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} does not exist.")
        self.path = path


# the folder the Library screen last exported to or imported from (library settings)
EXCHANGE_FOLDER_SETTING = "exchange_folder"


def trust_by_device(lib: Any) -> dict[str, str]:
    """Return the trust state of each device the library knows, by id, as Peers shows
    it ('trusted', 'pending', 'blocked'), and THIS_DEVICE for this device's own id."""
    trust = {peer.peer_id: peer.trust for peer in lib.list_peers()}
    if lib.identity is not None:
        trust[lib.identity.device_id] = THIS_DEVICE
    return trust


class TuiBackend(SyncBackend):
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
        self._passages: Any = None

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
        """Where the Library screen offers to export or import packets: the folder last
        used (a USB stick), if it is still there, else HOME/exports."""
        last = self._on_library_thread(lambda lib: lib.get_setting(EXCHANGE_FOLDER_SETTING))
        if isinstance(last, str) and last and Path(last).is_dir():
            return Path(last)
        return self.services.home.root / "exports"

    def remember_folder(self, folder: Path) -> None:
        """Keep the folder a packet was exported to or imported from, for the next time."""
        folder = folder.expanduser().absolute()
        self._on_library_thread(lambda lib: lib.set_setting(EXCHANGE_FOLDER_SETTING, str(folder)))

    @staticmethod
    def check_question(question: str) -> None:
        """Raise FieldkitError with one sentence for a question nothing should answer
        (answering.check_question: empty, no words, too long)."""
        from fieldkit.prompts import check_question

        check_question(question)

    def model_label(self) -> str:
        """Return the base model folder's name."""
        return self.services.model_dir.name

    def base_fingerprint(self) -> str | None:
        """Return the base model's fingerprint, or None when the model is not installed."""
        with self._lock:  # hashing the model once, whichever worker asks first
            return self.services.base_fingerprint

    def load_model(self, cancelled: Callable[[], bool] = lambda: False) -> str | None:
        """Load the base model on the engine's thread; return a one-line description, or
        None when `cancelled()` became true first (the load goes on, unwaited).

        Raises ModelError when the model folder is missing or broken.
        """
        model_dir = self.services.model_dir
        self.services.require_model()
        if not self.services.engine.load_unless(cancelled):
            return None
        return f"{model_dir.name} ready"

    # -- library ----------------------------------------------------------------------

    def packet_rows(self) -> list[PacketRow]:
        """Return every packet in the library, sorted by name."""
        base = self.base_fingerprint()

        def listed(lib: Any) -> tuple[list[Any], Blocked, dict[str, str], dict[str, str]]:
            records = lib.list_packets()
            return records, lib.blocked(records), lib.peer_names(), trust_by_device(lib)

        records, blocked, names, trust = self._on_library_thread(listed)
        rows = [self._row(r, base, blocked, names, trust) for r in records]
        return sorted(rows, key=lambda row: (row.name, row.packet_id))

    def _row(
        self,
        rec: Any,
        base: str | None,
        blocked: Blocked,
        names: dict[str, str],
        trust: dict[str, str],
    ) -> PacketRow:
        from_peer = len(rec.source) == PEER_ID_LENGTH
        peer = names.get(rec.source, "") if from_peer else ""
        return PacketRow(
            packet_id=rec.packet_id,
            name=rec.name,
            domain=rec.domain,
            size=format_size(rec.size),
            author=rec.author_name or rec.author_id[:8],
            author_id=rec.author_id,
            author_trust=trust.get(rec.author_id, ""),
            status=packet_status(rec, base, blocked),
            source=(peer or rec.source)[:8] if from_peer else rec.source,  # as Peers names it
            from_peer=from_peer,
            received=human_time(rec.received_at),
            notes=notes_count(rec.manifest),
            merged=rec.merged,
        )

    def packet_detail(self, packet_id: str) -> PacketDetail:
        """Return the detail of one packet. Raises LibraryError when it is gone."""
        rec = self._on_library_thread(lambda lib: lib.get(packet_id))
        base = self.base_fingerprint()
        blocked, names, trust = self._on_library_thread(
            lambda lib: (lib.blocked(), lib.peer_names(), trust_by_device(lib))
        )
        row = self._row(rec, base, blocked, names, trust)
        return PacketDetail(
            row=row,
            description=rec.description,
            exemplars=list(rec.exemplars),
            base_model_id=rec.base_model_id,
            base_match=None if base is None else rec.base_fingerprint == base,
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

    def export(
        self, packet_id: str, dest_dir: Path, replace: bool = False, create: bool = False
    ) -> Path:
        """Write the packet as one file, NAME.fkpkt, in `dest_dir`; return its path.

        Raises FolderMissingError when `dest_dir` does not exist and `create` is false (a USB
        stick not mounted, a typing slip: nothing is made then), PacketFileExists when the
        file is there and `replace` is false (nothing is read or written then:
        store.packet.export_path), LibraryError when the folder cannot be written, and
        PacketError when the packet's weights are damaged.
        """
        from fieldkit.store.packet import export_path, packet_file_path, save_packet_file

        dest_dir = dest_dir.expanduser()
        name = self._on_library_thread(lambda lib: lib.get(packet_id)).name
        if dest_dir.is_dir():  # a folder not made yet holds no file to replace
            export_path(dest_dir, name, replace)
        elif not create and not dest_dir.exists():
            raise FolderMissingError(dest_dir)
        rec, weights = self._on_library_thread(lambda lib: lib.checked_weights(packet_id))
        try:
            dest_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LibraryError(f"Cannot write to {dest_dir} ({exc.strerror}).") from exc
        path = packet_file_path(dest_dir, rec.name)
        save_packet_file(path, rec.manifest, rec.signature, weights)
        return path

    def import_packets(self, path: Path) -> Outcome:
        """Import the packet file `path`, or every *.fkpkt file in the folder `path` (a USB
        stick); return what came of it in short sentences. A bad file does not stop the rest."""
        from fieldkit.errors import FieldkitError

        path = path.expanduser()
        if not path.exists():
            raise LibraryError(f"{path} does not exist.")
        files = packet_files_in(path) if path.is_dir() else [path]
        if not files:
            raise LibraryError(f"No packet files (*.fkpkt) are in {path}.")
        base = self.base_fingerprint()
        came: dict[str, list[str]] = {"added": [], "held": [], "repaired": []}
        refused: list[tuple[str, str]] = []
        for file in files:
            try:
                record, how = self._on_library_thread(lambda lib, f=file: lib.import_file(f, base))
            except FieldkitError as exc:
                refused.append((file.name, str(exc)))
                continue
            came[how].append(record.name)
        return import_outcome(came["added"], came["held"], refused, came["repaired"])

    def set_author_trust(self, author_id: str, state: str) -> None:
        """Mark an author 'trusted' or 'blocked'."""
        self._on_library_thread(lambda lib: lib.set_trust(author_id, state))

    # -- peers ------------------------------------------------------------------------

    def peer_rows(self) -> list[PeerRow]:
        """Return the peers this device knows, sorted by name (via "-": not seen now)."""
        rows = [
            PeerRow(
                peer_id=p.peer_id,
                name=p.name,
                address=p.address or "-",
                trust=p.trust,
                via="-",
            )
            for p in self._on_library_thread(lambda lib: lib.list_peers())
        ]
        return sorted(rows, key=lambda r: (r.name, r.peer_id))

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
        from fieldkit.router.router import near_miss

        label = "base model"
        reason = str(decision.reason or "")
        near = near_miss(decision)
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
            nearest=near.name if near is not None else "",
        )

    def _get_router(self, lib: Any) -> Any:
        if self._router is None:
            self._router = self.services.make_router(lib)
        return self._router

    def manual_route(self, packet_id: str | None, name: str = "") -> RouteView:
        """Return a decision picked by hand: a packet, or None for the base model.

        Raises FieldkitError (one sentence) when the packet picked may no longer answer:
        removed since, its author blocked (the one usable-packet rule, store/usable.py)."""
        if packet_id is None:
            return RouteView(None, "base model", 0.0, "-", "picked by hand", 0.0, manual=True)

        def check(lib: Any) -> Any:
            try:
                rec = lib.get(packet_id)
            except LibraryError:
                raise LibraryError(f"The packet {name!r} is no longer in the library.") from None
            problem = usable_problem(lib, rec, self.services.base_fingerprint)
            if problem is not None:
                raise LibraryError(problem)
            return rec

        rec = self._on_library_thread(check)
        return RouteView(rec.packet_id, rec.name, 0.0, "-", "picked by hand", 0.0, manual=True)

    def _get_passages(self, lib: Any) -> Any:
        if self._passages is None:
            from fieldkit.router.retrieval import PassageIndex

            self._passages = PassageIndex(lib, self._get_router(lib).embedder)
        return self._passages

    def ground(self, question: str, packet_id: str | None, abstained: bool = False) -> Any:
        """Return the fieldkit.answering.Grounding: the packet's passages, or why none
        (`abstained`: the router found no packet, said first: answering.BASE_CAUTION).
        The library thread loads the packet's passages; the search and the model's reading
        of them run on the calling thread, so library work never waits behind the model."""
        from fieldkit.answering import engine_reader, ground

        def prepare(lib: Any) -> tuple[Any, Any]:
            record = lib.get(packet_id) if packet_id else None
            index = self._get_passages(lib) if record else None
            if index is not None:
                index.prepare(record.packet_id)
            return record, index

        record, index = self._on_library_thread(prepare)
        reader = engine_reader(self.services.engine)
        return ground(question, record, index, abstained=abstained, reader=reader)

    def answer(
        self,
        question: str,
        packet_id: str | None,
        cancel: threading.Event,
        max_tokens: int = 256,
        abstained: bool = False,
    ) -> Iterator[AnswerChunk]:
        """Stream the answer from the engine (its own thread does the MLX work), grounded
        in the packet's notes when it has them; the last chunk carries sources and marks."""
        from fieldkit.answering import finish
        from fieldkit.generating import stream

        grounding = self.ground(question, packet_id, abstained)
        if grounding.notice:
            yield AnswerChunk(notice=grounding.notice)
        adapter = None
        if packet_id and grounding.said is None:  # no weights to read for an answer not written
            adapter = self._on_library_thread(lambda lib: lib.load_adapter(lib.get(packet_id)))
        for chunk in stream(
            self.services.engine,
            grounding,
            adapter,
            max_tokens=max_tokens,
            cancel=cancel,
            clean=True,
        ):
            result = chunk.result
            if result is None:
                yield AnswerChunk(text=chunk.text)
                continue
            done = finish(grounding, result.text, result=result)
            yield AnswerChunk(
                text=chunk.text,
                done=True,
                tokens_per_s=result.generation_tps,
                tokens=result.generation_tokens,
                stopped=result.finish_reason == "cancelled",
                note=done.note,
                sources=[SourceView(s.label, s.title, s.text, s.read) for s in done.sources],
                nearest=[SourceView(s.label, s.title, s.text) for s in done.nearest_shown],
                unsupported=[(u.start, u.end) for u in done.unsupported],
                final=done.text,
                follows_unread=done.follows_unread,
                generated=done.generated,
            )
