"""What a LAN announcement says: the peer a TXT record describes, and where to announce.

Pure data and parsing for fieldkit.gossip.lan (which owns zeroconf): `parse_txt` bounds
every field of an announcement before it decodes it, so a hostile one is ignored, never an
error; nothing in an announcement is trusted (the gossip handshake proves who is there).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fieldkit.errors import TransportError
from fieldkit.formats import is_device_name, is_loopback, join_address
from fieldkit.store.identity import is_device_id

TXT_ID = "id"
TXT_NAME = "name"
TXT_PROTO = "proto"
MAX_NAME_BYTES = 250  # a TXT string holds 255 bytes, "name=" included
_PROTO = re.compile(r"[0-9]{1,4}")
_WILDCARDS = {"", "0.0.0.0", "::"}
INTERFACES_SETTING = "lan_interfaces"  # library setting: addresses to browse on (unset: all)


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
        return join_address(self.host, self.port)

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
    if not is_device_id(device_id) or not _PROTO.fullmatch(proto):
        return None
    if not is_device_name(name):
        return None
    return LanPeer(device_id, name, host, port, int(proto))


def txt_name(name: str) -> str:
    """Cut a device name to what one TXT string holds, at a character boundary."""
    return name.encode("utf-8")[:MAX_NAME_BYTES].decode("utf-8", "ignore")


def local_addresses(host: str, interfaces: Sequence[str] | None) -> list[str]:
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
    found = [a for a in machine_addresses() if not ipaddress.ip_address(a).is_loopback]
    return sorted(a for a in found if ipaddress.ip_address(a).version == 4) or ["127.0.0.1"]


def machine_addresses() -> set[str]:
    """Return the IP addresses this machine's interfaces have now (loopback included)."""
    import ifaddr  # zeroconf's own dependency

    found: set[str] = set()
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:  # an IPv6 address comes as (address, flowinfo, scope id)
            address = ip.ip if ip.is_IPv4 else ip.ip[0]
            found.add(str(ipaddress.ip_address(address.split("%")[0])))
    return found


def announce_on(host: str) -> list[str] | None:
    """Return the interfaces to announce a listener on: the one it is bound to, else all."""
    if host.strip("[]").lower() == "localhost":
        return ["127.0.0.1"]
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))] if host not in _WILDCARDS else None
    except ValueError:
        return None
