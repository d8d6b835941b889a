"""`fieldkit route`: show which knowledge packet would answer a question, and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from fieldkit.commands import given_question, stdin_text
from fieldkit.errors import RouterError
from fieldkit.formats import format_size, shown_text
from fieldkit.prompts import check_question
from fieldkit.store.files import MIB
from fieldkit.store.importers import EXEMPLAR_FORMATS, parse_questions
from fieldkit.store.importers import read_questions as read

STDIN_QUESTIONS_LIMIT = 64 * MIB  # as a questions file (store.files.read_text_bounded)
NOT_UTF8 = "The questions on standard input are not UTF-8 text."

if TYPE_CHECKING:
    from fieldkit.router.router import RouteDecision
    from fieldkit.services import Services


def read_questions(path: Path) -> list[str]:
    """Return the questions in a file, read as `library import --exemplars` reads them
    (store.importers.read_questions: one a line, or JSON Lines of questions or chat turns
    for a .jsonl file or one whose first line is an object), or for `-` on standard input.

    Raises a FieldkitError (one sentence) for an unreadable file, a bad JSON line, or a
    file with no questions.
    """
    if str(path) == "-":
        text, full = stdin_text(STDIN_QUESTIONS_LIMIT + 1, NOT_UTF8)
        if full:
            raise RouterError(
                "The questions on standard input are larger than "
                f"{format_size(STDIN_QUESTIONS_LIMIT)}."
            )
        questions = parse_questions(text, "standard input")
        where = "Standard input"
    else:
        questions, where = read(path), str(path)
    if not questions:
        raise RouterError(f"{where} holds no questions.")
    return questions


def describe(decision: RouteDecision) -> str:
    """Return the one-line human form of a decision."""
    target = decision.route or "(base model)"
    return f"{target}\t{decision.score:.2f}\t{decision.reason}"


@click.command("route")
@click.argument("words", nargs=-1, metavar="[QUESTION]")
@click.option(
    "--file",
    "questions_file",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help=f"Route every question in this file (`-`: standard input): {EXEMPLAR_FORMATS}.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per question.")
@click.pass_obj
def route_command(
    services: Services, words: tuple[str, ...], questions_file: Path | None, as_json: bool
) -> None:
    """Show which packet would answer QUESTION (its words, quoted or not; `-`: read it from
    standard input), or each question in --file, and why."""
    if bool(words) == (questions_file is not None):
        raise click.UsageError("Give a QUESTION or --file QUESTIONS, not both or neither.")
    questions = read_questions(questions_file) if questions_file else [given_question(words)]
    for text in questions:  # the limits `ask` keeps (answering.check_question)
        check_question(text)
    decisions = services.router.route_many(questions)
    for text, decision in zip(questions, decisions, strict=True):
        if as_json:
            click.echo(json.dumps({"question": text, **decision.to_dict()}, ensure_ascii=False))
        elif questions_file:  # the question last, so that each line names its own
            click.echo(f"{describe(decision)}\t{shown_text(' '.join(text.split()))}")
        else:
            click.echo(describe(decision))
