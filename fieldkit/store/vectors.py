"""Cached embedding vectors of a packet's texts (exemplar questions, note passages).

One row per (packet_id, embedder_id) in a table declared in migrations.py; the vectors are
float32, row-major. The router and the passage index read and write them only here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sqlite_utils import Database

TABLES = ("exemplar_embeddings", "passage_embeddings")


class VectorCache:
    """The vectors of one kind of text, for every packet and embedder."""

    def __init__(self, db: Database, table: str, keep: bool = True) -> None:
        if table not in TABLES:
            raise ValueError(f"No vector table {table!r}.")
        self.db = db
        self.table = table
        self.keep = keep  # False: a library opened read-only, where `put` stores nothing

    def get_many(self, packet_ids: Iterable[str], embedder_id: str) -> dict[str, np.ndarray]:
        """Return {packet_id: (count, dim) float32} for the ids that are cached."""
        ids = list(packet_ids)
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"select packet_id, count, dim, vectors from {self.table} "
                f"where embedder_id = ? and packet_id in ({marks})",
                [embedder_id, *chunk],
            ).fetchall()
            for packet_id, count, dim, blob in rows:
                try:
                    found[packet_id] = np.frombuffer(blob, np.float32).reshape(count, dim)
                except (TypeError, ValueError):  # a damaged row: embedded again, and replaced
                    continue
        return found

    def put(
        self, packet_id: str, embedder_id: str, vectors: np.ndarray, replaces: Iterable[str] = ()
    ) -> None:
        """Store (replace) one packet's vectors, and drop its rows under the keys they
        `replaces` (an earlier reading of the same texts, which nothing reads any more)."""
        if not self.keep:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self.db.atomic():
            for old in replaces:
                self.db.execute(
                    f"delete from {self.table} where packet_id = ? and embedder_id = ?",
                    [packet_id, old],
                )
            self.db[self.table].upsert(
                {
                    "packet_id": packet_id,
                    "embedder_id": embedder_id,
                    "count": int(vectors.shape[0]),
                    "dim": int(vectors.shape[1]),
                    "vectors": vectors.tobytes(),
                },
                pk=("packet_id", "embedder_id"),
            )

    def prune(self, keep: Iterable[str]) -> int:
        """Delete rows of packets no longer in the library; return how many went."""
        if not self.keep:
            return 0
        keep_ids = set(keep)
        rows = self.db.execute(f"select distinct packet_id from {self.table}").fetchall()
        gone = [r[0] for r in rows if r[0] not in keep_ids]
        if gone:
            with self.db.atomic():
                for packet_id in gone:
                    self.db.execute(f"delete from {self.table} where packet_id = ?", [packet_id])
        return len(gone)
