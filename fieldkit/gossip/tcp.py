"""TCP transport: a ByteStream over asyncio streams, a connector and a listener.

Callers go through fieldkit/gossip/sync.py (`sync_with`, `start_listener`), which sets the
receive rules and hands the listener a session runner.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from fieldkit.errors import TransportError
from fieldkit.gossip.summary import SyncSummary

if TYPE_CHECKING:
    from fieldkit.gossip.sync import SessionRunner

DEFAULT_PORT = 7744
READ_SIZE = 256 * 1024
MAX_SESSIONS = 8  # concurrent sessions per listener
CLOSE_GRACE = 5.0  # seconds a closing connection may take to flush what is queued


class TcpStream:
    """A ByteStream over an asyncio TCP connection."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, accepted: bool = False
    ) -> None:
        self._reader = reader
        self._writer = writer
        peer = writer.get_extra_info("peername")
        self.peer_label = f"{peer[0]}:{peer[1]}" if peer else "tcp"
        # a client's source port passes with the connection: nowhere to sync with later
        self.callback_address = "" if accepted else self.peer_label

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
        """Close the connection, flushing what is queued for a few seconds at most: a peer
        that stopped reading (a suspended laptop, a dead relay) would otherwise hold the
        close, and the session, for ever with megabytes unsent."""
        if self._writer.is_closing():
            return
        self._writer.close()
        try:
            async with asyncio.timeout(CLOSE_GRACE):
                await self._writer.wait_closed()
        except TimeoutError:
            self._writer.transport.abort()
        except (ConnectionError, OSError):
            pass


_UNREACHABLE = {
    errno.ECONNREFUSED: "nothing listens on that port there (is `fieldkit sync --listen` running?)",
    errno.EHOSTUNREACH: "no route to that host (is it on this network?)",
    errno.ENETUNREACH: "no route to that network (is this device connected?)",
    errno.ETIMEDOUT: "the host did not answer",
    errno.ECONNRESET: "the host closed the connection",
}


def why_unreachable(exc: BaseException) -> str:
    """Return why a TCP connect failed, in words (not "[Errno 111] Connect call failed")."""
    if isinstance(exc, socket.gaierror):
        return "that host name is not known here"
    if isinstance(exc, TimeoutError) or not str(exc):
        return "the host did not answer"
    code = getattr(exc, "errno", None)
    if code in _UNREACHABLE:
        return _UNREACHABLE[code]
    return getattr(exc, "strerror", None) or str(exc)


async def connect(host: str, port: int, connect_timeout: float = 15.0) -> TcpStream:
    """Open a TCP stream; raise TransportError if the peer cannot be reached."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), connect_timeout
        )
    except (OSError, TimeoutError) as exc:
        raise TransportError(f"Cannot reach {host[:100]}:{port}: {why_unreachable(exc)}.") from None
    except UnicodeError:
        raise TransportError(f"{host[:100]!r} is not a host name.") from None
    return TcpStream(reader, writer)


class Listener:
    """Accepts sync sessions on a TCP port and runs each with `run` (a SessionRunner).

    At most `max_sessions` run at once; a connection beyond that is closed at once and
    reported through `on_refused`. With `once`, the listener closes after the first session
    in which the peer proved who it is (a stray connection does not use it up).
    """

    def __init__(
        self,
        run: SessionRunner,
        once: bool = False,
        on_summary: Callable[[SyncSummary], None] | None = None,
        max_sessions: int = MAX_SESSIONS,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.run = run
        self.once = once
        self.on_summary = on_summary
        self.max_sessions = max_sessions
        self.on_refused = on_refused
        self.summaries: list[SyncSummary] = []
        self.refused = 0
        self._claims: set[str] = set()
        self._active = 0
        self._server: asyncio.Server | None = None
        self._done = asyncio.Event()

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> Listener:
        """Bind and start accepting; return self. TransportError if the address is bad or taken."""
        try:
            self._server = await asyncio.start_server(self._handle, host, port)
        except (OSError, OverflowError, UnicodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise TransportError(f"Cannot listen on {host[:100]}:{port} ({reason}).") from None
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stream = TcpStream(reader, writer, accepted=True)
        if self._done.is_set() or self._active >= self.max_sessions:
            self.refused += 1
            if self.on_refused is not None:
                self.on_refused(
                    f"Refused a connection from {stream.peer_label}: "
                    f"{self.max_sessions} sessions are already running."
                )
            await stream.close()
            return
        self._active += 1
        try:
            summary = await self.run(stream, self._claims)
        except asyncio.CancelledError:  # the listener stops (Ctrl-C) mid-session: end here,
            return  # as Python 3.11's start_server prints a traceback for a cancelled handler
        finally:
            self._active -= 1
        self.summaries.append(summary)
        if self.on_summary is not None:
            self.on_summary(summary)
        if self.once and summary.peer_id:
            await self.close()

    async def wait(self) -> None:
        """Return once the listener is closed (after the first session with `once`)."""
        await self._done.wait()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._done.set()
