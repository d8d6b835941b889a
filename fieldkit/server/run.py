"""Run the agent's HTTP server on its Unix socket and (optionally) a TCP port, with uvicorn.

`serve(agent, config)` runs until SIGINT/SIGTERM (or `stop`), writing the runtime file
while it listens and removing it, and the socket, when it stops. `start_in_thread` runs
the same server on a thread of its own (tests and benchmarks).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from fieldkit.server.app import build_app
from fieldkit.server.radio import RadioHolder
from fieldkit.server.runtime import (
    DEFAULT_PORT,
    RuntimeInfo,
    bind_tcp,
    bind_unix,
    clear_runtime,
    resolve_token,
    socket_path,
    write_runtime,
)

if TYPE_CHECKING:
    from fieldkit.server.agent import Agent


@dataclass(frozen=True)
class ServeConfig:
    """Where the agent listens. `port` None: the Unix socket only; 0: any free port."""

    host: str = "127.0.0.1"
    port: int | None = DEFAULT_PORT
    token: str | None = None
    warm: bool = True
    ble: bool = True  # hold the radio for other processes' `sync --ble`
    hci: str | None = None  # a bumble HCI spec for that radio (None: the platform's)


class _Server(uvicorn.Server):
    """uvicorn's server, stopped by SIGINT/SIGTERM without re-raising them afterwards;
    `on_exit` runs as it starts to stop (the answers under way are cut short then, so
    that each ends with a sentence before uvicorn's grace period runs out)."""

    def __init__(
        self,
        config: uvicorn.Config,
        on_started: Callable[[], None],
        on_exit: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(config)
        self._on_started = on_started
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: Any) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list | None = None) -> None:  # noqa: ANN001
        await super().startup(sockets=sockets)
        if self.started:
            self._on_started()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handlers = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)


class Serving:
    """A server being started or running: its RuntimeInfo once listening, and `stop()`."""

    def __init__(self) -> None:
        self.info: RuntimeInfo | None = None
        self.listening = threading.Event()
        self._server: _Server | None = None

    def stop(self) -> None:
        if self._server is not None:
            self._server._on_exit()
            self._server.should_exit = True


async def serve(
    agent: Agent,
    config: ServeConfig,
    serving: Serving | None = None,
    on_ready: Callable[[RuntimeInfo], None] | None = None,
) -> None:
    """Serve until stopped; ServerError (one sentence) when it cannot listen."""
    home = agent.services.home
    serving = serving or Serving()
    tcp_wanted = config.port is not None
    token = resolve_token(home, config.token, config.host) if tcp_wanted else None
    path = socket_path(home)
    sockets = [bind_unix(path)]
    try:
        if tcp_wanted:
            sockets.append(bind_tcp(config.host, config.port or 0))
    except BaseException:
        _close(sockets, path)
        raise
    port = sockets[1].getsockname()[1] if tcp_wanted else 0
    radio = RadioHolder(agent.services, config.hci) if config.ble else None
    uv = uvicorn.Config(
        build_app(agent, token, radio),
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    info = RuntimeInfo(
        pid=os.getpid(),
        socket=str(path),
        host=config.host if tcp_wanted else "",
        port=port,
        model_dir=str(agent.services.model_dir),
        token_required=token is not None,
        started=time.time(),
    )

    def started() -> None:
        serving.listening.set()
        if on_ready is not None:
            on_ready(info)

    server = _Server(uv, started, agent.stop_answers)
    serving._server = server
    if config.warm:  # loads while requests queue; Agent.close waits for it
        threading.Thread(target=_warm, args=(agent,), name="fieldkit-warm", daemon=True).start()
    write_runtime(home, info)
    serving.info = info
    try:
        await server.serve(sockets=sockets)
    finally:
        clear_runtime(home, info.pid)
        _close(sockets, path)
        if radio is not None:
            await radio.close()
        serving.listening.set()


def _warm(agent: Agent) -> None:
    """Load the agent's parts; a failure is one sentence on stderr (and in /health)."""
    agent.warm()
    if agent.load_error:
        print(f"fieldkit: {agent.load_error}", file=sys.stderr, flush=True)


def _close(sockets: list, path: Path) -> None:  # noqa: ANN001
    for sock in sockets:
        sock.close()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def start_in_thread(agent: Agent, config: ServeConfig) -> tuple[Serving, threading.Thread]:
    """Run `serve` on a new thread; return once it listens (or raise what stopped it)."""
    serving = Serving()
    failure: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(serve(agent, config, serving))
        except BaseException as exc:
            failure.append(exc)
            serving.listening.set()

    thread = threading.Thread(target=main, name="fieldkit-serve", daemon=True)
    thread.start()
    serving.listening.wait(60)
    if failure:
        thread.join()
        raise failure[0]
    return serving, thread
