"""`fieldkit serve`: keep the model, router and packets resident and answer over HTTP.

Also the client side of `fieldkit ask`: `ask_through_agent` answers through a running
agent of the same home and prints exactly what the local path prints.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from fieldkit.commands import hci_option, listen_options
from fieldkit.commands import services as current_services
from fieldkit.errors import FieldkitError
from fieldkit.server.client import NO_SERVER_ENV, use_agent
from fieldkit.server.runtime import DEFAULT_PORT

if TYPE_CHECKING:
    from fieldkit.server.runtime import RuntimeInfo
    from fieldkit.services import Services

__all__ = ["NO_SERVER_ENV", "ask_through_agent", "serve_command", "use_agent"]


@click.command("serve")
@listen_options("Address for the HTTP port.", DEFAULT_PORT, "TCP port (0: any free port).")
@click.option("--socket-only", is_flag=True, help="Listen on the home's Unix socket only.")
@click.option(
    "--token",
    default=None,
    envvar="FIELDKIT_SERVE_TOKEN",
    help="Clients of the TCP port must send this bearer token (default: <home>/serve.token "
    "if present). Required beyond loopback.",
)
@click.option("--new-token", is_flag=True, help="Write a new random token to <home>/serve.token.")
@hci_option("The radio this agent holds for `sync --ble`, `peers --ble` and the TUI")
@click.option("--no-ble", is_flag=True, help="Do not take Bluetooth syncs for other processes.")
def serve_command(
    host: str,
    port: int,
    socket_only: bool,
    token: str | None,
    new_token: bool,
    hci: str | None = None,
    no_ble: bool = False,
) -> None:
    """Answer questions over OpenAI-style HTTP, with everything loaded once.

    Endpoints: GET /v1/models, POST /v1/chat/completions (model: auto, base or a packet
    name), GET /v1/library, GET /health. `fieldkit ask` uses a running agent of its home,
    and `fieldkit sync --ble` the radio it holds.
    """
    from fieldkit.server.agent import Agent
    from fieldkit.server.run import ServeConfig, serve
    from fieldkit.server.runtime import new_token as write_new_token
    from fieldkit.server.runtime import read_runtime, token_path
    from fieldkit.services import Services

    svc: Services = current_services()
    svc.require_model()
    if new_token:
        if token:
            raise click.UsageError("Give --token or --new-token, not both.")
        token = write_new_token(svc.home)
        click.echo(f"Wrote a new token to {token_path(svc.home)}.", err=True)
    running = read_runtime(svc.home)
    if running is not None and running.pid != os.getpid():
        raise FieldkitError(
            f"An agent of this home already runs (process {running.pid}, {running.socket})."
        )
    config = ServeConfig(
        host=host, port=None if socket_only else port, token=token, ble=not no_ble, hci=hci
    )
    # The agent owns its services (their library lives on the agent's library thread).
    agent = Agent(Services.build(svc.home.root, svc.model_override))

    def ready(info: RuntimeInfo) -> None:
        where = f" and {info.url}" if info.port else ""
        guard = " (token required)" if info.token_required else ""
        click.echo(f"fieldkit agent listening on {info.socket}{where}{guard}.", err=True)

    try:
        asyncio.run(serve(agent, config, on_ready=ready))
    except KeyboardInterrupt:
        pass
    finally:
        if agent.still_loading:
            click.echo("fieldkit agent stopping once the model has loaded.", err=True)
        agent.close()
    click.echo("fieldkit agent stopped.", err=True)


def ask_through_agent(
    svc: Services,
    question: str,
    adapter_name: str | None,
    base: bool,
    max_tokens: int,
    as_json: bool,
    *,
    notes: bool = True,
    clean: bool = True,
    passage: str | None = None,
) -> bool:
    """Answer through a running agent of this home; return False when none runs.

    Prints what `fieldkit ask` prints locally: the streamed text (the gap or caution
    sentence first), the sources and support marks and the stderr line, or the same JSON
    object (the agent sends `Answer.to_dict()`). Raises FieldkitError with the agent's
    sentence on a refusal.
    """
    from fieldkit.answers import Answer
    from fieldkit.commands.ask import print_answer_end
    from fieldkit.server.client import find_agent

    client = find_agent(svc.home, svc.model_dir)
    if client is None:
        return False
    payload = {
        "model": adapter_name or ("base" if base else "auto"),
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "fieldkit": {"notes": notes, "clean": clean} | ({"passage": passage} if passage else {}),
    }
    extras: dict[str, Any] = {}
    for event in client.stream_chat(payload):  # the content starts with any gap or caution
        extras = event.get("fieldkit", extras)
        delta = event["choices"][0]["delta"].get("content") or ""
        if delta and not as_json:
            click.echo(delta, nl=False)
            sys.stdout.flush()
    result = extras.get("answer")
    if result is None:
        raise FieldkitError("The agent ended the answer without its summary.")
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
        return True
    print_answer_end(Answer.from_dict(result), max_tokens, notes_off=not notes, by="agent")
    return True
