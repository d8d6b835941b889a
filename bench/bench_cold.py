"""A cold `fieldkit ask` and `fieldkit route` in each of several Python environments.

    .venv/bin/python bench/bench_cold.py --home H --python PY [--python PY ...]
        [--runs 3] [--max-tokens 60] [--json OUT]

Each PY is the python of a virtual environment that has fieldkit installed (its own
checkout's, as scripts/setup.sh installs it). Per environment: whether torch is installed,
the size of its site-packages, and, in fresh processes run one after another, the wall time
and peak memory of `fieldkit --home H ask Q --max-tokens N --no-server` and of
`fieldkit --home H route Q` (the median and the largest of --runs each, after one run
that is not counted: it brings the files into the page cache, as on every run but a
machine's first).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from bench_route import report  # noqa: E402

QUESTION = "How long do Sasina Red layers keep laying well?"
PROBE = (
    "import importlib.util as u, sysconfig; "
    "print(u.find_spec('torch') is not None, sysconfig.get_paths()['purelib'], "
    "u.find_spec('fieldkit').origin)"
)
RUN = "import sys; from fieldkit.cli import run; sys.argv[0] = 'fieldkit'; run()"


def timed(argv: list[str]) -> tuple[float, float]:
    """Run argv to its end; return (wall seconds, its peak resident memory in MB)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryFile() as said:  # a pipe nobody reads would fill and stall it
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=said, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak memory
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status):
            said.seek(0)
            raise SystemExit(f"{' '.join(argv[:4])} ... failed: {said.read().decode()[-800:]}")
    return wall, usage.ru_maxrss / 1024  # kB on Linux


def size_mb(folder: Path) -> int:
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    return round(total / 1e6)


def measure(python: str, home: str, runs: int, max_tokens: int) -> dict:
    probe = subprocess.run([python, "-P", "-c", PROBE], capture_output=True, text=True, check=True)
    has_torch, site, code = probe.stdout.split()
    out: dict = {"torch_installed": has_torch == "True", "site_packages_mb": size_mb(Path(site))}
    out["fieldkit"] = code
    commands = {
        "ask": ["ask", QUESTION, "--max-tokens", str(max_tokens), "--no-server"],
        "route": ["route", QUESTION],
    }
    for name, args in commands.items():
        # -P: the environment's own fieldkit, not the one in the current folder
        argv = [python, "-P", "-c", RUN, "--home", home, *args]
        timed(argv)  # not counted (see the module's docstring)
        results = [timed(argv) for _ in range(runs)]
        out[f"{name}_s"] = round(statistics.median(w for w, _ in results), 2)
        out[f"{name}_s_runs"] = [round(w, 2) for w, _ in results]
        out[f"{name}_peak_mb"] = round(max(m for _, m in results))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True)
    parser.add_argument("--python", action="append", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=60)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    home = str(Path(args.home).resolve())
    result: dict = {"question": QUESTION, "runs": args.runs, "max_tokens": args.max_tokens}
    for python in args.python:  # interleaving would not help: each run is a fresh process
        result[python] = measure(python, home, args.runs, args.max_tokens)
    report(result, args.json)


if __name__ == "__main__":
    main()
