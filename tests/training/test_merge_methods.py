"""Task arithmetic, SLERP, DARE-linear, weighted TIES and sequential merges, each against a
direct numpy computation on tiny adapters; the weight, rank and count checks; the CLI."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
from click.testing import CliRunner

from fieldkit.cli import main
from fieldkit.errors import PacketError
from fieldkit.gossip.summary import SyncOptions
from fieldkit.gossip.sync import start_listener, sync_with
from fieldkit.services import Services
from fieldkit.training.merge import MergeSpec, merge_adapters
from tests.fixtures.tiny_model import random_adapter
from tests.training.test_merge import MODULES, direct_ties, product

ALL_MODULES = sorted(
    n[: -len(".lora_a")] for n in random_adapter(1).tensors if n.endswith(".lora_a")
)


@pytest.fixture
def trio():
    return [
        random_adapter(1, rank=4, scale=2.0),
        random_adapter(2, rank=4, scale=3.0),
        random_adapter(3, rank=4, scale=1.0),
    ]


def direct_slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """SLERP on the flattened tensors, written out from the formula."""
    cos = float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))
    if abs(cos) > 0.9995:
        return (1 - t) * a + t * b
    theta = math.acos(cos)
    return (math.sin((1 - t) * theta) * a + math.sin(t * theta) * b) / math.sin(theta)


def test_task_arithmetic_is_lambda_times_the_weighted_sum(trio) -> None:
    spec = MergeSpec("task_arithmetic", weights=(1.0, -0.5, 2.0), lam=0.6)
    merged = merge_adapters(trio, spec)
    assert merged.config.rank == 12  # three rank-4 deltas: the re-factoring is exact
    for module in MODULES:
        d = [product(a, module) for a in trio]
        expected = 0.6 * (d[0] - 0.5 * d[1] + 2.0 * d[2])
        np.testing.assert_allclose(product(merged, module), expected, atol=1e-4)


def test_linear_weights_are_relative(trio) -> None:
    a = merge_adapters(trio, MergeSpec("linear", weights=(7.0, 2.0, 1.0)))
    b = merge_adapters(trio, MergeSpec("linear", weights=(0.7, 0.2, 0.1)))
    for module in MODULES:
        d = [product(x, module) for x in trio]
        expected = 0.7 * d[0] + 0.2 * d[1] + 0.1 * d[2]
        np.testing.assert_allclose(product(a, module), expected, atol=1e-4)
        np.testing.assert_allclose(product(b, module), expected, atol=1e-4)


def test_weighted_ties_is_the_weighted_disjoint_mean(trio) -> None:
    merged = merge_adapters(trio, MergeSpec("ties", density=0.3, weights=(3.0, 1.0, 1.0), rank=32))
    for module in MODULES:
        d = [product(a, module) for a in trio]
        k = [int(0.3 * x.size) for x in d]
        trimmed = [
            np.where(np.abs(x) >= np.sort(np.abs(x).ravel())[-n], x, 0.0)
            for x, n in zip(d, k, strict=True)
        ]
        w = [3.0, 1.0, 1.0]
        sign = np.where(sum(wi * t for wi, t in zip(w, trimmed, strict=True)) >= 0, 1.0, -1.0)
        num = sum(wi * t * (np.sign(t) == sign) for wi, t in zip(w, trimmed, strict=True))
        den = sum(wi * (np.sign(t) == sign) for wi, t in zip(w, trimmed, strict=True))
        expected = np.where(den > 0, num / np.maximum(den, 1e-12), 0.0)
        if module.endswith("k_proj"):  # width 32: rank 32 keeps everything
            np.testing.assert_allclose(product(merged, module), expected, atol=1e-4)


def test_dare_linear_matches_the_direct_formula(trio) -> None:
    spec = MergeSpec("dare_linear", density=0.4, weights=(1.0, 2.0, 1.0), seed=5, lam=1.5)
    merged = merge_adapters(trio, spec)
    rng = np.random.default_rng(5)
    for module in ALL_MODULES:  # the generator is drawn module by module, adapter by adapter
        d = [product(a, module) for a in trio]
        kept = [np.where(rng.random(x.shape) < 0.4, x / 0.4, 0.0) for x in d]
        expected = 1.5 * (kept[0] + 2.0 * kept[1] + kept[2]) / 4.0
        if module in MODULES:
            s = np.linalg.svd(expected, compute_uv=False)
            err = np.linalg.norm(product(merged, module) - expected)
            assert err == pytest.approx(np.sqrt((s[12:] ** 2).sum()), rel=1e-3, abs=1e-6)


def test_slerp_matches_the_formula_and_its_endpoints_are_the_inputs(trio) -> None:
    pair = trio[:2]
    merged = merge_adapters(pair, MergeSpec("slerp", t=0.3))
    start = merge_adapters(pair, MergeSpec("slerp", t=0.0))
    end = merge_adapters(pair, MergeSpec("slerp", t=1.0))
    by_weights = merge_adapters(pair, MergeSpec("slerp", weights=(7.0, 3.0)))
    for module in MODULES:
        d0, d1 = product(pair[0], module), product(pair[1], module)
        expected = direct_slerp(d0, d1, 0.3)
        assert not np.allclose(expected, 0.7 * d0 + 0.3 * d1, atol=1e-3)
        np.testing.assert_allclose(product(merged, module), expected, atol=1e-4)
        np.testing.assert_allclose(product(by_weights, module), expected, atol=1e-4)
        np.testing.assert_allclose(product(start, module), d0, atol=1e-4)
        np.testing.assert_allclose(product(end, module), d1, atol=1e-4)


def test_slerp_of_near_parallel_deltas_is_linear() -> None:
    a = random_adapter(1, rank=4, scale=2.0)
    tensors = dict(a.tensors)
    b = type(a)(config=a.config, tensors={k: v * 1.5 for k, v in tensors.items()}, key="b")
    merged = merge_adapters([a, b], MergeSpec("slerp", t=0.25))
    for module in MODULES:
        d0, d1 = product(a, module), product(b, module)  # d1 = 2.25 d0: parallel
        np.testing.assert_allclose(product(merged, module), 0.75 * d0 + 0.25 * d1, atol=1e-4)


def test_sequential_folds_in_the_given_order(trio) -> None:
    spec = MergeSpec("ties", density=0.5, sequential=True, rank=32)
    forward = merge_adapters(trio, spec)
    backward = merge_adapters(trio[::-1], spec)
    slerped = merge_adapters(trio, MergeSpec("slerp", sequential=True, rank=32))
    mean = merge_adapters(trio, MergeSpec("linear", sequential=True))
    module = "model.layers.0.self_attn.k_proj"  # width 32: rank 32 keeps everything
    d = [product(a, module) for a in trio]
    first = direct_ties(d[:2], [1.0, 1.0], 0.5)
    # step 2: the running merge holds two packets' weight, the third one
    trimmed = [
        np.where(np.abs(x) >= np.sort(np.abs(x).ravel())[-int(0.5 * x.size)], x, 0.0)
        for x in (first, d[2])
    ]
    sign = np.where(2 * trimmed[0] + trimmed[1] >= 0, 1.0, -1.0)
    agree = [np.sign(t) == sign for t in trimmed]
    den = 2 * agree[0] + agree[1]
    expected = np.where(
        den > 0, (2 * trimmed[0] * agree[0] + trimmed[1] * agree[1]) / np.maximum(den, 1), 0.0
    )
    np.testing.assert_allclose(product(forward, module), expected, atol=1e-4)
    assert not np.allclose(product(backward, module), expected, atol=1e-3)  # order matters
    spherical = direct_slerp(direct_slerp(d[0], d[1], 0.5), d[2], 1 / 3)
    np.testing.assert_allclose(product(slerped, module), spherical, atol=1e-4)
    for m in MODULES:  # equal-weight sequential linear is the plain mean
        plain = sum(product(a, m) for a in trio) / 3
        np.testing.assert_allclose(product(mean, m), plain, atol=1e-4)


@pytest.mark.parametrize(
    ("spec", "n", "message"),
    [
        ({"method": "ties", "weights": (1.0, 2.0)}, 3, "3 packets but 2 weights"),
        ({"method": "linear", "weights": (1.0, float("nan"))}, 2, "finite"),
        ({"method": "ties", "weights": (1.0, -1.0)}, 2, "weights of 0 or more"),
        ({"method": "linear", "weights": (0.0, 0.0)}, 2, "a weight above 0"),
        ({"method": "slerp"}, 3, "add --sequential"),
        ({"method": "slerp", "t": 0.5, "weights": (1.0, 1.0)}, 2, "either --t or --weights"),
        ({"method": "ties", "sequential": True}, 2, "at least three"),
        ({"method": "task_arithmetic", "sequential": True}, 3, "plain sum"),
        ({"method": "ties", "rank": 0}, 2, "rank must be an integer"),
        ({"method": "slerp", "t": 1.5}, 2, "from 0 to 1"),
        ({"method": "ties", "t": 0.5}, 2, "only to the slerp"),
        ({"method": "dare_linear", "density": 0.0}, 2, "density"),
        ({"method": "task_arithmetic", "lam": float("inf")}, 2, "lambda"),
    ],
)
def test_bad_parameters_are_one_sentence(spec, n, message) -> None:
    with pytest.raises(PacketError, match=message):
        MergeSpec(**spec).check(n)


def test_negative_weights_are_allowed_for_task_arithmetic_only() -> None:
    assert MergeSpec("task_arithmetic", weights=(1.0, -1.0)).check(2) == (1.0, -1.0)


def test_a_rank_wider_than_every_projection_is_refused(trio) -> None:
    with pytest.raises(PacketError, match="exceeds every projection"):
        merge_adapters(trio, MergeSpec("linear", rank=200))


def test_recipe_records_the_method_and_its_parameters() -> None:
    spec = MergeSpec("dare_ties", density=0.5, weights=(0.5, 0.5), seed=4)
    assert spec.record(2, 16) == {
        "method": "dare_ties",
        "weights": [0.5, 0.5],
        "density": 0.5,
        "seed": 4,
        "lambda": 1.0,
        "sequential": False,
        "rank": 16,
        "variant": "dense",
    }


FAST = SyncOptions(handshake_timeout=5, idle_timeout=5)


def test_cli_merges_record_the_recipe_verify_and_sync(make_home, make_packet) -> None:
    a_home, b_home = make_home("a"), make_home("b")
    names = ["pumps", "solar", "wells"]
    for seed, name in enumerate(names, start=1):
        make_packet(a_home, name=name, adapter=random_adapter(seed, num_layers=2))
    runner = CliRunner()
    base = ["--home", str(a_home.root), "merge"]
    ok = runner.invoke(
        main, [*base, "pumps", "solar", "--method", "slerp", "--t", "0.3", "--name", "s"]
    )
    assert ok.exit_code == 0, ok.output
    seq = runner.invoke(
        main,
        [
            *base,
            *names,
            "--method",
            "dare_ties",
            "--sequential",
            "--weights",
            "1,1,2",
            "--name",
            "q",
        ],
    )
    assert seq.exit_code == 0, seq.output
    for bad, sentence in [
        (["--method", "ties", "--weights", "1,x"], "numbers separated by commas"),
        (["--method", "ties", "--weights", "1,2,3"], "2 packets but 3 weights"),
        (["--method", "linear", "--weights", "1,-1"], "weights of 0 or more"),
        (["--method", "ties", "--rank", "999"], "rank must be an integer"),
        (["--method", "slerp", "--t", "2"], "from 0 to 1"),
    ]:
        out = runner.invoke(main, [*base, "pumps", "solar", "--name", "bad", *bad])
        assert out.exit_code == 1, out.output
        assert sentence in out.output
        assert "Traceback" not in out.output
    a, b = Services.build(a_home.root), Services.build(b_home.root)
    try:
        assert "bad" not in {r.name for r in a.library.list_packets()}
        s = a.library.get("s")
        assert s.merged
        assert s.manifest["merge"] == {
            "method": "slerp", "weights": [0.7, 0.3], "t": 0.3, "lambda": 1.0,
            "sequential": False, "rank": 8, "variant": "dense",
        }  # fmt: skip
        q = a.library.get("q")
        assert q.manifest["merge"]["sequential"] is True
        assert q.manifest["merge"]["weights"] == [1.0, 1.0, 2.0]
        assert q.manifest["lineage"] == [a.library.get(n).packet_id for n in names]
        assert a.library.verify("q")[1] is None
        a.library.set_trust(b.identity.device_id, "trusted")
        b.library.set_trust(a.identity.device_id, "trusted")

        async def sync() -> None:
            listener = await start_listener(b, "127.0.0.1", 0, FAST, once=True)
            summary = await sync_with("127.0.0.1", listener.port, a, FAST)
            await asyncio.wait_for(listener.wait(), 10)
            assert summary.ok, summary.error

        asyncio.run(sync())
        received = b.library.get(q.packet_id)
        assert received.merged
        assert received.manifest["merge"] == q.manifest["merge"]
        assert b.library.verify(q.packet_id)[1] is None
    finally:
        a.close()
        b.close()
