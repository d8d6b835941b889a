"""`fieldkit ask`: answer a question with one knowledge packet, the base model, or the router's pick."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from fieldkit.errors import FieldkitError

if TYPE_CHECKING:
    from fieldkit.services import Services


@click.command("ask")
@click.argument("question")
@click.option("--adapter", "adapter_name", metavar="NAME", help="Answer with this packet.")
@click.option("--base", is_flag=True, help="Answer with the base model alone.")
@click.option("--max-tokens", default=256, show_default=True, type=click.IntRange(1, 32768))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object when done.")
@click.option(
    "--no-server",
    is_flag=True,
    help="Load the model here even if an agent of this home runs (also FIELDKIT_NO_SERVER=1).",
)
@click.pass_obj
def ask_command(
    services: Services,
    question: str,
    adapter_name: str | None,
    base: bool,
    max_tokens: int,
    as_json: bool,
    no_server: bool = False,
) -> None:
    """Answer QUESTION. Without --adapter or --base, the router picks the packet."""
    if adapter_name and base:
        raise click.UsageError("Give --adapter NAME or --base, not both.")
    if not question.strip():
        raise FieldkitError("The question is empty.")
    from fieldkit.commands.serve import ask_through_agent, use_agent

    if use_agent(no_server) and ask_through_agent(
        services, question, adapter_name, base, max_tokens, as_json
    ):
        return
    services.require_model()
    record, decision = services.pick_packet(question, adapter_name, base)
    adapter = services.checked_adapter(record) if record else None
    stream = not as_json
    result = None
    for chunk in services.engine.generate(question, adapter, max_tokens=max_tokens):
        if chunk.result is not None:
            result = chunk.result
        if stream and chunk.text:
            click.echo(chunk.text, nl=False)
            sys.stdout.flush()
    assert result is not None
    if stream:
        click.echo()
        if sys.stderr.isatty():
            who = record.name if record else "base model"
            click.echo(
                f"[{who} · swap {result.swap_ms:.1f} ms · {result.generation_tps:.1f} tok/s]",
                err=True,
            )
        return
    out: dict[str, Any] = {
        "question": question,
        "answer": result.text,
        "adapter": record.name if record else None,
        "packet_id": record.packet_id if record else None,
        "swap_ms": round(result.swap_ms, 3),
        "prompt_tokens": result.prompt_tokens,
        "generation_tokens": result.generation_tokens,
        "prompt_tps": round(result.prompt_tps, 2),
        "generation_tps": round(result.generation_tps, 2),
        "finish_reason": result.finish_reason,
    }
    if decision is not None:
        out.update(
            route=decision.route,
            score=round(decision.score, 4),
            margin=round(decision.margin, 4),
            route_ms=round(decision.route_ms, 2),
        )
    click.echo(json.dumps(out, ensure_ascii=False))
