"""The one sync API: every sync over TCP or Bluetooth LE starts here.

    summary = await sync_with("192.168.1.20", 7744, device, options)
    listener = await start_listener(device, host="0.0.0.0", port=7744, once=True)
    async with open_radio(device_id, name, hci) as radio:
        summary = await sync_ble(radio, device, options, peer="k7qx2mza")

`device` is anything with `identity`, `library` and `base_fingerprint` (the Services object
is one). The receive rules are set here and nowhere else: packets made for another base
model are refused (`receive_options`), the receive policy is the library's unless the
caller names one, and every stream is guarded by a session deadline and a minimum rate
(`GuardedStream`), so a peer that trickles bytes cannot hold a session for ever.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from fieldkit.errors import TransportError
from fieldkit.gossip.protocol import only_pings
from fieldkit.gossip.session import run_session
from fieldkit.gossip.stream import callback_address
from fieldkit.gossip.summary import (
    ConfirmCallback,
    PeerCallback,
    ProgressCallback,
    SyncOptions,
    SyncSummary,
)
from fieldkit.gossip.tcp import DEFAULT_PORT, MAX_SESSIONS, Listener, connect

if TYPE_CHECKING:
    from fieldkit.gossip.ble.sync import Radio
    from fieldkit.gossip.stream import ByteStream
    from fieldkit.store.identity import Identity
    from fieldkit.store.library import Library

__all__ = [
    "DEFAULT_PORT",
    "Device",
    "GuardedStream",
    "SessionRunner",
    "receive_options",
    "serve_ble",
    "start_listener",
    "sync_ble",
    "sync_ble_peer",
    "sync_with",
]

SESSION_DEADLINE = 3600.0  # seconds one session may last, whatever the link
MIN_RATE = 256  # bytes per second, both directions together, over each RATE_WINDOW
RATE_WINDOW = 30.0
# A longer silence is idle time (a person confirming a code; idle_timeout governs it), not a
# trickle: the rate window starts again after it.
IDLE_GAP = 10.0


class Device(Protocol):
    """What a sync needs of this device."""

    @property
    def identity(self) -> Identity: ...

    @property
    def library(self) -> Library: ...

    @property
    def base_fingerprint(self) -> str | None: ...


def receive_options(device: Device, options: SyncOptions | None = None) -> SyncOptions:
    """Return `options` with this device's receive rules filled in: its base model (unless
    the caller named one explicitly). The policy stays None = the library's setting."""
    options = options or SyncOptions()
    if options.base_fingerprint is None:
        options = replace(options, base_fingerprint=device.base_fingerprint)
    return options


class GuardedStream:
    """A ByteStream that ends a session that lasts too long or moves too few bytes.

    Raises TransportError from `receive` once `deadline` seconds have passed since the
    stream was opened, or when fewer than `min_rate` bytes a second (sent and received
    together) moved over the last `window` seconds.
    """

    def __init__(
        self,
        stream: ByteStream,
        deadline: float = SESSION_DEADLINE,
        min_rate: float = MIN_RATE,
        window: float = RATE_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._clock = clock
        self._start = clock()
        self._deadline = deadline
        self._min_rate = min_rate
        self._window = window
        self._mark = self._start
        self._last = self._start
        self._moved = 0

    @property
    def peer_label(self) -> str:
        return self._stream.peer_label

    @property
    def callback_address(self) -> str:
        return callback_address(self._stream)

    @peer_label.setter
    def peer_label(self, value: str) -> None:
        self._stream.peer_label = value

    def _check(self, moved: int, idle: bool = False) -> None:
        """Count `moved` bytes; `idle`: they were only Pings (version 4), which keep no
        rate up: a person comparing a code for a minute is idle time, not a trickle."""
        now = self._clock()
        if now - self._start > self._deadline:
            raise TransportError(
                f"The session with {self.peer_label} ran past its {self._deadline:g} s deadline."
            )
        if idle:
            return
        if now - self._last > IDLE_GAP:
            self._mark, self._moved = now, 0
        self._last = now
        self._moved += moved
        if now - self._mark >= self._window:
            rate = self._moved / (now - self._mark)
            if rate < self._min_rate:
                raise TransportError(
                    f"The link to {self.peer_label} moved {rate:.0f} bytes/s, below the "
                    f"{self._min_rate:g} bytes/s a session needs."
                )
            self._mark, self._moved = now, 0

    async def send(self, data: bytes) -> None:
        await self._stream.send(data)
        self._moved += len(data)

    async def receive(self) -> bytes:
        data = await self._stream.receive()
        self._check(len(data), idle=only_pings(data))
        return data

    async def close(self) -> None:
        await self._stream.close()


@dataclass
class SessionRunner:
    """Runs one gossip session on a stream with this device's receive rules."""

    device: Device
    options: SyncOptions
    progress: ProgressCallback | None = None
    confirm: ConfirmCallback | None = None
    on_peer: PeerCallback | None = None

    async def __call__(self, stream: ByteStream, claims: set[str] | None = None) -> SyncSummary:
        return await run_session(
            GuardedStream(stream),
            self.device.identity,
            self.device.library,
            self.options,
            self.progress,
            self.confirm,
            claims=claims,
            on_peer=self.on_peer,
        )


def session_runner(
    device: Device,
    options: SyncOptions | None = None,
    progress: ProgressCallback | None = None,
    confirm: ConfirmCallback | None = None,
    on_peer: PeerCallback | None = None,
) -> SessionRunner:
    """Return the runner every transport uses for this device's sessions."""
    return SessionRunner(device, receive_options(device, options), progress, confirm, on_peer)


async def sync_with(
    host: str,
    port: int,
    device: Device,
    options: SyncOptions | None = None,
    progress: ProgressCallback | None = None,
    confirm: ConfirmCallback | None = None,
) -> SyncSummary:
    """Sync with the TCP listener at host:port; return the summary (raises TransportError
    only if the connection cannot be opened)."""
    stream = await connect(host, port)
    return await session_runner(device, options, progress, confirm)(stream)


async def start_listener(
    device: Device,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    options: SyncOptions | None = None,
    once: bool = False,
    on_summary: Callable[[SyncSummary], None] | None = None,
    progress: ProgressCallback | None = None,
    confirm: ConfirmCallback | None = None,
    max_sessions: int = MAX_SESSIONS,
    on_refused: Callable[[str], None] | None = None,
    on_peer: PeerCallback | None = None,
) -> Listener:
    """Start a TCP listener; return it (raises TransportError if the port is taken).
    `on_peer` is told of each session's peer once it has proved who it is."""
    run = session_runner(device, options, progress, confirm, on_peer)
    listener = Listener(run, once, on_summary, max_sessions, on_refused)
    return await listener.start(host, port)


async def sync_ble(
    radio: Radio,
    device: Device,
    options: SyncOptions | None = None,
    peer: str | None = None,
    progress: ProgressCallback | None = None,
    confirm: ConfirmCallback | None = None,
    scan_seconds: float = 10.0,
    *,
    central_only: bool = False,
) -> SyncSummary:
    """Advertise and scan; sync with the first fieldkit peer met (or `peer`) in whichever
    role the role rule picks, or with `central_only`, find the peer, connect as central and
    sync once. Raises TransportError if nobody is met."""
    from fieldkit.gossip.ble.sync import connect_and_run, meet_and_run

    run = session_runner(device, options, progress, confirm)
    if central_only:
        return await connect_and_run(radio, run, peer, scan_seconds)
    identity = device.identity
    return await meet_and_run(radio, identity.device_id, identity.name, run, peer, scan_seconds)


async def sync_ble_peer(radio: Radio, device: Device, *args: Any, **kwargs: Any) -> SyncSummary:
    """Find `peer` (or any fieldkit peer), connect as central and sync once: `sync_ble`,
    with the same arguments, as central only."""
    return await sync_ble(radio, device, *args, central_only=True, **kwargs)


async def serve_ble(
    radio: Radio,
    device: Device,
    options: SyncOptions | None = None,
    once: bool = False,
    on_summary: Callable[[SyncSummary], None] | None = None,
    progress: ProgressCallback | None = None,
    confirm: ConfirmCallback | None = None,
    on_ready: Callable[[], None] | None = None,
    on_peer: PeerCallback | None = None,
) -> list[SyncSummary]:
    """Advertise and serve each central that connects (until cancelled, or after the first
    authenticated session with `once`); return the summaries. `on_peer` is told of each
    session's peer once it has proved who it is."""
    from fieldkit.gossip.ble.sync import advertise_and_serve

    identity = device.identity
    run = session_runner(device, options, progress, confirm, on_peer)
    return await advertise_and_serve(
        radio, identity.device_id, identity.name, run, once, on_summary, on_ready
    )
