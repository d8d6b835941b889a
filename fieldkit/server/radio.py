"""The agent holds the Bluetooth radio: BLE syncs asked for by other processes run here.

On macOS Bluetooth belongs to the login session's app; a process started by sshd usually
cannot open it. The agent, started at login, opens the radio once (the platform's, or a
bumble controller given with `fieldkit serve --hci`) and keeps it; `fieldkit sync --ble`
(connecting or `--listen`ing), `fieldkit peers --ble` and the TUI's Peers screen in any
process of the same user send their request over the home's Unix socket and get the
session's events back as JSON lines:

    {"ready": {"device_id", "name"}}             a listener advertises now
    {"progress": ProgressUpdate}                  per chunk
    {"confirm": {"id", "peer_id", "name", "sas"}} a new peer's code to compare (see `answer`)
    {"peer": SyncSummary}                         a listener's peer proved who it is (its code)
    {"summary": SyncSummary}                      per session
    {"error": sentence}                           the radio or the request failed

One BLE session or scan at a time; while a listener advertises, other requests are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from fieldkit.errors import FieldkitError, TransportError

if TYPE_CHECKING:
    from fieldkit.gossip.ble.sync import Radio
    from fieldkit.gossip.summary import (
        ConfirmCallback,
        ProgressCallback,
        ProgressUpdate,
        SyncOptions,
        SyncSummary,
    )
    from fieldkit.services import Services
    from fieldkit.store.identity import Identity
    from fieldkit.store.library import Library

LISTENING = (
    "The agent's radio is serving `fieldkit sync --ble --listen`; stop that to scan or sync."
)
Emit = Callable[[dict[str, Any]], None]


def summary_from_dict(data: dict[str, Any]) -> SyncSummary:
    """Rebuild a SyncSummary sent as `dataclasses.asdict(summary)`."""
    from fieldkit.gossip.summary import PacketReport, SyncSummary

    fields = dict(data)
    fields["packets"] = [PacketReport(**p) for p in fields.get("packets", [])]
    return SyncSummary(**fields)


def progress_from_dict(data: dict[str, Any]) -> ProgressUpdate:
    """Rebuild a ProgressUpdate sent as `dataclasses.asdict(update)`."""
    from fieldkit.gossip.summary import ProgressUpdate

    return ProgressUpdate(**data)


@dataclass(frozen=True)
class _Device:
    """What a sync needs of this device, with a library connection of the loop's thread."""

    identity: Identity
    library: Library
    base_fingerprint: str | None


@dataclass(frozen=True)
class _Job:
    """One radio request: what it runs, and whether it holds the radio as a listener."""

    run: Callable[[Radio, _Device, ProgressCallback, ConfirmCallback | None, Emit], Awaitable[None]]
    ask: bool  # the client has a person to compare a new peer's code
    listens: bool = False


def options_to_dict(options: SyncOptions) -> dict[str, Any]:
    """Return the fields of `options` a radio request carries (`options_from_dict` reads them)."""
    return {
        "policy": options.policy,
        "accept_pending": options.accept_pending,
        "idle_timeout": options.idle_timeout,
    }


def options_from_dict(body: dict[str, Any]) -> SyncOptions:
    """Return the SyncOptions a request names; ValueError or TypeError when a field is bad."""
    from fieldkit.gossip.summary import SyncOptions
    from fieldkit.store.settings import RECEIVE_POLICIES

    policy = body.get("policy")
    if policy is not None and policy not in RECEIVE_POLICIES:
        raise ValueError(policy)
    return SyncOptions(
        policy=policy,
        accept_pending=bool(body.get("accept_pending", False)),
        idle_timeout=_seconds(body.get("idle_timeout", 60.0)),
    )


def _seconds(value: Any) -> float:
    """Return `value` as seconds, more than 0 and at most a day; ValueError otherwise."""
    seconds = float(value)
    if not 0 < seconds <= 86400:  # NaN fails this too
        raise ValueError(value)
    return seconds


class RadioHolder:
    """The agent's radio, opened on first use and kept until `close` (event-loop thread)."""

    def __init__(self, services: Services, hci: str | None) -> None:
        self.services = services
        self.hci = hci
        self._stack = contextlib.AsyncExitStack()
        self._radio: Radio | None = None
        self._device: _Device | None = None
        self._lock = asyncio.Lock()
        self._listening = False
        self._questions: dict[str, asyncio.Future[bool]] = {}

    async def _open(self) -> tuple[Radio, _Device]:
        if self._radio is None:
            from fieldkit.gossip.ble.sync import open_radio

            identity = self.services.identity
            self._radio = await self._stack.enter_async_context(
                open_radio(identity.device_id, identity.name, self.hci)
            )
            # The gossip session runs on this loop's thread: it gets its own connection.
            library = self.services.open_library()
            self._stack.callback(library.close)
            self._device = _Device(identity, library, self.services.base_fingerprint)
        assert self._device is not None
        return self._radio, self._device

    @contextlib.asynccontextmanager
    async def _held(self, listens: bool = False) -> AsyncIterator[tuple[Radio, _Device]]:
        """Hold the radio for one request; TransportError while a listener holds it."""
        if self._listening:
            raise TransportError(LISTENING)
        async with self._lock:
            self._listening = listens
            try:
                yield await self._open()
            finally:
                self._listening = False

    def sync(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Run one `sync --ble` session; yield its events (progress, confirm, the summary).

        `body`: `peer`, `scan_seconds`, `connect` (true: find the peer and connect as
        central, as the TUI does; false: meet it in whichever role the role rule picks),
        `confirm`, `policy`, `accept_pending`, `idle_timeout`.
        """
        try:
            options = options_from_dict(body)
            peer = body.get("peer")
            if peer is not None and not isinstance(peer, str):
                raise TypeError(peer)
            scan_seconds = _seconds(body.get("scan_seconds", 10.0))
        except (TypeError, ValueError):
            return _refusal("The sync request's fields are not valid.")
        from fieldkit.gossip.sync import sync_ble, sync_ble_peer

        start = sync_ble_peer if body.get("connect") else sync_ble

        async def run(radio, device, progress, confirm, emit) -> None:  # noqa: ANN001
            summary = await start(radio, device, options, peer, progress, confirm, scan_seconds)
            emit({"summary": asdict(summary)})

        return self._events(_Job(run, ask=bool(body.get("confirm"))))

    def listen(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Advertise and serve centrals until the client hangs up (or after the first
        authenticated session with `once`); yield `ready`, then each session's events."""
        try:
            options = options_from_dict(body)
        except (TypeError, ValueError):
            return _refusal("The listen request's fields are not valid.")
        from fieldkit.gossip.sync import serve_ble

        once = bool(body.get("once", False))

        async def run(radio, device, progress, confirm, emit) -> None:  # noqa: ANN001
            identity = device.identity
            await serve_ble(
                radio,
                device,
                options,
                once,
                on_summary=lambda summary: emit({"summary": asdict(summary)}),
                progress=progress,
                confirm=confirm,
                on_ready=lambda: emit(
                    {"ready": {"device_id": identity.device_id, "name": identity.name}}
                ),
                on_peer=lambda summary: emit({"peer": asdict(summary)}),
            )

        return self._events(_Job(run, ask=bool(body.get("confirm")), listens=True))

    async def _events(self, job: _Job) -> AsyncIterator[dict[str, Any]]:
        """Run `job` on the radio; yield what it emits. Closing the iterator ends the job."""
        events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        emit: Emit = events.put_nowait

        def progress(update: ProgressUpdate) -> None:
            emit({"progress": asdict(update)})

        async def confirm(peer_id: str, name: str, sas: str) -> bool:
            key = secrets.token_urlsafe(12)
            self._questions[key] = asyncio.get_running_loop().create_future()
            emit({"confirm": {"id": key, "peer_id": peer_id, "name": name, "sas": sas}})
            try:
                return await self._questions[key]
            finally:
                self._questions.pop(key, None)

        async def session() -> None:
            try:
                async with self._held(job.listens) as (radio, device):
                    await job.run(radio, device, progress, confirm if job.ask else None, emit)
            except FieldkitError as exc:
                emit({"error": str(exc)})
            except Exception as exc:  # the radio stack's own errors: one sentence for the client
                emit(
                    {
                        "error": f"The agent's Bluetooth session failed ({type(exc).__name__}: {exc})."
                    }
                )
            finally:
                emit(None)  # type: ignore[arg-type]

        task = asyncio.ensure_future(session())
        try:
            while (event := await events.get()) is not None:
                yield event
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """Give a person's answer to a `confirm` event: `{"id", "accept": bool}`.

        Returns {} when the waiting session took it, or {"error": sentence}.
        """
        question = self._questions.get(body.get("id")) if isinstance(body.get("id"), str) else None
        if question is None or question.done():
            return {"error": "No pairing question with that id is waiting."}
        if not isinstance(body.get("accept"), bool):
            return {"error": "accept must be true or false."}
        question.set_result(body["accept"])
        return {}

    async def scan(self, body: dict[str, Any]) -> dict[str, Any]:
        """Scan for fieldkit peers; return {"sightings": [...]} or {"error": sentence}."""
        try:
            seconds = float(body.get("seconds", 5.0))
        except (TypeError, ValueError):
            return {"error": "seconds must be a number."}
        if not 0 < seconds <= 120:
            return {"error": "seconds must be more than 0 and at most 120."}
        try:
            async with self._held() as (radio, _):
                sightings = await radio.scan(seconds)
        except FieldkitError as exc:
            return {"error": str(exc)}
        return {"sightings": [asdict(s) for s in sightings]}

    async def close(self) -> None:
        """Close the radio and the gossip library connection (idempotent)."""
        await self._stack.aclose()
        self._radio = None
        self._device = None


async def _refusal(sentence: str) -> AsyncIterator[dict[str, Any]]:
    yield {"error": sentence}
