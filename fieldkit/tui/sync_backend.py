"""The Peers screen's half of the backend: radios, discovery and sync, all through the one
sync API (fieldkit/gossip/sync.py), so a sync started on screen gets the same receive rules
as `fieldkit sync`. When a running agent of this home holds the radio (`fieldkit serve`),
BLE scans and syncs run there and report here as they would on this process's radio.
Mixed into TuiBackend; no textual here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fieldkit.errors import TransportError
from fieldkit.formats import parse_address
from fieldkit.tui.views import Outcome, PeerRow, SyncProgress, sync_result

if TYPE_CHECKING:
    from collections.abc import Sequence

    from fieldkit.server.client import AgentClient
    from fieldkit.services import Services


class AgentRadioError(TransportError):
    """The agent's radio refused or failed a request (busy with a listener, no controller)."""


class SyncBackend:
    """Radios, LAN discovery and sync for the Peers screen (mixed into TuiBackend)."""

    services: Services
    _radio: Any
    lan_interfaces: Sequence[str] | None

    def radio(self) -> Any:
        """Return the BLE radio: the one given, or the platform's (bleak and bless)."""
        if self._radio is not None:
            return self._radio
        from fieldkit.gossip.ble.sync import PlatformRadio

        return PlatformRadio()

    async def radio_agent(self) -> AgentClient | None:
        """Return the running agent of this home when it holds the radio for this process.

        None when a radio was given to this backend, FIELDKIT_NO_SERVER is set, or no
        agent of this home answers (then this process opens the platform's radio).
        """
        from fieldkit.server.client import find_agent, use_agent

        if self._radio is not None or not use_agent():
            return None
        return await asyncio.to_thread(find_agent, self.services.home)

    async def ble_scan(self, seconds: float) -> list[PeerRow]:
        """Scan for fieldkit peers over Bluetooth LE; rows carry the signal strength.

        Raises TransportError when Bluetooth is off, absent or not permitted, and
        AgentRadioError (one) with the agent's sentence when its radio refused or failed.
        """
        agent = await self.radio_agent()
        try:
            sightings = await (agent or self.radio()).scan(seconds)
        except ImportError as exc:
            raise TransportError("Bluetooth LE support is not installed.") from exc
        except TransportError as exc:
            if agent is None:
                raise
            raise AgentRadioError(str(exc)) from exc
        return [
            PeerRow(
                peer_id=s.short_id,
                name=s.name,
                address=f"BLE {s.rssi} dBm",
                trust="new",
                via="ble",
            )
            for s in sightings
        ]

    async def lan_discovery(self, on_peers: Callable[[list[PeerRow]], None]) -> None:
        """Browse the LAN for announced fieldkit peers until cancelled.

        Calls `on_peers` with every peer announced now (via "lan", address host:port,
        trust "new": the screen knows the trust of known peers) once browsing has started
        and after each change. Raises TransportError when mDNS cannot start.
        """
        from fieldkit.gossip.lan import LanBrowser

        own_id = self.services.identity.device_id
        async with LanBrowser(own_id, interfaces=self.lan_interfaces) as browser:
            on_peers([])
            async for _change in browser:
                on_peers(
                    [PeerRow(p.device_id, p.name, p.address, "new", "lan") for p in browser.peers]
                )

    # -- sync -------------------------------------------------------------------------

    def progress_tracker(
        self, on_progress: Callable[[SyncProgress], None]
    ) -> Callable[[Any], None]:
        """Wrap a SyncProgress callback as a gossip ProgressCallback (adds rate and resume)."""
        started: dict[str, tuple[float, int, bool]] = {}

        def track(update: Any) -> None:
            if update.packet_id not in started:
                # a session reports each packet once before its first chunk, with the bytes
                # already held from an earlier, interrupted transfer
                resumed = 0 < update.done < update.total
                started[update.packet_id] = (time.monotonic(), update.done, resumed)
            since, first, resumed = started[update.packet_id]
            elapsed = time.monotonic() - since
            rate = (update.done - first) / elapsed if elapsed > 0 else 0.0
            arrow = "<-" if update.direction == "received" else "->"
            on_progress(
                SyncProgress(
                    packet=f"{arrow} {update.name}",
                    done_bytes=update.done,
                    total_bytes=update.total,
                    rate_bps=rate,
                    resumed=resumed,
                    finished=update.done >= update.total,
                )
            )

        return track

    def sync_options(self) -> Any:
        """Return the options for a sync started from the screen: a person confirms peers."""
        from fieldkit.gossip.summary import SyncOptions

        policy = self.services.library.receive_policy()
        return SyncOptions(policy="open" if policy == "open" else "ask")

    async def sync(
        self,
        peer: str,
        on_progress: Callable[[SyncProgress], None],
        confirm: Callable[[str, str, str], Awaitable[bool]],
        *,
        ble: bool = False,
    ) -> Outcome:
        """Sync with a peer on the running event loop; return the result to show.

        `peer` is a LAN peer's 'host[:port]', or with `ble` a Bluetooth LE peer's short id
        (found, connected to and synced with; on the agent's radio when the agent of this
        home holds it: `radio_agent`). Raises TransportError when the address is bad or the
        peer cannot be reached.
        """
        from fieldkit.gossip.sync import DEFAULT_PORT, sync_ble_peer, sync_with

        options, progress = self.sync_options(), self.progress_tracker(on_progress)
        if not ble:
            host, port = parse_address(peer, DEFAULT_PORT)
            summary = await sync_with(host, port, self.services, options, progress, confirm)
        elif agent := await self.radio_agent():
            summary = await agent.sync(options, peer, progress, confirm, connect=True)
        else:
            summary = await sync_ble_peer(
                self.radio(), self.services, options, peer, progress, confirm
            )
        return sync_result(summary)

    async def listen_tcp(
        self,
        address: str,
        on_progress: Callable[[SyncProgress], None],
        confirm: Callable[[str, str, str], Awaitable[bool]],
        on_result: Callable[[Outcome], None],
        advertise: bool | None = None,
    ) -> AnnouncedListener:
        """Start accepting LAN syncs at 'host[:port]'; return the listener (close() stops it).

        The listener is announced on the LAN when `advertise` is True, or when it is None and
        the host is not a loopback address; a failed announcement leaves it unannounced.
        """
        from fieldkit.gossip.lan import LanAdvertiser, advertise_by_default
        from fieldkit.gossip.sync import DEFAULT_PORT, start_listener

        host, port = parse_address(address, DEFAULT_PORT, any_port=True)
        listener = await start_listener(
            self.services,
            host,
            port,
            options=self.sync_options(),
            on_summary=lambda summary: on_result(sync_result(summary)),
            progress=self.progress_tracker(on_progress),
            confirm=confirm,
        )
        announced = AnnouncedListener(listener)
        if advertise or (advertise is None and advertise_by_default(host)):
            ident = self.services.identity
            advertiser = LanAdvertiser(
                ident.device_id,
                ident.name,
                listener.port,
                host=host,
                interfaces=self.lan_interfaces,
            )
            try:
                announced.advertiser = await advertiser.start()
            except TransportError as exc:
                announced.note = str(exc)
        return announced


class AnnouncedListener:
    """A TCP sync listener and its LAN announcement (`advertiser` None: not announced)."""

    def __init__(self, listener: Any) -> None:
        self.listener = listener
        self.advertiser: Any = None
        self.note = ""  # why the listener is not announced, when announcing failed

    @property
    def port(self) -> int:
        return int(self.listener.port)

    async def wait(self) -> None:
        await self.listener.wait()

    async def close(self) -> None:
        """Withdraw the announcement, then stop listening."""
        if self.advertiser is not None:
            await self.advertiser.stop()
        await self.listener.close()
