"""Bluetooth LE peripheral role with bless (CoreBluetooth on macOS, BlueZ on Linux).

The only module that imports bless, and only when a peripheral starts. It serves the
same GATT service as ble_bumble. What bless cannot do shapes this module:

- It reports no connections, MTU or disconnections. A session starts with the first
  value a central writes (its HELLO); frame size comes from that HELLO (see ble_link);
  a vanished central shows up as the session's idle timeout.
- CoreBluetooth advertises only a local name and service UUIDs, no manufacturer data,
  so the short id travels in the name (`fk-<short id>`), which scanners also accept.
- It serves one central at a time.

This cannot be exercised without a Bluetooth adapter (none on the build machines);
tests cover the name encoding and the framing, and the bumble and bleak paths carry
the same link layer end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fieldkit.errors import TransportError
from fieldkit.gossip.ble.link import (
    DEFAULT_WINDOW,
    HELLO,
    MAX_VALUE_SIZE,
    RX_UUID,
    SERVICE_UUID,
    TX_UUID,
    advertised_name,
    short_id,
)
from fieldkit.gossip.ble.stream import BleByteStream

NO_STACK = (
    "No system Bluetooth stack answered (BlueZ's D-Bus socket is missing); "
    "a USB dongle works without it: --hci usb:0."
)


class BlessPeripheral:
    """The fieldkit GATT service on the system's Bluetooth stack; `accept()` yields streams."""

    def __init__(self, *, device_id: str, name: str, window: int = DEFAULT_WINDOW) -> None:
        self.local_name = advertised_name(short_id(device_id))
        self.name = name
        self.window = window
        self._server: Any = None
        self._stream: BleByteStream | None = None
        self._accepted: asyncio.Queue[BleByteStream] = asyncio.Queue()

    async def start(self) -> None:
        """Register the service and advertise. Raises TransportError if Bluetooth is unusable."""
        if self._server is not None:
            return
        try:
            from bless import (
                BlessServer,
                GATTAttributePermissions,
                GATTCharacteristicProperties,
            )
        except ImportError as exc:
            raise TransportError(
                "The peripheral role needs the bless package and a system Bluetooth stack."
            ) from exc
        try:
            server = BlessServer(name=self.local_name, loop=asyncio.get_running_loop())
            server.write_request_func = self._on_write
            await server.add_new_service(SERVICE_UUID)
            await server.add_new_characteristic(
                SERVICE_UUID,
                RX_UUID,
                GATTCharacteristicProperties.write_without_response,
                None,
                GATTAttributePermissions.writeable,
            )
            await server.add_new_characteristic(
                SERVICE_UUID,
                TX_UUID,
                GATTCharacteristicProperties.notify,
                None,
                GATTAttributePermissions.readable,
            )
            await server.start()
        except FileNotFoundError as exc:  # no D-Bus system socket: no BlueZ here
            raise TransportError(NO_STACK) from exc
        except Exception as exc:  # dbus, CoreBluetooth and permission errors alike
            raise TransportError(f"Cannot advertise over Bluetooth LE: {exc}") from exc
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.stop()
            self._server = None

    async def accept(self) -> BleByteStream:
        """Return the stream of the next central that greets us."""
        return await self._accepted.get()

    def _on_write(self, characteristic: Any, value: Any, **_: Any) -> None:
        data = bytes(value)
        if not data:
            return
        if data[0] == HELLO:  # a new central (or the same one, reconnected)
            if self._stream is not None:
                self._stream.connection_lost("a new central greeted")
            self._stream = self._new_stream()
            self._accepted.put_nowait(self._stream)
        if self._stream is not None:
            self._stream.feed(data)

    def _new_stream(self) -> BleByteStream:
        server = self._server

        async def write(value: bytes) -> None:
            characteristic = server.get_characteristic(TX_UUID)
            characteristic.value = bytearray(value)
            server.update_value(SERVICE_UUID, TX_UUID)

        async def disconnect() -> None:
            self._stream = None

        # The stack hides the MTU: frame to the maximum and let the central's HELLO cap it.
        return BleByteStream(
            write=write,
            mtu=lambda: MAX_VALUE_SIZE + 3,
            disconnect=disconnect,
            peer_label="a Bluetooth LE central",
            window=self.window,
        )
