"""Byte streams over a real bumble stack: two devices on an in-process virtual radio."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import pytest

from fieldkit.errors import TransportError
from fieldkit.gossip.ble.radio_bumble import BumblePeripheral, connect, power_on, scan
from fieldkit.testing.virtual_radio import ThrottledLink, VirtualRadio

ALICE, BOB = "alicealicealice2", "bobbobbobbobbob2"


async def pair(radio: VirtualRadio, mtu: int = 517, window: int = 64):
    central, peripheral_device = radio.device(ALICE, "alice"), radio.device(BOB, "bob")
    await power_on(central)
    await power_on(peripheral_device)
    peripheral = BumblePeripheral(
        peripheral_device, device_id=BOB, name="bob", mtu=mtu, window=window
    )
    await peripheral.start()
    return central, peripheral


async def send_all(stream, data: bytes, piece: int = 4096) -> None:
    for i in range(0, len(data), piece):
        await stream.send(data[i : i + piece])


async def read_exactly(stream, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = await stream.receive()
        assert chunk, "stream ended early"
        buf += chunk
    return bytes(buf)


async def test_scan_lists_the_peer_by_short_id_and_rssi() -> None:
    central, _ = await pair(VirtualRadio())
    sightings = await scan(central, seconds=2.0, stop_early="bobb")
    assert [s.short_id for s in sightings] == ["bobbobbo"]
    assert sightings[0].version == 1
    assert -127 < sightings[0].rssi < 20


@pytest.mark.parametrize("mtu", [23, 247, 517])
async def test_random_bytes_cross_both_ways_verified_by_hash(mtu: int) -> None:
    central, peripheral = await pair(VirtualRadio(), mtu=mtu, window=16)
    [peer] = await scan(central, seconds=2.0, stop_early="bobb")
    c = await connect(central, peer.address, mtu=mtu)
    p = await asyncio.wait_for(peripheral.accept(), 5)
    scale = 1 if mtu > 23 else 4  # 20-byte values: fewer bytes keep the test short
    up, down = os.urandom(40_000 // scale), os.urandom(30_000 // scale)
    _, _, got_up, got_down = await asyncio.wait_for(
        asyncio.gather(
            send_all(c, up), send_all(p, down), read_exactly(p, len(up)), read_exactly(c, len(down))
        ),
        30,
    )
    assert hashlib.sha256(got_up).digest() == hashlib.sha256(up).digest()
    assert hashlib.sha256(got_down).digest() == hashlib.sha256(down).digest()
    assert c.mtu_value_size == p.mtu_value_size == min(mtu - 3, 512)
    await asyncio.gather(c.close(), p.close())


async def test_close_delivers_eof_to_the_peer() -> None:
    central, peripheral = await pair(VirtualRadio())
    [peer] = await scan(central, seconds=2.0, stop_early="bobb")
    c = await connect(central, peer.address)
    p = await peripheral.accept()
    await c.send(b"last words")
    closing = asyncio.create_task(c.close())
    assert await read_exactly(p, 10) == b"last words"
    assert await p.receive() == b""
    await p.close()
    await closing


async def test_dropped_link_raises_and_a_new_connection_works() -> None:
    radio = VirtualRadio()
    central, peripheral = await pair(radio)
    [peer] = await scan(central, seconds=2.0, stop_early="bobb")
    c = await connect(central, peer.address)
    p = await peripheral.accept()
    await send_all(c, os.urandom(5000))
    await read_exactly(p, 5000)
    radio.drop_all()
    with pytest.raises(TransportError, match="was lost"):
        await asyncio.wait_for(p.receive(), 5)
    with pytest.raises(TransportError, match="was lost"):
        await asyncio.wait_for(send_all(c, b"x" * 100_000), 5)
    await c.close()
    await p.close()

    # The peripheral advertises again; a fresh connection carries data.
    [peer] = await scan(central, seconds=2.0, stop_early="bobb")
    c2 = await connect(central, peer.address)
    p2 = await asyncio.wait_for(peripheral.accept(), 5)
    data = os.urandom(8000)
    await send_all(c2, data)
    assert await read_exactly(p2, len(data)) == data
    await asyncio.gather(c2.close(), p2.close())


async def test_a_device_without_the_fieldkit_service_is_refused() -> None:
    radio = VirtualRadio()
    central, stranger = radio.device(ALICE), radio.device(BOB)
    await power_on(central)
    await power_on(stranger)
    await stranger.start_advertising(auto_restart=False, advertising_interval_min=20)
    with pytest.raises(TransportError, match="does not offer fieldkit"):
        await connect(central, str(stranger.random_address))


async def test_throttled_link_paces_bytes_to_its_rate() -> None:
    link = ThrottledLink(rate=50_000, interval=0.0075)
    central, peripheral = await pair(VirtualRadio(link=link), mtu=247)
    [peer] = await scan(central, seconds=2.0, stop_early="bobb")
    c = await connect(central, peer.address, mtu=247)
    p = await peripheral.accept()
    data = os.urandom(25_000)
    start = time.perf_counter()
    await asyncio.gather(send_all(c, data), read_exactly(p, len(data)))
    elapsed = time.perf_counter() - start
    # 25 kB at 50 kB/s is 0.5 s of air, plus headers and credit frames.
    assert 0.5 <= elapsed < 3.0, elapsed  # upper bound loose: the CPU is shared
    await asyncio.gather(c.close(), p.close())
