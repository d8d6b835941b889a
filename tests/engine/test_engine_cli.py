"""`fieldkit ask`, `fieldkit model info` and `fieldkit bench swap` through click, on real homes."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from fieldkit.cli import main
from fieldkit.engine.engine import Engine
from fieldkit.home import Home
from fieldkit.services import Services
from fieldkit.store.adapter import Adapter
from fieldkit.store.models import model_fingerprint

QUESTION = "What does the pump need?"


@pytest.fixture
def cli(tiny_model_dir: Path):
    runner = CliRunner()

    def invoke(home: Home, *args: str, model: Path | None = tiny_model_dir):
        prefix = ["--home", str(home.root)] + (["--model", str(model)] if model else [])
        return runner.invoke(main, [*prefix, *args])

    return invoke


def add_packet(home: Home, model_dir: Path, adapter: Adapter, name: str, fingerprint: str = ""):
    services = Services.build(home.root, model_dir)
    try:
        return services.library.add_local(
            adapter,
            name=name,
            domain="water",
            description="Pumps and filters.",
            exemplars=[f"How do I fix pump part {i}?" for i in range(12)],
            base_model_id="tiny-llama",
            base_fingerprint=fingerprint or model_fingerprint(model_dir),
        )
    finally:
        services.close()


def test_ask_with_a_packet_gives_the_engines_answer(
    cli, home: Home, tiny_model_dir: Path, make_adapter: Callable[..., Adapter]
) -> None:
    record = add_packet(home, tiny_model_dir, make_adapter(1), "pumps")
    result = cli(home, "ask", QUESTION, "--adapter", "pumps", "--max-tokens", "8", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    services = Services.build(home.root, tiny_model_dir)
    with Engine(tiny_model_dir) as engine:
        adapter = services.library.load_adapter(services.library.get("pumps"))
        expected = engine.answer(QUESTION, adapter, max_tokens=8, clean=True)
        base = engine.answer(QUESTION, None, max_tokens=8, clean=True)
    services.close()
    assert out["answer"] == expected.text != base.text
    assert out["adapter"] == "pumps"
    assert out["packet_id"] == record.packet_id
    assert out["generation_tokens"] == 8
    assert out["swap_ms"] > 0
    assert out["prompt_tps"] > 0
    assert out["generation_tps"] > 0
    assert "route" not in out


def test_ask_base_streams_plain_text(cli, home: Home, tiny_model_dir: Path) -> None:
    result = cli(home, "ask", QUESTION, "--base", "--max-tokens", "6")
    assert result.exit_code == 0, result.output
    with Engine(tiny_model_dir) as engine:
        text = engine.answer(QUESTION, max_tokens=6, clean=True).text
    assert result.output.startswith(text + "\n(from the base model only, picked with --base: ")
    assert result.output.endswith("(cut at 6 tokens, mid-answer: --max-tokens sets the limit)\n")
    as_json = json.loads(cli(home, "ask", QUESTION, "--base", "--json", "--max-tokens", "3").stdout)
    assert as_json["adapter"] is None


def test_ask_refuses_a_packet_for_another_base_model(
    cli, home: Home, tiny_model_dir: Path, make_adapter: Callable[..., Adapter]
) -> None:
    add_packet(home, tiny_model_dir, make_adapter(1), "elsewhere", fingerprint="ab" * 32)
    result = cli(home, "ask", QUESTION, "--adapter", "elsewhere")
    assert result.exit_code == 1
    assert "made for another base model (tiny-llama" in result.output
    assert "Traceback" not in result.output


def test_ask_without_a_model_says_how_to_install_one(cli, home: Home) -> None:
    result = cli(home, "ask", QUESTION, "--base", model=None)
    assert result.exit_code == 1
    assert "run `fieldkit model install-default`" in result.output


def test_ask_refuses_unknown_packets_and_conflicting_flags(cli, home: Home) -> None:
    unknown = cli(home, "ask", QUESTION, "--adapter", "nope")
    assert unknown.exit_code == 1
    assert "No packet named 'nope'" in unknown.output
    both = cli(home, "ask", QUESTION, "--adapter", "x", "--base")
    assert both.exit_code == 2
    empty = cli(home, "ask", "  ", "--base")
    assert empty.exit_code == 1
    assert "question is empty" in empty.output


def test_ask_routes_when_no_packet_is_named(
    cli, home: Home, tiny_model_dir: Path, make_adapter: Callable[..., Adapter]
) -> None:
    add_packet(home, tiny_model_dir, make_adapter(1), "pumps")
    result = cli(home, "ask", "How do I fix pump part 3?", "--json", "--max-tokens", "3")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["route"] == out["adapter"] == "pumps"
    assert out["score"] > 0.5
    assert out["route_ms"] > 0


def test_model_info(cli, home: Home, tiny_model_dir: Path) -> None:
    result = cli(home, "model", "info", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["fingerprint"] == model_fingerprint(tiny_model_dir)
    assert (info["architecture"], info["dtype"], info["n_layers"]) == ("llama", "float32", 4)
    text = cli(home, "model", "info")
    assert "OpenBLAS" in text.output
    missing = cli(home, "model", "info", model=None)
    assert missing.exit_code == 1
    assert "fieldkit model install-default" in missing.output


def test_model_install_default_is_idempotent(cli, home: Home, tiny_model_dir: Path) -> None:
    shutil.copytree(tiny_model_dir, home.models_dir / "smollm2-135m-instruct")
    result = cli(home, "model", "install-default", model=None)
    assert result.exit_code == 0, result.output
    assert "already installed" in result.output


def test_bench_swap_reports_every_number(cli, home: Home) -> None:
    args = ["bench", "swap", "--json", "--swaps", "10", "--reloads", "1", "--tokens", "4"]
    result = cli(home, *args, "--runs", "1")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["adapters"].startswith("random weights")
    assert report["swap_ms"]["n"] == 10
    assert 0 < report["swap_ms"]["p50"] <= report["swap_ms"]["p95"]
    assert report["speedup_p50"] > 1
    assert report["tokens_per_s"]["identical_tokens"] is True
    assert report["widen_slots"]["install_ms"] > 0
