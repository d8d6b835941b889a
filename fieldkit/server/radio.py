"""The agent holds the Bluetooth radio: BLE syncs asked for by other processes run here.

On macOS Bluetooth belongs to the login session's app; a process started by sshd usually
cannot open it. The agent, started at login, opens the radio once (the platform's, or a
bumble controller given with `fieldkit serve --hci`) and keeps it; `fieldkit sync --ble`
and `fieldkit peers --ble` in any shell of the same user send their request over the
home's Unix socket and get the session's progress and summary (or the sightings) back as
JSON lines. One BLE session or scan at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from fieldkit.errors import FieldkitError

if TYPE_CHECKING:
    from fieldkit.gossip.ble.sync import Radio
    from fieldkit.gossip.summary import ProgressUpdate, SyncSummary
    from fieldkit.services import Services
    from fieldkit.store.identity import Identity
    from fieldkit.store.library import Library


def summary_from_dict(data: dict[str, Any]) -> SyncSummary:
    """Rebuild a SyncSummary sent as `dataclasses.asdict(summary)`."""
    from fieldkit.gossip.summary import PacketReport, SyncSummary

    fields = dict(data)
    fields["packets"] = [PacketReport(**p) for p in fields.get("packets", [])]
    return SyncSummary(**fields)


def progress_from_dict(data: dict[str, Any]) -> ProgressUpdate:
    from fieldkit.gossip.summary import ProgressUpdate

    return ProgressUpdate(**data)


@dataclass(frozen=True)
class _Device:
    """What a sync needs of this device, with a library connection of the loop's thread."""

    identity: Identity
    library: Library
    base_fingerprint: str | None


class RadioHolder:
    """The agent's radio, opened on first use and kept until `close` (event-loop thread)."""

    def __init__(self, services: Services, hci: str | None) -> None:
        self.services = services
        self.hci = hci
        self._stack = contextlib.AsyncExitStack()
        self._radio: Radio | None = None
        self._device: _Device | None = None
        self._lock = asyncio.Lock()

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

    async def sync(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Run one `sync --ble` (connect) session; yield progress events, then the summary.

        Yields `{"progress": ...}` per chunk, then `{"summary": ...}`, or `{"error": ...}`
        with one sentence when the radio cannot be opened or the request is bad.
        """
        from fieldkit.gossip.summary import SyncOptions
        from fieldkit.gossip.sync import sync_ble

        try:
            peer = body.get("peer")
            scan_seconds = float(body.get("scan_seconds", 10.0))
            options = SyncOptions(
                accept_pending=bool(body.get("accept_pending", False)),
                idle_timeout=float(body.get("idle_timeout", 60.0)),
            )
        except (TypeError, ValueError):
            yield {"error": "The sync request's fields are not valid."}
            return
        events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def progress(update: ProgressUpdate) -> None:
            events.put_nowait({"progress": asdict(update)})

        async def session() -> None:
            try:
                async with self._lock:
                    radio, device = await self._open()
                    summary = await sync_ble(
                        radio, device, options, peer, progress, None, scan_seconds
                    )
                events.put_nowait({"summary": asdict(summary)})
            except FieldkitError as exc:
                events.put_nowait({"error": str(exc)})
            finally:
                events.put_nowait(None)

        task = asyncio.ensure_future(session())
        try:
            while (event := await events.get()) is not None:
                yield event
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def scan(self, body: dict[str, Any]) -> dict[str, Any]:
        """Scan for fieldkit peers; return {"sightings": [...]} or {"error": sentence}."""
        try:
            seconds = float(body.get("seconds", 5.0))
        except (TypeError, ValueError):
            return {"error": "seconds must be a number."}
        if not 0 < seconds <= 120:
            return {"error": "seconds must be more than 0 and at most 120."}
        try:
            async with self._lock:
                radio, _ = await self._open()
                sightings = await radio.scan(seconds)
        except FieldkitError as exc:
            return {"error": str(exc)}
        return {"sightings": [asdict(s) for s in sightings]}

    async def close(self) -> None:
        """Close the radio and the gossip library connection (idempotent)."""
        await self._stack.aclose()
        self._radio = None
        self._device = None
