"""What the agent's TCP port refuses, and how it stops: web pages, bodies not sent as JSON,
wrong tokens, OpenAI features it cannot honour; a stop while an answer streams."""

from __future__ import annotations

import http.client
import json
import threading
import time

import openai
import pytest

from tests.server.conftest import RunningAgent, StartAgent
from tests.server.test_openai_client import JSON, QUESTION, client_for, endless_stream

ASK = {"model": "base", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}


def request(
    running: RunningAgent, method: str, path: str, body: dict | bytes | None = None, **headers: str
) -> tuple[int, dict, dict]:
    """Send one request with exactly `headers` (underscores as dashes); return the status,
    the JSON reply and the reply's headers."""
    conn = http.client.HTTPConnection(running.info.host, running.info.port, timeout=120)
    try:
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        conn.putrequest(method, path, skip_host="Host" in headers or "host" in headers)
        for key, value in headers.items():
            conn.putheader(key.replace("_", "-"), value)
        if raw is not None:
            conn.putheader("Content-Length", str(len(raw)))
        conn.endheaders(raw)
        response = conn.getresponse()
        return response.status, json.loads(response.read()), dict(response.getheaders())
    finally:
        conn.close()


def test_a_web_page_cannot_reach_the_loopback_port(running: RunningAgent) -> None:
    """No token guards the loopback port, so it refuses what only a browser sends: a page
    of another site (its Origin) or a name rebound to 127.0.0.1 (its Host)."""
    port = running.info.port
    status, reply, _ = request(running, "GET", "/v1/models", Host="evil.example")
    assert status == 403
    assert (
        reply["error"]["message"] == "This agent answers at 127.0.0.1 only, not at 'evil.example'."
    )
    status, reply, _ = request(
        running, "POST", "/v1/chat/completions", ASK, Origin="http://evil.example", **JSON
    )
    assert (status, reply["error"]["message"]) == (
        403,
        "This agent does not answer requests from web pages.",
    )
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        status, reply, _ = request(running, "GET", "/v1/models", Host=host)
        assert status == 200, (host, reply)
    status, _, _ = request(
        running, "POST", "/v1/chat/completions", ASK, Origin=f"http://localhost:{port}", **JSON
    )
    assert status == 200


@pytest.mark.parametrize(
    ("headers", "sentence"),
    [
        ({}, "Send the request body as Content-Type: application/json."),
        (
            {"Content-Type": "text/plain"},
            "Send the request body as Content-Type: application/json.",
        ),
        (
            {"Content-Type": "application/x-www-form-urlencoded"},
            "Send the request body as Content-Type: application/json.",
        ),
        (
            {"Content-Type": "application/json", "Content-Encoding": "gzip"},
            "A body sent with Content-Encoding gzip is not read here.",
        ),
    ],
    ids=["none", "text", "form", "gzip"],
)
def test_a_body_not_sent_as_json_is_415(
    running: RunningAgent, headers: dict[str, str], sentence: str
) -> None:
    status, reply, _ = request(running, "POST", "/v1/chat/completions", ASK, **headers)
    assert (status, reply["error"]["message"]) == (415, sentence)
    assert running.agent.stats.served == running.agent.stats.failed == 0
    status, _, _ = request(running, "POST", "/v1/chat/completions", ASK, **JSON)
    assert status == 200  # still serving


def test_a_wrong_token_is_told_apart_from_none(start_agent: StartAgent, packet_home) -> None:  # noqa: ANN001
    running = start_agent(packet_home, token="s3cret-token")
    status, reply, headers = request(running, "GET", "/v1/models")
    assert (status, headers["www-authenticate"]) == (401, "Bearer")
    assert reply["error"]["message"].startswith("This server needs a token: send")
    status, reply, headers = request(running, "GET", "/v1/models", Authorization="Bearer nope")
    assert (status, headers["www-authenticate"]) == (401, "Bearer")
    assert reply["error"]["message"] == "The token sent is not this server's token."
    status, _, _ = request(running, "GET", "/v1/models", Authorization="Bearer s3cret-tokén")
    assert status == 401  # not ASCII: compared as bytes, not a server error
    good = {"Authorization": "Bearer s3cret-token"}
    status, _, _ = request(running, "GET", "/v1/models", Host="evil.example", **good)
    assert status == 200  # with a token, the token guards: a page cannot know it


def test_absent_or_null_fields_take_their_defaults(running: RunningAgent) -> None:
    question = [{"role": "user", "content": "hi"}]
    status, reply, _ = request(
        running,
        "POST",
        "/v1/chat/completions",
        {"messages": question, "max_tokens": 2, "stream": None, "n": None, "logprobs": None},
        **JSON,
    )
    assert status == 200, reply
    assert "route" in reply["fieldkit"]  # no model: the router's pick ("auto")
    assert reply["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("extra", "sentence"),
    [
        (
            {"tools": [{"type": "function", "function": {"name": "f"}}]},
            "This server does not offer tool calls (tools).",
        ),
        ({"tool_choice": "required"}, "This server does not offer tool calls (tool_choice)."),
        (
            {"response_format": {"type": "json_object"}},
            "This server does not offer a response format other than text (response_format).",
        ),
        ({"logprobs": True}, "This server does not offer log-probabilities (logprobs)."),
    ],
    ids=["tools", "tool_choice", "json", "logprobs"],
)
def test_features_it_cannot_honour_are_refused_not_ignored(
    running: RunningAgent, extra: dict, sentence: str
) -> None:
    client = client_for(running)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="base", messages=[{"role": "user", "content": QUESTION}], extra_body=extra
        )
    assert caught.value.body["message"] == sentence
    assert caught.value.body["param"] == next(iter(extra))
    fine = client.chat.completions.create(
        model="base",
        messages=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        max_tokens=2,
        response_format={"type": "text"},
        logprobs=False,
        tools=[],
    )
    assert fine.usage.completion_tokens == 2


def test_one_model_is_served_by_name_or_id(running: RunningAgent) -> None:
    client = client_for(running)
    pumps = client.models.retrieve("pumps")
    assert (pumps.id, pumps.fieldkit["kind"]) == ("pumps", "packet")
    assert client.models.retrieve(pumps.fieldkit["packet_id"]).id == "pumps"
    assert client.models.retrieve("auto").fieldkit["kind"] == "router"
    with pytest.raises(openai.NotFoundError, match="No model named 'nope' answers here"):
        client.models.retrieve("nope")


def test_a_stop_while_an_answer_streams_ends_it_with_a_sentence(
    start_agent: StartAgent,
    packet_home,  # noqa: ANN001
) -> None:
    running = start_agent(packet_home)
    _, pieces = endless_stream(client_for(running), max_tokens=30000)
    tic = time.monotonic()
    stopping = threading.Thread(target=running.stop)
    stopping.start()
    with pytest.raises(openai.APIError, match="The server stopped before the answer ended."):
        for _ in pieces:
            pass
    stopping.join(30)
    assert not stopping.is_alive()
    assert time.monotonic() - tic < 5  # within uvicorn's grace period, not cut off by it
    assert running.agent.stats.cancelled == 1
    with pytest.raises(openai.APIConnectionError):  # and it answers no more
        client_for(running).models.list()
