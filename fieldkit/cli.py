"""The `fieldkit` command: a click group whose sub-commands live in fieldkit/commands/.

Sub-commands are imported only when run, so `fieldkit id` never pays for mlx, torch or
textual. With no sub-command, the TUI opens.
"""

from __future__ import annotations

import importlib
import os
import signal
import sqlite3
import sys
from typing import Any

import click

from fieldkit.errors import FieldkitError

# name -> "module:attribute" of a click command or group. Add a line to register a command.
COMMANDS: dict[str, str] = {
    "model": "fieldkit.commands.model:model",
    "ask": "fieldkit.commands.ask:ask_command",
    "demo": "fieldkit.commands.demo:demo_command",
    "bench": "fieldkit.commands.bench:bench",
    "id": "fieldkit.commands.identity:id_command",
    "name": "fieldkit.commands.identity:name_command",
    "library": "fieldkit.commands.library:library",
    "route": "fieldkit.commands.route:route_command",
    "train": "fieldkit.commands.train:train_command",
    "merge": "fieldkit.commands.merge:merge_command",
    "sync": "fieldkit.commands.sync:sync_command",
    "peers": "fieldkit.commands.peers:peers",
    "trust": "fieldkit.commands.peers:trust_command",
    "block": "fieldkit.commands.peers:block_command",
    "serve": "fieldkit.commands.serve:serve_command",
    "service": "fieldkit.commands.service:service",
}


INTERRUPTED = 128 + signal.SIGINT  # the exit status after Ctrl-C (130), as a shell gives it


class LazyGroup(click.Group):
    """A click group that imports each sub-command's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            module_name, attr = COMMANDS[cmd_name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, cmd_name)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Refuse an argument that is not text (bytes the shell passed that are not UTF-8,
        which Python keeps as lone surrogates) before any command sees it."""
        for arg in args:
            try:
                arg.encode("utf-8")
            except UnicodeEncodeError:
                raise click.UsageError(
                    f"The argument '{escaped(arg)[:60]}' is not valid UTF-8 text."
                ) from None
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FieldkitError as exc:
            click.echo(f"fieldkit: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except BrokenPipeError:  # the reader went away (`| head`): stop quietly
            quiet_stdout()
            ctx.exit(1)
        except KeyboardInterrupt:  # as click says it, with the status a shell gives
            click.echo(err=True)  # the blank line closes the terminal's ^C
            ctx.close()  # the work under way ends first (a model load says it waits)
            click.echo("Aborted!", err=True)
            ctx.exit(INTERRUPTED)
        except (OSError, sqlite3.Error) as exc:  # the machine said no: a full disk, a
            click.echo(f"fieldkit: {environment_error(exc)}", err=True)  # read-only home...
            ctx.exit(1)


def escaped(arg: str) -> str:
    """Return an argument that is not text as it can be shown: its bytes escaped."""
    try:
        return arg.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return arg.encode("utf-8", "backslashreplace").decode("utf-8")


def not_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse an empty path ("--home ''"), which would silently mean the default."""
    if value is not None and not value.strip():
        raise click.BadParameter("is empty; leave the option out for the default.")
    return value


@click.group(cls=LazyGroup, invoke_without_command=True)
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    callback=not_empty,
    envvar="FIELDKIT_HOME",
    help="State directory (default: the platform data dir). Two homes act as two devices.",
)
@click.option(
    "--model",
    "model_path",
    type=click.Path(file_okay=False),
    default=None,
    callback=not_empty,
    metavar="NAME_OR_DIR",
    envvar="FIELDKIT_MODEL",
    help="The base model: an mlx-lm folder, or a name from `fieldkit model list` "
    "(default: the one chosen with `fieldkit model use`, else the embedded SmolLM2).",
)
@click.version_option(package_name="fieldkit")
@click.pass_context
def main(ctx: click.Context, home: str | None, model_path: str | None) -> None:
    """fieldkit: offline knowledge packets for small language models."""
    from fieldkit.services import Services

    ctx.obj = Services.build(home=home, model_path=model_path)
    bare_name = model_path and os.sep not in model_path and model_path not in (".", "..")
    if bare_name and not ctx.obj.model_dir.is_dir():  # a mistyped name, before any work
        raise click.BadParameter(
            f"no model named {model_path!r} is installed (`fieldkit model list`) and no "
            "folder is there.",
            param_hint="'--model'",
        )
    ctx.obj.notice = lambda text: click.echo(f"fieldkit: {text}", err=True)
    ctx.call_on_close(ctx.obj.close)
    if ctx.invoked_subcommand is None:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):  # a script, a pipe, a service
            raise click.UsageError("The TUI needs a terminal; outside one, give a command.")
        tui = importlib.import_module("fieldkit.tui.app")
        tui.run_app(ctx.obj)


def environment_error(exc: OSError | sqlite3.Error) -> str:
    """Return one sentence for an error the operating system or SQLite raised."""
    if isinstance(exc, OSError):
        where = f" ({str(exc.filename)[:120]})" if exc.filename else ""
        if exc.filename2:  # a move: either end may be what was refused
            where = f" (moving {str(exc.filename)[:120]} to {str(exc.filename2)[:120]})"
        return f"The system refused: {exc.strerror or exc}{where}."
    if "readonly" in str(exc):  # a write to a library opened read-only (Library._read_only)
        from fieldkit.store.files import READ_ONLY_HOME

        return READ_ONLY_HOME
    return f"The library database refused: {exc}."


def quiet_stdout() -> None:
    """Point standard output at /dev/null once its reader has gone (a closed pipe), so that
    nothing more, not even the flush at exit, fails there: the command ends silently, as
    Unix tools do when `| head` stops reading."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def terminated(_signum: int, frame: Any) -> None:
    """Handle SIGTERM as Ctrl-C: run the SIGINT handler in force (asyncio's, which cancels
    the running command's task), so the work under way cleans up (a temporary file or model
    folder removed, a transaction rolled back, the terminal restored) instead of the process
    vanishing mid-write; "Aborted!", as on Ctrl-C, and exit status 143 (128 + SIGTERM)."""
    handler = signal.getsignal(signal.SIGINT)
    if not callable(handler):  # SIGINT ignored (a background job): SIGTERM still ends it
        raise KeyboardInterrupt
    handler(signal.SIGINT, frame)


def run() -> None:
    """Entry point that turns any FieldkitError raised outside a command into one line, and
    ends a command interrupted by Ctrl-C with status 130, or by SIGTERM with 143 (128 plus
    the signal, as a shell reports a process the signal ended), so that a script tells an
    interrupt from a failure."""
    signals: list[int] = []  # the SIGTERM received, if any

    def on_term(signum: int, frame: Any) -> None:
        signals.append(signum)
        terminated(signum, frame)

    signal.signal(signal.SIGTERM, on_term)
    try:
        try:
            main(standalone_mode=True)
        finally:
            sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
    except SystemExit as exc:
        if exc.code == INTERRUPTED and signals:  # SIGTERM, handled as Ctrl-C
            sys.exit(128 + signals[-1])
        raise
    except BrokenPipeError:
        quiet_stdout()
        sys.exit(1)
    except FieldkitError as exc:  # raised while building services
        click.echo(f"fieldkit: {exc}", err=True)
        sys.exit(exc.exit_code)
    except (OSError, sqlite3.Error) as exc:
        click.echo(f"fieldkit: {environment_error(exc)}", err=True)
        sys.exit(1)
