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
import ipaddress
import logging
import re
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from fieldkit.errors import TransportError
from fieldkit.gossip.protocol import PROTOCOL_VERSION

SERVICE_TYPE = "_fieldkit._tcp.local."
TXT_ID = "id"
TXT_NAME = "name"
TXT_PROTO = "proto"
MAX_NAME_CHARS = 64  # the rule for a device name (fieldkit.store.identity)
MAX_NAME_BYTES = 250  # a TXT string holds 255 bytes, "name=" included
MAX_PEERS = 256  # services tracked at once; more are ignored until some leave
RESOLVE_TIMEOUT_MS = 3000
_DEVICE_ID = re.compile(r"[a-z2-7]{16}")
_PROTO = re.compile(r"[0-9]{1,4}")
_WILDCARDS = {"", "0.0.0.0", "::"}
INTERFACES_SETTING = "lan_interfaces"  # library setting: addresses to browse on (unset: all)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LanPeer:
    """A fieldkit listener announced on the LAN (what it claims; nothing is verified)."""

    device_id: str
    name: str
    host: str
    port: int
    version: int

    @property
    def address(self) -> str:
        """Return 'host:port' ('[v6]:port' for IPv6), as `fieldkit sync` takes it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.device_id,
            "name": self.name,
            "host": self.host,
            "port": self.port,
            "address": self.address,
            "version": self.version,
        }


@dataclass(frozen=True)
class LanChange:
    """A peer appeared (or changed) when `present`, or left when not."""

    peer: LanPeer
    present: bool


def is_loopback(host: str) -> bool:
    """Return True for 'localhost' and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def configured_interfaces(library: Any) -> list[str] | None:
    """Return the interface addresses set with `fieldkit peers lan`, or None for all."""
    value = library.get_setting(INTERFACES_SETTING)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def check_interfaces(addresses: Sequence[str]) -> list[str]:
    """Return the addresses as IP address strings; TransportError for one that is not."""
    out = []
    for address in addresses:
        try:
            out.append(str(ipaddress.ip_address(address.strip())))
        except ValueError:
            raise TransportError(
                f"{address!r} is not an interface address (e.g. 192.168.1.20)."
            ) from None
    return out


def advertise_by_default(host: str) -> bool:
    """Return whether a listener on `host` is announced unless told otherwise.

    A loopback listener is private to this machine, so announcing it is pointless; any
    other listening address (0.0.0.0, a LAN address) is there for peers to reach.
    """
    return not is_loopback(host)


def parse_txt(
    properties: dict[bytes, bytes | None], host: str | None, port: int | None
) -> LanPeer | None:
    """Return the peer an announcement describes, or None if any field is missing or bad.

    Bounds every field before decoding it: a hostile announcement is ignored, never an error.
    """
    raw_id = properties.get(TXT_ID.encode())
    raw_name = properties.get(TXT_NAME.encode())
    raw_proto = properties.get(TXT_PROTO.encode())
    if raw_id is None or raw_name is None or raw_proto is None or not host:
        return None
    if len(raw_id) > 16 or len(raw_proto) > 4 or len(raw_name) > MAX_NAME_BYTES:
        return None
    if not isinstance(port, int) or not 0 < port < 65536:
        return None
    try:
        device_id = raw_id.decode("ascii")
        proto = raw_proto.decode("ascii")
        name = raw_name.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not _DEVICE_ID.fullmatch(device_id) or not _PROTO.fullmatch(proto):
        return None
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        return None
    return LanPeer(device_id, name, host, port, int(proto))


def _txt_name(name: str) -> str:
    """Cut a device name to what one TXT string holds, at a character boundary."""
    return name.encode("utf-8")[:MAX_NAME_BYTES].decode("utf-8", "ignore")


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


def _local_addresses(host: str, interfaces: Sequence[str] | None) -> list[str]:
    """Return the addresses to announce for a listener bound to `host`."""
    if host not in _WILDCARDS:
        try:
            return [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(host, None, socket.AF_INET)
        except OSError as exc:
            raise TransportError(f"Cannot announce {host}: {exc.strerror}.") from None
        return sorted({str(info[4][0]) for info in infos})
    if interfaces is not None:
        return list(interfaces)
    import ifaddr  # zeroconf's own dependency

    found = [
        ip.ip
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if ip.is_IPv4 and not ipaddress.ip_address(ip.ip).is_loopback
    ]
    return sorted(set(found)) or ["127.0.0.1"]


def _announce_on(host: str) -> list[str] | None:
    """Return the interfaces to announce a listener on: the one it is bound to, else all."""
    if host.strip("[]").lower() == "localhost":
        return ["127.0.0.1"]
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))] if host not in _WILDCARDS else None
    except ValueError:
        return None


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
        self.interfaces = _announce_on(host) if interfaces is None else list(interfaces)
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

        self.addresses = _local_addresses(self.host, self.interfaces)
        self._info = AsyncServiceInfo(
            SERVICE_TYPE,
            self.service_name,
            port=self.port,
            properties={
                TXT_ID: self.device_id,
                TXT_NAME: _txt_name(self.name),
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
