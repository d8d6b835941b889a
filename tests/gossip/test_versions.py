"""Protocol versions 1, 2 (compact inventory), 3 (Decline) and 4 (Ping) together, and
resume across peers."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from fieldkit.errors import ProtocolError
from fieldkit.gossip.framing import encode_frame
from fieldkit.gossip.messages import Decline, Inventory, InventoryItem, Ping
from fieldkit.gossip.pairing import mark_nonce, nonce_version
from fieldkit.gossip.protocol import PING_FRAME, only_pings
from fieldkit.gossip.reconcile import Reconciler
from fieldkit.gossip.states import LocalProtocolError
from fieldkit.testing.memory_link import Faults
from tests.gossip.helpers import FAST, sync_memory
from tests.gossip.pure import Peer, run_pair
from tests.gossip.test_protocol import (
    NONCE_A,
    NONCE_B,
    feed_frames,
    handshaken,
    make_packet,
)


def item(pid: str) -> InventoryItem:
    return InventoryItem(pid, "0" * 64, 1, "author", "base", "name")


def reconcile(mine: set[str], theirs: set[str]) -> tuple[Reconciler, Reconciler, int]:
    """Run the compact exchange between two inventories; return both sides and the bytes."""
    from fieldkit.gossip.framing import encode_frame
    from fieldkit.gossip.messages import Offer, Summary

    a = Reconciler([item(p) for p in mine], 5000)
    b = Reconciler([item(p) for p in theirs], 5000)
    to_b, to_a = [a.start()], [b.start()]
    size = 0
    while to_a or to_b:
        for queue, receiver, replies in ((to_b, b, to_a), (to_a, a, to_b)):
            while queue:
                message = queue.pop(0)
                size += len(encode_frame(message.to_wire()))
                if isinstance(message, Summary):
                    replies.extend(receiver.on_summary(message))
                else:
                    assert isinstance(message, Offer)
                    receiver.on_offer(message)
    assert a.done
    assert b.done
    return a, b, size


def random_ids(rng: random.Random, n: int) -> set[str]:
    return {rng.randbytes(32).hex() for _ in range(n)}


@pytest.mark.parametrize(
    ("shared", "only_a", "only_b"),
    [(0, 0, 0), (0, 5, 0), (0, 300, 200), (1000, 1, 0), (1000, 0, 1), (1000, 40, 3),
     (50, 17, 16), (2000, 100, 100), (3, 0, 900)],
)  # fmt: skip
@pytest.mark.parametrize("seed", [1, 2])
def test_compact_inventory_makes_the_same_decisions_as_the_full_list(shared, only_a, only_b, seed):
    rng = random.Random(seed)
    common = random_ids(rng, shared)
    mine, theirs = common | random_ids(rng, only_a), common | random_ids(rng, only_b)
    a, b, _ = reconcile(mine, theirs)
    # with the full list each side wants exactly what it lacks; compact must see all of it
    assert set(a.peer_items) - mine == theirs - mine
    assert set(b.peer_items) - theirs == mine - theirs
    assert set(a.peer_items) <= theirs
    assert set(b.peer_items) <= mine


def test_compact_inventory_of_a_thousand_shared_packets_is_a_few_hundred_bytes():
    rng = random.Random(3)
    common = random_ids(rng, 1000)
    _, _, size = reconcile(common | random_ids(rng, 1), common)
    full = 2 * 1000 * 140
    assert size < 2500, size  # both directions, all levels
    assert size < full / 100


def test_the_version_rides_in_the_nonce_and_defaults_to_one():
    assert nonce_version(b"\x07" * 32) == 1
    assert nonce_version(mark_nonce(b"\x07" * 32, 2)) == 2
    assert mark_nonce(b"\x07" * 32, 1) == b"\x07" * 32


@pytest.mark.parametrize(
    ("va", "vb", "spoken"),
    [
        (1, 1, 1),
        (1, 2, 1),
        (2, 1, 1),
        (2, 2, 2),
        (3, 1, 1),
        (2, 3, 2),
        (3, 3, 3),
        (4, 3, 3),
        (1, 4, 1),
        (4, 4, 4),
    ],  # fmt: skip
)
@pytest.mark.parametrize("piece", [None, 5])
def test_old_and_new_peers_sync_in_the_version_both_speak(ids, va, vb, spoken, piece):
    ia, ib = ids
    pa, pb = make_packet(ia, "pumps", 1), make_packet(ib, "solar", 2, scale=1)
    a = Peer(ia, NONCE_A, {pa.packet_id: pa}, version=va)
    b = Peer(ib, NONCE_B, {pb.packet_id: pb}, version=vb)
    run_pair(a, b, piece=piece)
    assert a.core.finished
    assert b.core.finished
    assert a.core.version == b.core.version == spoken
    assert set(a.chunks) == {pb.packet_id}
    assert set(b.chunks) == {pa.packet_id}
    assert len(b.chunks[pa.packet_id]) == len(pa.manifest["chunk_hashes"])


@pytest.mark.parametrize(
    ("va", "vb"), [(1, 2), (2, 1), (2, 2), (3, 1), (2, 3), (3, 3), (4, 2), (3, 4), (4, 4)]
)
async def test_sessions_of_old_and_new_devices_exchange_packets(make_device, make_packet, va, vb):
    a, b = make_device("a"), make_device("b")
    pa = make_packet(a.home, name="pumps")
    pb = make_packet(b.home, name="solar", seed=1)
    a.trust(b)
    b.trust(a)
    sa, sb = await sync_memory(
        a,
        b,
        options_a=replace(FAST, protocol_version=va),
        options_b=replace(FAST, protocol_version=vb),
    )
    assert sa.ok, sa.error
    assert sb.ok, sb.error
    assert sa.protocol_version == sb.protocol_version == min(va, vb)
    assert a.packet_ids() == b.packet_ids() == {pa.packet_id, pb.packet_id}


async def test_a_transfer_cut_by_one_peer_resumes_from_another(make_device, make_packet):
    a, b, c = make_device("a"), make_device("b"), make_device("c")
    packet = make_packet(a.home, name="pumps", size_scale=6)  # ~100 KB, 4 chunks
    raw = replace(FAST, compression_level=0)
    for device in (b, c):
        device.trust(a)
    c.trust(b)
    await sync_memory(a, b, options_a=raw)  # b holds it too now
    assert b.packet_ids() == {packet.packet_id}
    _, cut = await sync_memory(a, c, a_to_b=Faults(cut_after=60_000), options_a=raw)
    assert cut.error is not None
    assert c.packet_ids() == set()
    _, resumed = await sync_memory(b, c, options_a=raw)
    assert resumed.ok, resumed.error
    (report,) = [r for r in resumed.packets if r.direction == "received"]
    assert report.status == "ok"
    assert report.resumed_from >= 32 * 1024  # the chunks a sent were kept
    assert report.wire_bytes < packet.size - report.resumed_from + 20_000
    assert c.packet_ids() == {packet.packet_id}


@pytest.mark.parametrize("piece", [None, 7])
def test_in_version_3_a_receiver_declines_what_it_will_not_take_and_says_why(ids, piece):
    ia, ib = ids
    pa, pb = make_packet(ia, "pumps", 1), make_packet(ib, "solar", 2, scale=1)
    a = Peer(ia, NONCE_A, {pa.packet_id: pa}, version=3)
    b = Peer(ib, NONCE_B, {pb.packet_id: pb}, version=3, decline=True)
    run_pair(a, b, piece=piece)
    assert a.core.finished
    assert b.core.finished
    assert [(e.packet_id, e.reason) for e in a.events if isinstance(e, Decline)] == [
        (pa.packet_id, "untrusted")
    ]
    assert a.core.declined == {pa.packet_id}
    assert set(a.chunks) == {pb.packet_id}  # the other direction is untouched
    assert pa.packet_id not in b.chunks


def test_a_decline_is_refused_below_version_3_and_for_a_packet_never_offered(ids):
    ia, ib = ids
    pa = make_packet(ia, "pumps", 1)
    b = Peer(ib, NONCE_B, {}, version=2, decline=True)
    a = Peer(ia, NONCE_A, {pa.packet_id: pa}, version=3)
    with pytest.raises(LocalProtocolError, match="Decline before protocol version 3"):
        run_pair(a, b)  # version 2 is spoken: b may not send it

    core, _ = handshaken(ids)  # version 1, by hand: the peer sends one anyway
    core.send(Inventory(()))
    with pytest.raises(ProtocolError, match="Decline in protocol version 1"):
        feed_frames(core, Inventory(()), Decline("ab" * 32, "untrusted"))

    class Hostile(Peer):
        def react(self, event) -> None:  # noqa: ANN001
            if isinstance(event, Inventory):  # past its own checks, straight onto the wire
                self.out += encode_frame(Decline("ab" * 32, "untrusted").to_wire())
            super().react(event)

    a = Peer(ia, NONCE_A, {pa.packet_id: pa}, version=3)
    with pytest.raises(ProtocolError, match="declined a packet that was not offered"):
        run_pair(a, Hostile(ib, NONCE_B, {}, version=3))


def test_in_version_4_either_side_may_say_it_is_still_there_once_proved(ids):
    """Ping: after a side's proof, as often as it likes, in any order with the rest; no
    event a session must act on, and below version 4 refused both ways."""
    ia, ib = ids
    pa = make_packet(ia, "pumps", 1)

    class Chatty(Peer):
        def react(self, event) -> None:  # noqa: ANN001
            super().react(event)
            if self.core.may_ping:
                self.send(Ping())

    a = Chatty(ia, NONCE_A, {pa.packet_id: pa}, version=4)
    b = Peer(ib, NONCE_B, {}, version=4)
    run_pair(a, b, piece=7)
    assert b.core.finished
    assert set(b.chunks) == {pa.packet_id}
    assert sum(isinstance(e, Ping) for e in b.events) > 3
    assert not a.core.may_ping  # both said Bye: nothing more to say
    assert only_pings(PING_FRAME * 3)
    assert not only_pings(b"")
    assert not only_pings(PING_FRAME + encode_frame(Inventory(()).to_wire()))
    assert not only_pings(PING_FRAME[:3] + b"\x00" * 3)  # a Ping's length, not a Ping
    assert not only_pings(PING_FRAME * 1000)  # a read that long is taken as progress

    core, _ = handshaken(ids)  # version 1: neither side may
    with pytest.raises(ProtocolError, match="Ping in protocol version 1"):
        feed_frames(core, Ping())
    core, _ = handshaken(ids)
    assert not core.may_ping
    with pytest.raises(LocalProtocolError, match="Ping before protocol version 4"):
        core.send(Ping())
