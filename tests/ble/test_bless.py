"""The bless peripheral: its framing everywhere, and advertising where a system adapter exists."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from fieldkit.gossip.ble import central_bleak as ble_bleak
from fieldkit.gossip.ble.link import (
    SERVICE_UUID,
    BleLink,
    advertised_name,
    id_from_name,
    parse_ad,
)
from fieldkit.gossip.ble.peripheral_bless import BlessPeripheral
from fieldkit.gossip.ble.radio_bumble import power_on, scan
from fieldkit.testing.bleak_over_bumble import BumbleBleakScanner
from fieldkit.testing.virtual_radio import VirtualRadio
from tests.ble.test_bumble_stream import ALICE, BOB


def test_the_name_carries_the_short_id_where_manufacturer_data_cannot() -> None:
    assert advertised_name("bobbobbo") == "fk-bobbobbo"
    assert id_from_name("fk-bobbobbo") == "bobbobbo"
    assert id_from_name("fk-01") is None
    assert id_from_name("headphones") is None
    assert id_from_name(None) is None


async def test_scanners_list_a_peripheral_that_names_its_id_like_corebluetooth() -> None:
    radio = VirtualRadio()
    central, named = radio.device(ALICE), radio.device(BOB)
    await power_on(central)
    await power_on(named)
    uuid_le = bytes.fromhex(SERVICE_UUID.replace("-", ""))[::-1]
    name = advertised_name("bobbobbo").encode()
    data = bytes([17, 0x07]) + uuid_le + bytes([len(name) + 1, 0x09]) + name
    assert parse_ad(data)[0x09] == name
    await named.start_advertising(
        advertising_data=data, auto_restart=False, advertising_interval_min=20
    )
    [seen] = await scan(central, 2.0, stop_early="bobb")
    assert seen.short_id == "bobbobbo"
    [seen] = await ble_bleak.scan(
        2.0,
        stop_early="bobb",
        backend=BumbleBleakScanner,
        backend_kwargs={"bumble_device": central},
    )
    assert seen.short_id == "bobbobbo"


class FakeBlessServerBecauseNoAdapterHere:
    """Stands in for bless's server object: records notified values."""

    def __init__(self) -> None:
        self.notified: list[bytes] = []
        self.tx = type("Char", (), {"value": bytearray()})()

    def get_characteristic(self, uuid: str):
        return self.tx

    def update_value(self, service_uuid: str, char_uuid: str) -> bool:
        self.notified.append(bytes(self.tx.value))
        return True


async def test_bless_peripheral_framing_with_a_fake_server_because_no_adapter_here() -> None:
    peripheral = BlessPeripheral(device_id=BOB, name="bob", window=4)
    server = peripheral._server = FakeBlessServerBecauseNoAdapterHere()
    central = BleLink(247, window=4)
    for frame in central.values_to_send():  # the central's HELLO starts a session
        peripheral._on_write(None, bytearray(frame))
    stream = await asyncio.wait_for(peripheral.accept(), 1)

    async def notified_to_central() -> None:
        await asyncio.sleep(0.01)  # let the stream's pump run
        for value in server.notified:
            assert len(value) <= 244  # capped by the central's announced value size
            central.receive_value(value)
        server.notified.clear()

    await notified_to_central()  # the peripheral's HELLO grants the central credits
    central.send(b"ping" * 100)
    for frame in central.values_to_send():
        peripheral._on_write(None, bytearray(frame))
    assert await asyncio.wait_for(stream.receive(), 1) == b"ping" * 100
    sending = asyncio.create_task(stream.send(b"pong" * 200))
    await notified_to_central()
    await asyncio.wait_for(sending, 1)
    assert central.read() == b"pong" * 200


def system_bluetooth_adapter() -> bool:
    """True where the operating system offers a Bluetooth adapter bless can use."""
    if sys.platform == "darwin":
        return True  # CoreBluetooth; a Mac without a radio fails the test, as it should
    return sys.platform.startswith("linux") and any(Path("/sys/class/bluetooth").glob("hci*"))


@pytest.mark.skipif(
    not system_bluetooth_adapter(),
    reason="bless needs a system Bluetooth adapter (BlueZ or CoreBluetooth); this machine "
    "has none, so the real peripheral cannot run here",
)
async def test_bless_advertises_on_a_real_adapter() -> None:
    peripheral = BlessPeripheral(device_id=BOB, name=sys.platform)
    await peripheral.start()
    await peripheral.stop()
