"""`fieldkit ask`: answer a question with one knowledge packet, the base model, or the router's pick.

The answer is grounded in the packet's notes when it carries them (fieldkit.answering):
its sources and any number no source states are printed under it.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from fieldkit.commands import given_question
from fieldkit.commands.complete import packet_names

if TYPE_CHECKING:
    from fieldkit.answers import Answer, Grounding, Source
    from fieldkit.router.router import RouteDecision
    from fieldkit.services import Services

SOURCE_CHARS = 160  # a source passage is cut to this many characters on the terminal
LONG_QUESTION = 4000  # characters: a question this long says first that it takes a while
# under an answer the base model wrote because a person asked for it (--base)
BASE_BY_HAND = "it knows nothing of the packets' fields; check it before acting on it"


def _cut(text: str, width: int) -> str:
    """Return a text on one line, cut to `width` characters."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def _source_line(
    head: str, source: Source, width: int, columns: int | None, *, fact_only: bool = False
) -> str:
    """Return `head`, the source's label and its title and text (`fact_only`: its text
    alone) cut to `width` characters, or on a terminal of `columns`, to what fits on one
    of its lines."""
    start = f"{head}{source.label}: "
    if columns is not None:
        width = min(width, max(columns - len(start), 20))
    return start + _cut(source.text if fact_only else source.full_text, width)


def terminal_columns() -> int | None:
    """Return the width of the terminal stdout writes to, or None when it is not one."""
    import shutil

    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def answer_footer(
    result: Answer,
    width: int = SOURCE_CHARS,
    *,
    notes_off: bool = False,
    cut_at: int | None = None,
    columns: int | None = None,
) -> list[str]:
    """Return the lines printed under an answer: where it came from, sources, support
    marks; `notes_off` when the notes were left out (--no-notes), `cut_at` the token limit
    when the answer stopped there, `columns` the terminal's width (a source fits a line)."""
    lines = _origin(result, width, notes_off, columns)
    if not result.text.strip():  # a blank line alone reads as a fault of the terminal
        lines.insert(0, "(the model wrote no answer to this)")
    if cut_at is not None:
        lines.append(f"(cut at {cut_at} tokens, mid-answer: --max-tokens sets the limit)")
    return lines


def _origin(result: Answer, width: int, notes_off: bool, columns: int | None) -> list[str]:
    from fieldkit.answers import ADAPTER_ONLY, BASE, GAP
    from fieldkit.support import (
        CHECK_IT,
        NONE_SUPPORTED,
        NUMBERS_FOUND,
        none_supported,
        shown_marks,
        states_numbers,
    )

    lines: list[str] = []
    if result.grounding == ADAPTER_ONLY and notes_off:
        lines.append("(from the adapter only: notes left out, --no-notes)")
    elif result.grounding == ADAPTER_ONLY:
        lines.append(f"(from the adapter only: {result.packet} carries no notes)")
    elif result.grounding == GAP:
        said = "from the adapter only: no note covers this question"
        lines.append(f"({said if result.generated else result.note})")
        for source in result.nearest_shown:  # the gap sentence above names its title
            if result.as_written:  # its text is the answer above
                lines.append(f"nearest record, as written above: {source.label}")
            else:
                head = "nearest record, not used: "
                lines.append(_source_line(head, source, width, columns, fact_only=True))
            lines.append(
                f"(to answer from it anyway: fieldkit ask --adapter {source.packet} "
                f"--passage {source.passage_id} QUESTION)"
            )
    for n, source in enumerate(result.sources, 1):
        lines.append(_source_line(f"[{n}] ", source, width, columns))
    if result.unsupported:
        spans = [(u.start, u.end) for u in result.unsupported]
        marks = ", ".join(shown_marks(result.text, spans))
        checked = "the sources" if result.sources else "any source"
        none = none_supported(result.text, len(result.unsupported))
        said = NONE_SUPPORTED if result.sources else CHECK_IT  # no "them" to name
        caution = f" ({said})" if none else ""
        lines.append(f"unsupported by {checked}: {marks}{caution}")
        read = [(n, s) for n, s in enumerate(result.sources, 1) if s.read]  # each part's record
        for n, source in read:  # its line above was cut; a terminal cannot unfold it
            whole = " ".join(source.full_text.split())
            lines.append(f"[{n}] whole, to check the answer against: {whole}")
    elif result.sources and result.generated and states_numbers(result.text):
        lines.append(NUMBERS_FOUND)  # of a record given as written, it says nothing
    lines += result.warnings  # its sources may not back it: follows_unread, recites
    if result.grounding == BASE:  # asked with --base, or no packet fits the question
        decision = result.decision
        if decision is None:  # picked by hand
            return [f"(from the base model only, picked with --base: {BASE_BY_HAND})"]
        lines = [f"(from the base model only: {decision.reason})"]
        from fieldkit.router.router import near_miss

        near = near_miss(decision)
        if near is not None:
            lines.append(
                f"(to ask {near.name} anyway: fieldkit ask --adapter {near.name} QUESTION)"
            )
        return lines
    return lines


@click.command("ask")
@click.argument("words", nargs=-1, required=True, metavar="QUESTION")
@click.option(
    "--adapter",
    "adapter_name",
    metavar="NAME",
    shell_complete=packet_names,
    help="Answer with this packet (by name), without asking the router.",
)
@click.option("--base", is_flag=True, help="Answer with the base model alone.")
@click.option("--no-notes", is_flag=True, help="Leave the packet's notes out of the prompt.")
@click.option(
    "--passage",
    metavar="ID",
    help="Answer from this record of the packet's notes, as picked by you (a gap answer's "
    "nearest record, say), whatever the notes judge of it.",
)
@click.option("--raw", is_flag=True, help="No clean decoding (repeats and cut sentences kept).")
@click.option(
    "--max-tokens",
    default=256,
    show_default=True,
    type=click.IntRange(1, 32768),
    help="Most tokens the answer may have.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object when done.")
@click.option(
    "--no-server",
    is_flag=True,
    help="Load the model here even if an agent of this home runs (also FIELDKIT_NO_SERVER=1).",
)
@click.pass_obj
def ask_command(
    services: Services,
    words: tuple[str, ...],
    adapter_name: str | None,
    base: bool,
    no_notes: bool,
    passage: str | None,
    raw: bool,
    max_tokens: int,
    as_json: bool,
    no_server: bool = False,
) -> None:
    """Answer QUESTION (its words, quoted or not; `-`: read it from standard input, a long
    question written in an editor or piped from a script). Without --adapter or --base, the
    router picks the packet."""
    from fieldkit.answering import answer
    from fieldkit.prompts import check_question

    if adapter_name and base:
        raise click.UsageError("Give --adapter NAME or --base, not both.")
    if passage is not None and (adapter_name is None or no_notes):
        raise click.UsageError(
            "--passage names a record of one packet's notes: give --adapter NAME with it, "
            "not --base or --no-notes."
        )
    question = given_question(words)
    check_question(question)  # before an agent or a model is asked
    if len(question) > LONG_QUESTION:  # minutes of reading on a small CPU, and no word
        click.echo(
            f"Reading a question of {len(question):,} characters: the answer starts once "
            "the model has read it all.",
            err=True,
        )
    from fieldkit.commands.serve import ask_through_agent, use_agent

    if use_agent(no_server) and ask_through_agent(
        services, question, adapter_name, base, max_tokens, as_json, notes=not no_notes,
        clean=not raw, passage=passage,
    ):  # fmt: skip
        return
    services.require_model()
    stream = not as_json

    def show(text: str) -> None:
        click.echo(text, nl=False)
        sys.stdout.flush()

    def grounded(grounding: Grounding, decision: RouteDecision | None) -> None:
        if grounding.notice:
            click.echo(grounding.notice)

    result = answer(
        services,
        question,
        packet=adapter_name,
        base=base,
        use_notes=not no_notes,
        passage=passage,
        max_tokens=max_tokens,
        clean=not raw,
        on_ground=grounded if stream else None,
        on_text=show if stream else None,
    )
    if not stream:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    print_answer_end(result, max_tokens, notes_off=no_notes)


def print_answer_end(
    result: Answer, max_tokens: int, *, notes_off: bool, by: str | None = None
) -> None:
    """Print what follows a streamed answer, here or from an agent (`by`): the footer
    lines on stdout, then its packet, swap time and speed on a terminal's stderr."""
    click.echo()
    r = result.result
    cut_at = max_tokens if r is not None and r.finish_reason == "length" else None
    footer = answer_footer(result, notes_off=notes_off, cut_at=cut_at, columns=terminal_columns())
    for line in footer:
        click.echo(line)
    line = speed_line(result, by)
    if sys.stderr.isatty() and line:
        click.echo(line, err=True)


def speed_line(result: Answer, by: str | None = None) -> str | None:
    """The bracketed line after an answer: its packet, then its swap time and speed, or
    that nothing was generated (a record as written: the swap and speed of a generation
    stopped at its opening, or never begun, say nothing); None without an engine result."""
    r = result.result
    if r is None:
        return None
    where = f" · {by}" if by else ""
    said = (
        f"swap {r.swap_ms:.1f} ms · {r.generation_tps:.1f} tok/s"
        if result.generated
        else "nothing generated"
    )
    return f"[{result.packet or 'base model'} · {said}{where}]"
