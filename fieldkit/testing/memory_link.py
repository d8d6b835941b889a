"""An in-memory ByteStream pair for tests, with fault injection on each direction.

`Faults(cut_after=N)` cuts the whole link after N bytes went one way (the rest of the bytes
are lost, both ends see end of stream and later sends fail), `corrupt_at=N` flips byte N,
`stall_after=N` silently stops delivering after N bytes (the link looks alive but is dead),
`rate=R` makes each send take len/R seconds (a slow serial link, for benchmarks), and
`piece=N` delivers the bytes N at a time (N=1: the receiver sees one byte per receive).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fieldkit.errors import TransportError


@dataclass
class Faults:
    """Faults of one direction; offsets count the bytes sent that way."""

    cut_after: int | None = None
    corrupt_at: int | None = None
    stall_after: int | None = None
    rate: float | None = None  # bytes per second
    piece: int | None = None


class _Link:
    def __init__(self) -> None:
        self.cut = False
        self.pipes: list[_Pipe] = []

    def cut_now(self) -> None:
        self.cut = True
        for pipe in self.pipes:
            pipe.queue.put_nowait(b"")


class _Pipe:
    def __init__(self, link: _Link, faults: Faults) -> None:
        self.link = link
        self.faults = faults
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.sent = 0
        self.delivered = bytearray()  # every byte that reached the other end, for tests

    def push(self, data: bytes) -> None:
        start, self.sent = self.sent, self.sent + len(data)
        f = self.faults
        if f.corrupt_at is not None and start <= f.corrupt_at < self.sent:
            buf = bytearray(data)
            buf[f.corrupt_at - start] ^= 0xFF
            data = bytes(buf)
        limit = min(x for x in (f.cut_after, f.stall_after, self.sent) if x is not None)
        keep = data[: max(0, limit - start)]
        if keep:
            self.delivered += keep
            step = f.piece or len(keep)
            for i in range(0, len(keep), step):
                self.queue.put_nowait(keep[i : i + step])
        if f.cut_after is not None and self.sent >= f.cut_after:
            self.link.cut_now()


class QueueStream:
    """One end of an in-memory link; implements fieldkit.gossip.stream.ByteStream.

    It receives from `inbox` (b"" marks the end of the stream) and says end of stream into
    `outbox` when closed; a subclass says how sent bytes travel (`_deliver`) and whether the
    link was cut (`_cut`). The base of `MemoryStream` and the mesh's `EncounterStream`.
    """

    def __init__(
        self, label: str, inbox: asyncio.Queue[bytes], outbox: asyncio.Queue[bytes]
    ) -> None:
        self.peer_label = label
        self._inbox_queue, self._outbox_queue = inbox, outbox
        self._eof = self._closed = False  # end of stream received / this end closed

    def _cut(self) -> bool:
        """Return True once the link was cut (later sends fail)."""
        raise NotImplementedError

    async def _deliver(self, data: bytes) -> None:
        """Carry `data` towards the other end."""
        raise NotImplementedError

    async def send(self, data: bytes) -> None:
        if self._closed or self._cut():
            raise TransportError(f"The link to {self.peer_label} is closed.")
        await self._deliver(bytes(data))

    async def receive(self) -> bytes:
        if self._eof:
            return b""
        data = await self._inbox_queue.get()
        if not data:
            self._eof = True
        return data

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._outbox_queue.put_nowait(b"")


class MemoryStream(QueueStream):
    """One end of an in-memory link with faults on each direction."""

    def __init__(self, label: str, inbox: _Pipe, outbox: _Pipe) -> None:
        super().__init__(label, inbox.queue, outbox.queue)
        self._outbox = outbox

    @property
    def bytes_sent(self) -> int:
        """Bytes this end handed to the link (delivered or not)."""
        return self._outbox.sent

    @property
    def delivered(self) -> bytes:
        """The bytes from this end that reached the other end."""
        return bytes(self._outbox.delivered)

    def _cut(self) -> bool:
        return self._outbox.link.cut

    async def _deliver(self, data: bytes) -> None:
        rate = self._outbox.faults.rate
        # a slow link keeps the sender busy for the bytes' air time; else just yield
        await asyncio.sleep(len(data) / rate if rate else 0)
        self._outbox.push(data)


def memory_pair(
    a_to_b: Faults | None = None, b_to_a: Faults | None = None
) -> tuple[MemoryStream, MemoryStream]:
    """Return two connected streams (a, b); faults apply to each direction separately."""
    link = _Link()
    ab = _Pipe(link, a_to_b or Faults())
    ba = _Pipe(link, b_to_a or Faults())
    link.pipes = [ab, ba]
    return MemoryStream("memory:b", ba, ab), MemoryStream("memory:a", ab, ba)
