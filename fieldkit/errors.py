"""Errors a user can cause. Each one's message is a single clear sentence."""

from __future__ import annotations


class FieldkitError(Exception):
    """Base for every error the CLI and the TUI show to a person instead of a traceback."""

    exit_code = 1


class PacketError(FieldkitError):
    """A knowledge packet (file, manifest, weights or signature) is not acceptable."""


class PacketFileExists(PacketError):  # noqa: N818 (a refusal, not a fault)
    """The packet file an export would write is already there (`path`)."""

    def __init__(self, path: object) -> None:
        super().__init__(f"{path} already exists; choose a new file, or --force to replace it.")
        self.path = path


class LibraryError(FieldkitError):
    """The local library cannot do what was asked (unknown name, duplicate, ...)."""


class DamagedEntryError(LibraryError):
    """A row of the library database holds values the library never wrote."""


class PacketRemoved(LibraryError):  # noqa: N818 (an event, not a fault)
    """The packet was removed from the library (by another process) since it was read."""


class ModelError(FieldkitError):
    """The base model is missing, broken, or not the one a packet was made for."""


class ProtocolError(FieldkitError):
    """The peer broke the gossip protocol; the session ends and the library is untouched."""


class PeerRefused(FieldkitError):  # noqa: N818 (a refusal, not a fault)
    """The peer is blocked, untrusted under the policy, or its key changed."""


class RouterError(FieldkitError):
    """The router cannot embed or rank (embedder missing, bad question file, ...)."""


class TransportError(FieldkitError):
    """A link (TCP, BLE) failed: refused, cut, or timed out."""


def gist(exc: BaseException) -> str:
    """Return the first line of an exception's message, to end one sentence with (its
    type's name when it has none)."""
    lines = str(exc).strip().splitlines()
    return lines[0].strip().rstrip(".?!: ") if lines else type(exc).__name__
