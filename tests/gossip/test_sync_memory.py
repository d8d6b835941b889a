"""Full sessions between two real libraries over the in-memory link."""

from __future__ import annotations

from fieldkit.gossip.summary import SyncOptions
from tests.gossip.helpers import sync_memory


async def test_two_way_sync_between_trusting_devices(make_device, make_packet):
    a, b = make_device("a"), make_device("b")
    pa = make_packet(a.home, name="pumps", size_scale=4)
    pb = make_packet(b.home, name="solar", seed=1)
    a.trust(b)
    b.trust(a)
    sa, sb = await sync_memory(a, b)
    assert sa.ok and sb.ok, (sa, sb)
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
