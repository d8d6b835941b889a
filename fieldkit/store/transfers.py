"""Partial transfers: which chunks of an incoming packet are held, for resume."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlite_utils import Database

    from fieldkit.home import Home

# A part file nobody has added to for this long is given up (see `prune_transfers`).
STALE_TRANSFER_DAYS = 7


class TransferStore:
    """The `transfers` table and the part files beside it (mixed into Library)."""

    db: Database
    home: Home

    def transfer_state(self, packet_id: str) -> dict[str, Any] | None:
        """Return {'peer_id', 'manifest', 'signature', 'received'} of a partial transfer."""
        rows = list(self.db["transfers"].rows_where("packet_id = ?", [packet_id]))
        if not rows:
            return None
        row = rows[0]
        return {
            "packet_id": packet_id,
            "peer_id": row["peer_id"],
            "manifest": json.loads(row["manifest"]),
            "signature": bytes.fromhex(row["signature"]),
            "received": json.loads(row["received"]),
        }

    def save_transfer(
        self,
        packet_id: str,
        peer_id: str,
        manifest: dict[str, Any],
        signature: bytes,
        received: Iterable[int],
    ) -> None:
        """Persist which chunks of a packet have been received (and written to the part file)."""
        self.db["transfers"].upsert(
            {
                "packet_id": packet_id,
                "peer_id": peer_id,
                "manifest": json.dumps(manifest, sort_keys=True),
                "signature": signature.hex(),
                "received": json.dumps(sorted(set(received))),
                "updated_at": time.time(),
            },
            pk="packet_id",
        )

    def clear_transfer(self, packet_id: str) -> None:
        self.db["transfers"].delete_where("packet_id = ?", [packet_id])

    def part_path(self, packet_id: str) -> Path:
        """Return the part file that holds a partial transfer's chunks."""
        return self.home.parts_dir / f"{packet_id}.part"

    def prune_transfers(self, now: float | None = None, days: float = STALE_TRANSFER_DAYS) -> int:
        """Remove transfers untouched for `days`, rows whose packet is already stored, and
        part files with no transfer row left (an hour after their last write, so a transfer
        that is just starting keeps its file); return how many part files were removed."""
        now = time.time() if now is None else now
        cutoff = now - days * 86400
        with self.db.atomic():
            self.db.execute(
                "delete from transfers where updated_at < ? or packet_id in "
                "(select packet_id from packets)",
                [cutoff],
            )
        live = {r["packet_id"] for r in self.db["transfers"].rows_where(select="packet_id")}
        removed = 0
        for part in self.home.parts_dir.glob("*.part"):
            if part.stem in live:
                continue
            try:
                if part.stat().st_mtime < now - 3600:
                    part.unlink()
                    removed += 1
            except OSError:
                continue
        return removed
