"""bleak's real central code path against a bumble peripheral, through our bleak backend."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os

import pytest
from bleak import BleakClient, BleakScanner

from fieldkit.errors import TransportError
from fieldkit.gossip.ble import central_bleak as ble_bleak
from fieldkit.gossip.ble.link import RX_UUID, SERVICE_UUID
from fieldkit.gossip.ble.radio_bumble import power_on
from fieldkit.testing.bleak_over_bumble import BumbleBleakClient, BumbleBleakScanner
from fieldkit.testing.virtual_radio import VirtualRadio
from tests.ble.test_bumble_stream import ALICE, pair, read_exactly, send_all


def bleak_args(device, mtu: int = 517) -> dict:
    return {"backend_kwargs": {"bumble_device": device, "bumble_mtu": mtu}}


async def test_bleak_scanner_sees_service_uuid_and_manufacturer_id() -> None:
    central, _ = await pair(VirtualRadio())
    found = await BleakScanner.discover(
        timeout=0.3,
        service_uuids=[SERVICE_UUID],
        return_adv=True,
        backend=BumbleBleakScanner,
        bumble_device=central,
    )
    [(device, adv)] = found.values()
    assert SERVICE_UUID in adv.service_uuids
    assert adv.manufacturer_data[0xFFFF][1:] == base64.b32decode("BOBBOBBO")
    assert device.address == str(adv.platform_data[0].address)


async def test_bleak_scan_filter_drops_other_services() -> None:
    radio = VirtualRadio()
    central, stranger = radio.device(ALICE), radio.device("strangerstranger")
    await power_on(central)
    await power_on(stranger)
    await stranger.start_advertising(auto_restart=False, advertising_interval_min=20)
    assert await ble_bleak.scan(0.3, backend=BumbleBleakScanner, **bleak_args(central)) == []


@pytest.mark.parametrize("mtu", [23, 247, 517])
async def test_bleak_central_streams_both_ways_verified_by_hash(mtu: int) -> None:
    central, peripheral = await pair(VirtualRadio(), mtu=mtu, window=16)
    [peer] = await ble_bleak.scan(
        2.0, stop_early="bobb", backend=BumbleBleakScanner, **bleak_args(central, mtu)
    )
    assert peer.short_id == "bobbobbo"
    c = await ble_bleak.connect(peer.address, backend=BumbleBleakClient, **bleak_args(central, mtu))
    p = await asyncio.wait_for(peripheral.accept(), 5)
    scale = 1 if mtu > 23 else 4  # 20-byte values: fewer bytes keep the test short
    up, down = os.urandom(30_000 // scale), os.urandom(20_000 // scale)
    results = await asyncio.wait_for(
        asyncio.gather(
            send_all(c, up), send_all(p, down), read_exactly(p, len(up)), read_exactly(c, len(down))
        ),
        30,
    )
    assert hashlib.sha256(results[2]).digest() == hashlib.sha256(up).digest()
    assert hashlib.sha256(results[3]).digest() == hashlib.sha256(down).digest()
    assert c.mtu_value_size == min(mtu - 3, 512)
    await asyncio.gather(c.close(), p.close())


async def test_bleak_write_size_reads_the_exchanged_mtu() -> None:
    central, _ = await pair(VirtualRadio(), mtu=247)
    [peer] = await ble_bleak.scan(
        2.0, stop_early="bobb", backend=BumbleBleakScanner, **bleak_args(central, 247)
    )
    async with BleakClient(
        peer.address, backend=BumbleBleakClient, bumble_device=central, bumble_mtu=247
    ) as client:
        rx = client.services.get_characteristic(RX_UUID)
        assert "write-without-response" in rx.properties
        assert rx.max_write_without_response_size == 244
        assert client.mtu_size == 247


async def test_bleak_link_drop_raises_transport_error() -> None:
    radio = VirtualRadio()
    central, peripheral = await pair(radio)
    [peer] = await ble_bleak.scan(
        2.0, stop_early="bobb", backend=BumbleBleakScanner, **bleak_args(central)
    )
    c = await ble_bleak.connect(peer.address, backend=BumbleBleakClient, **bleak_args(central))
    p = await peripheral.accept()
    radio.drop_all()
    with pytest.raises(TransportError, match="was lost"):
        await asyncio.wait_for(c.receive(), 5)
    await c.close()
    await p.close()


async def test_bleak_connect_to_nobody_is_one_clear_error() -> None:
    central, _ = await pair(VirtualRadio())
    with pytest.raises(TransportError, match="Cannot connect"):
        await ble_bleak.connect(
            "C0:00:00:00:00:01", wait=0.5, backend=BumbleBleakClient, **bleak_args(central)
        )
