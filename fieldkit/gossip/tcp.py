"""TCP transport (asyncio streams) and the Python API the CLI and the TUI call.

summary = await sync_with("192.168.1.20", 7744, services)
listener = await start_listener(services, host="0.0.0.0", port=7744, once=True)
await listener.wait()
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from fieldkit.errors import TransportError
from fieldkit.gossip.session import run_session
from fieldkit.gossip.summary import ConfirmCallback, ProgressCallback, SyncOptions, SyncSummary

if TYPE_CHECKING:
    from fieldkit.services import Services

DEFAULT_PORT = 7744
READ_SIZE = 256 * 1024


class TcpStream:
    """A ByteStream over an asyncio TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        peer = writer.get_extra_info("peername")
        self.peer_label = f"{peer[0]}:{peer[1]}" if peer else "tcp"

    async def send(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise TransportError(f"The link to {self.peer_label} broke ({exc}).") from None

    async def receive(self) -> bytes:
        try:
            return await self._reader.read(READ_SIZE)
        except (ConnectionError, OSError) as exc:
            raise TransportError(f"The link to {self.peer_label} broke ({exc}).") from None

    async def close(self) -> None:
        if self._writer.is_closing():
            return
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


def _options(services: Services, options: SyncOptions | None) -> SyncOptions:
    """Fill in the base model of this device unless the caller chose one."""
    options = options or SyncOptions()
    if options.base_fingerprint is None:
        options = replace(options, base_fingerprint=services.base_fingerprint)
    return options


async def connect(host: str, port: int, connect_timeout: float = 15.0) -> TcpStream:
    """Open a TCP stream; raise TransportError if the peer cannot be reached."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), connect_timeout
        )
    except (OSError, TimeoutError) as exc:
        raise TransportError(f"Cannot reach {host}:{port} ({exc or 'timed out'}).") from None
    return TcpStream(reader, writer)


async def sync_with(
    host: str,
    port: int,
    services: Services,
    options: SyncOptions | None = None,
    progress: ProgressCallback | None = None,
    confirm: ConfirmCallback | None = None,
) -> SyncSummary:
    """Sync with the listener at host:port; return the summary (raises TransportError only
    if the connection cannot be opened)."""
    stream = await connect(host, port)
    return await run_session(
        stream, services.identity, services.library, _options(services, options), progress, confirm
    )


class Listener:
    """Accepts sync sessions on a TCP port; each runs `run_session` against one library."""

    def __init__(
        self,
        services: Services,
        options: SyncOptions,
        once: bool,
        on_summary: Callable[[SyncSummary], None] | None,
        progress: ProgressCallback | None,
        confirm: ConfirmCallback | None,
    ) -> None:
        self.services = services
        self.options = options
        self.once = once
        self.on_summary = on_summary
        self.progress = progress
        self.confirm = confirm
        self.summaries: list[SyncSummary] = []
        self._claims: set[str] = set()
        self._started = False
        self._server: asyncio.Server | None = None
        self._done = asyncio.Event()

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> Listener:
        try:
            self._server = await asyncio.start_server(self._handle, host, port)
        except (OSError, OverflowError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise TransportError(f"Cannot listen on {host}:{port} ({reason}).") from None
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.once and self._started:
            writer.close()  # a --once listener serves exactly one peer
            return
        self._started = True
        summary = await run_session(
            TcpStream(reader, writer),
            self.services.identity,
            self.services.library,
            self.options,
            self.progress,
            self.confirm,
            claims=self._claims,
        )
        self.summaries.append(summary)
        if self.on_summary is not None:
            self.on_summary(summary)
        if self.once:
            await self.close()

    async def wait(self) -> None:
        """Return once the listener is closed (after the first session with `once`)."""
        await self._done.wait()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._done.set()


async def start_listener(
    services: Services,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    options: SyncOptions | None = None,
    once: bool = False,
    on_summary: Callable[[SyncSummary], None] | None = None,
    progress: ProgressCallback | None = None,
    confirm: ConfirmCallback | None = None,
) -> Listener:
    """Start listening; return the Listener (raises TransportError if the port is taken)."""
    listener = Listener(services, _options(services, options), once, on_summary, progress, confirm)
    return await listener.start(host, port)
