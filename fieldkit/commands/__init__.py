"""Click commands, one module per command group; registered lazily in fieldkit/cli.py."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import click

T = TypeVar("T")


def services(ctx: click.Context | None = None) -> Any:
    """Return the Services built by the `fieldkit` group for this invocation."""
    ctx = ctx or click.get_current_context()
    return ctx.find_root().obj


def emit_json(data: Any) -> None:
    """Print one JSON document on stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def echo_fields(rows: Iterable[tuple[str, Any]], width: int) -> None:
    """Print one `label value` line per row, each label padded to `width` characters."""
    for label, value in rows:
        click.echo(f"{label:<{width}} {value}")


def is_terminal() -> bool:
    return sys.stdout.isatty()


class Finite(click.ParamType):
    """A finite number within [low, high] (click's FloatRange lets NaN and infinity through)."""

    name = "number"

    def __init__(self, low: float, high: float, unit: str = "") -> None:
        self.low, self.high, self.unit = low, high, unit

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{str(value)[:40]!r} is not a number.", param, ctx)
        if not math.isfinite(number) or not self.low <= number <= self.high:
            self.fail(
                f"{str(value)[:40]!r} is not between {self.low:g} and {self.high:g}{self.unit}.",
                param,
                ctx,
            )
        return number


class Seconds(Finite):
    """A finite number of seconds within [low, high]."""

    name = "seconds"

    def __init__(self, low: float = 0.1, high: float = 86400.0) -> None:
        super().__init__(low, high, " seconds")


def listen_options(host_help: str, default_port: int, port_help: str) -> Callable[[Any], Any]:
    """Return the `--host` and `--port` options of a command that listens on TCP (port 0:
    any free one)."""
    host = click.option("--host", default="127.0.0.1", show_default=True, help=host_help)
    port = click.option(
        "--port", type=click.IntRange(0, 65535), default=default_port, show_default=True,
        help=port_help,
    )  # fmt: skip
    return lambda command: host(port(command))


def hci_option(what: str) -> Callable[[Any], Any]:
    """Return the `--hci` option: `what` the radio is for, then the spec it takes."""
    return click.option(
        "--hci",
        default=None,
        metavar="SPEC",
        help=f"{what}: a bumble HCI transport (usb:0, tcp-client:127.0.0.1:PORT) instead of "
        "the system Bluetooth stack.",
    )


def given_question(words: Sequence[str]) -> str:
    """Return the question as given on the command line (its words, quoted or not, joined
    by spaces), or for `-` the one on standard input (a long question written in an
    editor, or piped from a script), read no further than the prompt limit needs;
    FieldkitError if it is longer or not UTF-8 text."""
    if list(words) != ["-"]:
        return " ".join(words)
    from fieldkit.errors import FieldkitError
    from fieldkit.prompts import MAX_PROMPT_CHARS

    cap = 4 * (MAX_PROMPT_CHARS + 1)  # bytes enough for that many characters
    text, full = stdin_text(cap, "The question on standard input is not UTF-8 text.")
    if full:  # more than MAX_PROMPT_CHARS characters, however many bytes each takes
        raise FieldkitError(
            f"The question on standard input has more than {MAX_PROMPT_CHARS} characters; "
            f"fieldkit takes at most {MAX_PROMPT_CHARS}."
        )
    return text.strip()


def stdin_text(cap: int, not_utf8: str) -> tuple[str, bool]:
    """Return standard input as text, read up to `cap` bytes, and whether it reached the
    cap (text cut there may end inside a character, which is dropped: it is too long
    anyway); FieldkitError(`not_utf8`) if it is not UTF-8."""
    from fieldkit.errors import FieldkitError

    data = sys.stdin.buffer.read(cap)
    full = len(data) == cap
    try:
        return data.decode("utf-8-sig", "ignore" if full else "strict"), full
    except UnicodeDecodeError:
        raise FieldkitError(not_utf8) from None


def each_reported(items: Sequence[T], label: Callable[[T], str], action: Callable[[T], None],
                  done: str) -> None:  # fmt: skip
    """Run `action` on each item. With one item its FieldkitError is raised as it is; with
    several, each is reported on stderr after the item's label and the others go on, and a
    PacketError at the end says how many were not `done` ("imported", "exported")."""
    from fieldkit.errors import FieldkitError, PacketError

    failed = 0
    for item in items:
        try:
            action(item)
        except FieldkitError as exc:
            if len(items) == 1:
                raise
            failed += 1
            click.echo(f"fieldkit: {label(item)}: {exc}", err=True)
    if failed:
        raise PacketError(f"{failed} of {len(items)} were not {done} (see above).")
