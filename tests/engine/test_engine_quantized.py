"""Quantised and trimmed packets on the tiny model: dequantised once, then swapped from cache."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from fieldkit.engine.engine import Engine
from fieldkit.store.adapter import Adapter
from fieldkit.store.quantize import Compaction, QuantizedTensors, ranks

QUESTION = "What does the pump need?"


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> Iterator[Engine]:
    eng = Engine(tiny_model_dir)
    eng.load()
    yield eng
    eng.close()


def with_key(adapter: Adapter, key: str) -> Adapter:
    return Adapter(config=adapter.config, tensors=adapter.tensors, key=key)


@pytest.mark.parametrize("bits", [8, 4])
def test_a_quantised_adapter_answers_as_its_dequantised_floats(
    engine: Engine, make_adapter: Callable[..., Adapter], bits: int
) -> None:
    packed = with_key(Compaction(bits=bits).apply(make_adapter(11)), f"q{bits}")
    assert isinstance(packed.tensors, QuantizedTensors)
    floats = Adapter(packed.config, dict(packed.tensors), key=f"f{bits}")
    result = engine.answer(QUESTION, packed, max_tokens=10)
    assert result.adapter == f"q{bits}"
    assert result.tokens == engine.answer(QUESTION, floats, max_tokens=10).tokens
    np.testing.assert_array_equal(
        engine.next_token_logits(QUESTION, packed), engine.next_token_logits(QUESTION, floats)
    )


def test_int8_stays_close_to_the_original_and_changes_the_output(
    engine: Engine, make_adapter: Callable[..., Adapter]
) -> None:
    original = make_adapter(12)
    packed = with_key(Compaction(bits=8).apply(original), "q8-close")
    got = engine.next_token_logits(QUESTION, packed)
    want = engine.next_token_logits(QUESTION, original)
    base = engine.next_token_logits(QUESTION, None)
    # the adapter moves these logits by up to ~15; int8 moves them by a few percent of that
    assert np.abs(got - want).max() < 0.05 * np.abs(want - base).max()


def test_dequantised_once_then_swapped_from_the_cache(
    engine: Engine, make_adapter: Callable[..., Adapter]
) -> None:
    packed = with_key(Compaction(bits=4).apply(make_adapter(13)), "q4-once")
    engine.swap(packed)  # first use: dequantise, convert, keep
    assert "q4-once" in engine.cached_adapters()
    engine.swap(None)
    # the same key with no tensors at all: only a cached, already dequantised copy can serve
    hollow = Adapter(packed.config, {}, key="q4-once")
    assert engine.swap(hollow) < 50
    want = engine.answer(QUESTION, packed, max_tokens=8).tokens
    assert engine.answer(QUESTION, hollow, max_tokens=8).tokens == want


def test_a_trimmed_adapter_runs_each_module_at_its_own_rank(
    engine: Engine, make_adapter: Callable[..., Adapter]
) -> None:
    original = make_adapter(14, rank=8)
    trimmed = with_key(Compaction(energy=0.8).apply(original), "trim-0.8")
    kept = ranks(trimmed)
    assert min(kept) < 8
    full = with_key(Compaction(energy=1.0).apply(original), "trim-1.0")  # rebalanced only
    np.testing.assert_allclose(
        engine.next_token_logits(QUESTION, full),
        engine.next_token_logits(QUESTION, original),
        rtol=1e-4,
        atol=1e-4,
    )
    result = engine.answer(QUESTION, trimmed, max_tokens=8)
    assert result.adapter == "trim-0.8"
    assert result.generation_tokens > 0


def test_a_4_bit_packet_from_the_library_answers(
    engine: Engine, home, make_packet, make_adapter: Callable[..., Adapter]
) -> None:
    from fieldkit.store.library import Library

    record = make_packet(home, adapter=Compaction(bits=4, energy=0.9).apply(make_adapter(21)))
    library = Library.open(home)
    try:
        adapter = library.load_adapter(record)
    finally:
        library.close()
    assert adapter.key == record.sha256
    result = engine.answer(QUESTION, adapter, max_tokens=8)
    assert result.adapter == record.sha256
    assert result.generation_tokens > 0
    floats = Adapter(adapter.config, dict(adapter.tensors), key="floats-21")
    assert result.tokens == engine.answer(QUESTION, floats, max_tokens=8).tokens
    assert result.tokens != engine.answer(QUESTION, None, max_tokens=8).tokens
