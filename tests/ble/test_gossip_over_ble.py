"""Full gossip sessions between two homes over a bumble BLE link (one process)."""

from __future__ import annotations

import asyncio

import pytest

from fieldkit.errors import TransportError
from fieldkit.gossip.ble import central_bleak as ble_bleak
from fieldkit.gossip.ble.link import Role, choose_role
from fieldkit.gossip.ble.radio_bumble import BumbleRadio, power_on
from fieldkit.gossip.parts import held_chunks
from fieldkit.gossip.summary import SyncOptions
from fieldkit.gossip.sync import serve_ble, sync_ble, sync_ble_peer
from fieldkit.testing.bleak_over_bumble import BumbleBleakClient, BumbleBleakScanner
from fieldkit.testing.virtual_radio import LocalLink, ThrottledLink, VirtualRadio
from tests.gossip.helpers import FAST, Device, SlowPerson


async def radios(radio: VirtualRadio, a: Device, b: Device) -> tuple[BumbleRadio, BumbleRadio]:
    da, db = radio.device(a.device_id, "a"), radio.device(b.device_id, "b")
    await power_on(da)
    await power_on(db)
    return BumbleRadio(da), BumbleRadio(db)


async def session(ra: BumbleRadio, rb: BumbleRadio, a: Device, b: Device, progress_b=None):
    """a connects as central to b (peripheral, one session); return (summary a, summary b)."""
    serving = asyncio.create_task(serve_ble(rb, b, FAST, once=True, progress=progress_b))
    summary_a = await asyncio.wait_for(
        sync_ble_peer(ra, a, FAST, peer=b.device_id, scan_seconds=5), 60
    )
    (summary_b,) = await asyncio.wait_for(serving, 30)
    return summary_a, summary_b


@pytest.mark.parametrize("throttled", [False, True], ids=["virtual", "throttled-200kBps"])
async def test_two_way_sync_over_ble(make_device, make_packet, throttled):
    a, b = make_device("a"), make_device("b")
    pa = make_packet(a.home, name="pumps", size_scale=2)
    pb = make_packet(b.home, name="solar", seed=1)
    a.trust(b)
    b.trust(a)
    link = ThrottledLink(rate=200_000, interval=0.0075) if throttled else LocalLink()
    ra, rb = await radios(VirtualRadio(link=link), a, b)
    sa, sb = await session(ra, rb, a, b)
    assert sa.ok, sa.error
    assert sb.ok, sb.error
    assert a.packet_ids() == b.packet_ids() == {pa.packet_id, pb.packet_id}
    got = b.library.find(pa.packet_id)
    assert got.verified
    assert b.library.read_weights(got) == a.library.read_weights(pa)
    assert "over BLE" in sa.peer_label
    assert sa.sas == sb.sas


async def test_keepalives_cross_the_ble_link_while_a_person_compares_the_code(
    make_device, make_packet
):
    """b's person takes 2.5 s to compare the code; a calls a link dead after 1 s of nothing
    at all. b's Pings (version 4) cross the GATT link meanwhile, so the session goes on
    and the packet arrives whole."""
    a, b = make_device("a"), make_device("b")
    pa = make_packet(a.home, name="pumps", size_scale=2)
    a.trust(b)
    b.library.set_setting("receive_policy", "ask")
    slow_person = SlowPerson(2.5)
    options = SyncOptions(handshake_timeout=5, idle_timeout=10, keepalive=0.1, dead_after=1.0)
    link = ThrottledLink(rate=200_000, interval=0.0075)
    ra, rb = await radios(VirtualRadio(link=link), a, b)
    serving = asyncio.create_task(serve_ble(rb, b, options, once=True, confirm=slow_person))
    sa = await asyncio.wait_for(sync_ble_peer(ra, a, options, peer=b.device_id, scan_seconds=5), 60)
    (sb,) = await asyncio.wait_for(serving, 30)
    assert slow_person.asked
    assert sa.ok, sa.error
    assert sb.ok, sb.error
    assert sa.protocol_version == 4
    assert b.library.read_weights(b.library.find(pa.packet_id)) == a.library.read_weights(pa)


async def test_link_dropped_mid_transfer_resumes_with_only_the_missing_chunks(
    make_device, make_packet
):
    a, b = make_device("a"), make_device("b")
    pa = make_packet(a.home, name="pumps", size_scale=6)  # ~200 KB, 7 chunks
    a.trust(b)
    b.trust(a)
    radio = VirtualRadio()
    ra, rb = await radios(radio, a, b)
    dropped = []

    def cut_at_40_percent(update):
        if not dropped and update.done >= 0.4 * update.total:
            dropped.append(update.done)
            radio.drop_all()

    first_a, first_b = await session(ra, rb, a, b, progress_b=cut_at_40_percent)
    assert dropped
    assert first_b.error
    assert "lost" in first_b.error
    assert b.packet_ids() == set()
    held, _ = held_chunks(b.library, pa.packet_id)
    count = len(pa.manifest["chunk_hashes"])
    assert 0 < len(held) < count
    chunk = pa.manifest["chunk_size"]
    held_bytes = sum(min(chunk, pa.size - i * chunk) for i in held)

    second_a, second_b = await session(ra, rb, a, b)
    assert second_a.ok, second_a.error
    assert second_b.ok, second_b.error
    assert b.packet_ids() == {pa.packet_id}
    (report,) = second_b.packets
    assert report.resumed_from == held_bytes
    # Only the missing chunks crossed the air again (plus manifests and framing).
    assert second_b.bytes_received < pa.size - held_bytes + 16 * 1024
    assert b.library.read_weights(b.library.find(pa.packet_id)) == a.library.read_weights(pa)


async def test_no_peer_in_range_is_one_clear_error(make_device):
    a = make_device("a")
    radio = VirtualRadio()
    da = radio.device(a.device_id)
    await power_on(da)
    with pytest.raises(TransportError, match="found no sign of the peer zzzz"):
        await sync_ble_peer(BumbleRadio(da), a, SyncOptions(), peer="zzzzzzzz", scan_seconds=0.3)


async def test_two_devices_that_both_scan_and_advertise_connect_exactly_once(
    make_device, make_packet
):
    a, b = make_device("a"), make_device("b")
    pa = make_packet(a.home, name="pumps")
    pb = make_packet(b.home, name="solar", seed=1)
    a.trust(b)
    b.trust(a)
    ra, rb = await radios(VirtualRadio(), a, b)
    sa, sb = await asyncio.wait_for(
        asyncio.gather(
            sync_ble(ra, a, FAST, scan_seconds=10),
            sync_ble(rb, b, FAST, scan_seconds=10),
        ),
        30,
    )
    assert sa.ok, sa.error
    assert sb.ok, sb.error
    assert a.packet_ids() == b.packet_ids() == {pa.packet_id, pb.packet_id}
    central, peripheral = (sa, sb) if a.device_id[:8] < b.device_id[:8] else (sb, sa)
    assert "over BLE" in central.peer_label  # the lower id connected...
    assert "over BLE" not in peripheral.peer_label  # ...and the other one was connected to
    assert choose_role(a.device_id, b.device_id) is (
        Role.CENTRAL if central is sa else Role.PERIPHERAL
    )


async def test_a_connecting_device_always_connects_to_a_listen_only_one(make_device, make_packet):
    a, b = make_device("a"), make_device("b")
    pa = make_packet(a.home, name="pumps")
    b.trust(a)
    ra, rb = await radios(VirtualRadio(), a, b)
    serving = asyncio.create_task(serve_ble(rb, b, FAST, once=True))
    sa = await asyncio.wait_for(sync_ble(ra, a, FAST, scan_seconds=10), 30)
    (sb,) = await asyncio.wait_for(serving, 10)
    assert sa.ok, sa.error
    assert sb.ok, sb.error
    assert b.packet_ids() == {pa.packet_id}


class BleakCentralRadio:
    """The bleak central path (fieldkit.gossip.ble.central_bleak) on a bumble device."""

    def __init__(self, device) -> None:
        self.kwargs = {"backend_kwargs": {"bumble_device": device}}

    async def scan(self, seconds, stop_early=None):
        return await ble_bleak.scan(
            seconds, stop_early=stop_early, backend=BumbleBleakScanner, **self.kwargs
        )

    async def connect(self, address):
        return await ble_bleak.connect(address, backend=BumbleBleakClient, **self.kwargs)


async def test_full_sync_through_the_bleak_central(make_device, make_packet):
    a, b = make_device("a"), make_device("b")
    pa = make_packet(a.home, name="pumps", size_scale=2)
    pb = make_packet(b.home, name="solar", seed=1)
    a.trust(b)
    b.trust(a)
    ra, rb = await radios(VirtualRadio(), a, b)
    serving = asyncio.create_task(serve_ble(rb, b, FAST, once=True))
    sa = await asyncio.wait_for(
        sync_ble_peer(
            BleakCentralRadio(ra.device),
            a,
            FAST,
            peer=b.device_id,
            scan_seconds=5,
        ),
        30,
    )
    (sb,) = await asyncio.wait_for(serving, 10)
    assert sa.ok, sa.error
    assert sb.ok, sb.error
    assert a.packet_ids() == b.packet_ids() == {pa.packet_id, pb.packet_id}


async def test_cancelling_a_sync_mid_transfer_stops_at_once_and_resumes_later(
    make_device, make_packet
):
    a, b = make_device("a"), make_device("b")
    pa = make_packet(a.home, name="pumps", size_scale=6)
    a.trust(b)
    b.trust(a)
    radio = VirtualRadio(link=ThrottledLink(rate=50_000, interval=0.0075))
    ra, rb = await radios(radio, a, b)
    halfway = asyncio.Event()

    def watch(update):
        if update.done >= 0.3 * update.total:
            halfway.set()

    serving = asyncio.create_task(serve_ble(rb, b, FAST, once=True, progress=watch))
    syncing = asyncio.create_task(sync_ble_peer(ra, a, FAST, peer=b.device_id, scan_seconds=5))
    await asyncio.wait_for(halfway.wait(), 30)
    syncing.cancel()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(asyncio.CancelledError):
        await syncing
    assert loop.time() - started < 1.0  # no graceful drain of a cancelled link
    await asyncio.wait_for(asyncio.gather(serving, return_exceptions=True), 30)
    assert b.packet_ids() == set()
    held, _ = held_chunks(b.library, pa.packet_id)
    assert 0 < len(held) < len(pa.manifest["chunk_hashes"])
    second_a, second_b = await session(ra, rb, a, b)
    assert second_a.ok, second_a.error
    assert second_b.ok, second_b.error
    assert b.packet_ids() == {pa.packet_id}
    assert second_b.packets[0].resumed_from > 0
