"""The state table, and a connection that stays errored after any failed send or receive."""

from __future__ import annotations

import pytest

from fieldkit.errors import ProtocolError
from fieldkit.gossip.messages import (
    Abort,
    Bye,
    Cancel,
    Chunk,
    Hello,
    Inventory,
    Offer,
    PacketEnd,
    PacketStart,
    Ping,
    Proof,
    Summary,
    Want,
)
from fieldkit.gossip.protocol import LocalProtocolError, State
from fieldkit.gossip.states import TRANSITIONS, Side, after
from tests.gossip.test_protocol import (
    NONCE_A,
    core_for,
    feed_frames,
    handshaken,
    hello_for,
    make_packet,
)

PID = "ab" * 32
SAMPLES = [Proof(b"\0" * 64), Inventory(()), Summary(()), Offer("", ()), Want(PID),
           PacketStart(PID, {}, b"\0" * 64), Chunk(PID, 0, b"x"), PacketEnd(PID),
           Cancel(PID, "x"), Bye()]  # fmt: skip


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_before_its_hello_a_side_may_send_only_hello_or_abort(ids, message):
    from fieldkit.gossip.protocol import GossipConnection
    from fieldkit.store.identity import device_id_for

    _, ib = ids
    core = GossipConnection(hello_for(ib), device_id_for)
    assert after(Side.START, type(message)) is None
    with pytest.raises(LocalProtocolError, match=f"cannot send {type(message).__name__}"):
        core.send(message)
    assert core.state is State.ERROR


def test_every_side_state_can_abort_and_only_serving_continues_after_bye():
    for side in Side:
        assert (after(side, Abort) is Side.ABORTED) == (side is not Side.ABORTED)
    allowed_after_bye = {kind for (side, kind) in TRANSITIONS if side is Side.DONE}
    assert allowed_after_bye == {PacketStart, Chunk, PacketEnd, Cancel, Ping, Abort}
    proved = {side for (side, kind) in TRANSITIONS if kind is Ping}  # "still here": once proved
    assert proved == {Side.PROVED, Side.OFFERED, Side.DONE}
    assert {kind for (side, kind) in TRANSITIONS if side is Side.START} == {Hello, Abort}


def test_a_failed_send_errors_the_connection_and_every_later_call_says_so(ids):
    _, ib = ids
    core = core_for(ib)
    with pytest.raises(LocalProtocolError, match="Inventory"):
        core.send(Inventory(()))  # before the handshake
    assert core.state is State.ERROR
    for call in (
        lambda: core.send(Bye()),
        lambda: core.next_event(),
        lambda: core.receive_data(b"\x00"),
    ):
        with pytest.raises(LocalProtocolError, match="failed earlier: cannot send Inventory"):
            call()
    core.send(Abort("a bug on this side"))  # the peer may still be told, once
    with pytest.raises(LocalProtocolError):
        core.send(Abort("again"))


def test_a_failed_chunk_send_leaves_nothing_half_done(ids):
    core, ia = handshaken(ids)
    packet = make_packet(ia, "pumps")
    core.send(Inventory((packet.item(),)))
    feed_frames(core, Inventory(()), Want(packet.packet_id))
    core.send(PacketStart(packet.packet_id, packet.manifest, packet.signature))
    sent = core.bytes_sent
    with pytest.raises(LocalProtocolError, match="wrong length"):
        core.send(Chunk(packet.packet_id, 0, b"short"))
    assert core.bytes_sent == sent
    with pytest.raises(LocalProtocolError, match="failed earlier"):
        core.send(PacketEnd(packet.packet_id))


def test_a_failed_receive_errors_sends_too(ids):
    ia, ib = ids
    core = core_for(ib)
    with pytest.raises(ProtocolError, match="version 9"):
        feed_frames(core, hello_for(ia, version=9))
    with pytest.raises(ProtocolError, match="version 9"):
        core.receive_data(b"more")
    with pytest.raises(LocalProtocolError, match="version 9"):
        core.send(Proof(b"\x00" * 64))
    assert core.send(Abort("bad version"))


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([Proof(b"\x00" * 64)], "did not start with a Hello"),
        (["hello", "hello"], "second Hello"),
        (["hello", Bye()], "Bye before proving"),
        (["hello", Want("ab" * 32)], "Want before proving"),
    ],
)
def test_the_peer_out_of_order_gets_one_sentence_from_the_table(ids, messages, match):
    ia, ib = ids
    core = core_for(ib)
    hello = hello_for(ia, NONCE_A)
    with pytest.raises(ProtocolError, match=match):
        feed_frames(core, *(hello if m == "hello" else m for m in messages))
    assert core.state is State.ERROR


def test_bye_twice_and_want_after_bye_are_refused(ids):
    core, _ = handshaken(ids)
    core.send(Inventory(()))
    with pytest.raises(ProtocolError, match="second Bye"):
        feed_frames(core, Inventory(()), Bye(), Bye())
    core, _ = handshaken(ids)
    core.send(Inventory(()))
    with pytest.raises(ProtocolError, match="Want after saying Bye"):
        feed_frames(core, Inventory(()), Bye(), Want("ab" * 32))
