"""`fieldkit ask` exits with 0 and a quiet stderr every time: no abort at shutdown.

MLX frees per-thread state in C++ thread-local destructors that take the GIL; when the
engine's thread ended while the interpreter was finalizing, about a third of `ask` runs
printed the answer and then aborted ("terminate called without an active exception",
exit 134). One run proves nothing, so the real command runs 30 times, each its own
process from start to interpreter shutdown, a few at a time (the test's wall time is
about 30 process starts divided by the cores).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fieldkit.home import Home
from fieldkit.services import Services
from fieldkit.store.adapter import Adapter
from fieldkit.store.models import model_fingerprint

RUNS = 30
_ENTRY = "import sys; from fieldkit.cli import run; sys.argv[0] = 'fieldkit'; run()"


def test_ask_exits_cleanly_30_times(home: Home, tiny_model_dir: Path) -> None:
    command = [sys.executable, "-c", _ENTRY, "--home", str(home.root)]
    command += [
        "--model",
        str(tiny_model_dir),
        "ask",
        "Why?",
        "--base",
        "--raw",
        "--max-tokens",
        "2",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def ask(_: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)

    with ThreadPoolExecutor(max_workers=(os.cpu_count() or 1) + 1) as pool:
        runs = list(pool.map(ask, range(RUNS)))
    failures = [(run.returncode, run.stderr) for run in runs if run.returncode or run.stderr]
    assert not failures, f"{len(failures)} of {RUNS} runs failed, e.g. {failures[0]}"
    silent = [run for run in runs if not run.stdout.strip()]
    assert not silent, f"{len(silent)} of {RUNS} runs printed no answer"


def test_route_and_a_routed_ask_print_nothing_on_stderr(
    home: Home, tiny_model_dir: Path, make_adapter: Callable[..., Adapter]
) -> None:
    services = Services.build(home.root, tiny_model_dir)
    services.library.add_local(
        make_adapter(1),
        name="pumps",
        domain="water",
        description="Pumps and filters.",
        exemplars=[f"How do I fix pump part {i}?" for i in range(12)],
        base_model_id="tiny-llama",
        base_fingerprint=model_fingerprint(tiny_model_dir),
    )
    services.close()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    prefix = [
        sys.executable,
        "-c",
        _ENTRY,
        "--home",
        str(home.root),
        "--model",
        str(tiny_model_dir),
    ]
    for args in (
        ["route", "How do I fix the pump?"],
        ["ask", "How do I fix the pump?", "--max-tokens", "2"],
    ):
        run = subprocess.run([*prefix, *args], capture_output=True, text=True, env=env, timeout=300)
        assert run.returncode == 0, run.stderr
        assert run.stderr == ""
        assert run.stdout.strip()
