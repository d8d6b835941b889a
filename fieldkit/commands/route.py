"""`fieldkit route`: show which knowledge packet would answer a question, and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from fieldkit.errors import RouterError

if TYPE_CHECKING:
    from fieldkit.router.router import RouteDecision
    from fieldkit.services import Services


def read_questions(path: Path) -> list[str]:
    """Return the questions in a text file (one per line) or a .jsonl file (`question`).

    Raises RouterError for an unreadable file, a bad JSON line, or a file with no questions.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise RouterError(f"Cannot read questions from {path}: {reason}.") from exc
    except UnicodeDecodeError as exc:
        raise RouterError(f"Cannot read questions from {path}: it is not UTF-8 text.") from exc
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if path.suffix.lower() != ".jsonl":
        questions = [line for _, line in lines]
    else:
        questions = []
        for n, line in lines:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                item = None
            question = item.get("question") if isinstance(item, dict) else None
            if not isinstance(question, str) or not question.strip():
                raise RouterError(
                    f"{path}, line {n}: expected a JSON object with a 'question' string."
                )
            questions.append(question.strip())
    if not questions:
        raise RouterError(f"{path} holds no questions.")
    return questions


def describe(decision: RouteDecision) -> str:
    """Return the one-line human form of a decision."""
    target = decision.route or "(base model)"
    return f"{target}\t{decision.score:.2f}\t{decision.reason}"


@click.command("route")
@click.argument("question", required=False)
@click.option(
    "--file",
    "questions_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Route every question in this file (text, one per line, or .jsonl with 'question').",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per question.")
@click.pass_obj
def route_command(
    services: Services, question: str | None, questions_file: Path | None, as_json: bool
) -> None:
    """Show which packet would answer QUESTION (or each question in --file), and why."""
    if (question is None) == (questions_file is None):
        raise click.UsageError("Give a QUESTION or --file QUESTIONS, not both or neither.")
    questions = read_questions(questions_file) if questions_file else [question or ""]
    if not all(q.strip() for q in questions):
        raise RouterError("The question is empty.")
    decisions = services.router.route_many(questions)
    for text, decision in zip(questions, decisions, strict=True):
        if as_json:
            click.echo(json.dumps({"question": text, **decision.to_dict()}, ensure_ascii=False))
        else:
            click.echo(describe(decision))
