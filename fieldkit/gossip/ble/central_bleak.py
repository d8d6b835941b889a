"""Bluetooth LE central role with bleak (CoreBluetooth on macOS, BlueZ on Linux, WinRT).

The only module that imports bleak. `scan` lists fieldkit peers from their
advertisements; `connect` returns a `BleByteStream` over the peer's fieldkit service,
slicing writes by bleak's `max_write_without_response_size` and queueing notifications,
as bleak's own UART example does. `backend` and `backend_kwargs` pass straight to
bleak, so tests run this same code on `ble_bleak_bumble_backend` (a bumble radio).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.exc import BleakError

from fieldkit.errors import TransportError
from fieldkit.gossip.ble.link import (
    COMPANY_ID,
    DEFAULT_MTU,
    DEFAULT_WINDOW,
    RX_UUID,
    SERVICE_UUID,
    TX_UUID,
    Advertisement,
    Sighting,
    id_from_name,
)
from fieldkit.gossip.ble.sightings import Sightings
from fieldkit.gossip.ble.stream import BleByteStream, PendingStream

NO_STACK = (
    "No system Bluetooth stack answered (BlueZ's D-Bus socket is missing); "
    "a USB dongle works without it: --hci usb:0."
)
UNEXCHANGED_WRITE_SIZE = DEFAULT_MTU - 3  # what stacks report before the MTU exchange


async def scan(
    seconds: float = 3.0,
    *,
    stop_early: str | None = None,
    backend: type | None = None,
    backend_kwargs: dict[str, Any] | None = None,
) -> list[Sighting]:
    """Scan for fieldkit peers and return them, strongest signal first.

    If `stop_early` is a short id (or prefix), return as soon as that peer is seen.
    Raises TransportError if Bluetooth is off, missing or not permitted.
    """
    sightings = Sightings(stop_early)

    def on_detect(device: Any, adv: Any) -> None:
        payload = adv.manufacturer_data.get(COMPANY_ID)
        ours = (
            Advertisement.from_manufacturer_data(COMPANY_ID.to_bytes(2, "little") + payload)
            if payload is not None
            else None
        )
        if ours is None:  # a bless/CoreBluetooth peripheral: the id rides in the name
            named = id_from_name(adv.local_name or device.name)
            if named is None:
                return
            ours = Advertisement(short_id=named)
        sightings.add(ours, adv.local_name or device.name, int(adv.rssi), str(device.address))

    try:
        scanner = BleakScanner(
            on_detect, service_uuids=[SERVICE_UUID], backend=backend, **(backend_kwargs or {})
        )
        async with scanner:
            await sightings.wait(seconds)
    except FileNotFoundError as exc:  # no D-Bus system socket: no BlueZ here
        raise TransportError(NO_STACK) from exc
    except (BleakError, OSError) as exc:
        raise TransportError(
            f"Bluetooth LE scanning failed ({exc}); is Bluetooth on, present and permitted?"
        ) from exc
    return sightings.strongest_first()


async def connect(
    address: str,
    *,
    window: int = DEFAULT_WINDOW,
    wait: float = 15.0,
    backend: type | None = None,
    backend_kwargs: dict[str, Any] | None = None,
) -> BleByteStream:
    """Connect to a fieldkit peripheral at `address` and return the link's byte stream.

    Raises TransportError if the peer cannot be reached or has no fieldkit service.
    """
    pending = PendingStream()

    def on_disconnect(_client: BleakClient) -> None:
        pending.connection_lost()

    def on_notify(_char: Any, value: bytearray) -> None:
        pending.feed(bytes(value))

    client = BleakClient(
        address,
        disconnected_callback=on_disconnect,
        timeout=wait,
        backend=backend,
        **(backend_kwargs or {}),
    )
    try:
        await client.connect()
    except FileNotFoundError as exc:
        raise TransportError(NO_STACK) from exc
    except (BleakError, OSError, TimeoutError) as exc:
        raise TransportError(f"Cannot connect to the Bluetooth peer {address}: {exc}") from exc
    try:
        service = client.services.get_service(SERVICE_UUID)
        if service is None:
            raise TransportError(f"The Bluetooth device {address} does not offer fieldkit.")
        rx = service.get_characteristic(RX_UUID)
        tx = service.get_characteristic(TX_UUID)
        if rx is None or tx is None:
            raise TransportError(
                f"The Bluetooth device {address} has an incomplete fieldkit service."
            )
        await _settle_write_size(rx)
        await client.start_notify(tx, on_notify)
    except TransportError:
        await _quiet_disconnect(client)
        raise
    except (BleakError, OSError, TimeoutError) as exc:
        await _quiet_disconnect(client)
        raise TransportError(f"Setting up the link to {address} failed: {exc}") from exc

    async def write(value: bytes) -> None:
        await client.write_gatt_char(rx, value, response=False)

    stream = BleByteStream(
        write=write,
        mtu=lambda: rx.max_write_without_response_size + 3,
        disconnect=lambda: _quiet_disconnect(client),
        peer_label=f"BLE {address}",
        window=window,
    )
    return pending.attach(stream)


async def _settle_write_size(characteristic: Any, patience: float = 1.0) -> None:
    """Poll the usable write size: it reads 20 until the MTU exchange has finished."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while characteristic.max_write_without_response_size <= UNEXCHANGED_WRITE_SIZE:
        if loop.time() >= deadline:
            return  # a peer that really keeps MTU 23 still works, with 20-byte values
        await asyncio.sleep(0.05)


async def _quiet_disconnect(client: BleakClient) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.disconnect(), 5.0)
