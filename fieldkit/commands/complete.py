"""Shell completion of packet names, peer ids and model names (click `shell_complete` callbacks).

Completion runs before the `fieldkit` group builds its services, so the home comes from
the command line being completed (`--home`, else $FIELDKIT_HOME, else the default).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click
from click.shell_completion import CompletionItem

if TYPE_CHECKING:
    from fieldkit.store.library import Library


def packet_names(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Return the packets whose name starts with `incomplete`, each with its domain."""
    records = _read(ctx, lambda library: library.list_packets())
    return [CompletionItem(r.name, help=r.domain) for r in records if r.name.startswith(incomplete)]


def peer_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Return the known peers whose id or name starts with `incomplete` (the id completes)."""
    peers = _read(ctx, lambda library: library.list_peers())
    return [
        CompletionItem(p.peer_id, help=p.name)
        for p in peers
        if p.peer_id.startswith(incomplete.lower()) or p.name.startswith(incomplete)
    ]


def installed_models(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Return the names of the models installed in the home that start with `incomplete`."""
    from fieldkit.home import Home

    try:
        folder = Home.resolve(ctx.find_root().params.get("home")).models_dir
        names = [p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []
    return sorted(name for name in names if name.startswith(incomplete))


def _read(ctx: click.Context, read: Callable[[Library], list[Any]]) -> list[Any]:
    """Return read(library) for the home being completed; [] where it has no library yet
    (completion creates nothing) or anything goes wrong."""
    from fieldkit.home import Home
    from fieldkit.store.library import Library

    try:
        home = Home.resolve(ctx.find_root().params.get("home"))
        if not home.db_path.is_file():
            return []
        library = Library.open(home)
        try:
            return read(library)
        finally:
            library.close()
    except Exception:  # a completion must never print a traceback into the shell
        return []
