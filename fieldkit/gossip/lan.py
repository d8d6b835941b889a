"""LAN discovery over mDNS / DNS-SD: announce a TCP listener, find the ones nearby.

The only module that imports zeroconf (inside functions, so importing this one is cheap).

    async with LanAdvertiser(device_id, name, port, host="0.0.0.0"):
        await listener.wait()

    async with LanBrowser(own_id=my_id) as browser:
        async for change in browser:   # LanChange(peer, present)
            ...

Discovery only yields an address to try. Nothing in an announcement is trusted: the gossip
handshake proves who is at that address (docs/PROTOCOL.md, "LAN discovery").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fieldkit.errors import TransportError
from fieldkit.gossip.lan_peers import (
    INTERFACES_SETTING,
    TXT_ID,
    TXT_NAME,
    TXT_PROTO,
    LanChange,
    LanPeer,
    advertise_by_default,
    announce_on,
    check_interfaces,
    configured_interfaces,
    local_addresses,
    parse_txt,
    txt_name,
)
from fieldkit.gossip.protocol import PROTOCOL_VERSION

SERVICE_TYPE = "_fieldkit._tcp.local."
MAX_PEERS = 256  # services tracked at once; more are ignored until some leave
RESOLVE_TIMEOUT_MS = 3000
__all__ = [  # the announcement's data live in fieldkit.gossip.lan_peers; callers import here
    "INTERFACES_SETTING",
    "LanAdvertiser",
    "LanBrowser",
    "LanChange",
    "LanPeer",
    "advertise_by_default",
    "check_interfaces",
    "configured_interfaces",
    "discover",
    "parse_txt",
]

log = logging.getLogger(__name__)


def _zeroconf_interfaces(interfaces: Sequence[str] | None) -> Any:
    from zeroconf import InterfaceChoice

    if interfaces is None:
        return InterfaceChoice.All
    if not interfaces:
        raise TransportError("LAN discovery needs at least one network interface.")
    return list(interfaces)


def _start_zeroconf(interfaces: Sequence[str] | None) -> Any:
    """Return a started AsyncZeroconf on the running loop; TransportError if it cannot start."""
    try:
        from zeroconf.asyncio import AsyncZeroconf
    except ImportError as exc:
        raise TransportError("LAN discovery needs the zeroconf package.") from exc
    try:
        return AsyncZeroconf(interfaces=_zeroconf_interfaces(interfaces))
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        where = f" on {', '.join(interfaces)}" if interfaces else ""
        raise TransportError(f"Cannot start LAN discovery (mDNS){where}: {reason}.") from None


class LanAdvertiser:
    """Announces one TCP sync listener as `_fieldkit._tcp.local.` until stopped.

    `host` is the address the listener is bound to (a wildcard announces every address of
    the chosen interfaces); `interfaces` lists interface addresses (None: all). The TXT
    record carries the device id, the device name and the gossip protocol version.
    """

    def __init__(
        self,
        device_id: str,
        name: str,
        port: int,
        *,
        host: str = "0.0.0.0",
        interfaces: Sequence[str] | None = None,
        version: int = PROTOCOL_VERSION,
    ) -> None:
        self.device_id = device_id
        self.name = name
        self.port = port
        self.host = host
        self.interfaces = announce_on(host) if interfaces is None else list(interfaces)
        self.version = version
        self.addresses: list[str] = []
        self._zc: Any = None
        self._info: Any = None

    @property
    def service_name(self) -> str:
        return f"{self.device_id}.{SERVICE_TYPE}"

    async def start(self) -> LanAdvertiser:
        """Register the service and wait for its announcements; TransportError on failure."""
        from zeroconf import Error as ZeroconfError
        from zeroconf import NonUniqueNameException
        from zeroconf.asyncio import AsyncServiceInfo

        self.addresses = local_addresses(self.host, self.interfaces)
        self._info = AsyncServiceInfo(
            SERVICE_TYPE,
            self.service_name,
            port=self.port,
            properties={
                TXT_ID: self.device_id,
                TXT_NAME: txt_name(self.name),
                TXT_PROTO: str(self.version),
            },
            server=f"fieldkit-{self.device_id}.local.",
            parsed_addresses=self.addresses,
        )
        self._zc = _start_zeroconf(self.interfaces)
        try:
            await (await self._zc.async_register_service(self._info))
        except NonUniqueNameException:
            await self._close()
            raise TransportError(
                f"Device {self.device_id} is already announced on the LAN "
                "(another listener with this home?)."
            ) from None
        except (ZeroconfError, OSError) as exc:
            await self._close()
            raise TransportError(
                f"Cannot announce this device on the LAN ({exc or type(exc).__name__})."
            ) from None
        return self

    async def stop(self) -> None:
        """Send the goodbye (peers drop this device at once) and close; safe to call twice."""
        if self._zc is None:
            return
        with contextlib.suppress(Exception):  # a closed network must not block shutdown
            await (await self._zc.async_unregister_service(self._info))
        await self._close()

    async def _close(self) -> None:
        zc, self._zc = self._zc, None
        if zc is not None:
            with contextlib.suppress(Exception):
                await zc.async_close()

    async def __aenter__(self) -> LanAdvertiser:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class LanBrowser:
    """Finds `_fieldkit._tcp.local.` services: iterate for changes, or read `peers`.

    Announcements from `own_id` and announcements that fail `parse_txt` are ignored.
    """

    def __init__(
        self, own_id: str | None = None, *, interfaces: Sequence[str] | None = None
    ) -> None:
        self.own_id = own_id
        self.interfaces = None if interfaces is None else list(interfaces)
        self._found: dict[str, LanPeer] = {}
        self._changes: asyncio.Queue[LanChange | None] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._zc: Any = None
        self._browser: Any = None

    @property
    def peers(self) -> list[LanPeer]:
        """Return the peers announced now, sorted by name."""
        return sorted(self._found.values(), key=lambda p: (p.name, p.device_id, p.host))

    async def start(self) -> LanBrowser:
        """Start browsing on the running loop; TransportError if mDNS cannot start."""
        from zeroconf.asyncio import AsyncServiceBrowser

        self._zc = _start_zeroconf(self.interfaces)
        try:
            self._browser = AsyncServiceBrowser(
                self._zc.zeroconf, SERVICE_TYPE, handlers=[self._on_service]
            )
        except OSError as exc:
            await self.stop()
            raise TransportError(f"Cannot browse the LAN ({exc.strerror}).") from None
        return self

    async def stop(self) -> None:
        """Stop browsing and end any iteration; safe to call twice."""
        for task in list(self._tasks):
            task.cancel()
        browser, self._browser = self._browser, None
        zc, self._zc = self._zc, None
        with contextlib.suppress(Exception):  # closing must not fail on a dead network
            if browser is not None:
                await browser.async_cancel()
            if zc is not None:
                await zc.async_close()
        self._changes.put_nowait(None)

    async def __aenter__(self) -> LanBrowser:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def __aiter__(self) -> AsyncIterator[LanChange]:
        while (change := await self._changes.get()) is not None:
            yield change

    def _on_service(self, zeroconf: Any, service_type: str, name: str, state_change: Any) -> None:
        """zeroconf's handler, called on the loop: resolve new services, drop gone ones."""
        from zeroconf import ServiceStateChange

        if state_change is ServiceStateChange.Removed:
            self._forget(name)
            return
        if name not in self._found and len(self._found) >= MAX_PEERS:
            return
        task = asyncio.get_running_loop().create_task(self._resolve(service_type, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, service_type: str, name: str) -> None:
        from zeroconf import IPVersion
        from zeroconf.asyncio import AsyncServiceInfo

        zc = self._zc
        if zc is None:
            return
        info = AsyncServiceInfo(service_type, name)
        try:
            if not await info.async_request(zc.zeroconf, RESOLVE_TIMEOUT_MS):
                return
            hosts = info.parsed_addresses(IPVersion.V4Only) or info.parsed_scoped_addresses(
                IPVersion.V6Only
            )
            peer = parse_txt(info.properties, hosts[0] if hosts else None, info.port)
        except asyncio.CancelledError:
            raise
        except Exception:  # a malformed announcement from the network: ignore it, never crash
            log.debug("ignoring the announcement %r", name, exc_info=True)
            return
        if peer is None or peer.device_id == self.own_id:
            self._forget(name)
            return
        if self._found.get(name) != peer:
            self._found[name] = peer
            self._changes.put_nowait(LanChange(peer, present=True))

    def _forget(self, name: str) -> None:
        peer = self._found.pop(name, None)
        if peer is not None:
            self._changes.put_nowait(LanChange(peer, present=False))


async def discover(
    seconds: float, own_id: str | None = None, interfaces: Sequence[str] | None = None
) -> list[LanPeer]:
    """Browse for `seconds`; return the peers announced at the end, sorted by name.

    Raises TransportError when mDNS cannot start.
    """
    async with LanBrowser(own_id, interfaces=interfaces) as browser:
        await asyncio.sleep(seconds)
        return browser.peers
