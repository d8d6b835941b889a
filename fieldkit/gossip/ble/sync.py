"""Meeting peers over Bluetooth LE: radios, scanning, and the three ways a session starts.

Callers go through fieldkit/gossip/sync.py (`sync_ble`, `sync_ble_peer`, `serve_ble`), which
sets the receive rules and hands these functions a session runner:

    async with open_radio(device_id, name, hci="usb:0") as radio:
        summary = await sync_ble_peer(radio, device, options, peer="k7qx2mza")

A radio is bumble on an HCI transport when `hci` is given (a USB dongle, or bumble
controllers served over TCP), otherwise the platform stack: bleak as central, bless as
peripheral. Either way the gossip session runs unchanged on a `BleByteStream`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Protocol

from fieldkit.errors import TransportError
from fieldkit.gossip.ble.link import Role, Sighting, choose_role, short_id
from fieldkit.gossip.summary import SyncSummary

if TYPE_CHECKING:
    from fieldkit.gossip.stream import ByteStream
    from fieldkit.gossip.sync import SessionRunner

DEFAULT_SCAN_SECONDS = 10.0
SCAN_SLICE = 0.5  # seconds per scan round while also advertising


class Radio(Protocol):
    """What a BLE stack offers a session: scan, connect as central, serve as peripheral."""

    async def scan(self, seconds: float, stop_early: str | None = None) -> list[Sighting]: ...

    async def connect(self, address: str) -> ByteStream: ...

    async def advertise(self, device_id: str, name: str, connects: bool = False) -> Any:
        """Start advertising; return an object whose `accept()` yields each central's stream.

        `connects` tells scanners this device also connects, so the role rule applies.
        """
        ...


class PlatformRadio:
    """bleak (central) and bless (peripheral) on the operating system's Bluetooth stack."""

    async def scan(self, seconds: float, stop_early: str | None = None) -> list[Sighting]:
        from fieldkit.gossip.ble import central_bleak as ble_bleak

        return await ble_bleak.scan(seconds, stop_early=stop_early)

    async def connect(self, address: str) -> ByteStream:
        from fieldkit.gossip.ble import central_bleak as ble_bleak

        return await ble_bleak.connect(address)

    async def advertise(self, device_id: str, name: str, connects: bool = False) -> Any:
        # CoreBluetooth carries no manufacturer data, so a bless peripheral always reads as
        # listen-only and scanners connect to it.
        from fieldkit.gossip.ble.peripheral_bless import BlessPeripheral

        peripheral = BlessPeripheral(device_id=device_id, name=name)
        await peripheral.start()
        return peripheral


@contextlib.asynccontextmanager
async def open_radio(device_id: str, name: str, hci: str | None = None) -> AsyncIterator[Radio]:
    """Yield the radio for `hci` (a bumble HCI spec such as usb:0), or the platform's.

    Raises TransportError if the controller cannot be opened.
    """
    if hci is None:
        yield PlatformRadio()
        return
    from fieldkit.gossip.ble.radio_bumble import BumbleRadio, open_hci_device

    async with open_hci_device(hci, device_id, name) as device:
        yield BumbleRadio(device)


def matches(sighting: Sighting, peer: str) -> bool:
    """True if `peer` (a device id, its short id, or a prefix of it) names this sighting."""
    wanted = peer.strip().lower()
    return sighting.short_id.startswith(wanted[: len(sighting.short_id)])


async def find_peer(radio: Radio, peer: str | None, seconds: float) -> Sighting:
    """Scan until `peer` (or, without one, any fieldkit peer) is seen; return the sighting.

    Raises TransportError if nobody matching answers within `seconds`.
    """
    stop_early = peer.strip().lower()[:8] if peer else None
    sightings = await radio.scan(seconds, stop_early=stop_early or "")  # "" = first seen
    found = [s for s in sightings if peer is None or matches(s, peer)]
    if not found:
        raise _nobody_met(peer, seconds)
    return found[0]


def _nobody_met(peer: str | None, seconds: float) -> TransportError:
    """Return the error for a scan that met no matching peer."""
    who = f"the peer {peer}" if peer else "any fieldkit peer"
    return TransportError(f"Bluetooth LE found no sign of {who} within {seconds:g} seconds.")


async def connect_and_run(
    radio: Radio,
    run: SessionRunner,
    peer: str | None = None,
    scan_seconds: float = DEFAULT_SCAN_SECONDS,
) -> SyncSummary:
    """Find the peer, connect as central and run one session; return its summary.

    Raises TransportError only if the peer cannot be found or connected.
    """
    sighting = await find_peer(radio, peer, scan_seconds)
    stream = await radio.connect(sighting.address)
    stream.peer_label = f"{sighting.name or sighting.short_id} over BLE ({sighting.address})"
    return await run(stream)


async def meet_and_run(
    radio: Radio,
    device_id: str,
    name: str,
    run: SessionRunner,
    peer: str | None = None,
    scan_seconds: float = DEFAULT_SCAN_SECONDS,
) -> SyncSummary:
    """Advertise and scan at once; run one session with whichever side the role rule picks.

    A listen-only peer is always connected to. Between two devices that both connect,
    the one whose short id sorts lower connects and the other waits (`choose_role`).
    Raises TransportError if no peer is met within `scan_seconds`.
    """
    mine = short_id(device_id)
    peripheral = await radio.advertise(device_id, name, connects=True)
    accepting = asyncio.ensure_future(peripheral.accept())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + scan_seconds
    try:
        while loop.time() < deadline and not accepting.done():
            for sighting in await radio.scan(SCAN_SLICE):
                if sighting.short_id == mine or (peer and not matches(sighting, peer)):
                    continue
                if sighting.connects and choose_role(mine, sighting.short_id) is Role.PERIPHERAL:
                    continue  # the peer connects to us
                if accepting.done():
                    break
                accepting.cancel()
                await peripheral.stop()
                stream = await radio.connect(sighting.address)
                stream.peer_label = f"{sighting.name or sighting.short_id} over BLE"
                return await run(stream)
        if accepting.done() and not accepting.cancelled():
            return await run(accepting.result())
        raise _nobody_met(peer, scan_seconds)
    finally:
        accepting.cancel()
        with contextlib.suppress(Exception):
            await peripheral.stop()


async def advertise_and_serve(
    radio: Radio,
    device_id: str,
    name: str,
    run: SessionRunner,
    once: bool = False,
    on_summary: Callable[[SyncSummary], None] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> list[SyncSummary]:
    """Advertise and run a session with each central that connects, one at a time.

    Returns the summaries after the first authenticated session with `once`; otherwise
    runs until cancelled.
    """
    peripheral = await radio.advertise(device_id, name)
    if on_ready is not None:
        on_ready()
    summaries: list[SyncSummary] = []
    claims: set[str] = set()
    try:
        while True:
            stream = await peripheral.accept()
            summary = await run(stream, claims)
            summaries.append(summary)
            if on_summary is not None:
                on_summary(summary)
            if once and summary.peer_id:
                return summaries
    finally:
        with contextlib.suppress(Exception):
            await peripheral.stop()
