"""The blocking and async operations behind the screens: a thin facade over Services.

No textual here. Blocking methods (SQLite, hashing, MLX) are called from thread workers,
gossip coroutines from async workers; what they return is plain data from tui_views.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fieldkit.errors import LibraryError
from fieldkit.formats import format_size
from fieldkit.store.notes import notes_count
from fieldkit.store.packet import packet_files_in
from fieldkit.store.usable import Blocked
from fieldkit.tui.ask_backend import AskBackend
from fieldkit.tui.sync_backend import SyncBackend
from fieldkit.tui.views import (
    PEER_ID_LENGTH,
    THIS_DEVICE,
    Outcome,
    PacketDetail,
    PacketRow,
    PeerRow,
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


class TuiBackend(SyncBackend, AskBackend):
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
