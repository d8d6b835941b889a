"""`fieldkit serve` as a real process: found by `ask`, stopped by SIGTERM, refused off loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fieldkit.cli import main
from fieldkit.home import Home
from fieldkit.server.runtime import read_runtime

FIELDKIT = str(Path(sys.executable).parent / "fieldkit")


def serve(home: Home, model: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.Popen(
        [FIELDKIT, "--home", str(home.root), "--model", str(model), "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_serve_off_loopback_without_a_token_is_refused(home: Home, tiny_model_dir: Path) -> None:
    proc = serve(home, tiny_model_dir, "--host", "0.0.0.0", "--port", "0")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert err.startswith("fieldkit: Listening on 0.0.0.0 reaches beyond this machine")
    assert "Traceback" not in err
    assert read_runtime(home) is None


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["term", "int"])
def test_a_serve_process_answers_ask_and_stops_cleanly(
    home: Home, tiny_model_dir: Path, stop: signal.Signals
) -> None:
    proc = serve(home, tiny_model_dir, "--port", "0")
    try:
        deadline = time.monotonic() + 300
        while (info := read_runtime(home)) is None:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert info.pid == proc.pid
        result = CliRunner().invoke(
            main,
            [
                "--home",
                str(home.root),
                "--model",
                str(tiny_model_dir),
                "ask",
                "hi",
                "--base",
                "--json",
                "--max-tokens",
                "3",
            ],
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["generation_tokens"] == 3
        status = {}
        while status.get("status") != "ok":  # loaded: the stop below is then quick
            assert time.monotonic() < deadline
            health = CliRunner().invoke(
                main,
                [
                    "--home",
                    str(home.root),
                    "--model",
                    str(tiny_model_dir),
                    "service",
                    "status",
                    "--json",
                ],
            )
            # None: the agent missed one 5 s health check (it loads the model meanwhile)
            status = json.loads(health.stdout)["agent"] or {}
            time.sleep(0.2)
        assert status["served"] == 1
    finally:
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "fieldkit agent listening on" in err
    assert "Traceback" not in err
    assert "once the model has loaded" not in err  # it had loaded: nothing to wait for
    assert err.endswith("fieldkit agent stopped.\n")
    assert read_runtime(home) is None
    assert not Path(info.socket).exists()
