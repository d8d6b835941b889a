"""The SQLite library: storage, atomicity, peers, transfers and migrations."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from fieldkit.errors import LibraryError, PacketError, PeerRefused
from fieldkit.store.identity import Identity
from fieldkit.store.library import Library
from fieldkit.store.migrations import migrations
from fieldkit.store.packet import build_manifest
from tests.fixtures.packets import TEST_BASE_FINGERPRINT, exemplars_for, random_adapter


def _snapshot(home):
    con = sqlite3.connect(home.db_path)
    rows = con.execute("select packet_id from packets order by packet_id").fetchall()
    con.close()
    blobs = sorted(p.name for p in home.blobs_dir.rglob("*") if p.is_file())
    return rows, blobs


def test_add_get_remove(home, make_packet):
    record = make_packet(home, name="pumps")
    lib = Library.open(home)
    assert lib.weights_path(record).is_file()
    assert lib.get(record.packet_id[:8]).name == "pumps"
    lib.remove("pumps")
    assert lib.list_packets() == []
    assert not lib.weights_path(record).exists()
    with pytest.raises(LibraryError, match="No packet named"):
        lib.get("pumps")
    lib.close()


def test_duplicate_local_name_refused_and_nothing_written(home, make_packet):
    make_packet(home, name="pumps", seed=1)
    before = _snapshot(home)
    with pytest.raises(
        LibraryError,
        match=r"already in the library: give this one another name \(--name NEW_NAME\)\.$",
    ):
        make_packet(home, name="pumps", seed=2)
    assert _snapshot(home) == before


def test_foreign_base_refused(make_home, make_packet):
    source = make_packet(make_home("a"), name="pumps")
    target = Library.open(make_home("b"))
    data = Library.open(make_home("a")).read_weights(source)
    with pytest.raises(PacketError, match="another base model"):
        target.add(source.manifest, source.signature, data, source="x", expected_base="0" * 64)
    assert target.list_packets() == []
    record = target.add(source.manifest, source.signature, data, source="peer1")
    assert record.packet_id == source.packet_id
    assert record.source == "peer1"


def test_bad_signature_refused_library_untouched(make_home, make_packet):
    source = make_packet(make_home("a"), name="pumps")
    data = Library.open(make_home("a")).read_weights(source)
    target_home = make_home("b")
    target = Library.open(target_home)
    before = _snapshot(target_home)
    sig = bytearray(source.signature)
    sig[0] ^= 1
    with pytest.raises(PacketError, match="signature"):
        target.add(source.manifest, bytes(sig), data)
    with pytest.raises(PacketError, match="sha256|truncated"):
        target.add(source.manifest, source.signature, data[:-2] + b"xx")
    assert _snapshot(target_home) == before


def test_newer_version_from_same_author_replaces(home):
    identity = Identity.load_or_create(home)
    lib = Library.open(home, identity)
    common = {
        "name": "pumps",
        "domain": "d",
        "description": "",
        "exemplars": exemplars_for("d"),
        "base_model_id": "b",
        "base_fingerprint": TEST_BASE_FINGERPRINT,
    }
    m1, s1, d1 = build_manifest(random_adapter(1), identity, created=100, **common)
    m2, s2, d2 = build_manifest(random_adapter(2), identity, created=200, **common)
    lib.add(m1, s1, d1)
    lib.add(m2, s2, d2)
    assert len(lib.list_packets()) == 1
    with pytest.raises(LibraryError, match="newer or equal"):
        lib.add(m1, s1, d1)


def test_verify_detects_a_damaged_blob(home, make_packet):
    record = make_packet(home, name="pumps")
    lib = Library.open(home)
    assert lib.verify("pumps")[1] is None
    path = lib.weights_path(record)
    path.write_bytes(path.read_bytes()[:-3] + b"abc")
    checked, problem = lib.verify("pumps")
    assert problem is not None
    assert not checked.verified


def test_peers_pin_keys_and_trust_before_contact(make_home):
    lib = Library.open(make_home("a"))
    other = Identity.load_or_create(make_home("b"))
    stranger = Identity.load_or_create(make_home("c"))
    lib.set_trust(other.device_id, "trusted")
    peer = lib.upsert_peer(other.public_key, "bob", address="127.0.0.1:1")
    assert peer.trust == "trusted"
    assert peer.public_key == other.public_key
    # A different key claiming the same id is refused loudly.
    lib.db["peers"].update(other.device_id, {"public_key": stranger.public_key.hex()})
    with pytest.raises(PeerRefused, match="different key"):
        lib.upsert_peer(other.public_key, "bob")
    with pytest.raises(LibraryError, match="Trust must be"):
        lib.set_trust(other.device_id, "maybe")
    with pytest.raises(LibraryError, match="not a device id"):
        lib.set_trust("short", "trusted")


def test_transfer_state_round_trip(home, make_packet):
    record = make_packet(home, name="pumps")
    lib = Library.open(home)
    lib.save_transfer(record.packet_id, "peer", record.manifest, record.signature, [3, 1, 1])
    state = lib.transfer_state(record.packet_id)
    assert state["received"] == [1, 3]
    assert state["signature"] == record.signature
    lib.clear_transfer(record.packet_id)
    assert lib.transfer_state(record.packet_id) is None


def test_migrations_apply_twice_cleanly(home):
    Library.open(home).close()
    lib = Library.open(home)
    migrations.apply(lib.db)
    assert migrations.pending(lib.db) == []
    assert {"packets", "peers", "transfers", "events", "settings"} <= set(lib.db.table_names())
    assert lib.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_stale_temp_blob_is_cleaned(home, make_packet):
    make_packet(home, name="pumps")
    stale = next(home.blobs_dir.iterdir()) / ".tmp-999999999-abc"
    stale.write_bytes(b"half")
    Library.open(home).close()
    assert not stale.exists()


def test_reissue_own_packet_replaces_it_with_new_exemplars(home, make_packet):
    old = make_packet(home, name="pumps")
    lib = Library.open(home, identity=Identity.load_or_create(home))
    new_questions = [f"How do I fix pump fault E{i:02d}?" for i in range(40)]
    new = lib.reissue("pumps", exemplars=new_questions)
    assert new.packet_id != old.packet_id
    assert new.exemplars == new_questions
    assert new.sha256 == old.sha256  # same weights, same blob
    assert new.manifest["lineage"] == [old.packet_id]
    assert [r.packet_id for r in lib.list_packets()] == [new.packet_id]
    assert lib.verify(new.packet_id)[1] is None
    assert lib.weights_path(new).is_file()
    lib.close()


def test_reissue_of_another_authors_packet_needs_a_new_name(make_home, make_packet):
    source = make_packet(make_home("a"), name="pumps")
    data = Library.open(make_home("a")).read_weights(source)
    home_b = make_home("b")
    lib = Library.open(home_b, identity=Identity.load_or_create(home_b))
    lib.add(source.manifest, source.signature, data, source="peer")
    before = _snapshot(home_b)
    with pytest.raises(LibraryError, match=r"another author: .* of its own \(--as NEW_NAME\)"):
        lib.reissue("pumps", description="Mine now.")
    with pytest.raises(PacketError, match="exemplar"):
        lib.reissue("pumps", exemplars=["too few"], name="my-pumps")
    with pytest.raises(PacketError, match="may not start with '-'"):  # `show -dash` fails
        lib.reissue("pumps", description="Mine now.", name="-dash")
    assert _snapshot(home_b) == before
    mine = lib.reissue("pumps", description="Pumps, my routing.", name="my-pumps")
    assert mine.author_id == lib.identity.device_id != source.author_id
    assert sorted(r.name for r in lib.list_packets()) == ["my-pumps", "pumps"]
    assert mine.manifest["lineage"] == [source.packet_id]
    lib.close()


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_all_finite_matches_numpy(dtype):
    import numpy as np

    from fieldkit.store.adapter import all_finite

    rng = np.random.default_rng(0)
    base = rng.normal(size=(64, 48)).astype(dtype)
    tiny = np.array([np.finfo(dtype).tiny / 2, -0.0, np.finfo(dtype).max], dtype=dtype)
    assert all_finite(base)
    assert all_finite(tiny)
    for bad in (np.nan, np.inf, -np.inf):
        broken = base.copy()
        broken[17, 5] = bad
        assert not all_finite(broken)
        assert not all_finite(broken.T)  # not contiguous: numpy's own check
        assert all_finite(broken[:17])
    large = rng.normal(size=(3, 70_000)).astype(dtype)  # several blocks, a partial last one
    assert all_finite(large)
    for at in (0, 65_535, 65_536, 131_072, large.size - 1):
        broken = large.copy()
        broken.flat[at] = np.nan
        assert not all_finite(broken)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_values_finite_reads_every_value_of_the_file(dtype):
    import numpy as np

    from fieldkit.store.adapter import tensors_to_bytes, values_finite

    rng = np.random.default_rng(1)
    tensors = {f"t{i}": rng.normal(size=(8, 5 + i)).astype(dtype) for i in range(6)}
    tensors["t0"][0, :3] = (-0.0, np.finfo(dtype).max, -np.finfo(dtype).max)
    assert values_finite(tensors_to_bytes(tensors, dtype), np.dtype(dtype))
    for bad in (np.nan, -np.nan, np.inf, -np.inf):
        for name in ("t0", "t5"):  # first and last tensor in the file
            broken = {k: v.copy() for k, v in tensors.items()}
            broken[name][-1, -1] = bad
            assert not values_finite(tensors_to_bytes(broken, dtype), np.dtype(dtype))
    odd = tensors_to_bytes(tensors, dtype) + b"\0"  # not a whole number of values
    assert not values_finite(odd, np.dtype(dtype))


def test_a_nan_in_received_weights_is_refused_by_tensor_name(make_home, make_packet, tmp_path):
    import numpy as np

    source = make_packet(make_home("a"), name="pumps")
    data = bytearray(Library.open(make_home("a")).read_weights(source))
    data[-2:] = np.array([np.nan], dtype=np.float16).tobytes()  # the last value of the file
    manifest = {**source.manifest, "weights_sha256": hashlib.sha256(data).hexdigest()}
    from fieldkit.store.packet import verify_weights

    with pytest.raises(PacketError, match=r"tensor model\.layers\.\d+\..*NaN"):
        verify_weights(manifest, bytes(data), check_chunks=False)


def test_received_part_file_moves_into_the_blob_store(make_home, make_packet, tmp_path):
    source = make_packet(make_home("a"), name="pumps")
    data = Library.open(make_home("a")).read_weights(source)
    target = Library.open(make_home("b"))
    bad = tmp_path / "bad.part"
    bad.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(PacketError, match="sha256"):
        target.add(source.manifest, source.signature, bad, source="peer", received=True)
    assert bad.exists()
    assert target.list_packets() == []
    part = tmp_path / "good.part"
    part.write_bytes(data)
    record = target.add(source.manifest, source.signature, part, source="peer", received=True)
    assert not part.exists()
    assert target.read_weights(record) == data
    assert target.verify(record.packet_id)[1] is None
