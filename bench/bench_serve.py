"""`fieldkit serve` against a cold `fieldkit ask` and against mlx-lm's own server.

Usage:
  .venv/bin/python bench/bench_serve.py --home DIR [--max-tokens 16] [--out FILE.json]

DIR is a demo home (`fieldkit --home DIR model install-default`, then `fieldkit --home DIR
library import assets/packets/*.fkpkt`). Measures, for one question:
  - cold CLI: `fieldkit ask --raw --no-server` in a new process (first token, total);
  - `fieldkit ask` in a new process while an agent runs (same);
  - the warm agent over HTTP (same), and two adapters alternately (poultry, solar-pumps);
  - `mlx_lm.server` on 127.0.0.1 answering the same two adapters alternately (it reloads
    the model whenever a request names another adapter);
  - requests per minute with 4 concurrent clients on the agent (routed questions).
Every answer is decoded raw (each token shown as it comes, as mlx-lm's server streams),
so "first token" is the first generated token everywhere. Everything talks to 127.0.0.1 or the home's Unix socket only. Results and the command are
recorded in docs/BENCHMARKS.md under "Serve".
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BIN = Path(sys.executable).parent
QUESTION = "How do I keep vaccines cold during a power cut?"
ALTERNATE = ("poultry", "solar-pumps")
ROUTED = [
    "How do I keep vaccines cold during a power cut?",
    "How often should I clean the solar panel of the pump?",
    "What should laying hens eat?",
    "How do I stop weevils in stored maize?",
]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
RAW = {"clean": False}  # every token as it comes (`ask --raw`), as mlx-lm's server streams


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cli_ask(home: Path, no_server: bool, max_tokens: int) -> tuple[float, float]:
    """Run `fieldkit ask` in a new process; return (first token s, total s)."""
    argv = [
        str(BIN / "fieldkit"),
        "--home",
        str(home),
        "ask",
        QUESTION,
        "--raw",
        "--max-tokens",
        str(max_tokens),
    ] + (["--no-server"] if no_server else [])
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    assert proc.stdout is not None
    first = proc.stdout.read(1)
    ttft = time.perf_counter() - start
    proc.stdout.read()
    proc.wait()
    total = time.perf_counter() - start
    if proc.returncode != 0 or not first:
        raise SystemExit(f"fieldkit ask failed: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
    return ttft, total


def stream(port: int, body: dict) -> tuple[float, float, str]:
    """POST a streamed chat completion to 127.0.0.1:port; return (first token s, total s, text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    start = time.perf_counter()
    conn.request(
        "POST",
        "/v1/chat/completions",
        json.dumps({**body, "stream": True}),
        {"Content-Type": "application/json"},
    )
    response = conn.getresponse()
    if response.status != 200:
        raise SystemExit(f"HTTP {response.status}: {response.read()[:300]!r}")
    ttft, parts = None, []
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data:") or line == "data: [DONE]":
            continue
        event = json.loads(line[5:])
        delta = (event.get("choices") or [{}])[0].get("delta", {}).get("content")
        if delta:
            ttft = ttft if ttft is not None else time.perf_counter() - start
            parts.append(delta)
    conn.close()
    return ttft if ttft is not None else float("nan"), time.perf_counter() - start, "".join(parts)


def wait_http(port: int, path: str, ready: callable, proc: subprocess.Popen, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            response = conn.getresponse()
            data = response.read()
            if response.status == 200 and ready(data):
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"server on {port} not ready after {limit} s")


def summary(values: list[float]) -> dict:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "n": len(values),
    }


def timings(runs: list[tuple[float, float]]) -> dict:
    """Return the summaries of (time to first token, total) pairs."""
    return {"ttft": summary([r[0] for r in runs]), "total": summary([r[1] for r in runs])}


def export_adapters(home: Path, out: Path) -> dict[str, Path]:
    """Write each alternated packet as an mlx-lm adapter folder; return name -> folder."""
    from safetensors.numpy import save_file

    from fieldkit.services import Services

    services = Services.build(home)
    folders = {}
    try:
        for name in ALTERNATE:
            adapter = services.library.load_adapter(services.library.get(name))
            folder = out / name
            folder.mkdir(parents=True, exist_ok=True)
            save_file(dict(adapter.tensors), str(folder / "adapters.safetensors"))
            (folder / "adapter_config.json").write_text(json.dumps(adapter.config.to_mlx_dict()))
            folders[name] = folder
    finally:
        services.close()
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--warm-runs", type=int, default=8)
    parser.add_argument("--alternate-runs", type=int, default=8)
    parser.add_argument("--mlx-runs", type=int, default=6)
    parser.add_argument("--concurrent-per-client", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--phases",
        default="cold,agent,mlx",
        help="Which parts to run (cold, agent, mlx); the rest come from --reuse.",
    )
    parser.add_argument(
        "--reuse",
        type=Path,
        default=None,
        help="An earlier run's --out file, for the parts not run now.",
    )
    args = parser.parse_args()
    home, n = args.home.resolve(), args.max_tokens
    results: dict = {"max_tokens": n, "question": QUESTION, "load_before": load()}

    phases = set(args.phases.split(","))
    earlier = json.loads(args.reuse.read_text()) if args.reuse else {}
    for key, phase in PHASE_OF.items():
        if phase not in phases:
            results[key] = earlier[key]
            results.setdefault("reused", []).append(key)
    if "cold" in phases:
        cold = [cli_ask(home, True, n) for _ in range(args.cold_runs)]
        results["cold_cli"] = timings(cold)
    print("cold cli", results["cold_cli"], flush=True)

    if "agent" in phases:
        agent_phase(args, home, n, results)
    if "mlx" in phases:
        mlx_phase(args, home, n, results)
    finish(args, results)


PHASE_OF = {
    "cold_cli": "cold",
    "agent_start_s": "agent",
    "warm_agent": "agent",
    "cli_through_agent": "agent",
    "agent_alternating": "agent",
    "concurrent_4": "agent",
    "mlx_lm_alternating": "mlx",
}


def agent_phase(args: argparse.Namespace, home: Path, n: int, results: dict) -> None:
    """The agent: warm first token and total, `ask` through it, alternation, 4 clients."""
    port = free_port()
    agent = subprocess.Popen(
        [str(BIN / "fieldkit"), "--home", str(home), "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    try:
        tic = time.perf_counter()
        wait_http(port, "/health", lambda d: json.loads(d)["status"] == "ok", agent, 600)
        results["agent_start_s"] = round(time.perf_counter() - tic, 2)
        stream(
            port,
            {"model": "auto", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 2},
        )  # first request after start
        warm = [
            stream(
                port,
                {
                    "model": "auto",
                    "messages": [{"role": "user", "content": QUESTION}],
                    "max_tokens": n,
                    "fieldkit": RAW,
                },
            )
            for _ in range(args.warm_runs)
        ]
        results["warm_agent"] = timings(warm)
        print("warm agent", results["warm_agent"], flush=True)
        via = [cli_ask(home, False, n) for _ in range(args.cold_runs)]
        results["cli_through_agent"] = timings(via)
        print("cli through agent", results["cli_through_agent"], flush=True)
        alt = [
            stream(
                port,
                {
                    "model": ALTERNATE[i % 2],
                    "messages": [{"role": "user", "content": QUESTION}],
                    "max_tokens": n,
                    "fieldkit": RAW,
                },
            )
            for i in range(args.alternate_runs)
        ]
        results["agent_alternating"] = timings(alt)
        print("agent alternating", results["agent_alternating"], flush=True)
        done: list[float] = []

        def client(k: int) -> None:
            for j in range(args.concurrent_per_client):
                q = ROUTED[(k + j) % len(ROUTED)]
                stream(
                    port,
                    {
                        "model": "auto",
                        "messages": [{"role": "user", "content": q}],
                        "max_tokens": n,
                        "fieldkit": RAW,
                    },
                )
                done.append(time.perf_counter())

        tic = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - tic
        results["concurrent_4"] = {
            "requests": len(done),
            "wall_s": round(wall, 2),
            "per_minute": round(60 * len(done) / wall, 1),
        }
        print("4 clients", results["concurrent_4"], flush=True)
    finally:
        agent.terminate()
        agent.wait(60)


def mlx_phase(args: argparse.Namespace, home: Path, n: int, results: dict) -> None:
    """mlx-lm's own server answering the same two adapters alternately."""
    with tempfile.TemporaryDirectory() as tmp:
        folders = export_adapters(home, Path(tmp))
        port = free_port()
        model_dir = home / "models" / "smollm2-135m-instruct"
        mlx = subprocess.Popen(
            [
                str(BIN / "python"),
                "-m",
                "mlx_lm.server",
                "--model",
                str(model_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--max-tokens",
                str(n),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=ENV,
        )
        try:
            wait_http(port, "/v1/models", lambda d: True, mlx, 600)
            runs = []
            for i in range(args.mlx_runs + 1):
                name = ALTERNATE[i % 2]
                # The model by path: with "default_model" mlx-lm's server would apply the
                # adapter of its command line (none) and ignore the request's.
                body = {
                    "model": str(model_dir),
                    "adapters": str(folders[name]),
                    "messages": [{"role": "user", "content": QUESTION}],
                    "max_tokens": n,
                    "temperature": 0.0,
                }
                runs.append(stream(port, body))
            runs = runs[1:]  # the first loads the model once, as any server would
            results["mlx_lm_alternating"] = timings(runs)
            print("mlx_lm alternating", results["mlx_lm_alternating"], flush=True)
        finally:
            mlx.terminate()
            mlx.wait(60)


def finish(args: argparse.Namespace, results: dict) -> None:
    cold_ttft = results["cold_cli"]["ttft"]["median"]
    results["ratios"] = {
        "warm_ttft_over_cold_ttft": round(results["warm_agent"]["ttft"]["median"] / cold_ttft, 4),
        "mlx_lm_alternating_total_over_agent": round(
            results["mlx_lm_alternating"]["total"]["median"]
            / results["agent_alternating"]["total"]["median"],
            1,
        ),
        "mlx_lm_alternating_ttft_over_agent": round(
            results["mlx_lm_alternating"]["ttft"]["median"]
            / results["agent_alternating"]["ttft"]["median"],
            1,
        ),
    }
    results["load_after"] = load()
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
