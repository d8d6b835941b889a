"""A device's Ed25519 identity: created on first use, private key kept at mode 0600."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fieldkit.errors import FieldkitError
from fieldkit.formats import DEVICE_NAME_CHARS, is_device_name
from fieldkit.home import Home
from fieldkit.store.files import write_atomically

KEY_FILE = "device.key"
NAME_FILE = "device.json"
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64


def device_id_for(public_key: bytes) -> str:
    """Return the short printable device id of a public key (16 base32 characters)."""
    digest = hashlib.sha256(b"fieldkit-device-id\0" + public_key).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:16]


def is_device_id(text: str) -> bool:
    """True for text shaped as `device_id_for` makes ids: 16 lower-case base32 characters."""
    return len(text) == 16 and all(c in _BASE32 for c in text)


_BASE32 = frozenset("abcdefghijklmnopqrstuvwxyz234567")


def key_fingerprint(public_key: bytes) -> str:
    """Return a human-comparable fingerprint of a public key, e.g. 'ab12 cd34 ...'."""
    digest = hashlib.sha256(public_key).hexdigest()[:24]
    return " ".join(digest[i : i + 4] for i in range(0, 24, 4))


def verify_signature(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """Return True when `signature` is a valid Ed25519 signature of `data` by `public_key`."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Identity:
    """This device: its key pair, id and human name."""

    private_key: Ed25519PrivateKey
    public_key: bytes
    name: str
    home: Home

    @property
    def device_id(self) -> str:
        return device_id_for(self.public_key)

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.public_key)

    def sign(self, data: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of `data`."""
        return self.private_key.sign(data)

    @classmethod
    def load_or_create(cls, home: Home) -> Identity:
        """Load the home's key pair, creating it (mode 0600) on first use."""
        home.ensure()
        key_path = home.keys_dir / KEY_FILE
        if not key_path.exists():  # first use; of processes racing here, one key wins
            _create_private_key(key_path, Ed25519PrivateKey.generate())
        private = _read_private_key(key_path)
        public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return cls(private, public, _read_name(home, public), home)

    def renewed(self) -> Identity:
        """Give this home a new key pair (a new device id) and return it; the old key stays
        beside it as `device.key.<old id>.old` (packets it signed keep it as their author).
        For a home copied from another device: two devices with one key cannot sync.
        The human name stays."""
        key_path = self.home.keys_dir / KEY_FILE
        kept = key_path.with_name(f"{KEY_FILE}.{self.device_id}.old")
        with contextlib.suppress(FileExistsError):
            os.link(key_path, kept)
        if not kept.exists() or kept.read_bytes() != key_path.read_bytes():
            raise FieldkitError(f"Could not keep the old device key as {kept}; nothing changed.")
        key_path.unlink()
        _create_private_key(key_path, Ed25519PrivateKey.generate())
        return Identity.load_or_create(self.home)

    def current_name(self) -> str:
        """Return the device's name as stored now: a long-running listener or agent
        introduces itself by the name `fieldkit name` set since it started."""
        return _read_name(self.home, self.public_key)

    def with_name(self, name: str) -> Identity:
        """Store a new human name for this device and return the updated identity."""
        name = name.strip()
        if not is_device_name(name):
            raise FieldkitError(
                f"A device name must be 1 to {DEVICE_NAME_CHARS} printable characters."
            )
        text = json.dumps({"name": name})
        write_atomically(
            self.home.keys_dir / NAME_FILE, lambda out: out.write(text.encode()), "device name"
        )
        return Identity(self.private_key, self.public_key, name, self.home)


def _read_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise FieldkitError(f"The device key {path} is damaged; restore it from a backup.") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise FieldkitError(f"The device key {path} is not an Ed25519 key.")
    return key


def _create_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Write the key to `path` (mode 0600) unless a key is already there.

    The key goes to a file of this process's own first and is linked into place, which
    never replaces an existing key: when two processes start on a new home at once, the
    first key stays and both use it.
    """
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".device-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: replace, unless one appeared
            if not path.exists():
                os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _read_name(home: Home, public_key: bytes) -> str:
    """Return the name `fieldkit name` stored, else (none, or one edited into something
    that is not a device name) the host's name and the id's first characters."""
    path = home.keys_dir / NAME_FILE
    try:
        name = json.loads(path.read_text())["name"]
        if isinstance(name, str) and is_device_name(name):
            return name
    except (OSError, ValueError, KeyError, TypeError):
        pass
    host = socket.gethostname().split(".")[0][:50] or "device"
    return f"{host}-{device_id_for(public_key)[:4]}"
