"""Proof of key possession and the short authentication string (SAS).

Each side signs the peer's fresh nonce together with its own nonce and both keys, so a proof
cannot be replayed into another session or reflected back. The SAS is six digits both screens
show; a person compares them once to pair two devices.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

PROOF_CONTEXT = b"fieldkit-gossip/1 proof\x00"
SAS_CONTEXT = b"fieldkit-gossip/1 sas\x00"
NONCE_SIZE = 32
KEY_SIZE = 32


def proof_payload(
    signer_key: bytes, signer_nonce: bytes, verifier_key: bytes, verifier_nonce: bytes
) -> bytes:
    """Return the bytes the signer signs: context, verifier's nonce first, then the rest."""
    return PROOF_CONTEXT + verifier_nonce + signer_nonce + signer_key + verifier_key


def verify_ed25519(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """Return True if `signature` is a valid Ed25519 signature of `data` by `public_key`."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def sas_digits(key_a: bytes, nonce_a: bytes, key_b: bytes, nonce_b: bytes) -> str:
    """Return six decimal digits from both keys and nonces; the same on both sides."""
    pairs = sorted([key_a + nonce_a, key_b + nonce_b])
    digest = hashlib.sha256(SAS_CONTEXT + pairs[0] + pairs[1]).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 1_000_000:06d}"


# Hello's `version` field stays 1: a version-1 device refuses any other value. A device that
# speaks more says so in the last 8 bytes of its nonce (24 random bytes remain), like TLS 1.3's
# downgrade sentinel in its random. Both nonces are signed by both proofs, so a man in the
# middle who strips the mark breaks the handshake instead of downgrading it.
VERSION_MARK = b"fkgossp"


def mark_nonce(nonce: bytes, version: int) -> bytes:
    """Return `nonce` carrying the highest protocol version this side speaks (1: unmarked)."""
    if version <= 1:
        return nonce
    return nonce[: NONCE_SIZE - 8] + VERSION_MARK + bytes([version])


def nonce_version(nonce: bytes) -> int:
    """Return the highest protocol version a peer's nonce announces (1 if unmarked)."""
    if len(nonce) == NONCE_SIZE and nonce[-8:-1] == VERSION_MARK and nonce[-1] >= 1:
        return nonce[-1]
    return 1
