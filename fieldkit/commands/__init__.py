"""Click commands, one module per command group; registered lazily in fieldkit/cli.py."""

from __future__ import annotations

import json
import sys
from typing import Any

import click


def services(ctx: click.Context | None = None) -> Any:
    """Return the Services built by the `fieldkit` group for this invocation."""
    ctx = ctx or click.get_current_context()
    return ctx.find_root().obj


def emit_json(data: Any) -> None:
    """Print one JSON document on stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def is_terminal() -> bool:
    return sys.stdout.isatty()
