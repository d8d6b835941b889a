"""The chunk codec: lossless for any bytes, bounded against bombs, and shuffling pays on fp16."""

from __future__ import annotations

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from fieldkit.errors import ProtocolError
from fieldkit.gossip.chunks import ChunkDecoder, ChunkEncoder, Codec, shuffle2, unshuffle2


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=5000), shuffle=st.booleans())
def test_encode_decode_round_trips_any_bytes(data, shuffle):
    codec, payload = ChunkEncoder(shuffle=shuffle).encode(data)
    assert len(payload) <= len(data)
    assert ChunkDecoder().decode(codec, payload, len(data)) == data


@given(data=st.binary(max_size=300))
def test_shuffle_is_invertible(data):
    assert unshuffle2(shuffle2(data)) == data


def test_shuffled_planes_compress_fp16_weights_better_than_plain_zstd():
    weights = np.random.default_rng(0).normal(0, 0.02, 16384).astype(np.float16).tobytes()
    codec, shuffled = ChunkEncoder(shuffle=True).encode(weights)
    _, plain = ChunkEncoder(shuffle=False).encode(weights)
    assert codec is Codec.ZSTD_SHUFFLE2
    assert len(shuffled) < 0.93 * len(plain)


def test_random_bytes_are_stored_raw():
    data = np.random.default_rng(1).bytes(4096)
    assert ChunkEncoder().encode(data)[0] is Codec.RAW


@pytest.mark.parametrize(
    ("codec", "payload"),
    [
        (Codec.ZSTD, zstandard.ZstdCompressor().compress(b"\0" * 10_000_000)),
        (Codec.ZSTD, b"not zstd at all"),
        (Codec.ZSTD_SHUFFLE2, b"\0\0"),
        (Codec.ZSTD_SHUFFLE2, b"\xff\xff\xff\xff" + b"x" * 10),
        (Codec.RAW, b"short"),
        (7, b"x" * 100),
    ],
)
def test_bad_payloads_are_protocol_errors(codec, payload):
    with pytest.raises(ProtocolError):
        ChunkDecoder().decode(codec, payload, 100)
