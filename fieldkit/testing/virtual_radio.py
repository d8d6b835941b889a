"""Test double: bumble controllers joined in-process, optionally paced like a real radio.

`VirtualRadio` puts bumble controllers on one in-process link (each `device()` is a
separate radio); `ThrottledLink` delivers each packet at a set air rate and connection
interval, so benchmarks and tests see a link with a real radio's capacity.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bumble import hci
from bumble.controller import Controller
from bumble.device import Device
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from fieldkit.gossip.ble.radio_bumble import DLE_OCTETS, device_address

__all__ = ["LocalLink", "ThrottledLink", "VirtualRadio"]


class _Air:
    """One connection's air: a queue per direction and a virtual clock."""

    def __init__(self) -> None:
        self.queues: dict[tuple[str, str], deque[tuple[int, Callable[[], None]]]] = {}
        self.busy = False
        self.clock = 0.0  # when the packet on the air now ends
        self.last: tuple[str, str] | None = None


class ThrottledLink(LocalLink):
    """A virtual link that delivers each packet at a set air rate and connection interval.

    `rate` is the link's payload capacity in bytes per second (L2CAP PDU bytes, i.e.
    ATT values plus their 7 header bytes). Both directions of a connection share the
    air and take turns packet by packet when both have traffic, as central and
    peripheral alternate within a connection event. Air that falls idle wakes at the next
    connection event (`interval` seconds apart); busy air runs back to back. Control
    PDUs (disconnect) queue behind data, so a disconnect never overtakes earlier data.
    """

    def __init__(self, rate: float = 100_000.0, interval: float = 0.0075) -> None:
        super().__init__()
        self.rate = rate
        self.interval = interval
        self._airs: dict[frozenset[str], _Air] = {}
        self.bytes_carried = 0

    def _enqueue(self, src: Any, dst: Any, size: int, deliver: Callable[[], None]) -> None:
        direction = (str(src), str(dst))
        key = frozenset(direction)
        air = self._airs.setdefault(key, _Air())
        air.queues.setdefault(direction, deque()).append((size, deliver))
        if air.busy:
            return
        air.busy = True
        loop = asyncio.get_running_loop()
        now = loop.time()
        event = math.ceil(now / self.interval) * self.interval if self.interval else now
        air.clock = max(air.clock, event)
        loop.call_at(air.clock, self._next, air)

    def _next(self, air: _Air) -> None:
        waiting = [d for d, q in air.queues.items() if q]
        if not waiting:
            air.busy = False
            return
        direction = next((d for d in waiting if d != air.last), waiting[0])
        air.last = direction
        size, deliver = air.queues[direction].popleft()
        air.clock += size / self.rate
        asyncio.get_running_loop().call_at(air.clock, self._done, air, deliver)

    def _done(self, air: _Air, deliver: Callable[[], None]) -> None:
        deliver()
        self._next(air)

    def send_acl_data(self, sender_controller, destination_address, transport, data):  # noqa: ANN001
        self.bytes_carried += len(data)
        parent = super().send_acl_data
        self._enqueue(
            sender_controller.random_address,
            destination_address,
            len(data),
            functools.partial(parent, sender_controller, destination_address, transport, data),
        )

    def send_ll_control_pdu(self, sender_address, receiver_address, packet):  # noqa: ANN001
        parent = super().send_ll_control_pdu
        self._enqueue(
            sender_address,
            receiver_address,
            2,
            functools.partial(parent, sender_address, receiver_address, packet),
        )


@dataclass
class VirtualRadio:
    """Bumble controllers on one in-process link: each `device()` is a separate radio."""

    link: LocalLink = field(default_factory=LocalLink)
    controllers: list[Controller] = field(default_factory=list)

    def device(self, device_id: str, name: str = "fieldkit") -> Device:
        """Return a new (not yet powered) bumble device on this link."""
        address = device_address(device_id)
        controller = Controller(f"C{len(self.controllers)}", link=self.link)
        controller.le_acl_data_packet_length = DLE_OCTETS
        self.controllers.append(controller)
        host = Host(controller, AsyncPipeSink(controller))
        return Device(name=name, address=hci.Address(address), host=host)

    def drop_all(self) -> None:
        """Cut every connection on the link at once, as when a peer walks out of range."""
        for controller in self.controllers:
            for connection in list(controller.le_connections.values()):
                controller.on_le_disconnected(connection, hci.HCI_CONNECTION_TIMEOUT_ERROR)
