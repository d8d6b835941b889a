"""The asyncio loop around `BleLink`: a `ByteStream` over any BLE library's GATT calls.

A transport (bumble, bleak, bless) hands over three things: a coroutine that puts one
GATT value on the air, a function that returns the current ATT MTU (polled, because
stacks report 23 until the MTU exchange finishes), and a coroutine that disconnects.
It then calls `feed(value)` for every value the peer sends and `connection_lost()`
when the link drops. Nothing here imports a Bluetooth library.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from fieldkit.errors import FieldkitError, ProtocolError, TransportError
from fieldkit.gossip.ble.link import DEFAULT_WINDOW, BleLink


class BleByteStream:
    """A `ByteStream` (docs/ARCHITECTURE.md) over one BLE connection.

    `receive()` returns b"" after the peer's FIN and raises TransportError if the link
    drops first, so a cut link is never mistaken for a finished conversation.
    """

    def __init__(
        self,
        *,
        write: Callable[[bytes], Awaitable[None]],
        mtu: Callable[[], int],
        disconnect: Callable[[], Awaitable[None]],
        peer_label: str,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        self.peer_label = peer_label
        self._write = write
        self._mtu = mtu
        self._disconnect = disconnect
        self._link = BleLink(mtu(), window=window)
        self._wake = asyncio.Event()  # something to send, or credits arrived
        self._changed = asyncio.Event()  # data received, frames sent, or link state changed
        self._error: FieldkitError | None = None
        self._closed = False
        self._writing = False  # the pump holds frames it has not finished writing
        self._pump_task = asyncio.get_running_loop().create_task(self._pump())
        self._wake.set()  # send HELLO

    # -- fed by the transport -------------------------------------------------
    def feed(self, value: bytes) -> None:
        """Take one GATT value from the peer (called from the library's callback)."""
        if self._error is not None:
            return
        try:
            self._link.receive_value(bytes(value))
        except ProtocolError as exc:
            self._fail(exc)
            return
        self._wake.set()
        self._changed.set()

    def connection_lost(self, reason: str = "") -> None:
        """Mark the link as dropped: pending and later calls raise TransportError."""
        if self._error is None and not self._closed:
            detail = f" ({reason})" if reason else ""
            self._fail(TransportError(f"The Bluetooth link to {self.peer_label} was lost{detail}."))

    @property
    def mtu_value_size(self) -> int:
        """The data frame size in use now (for progress displays and tests)."""
        return self._link.frame_size

    # -- ByteStream ---------------------------------------------------------
    async def send(self, data: bytes) -> None:
        """Queue `data` and return once it is on the air (credits permitting).

        Raises TransportError if the link drops, ProtocolError if the peer misbehaves.
        """
        self._check()
        if not data:
            return
        self._link.send(data)
        self._wake.set()
        await self._until(lambda: self._link.pending == 0 and not self._writing)

    async def receive(self) -> bytes:
        """Return the next received bytes, or b"" once the peer has finished sending."""
        while True:
            if self._link.readable:
                data = self._link.read()
                self._wake.set()  # credits may be due
                return data
            if self._link.peer_finished:
                return b""
            self._check()
            self._changed.clear()
            await self._changed.wait()

    async def close(self) -> None:
        """Send FIN, wait (briefly) for it to leave, then disconnect. Idempotent."""
        if self._closed:
            return
        current = asyncio.current_task()
        cancelled = current is not None and current.cancelling() > 0
        if self._error is None and not cancelled:  # a cancelled sync drops the link at once
            self._link.finish()
            self._wake.set()
            with contextlib.suppress(FieldkitError, TimeoutError):
                await asyncio.wait_for(
                    self._until(lambda: self._link.drained and not self._writing), 5.0
                )
            # Give the peer a moment to read FIN before the link goes down.
            with contextlib.suppress(FieldkitError, TimeoutError):
                await asyncio.wait_for(self._until(lambda: self._link.peer_finished), 2.0)
        self._closed = True
        self._pump_task.cancel()
        try:
            await self._pump_task
        except asyncio.CancelledError:
            if current is not None and current.cancelling() > 0:
                with contextlib.suppress(Exception):
                    await self._disconnect()
                raise  # our own caller was cancelled: never swallow that
        except Exception:  # the pump's own failure was already recorded by _fail
            pass
        with contextlib.suppress(Exception):
            await self._disconnect()
        self._changed.set()

    # -- internals ------------------------------------------------------------
    def _check(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise TransportError(f"The Bluetooth link to {self.peer_label} is closed.")

    def _fail(self, error: FieldkitError) -> None:
        self._error = error
        self._changed.set()
        self._wake.set()

    async def _until(self, done: Callable[[], bool]) -> None:
        while not done():
            self._check()
            self._changed.clear()
            await self._changed.wait()

    async def _pump(self) -> None:
        while self._error is None:
            await self._wake.wait()
            self._wake.clear()
            try:
                self._link.set_mtu(self._mtu())
                frames = self._link.values_to_send()
                self._writing = bool(frames)
                for frame in frames:
                    await self._write(frame)
                self._writing = False
            except FieldkitError as exc:
                self._fail(exc)
            except Exception as exc:  # the library's own error for a dead link
                self._fail(
                    TransportError(f"Writing to the Bluetooth peer {self.peer_label} failed: {exc}")
                )
            self._changed.set()


class PendingStream:
    """One connection's stream, and the values that arrive before it exists.

    A transport subscribes to the peer's values before it can build the stream (the MTU and
    the characteristics come first): `feed` and `connection_lost` may be called from the
    start, and `attach(stream)` hands the new `BleByteStream` what arrived meanwhile.
    """

    def __init__(self) -> None:
        self.stream: BleByteStream | None = None
        self._early: list[bytes] = []

    def feed(self, value: bytes) -> None:
        """Take one GATT value from the peer (kept until the stream is open)."""
        if self.stream is None:
            self._early.append(bytes(value))
        else:
            self.stream.feed(value)

    def connection_lost(self, reason: str = "") -> None:
        """Tell the stream, if open, that the link dropped."""
        if self.stream is not None:
            self.stream.connection_lost(reason)

    def attach(self, stream: BleByteStream) -> BleByteStream:
        """Return `stream`, fed the values that came first and, from now on, the rest."""
        self.stream = stream
        for value in self._early:
            stream.feed(value)
        self._early.clear()
        return stream
