"""Merges on tiny adapters against a direct numpy computation of each formula."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fieldkit.cli import main
from fieldkit.errors import PacketError
from fieldkit.store.identity import Identity
from fieldkit.store.library import Library
from fieldkit.store.quantize import Compaction
from fieldkit.training.merge import MergeSpec, magnitude_trim, merge_adapters, random_trim
from tests.fixtures.tiny_model import random_adapter

FULL_RANK = 64  # the smallest width of the tiny model's projections: SVD keeps everything


def product(adapter, module: str) -> np.ndarray:
    t = adapter.tensors
    return adapter.config.scale * (
        t[f"{module}.lora_a"].astype(np.float64) @ t[f"{module}.lora_b"].astype(np.float64)
    )


def direct_ties(deltas: list[np.ndarray], weights: list[float], density: float) -> np.ndarray:
    """TIES written out plainly: top-k trim, sign election on the sum, disjoint mean."""
    trimmed = []
    for d in deltas:
        k = int(density * d.size)
        threshold = np.sort(np.abs(d).ravel())[-k]
        trimmed.append(np.where(np.abs(d) >= threshold, d, 0.0))
    sign = np.sign(sum(trimmed))
    sign[sign == 0] = 1.0
    total = np.zeros_like(deltas[0])
    count = np.zeros_like(deltas[0])
    for t, w in zip(trimmed, weights, strict=True):
        keep = (np.sign(t) == sign) & (t != 0)
        total += np.where(keep, w * t, 0.0)
        count += keep
    return total / np.maximum(count, 1)


MODULES = ["model.layers.2.mlp.down_proj", "model.layers.0.self_attn.k_proj"]


@pytest.fixture
def pair():
    return [random_adapter(1, rank=4, scale=2.0), random_adapter(2, rank=4, scale=3.0)]


def test_linear_merge_is_the_weighted_sum_of_products(pair) -> None:
    merged = merge_adapters(pair, MergeSpec(method="linear", weights=(0.7, 0.3)))
    assert merged.config.rank == 8
    assert merged.config.scale == 1.0
    for module in MODULES:  # two rank-4 deltas sum to rank 8: the re-factoring is exact
        expected = 0.7 * product(pair[0], module) + 0.3 * product(pair[1], module)
        np.testing.assert_allclose(product(merged, module), expected, atol=1e-4)


def test_default_linear_weights_are_the_mean(pair) -> None:
    merged = merge_adapters(pair, MergeSpec(method="linear"))
    module = MODULES[0]
    expected = (product(pair[0], module) + product(pair[1], module)) / 2
    np.testing.assert_allclose(product(merged, module), expected, atol=1e-4)


def test_ties_matches_the_direct_formula(pair) -> None:
    merged = merge_adapters(pair, MergeSpec(method="ties", density=0.5, rank=FULL_RANK))
    for module in MODULES:
        deltas = [product(a, module) for a in pair]
        expected = direct_ties(deltas, [1.0, 1.0], 0.5)
        np.testing.assert_allclose(product(merged, module), expected, atol=1e-4)
        assert not np.allclose(expected, (deltas[0] + deltas[1]) / 2, atol=1e-3)


def test_low_rank_refactoring_is_the_best_approximation(pair) -> None:
    merged = merge_adapters(pair, MergeSpec(method="ties", density=0.5, rank=4))
    module = MODULES[0]
    full = direct_ties([product(a, module) for a in pair], [1.0, 1.0], 0.5)
    s = np.linalg.svd(full, compute_uv=False)
    error = np.linalg.norm(product(merged, module) - full)
    assert error == pytest.approx(np.sqrt((s[4:] ** 2).sum()), rel=1e-4)


def test_dare_ties_matches_the_direct_formula(pair) -> None:
    merged = merge_adapters(
        pair, MergeSpec(method="dare_ties", density=0.5, seed=3, rank=FULL_RANK)
    )
    rng = np.random.default_rng(3)
    modules = sorted(n[: -len(".lora_a")] for n in pair[0].tensors if n.endswith(".lora_a"))
    for module in modules:
        deltas = [product(a, module) for a in pair]
        kept = [np.where(rng.random(d.shape) < 0.5, d / 0.5, 0.0) for d in deltas]
        sign = np.where(sum(kept) >= 0, 1.0, -1.0)
        agree = [(np.sign(k) == sign) for k in kept]
        expected = sum(k * a for k, a in zip(kept, agree, strict=True)) / np.maximum(sum(agree), 1)
        if module in MODULES:
            np.testing.assert_allclose(product(merged, module), expected, atol=1e-4)


def test_factorwise_ties_merges_a_and_b_apart_like_peft(pair) -> None:
    merged = merge_adapters(pair, MergeSpec(method="ties", density=0.5, factorwise=True))
    assert merged.config.rank == 4
    assert merged.config.scale == 1.0
    weights = [np.sqrt(2.0), np.sqrt(3.0)]  # sqrt(weight 1.0 * scale), applied first as PEFT does
    for module in MODULES:
        for part in ("lora_a", "lora_b"):
            parts = [
                w * a.tensors[f"{module}.{part}"].astype(np.float64)
                for w, a in zip(weights, pair, strict=True)
            ]
            expected = direct_ties(parts, [1.0, 1.0], 0.5)
            np.testing.assert_allclose(merged.tensors[f"{module}.{part}"], expected, atol=1e-5)
        dense = direct_ties([product(a, module) for a in pair], [1.0, 1.0], 0.5)
        assert not np.allclose(product(merged, module), dense, atol=1e-3)


def test_trims_keep_the_promised_share() -> None:
    x = np.random.default_rng(0).normal(size=(50, 40))
    kept = magnitude_trim(x, 0.25)
    assert np.count_nonzero(kept) == 500
    assert np.abs(kept[kept != 0]).min() >= np.abs(x[kept == 0]).max()
    dropped = random_trim(x, 0.5, np.random.default_rng(1))
    assert 0.4 < np.count_nonzero(dropped) / x.size < 0.6
    np.testing.assert_allclose(dropped[dropped != 0], 2 * x[dropped != 0])


def test_incompatible_adapters_are_refused() -> None:
    with pytest.raises(PacketError, match="different layers"):
        merge_adapters([random_adapter(1), random_adapter(2, num_layers=2)])
    with pytest.raises(PacketError, match="at least two"):
        merge_adapters([random_adapter(1)])
    with pytest.raises(PacketError, match="one rank, untrimmed"):
        merge_adapters([random_adapter(1), random_adapter(2, rank=8)], MergeSpec(factorwise=True))
    trimmed = Compaction(energy=0.5).apply(random_adapter(2))
    with pytest.raises(PacketError, match="one rank, untrimmed"):
        merge_adapters([random_adapter(1), trimmed], MergeSpec(factorwise=True))
    dense = merge_adapters([random_adapter(1), Compaction(bits=4).apply(trimmed)])
    assert dense.config.rank == 8
    with pytest.raises(PacketError, match="method"):
        MergeSpec(method="average")


def test_merge_command_adds_a_packet_marked_merged(tmp_path: Path, home, make_packet) -> None:
    a = make_packet(home, name="agronomy", adapter=random_adapter(1, num_layers=2))
    b = make_packet(home, name="veterinary", adapter=random_adapter(2, num_layers=2))
    runner = CliRunner()
    args = ["--home", str(home.root), "merge", "agronomy", "veterinary", "--name", "both"]
    result = runner.invoke(main, [*args, "--method", "ties", "--density", "0.5"])
    assert result.exit_code == 0, result.output
    library = Library.open(home, identity=Identity.load_or_create(home))
    try:
        record = library.get("both")
        assert record.merged
        assert record.domain == "agronomy+veterinary"
        assert record.manifest["lineage"] == [a.packet_id, b.packet_id]
        assert library.verify("both")[1] is None
        adapter = library.load_adapter(record)
        module = "model.layers.3.mlp.up_proj"
        deltas = [product(library.load_adapter(r), module) for r in (a, b)]
        rank = adapter.config.rank
        s = np.linalg.svd(direct_ties(deltas, [1.0, 1.0], 0.5), compute_uv=False)
        error = np.linalg.norm(product(adapter, module) - direct_ties(deltas, [1.0, 1.0], 0.5))
        assert error <= np.sqrt((s[rank:] ** 2).sum()) + 1e-2  # fp16 storage
    finally:
        library.close()
    again = runner.invoke(main, [*args, "--method", "linear"])
    assert again.exit_code == 1
    assert "already in the library" in again.output
    bad = runner.invoke(
        main, ["--home", str(home.root), "merge", "agronomy", "nope", "--name", "x"]
    )
    assert bad.exit_code == 1
    assert "Traceback" not in bad.output
