"""Full sessions between two real libraries over the in-memory link."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import replace

import pytest

from fieldkit.gossip.chunks import Codec
from fieldkit.gossip.framing import FrameDecoder
from fieldkit.gossip.messages import DECLINE_REASONS, DECLINED_BECAUSE, Chunk
from fieldkit.gossip.parts import held_chunks
from fieldkit.gossip.session import run_session
from fieldkit.gossip.summary import SyncOptions
from fieldkit.store.packet import packet_id
from fieldkit.testing.memory_link import Faults, memory_pair
from tests.fixtures.packets import TEST_BASE_FINGERPRINT
from tests.gossip.helpers import FAST, sync_memory, sync_memory_link


async def test_two_way_sync_between_trusting_devices(make_device, make_packet):
    a, b = make_device("a"), make_device("b")
    pa = make_packet(a.home, name="pumps", size_scale=4)
    pb = make_packet(b.home, name="solar", seed=1)
    a.trust(b)
    b.trust(a)
    sa, sb = await sync_memory(a, b)
    assert sa.ok, sa
    assert sb.ok, sb
    assert a.packet_ids() == b.packet_ids() == {pa.packet_id, pb.packet_id}
    assert sa.count("sent", "ok") == 1
    assert sa.count("received", "ok") == 1
    got = b.library.find(pa.packet_id)
    assert got.source == a.device_id
    assert got.verified
    assert b.library.read_weights(got) == a.library.read_weights(pa)
    assert list(b.home.parts_dir.iterdir()) == []
    assert sa.sas == sb.sas
    assert len(sa.sas) == 6


async def test_untrusted_peer_under_trusted_only_gets_nothing_accepted(make_device, make_packet):
    a, b = make_device("a"), make_device("b")
    make_packet(a.home, name="pumps")
    sa, sb = await sync_memory(a, b)
    assert sa.ok
    assert sb.ok
    assert b.packet_ids() == set()
    (report,) = sb.packets
    assert report.status == "refused"
    assert "trusted-only" in report.reason
    assert sb.peer_trust == "pending"
    assert b.library.get_peer(a.device_id).public_key == a.identity.public_key


async def test_open_policy_accepts_a_pending_peer(make_device, make_packet):
    a, b = make_device("a"), make_device("b")
    pa = make_packet(a.home, name="pumps")
    fast = SyncOptions(handshake_timeout=5, idle_timeout=2)
    opened = SyncOptions(policy="open", handshake_timeout=5, idle_timeout=2)
    await sync_memory(a, b, options_a=fast, options_b=opened)
    assert b.packet_ids() == {pa.packet_id}


async def test_multi_hop_keeps_the_author_signature(make_device, make_packet):
    a, b, c = make_device("a"), make_device("b"), make_device("c")
    pa = make_packet(a.home, name="pumps", size_scale=2)
    b.trust(a)
    c.trust(b)
    await sync_memory(a, b)
    _, sc = await sync_memory(b, c)
    assert sc.ok
    got = c.library.find(pa.packet_id)
    assert got.author_id == a.device_id
    assert got.source == b.device_id
    assert got.signature == pa.signature
    assert c.library.get_peer(a.device_id) is None  # C never met A, yet verified A's signature


async def test_blocked_peer_is_refused_and_nothing_moves(make_device, make_packet):
    a, b = make_device("a"), make_device("b")
    make_packet(a.home, name="pumps")
    b.library.set_trust(a.device_id, "blocked")
    sa, sb = await sync_memory(a, b)
    assert "blocked" in sb.error
    assert "refuses" in sa.error
    assert b.packet_ids() == set()


async def test_a_changed_key_for_a_known_id_is_refused_loudly(make_device, make_packet):
    a, b = make_device("a"), make_device("b")
    make_packet(a.home, name="pumps")
    b.trust(a)
    b.library.db["peers"].update(a.device_id, {"public_key": "11" * 32})
    _, sb = await sync_memory(a, b)
    assert "different key" in sb.error
    assert b.packet_ids() == set()
    assert any(e["kind"] == "peer_key_changed" for e in b.library.events())


async def test_foreign_base_is_refused_from_the_inventory(make_device, make_packet):
    a, b = make_device("a"), make_device("b")
    make_packet(a.home, name="pumps", base_fingerprint="f" * 64)
    b.trust(a)
    mine = SyncOptions(base_fingerprint=TEST_BASE_FINGERPRINT, idle_timeout=2)
    _, sb = await sync_memory(a, b, options_b=mine)
    (report,) = sb.packets
    assert report.status == "refused"
    assert "another base model" in report.reason
    assert b.packet_ids() == set()


async def test_tampered_chunk_ends_the_session_and_the_library_is_untouched(
    make_device, make_packet
):
    a, b = make_device("a"), make_device("b")
    pa = make_packet(a.home, name="pumps", size_scale=4)
    b.trust(a)
    blob = a.library.weights_path(pa)
    data = bytearray(blob.read_bytes())
    data[40_000] ^= 0x55  # inside the second 32 KiB chunk
    blob.write_bytes(bytes(data))
    _, sb = await sync_memory(a, b)
    assert "does not match its signed hash" in sb.error
    assert b.packet_ids() == set()
    held, _ = held_chunks(b.library, pa.packet_id)
    assert held == {0}  # the good chunk before it is kept for a resume


async def test_tampered_manifest_does_not_match_its_id(make_device, make_packet):
    a, b = make_device("a"), make_device("b")
    pa = make_packet(a.home, name="pumps")
    b.trust(a)
    manifest = dict(pa.manifest, description="Now with extra claims.")
    a.library.db["packets"].update(pa.packet_id, {"manifest": json.dumps(manifest)})
    _, sb = await sync_memory(a, b)
    assert "does not match its id" in sb.error
    assert b.packet_ids() == set()


async def test_manifest_with_a_bad_signature_is_refused(make_device, make_packet):
    a, b = make_device("a"), make_device("b")
    pa = make_packet(a.home, name="pumps")
    make_packet(a.home, name="solar", seed=3)
    b.trust(a)
    manifest = dict(pa.manifest, description="Now with extra claims.")
    a.library.db["packets"].update(
        pa.packet_id, {"manifest": json.dumps(manifest), "packet_id": packet_id(manifest)}
    )
    sa, sb = await sync_memory(a, b)
    assert sb.ok
    refused = {p.name: p for p in sb.packets if p.status == "refused"}
    assert "does not verify" in refused["pumps"].reason
    assert b.packet_ids() == {r.packet_id for r in b.library.list_packets()}
    assert [r.name for r in b.library.list_packets()] == ["solar"]
    assert list(b.home.parts_dir.iterdir()) == []


async def test_manifest_lying_about_its_base_is_refused(make_device, make_packet):
    a, b = make_device("a"), make_device("b")
    pa = make_packet(a.home, name="pumps", base_fingerprint="e" * 64)
    b.trust(a)
    # the inventory claims our base; the signed manifest says otherwise
    a.library.db["packets"].update(pa.packet_id, {"base_fingerprint": TEST_BASE_FINGERPRINT})
    mine = SyncOptions(base_fingerprint=TEST_BASE_FINGERPRINT, idle_timeout=2)
    _, sb = await sync_memory(a, b, options_b=mine)
    (report,) = sb.packets
    assert report.status == "refused"
    assert "another base model" in report.reason
    assert b.packet_ids() == set()


async def test_a_stalled_link_times_out(make_device, make_packet):
    a, b = make_device("a"), make_device("b")
    make_packet(a.home, name="pumps", size_scale=4)
    b.trust(a)
    quick = SyncOptions(handshake_timeout=2, idle_timeout=0.3)
    sa, sb = await sync_memory(
        a, b, a_to_b=Faults(stall_after=5000), options_a=quick, options_b=quick
    )
    assert "sent nothing for 0.3 seconds" in sb.error
    assert b.packet_ids() == set()


async def test_a_corrupted_byte_on_the_link_never_puts_a_bad_packet_in_the_library(
    make_device, make_packet
):
    a, b, probe = make_device("a"), make_device("b"), make_device("probe")
    make_packet(a.home, name="pumps", size_scale=4)
    b.trust(a)
    probe.trust(a)
    _, _, clean = await sync_memory_link(a, probe)
    total = len(clean.delivered)
    quick = SyncOptions(handshake_timeout=1, idle_timeout=0.2)
    errors = 0
    offsets = range(3, total, total // 40)
    for offset in offsets:
        _, sb = await sync_memory(
            a, b, a_to_b=Faults(corrupt_at=offset), options_a=quick, options_b=quick
        )
        errors += sb.error is not None
        # a flip in an informational field (a name in the inventory) may pass unnoticed, but
        # whatever reaches the library verifies
        for record in b.library.list_packets():
            assert b.library.verify(record.packet_id)[1] is None
            b.library.remove(record.packet_id)
        for row in list(b.library.db["transfers"].rows):  # start every run from scratch
            b.library.clear_transfer(row["packet_id"])
            b.library.part_path(row["packet_id"]).unlink()
    assert errors >= len(offsets) - 3


def delivered_chunks(stream_bytes: bytes, pid: str) -> tuple[set[int], int]:
    """Return (indices of complete CHUNK frames of `pid`, bytes of the cut frame at the end)."""
    frames = FrameDecoder()
    frames.feed(stream_bytes)
    indices = set()
    while (frame := frames.next_message()) is not None:
        message, _ = frame
        if message[0] == Chunk.code and message[1] == pid:
            indices.add(message[2])
    return indices, frames.buffered


async def test_cut_at_many_offsets_resumes_and_resends_at_most_the_chunk_in_flight(
    make_device, make_packet
):
    a = make_device("a")
    pa = make_packet(a.home, name="pumps", size_scale=6)  # ~100 KB, 4 chunks of 32 KiB
    count = len(pa.manifest["chunk_hashes"])
    chunk = pa.manifest["chunk_size"]
    # uncompressed chunks: the wire has the same length every run (compression is chosen by
    # timing), so every offset below the probe's total cuts the session
    raw = replace(FAST, compression_level=0)
    probe = make_device("probe")
    probe.trust(a)
    _, _, full = await sync_memory_link(a, probe, options_a=raw)
    total = len(full.delivered)
    rng = random.Random(5)
    offsets = sorted(rng.randrange(1, total) for _ in range(100))
    partial_resumes = 0
    b = make_device("b")
    b.trust(a)
    for offset in offsets:
        _, first, link1 = await sync_memory_link(
            a, b, a_to_b=Faults(cut_after=offset), options_a=raw
        )
        assert first.error is not None, offset
        assert b.packet_ids() == set()
        arrived, partial = delivered_chunks(link1.delivered, pa.packet_id)
        assert partial <= chunk + 200  # only the frame in flight was cut
        held, _ = held_chunks(b.library, pa.packet_id)
        assert held == arrived, offset  # every chunk that fully arrived was kept
        _, second, link2 = await sync_memory_link(a, b, options_a=raw)
        assert second.ok, (offset, second.error)
        assert b.packet_ids() == {pa.packet_id}
        resent, _ = delivered_chunks(link2.delivered, pa.packet_id)
        assert resent == set(range(count)) - arrived  # nothing that arrived is sent again
        (report,) = second.packets
        assert report.resumed_from == sum(min(chunk, pa.size - i * chunk) for i in held)
        assert list(b.home.parts_dir.iterdir()) == []
        partial_resumes += 0 < len(held) < count
        b.library.remove(pa.packet_id)  # the next cut starts from nothing again
    assert partial_resumes >= 50  # most cuts land inside the chunk stream


async def test_a_cancel_that_lands_as_bytes_arrive_ends_the_session(make_device, make_packet):
    a, b = make_device("a"), make_device("b")
    pa = make_packet(a.home, name="pumps", size_scale=6)  # ~100 KB, 4 chunks
    b.trust(a)
    link_a, link_b = memory_pair()
    chunks_in = []
    receive = link_b.receive

    async def receive_then_cancel() -> bytes:
        data = await receive()
        if len(chunks_in) >= 2 and not receiving.cancelling():
            receiving.cancel()  # a person cancels just as these bytes arrive
        return data

    link_b.receive = receive_then_cancel
    sending = asyncio.create_task(run_session(link_a, a.identity, a.library, FAST))
    receiving = asyncio.create_task(
        run_session(
            link_b, b.identity, b.library, FAST, progress=lambda u: chunks_in.append(u.done)
        )
    )
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(receiving), 10)
    first_a = await asyncio.wait_for(sending, 10)
    assert first_a.error  # the link went with the cancelled session
    assert b.packet_ids() == set()
    held, _ = held_chunks(b.library, pa.packet_id)
    assert 0 < len(held) < len(pa.manifest["chunk_hashes"])


async def test_ask_policy_asks_a_person_and_then_trusts_the_peer(make_device, make_packet):
    a, b = make_device("a"), make_device("b")
    pa = make_packet(a.home, name="pumps")
    b.library.set_setting("receive_policy", "ask")
    asked = []

    async def confirm(peer_id: str, name: str, sas: str) -> bool:
        asked.append((peer_id, sas))
        await asyncio.sleep(1.2)  # a person reading the code takes longer than the handshake
        return True

    link_a, link_b = memory_pair()
    patient = SyncOptions(handshake_timeout=1, idle_timeout=5)
    sa, sb = await asyncio.gather(
        run_session(link_a, a.identity, a.library, patient),
        run_session(link_b, b.identity, b.library, patient, confirm=confirm),
    )
    assert sb.ok, sb.error
    assert asked == [(a.device_id, sb.sas)]
    assert sa.sas == sb.sas
    assert b.packet_ids() == {pa.packet_id}
    assert b.library.get_peer(a.device_id).trust == "trusted"


async def test_ask_policy_without_a_person_acts_as_trusted_only(make_device, make_packet):
    a, b = make_device("a"), make_device("b")
    pa = make_packet(a.home, name="pumps")
    b.library.set_setting("receive_policy", "ask")
    _, sb = await sync_memory(a, b)
    assert "receive policy is ask" in sb.packets[0].reason
    assert b.packet_ids() == set()
    pending_ok = SyncOptions(accept_pending=True, idle_timeout=2)
    await sync_memory(a, b, options_b=pending_ok)
    assert b.packet_ids() == {pa.packet_id}
    assert b.library.get_peer(a.device_id).trust == "pending"


async def test_same_name_by_another_author_is_not_transferred(make_device, make_packet):
    a, b = make_device("a"), make_device("b")
    make_packet(a.home, name="pumps")
    mine = make_packet(b.home, name="pumps", seed=9)
    b.trust(a)
    sa, sb = await sync_memory(a, b)
    (report,) = [p for p in sb.packets if p.direction == "received"]
    assert report.status == "refused"
    assert "by another author" in report.reason
    (told,) = [p for p in sa.packets if p.direction == "sent"]  # version 3: a learns why
    assert (told.status, told.reason) == ("refused", DECLINED_BECAUSE["name-taken"])
    assert report.wire_bytes == 0
    assert b.packet_ids() == {mine.packet_id}


async def test_progress_reports_each_chunk_up_to_the_packet_size(make_device, make_packet):
    a, b = make_device("a"), make_device("b")
    pa = make_packet(a.home, name="pumps", size_scale=4)
    b.trust(a)
    seen: dict[str, list[int]] = {"sent": [], "received": []}
    link_a, link_b = memory_pair()
    await asyncio.gather(
        run_session(
            link_a, a.identity, a.library, FAST, progress=lambda u: seen[u.direction].append(u.done)
        ),
        run_session(
            link_b, b.identity, b.library, FAST, progress=lambda u: seen[u.direction].append(u.done)
        ),
    )
    chunks = len(pa.manifest["chunk_hashes"])
    assert seen["sent"] == sorted(seen["sent"])
    assert len(seen["sent"]) == chunks + 1
    assert seen["sent"][0] == 0  # the start, before any chunk: nothing was resumed
    assert seen["sent"][-1] == pa.size
    assert seen["received"][0] == 0  # the start, before any chunk
    assert seen["received"][-1] == pa.size


async def test_two_peers_offering_the_same_packet_at_once_deliver_it_once(make_device, make_packet):
    a1, a2, b = make_device("a1"), make_device("a2"), make_device("b")
    pa = make_packet(a1.home, name="pumps", size_scale=4)
    a2.trust(a1)
    await sync_memory(a1, a2)
    b.trust(a1)
    b.trust(a2)
    claims: set[str] = set()
    one_a, one_b = memory_pair()
    two_a, two_b = memory_pair()
    _, got1, _, got2 = await asyncio.gather(
        run_session(one_a, a1.identity, a1.library, FAST),
        run_session(one_b, b.identity, b.library, FAST, claims=claims),
        run_session(two_a, a2.identity, a2.library, FAST),
        run_session(two_b, b.identity, b.library, FAST, claims=claims),
    )
    statuses = sorted(p.status for p in (*got1.packets, *got2.packets))
    assert statuses == ["ok", "refused"]
    refused = next(p for p in (*got1.packets, *got2.packets) if p.status == "refused")
    assert "another peer" in refused.reason
    assert b.packet_ids() == {pa.packet_id}
    assert claims == set()


ONE_BYTE = Faults(piece=1)


async def test_whole_sessions_with_every_byte_delivered_alone(make_device, make_packet):
    a, b, c = make_device("a"), make_device("b"), make_device("c")
    pa = make_packet(a.home, name="pumps")
    pb = make_packet(b.home, name="solar", seed=1)
    make_packet(c.home, name="water", seed=2)
    a.trust(b)
    b.trust(a)
    sa, sb = await sync_memory(a, b, a_to_b=ONE_BYTE, b_to_a=ONE_BYTE)
    assert sa.ok, sa.error
    assert sb.ok, sb.error
    assert a.packet_ids() == b.packet_ids() == {pa.packet_id, pb.packet_id}
    # untrusted: offered, refused, one byte at a time
    _, sc = await sync_memory(a, c, a_to_b=ONE_BYTE, b_to_a=ONE_BYTE)
    assert sc.ok
    assert {p.status for p in sc.packets} == {"refused"}
    assert len(c.packet_ids()) == 1


async def test_resume_and_tampering_with_every_byte_delivered_alone(make_device, make_packet):
    a, b = make_device("a"), make_device("b")
    pa = make_packet(a.home, name="pumps", size_scale=3)  # 2 chunks, about 46 KB on the wire
    b.trust(a)
    _, first, link = await sync_memory_link(a, b, a_to_b=Faults(cut_after=40_000, piece=1))
    assert first.error is not None
    held, _ = held_chunks(b.library, pa.packet_id)
    assert held == delivered_chunks(link.delivered, pa.packet_id)[0] == {0}
    _, second = await sync_memory(a, b, a_to_b=ONE_BYTE, b_to_a=ONE_BYTE)
    assert second.ok, second.error
    assert second.packets[0].resumed_from == pa.manifest["chunk_size"]
    t, d = make_device("t"), make_device("d")
    small = make_packet(t.home, name="tiny")  # one 16 KB chunk
    d.trust(t)
    blob = t.library.weights_path(small)
    data = bytearray(blob.read_bytes())
    data[200] ^= 1
    blob.write_bytes(bytes(data))
    _, tampered = await sync_memory(t, d, a_to_b=ONE_BYTE, b_to_a=ONE_BYTE)
    assert "does not match its signed hash" in tampered.error
    assert d.packet_ids() == set()


def chunk_codecs(stream_bytes: bytes, pid: str) -> list[int]:
    """Return the codec of every complete CHUNK frame of `pid`, in order."""
    frames = FrameDecoder()
    frames.feed(stream_bytes)
    codecs = []
    while (frame := frames.next_message()) is not None:
        message, _ = frame
        if message[0] == Chunk.code and message[1] == pid:
            codecs.append(message[3])
    return codecs


async def test_a_slow_link_carries_compressed_chunks(make_device, make_packet):
    a, b = make_device("a"), make_device("b")
    pa = make_packet(a.home, name="pumps", size_scale=4)
    b.trust(a)
    sa, sb, link = await sync_memory_link(a, b, a_to_b=Faults(rate=2e6))
    assert sa.ok, sa.error
    assert sb.ok, sb.error
    codecs = chunk_codecs(link.delivered, pa.packet_id)
    assert len(codecs) == len(pa.manifest["chunk_hashes"])
    assert all(codec == Codec.ZSTD_SHUFFLE2 for codec in codecs), codecs
    (sent,) = sa.packets
    assert sent.wire_bytes < pa.size
    assert b.library.read_weights(b.library.find(pa.packet_id)) == a.library.read_weights(pa)


async def test_the_sender_learns_why_its_packets_were_declined_from_a_version_3_peer(
    make_device, make_packet
):
    a, b = make_device("a"), make_device("b")
    pa = make_packet(a.home, name="pumps")
    sa, sb = await sync_memory(a, b)  # b does not trust a
    (told,) = sa.packets
    assert (told.direction, told.status, told.name) == ("sent", "refused", "pumps")
    assert told.reason == DECLINED_BECAUSE["untrusted"]
    assert set(DECLINED_BECAUSE) == set(DECLINE_REASONS)  # every word has its sentence
    assert (sa.declined, sa.refused, sb.refused) == (1, 0, 1)
    assert sa.to_dict()["declined"] == 1
    assert sa.ok  # a refusal is no failure
    old = replace(FAST, protocol_version=2)  # a peer of version 2 says nothing
    sa, _ = await sync_memory(a, b, options_b=old)
    assert sa.packets == []
    assert b.packet_ids() == set()
    b.trust(a)
    sa, _ = await sync_memory(a, b)
    assert [(p.direction, p.status) for p in sa.packets] == [("sent", "ok")]
    assert b.packet_ids() == {pa.packet_id}


async def test_a_relayed_packet_of_a_blocked_author_is_declined_before_it_is_sent(
    make_device, make_packet
):
    author, relay, me = make_device("author"), make_device("relay"), make_device("me")
    packet = make_packet(author.home, name="pumps")
    relay.trust(author)
    await sync_memory(author, relay)
    assert relay.packet_ids() == {packet.packet_id}
    me.trust(relay)
    me.library.set_trust(author.device_id, "blocked")
    sr, sm = await sync_memory(relay, me)
    (told,) = [p for p in sr.packets if p.direction == "sent"]
    assert (told.status, told.reason) == ("refused", DECLINED_BECAUSE["blocked"])
    (refused,) = sm.packets
    assert "blocked author" in refused.reason
    assert refused.wire_bytes == 0  # not one chunk crossed the link
    assert me.packet_ids() == set()
