"""A bleak backend that drives a bumble device: bleak's central code on an emulated radio.

Pass these classes as bleak's `backend=` argument with the bumble device as a keyword:

    BleakScanner(callback, backend=BumbleBleakScanner, bumble_device=device)
    BleakClient(address, backend=BumbleBleakClient, bumble_device=device)

Everything above bleak's backend interface (fieldkit/gossip/ble/central_bleak.py and bleak
itself) then runs unchanged against a real bumble host stack and controller, so the
bleak central path is tested without Bluetooth hardware. Like BlueZ, `connect` runs the
ATT MTU exchange itself (requesting `bumble_mtu`, default 517).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid as uuid_module
from collections.abc import Callable
from typing import Any

from bleak.assigned_numbers import CHARACTERISTIC_PROPERTIES
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError
from bumble import hci
from bumble.core import AdvertisingData
from bumble.device import Connection, Device, Peer

DEFAULT_ATT_MTU = 23


def _uuid_str(uuid: Any) -> str:
    """Return a bumble UUID as bleak's 128-bit lowercase string."""
    return str(uuid_module.UUID(bytes=bytes(reversed(uuid.uuid_128_bytes))))


class BumbleBleakScanner(BaseBleakScanner):
    """bleak scanner backend over a bumble `Device` (keyword `bumble_device`)."""

    def __init__(
        self,
        detection_callback: Any,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        *,
        bumble_device: Device,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._device = bumble_device
        self._active = scanning_mode != "passive"

    async def start(self) -> None:
        self.seen_devices = {}
        self._device.on(self._device.EVENT_ADVERTISEMENT, self._on_advertisement)
        await self._device.start_scanning(active=self._active, filter_duplicates=False)

    async def stop(self) -> None:
        self._device.remove_listener(self._device.EVENT_ADVERTISEMENT, self._on_advertisement)
        with contextlib.suppress(Exception):
            await self._device.stop_scanning()

    def _on_advertisement(self, adv: Any) -> None:
        data: AdvertisingData = adv.data
        uuids = [
            _uuid_str(u)
            for kind in (
                AdvertisingData.Type.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                AdvertisingData.Type.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                AdvertisingData.Type.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
            )
            for u in (data.get(kind) or [])
        ]
        if not self.is_allowed_uuid(uuids):
            return
        manufacturer: dict[int, bytes] = {}
        for company, payload in data.get_all(AdvertisingData.Type.MANUFACTURER_SPECIFIC_DATA):
            manufacturer[company] = bytes(payload)
        name = data.get(AdvertisingData.Type.COMPLETE_LOCAL_NAME) or data.get(
            AdvertisingData.Type.SHORTENED_LOCAL_NAME
        )
        advertisement = AdvertisementData(
            local_name=str(name) if name else None,
            manufacturer_data=manufacturer,
            service_data={},
            service_uuids=uuids,
            tx_power=None,
            rssi=int(adv.rssi),
            platform_data=(adv,),
        )
        address = str(adv.address)
        device = self.create_or_update_device(
            address, address, advertisement.local_name, adv, advertisement
        )
        self.call_detection_callbacks(device, advertisement)


class BumbleBleakClient(BaseBleakClient):
    """bleak client backend over a bumble `Device` (keyword `bumble_device`)."""

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None,
        timeout: float,
        bumble_device: Device,
        bumble_mtu: int = 517,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        self._device = bumble_device
        self._mtu_request = bumble_mtu
        self._connection: Connection | None = None
        self._peer: Peer | None = None

    @property
    def name(self) -> str:
        return self.address

    @property
    def mtu_size(self) -> int:
        return self._connection.att_mtu if self._connection else DEFAULT_ATT_MTU

    @property
    def is_connected(self) -> bool:
        connection = self._connection
        return (
            connection is not None and self._device.connections.get(connection.handle) is connection
        )

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        try:
            connection = await asyncio.wait_for(
                self._device.connect(self.address, own_address_type=hci.OwnAddressType.RANDOM),
                self._timeout,
            )
        except Exception as exc:
            raise BleakError(f"could not connect to {self.address}: {exc}") from exc
        self._connection = connection
        connection.on(connection.EVENT_DISCONNECTION, self._on_disconnection)
        self._peer = Peer(connection)
        if self._mtu_request > DEFAULT_ATT_MTU:
            await self._peer.request_mtu(self._mtu_request)
        self.services = await self._discover(self._peer)

    def _on_disconnection(self, reason: int = 0) -> None:
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    async def _discover(self, peer: Peer) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        await peer.discover_services()
        for service in peer.services:
            bleak_service = BleakGATTService(service, service.handle, _uuid_str(service.uuid))
            collection.add_service(bleak_service)
            await service.discover_characteristics()
            for char in service.characteristics:
                properties = [
                    name for bit, name in CHARACTERISTIC_PROPERTIES.items() if char.properties & bit
                ]
                bleak_char = BleakGATTCharacteristic(
                    char,
                    char.handle,
                    _uuid_str(char.uuid),
                    properties,
                    lambda: self.mtu_size - 3,
                    bleak_service,
                )
                collection.add_characteristic(bleak_char)
                await char.discover_descriptors()
                for desc in char.descriptors:
                    collection.add_descriptor(
                        BleakGATTDescriptor(desc, desc.handle, _uuid_str(desc.type), bleak_char)
                    )
        return collection

    async def disconnect(self) -> None:
        connection = self._connection
        if connection is None or not self.is_connected:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connection.disconnect(), 3.0)

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("fieldkit links do not pair")

    async def unpair(self) -> None:
        raise NotImplementedError("fieldkit links do not pair")

    def _require_peer(self) -> Peer:
        if self._peer is None or not self.is_connected:
            raise BleakError("not connected")
        return self._peer

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        return bytearray(await self._require_peer().read_value(characteristic.obj))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        return bytearray(await self._require_peer().read_value(descriptor.obj))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: Any, response: bool
    ) -> None:
        await self._require_peer().write_value(
            characteristic.obj, bytes(data), with_response=response
        )

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        await self._require_peer().write_value(descriptor.obj, bytes(data), with_response=True)

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        await self._require_peer().subscribe(
            characteristic.obj, lambda value: callback(bytearray(value))
        )

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        await self._require_peer().unsubscribe(characteristic.obj)
