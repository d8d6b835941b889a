"""`fieldkit demo`: the default model and the demo packets, ready to ask, fully offline."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from fieldkit.assets import demo_domains, demo_packets

if TYPE_CHECKING:
    from fieldkit.services import Services

OUTSIDE_QUESTION = "How do I change the ringtone on my phone?"
# An everyday question sharing a packet's words (eggs, the fridge): the router's everyday
# questions leave it to the base model, and the route line says why.
EVERYDAY_QUESTION = "How long do boiled eggs keep in the fridge?"
# A question that asks two things two poultry records answer: answered in two parts.
TWO_ASKS_QUESTION = (
    "We lost three hens to something overnight. What is the rule for disposing of dead "
    "birds? Also what do I dip the legs of birds with scaly leg mites in?"
)


def set_up_demo(services: Services, echo=click.echo) -> list[str]:
    """Install the default model if needed and import the demo packets; return their names."""
    from fieldkit.engine.convert import install_default
    from fieldkit.store.packet import packet_id, read_packet_file

    if services.model_override is None:
        path, created = install_default(services.home.models_dir, progress=lambda m: echo(f"  {m}"))
        echo(f"Base model: {path} ({'installed' if created else 'already installed'}).")
    services.require_model()
    files = demo_packets()
    if not files:
        echo("No demo packets are shipped in assets/packets; run scripts/build_demo_packets.sh.")
    names = []
    for path in files:
        packet = read_packet_file(path)
        if not services.library.has(packet_id(packet.manifest)):
            _make_way(services.library, packet.manifest, echo)
            services.library.add(
                packet.manifest,
                packet.signature,
                packet.weights,
                source="demo",
                expected_base=services.base_fingerprint,
            )
        names.append(packet.manifest["name"])
    echo(f"Demo packets in the library: {', '.join(names) or 'none'}.")
    return names


def _make_way(library: Any, manifest: dict[str, Any], echo: Callable[[str], Any]) -> None:
    """Remove an earlier demo packet of the same name that another demo build signed (the
    demo put it there: its source is "demo"), so the one shipped now takes its place. A
    packet of that name from anywhere else stays, and the import says so."""
    held = library.name_conflict(manifest["name"], manifest["author_id"])
    if held is not None and held.source == "demo":
        library.remove(held.packet_id)
        echo(f"Replaced the earlier demo packet {held.name!r} with the one shipped now.")


def demo_questions() -> list[str]:
    """One held-out question per demo domain, one that asks two things (answered in two
    parts), one that falls in a packet's gap (its notes have nothing on it), then two that
    no packet covers: one plainly, one an everyday question that shares a packet's words."""
    questions, gaps = [], []
    for folder in demo_domains():
        heldout = folder / "heldout.jsonl"
        if heldout.is_file():
            first = heldout.read_text(encoding="utf-8").splitlines()[0]
            questions.append(json.loads(first)["question"])
        gap_file = folder / "gaps.jsonl"
        if gap_file.is_file() and not gaps:
            gaps.append(
                json.loads(gap_file.read_text(encoding="utf-8").splitlines()[0])["question"]
            )
    return [*questions, TWO_ASKS_QUESTION, *gaps, OUTSIDE_QUESTION, EVERYDAY_QUESTION]


def ask_questions(services: Services, questions: list[str], max_tokens: int) -> None:
    """Route and answer each question, streaming the answer, then its sources and marks."""
    from fieldkit.answering import answer
    from fieldkit.commands.ask import answer_footer, speed_line

    def show(text: str) -> None:  # an answer's own lines stay under "A: "
        click.echo(text.replace("\n", "\n   "), nl=False)
        sys.stdout.flush()

    def grounded(grounding, decision) -> None:  # noqa: ANN001 - see fieldkit.answering
        if decision is not None:
            click.echo(f"   route: {decision.reason}")
        click.echo("A: ", nl=False)
        if grounding.notice:
            click.echo(grounding.notice + "\n   ", nl=False)

    for question in questions:
        click.echo(f"\nQ: {question}")
        result = answer(services, question, max_tokens=max_tokens, on_ground=grounded, on_text=show)
        click.echo()
        for line in answer_footer(result):
            click.echo(f"   {line}")
        line = speed_line(result)
        if line:
            click.echo(f"   {line}")


@click.command("demo")
@click.option("--no-tui", is_flag=True, help="Ask a few questions on the terminal instead.")
@click.option(
    "--max-tokens",
    default=120,
    show_default=True,
    type=click.IntRange(1, 4096),
    help="Most tokens each answer may have.",
)
@click.pass_obj
def demo_command(services: Services, no_tui: bool, max_tokens: int) -> None:
    """Set up the embedded default model and the demo packets, then open the TUI."""
    click.echo(f"Demo home: {services.home.root}")
    set_up_demo(services)
    if no_tui or not (sys.stdin.isatty() and sys.stdout.isatty()):
        ask_questions(services, demo_questions(), max_tokens)
        click.echo(
            "\nOpen the TUI with `.venv/bin/fieldkit` (keys: F2 peers, F3 library, F4 ask, F1 help)."
        )
        return
    from fieldkit.tui.app import run_app

    run_app(services)
