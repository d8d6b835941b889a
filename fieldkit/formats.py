"""How fieldkit prints sizes, shows text from others and reads addresses: one rule each,
for the CLI and the TUI."""

from __future__ import annotations

import ipaddress
import re

from fieldkit.errors import TransportError

# C0 and C1 control characters and DEL: in text a terminal prints, they can move the cursor,
# clear the screen, set the window title (ESC ] ... BEL) or ring the bell.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def control_chars(text: str, allowed: str = "") -> list[str]:
    """Return the control characters in `text` other than those in `allowed` (e.g. "\\n")."""
    return [c for c in _CONTROL.findall(text) if c not in allowed]


def shown_text(text: str) -> str:
    """Return text from a peer or a file as it may be printed: every control character but
    a newline or a tab replaced by U+FFFD, so it cannot drive the terminal."""
    return _CONTROL.sub(lambda m: m.group() if m.group() in "\n\t" else "\ufffd", text)


DEVICE_NAME_CHARS = 64

# Where a sentence of an answer ends: a stop, "!" or "?" (and any closing quote or bracket)
# before a space, or a line's end. Clean decoding shows an answer a sentence at a time by
# it (fieldkit.engine.clean), and an answer's opening is read by it (support.opening).
SENTENCE_END = re.compile(r"[.!?](?:[\"')\]]*)(?=\s)|\n")


def as_clause(sentence: str) -> str:
    """Return a sentence as it reads after a colon inside another: its first letter lower
    case (not a first word in capitals or with digits: E07, LAN) and no final period."""
    first = sentence.split(" ", 1)[0]
    if first[1:2].islower() and first.isalpha():
        sentence = sentence[0].lower() + sentence[1:]
    return sentence.rstrip().rstrip(".")


def is_device_name(name: str) -> bool:
    """True when `name` may name a device: 1 to DEVICE_NAME_CHARS printable characters (the
    rule for this device's own name and for a name a peer announces over the LAN)."""
    return 0 < len(name) <= DEVICE_NAME_CHARS and name.isprintable()


def format_size(size: float) -> str:
    """Return a byte count as text in SI units: '512 B', '4.9 MB'."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def parse_address(address: str, default_port: int, any_port: bool = False) -> tuple[str, int]:
    """Return (host, port) from 'host', 'host:port' or '[v6]:port'; TransportError if bad.

    With `any_port`, port 0 (let the system pick, for listening) is accepted. Host names
    are at most 253 characters, as DNS allows, and hold no blank ("not an address" is
    refused here, not looked up as a host name).
    """
    text = address.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or "]" in port_text:
        host, port_text = text, str(default_port)
    host = host.strip("[]")
    lowest = 0 if any_port else 1
    if (
        not host
        or len(host) > 253
        or not host.isprintable()
        or any(c.isspace() for c in host)
        or not port_text.isdigit()
        or not lowest <= int(port_text) < 65536
    ):
        raise TransportError(
            f"{address[:60]!r} is not an address like 192.168.1.20:{default_port}."
        )
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """Return True for 'localhost' and loopback addresses (127.0.0.0/8, ::1, [::1])."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def join_address(host: str, port: int) -> str:
    """Return 'host:port', with an IPv6 host in brackets ('[::1]:7744'): what
    `parse_address` reads back."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
