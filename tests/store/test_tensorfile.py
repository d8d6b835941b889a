"""Safetensors bytes read as views: same tensors as `safetensors`, and as strict."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import SafetensorError
from safetensors.numpy import load, save

from fieldkit.errors import PacketError
from fieldkit.store.tensorfile import tensor_views


def sample() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "a.lora_a": rng.normal(size=(6, 4)).astype(np.float16),
        "a.lora_b": rng.normal(size=(4, 3)).astype(np.float32),
        "b.scalar": np.array(1.5, dtype=np.float64),
        "b.empty": np.zeros((0, 5), dtype=np.float16),
        "c": rng.normal(size=(3,)).astype(np.float16),
    }


def with_header(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def parts(blob: bytes) -> tuple[dict, bytes]:
    size = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8 : 8 + size]), blob[8 + size :]


def test_views_hold_the_same_tensors_as_safetensors_and_copy_nothing():
    blob = save(sample(), metadata={"format": "mlx"})
    views = tensor_views(blob)
    reference = load(blob)
    assert views.keys() == reference.keys()
    for name, view in views.items():
        assert view.dtype == reference[name].dtype
        assert view.shape == reference[name].shape
        np.testing.assert_array_equal(view, reference[name])
        assert not view.flags.writeable
        assert view.size == 0 or np.shares_memory(view, np.frombuffer(blob, np.uint8))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda h, d: (h, d + b"\0\0"), "cover the data exactly"),
        (lambda h, d: (h, d[:-2]), "runs past the end"),
        (lambda h, d: ({**h, "c": {**h["c"], "shape": [4]}}, d), "wrong number of bytes"),
        (lambda h, d: ({**h, "c": {**h["c"], "shape": [-3]}}, d), "malformed shape"),
        (lambda h, d: ({**h, "c": {**h["c"], "shape": [True, 3]}}, d), "malformed shape"),
        (lambda h, d: ({**h, "c": {**h["c"], "dtype": "Q7"}}, d), "dtype 'Q7'"),
        (lambda h, d: ({**h, "c": {**h["c"], "data_offsets": [0]}}, d), "malformed offsets"),
        (lambda h, d: ({**h, "__metadata__": {"n": 3}}, d), "map of strings"),
        (lambda h, d: ({**h, "c": [1, 2]}, d), "no description"),
        (lambda h, d: ({**h, "c": {**h["c"], "dtype": ["F16"]}}, d), "dtype \\['F16'\\]"),
        (lambda h, d: ({**h, "d": dict(h["c"])}, d), "does not follow"),  # overlap
    ],
)
def test_malformed_headers_are_refused_like_safetensors_refuses_them(edit, message):
    header, data = parts(save(sample()))
    blob = with_header(*edit(header, data))
    with pytest.raises((SafetensorError, ValueError, TypeError)):
        load(blob)
    with pytest.raises(PacketError, match=message):
        tensor_views(blob, "weights of 'x'")


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x05",
        struct.pack("<Q", 1 << 40) + b"{}",
        struct.pack("<Q", 4) + b"[1] ",
        b"\0" * 8,
        struct.pack("<Q", 200_000) + b"[" * 200_000,  # nesting deeper than any parser allows
        struct.pack("<Q", 2) + b"\xff\xfe",
    ],
)
def test_broken_framing_is_refused(blob):
    with pytest.raises(PacketError, match="not a readable safetensors file"):
        tensor_views(blob)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cuts=st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.sampled_from("fid")),
        min_size=1,
        max_size=4,
    )
)
def test_damaged_files_get_the_same_verdict_as_from_safetensors(cuts):
    blob = bytearray(save(sample()))
    for position, value, kind in cuts:
        at = position % (len(blob) + 1)
        if kind == "f" and at < len(blob):
            blob[at] ^= value or 1
        elif kind == "i":
            blob[at:at] = bytes([value])
        else:
            del blob[at : at + 1 + value % 8]
    try:
        reference = load(bytes(blob))
    except Exception:  # safetensors refuses it (any error type): so must we
        with pytest.raises(PacketError):
            tensor_views(bytes(blob))
        return
    if any(a.dtype.kind != "f" for a in reference.values()):  # a dtype fieldkit does not read
        with pytest.raises(PacketError, match="dtype"):
            tensor_views(bytes(blob))
        return
    views = tensor_views(bytes(blob))
    assert views.keys() == reference.keys()
    for name, view in views.items():
        np.testing.assert_array_equal(view, reference[name])


def test_integer_tensors_are_refused_though_safetensors_reads_them():
    header, data = parts(save(sample()))
    blob = with_header({**header, "c": {**header["c"], "dtype": "I16"}}, data)
    assert load(blob)["c"].dtype == np.int16
    with pytest.raises(PacketError, match="tensor c has dtype 'I16'"):
        tensor_views(blob)
