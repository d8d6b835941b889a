"""The agent of a home whose model is chosen with `fieldkit model use` (no --model).

The agent's library connection lives on its library thread; which model the home uses is
a library setting, read there once, so the start-up load on another thread must not
touch the library (it used to, and the agent stayed "loading" forever).
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from fieldkit.home import Home
from fieldkit.router.embedder import MiniLMEmbedder
from fieldkit.server.agent import Agent
from fieldkit.server.run import ServeConfig, start_in_thread
from fieldkit.services import Services


def _health(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/health", timeout=10) as response:
        return json.loads(response.read())


def _loaded(url: str, limit_s: float) -> dict:
    """Return the agent's /health once it has stopped loading (fail after limit_s)."""
    deadline = time.monotonic() + limit_s
    while (status := _health(url))["status"] == "loading":
        assert time.monotonic() < deadline, "the agent never finished loading"
        time.sleep(0.2)
    return status


def test_an_agent_loads_the_model_its_home_uses(
    make_home, tiny_model_dir: Path, minilm: MiniLMEmbedder
) -> None:
    home: Home = make_home("chosen-model")
    shutil.copytree(tiny_model_dir, home.models_dir / "tiny")
    chooser = Services.build(home.root)
    chooser.use_model("tiny")
    chooser.close()

    agent = Agent(Services.build(home.root), embedder=minilm)
    serving, thread = start_in_thread(agent, ServeConfig(port=0))
    try:
        assert serving.info is not None
        status = _loaded(serving.info.url, 120)
        assert status["status"] == "ok", status.get("error")
        assert status["error"] is None
        assert status["loaded"] is status["model_loaded"] is True
        assert Path(status["model_dir"]) == home.models_dir / "tiny"
        url = serving.info.url
        for method, path, code, said in (
            ("GET", "/nope", 404, "Nothing is served at /nope"),
            ("GET", "/v1/chat/completions", 405, "GET is not served at /v1/chat/completions"),
        ):  # OpenAI's error shape, as every other refusal of the server
            request = urllib.request.Request(f"{url}{path}", method=method)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == code
            assert refused.value.headers["content-type"] == "application/json"
            assert json.loads(refused.value.read())["error"]["message"].startswith(said)
    finally:
        serving.stop()
        thread.join(30)
        agent.close()


def test_a_failed_load_is_reported_not_hidden(make_home, minilm: MiniLMEmbedder) -> None:
    home: Home = make_home("no-model")  # nothing installed
    agent = Agent(Services.build(home.root), embedder=minilm)
    serving, thread = start_in_thread(agent, ServeConfig(port=0))
    try:
        assert serving.info is not None
        status = _loaded(serving.info.url, 60)
        assert status["status"] == "error"
        assert "model install-default" in status["error"]
    finally:
        serving.stop()
        thread.join(30)
        agent.close()
