"""`fieldkit bench`: measurements on this machine. `swap` times adapter swaps and tokens/s.

`bench swap` compares the engine against what mlx-lm itself does: to change adapters an
mlx-lm user loads the base model and the adapter again, and generates with
`mlx_lm.stream_generate`. Both sides run the same model, adapter and prompt.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from typing import TYPE_CHECKING, Any

import click
import numpy as np

if TYPE_CHECKING:
    from fieldkit.services import Services
    from fieldkit.store.adapter import Adapter

BENCH_QUESTION = "How should I store seed maize so it stays dry through the rainy season?"
BENCH_RANK = 8


@click.group("bench")
def bench() -> None:
    """Measure fieldkit on this machine."""


def percentile(values: list[float], q: float) -> float:
    """Return the q-th percentile (0-100) with linear interpolation."""
    return float(np.percentile(np.asarray(values, dtype=float), q))


def random_adapter_for(config: dict[str, Any], seed: int, rank: int = BENCH_RANK) -> Adapter:
    """Return a fp16 adapter of the library's default profile with random weights."""
    from fieldkit.store.adapter import ALL_KEYS, Adapter, AdapterConfig, tensors_to_bytes
    from fieldkit.store.models import projection_widths

    dims, layers = projection_widths(config)
    rng = np.random.default_rng(seed)
    tensors = {}
    for i in range(layers):
        for key in ALL_KEYS:
            d_in, d_out = dims[key]
            a = rng.normal(0, d_in**-0.5, (d_in, rank))
            tensors[f"model.layers.{i}.{key}.lora_a"] = a.astype(np.float16)
            tensors[f"model.layers.{i}.{key}.lora_b"] = rng.normal(0, 0.01, (rank, d_out)).astype(
                np.float16
            )
    digest = hashlib.sha256(tensors_to_bytes(tensors)).hexdigest()
    return Adapter(AdapterConfig(rank=rank), tensors, digest)


def bench_adapters(services: Services, fingerprint: str, config: dict) -> tuple[list, str]:
    """Return two real-shaped adapters and where they came from (library or random)."""
    from fieldkit.store.adapter import ALL_KEYS

    n_layers = config["num_hidden_layers"]
    trained = [
        r
        for r in services.library.list_packets()
        if r.base_fingerprint == fingerprint
        and r.adapter.rank == BENCH_RANK
        and set(r.adapter.keys) == set(ALL_KEYS)
        and r.adapter.num_layers in (-1, n_layers)
    ]
    if len(trained) >= 2:
        names = ", ".join(r.name for r in trained[:2])
        return [services.library.load_adapter(r) for r in trained[:2]], f"trained packets: {names}"
    adapters = [random_adapter_for(config, seed) for seed in (1, 2)]
    return adapters, "random weights (fewer than two trained rank-8 packets in the library)"


def run_swap_bench(
    services: Services, *, swaps: int, reloads: int, tokens: int, runs: int, say: Any
) -> dict[str, Any]:
    """Measure swaps, reloads and tokens/s; return the report as a dict."""
    from fieldkit.engine.blas import preload_openblas
    from fieldkit.engine.engine import Engine
    from fieldkit.store.adapter import AdapterConfig
    from fieldkit.testing.reference_model import ReferenceModel

    model_id, fingerprint, config = services.require_model()
    model_dir = services.model_dir
    adapters, source = bench_adapters(services, fingerprint, config)
    a, b = adapters
    messages = [{"role": "user", "content": BENCH_QUESTION}]
    report: dict[str, Any] = {
        "model": model_id,
        "model_dir": str(model_dir),
        "openblas": preload_openblas(),
        "adapters": source,
        "adapter_profile": {"rank": BENCH_RANK, "keys": 7, "layers": config["num_hidden_layers"]},
        "adapter_mb": round(sum(t.nbytes for t in a.tensors.values()) / 1e6, 2),
    }
    with Engine(model_dir) as engine:
        say("loading the base model into the engine")
        tic = time.perf_counter()
        engine.load()
        report["engine_load_ms"] = round((time.perf_counter() - tic) * 1000, 1)
        report["cold_swap_ms"] = [round(engine.swap(x), 3) for x in (a, b)]
        say(f"{swaps} warm swaps A<->B")
        times = [engine.swap(a if i % 2 == 0 else b) for i in range(swaps)]
        to_base = [engine.swap(None if i % 2 == 0 else a) for i in range(40)][::2]
        report["swap_ms"] = {
            "p50": round(percentile(times, 50), 4),
            "p95": round(percentile(times, 95), 4),
            "max": round(max(times), 4),
            "n": swaps,
        }
        report["swap_to_base_ms_p50"] = round(percentile(to_base, 50), 4)
        say(f"tokens/s: engine vs mlx-lm stream_generate, {runs} runs of {tokens} tokens")
        reference = ReferenceModel(model_dir, a)
        engine_tps, plain_tps, same = [], [], True
        for i in range(runs):
            if i % 2:  # alternate which side goes first within a pair
                theirs = reference.generate(messages, max_tokens=tokens)
                mine = engine.answer(BENCH_QUESTION, a, max_tokens=tokens)
            else:
                mine = engine.answer(BENCH_QUESTION, a, max_tokens=tokens)
                theirs = reference.generate(messages, max_tokens=tokens)
            engine_tps.append(mine.generation_tps)
            plain_tps.append(theirs.generation_tps)
            same = same and list(mine.tokens) == theirs.tokens
        del reference
    e_tps, p_tps = statistics.median(engine_tps), statistics.median(plain_tps)
    # Other processes on a shared CPU slow single runs down by 2x or more, so the runs
    # alternate and the overhead is the median over adjacent (engine, mlx-lm) pairs.
    ratios = [e / p for e, p in zip(engine_tps, plain_tps, strict=True)]
    report["tokens_per_s"] = {
        "engine": round(e_tps, 2),
        "mlx_lm": round(p_tps, 2),
        "overhead_pct": round((1 - statistics.median(ratios)) * 100, 2),
        "engine_runs": [round(x, 2) for x in engine_tps],
        "mlx_lm_runs": [round(x, 2) for x in plain_tps],
        "identical_tokens": same,
        "max_tokens": tokens,
    }
    say(f"{reloads} mlx-lm reloads of base + adapter")
    load_times = [ReferenceModel(model_dir, x).load_ms for x in ([a, b] * reloads)[:reloads]]
    report["mlx_lm_reload_ms"] = {
        "p50": round(percentile(load_times, 50), 1),
        "runs": [round(x, 1) for x in load_times],
    }
    report["speedup_p50"] = round(report["mlx_lm_reload_ms"]["p50"] / report["swap_ms"]["p50"], 1)
    say("an adapter whose projections are not installed yet (slots widened once)")
    narrow = AdapterConfig(num_layers=1, keys=("self_attn.q_proj",))
    with Engine(model_dir, profile=narrow) as engine:
        engine.load()
        first = engine.swap(a)
        report["widen_slots"] = {
            "install_ms": round(engine.reinstall_ms[0], 3),
            "first_swap_ms": round(first, 3),  # install + convert + fill
            "cold_swap_after_ms": round(engine.swap(b), 3),  # convert + fill, no install
        }
    return report


@bench.command("swap")
@click.option("--swaps", default=200, show_default=True, help="Warm swaps to time.")
@click.option("--reloads", default=3, show_default=True, help="mlx-lm reloads to time.")
@click.option("--tokens", default=16, show_default=True, help="Tokens per generation run.")
@click.option("--runs", default=10, show_default=True, help="Generation runs per side.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def swap_command(
    services: Services, swaps: int, reloads: int, tokens: int, runs: int, as_json: bool
) -> None:
    """Adapter swap time vs reloading with mlx-lm, and engine tokens/s vs mlx-lm's."""

    def say(step: str) -> None:
        click.echo(f"bench: {step}", err=True)

    report = run_swap_bench(
        services, swaps=swaps, reloads=reloads, tokens=tokens, runs=runs, say=say
    )
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    s, t = report["swap_ms"], report["tokens_per_s"]
    lines = [
        f"model      {report['model']} (OpenBLAS: {report['openblas'] or 'no'})",
        f"adapters   {report['adapters']}, {report['adapter_mb']} MB each",
        f"swap       p50 {s['p50']:.3f} ms, p95 {s['p95']:.3f} ms over {s['n']} swaps "
        f"(cold {report['cold_swap_ms'][0]:.1f} ms, to base {report['swap_to_base_ms_p50']:.3f} ms)",
        f"mlx-lm     reload base + adapter p50 {report['mlx_lm_reload_ms']['p50']:.0f} ms "
        f"-> swap is {report['speedup_p50']:.0f}x faster",
        f"tokens/s   median engine {t['engine']:.1f} vs mlx-lm {t['mlx_lm']:.1f} "
        f"(overhead, median of paired runs: {t['overhead_pct']:.1f}%; "
        f"identical tokens: {t['identical_tokens']})",
        f"widen      new slots {report['widen_slots']['install_ms']:.1f} ms, first swap "
        f"{report['widen_slots']['first_swap_ms']:.1f} ms",
    ]
    click.echo("\n".join(lines))


from fieldkit.commands.bench_quality import quality  # noqa: E402 - registered last

bench.add_command(quality)
from fieldkit.commands.bench_mesh import mesh  # noqa: E402 - registered last

bench.add_command(mesh)
