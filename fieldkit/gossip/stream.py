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
