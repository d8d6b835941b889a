"""A real agent on a real home: the tiny model, two packets, the real MiniLM router.

The server runs on a thread of the test process (uvicorn over the home's Unix socket and
127.0.0.1), so clients in the test talk to it over real sockets.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fieldkit.home import Home
from fieldkit.router.embedder import MiniLMEmbedder
from fieldkit.server.agent import Agent
from fieldkit.server.chat import Limits
from fieldkit.server.run import ServeConfig, Serving, start_in_thread
from fieldkit.server.runtime import RuntimeInfo
from fieldkit.services import Services
from fieldkit.store.adapter import Adapter
from fieldkit.store.models import model_fingerprint
from fieldkit.store.notes import Passage
from tests.test_answering import PUMP_NOTES

PUMP_QUESTIONS = [f"How do I fix the pump part {i}?" for i in range(12)]
WELLS = [f"How deep must the well {i} be?" for i in range(12)]
GOAT_QUESTIONS = [f"What should a goat eat in month {i}?" for i in range(12)]
COVERED = "How often should I clean the intake filter?"  # covered by PUMP_NOTES' r1


def add_packet(
    home: Home,
    model_dir: Path,
    adapter: Adapter,
    name: str,
    exemplars: list[str],
    notes: list[Passage] | None = None,
) -> None:
    services = Services.build(home.root, model_dir)
    extra = {"notes": notes} if notes else {}
    try:
        services.library.add_local(
            adapter,
            name=name,
            domain=name,
            description=f"About {name}.",
            exemplars=exemplars,
            base_model_id="tiny-llama",
            base_fingerprint=model_fingerprint(model_dir),
            **extra,
        )
    finally:
        services.close()


@pytest.fixture
def packet_home(
    make_home: Callable[[str], Home], tiny_model_dir: Path, make_adapter: Callable[..., Adapter]
) -> Home:
    """A home with two packets for the tiny model: `pumps` (with notes) and `goats`."""
    home = make_home("agent-home")
    add_packet(home, tiny_model_dir, make_adapter(1), "pumps", PUMP_QUESTIONS, PUMP_NOTES)
    add_packet(home, tiny_model_dir, make_adapter(2), "goats", GOAT_QUESTIONS)
    return home


@dataclass
class RunningAgent:
    agent: Agent
    serving: Serving
    home: Home
    thread: threading.Thread

    def stop(self) -> None:
        self.serving.stop()
        self.thread.join(30)

    @property
    def info(self) -> RuntimeInfo:
        assert self.serving.info is not None
        return self.serving.info

    @property
    def base_url(self) -> str:
        return f"{self.info.url}/v1"


StartAgent = Callable[..., RunningAgent]


@pytest.fixture
def start_agent(tiny_model_dir: Path, minilm: MiniLMEmbedder) -> Iterator[StartAgent]:
    """Return a factory: start_agent(home, host=, token=, limits=, hci=) -> RunningAgent."""
    started: list[RunningAgent] = []

    def factory(
        home: Home,
        host: str = "127.0.0.1",
        token: str | None = None,
        limits: Limits | None = None,
        hci: str | None = None,
    ) -> RunningAgent:
        services = Services.build(home.root, tiny_model_dir)
        agent = Agent(services, limits, embedder=minilm)
        config = ServeConfig(host=host, port=0, token=token, hci=hci)
        serving, thread = start_in_thread(agent, config)
        running = RunningAgent(agent, serving, home, thread)
        started.append(running)
        return running

    yield factory
    for running in started:
        running.stop()
        running.agent.close()


@pytest.fixture
def running(start_agent: StartAgent, packet_home: Home) -> RunningAgent:
    return start_agent(packet_home)


@dataclass(frozen=True)
class Peer:
    """Another device: its home and device id."""

    home: Home
    device_id: str


@pytest.fixture
def wells_peer(
    make_home: Callable[[str], Home], tiny_model_dir: Path, make_adapter: Callable[..., Adapter]
) -> Peer:
    """Another device's home holding one packet for the tiny model, `wells`."""
    from fieldkit.store.identity import Identity

    home = make_home("peer")
    add_packet(home, tiny_model_dir, make_adapter(3), "wells", WELLS)
    return Peer(home, Identity.load_or_create(home).device_id)


def trust(home: Home, model_dir: Path, peer_id: str) -> str:
    """Mark `peer_id` trusted in `home`'s library (its packets are then accepted); return
    the home's own device id."""
    services = Services.build(home.root, model_dir)
    try:
        services.library.set_trust(peer_id, "trusted")
        return services.identity.device_id
    finally:
        services.close()
