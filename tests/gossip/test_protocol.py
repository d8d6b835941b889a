"""The sans-IO core alone: scenarios replayed whole and one byte at a time, misuse, limits."""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgpack
import pytest
import zstandard

from fieldkit.errors import ProtocolError
from fieldkit.gossip.framing import HEADER, encode_frame
from fieldkit.gossip.messages import (
    Bye,
    Chunk,
    Hello,
    Inventory,
    InventoryItem,
    PacketStart,
    Proof,
    Want,
)
from fieldkit.gossip.protocol import (
    NEED_DATA,
    Closed,
    GossipConnection,
    LocalProtocolError,
    PeerVerified,
    State,
)
from fieldkit.home import Home
from fieldkit.store.identity import Identity, device_id_for
from fieldkit.store.packet import build_manifest, packet_id
from tests.fixtures.packets import TEST_BASE_FINGERPRINT, exemplars_for, random_adapter
from tests.gossip.pure import Packet, Peer, run_pair

NONCE_A, NONCE_B = b"\x01" * 32, b"\x02" * 32


def make_identity(tmp_path: Path, label: str) -> Identity:
    return Identity.load_or_create(Home(tmp_path / label))


def make_packet(identity: Identity, name: str, seed: int = 0, scale: int = 4) -> Packet:
    manifest, signature, data = build_manifest(
        random_adapter(seed=seed, size_scale=scale),
        identity,
        name=name,
        domain=name,
        description="",
        exemplars=exemplars_for(name),
        base_model_id="test",
        base_fingerprint=TEST_BASE_FINGERPRINT,
        chunk_size=4096,
        created=1,
    )
    return Packet(manifest, signature, data, packet_id(manifest))


def scenario(ids: tuple[Identity, Identity], name: str) -> tuple[Peer, Peer]:
    """Return two fresh peers set up for the named scenario (deterministic)."""
    ia, ib = ids
    pa, pb = make_packet(ia, "pumps", 1), make_packet(ib, "solar", 2, scale=1)
    if name == "two-way":
        return Peer(ia, NONCE_A, {pa.packet_id: pa}), Peer(ib, NONCE_B, {pb.packet_id: pb})
    if name == "resume":
        have = {pa.packet_id: {0, 2, 3, 7}}
        return Peer(ia, NONCE_A, {pa.packet_id: pa}), Peer(ib, NONCE_B, {}, have=have)
    if name == "cancel":
        return Peer(ia, NONCE_A, {pa.packet_id: pa}), Peer(ib, NONCE_B, {}, cancel_on_start=True)
    if name == "nothing":
        return Peer(ia, NONCE_A, {}), Peer(ib, NONCE_B, {})
    raise AssertionError(name)


SCENARIOS = ["two-way", "resume", "cancel", "nothing"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_completes_and_both_sides_finish(ids, name):
    a, b = scenario(ids, name)
    run_pair(a, b)
    assert a.core.finished
    assert b.core.finished
    assert isinstance(a.events[1], PeerVerified)
    assert a.events[1].sas == b.events[1].sas
    for receiver, sender in ((a, b), (b, a)):
        for pid, chunks in receiver.chunks.items():
            packet = sender.packets[pid]
            size = packet.manifest["chunk_size"]
            for i, data in chunks.items():
                assert data == packet.data[i * size : (i + 1) * size]


def test_two_way_delivers_every_chunk(ids):
    a, b = scenario(ids, "two-way")
    run_pair(a, b)
    (pa,) = a.packets.values()
    assert len(b.chunks[pa.packet_id]) == len(pa.manifest["chunk_hashes"])


def test_resume_sends_only_the_missing_chunks(ids):
    a, b = scenario(ids, "resume")
    run_pair(a, b)
    (pa,) = a.packets.values()
    count = len(pa.manifest["chunk_hashes"])
    assert set(b.chunks[pa.packet_id]) == set(range(count)) - {0, 2, 3, 7}


def test_cancelled_packet_delivers_no_chunks(ids):
    a, b = scenario(ids, "cancel")
    run_pair(a, b)
    assert b.chunks == {}


@pytest.mark.parametrize("name", SCENARIOS)
@pytest.mark.parametrize("piece", [1, 7, 4099])
def test_scenario_replayed_in_pieces_gives_the_same_events(ids, name, piece):
    whole = scenario(ids, name)
    run_pair(*whole)
    split = scenario(ids, name)
    run_pair(*split, piece=piece)
    for w, s in zip(whole, split, strict=True):
        assert s.events == w.events
        assert s.chunks == w.chunks
        assert s.core.bytes_received == w.core.bytes_received


def hello_for(identity: Identity, nonce: bytes = NONCE_A, **changes) -> Hello:
    fields = {
        "version": 1,
        "device_id": identity.device_id,
        "name": identity.name,
        "public_key": identity.public_key,
        "nonce": nonce,
        "max_chunk": 1 << 20,
    }
    fields.update(changes)
    return Hello(**fields)


def core_for(identity: Identity, nonce: bytes = NONCE_B) -> GossipConnection:
    core = GossipConnection(hello_for(identity, nonce), device_id_for)
    core.send(core.our_hello)
    return core


def feed_frames(core: GossipConnection, *messages) -> list:
    for m in messages:
        core.receive_data(m if isinstance(m, bytes) else encode_frame(m.to_wire()))
    events = []
    while (event := core.next_event()) is not NEED_DATA:
        events.append(event)
        if isinstance(event, Closed):
            break
    return events


def test_wrong_version_is_refused_with_a_clear_reason(ids):
    ia, ib = ids
    with pytest.raises(ProtocolError, match="version 9"):
        feed_frames(core_for(ib), hello_for(ia, version=9))


def test_device_id_must_match_the_key(ids):
    ia, ib = ids
    with pytest.raises(ProtocolError, match="does not match its public key"):
        feed_frames(core_for(ib), hello_for(ia, device_id=ib.device_id))


def test_a_name_with_control_characters_is_refused(ids):
    # a peer's name and its packets' names are printed by `peers`, `sync` and the TUI
    ia, ib = ids
    with pytest.raises(ProtocolError, match="Hello message with a bad field 3"):
        feed_frames(core_for(ib), hello_for(ia, name="mallory\x1b]0;pwned\x07"))
    core, _ = handshaken(ids)
    item = [f"{1:064x}", "0" * 64, 1, "x", "y", "pumps\x1b[2J"]
    with pytest.raises(ProtocolError, match="inventory"):
        feed_frames(core, encode_frame([3, [item]]))


def test_a_proof_signed_for_another_session_is_refused(ids):
    ia, ib = ids
    core = core_for(ib)
    stale = ia.sign(b"fieldkit-gossip/1 proof\x00" + b"\x09" * 32 + NONCE_A)
    with pytest.raises(ProtocolError, match="prove"):
        feed_frames(core, hello_for(ia), Proof(stale))
    # a broken connection keeps failing, with the same reason
    with pytest.raises(ProtocolError, match="prove"):
        core.next_event()
    assert core.state is State.ERROR


def test_messages_before_the_handshake_are_refused(ids):
    ia, ib = ids
    with pytest.raises(ProtocolError, match="Hello"):
        feed_frames(core_for(ib), Bye())
    with pytest.raises(ProtocolError, match="before proving"):
        feed_frames(core_for(ib), hello_for(ia), Inventory(()))


def test_oversized_frame_header_is_refused_before_its_body(ids):
    _, ib = ids
    with pytest.raises(ProtocolError, match="limit"):
        feed_frames(core_for(ib), HEADER.pack(50_000_000))


def test_frame_that_is_not_msgpack_is_a_protocol_error(ids):
    _, ib = ids
    with pytest.raises(ProtocolError, match="msgpack"):
        feed_frames(core_for(ib), HEADER.pack(3) + b"\xc1\xc1\xc1")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (msgpack.packb([9]) + b"\x00", "bytes after"),  # a whole message, then a stray byte
        (msgpack.packb([10, "why"])[:-1], "ends inside"),  # truncated inside a string
        (b"\x92\x06\xc6\xff\xff\xff\xff", "ends inside"),  # a bin claiming 4 GiB
        (b"\x91" * 5000, "msgpack"),  # nesting deeper than msgpack allows
    ],
)
def test_malformed_frame_bodies_are_protocol_errors(ids, body, match):
    _, ib = ids
    with pytest.raises(ProtocolError, match=match):
        feed_frames(core_for(ib), HEADER.pack(len(body)) + body)


def handshaken(ids) -> tuple[GossipConnection, Identity]:
    """Return b's core after a full handshake with a (a's messages fed by hand)."""
    ia, ib = ids
    core = core_for(ib)
    feed_frames(core, hello_for(ia))
    from fieldkit.gossip.pairing import proof_payload

    core.send(Proof(ib.sign(proof_payload(ib.public_key, NONCE_B, ia.public_key, NONCE_A))))
    proof = ia.sign(proof_payload(ia.public_key, NONCE_A, ib.public_key, NONCE_B))
    (event,) = feed_frames(core, Proof(proof))
    assert isinstance(event, PeerVerified)
    assert core.state is State.OPEN
    return core, ia


def test_inventory_longer_than_the_limit_is_refused(ids):
    core, ia = handshaken(ids)
    items = [[f"{i:064x}", "0" * 64, 1, "x", "y", "z"] for i in range(5_001)]
    with pytest.raises(ProtocolError, match="limit is 5000"):
        feed_frames(core, encode_frame([3, items]))


def receiving_pumps(ids) -> tuple[GossipConnection, Packet]:
    """Return a core that wanted the peer's packet "pumps" and got its PacketStart."""
    core, ia = handshaken(ids)
    packet = make_packet(ia, "pumps")
    item = InventoryItem(
        packet.packet_id,
        packet.manifest["weights_sha256"],
        packet.manifest["weights_size"],
        ia.device_id,
        "b" * 64,
        "pumps",
    )
    core.send(Inventory(()))
    feed_frames(core, Inventory((item,)))
    core.send(Want(packet.packet_id))
    feed_frames(core, PacketStart(packet.packet_id, packet.manifest, packet.signature))
    return core, packet


def test_zstd_bomb_stops_at_the_expected_chunk_size(ids):
    core, packet = receiving_pumps(ids)
    bomb = zstandard.ZstdCompressor().compress(b"\0" * 50_000_000)
    with pytest.raises(ProtocolError, match="bytes where 4096"):
        feed_frames(core, encode_frame([6, packet.packet_id, 0, 1, bomb]))


def test_a_chunk_that_does_not_match_its_signed_hash_is_refused(ids):
    core, packet = receiving_pumps(ids)
    bad = bytearray(packet.data[:4096])
    bad[100] ^= 1
    with pytest.raises(ProtocolError, match="does not match its signed hash"):
        feed_frames(core, encode_frame([6, packet.packet_id, 0, 0, bytes(bad)]))
    assert hashlib.sha256(packet.data[:4096]).hexdigest() == packet.manifest["chunk_hashes"][0]


def test_asking_for_a_packet_that_was_not_offered_is_refused(ids):
    core, _ = handshaken(ids)
    core.send(Inventory(()))
    with pytest.raises(ProtocolError, match="before its inventory"):
        feed_frames(core, Want("ab" * 32))
    core, _ = handshaken(ids)
    core.send(Inventory(()))
    with pytest.raises(ProtocolError, match="not offered"):
        feed_frames(core, Inventory(()), Want("ab" * 32))


def test_local_misuse_raises_local_protocol_error(ids):
    _, ib = ids
    core = core_for(ib)
    with pytest.raises(LocalProtocolError):
        core.send(Inventory(()))
    with pytest.raises(LocalProtocolError):
        core.send(Chunk("ab" * 32, 0, b"x"))
    with pytest.raises(LocalProtocolError):
        core.send(core.our_hello)


def test_end_of_stream_midway_is_an_unclean_close(ids):
    ia, ib = ids
    core = core_for(ib)
    core.receive_data(encode_frame(hello_for(ia).to_wire())[:-3])
    core.receive_data(b"")
    assert core.next_event() == Closed(clean=False)


def test_unknown_message_type_is_refused(ids):
    _, ib = ids
    with pytest.raises(ProtocolError, match="unknown message type 99[.]"):
        feed_frames(core_for(ib), encode_frame([99, 1]))
    with pytest.raises(ProtocolError) as caught:  # a peer's huge value is not all said
        feed_frames(core_for(ib), encode_frame(["x" * 500_000]))
    assert str(caught.value) == f"The peer sent an unknown message type '{'x' * 36}...."
    with pytest.raises(ProtocolError, match="not a message"):
        feed_frames(core_for(ib), HEADER.pack(1) + msgpack.packb(3))
