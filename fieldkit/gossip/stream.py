"""ByteStream: the one interface every transport (TCP, memory, BLE) gives the gossip session."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class ByteStream(Protocol):
    """An ordered, reliable byte pipe to one peer.

    `receive()` returns the next bytes that arrived (any length > 0), or b"" once the peer
    closed. Transports raise `fieldkit.errors.TransportError` when the link fails.
    """

    peer_label: str

    async def send(self, data: bytes) -> None:
        """Queue `data` for the peer; returns once the transport accepted it."""
        ...

    async def receive(self) -> bytes:
        """Return the next received bytes, or b"" at end of stream."""
        ...

    async def close(self) -> None:
        """Close the stream; idempotent."""
        ...


def callback_address(stream: object) -> str:
    """Return where the peer of `stream` can be reached again (its `peer_label`), or "" for
    a stream it opened to us: a TCP client's port is a passing one, no place to sync with
    (a transport says so with `callback_address`)."""
    return getattr(stream, "callback_address", getattr(stream, "peer_label", ""))
