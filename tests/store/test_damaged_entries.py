"""A library database whose rows hold values the library never wrote (edited, or damaged
on disk): one sentence and a way out, never a traceback; caches are rebuilt."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from fieldkit.store.records import peer_record
from fieldkit.store.vectors import VectorCache
from tests.store.test_cli_library import exported_packet


def _execute(home: Path, sql: str, *args: object) -> None:
    con = sqlite3.connect(home / "library.db")
    con.execute(sql, args)
    con.commit()
    con.close()


def test_a_damaged_packet_entry_is_named_and_can_be_removed_and_imported_again(
    cli, tmp_path, make_adapter
):
    good = exported_packet(cli, tmp_path, make_adapter(seed=1))
    home = tmp_path / "b"
    assert cli(home, "library", "import", str(good)).exit_code == 0
    for column, value in (("manifest", "{bad"), ("exemplars", "[1,2"), ("size", None)):
        _execute(home, f"update packets set {column} = ? where name = 'pumps'", value)
        listed = cli(home, "library", "list")
        assert listed.exit_code == 1, listed.output
        assert "Traceback" not in listed.output
        assert "The library's entry for packet 'pumps' is damaged" in listed.output
        assert "`fieldkit library remove pumps`, then import a copy." in listed.output
        removed = cli(home, "library", "remove", "pumps")
        assert removed.exit_code == 0, removed.output
        assert "Removed 'pumps'." in removed.output
        assert cli(home, "library", "list", "--json").output.strip() == "[]"
        again = cli(home, "library", "import", str(good))
        assert again.exit_code == 0, again.output  # no removal kept: a copy is welcome


def test_a_damaged_setting_reads_as_unset(cli, tmp_path, make_adapter):
    good = exported_packet(cli, tmp_path, make_adapter(seed=1))
    home = tmp_path / "b"
    assert cli(home, "library", "import", str(good)).exit_code == 0
    for key, value in (("model", "{bad"), ("model", "5"), ("receive_policy", "{bad")):
        _execute(home, "insert or replace into settings values (?, ?)", key, value)
        listed = cli(home, "library", "list")
        assert listed.exit_code == 0, listed.output
        assert "pumps" in listed.output
        assert cli(home, "peers", "policy").exit_code == 0


def test_a_damaged_cached_vector_row_is_not_read(tmp_path):
    import sqlite_utils

    db = sqlite_utils.Database(tmp_path / "cache.db")
    db["passage_embeddings"].create(
        {"packet_id": str, "embedder_id": str, "count": int, "dim": int, "vectors": bytes},
        pk=("packet_id", "embedder_id"),
    )
    cache = VectorCache(db, "passage_embeddings")
    cache.put("p1", "e", np.ones((4, 3), np.float32))
    cache.put("p2", "e", np.ones((2, 3), np.float32))
    assert set(cache.get_many(["p1", "p2"], "e")) == {"p1", "p2"}
    db.execute("update passage_embeddings set count = count + 5 where packet_id = 'p1'")
    assert set(cache.get_many(["p1", "p2"], "e")) == {"p2"}  # p1 is embedded again
    cache.put("p1", "e", np.ones((4, 3), np.float32))
    assert cache.get_many(["p1"], "e")["p1"].shape == (4, 3)


def test_a_damaged_peer_key_is_no_key():
    row = {"peer_id": "ab12", "name": "n", "public_key": "nothex", "trust": "trusted"}
    assert peer_record(row).public_key is None
    assert peer_record({**row, "public_key": "00ff"}).public_key == b"\x00\xff"
