"""A 4-bit trimmed packet (format 3) travels like any other: in memory, resumed, over TCP."""

from __future__ import annotations

import asyncio

from fieldkit.gossip.parts import held_chunks
from fieldkit.gossip.summary import SyncOptions
from fieldkit.gossip.sync import start_listener, sync_with
from fieldkit.services import Services
from fieldkit.store.quantize import Compaction, QuantizedTensors
from fieldkit.testing.memory_link import Faults
from tests.fixtures.packets import random_adapter
from tests.gossip.helpers import sync_memory, sync_memory_link


def small_packet(make_packet, home, name: str = "pumps"):
    adapter = Compaction(bits=4, energy=0.9).apply(random_adapter(seed=8, size_scale=16))
    record = make_packet(home, name=name, adapter=adapter)
    assert (record.manifest["format"], record.manifest["dtype"]) == (3, "int4")
    assert len(record.manifest["chunk_hashes"]) >= 3
    return record


async def test_a_quantised_packet_syncs_after_a_cut_and_resumes(make_device, make_packet):
    a, b = make_device("a"), make_device("b")
    pa = small_packet(make_packet, a.home)
    b.trust(a)
    chunk = pa.manifest["chunk_size"]
    _, first, _ = await sync_memory_link(a, b, a_to_b=Faults(cut_after=int(chunk * 1.5)))
    assert first.error is not None
    held, _ = held_chunks(b.library, pa.packet_id)
    assert held
    assert not b.library.has(pa.packet_id)
    _, second = await sync_memory(a, b)
    assert second.ok, second.error
    (report,) = second.packets
    assert report.status == "ok"
    assert report.resumed_from >= chunk
    got = b.library.find(pa.packet_id)
    assert b.library.read_weights(got) == a.library.read_weights(pa)
    assert b.library.verify(got.packet_id)[1] is None
    assert isinstance(b.library.load_adapter(got).tensors, QuantizedTensors)


async def test_a_quantised_packet_syncs_over_tcp(make_home, make_packet):
    a, b = Services.build(make_home("a").root), Services.build(make_home("b").root)
    options = SyncOptions(handshake_timeout=5, idle_timeout=5)
    try:
        pa = small_packet(make_packet, a.home)
        b.library.set_trust(a.identity.device_id, "trusted")
        listener = await start_listener(b, "127.0.0.1", 0, options, once=True)
        summary = await sync_with("127.0.0.1", listener.port, a, options)
        await asyncio.wait_for(listener.wait(), 5)
        assert summary.ok, summary.error
        (served,) = listener.summaries
        assert served.ok, served.error
        assert b.library.find(pa.packet_id).sha256 == pa.sha256
    finally:
        a.close()
        b.close()
