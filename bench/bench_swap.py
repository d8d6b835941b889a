"""Adapter swap and tokens/s benchmark (same as `fieldkit bench swap`).

Usage: .venv/bin/python bench/bench_swap.py [--home DIR] [--model PATH] [bench swap options]
Results and the exact command are recorded in docs/BENCHMARKS.md under "Engine".
"""

from __future__ import annotations

import sys

from fieldkit.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    globals_, rest = [], []
    while args:
        arg = args.pop(0)
        if arg in ("--home", "--model") and args:
            globals_ += [arg, args.pop(0)]
        else:
            rest.append(arg)
    main([*globals_, "bench", "swap", *rest])
