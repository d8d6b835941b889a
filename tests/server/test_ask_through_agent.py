"""`fieldkit ask` through a running agent of its home prints what it prints without one."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from fieldkit.answering import BASE_CAUTION
from fieldkit.cli import main
from fieldkit.server.client import find_agent
from fieldkit.server.runtime import read_runtime, runtime_path
from tests.server.conftest import PUMP_QUESTIONS, RunningAgent

TIMINGS = {"swap_ms", "prompt_tps", "generation_tps", "route_ms"}
RICE = "How do I cook rice for six people?"  # no packet of the agent's fits it


def ask(running: RunningAgent, model: Path, *args: str, env: dict[str, str] | None = None):
    runner = CliRunner()
    prefix = ["--home", str(running.home.root), "--model", str(model)]
    return runner.invoke(main, [*prefix, "ask", *args], env=env)


def without_timings(out: dict) -> dict:
    return {k: v for k, v in out.items() if k not in TIMINGS}


@pytest.mark.parametrize(
    "args",
    [
        (PUMP_QUESTIONS[5],),
        ("What does the goat eat?", "--adapter", "goats"),
        ("What does the goat eat?", "--base"),
        (RICE,),  # no packet fits: cautioned first
    ],
)
def test_ask_json_through_the_agent_equals_ask_without_it(
    running: RunningAgent, tiny_model_dir: Path, args: tuple[str, ...]
) -> None:
    served = running.agent.stats.served
    through = ask(running, tiny_model_dir, *args, "--json", "--max-tokens", "6")
    assert through.exit_code == 0, through.output
    assert running.agent.stats.served == served + 1
    alone = ask(running, tiny_model_dir, *args, "--json", "--max-tokens", "6", "--no-server")
    assert alone.exit_code == 0, alone.output
    assert running.agent.stats.served == served + 1
    a, b = json.loads(through.stdout), json.loads(alone.stdout)
    assert list(a) == list(b)
    assert without_timings(a) == without_timings(b)
    if args[0] == PUMP_QUESTIONS[5]:
        assert a["route"] == a["adapter"] == "pumps"
    if args == (RICE,):  # no packet fits: the caution comes first
        assert (a["route"], a["caution"]) == (None, BASE_CAUTION)
    elif len(args) == 1:  # routed: nothing said first
        assert (a["route"], a["caution"]) == ("pumps", None)


@pytest.mark.parametrize("question", [PUMP_QUESTIONS[1], RICE])
def test_ask_text_through_the_agent_equals_ask_without_it(
    running: RunningAgent, tiny_model_dir: Path, question: str
) -> None:
    through = ask(running, tiny_model_dir, question, "--max-tokens", "7")
    alone = ask(
        running,
        tiny_model_dir,
        question,
        "--max-tokens",
        "7",
        env={"FIELDKIT_NO_SERVER": "1"},
    )
    assert through.exit_code == alone.exit_code == 0, through.output + alone.output
    assert through.stdout == alone.stdout
    assert running.agent.stats.served == 1
    routed = question == PUMP_QUESTIONS[1]
    assert through.stdout.startswith(BASE_CAUTION) is not routed


def test_the_agents_refusal_is_one_sentence(running: RunningAgent, tiny_model_dir: Path) -> None:
    result = ask(running, tiny_model_dir, "hello", "--adapter", "nope")
    assert result.exit_code == 1
    assert result.output.strip() == "fieldkit: No packet named 'nope' is in the library."


def test_an_agent_for_another_model_is_not_used(running: RunningAgent, tmp_path: Path) -> None:
    assert find_agent(running.home, tmp_path / "other-model") is None
    assert find_agent(running.home, Path(running.info.model_dir)) is not None


def test_the_socket_and_runtime_file_are_owner_only_and_go_away(
    running: RunningAgent,
) -> None:
    info = read_runtime(running.home)
    assert info is not None
    assert info.pid == os.getpid()
    assert stat.S_IMODE(os.stat(info.socket).st_mode) == 0o600
    assert stat.S_IMODE(runtime_path(running.home).stat().st_mode) == 0o600
    assert stat.S_IMODE(runtime_path(running.home).parent.stat().st_mode) == 0o700
    library = find_agent(running.home).get("/v1/library")
    assert {p["name"]: p["usable"] for p in library["packets"]} == {"goats": True, "pumps": True}
    running.stop()
    assert read_runtime(running.home) is None
    assert not Path(info.socket).exists()
    assert find_agent(running.home) is None
