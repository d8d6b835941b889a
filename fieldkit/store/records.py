"""The rows the library hands out: packets and peers, as frozen records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fieldkit.errors import DamagedEntryError
from fieldkit.formats import shown_text
from fieldkit.store.adapter import AdapterConfig


@dataclass(frozen=True)
class PacketRecord:
    """One packet in the library, as stored."""

    packet_id: str
    name: str
    domain: str
    description: str
    exemplars: list[str]
    sha256: str
    size: int
    author_id: str
    author_name: str
    base_model_id: str
    base_fingerprint: str
    adapter: AdapterConfig
    source: str
    received_at: float
    verified: bool
    merged: bool
    manifest: dict[str, Any]
    signature: bytes

    @property
    def short_id(self) -> str:
        return self.packet_id[:12]


@dataclass(frozen=True)
class PeerRecord:
    """A device this one has met or been told to trust."""

    peer_id: str
    name: str
    public_key: bytes | None
    trust: str
    address: str
    first_seen: float | None
    last_seen: float | None


def packet_row(
    packet_id: str,
    manifest: dict[str, Any],
    signature: bytes,
    *,
    author_name: str,
    source: str,
    received_at: float,
) -> dict[str, Any]:
    """Return the `packets` row that stores a verified packet."""
    return {
        "packet_id": packet_id,
        "name": manifest["name"],
        "domain": manifest["domain"],
        "description": manifest["description"],
        "exemplars": json.dumps(manifest["exemplars"]),
        "sha256": manifest["weights_sha256"],
        "size": manifest["weights_size"],
        "author_id": manifest["author_id"],
        "author_name": author_name,
        "base_model_id": manifest["base_model_id"],
        "base_fingerprint": manifest["base_fingerprint"],
        "adapter": json.dumps(manifest["adapter"]),
        "merged": int(manifest["merged"]),
        "source": source,
        "received_at": received_at,
        "verified": 1,
        "manifest": json.dumps(manifest, sort_keys=True),
        "signature": signature.hex(),
    }


def packet_record(row: dict[str, Any]) -> PacketRecord:
    """Return the record of a `packets` row. Raises DamagedEntryError, naming the packet, for
    a row whose values are not what the library wrote (edited or damaged on disk)."""
    try:
        record = _packet_record(row)
        if not isinstance(record.size, int) or not isinstance(record.manifest, dict):
            raise TypeError("size or manifest")
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        name = shown_text(str(row.get("name") or row.get("packet_id") or "?")[:80])
        raise DamagedEntryError(
            f"The library's entry for packet {name!r} is damaged ({type(exc).__name__}): "
            f"remove it with `fieldkit library remove {name}`, then import a copy."
        ) from exc
    return record


def _packet_record(row: dict[str, Any]) -> PacketRecord:
    return PacketRecord(
        packet_id=row["packet_id"],
        name=row["name"],
        domain=row["domain"],
        description=row["description"],
        exemplars=json.loads(row["exemplars"]),
        sha256=row["sha256"],
        size=row["size"],
        author_id=row["author_id"],
        author_name=row["author_name"] or "",
        base_model_id=row["base_model_id"],
        base_fingerprint=row["base_fingerprint"],
        adapter=AdapterConfig.from_mlx_dict(json.loads(row["adapter"])),
        source=row["source"],
        received_at=row["received_at"],
        verified=bool(row["verified"]),
        merged=bool(row["merged"]),
        manifest=json.loads(row["manifest"]),
        signature=bytes.fromhex(row["signature"]),
    )


def peer_record(row: dict[str, Any]) -> PeerRecord:
    """Return the record of a `peers` row."""
    try:  # a damaged key is no key: the peer proves its key again at the next contact
        public_key = bytes.fromhex(row.get("public_key") or "") or None
    except (TypeError, ValueError):
        public_key = None
    return PeerRecord(
        peer_id=row["peer_id"],
        name=row.get("name") or "",
        public_key=public_key,
        trust=row.get("trust") or "pending",
        address=row.get("address") or "",
        first_seen=row.get("first_seen"),
        last_seen=row.get("last_seen"),
    )
