"""The agent answers from a record a person picked (`ask --passage` through it, and the
request's `fieldkit.passage` option), as `ask` does without it."""

from __future__ import annotations

import json

from tests.server.conftest import RunningAgent
from tests.server.test_ask_through_agent import ask as ask_through
from tests.server.test_ask_through_agent import without_timings
from tests.server.test_http_guards import request
from tests.server.test_openai_client import JSON
from tests.test_picked import OFFSIDE, PICKED


def test_the_agent_answers_from_a_picked_record(running: RunningAgent, tiny_model_dir) -> None:
    args = (OFFSIDE, "--adapter", "pumps", "--passage", "r3", "--json", "--max-tokens", "5")
    through = ask_through(running, tiny_model_dir, *args)
    alone = ask_through(running, tiny_model_dir, *args, "--no-server")
    assert through.exit_code == alone.exit_code == 0, through.output + alone.output
    a, b = json.loads(through.stdout), json.loads(alone.stdout)
    assert without_timings(a) == without_timings(b)
    assert (a["picked"], a["caution"], a["sources"][0]["passage_id"]) == ("r3", PICKED, "r3")
    unknown = ask_through(running, tiny_model_dir, OFFSIDE, "--adapter", "pumps", "--passage", "r9")
    assert unknown.exit_code == 1
    assert unknown.output == "fieldkit: The pumps packet has no record 'r9' to answer from.\n"
    question = [{"role": "user", "content": OFFSIDE}]
    for model, options, status in (
        ("pumps", {"passage": "r3", "notes": False}, 400),
        ("pumps", {"passage": 3}, 400),
        ("pumps", {"passage": ""}, 400),
        ("auto", {"passage": "r3"}, 400),  # which packet's r3?
        ("base", {"passage": "r3"}, 400),
        ("pumps", {"passage": "r9"}, 404),
    ):
        body = {"model": model, "messages": question, "max_tokens": 2, "fieldkit": options}
        got, reply, _ = request(running, "POST", "/v1/chat/completions", body, **JSON)
        assert got == status, reply
        assert reply["error"]["param"] == "fieldkit"
