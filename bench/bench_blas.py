"""What Debian's OpenBLAS buys MLX's CPU backend: the same work with it and without it.

    .venv/bin/python bench/bench_blas.py [--model DIR] [--repeats 5] [--json OUT]

Each setting runs in a fresh process (a BLAS is bound when mlx first loads), one with
`engine/blas.py`'s preload and one with FIELDKIT_NO_OPENBLAS=1 (mlx's bundled BLAS). Each
times, median of `--repeats`: a 1024 x 1024 fp32 matrix product, and one forward pass of
the base model over a 128-token prompt (what every answer's prompt costs before its first
token). Prints JSON; `--json` also writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO / "bench/out/home/models/smollm2-135m-instruct"


def measure(model: str, repeats: int) -> dict:
    """Run in the child process: time the two workloads with whatever BLAS is loaded."""
    sys.path.insert(0, str(REPO))
    from fieldkit.engine.blas import openblas_loaded, preload_openblas

    preload_openblas()
    import mlx.core as mx
    from mlx_lm import load

    def median_seconds(work) -> float:  # noqa: ANN001 - a callable returning an mx.array
        mx.eval(work())  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            mx.eval(work())
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    a = mx.random.normal((1024, 1024))
    net, _ = load(model)
    tokens = mx.array([list(range(1000, 1128))])
    return {
        "openblas": openblas_loaded(),
        "matmul_1024_s": median_seconds(lambda: a @ a),
        "forward_128_tokens_s": median_seconds(lambda: net(tokens)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.model, args.repeats)))
        return
    out: dict = {"load_before": os.getloadavg()[0]}
    for name, disable in (("openblas", "0"), ("bundled", "1")):
        env = {**os.environ, "FIELDKIT_NO_OPENBLAS": disable}
        argv = [sys.executable, __file__, "--child", "--model", args.model]
        child = subprocess.run(
            [*argv, "--repeats", str(args.repeats)], env=env, capture_output=True, text=True
        )
        if child.returncode:
            sys.exit(f"The {name} run failed: {child.stderr.strip().splitlines()[-1:]}")
        out[name] = json.loads(child.stdout.strip().splitlines()[-1])
    for key in ("matmul_1024_s", "forward_128_tokens_s"):
        out[f"{key} ratio"] = round(out["bundled"][key] / out["openblas"][key], 1)
    out["load_after"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
