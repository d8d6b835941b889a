"""Adaptive merging on the tiny real MLX model: it lowers entropy and is deterministic."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from fieldkit.cli import main
from fieldkit.errors import PacketError
from fieldkit.store.models import model_fingerprint
from fieldkit.training.adaptive_merge import AdaptiveConfig, learn_merge, mean_entropy
from fieldkit.training.merge import MergeSpec, merge_adapters
from tests.fixtures.tiny_model import random_adapter
from tests.training.test_merge import product

QUESTIONS = [
    "Does the pump need fresh water every morning?",
    "Who cleans the filter before the rain?",
    "Our tractor needs two bolts today?",
    "Does a goat need the vaccine after 3 days?",
    "Who measures the harvest at noon?",
    "The nurse checks a fever in the field?",
]
CONFIG = AdaptiveConfig(steps=12, learning_rate=0.05, batch_size=3, seed=7)


@pytest.fixture
def pair():
    return [random_adapter(11, rank=4, scale=2.0), random_adapter(12, rank=4, scale=2.0)]


def test_adaptive_merge_lowers_entropy_and_stores_what_it_learned(tiny_model_dir, pair) -> None:
    seen = []
    result = learn_merge(tiny_model_dir, pair, QUESTIONS, CONFIG, on_progress=seen.append)
    assert [p.step for p in seen] == list(range(1, 13))
    assert result.steps == 12
    assert result.entropy_after < result.entropy_before - 1e-3
    coefficients = np.array(list(result.coefficients.values()))
    assert coefficients.shape == (4 * 7, 2)  # one per packet and module
    assert ((coefficients >= 0) & (coefficients <= 1)).all()
    assert not np.allclose(coefficients, 0.5)
    # The stored packet is sum_j c_j D_j per module ...
    module = "model.layers.1.mlp.up_proj"
    c = result.coefficients[module]
    expected = c[0] * product(pair[0], module) + c[1] * product(pair[1], module)
    np.testing.assert_allclose(product(result.adapter, module), expected, atol=1e-4)
    # ... and, applied as answering applies it, it has lower entropy than the linear merge.
    linear = merge_adapters(pair, MergeSpec("linear"))
    assert mean_entropy(tiny_model_dir, result.adapter, QUESTIONS) < mean_entropy(
        tiny_model_dir, linear, QUESTIONS
    )
    record = result.record()
    assert record["method"] == "adaptive"
    assert record["coefficients"] == result.coefficients
    assert record["seed"] == 7


def test_adaptive_merge_is_deterministic_with_a_seed(tiny_model_dir, pair) -> None:
    layer = AdaptiveConfig(
        granularity="layer", steps=6, learning_rate=0.05, batch_size=2, seed=3, weights=(3, 1)
    )
    first = learn_merge(tiny_model_dir, pair, QUESTIONS, layer)
    second = learn_merge(tiny_model_dir, pair, QUESTIONS, layer)
    assert first.coefficients == second.coefficients
    assert first.adapter.key == second.adapter.key
    assert sorted(first.coefficients) == [f"model.layers.{i}" for i in range(4)]
    assert first.entropy_before == second.entropy_before
    other = learn_merge(
        tiny_model_dir, pair, QUESTIONS, AdaptiveConfig(**{**layer.__dict__, "seed": 4})
    )
    assert other.coefficients != first.coefficients


def test_adaptive_parameters_are_checked_first(tiny_model_dir, pair) -> None:
    with pytest.raises(PacketError, match="per module or per layer"):
        AdaptiveConfig(granularity="tensor")
    with pytest.raises(PacketError, match="weights of 0 or more"):
        learn_merge(tiny_model_dir, pair, QUESTIONS, AdaptiveConfig(weights=(1.0, -1.0)))
    with pytest.raises(PacketError, match="exemplar questions"):
        learn_merge(tiny_model_dir, pair, [" "], CONFIG)


def test_cli_adaptive_merge_is_marked_merged_with_its_coefficients(
    tiny_model_dir, home, make_packet
) -> None:
    fingerprint = model_fingerprint(tiny_model_dir)
    for seed, name in ((11, "pumps"), (12, "wells")):
        make_packet(
            home,
            name=name,
            adapter=random_adapter(seed, rank=4),
            exemplars=[f"{q[:-1]} {tail}?" for q in QUESTIONS for tail in ("now", "again")][
                seed - 11 :: 1
            ][:10],
            base_fingerprint=fingerprint,
        )
    args = ["--home", str(home.root), "--model", str(tiny_model_dir), "merge", "pumps", "wells"]
    result = CliRunner().invoke(
        main,
        [*args, "--method", "adaptive", "--steps", "4", "--granularity", "layer", "--name", "m"],
    )
    assert result.exit_code == 0, result.output
    assert "adaptive merge (layer, 4 steps, entropy" in result.output
    from fieldkit.store.identity import Identity
    from fieldkit.store.library import Library

    library = Library.open(home, identity=Identity.load_or_create(home))
    try:
        record = library.get("m")
        assert record.merged
        recipe = record.manifest["merge"]
        assert recipe["method"] == "adaptive"
        assert recipe["steps"] == 4
        assert len(recipe["coefficients"]) == 4
        assert recipe["entropy_after"] < recipe["entropy_before"]
        assert library.verify("m")[1] is None
    finally:
        library.close()
