"""Packet notes travel inside the signed manifest: over memory and TCP, through a resume,
and a forwarder who edits them is refused."""

from __future__ import annotations

import asyncio
import json

from fieldkit.gossip.parts import held_chunks
from fieldkit.gossip.sync import start_listener, sync_with
from fieldkit.services import Services
from fieldkit.store.notes import Passage, notes_of
from fieldkit.store.packet import packet_id
from fieldkit.testing.memory_link import Faults
from tests.gossip.helpers import FAST, sync_memory, sync_memory_link

NOTES = [
    Passage("r1", "Clean the intake filter every 7 days in the dry season.", "Filter cleaning?"),
    Passage("r2", "Mount the panel at a 15 degree tilt facing the equator.", "Panel tilt?"),
]


async def test_notes_arrive_signed_after_a_cut_and_a_resume(make_device, make_packet):
    a, b = make_device("a"), make_device("b")
    pa = make_packet(a.home, name="pumps", size_scale=3, notes=NOTES)  # 2 chunks
    b.trust(a)
    _, first, _ = await sync_memory_link(a, b, a_to_b=Faults(cut_after=40_000))
    assert first.error is not None
    held, stored = held_chunks(b.library, pa.packet_id)
    assert held
    assert notes_of(stored) == NOTES
    _, second = await sync_memory(a, b)
    assert second.ok, second.error
    assert second.packets[0].resumed_from > 0
    got = b.library.find(pa.packet_id)
    assert got.verified
    assert notes_of(got.manifest) == NOTES
    assert got.signature == pa.signature
    assert b.library.verify("pumps")[1] is None


async def test_edited_notes_are_refused(make_device, make_packet):
    a, b = make_device("a"), make_device("b")
    pa = make_packet(a.home, name="pumps", notes=NOTES)
    make_packet(a.home, name="plain", seed=4)  # no notes: still goes through
    b.trust(a)
    manifest = json.loads(json.dumps(pa.manifest))
    manifest["notes"][0]["text"] = "Clean the intake filter every 70 days."
    a.library.db["packets"].update(
        pa.packet_id, {"manifest": json.dumps(manifest), "packet_id": packet_id(manifest)}
    )
    _, sb = await sync_memory(a, b)
    refused = {p.name: p for p in sb.packets if p.status == "refused"}
    assert "does not verify" in refused["pumps"].reason
    assert [r.name for r in b.library.list_packets()] == ["plain"]
    assert list(b.home.parts_dir.iterdir()) == []


async def test_notes_sync_over_tcp(make_home, make_packet):
    a, b = Services.build(make_home("a").root), Services.build(make_home("b").root)
    try:
        pa = make_packet(a.home, name="pumps", notes=NOTES)
        b.library.set_trust(a.identity.device_id, "trusted")
        listener = await start_listener(b, "127.0.0.1", 0, FAST, once=True)
        summary = await sync_with("127.0.0.1", listener.port, a, FAST)
        await asyncio.wait_for(listener.wait(), 5)
        assert summary.ok, summary.error
        got = b.library.find(pa.packet_id)
        assert got is not None
        assert notes_of(got.manifest) == NOTES
    finally:
        a.close()
        b.close()
