"""Packet manifests, signatures and the one-file format: every refusal leaves nothing behind."""

from __future__ import annotations

import io
import json
import struct

import msgpack
import numpy as np
import pytest

from fieldkit.errors import PacketError
from fieldkit.store.exemplars import (
    FORMAT3_EXEMPLARS,
    MAX_EXEMPLAR_CHARS,
    MAX_EXEMPLARS,
    first_that_fit,
    spread,
)
from fieldkit.store.identity import Identity, device_id_for, verify_signature
from fieldkit.store.packet import (
    EXEMPLARS_FORMAT,
    FILE_MAGIC,
    FORMAT_VERSION,
    WEIGHTS_FORMAT,
    build_manifest,
    canonical_bytes,
    packet_id,
    read_packet_file,
    verify_manifest,
    verify_weights,
    write_packet_file,
)
from tests.fixtures.packets import TEST_BASE_FINGERPRINT, exemplars_for, random_adapter, sign_packet


@pytest.fixture
def signed(home):
    identity = Identity.load_or_create(home)
    manifest, signature, data = sign_packet(identity, random_adapter(seed=3))
    return identity, manifest, signature, data


def test_identity_is_stable_and_private(home):
    first = Identity.load_or_create(home)
    second = Identity.load_or_create(home)
    assert first.device_id == second.device_id == device_id_for(first.public_key)
    assert len(first.device_id) == 16
    assert first.device_id.isalnum()
    assert (home.keys_dir / "device.key").stat().st_mode & 0o777 == 0o600
    sig = first.sign(b"hello")
    assert verify_signature(second.public_key, b"hello", sig)
    assert not verify_signature(second.public_key, b"hellO", sig)


def test_two_homes_are_two_devices(make_home):
    assert (
        Identity.load_or_create(make_home("a")).device_id
        != Identity.load_or_create(make_home("b")).device_id
    )


def test_signed_manifest_verifies_and_id_is_canonical(signed):
    _, manifest, signature, data = signed
    assert verify_manifest(manifest, signature) == packet_id(manifest)
    reordered = dict(reversed(list(manifest.items())))
    assert canonical_bytes(reordered) == canonical_bytes(manifest)
    adapter = verify_weights(manifest, data)
    assert all(a.dtype == np.float16 for a in adapter.tensors.values())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "pumps2", "signature"),
        ("format", 5, "format version"),
        ("format", 2, "lacks the field notes"),
        ("exemplars", ["only one?"], "exemplar"),
        ("weights_size", 10**7, "chunk hashes"),
        ("author_id", "aaaaaaaaaaaaaaaa", "author id"),
        ("adapter", {"fine_tune_type": "full", "lora_parameters": {}}, "Only LoRA"),
    ],
)
def test_tampered_manifest_is_refused(signed, field, value, message):
    _, manifest, signature, _ = signed
    bad = dict(manifest, **{field: value})
    with pytest.raises(PacketError, match=message):
        verify_manifest(bad, signature)


def test_more_exemplars_than_format_3_holds_make_format_4(home):
    identity = Identity.load_or_create(home)
    adapter = random_adapter(seed=3)
    few, _, _ = sign_packet(identity, adapter, exemplars=exemplars_for("pumps", 64))
    assert few["format"] == FORMAT_VERSION  # the lowest format that holds it, as before
    many, signature, _ = sign_packet(identity, adapter, exemplars=exemplars_for("pumps", 200))
    assert many["format"] == EXEMPLARS_FORMAT
    assert verify_manifest(many, signature) == packet_id(many)
    as_format_3 = dict(many, format=WEIGHTS_FORMAT)  # what a format-3 reader would hold
    with pytest.raises(PacketError, match=f"10 to {FORMAT3_EXEMPLARS} exemplar questions"):
        verify_manifest(as_format_3, signature)
    with pytest.raises(PacketError, match=f"10 to {MAX_EXEMPLARS} exemplar questions, not 257"):
        sign_packet(identity, adapter, exemplars=exemplars_for("pumps", 257))
    long = [f"{i} " + "x" * 1990 + "?" for i in range(FORMAT3_EXEMPLARS + 1)]
    with pytest.raises(PacketError, match=f"the limit is {MAX_EXEMPLAR_CHARS}"):
        sign_packet(identity, adapter, exemplars=long)


def test_exemplars_are_spread_and_kept_within_the_limits():
    questions = [f"q{i}" for i in range(10)]
    assert spread(questions, 4) == ["q0", "q2", "q5", "q7"]
    assert spread(questions, 20) == questions
    assert first_that_fit(["a", "b", "a", "c"], 2) == ["a", "b"]
    long = ["x" * 2000 + str(i) for i in range(100)]
    fitted = first_that_fit(long)
    assert sum(map(len, fitted)) <= MAX_EXEMPLAR_CHARS < sum(map(len, fitted)) + 2001
    assert fitted == long[: len(fitted)]


def test_unknown_field_is_refused(signed):
    _, manifest, signature, _ = signed
    with pytest.raises(PacketError, match="unknown field"):
        verify_manifest(dict(manifest, extra=1), signature)


def test_tampered_weights_are_refused(signed):
    _, manifest, _, data = signed
    flipped = bytearray(data)
    flipped[-5] ^= 0xFF
    with pytest.raises(PacketError, match="sha256"):
        verify_weights(manifest, bytes(flipped))
    with pytest.raises(PacketError, match="truncated"):
        verify_weights(manifest, data[:-1])


def _file_bytes(manifest, signature, data) -> bytes:
    buf = io.BytesIO()
    write_packet_file(buf, manifest, signature, data)
    return buf.getvalue()


def test_packet_file_round_trip(signed, tmp_path):
    _, manifest, signature, data = signed
    path = tmp_path / "p.fkpkt"
    path.write_bytes(_file_bytes(manifest, signature, data))
    packet = read_packet_file(path)
    assert packet.manifest == manifest
    assert packet.signature == signature
    assert packet.weights == data


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda raw: raw[:-100], "truncated|weights end early|sha256"),
        (lambda raw: b"NOTAPACK" + raw[8:], "not a fieldkit packet"),
        (lambda raw: raw[:8] + struct.pack(">BI", 9, 10) + raw[13:], "format 9"),
        (
            lambda raw: raw[:8] + struct.pack(">BI", 1, 1 << 31) + raw[13:],
            "truncated or its header",
        ),
        (lambda raw: raw[:13] + b"\xc1" * 40 + raw[53:], "damaged header"),
        (lambda raw: raw[:20], "truncated"),
    ],
)
def test_broken_packet_files_are_refused(signed, tmp_path, mutate, message):
    _, manifest, signature, data = signed
    path = tmp_path / "bad.fkpkt"
    path.write_bytes(mutate(_file_bytes(manifest, signature, data)))
    with pytest.raises(PacketError, match=message):
        read_packet_file(path)


def test_nan_weights_are_refused(home):
    adapter = random_adapter(seed=1)
    name = next(iter(adapter.tensors))
    adapter.tensors[name][0, 0] = np.nan
    with pytest.raises(PacketError, match="NaN"):
        build_manifest(
            adapter,
            Identity.load_or_create(home),
            name="x",
            domain="x",
            description="",
            exemplars=exemplars_for("x"),
            base_model_id="b",
            base_fingerprint=TEST_BASE_FINGERPRINT,
        )


def test_header_with_wrong_keys_is_refused(signed, tmp_path):
    _, manifest, signature, data = signed
    header = msgpack.packb({"manifest": manifest}, use_bin_type=True)
    path = tmp_path / "x.fkpkt"
    path.write_bytes(FILE_MAGIC + struct.pack(">BI", 1, len(header)) + header + data)
    with pytest.raises(PacketError, match="damaged header"):
        read_packet_file(path)
    assert json.loads(json.dumps(manifest)) == manifest
