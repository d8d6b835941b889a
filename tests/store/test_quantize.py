"""int8 / 4-bit packets and rank trimming: round trips within bounds, the format-3 rule,
and refusals for malformed codes and scales (each one sentence, nothing stored)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace

import numpy as np
import pytest
from safetensors.numpy import save

from fieldkit.errors import PacketError
from fieldkit.home import Home
from fieldkit.store.identity import Identity
from fieldkit.store.library import Library
from fieldkit.store.packet import (
    SIGNING_CONTEXT,
    canonical_bytes,
    check_manifest,
    chunk_hashes,
    read_packet_file,
    verify_manifest,
    verify_weights,
)
from fieldkit.store.quantize import (
    GROUP_SIZE,
    Compaction,
    QuantizedTensors,
    dequantize_rows,
    kept_rank,
    quantize_rows,
    quantize_tensors,
    ranks,
    trim_module,
)
from tests.fixtures.packets import TEST_BASE_FINGERPRINT, exemplars_for, random_adapter
from tests.fixtures.packets import sign_packet as sign


def deltas(tensors) -> dict[str, np.ndarray]:
    """Return each module's A @ B in float64."""
    return {
        n.removesuffix(".lora_a"): np.asarray(a, np.float64)
        @ np.asarray(tensors[n.removesuffix(".lora_a") + ".lora_b"], np.float64)
        for n, a in tensors.items()
        if n.endswith(".lora_a")
    }


def worst_relative_error(before, after) -> float:
    d0, d1 = deltas(before), deltas(after)
    return max(np.linalg.norm(d1[k] - d0[k]) / np.linalg.norm(d0[k]) for k in d0)


# ---- quantise / dequantise ----------------------------------------------------------------


@pytest.mark.parametrize("width", [32, 64, 96, 130, 1536])
def test_int8_round_trip_is_within_half_a_step_of_each_group(width):
    rows = np.random.default_rng(width).normal(0, 0.05, (5, width)).astype(np.float32)
    rows[1, :7] = 0.0  # a group part zero, and a row with an outlier
    rows[2, 3] = 4.0
    codes, scales = quantize_rows(rows, 8)
    assert codes.dtype == np.int8
    assert codes.shape == (5, width)
    assert scales.dtype == np.float16
    assert scales.shape == (5, math.ceil(width / GROUP_SIZE))
    back = dequantize_rows(codes, scales, 8)
    step = np.repeat(scales.astype(np.float32), GROUP_SIZE, axis=1)[:, :width]
    assert np.all(np.abs(back - rows) <= step / 2 + 1e-7)
    peak = np.abs(rows).max()
    assert np.abs(back - rows).max() <= peak / 254 * 1.01


@pytest.mark.parametrize("width", [32, 64, 96, 1536])
def test_int4_round_trip_beats_plain_absmax_and_packs_two_codes_a_byte(width):
    rows = np.random.default_rng(width).normal(0, 0.05, (4, width)).astype(np.float32)
    codes, scales = quantize_rows(rows, 4)
    assert codes.dtype == np.uint8
    assert codes.shape == (4, width // 2)
    back = dequantize_rows(codes, scales, 4)
    groups = -(-width // GROUP_SIZE)
    pad = np.zeros((4, groups * GROUP_SIZE), np.float32)
    pad[:, :width] = rows
    peak = np.abs(pad.reshape(4, groups, GROUP_SIZE)).max(-1)
    plain_step = np.repeat(peak / 7, GROUP_SIZE, axis=1)[:, :width]
    plain = np.clip(np.rint(rows / plain_step), -7, 7) * plain_step
    assert ((back - rows) ** 2).sum() <= ((plain - rows) ** 2).sum() * 1.001
    # no value is further off than a clipped peak at the smallest scale tried (absmax / 9)
    assert np.all(np.abs(back - rows) <= np.repeat(peak * 2 / 9, GROUP_SIZE, 1)[:, :width] + 1e-6)


def test_int4_codes_are_twos_complement_nibbles_low_first():
    codes = np.array([[0x8F, 0x70]], dtype=np.uint8)  # -1, -8, 0, 7
    scales = np.array([[0.5]], dtype=np.float16)
    assert dequantize_rows(codes, scales, 4).tolist() == [[-0.5, -4.0, 0.0, 3.5]]


def test_quantising_refuses_other_bit_widths_and_odd_widths_at_4_bits():
    rows = np.ones((2, 6), np.float32)
    with pytest.raises(PacketError, match="8 or 4 bits, not 3"):
        quantize_rows(rows, 3)
    with pytest.raises(PacketError, match="even tensor widths, not 5"):
        quantize_rows(np.ones((2, 5), np.float32), 4)
    with pytest.raises(PacketError, match="8 or 4 bits"):
        Compaction(bits=2)
    with pytest.raises(PacketError, match="too large for float16 scales"):
        quantize_rows(np.full((1, 4), 1e10, np.float32), 8)


@pytest.mark.parametrize(("dtype", "bound"), [("int8", 0.01), ("int4", 0.15)])
def test_adapter_round_trip_keeps_each_delta_within_bounds(dtype, bound):
    adapter = random_adapter(seed=5, rank=8)
    packed = quantize_tensors(adapter.tensors, dtype)
    assert set(packed) == set(adapter.tensors)
    for name in adapter.tensors:
        assert packed[name].shape == adapter.tensors[name].shape == packed.shape(name)
    assert worst_relative_error(adapter.tensors, packed) < bound
    # the stored form is written back unchanged
    again = QuantizedTensors(dtype, packed.stored)
    assert again.to_bytes() == packed.to_bytes()


# ---- trimming -----------------------------------------------------------------------------


def test_kept_rank_is_the_smallest_holding_the_energy():
    s = np.array([10.0, 3.0, 1.0, 0.1])
    total = (s**2).sum()
    assert kept_rank(s, 0.90) == 1  # 100 / 110.01 = 0.909
    assert kept_rank(s, 0.95) == 2  # 109 / 110.01
    assert kept_rank(s, 0.995) == 3
    assert kept_rank(s, 1.0) == 4
    assert kept_rank(s, 100 / total) == 1  # exactly the share: kept
    assert kept_rank(np.zeros(4), 0.95) == 1


def test_trim_keeps_the_best_low_rank_delta_with_balanced_factors():
    a = np.random.default_rng(1).normal(size=(64, 8))
    b = np.random.default_rng(2).normal(size=(8, 32))
    a[:, 3:] *= 1e-3  # three strong directions, five weak ones
    delta = a @ b
    u, s, vt = np.linalg.svd(delta, full_matrices=False)
    new_a, new_b = trim_module(a, b, 0.99)
    k = new_a.shape[1]
    assert new_b.shape == (k, 32)
    assert k == kept_rank(s, 0.99) <= 3
    best = (u[:, :k] * s[:k]) @ vt[:k]
    np.testing.assert_allclose(new_a @ new_b, best, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        np.linalg.norm(new_a, axis=0), np.linalg.norm(new_b, axis=1), rtol=1e-4
    )
    full_a, full_b = trim_module(a, b, 1.0)
    np.testing.assert_allclose(full_a @ full_b, delta, rtol=1e-4, atol=1e-4)


def test_compaction_trims_per_module_then_quantises():
    adapter = random_adapter(seed=7, rank=8)
    weak = dict(adapter.tensors)
    name = "model.layers.0.mlp.up_proj.lora_a"
    weak[name] = weak[name].copy()
    weak[name][:, 2:] = 0  # this module's delta has rank 2
    trimmed = Compaction(bits=4, energy=0.999).apply(
        type(adapter)(config=adapter.config, tensors=weak)
    )
    kept = dict(zip(sorted(n for n in weak if n.endswith("lora_a")), ranks(trimmed), strict=True))
    assert kept[name] == 2
    assert max(kept.values()) == 8
    assert isinstance(trimmed.tensors, QuantizedTensors)
    with pytest.raises(PacketError, match="energy must be above 0 and at most 1"):
        Compaction(energy=1.5)


# ---- the packet format --------------------------------------------------------------------


def resign(identity: Identity, manifest: dict, data: bytes, **changes) -> tuple[dict, bytes]:
    """Return the manifest re-signed over other weights bytes (and field changes)."""
    manifest = dict(manifest) | changes
    manifest.update(
        weights_sha256=hashlib.sha256(data).hexdigest(),
        weights_size=len(data),
        chunk_hashes=chunk_hashes(data, manifest["chunk_size"]),
    )
    return manifest, identity.sign(SIGNING_CONTEXT + canonical_bytes(manifest))


@pytest.fixture
def identity(home: Home) -> Identity:
    return Identity.load_or_create(home)


def test_full_rank_float_packets_stay_format_1_and_compact_ones_are_format_3(identity):
    adapter = random_adapter(seed=3)
    plain, _, _ = sign(identity, adapter)
    assert plain["format"] == 1
    assert plain["dtype"] == "float16"
    for compaction, dtype in [
        (Compaction(bits=8), "int8"),
        (Compaction(bits=4), "int4"),
        (Compaction(energy=0.5), "float16"),
    ]:
        manifest, signature, data = sign(identity, compaction.apply(adapter))
        assert (manifest["format"], manifest["dtype"]) == (3, dtype)
        assert verify_manifest(manifest, signature)
        loaded = verify_weights(manifest, data)
        assert loaded.key == manifest["weights_sha256"]
    wide = random_adapter(seed=3, size_scale=8)  # wide enough that the header is small
    smaller = sign(identity, Compaction(bits=4).apply(wide))[2]
    assert len(smaller) < len(sign(identity, wide)[2]) * 0.31  # 4.25 bits a value + header


def test_a_quantised_packet_is_stored_loaded_and_reissued_with_the_same_weights(home, identity):
    library = Library.open(home, identity=identity)
    try:
        adapter = random_adapter(seed=4, rank=8)
        record = library.add_local(
            Compaction(bits=4, energy=0.9).apply(adapter),
            name="pumps",
            domain="pumps",
            description="d",
            exemplars=exemplars_for("pumps"),
            base_model_id="test-base",
            base_fingerprint=TEST_BASE_FINGERPRINT,
        )
        assert (record.manifest["format"], record.manifest["dtype"]) == (3, "int4")
        assert library.verify(record.packet_id)[1] is None
        loaded = library.load_adapter(record)
        assert isinstance(loaded.tensors, QuantizedTensors)
        assert max(ranks(loaded)) < 8
        again = library.reissue(record.packet_id, description="Pump care, shorter.")
        assert again.sha256 == record.sha256
        assert again.manifest["format"] == 3
    finally:
        library.close()


def test_packets_of_the_older_formats_still_load(home):
    """Format 1 (full-rank floats, no notes) and format 2 (floats with notes) load
    unchanged, every module at the declared rank; the shipped demo packets (format 4:
    4-bit, with notes and every phrasing as an exemplar) load as floats."""
    from fieldkit.assets import demo_packets
    from fieldkit.store.notes import notes_of

    identity = Identity.load_or_create(home)
    library = Library.open(home, identity=identity)
    try:
        shipped = read_packet_file(demo_packets()[0])
        manifest, signature, data = sign(identity, random_adapter(seed=3))
        plain_notes = [replace(n, asked=()) for n in notes_of(shipped.manifest)]  # format 2
        noted = sign(identity, random_adapter(seed=4), "noted", notes=plain_notes)
        assert (manifest["format"], noted[0]["format"], shipped.manifest["format"]) == (1, 2, 4)
        for m, sig, weights in [
            (manifest, signature, data),
            noted,
            (shipped.manifest, shipped.signature, shipped.weights),
        ]:
            record = library.add(m, sig, weights, source="file")
            adapter = library.load_adapter(record)
            assert library.verify(record.packet_id)[1] is None
            if m["format"] < 3:
                assert set(ranks(adapter)) == {record.adapter.rank}
                assert adapter.tensors[next(iter(adapter.tensors))].dtype == np.float16
    finally:
        library.close()


def malformed(packed: QuantizedTensors, case: str) -> tuple[str, dict[str, np.ndarray]]:
    """Return (dtype for the manifest, stored tensors) broken in one way."""
    stored = dict(packed.stored)
    name = "model.layers.0.self_attn.q_proj.lora_b"
    scales = stored[name + ".scales"]
    if case == "no scales":
        del stored[name + ".scales"]
    elif case == "orphan scales":
        stored["model.layers.0.self_attn.q_proj.lora_c.scales"] = scales
    elif case == "scales of scales":
        stored[name + ".scales.scales"] = scales
    elif case == "fp32 scales":
        stored[name + ".scales"] = scales.astype(np.float32)
    elif case == "scales shape":
        stored[name + ".scales"] = np.concatenate([scales, scales], axis=1)
    elif case in ("negative scale", "nan scale"):
        bad = scales.copy()
        bad[0, 0] = -1.0 if case == "negative scale" else np.nan
        stored[name + ".scales"] = bad
    elif case == "int8 codes in an int4 packet":
        return "int4", dict(quantize_tensors(dict(packed), "int8").stored)
    return packed.dtype, stored


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no scales", "has no scales"),
        ("orphan scales", "belong to no tensor"),
        ("scales of scales", "belong to no tensor"),
        ("fp32 scales", "must be float16 of shape"),
        ("scales shape", "must be float16 of shape"),
        ("negative scale", "negative, NaN or infinite"),
        ("nan scale", "negative, NaN or infinite"),
        ("int8 codes in an int4 packet", "is not 4-bit codes"),
    ],
)
def test_malformed_codes_or_scales_are_refused_with_one_sentence(home, identity, case, message):
    adapter = random_adapter(seed=3)
    manifest, _, _ = sign(identity, Compaction(bits=4).apply(adapter))
    dtype, stored = malformed(quantize_tensors(adapter.tensors, "int4"), case)
    data = save({k: np.ascontiguousarray(v) for k, v in sorted(stored.items())})
    bad, signature = resign(identity, manifest, data, dtype=dtype)
    verify_manifest(bad, signature)  # the signature is fine; the weights are not
    with pytest.raises(PacketError, match=message) as info:
        verify_weights(bad, data)
    assert str(info.value).count(". ") == 0
    assert str(info.value).endswith(".")
    library = Library.open(home, identity=identity)
    try:
        with pytest.raises(PacketError, match=message):
            library.add(bad, signature, data)
        assert library.list_packets() == []
    finally:
        library.close()


def test_unknown_bit_widths_and_versions_are_refused(identity):
    adapter = random_adapter(seed=3)
    manifest, _, data = sign(identity, Compaction(bits=8).apply(adapter))
    for changes, message in [
        ({"dtype": "int3"}, "dtype 'int3' is not supported in format 3"),
        ({"dtype": "int8", "format": 1}, "dtype 'int8' is not supported in format 1"),
        ({"format": 5}, "format version 5; this fieldkit reads versions 1, 2, 3, 4"),
    ]:
        with pytest.raises(PacketError, match=message):
            check_manifest(dict(manifest) | changes)
    # int8 codes in a float16 manifest of format 3
    bad, signature = resign(identity, manifest, data, dtype="float16")
    with pytest.raises(PacketError, match="is int8, not float16"):
        verify_weights(bad, data)


def test_trimmed_ranks_need_format_3(identity):
    manifest, _, data = sign(identity, Compaction(energy=0.5).apply(random_adapter(seed=3)))
    assert manifest["format"] == 3
    old, _ = resign(identity, manifest, data, format=1)
    with pytest.raises(PacketError, match="but the config says 4"):
        verify_weights(old, data)


def test_codes_of_an_unknown_safetensors_dtype_are_refused(identity):
    adapter = random_adapter(seed=3)
    manifest, _, _ = sign(identity, Compaction(bits=8).apply(adapter))
    stored = dict(quantize_tensors(adapter.tensors, "int8").stored)
    stored = {k: (v.astype(np.int16) if not k.endswith("scales") else v) for k, v in stored.items()}
    data = save(dict(sorted(stored.items())))
    bad, _ = resign(identity, manifest, data)
    with pytest.raises(PacketError, match="has dtype 'I16'"):
        verify_weights(bad, data)
