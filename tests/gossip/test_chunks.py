"""The chunk codec: lossless for any bytes, bounded against bombs, and shuffling pays on fp16."""

from __future__ import annotations

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from fieldkit.errors import ProtocolError
from fieldkit.gossip.chunks import (
    AdaptiveCompression,
    ChunkDecoder,
    ChunkEncoder,
    Codec,
    shuffle2,
    unshuffle2,
)


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


def fp16_chunk(seed: int = 0) -> bytes:
    return np.random.default_rng(seed).normal(0, 0.02, 16384).astype(np.float16).tobytes()


def test_adaptive_compression_sends_raw_while_the_link_keeps_up():
    policy = AdaptiveCompression(probe_every=8)
    encoder = ChunkEncoder(adaptive=policy)
    decisions = []
    for i in range(64):
        data = fp16_chunk(i)
        predicted = encoder.next_is_compressed(data)  # the session times only these chunks
        codec, payload = encoder.encode(data)
        assert predicted == encoder.tried
        decisions.append(encoder.tried)
        assert (codec is not Codec.RAW) == encoder.tried
        # a fast link: 32 KiB leave in 10 us, compressing them takes 100 us
        policy.observe(
            len(data), len(payload), 100e-6 if encoder.tried else 1e-6, 10e-6, encoder.tried
        )
    assert decisions[0]  # the first chunk measures what compression saves
    assert 6 <= sum(decisions) <= 10  # then only every 8th chunk, to keep measuring
    assert not policy.pays()


def test_adaptive_compression_compresses_every_chunk_on_a_slow_link():
    policy = AdaptiveCompression(probe_every=8)
    encoder = ChunkEncoder(adaptive=policy)
    for i in range(32):
        data = fp16_chunk(i)
        codec, payload = encoder.encode(data)
        assert codec is Codec.ZSTD_SHUFFLE2
        policy.observe(len(data), len(payload), 100e-6, len(payload) / 100_000, True)  # 100 kB/s
    assert policy.pays()


def test_adaptive_compression_resumes_compressing_when_the_link_slows_down():
    policy = AdaptiveCompression(probe_every=4)
    encoder = ChunkEncoder(adaptive=policy)
    data = fp16_chunk()
    for _ in range(16):  # fast at first
        _, payload = encoder.encode(data)
        policy.observe(len(data), len(payload), 100e-6, 10e-6, encoder.tried)
    assert not policy.pays()
    for _ in range(16):  # then the link slows to 1 MB/s (the socket buffer filled up)
        _, payload = encoder.encode(data)
        policy.observe(len(data), len(payload), 100e-6, len(payload) / 1e6, encoder.tried)
    assert policy.pays()
    assert encoder.encode(data)[0] is Codec.ZSTD_SHUFFLE2


def test_incompressible_chunks_stop_being_compressed():
    policy = AdaptiveCompression(probe_every=8)
    encoder = ChunkEncoder(adaptive=policy)
    tried = 0
    for i in range(32):
        data = np.random.default_rng(i).bytes(32768)  # saves nothing, even on a slow link
        codec, payload = encoder.encode(data)
        assert codec is Codec.RAW
        tried += encoder.tried
        policy.observe(len(data), len(payload), 100e-6, len(payload) / 100_000, encoder.tried)
    assert tried <= 6


def test_the_encoder_says_ahead_whether_it_will_compress():
    data = fp16_chunk()
    assert not ChunkEncoder(level=0).next_is_compressed(data)  # compression off
    assert not ChunkEncoder().next_is_compressed(b"")
    encoder = ChunkEncoder()  # no policy: every chunk is tried
    assert encoder.next_is_compressed(data)
    encoder.encode(data)
    assert encoder.tried
