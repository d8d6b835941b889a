"""What `GossipConnection.next_event` returns besides the peer's messages.

An event is a message the peer sent (fieldkit.gossip.messages), `PeerVerified` once the
peer proved its key, `Closed` once the transport ended, or `NEED_DATA` when the core needs
more bytes before it can say anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from fieldkit.gossip.messages import Message


@dataclass(frozen=True)
class PeerVerified:
    """Event: the peer proved it holds the key it announced."""

    device_id: str
    name: str
    public_key: bytes
    sas: str


@dataclass(frozen=True)
class Closed:
    """Event: the transport ended; `clean` is True if both sides had said Bye first."""

    clean: bool


class NeedData:
    """The type of `NEED_DATA`: no event until more bytes arrive."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()
Event = Message | PeerVerified | Closed
