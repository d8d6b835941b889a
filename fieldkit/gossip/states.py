"""The gossip protocol's states and transitions, in one table.

The protocol is symmetric, so one table serves both directions: `GossipConnection` checks
every message it sends against its own side's state and every message it receives against
the peer's side, with the same rules. A message that is not in the table for the sender's
state, or whose precondition on the other side does not hold, is out of order: a
ProtocolError when the peer sent it, a LocalProtocolError when this side tried to.
"""

from __future__ import annotations

from enum import Enum

from fieldkit.gossip.messages import (
    Abort,
    Bye,
    Cancel,
    Chunk,
    Decline,
    Hello,
    Inventory,
    Message,
    Offer,
    PacketEnd,
    PacketStart,
    Ping,
    Proof,
    Summary,
    Want,
)


class LocalProtocolError(RuntimeError):
    """This side used the connection out of order; a programming error, not the peer's."""


def require(condition: bool, what: str) -> None:
    """Raise LocalProtocolError(`what`) unless `condition` holds (a rule this side must keep)."""
    if not condition:
        raise LocalProtocolError(what)


class Side(Enum):
    """What one side has sent so far (each state includes the ones before it)."""

    START = 0  # nothing yet
    HELLO = 1  # its Hello: who it is and a nonce
    PROVED = 2  # its Proof: it holds the key it announced
    OFFERED = 3  # its Inventory (or, in version 2, its Summary): it may now want packets
    DONE = 4  # its Bye: it wants nothing more, and still serves the other side's wants
    ABORTED = 5  # its Abort: the session is over


class State(Enum):
    """The connection as a whole, from both sides' states (`Side`)."""

    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSED = "closed"
    ERROR = "error"


_SERVING = (PacketStart, Chunk, PacketEnd, Cancel)

# (state of the sending side, message) -> state of the sending side after it
TRANSITIONS: dict[tuple[Side, type[Message]], Side] = {
    (Side.START, Hello): Side.HELLO,
    (Side.HELLO, Proof): Side.PROVED,
    (Side.PROVED, Inventory): Side.OFFERED,
    (Side.PROVED, Summary): Side.OFFERED,
    (Side.OFFERED, Summary): Side.OFFERED,
    (Side.OFFERED, Offer): Side.OFFERED,
    (Side.OFFERED, Want): Side.OFFERED,
    (Side.OFFERED, Decline): Side.OFFERED,
    (Side.OFFERED, Bye): Side.DONE,
    **{(side, kind): side for side in (Side.OFFERED, Side.DONE) for kind in _SERVING},
    **{(side, Ping): side for side in (Side.PROVED, Side.OFFERED, Side.DONE)},
    **{(side, Abort): Side.ABORTED for side in Side if side is not Side.ABORTED},
}

# message -> how far the *other* side must have come before it may be sent
REQUIRES: dict[type[Message], Side] = {
    Proof: Side.HELLO,  # both Hellos (the proof signs both nonces)
    Inventory: Side.PROVED,  # the other side proved its key
    Summary: Side.PROVED,
    Offer: Side.OFFERED,  # an answer to the other side's Summary
    Want: Side.OFFERED,  # only what the other side offered
    Decline: Side.OFFERED,
}

# message -> the sentence for "the other side has not come far enough" (said of the peer)
_TOO_EARLY = {
    Proof: "The peer sent its proof before the Hello exchange.",
    Inventory: "The peer sent its inventory before this device proved its identity.",
    Summary: "The peer sent its inventory before this device proved its identity.",
    Offer: "The peer answered an inventory summary before it was sent one.",
    Want: "The peer asked for a packet before it was offered any.",
    Decline: "The peer declined a packet before it was offered any.",
}


# messages sent once, and the state they are sent in
_ONCE = {Hello: Side.START, Proof: Side.HELLO, Inventory: Side.PROVED, Bye: Side.OFFERED}


def after(side: Side, kind: type[Message]) -> Side | None:
    """Return the sending side's state after it sends `kind`, or None if it may not."""
    return TRANSITIONS.get((side, kind))


def precondition_holds(kind: type[Message], other: Side) -> bool:
    """True if the other side has come far enough for `kind` to be sent."""
    needed = REQUIRES.get(kind)
    return needed is None or needed.value <= other.value < Side.ABORTED.value


def peer_out_of_order(kind: type[Message], peer: Side, ours: Side) -> str:
    """Return the one sentence that says why the peer may not send `kind` now."""
    name = kind.__name__
    if after(peer, kind) is not None:
        return _TOO_EARLY.get(kind, f"The peer sent {name} too early.")
    if peer is Side.START:
        return "The peer did not start with a Hello message."
    first = _ONCE.get(kind)
    if first is not None and peer.value > first.value:
        return f"The peer sent a second {name} message."
    if peer is Side.HELLO:
        return f"The peer sent {name} before proving its identity."
    if peer is Side.PROVED:
        return f"The peer sent {name} before its inventory."
    if peer is Side.DONE and kind in (Want, Decline, Offer, Summary):
        return f"The peer sent {name} after saying Bye."
    return f"The peer sent an unexpected {name} message."


def local_out_of_order(kind: type[Message], ours: Side, peer: Side) -> str:
    """Return why this side may not send `kind` now (for a LocalProtocolError)."""
    name = kind.__name__
    if after(ours, kind) is None:
        return f"cannot send {name} after {ours.name}"
    return f"cannot send {name} before the peer reached {REQUIRES[kind].name}"
