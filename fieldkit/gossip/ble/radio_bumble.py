"""Bluetooth LE with bumble: both roles, any HCI (USB dongle, TCP, virtual controllers).

The product's only bumble importer (the test doubles in fieldkit/testing/ import it too).
Used in the field on Linux with a USB dongle (`--hci usb:0`) where BlueZ is absent or
unwanted, with bumble's controllers served over TCP (`--hci tcp-client:127.0.0.1:PORT`),
and in tests on fieldkit.testing.virtual_radio's in-process controllers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from bumble import hci
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device, Peer
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.transport import open_transport

from fieldkit.errors import TransportError
from fieldkit.gossip.ble.link import (
    DEFAULT_MTU,
    DEFAULT_WINDOW,
    RX_UUID,
    SERVICE_UUID,
    TX_UUID,
    Advertisement,
    Sighting,
    id_from_name,
    scan_response,
    short_id,
)
from fieldkit.gossip.ble.sightings import Sightings
from fieldkit.gossip.ble.stream import BleByteStream, PendingStream

MAX_MTU = 517
DLE_OCTETS = 251  # LE Data Length Extension: the largest link-layer payload


def device_address(device_id: str) -> str:
    """Return a stable random static address for a device id (two top bits set)."""
    digest = bytearray(hashlib.sha256(device_id.encode()).digest()[:6])
    digest[0] |= 0xC0
    return ":".join(f"{b:02X}" for b in digest)


# -- radios ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def open_hci_device(spec: str, device_id: str, name: str) -> AsyncIterator[Device]:
    """Yield a powered-on bumble device on the HCI transport `spec` (e.g. usb:0).

    Raises TransportError if the transport cannot be opened.
    """
    try:
        transport = await open_transport(spec)
    except Exception as exc:
        raise TransportError(f"Cannot open the Bluetooth controller {spec!r}: {exc}") from exc
    try:
        device = Device.with_hci(
            name, hci.Address(device_address(device_id)), transport.source, transport.sink
        )
        await power_on(device)
        yield device
    finally:
        with contextlib.suppress(Exception):
            await transport.close()


async def power_on(device: Device) -> None:
    """Power the device on, turning a dead controller into a TransportError."""
    try:
        await asyncio.wait_for(device.power_on(), 10.0)
    except Exception as exc:
        raise TransportError(f"The Bluetooth controller did not start: {exc}") from exc


# -- peripheral ----------------------------------------------------------------


class BumblePeripheral:
    """The fieldkit GATT service on a bumble device, advertised; yields a stream per central.

    Use `await start()`, then `await accept()` for each connection's `BleByteStream`.
    """

    def __init__(
        self,
        device: Device,
        *,
        device_id: str,
        name: str,
        mtu: int = MAX_MTU,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        self.device = device
        self.advertisement = Advertisement(short_id=short_id(device_id))
        self.name = name
        self.window = window
        self._accepted: asyncio.Queue[BleByteStream] = asyncio.Queue()
        self._pending: dict[int, PendingStream] = {}  # by connection handle
        self.rx = Characteristic(
            RX_UUID,
            Characteristic.Properties.WRITE_WITHOUT_RESPONSE,
            Characteristic.Permissions.WRITEABLE,
            CharacteristicValue(write=self._on_write),
        )
        self.tx = Characteristic(
            TX_UUID,
            Characteristic.Properties.NOTIFY,
            Characteristic.Permissions.READABLE,
            b"",
        )
        self.tx.on(self.tx.EVENT_SUBSCRIPTION, self._on_subscription)
        device.add_service(Service(SERVICE_UUID, [self.rx, self.tx]))
        device.gatt_server.max_mtu = mtu
        device.on(device.EVENT_CONNECTION, self._on_connection)

    async def start(self) -> None:
        """Start advertising (restarted after each disconnection) with the current data."""
        if self.device.is_advertising:
            await self.device.stop_advertising()
        await self.device.start_advertising(
            auto_restart=True,
            advertising_data=self.advertisement.encode(),
            scan_response_data=scan_response(self.name),
            advertising_interval_min=20,
            advertising_interval_max=20,
        )

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.device.stop_advertising()

    async def accept(self) -> BleByteStream:
        """Return the stream of the next central that subscribes to our TX characteristic."""
        return await self._accepted.get()

    def _on_connection(self, connection: Connection) -> None:
        self._pending[connection.handle] = PendingStream()

        def lost(reason: int = 0) -> None:
            pending = self._pending.pop(connection.handle, None)
            if pending is not None:
                pending.connection_lost(hci.HCI_Constant.error_name(reason))

        connection.on(connection.EVENT_DISCONNECTION, lost)

    def _on_write(self, connection: Connection, value: bytes) -> None:
        pending = self._pending.get(connection.handle)
        if pending is not None:
            pending.feed(value)

    def _on_subscription(self, bearer: Any, notify: bool, indicate: bool) -> None:
        connection = getattr(bearer, "connection", bearer)
        if not notify:
            return
        pending = self._pending.setdefault(connection.handle, PendingStream())
        if pending.stream is not None:
            return

        async def write(value: bytes) -> None:
            await self.device.notify_subscriber(connection, self.tx, value)

        stream = BleByteStream(
            write=write,
            mtu=lambda: connection.att_mtu,
            disconnect=lambda: _await_disconnect(connection),
            peer_label=f"BLE {connection.peer_address}",
            window=self.window,
        )
        self._accepted.put_nowait(pending.attach(stream))


def _connected(connection: Connection) -> bool:
    return connection.device.connections.get(connection.handle) is connection


async def _disconnect(connection: Connection) -> None:
    if not _connected(connection):
        return
    with contextlib.suppress(Exception):
        await asyncio.wait_for(connection.disconnect(), 3.0)


async def _await_disconnect(connection: Connection, grace: float = 2.0) -> None:
    """Let the central end the connection (it owns it); end it ourselves after `grace`."""
    gone = asyncio.get_running_loop().create_future()
    connection.once(connection.EVENT_DISCONNECTION, lambda *_: gone.done() or gone.set_result(None))
    if not _connected(connection):
        return
    try:
        await asyncio.wait_for(gone, grace)
    except TimeoutError:
        await _disconnect(connection)


# -- central ---------------------------------------------------------------------


async def _whole(command: Any) -> Any:
    """Await HCI commands to their end even if the caller is cancelled meanwhile, then
    re-raise the cancellation: a command cut off before its reply leaves that reply to be
    matched with the next command (bumble then fails with InvalidStateError)."""
    task = asyncio.ensure_future(command)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


async def scan(
    device: Device, seconds: float = 2.0, stop_early: str | None = None
) -> list[Sighting]:
    """Scan for fieldkit peers and return them, strongest signal first.

    If `stop_early` is a short id (or prefix), return as soon as that peer is seen.
    """
    sightings = Sightings(stop_early)

    def on_advertisement(adv: Any) -> None:
        name = adv.data.get(AdvertisingData.Type.COMPLETE_LOCAL_NAME) or adv.data.get(
            AdvertisingData.Type.SHORTENED_LOCAL_NAME
        )
        ours = Advertisement.decode(bytes(adv.data))
        if ours is None and Advertisement.has_service(bytes(adv.data)):
            named = id_from_name(str(name) if name else None)
            ours = Advertisement(short_id=named) if named else None
        if ours is not None:
            sightings.add(ours, str(name) if name else None, int(adv.rssi), str(adv.address))

    device.on(device.EVENT_ADVERTISEMENT, on_advertisement)
    try:
        await _whole(device.start_scanning(filter_duplicates=False))
        await sightings.wait(seconds)
    finally:
        device.remove_listener(device.EVENT_ADVERTISEMENT, on_advertisement)
        with contextlib.suppress(Exception):
            await _whole(device.stop_scanning())
    return sightings.strongest_first()


async def connect(
    device: Device,
    address: str,
    *,
    mtu: int = MAX_MTU,
    window: int = DEFAULT_WINDOW,
    wait: float = 10.0,
) -> BleByteStream:
    """Connect to a fieldkit peripheral and return the link's byte stream.

    Raises TransportError if the peer cannot be reached or has no fieldkit service.
    """
    label = f"BLE {address}"
    try:
        connection = await asyncio.wait_for(
            device.connect(address, own_address_type=hci.OwnAddressType.RANDOM), wait
        )
    except Exception as exc:
        raise TransportError(f"Cannot connect to the Bluetooth peer {address}: {exc}") from exc
    pending = PendingStream()

    def lost(reason: int = 0) -> None:
        pending.connection_lost(hci.HCI_Constant.error_name(reason))

    connection.on(connection.EVENT_DISCONNECTION, lost)
    try:
        peer = Peer(connection)
        if mtu > DEFAULT_MTU:
            await asyncio.wait_for(peer.request_mtu(mtu), wait)
        await asyncio.wait_for(peer.discover_services([UUID(SERVICE_UUID)]), wait)
        services = peer.get_services_by_uuid(UUID(SERVICE_UUID))
        if not services:
            raise TransportError(f"The Bluetooth device {address} does not offer fieldkit.")
        await asyncio.wait_for(services[0].discover_characteristics(), wait)
        rx = _characteristic(services[0], RX_UUID, address)
        tx = _characteristic(services[0], TX_UUID, address)
        await asyncio.wait_for(peer.subscribe(tx, pending.feed), wait)
    except TransportError:
        await _disconnect(connection)
        raise
    except Exception as exc:
        await _disconnect(connection)
        raise TransportError(f"Setting up the link to {address} failed: {exc}") from exc

    async def write(value: bytes) -> None:
        await peer.write_value(rx, value, with_response=False)

    stream = BleByteStream(
        write=write,
        mtu=lambda: connection.att_mtu,
        disconnect=lambda: _disconnect(connection),
        peer_label=label,
        window=window,
    )
    return pending.attach(stream)


def _characteristic(service: Any, uuid: str, address: str) -> Any:
    found = [c for c in service.characteristics if c.uuid == UUID(uuid)]
    if not found:
        raise TransportError(f"The Bluetooth device {address} has an incomplete fieldkit service.")
    return found[0]


class BumbleRadio:
    """A bumble device as a `fieldkit.gossip.ble.sync.Radio`: scan, connect, advertise."""

    def __init__(self, device: Device, mtu: int = MAX_MTU, window: int = DEFAULT_WINDOW) -> None:
        self.device = device
        self.mtu = mtu
        self.window = window
        self._peripheral: BumblePeripheral | None = None
        self._scanning = asyncio.Lock()  # a new scan starts after the cancelled one stopped

    async def scan(self, seconds: float, stop_early: str | None = None) -> list[Sighting]:
        async with self._scanning:
            return await scan(self.device, seconds, stop_early)

    async def connect(self, address: str) -> BleByteStream:
        return await connect(self.device, address, mtu=self.mtu, window=self.window)

    async def advertise(
        self, device_id: str, name: str, connects: bool = False
    ) -> BumblePeripheral:
        """Start advertising; the GATT service is added once and reused by later calls."""
        if self._peripheral is None:
            self._peripheral = BumblePeripheral(
                self.device, device_id=device_id, name=name, mtu=self.mtu, window=self.window
            )
        self._peripheral.advertisement = replace(self._peripheral.advertisement, connects=connects)
        await self._peripheral.start()
        return self._peripheral
