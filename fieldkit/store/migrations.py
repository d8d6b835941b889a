"""The library's schema, as sqlite-utils migrations applied on every open (idempotent)."""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("fieldkit")


@migrations()
def m001_initial(db: Database) -> None:
    db["packets"].create(
        {
            "packet_id": str,
            "name": str,
            "domain": str,
            "description": str,
            "exemplars": str,
            "sha256": str,
            "size": int,
            "author_id": str,
            "author_name": str,
            "base_model_id": str,
            "base_fingerprint": str,
            "adapter": str,
            "merged": int,
            "source": str,
            "received_at": float,
            "verified": int,
            "manifest": str,
            "signature": str,
        },
        pk="packet_id",
    )
    db["packets"].create_index(["name"], unique=True)
    db["peers"].create(
        {
            "peer_id": str,
            "name": str,
            "public_key": str,
            "trust": str,
            "address": str,
            "first_seen": float,
            "last_seen": float,
        },
        pk="peer_id",
    )
    db["transfers"].create(
        {
            "packet_id": str,
            "peer_id": str,
            "manifest": str,
            "signature": str,
            "received": str,
            "updated_at": float,
        },
        pk="packet_id",
    )
    db["events"].create(
        {"id": int, "ts": float, "kind": str, "data": str},
        pk="id",
    )
    db["settings"].create({"key": str, "value": str}, pk="key")


def _vector_table(db: Database, table: str) -> None:
    """Create a cache of one packet's vectors (float32, row-major) per embedder."""
    db[table].create(
        {"packet_id": str, "embedder_id": str, "count": int, "dim": int, "vectors": bytes},
        pk=("packet_id", "embedder_id"),
        if_not_exists=True,
    )


@migrations()
def m002_exemplar_embeddings(db: Database) -> None:
    _vector_table(db, "exemplar_embeddings")  # the router's cache


@migrations()
def m003_passage_embeddings(db: Database) -> None:
    _vector_table(db, "passage_embeddings")  # the retrieval cache (note passages)


@migrations()
def m004_removed_packets(db: Database) -> None:
    # What a removed packet was: a block still covers copies of it (store.usable.Blocked)
    db["removed_packets"].create(
        {"packet_id": str, "sha256": str, "author_id": str, "lineage": str, "removed_at": float},
        pk="packet_id",
        if_not_exists=True,
    )
