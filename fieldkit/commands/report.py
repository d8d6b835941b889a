"""What the sync commands print: progress bars, the summary, the trust question, the error.

Shared by `fieldkit sync` over TCP and over Bluetooth LE, so both print the same.
"""

from __future__ import annotations

import asyncio
import json
import sys

import click

from fieldkit.errors import FieldkitError
from fieldkit.formats import format_size, shown_text
from fieldkit.gossip.summary import ProgressUpdate, SyncSummary


class SyncError(FieldkitError):
    """A session ended early or a packet failed; the summary was printed already."""


async def ask_trust(peer_id: str, name: str, sas: str) -> bool:
    """Ask the person at the terminal whether the peer shows the same code."""
    question = (
        f"{name or 'A new device'} ({peer_id}) wants to send packets. Does it show the code "
        f"{sas}? Trust it"
    )
    return await asyncio.to_thread(click.confirm, question, default=False, err=True)


class ProgressBars:
    """One progress line per packet on stderr."""

    def __init__(self) -> None:
        self.current: tuple[str, str] | None = None

    def update(self, update: ProgressUpdate) -> None:
        key = (update.packet_id, update.direction)
        if self.current is not None and self.current != key:
            click.echo("", err=True)
        self.current = key
        total = max(update.total, 1)
        filled = int(30 * update.done / total)
        arrow = "->" if update.direction == "sent" else "<-"
        line = (
            f"\r{arrow} {update.name[:24]:<24} [{'#' * filled}{'.' * (30 - filled)}] "
            f"{100 * update.done // total:3d}% {format_size(update.done)} of "
            f"{format_size(update.total)}"
        )
        click.echo(line, err=True, nl=False)
        if update.done >= update.total:
            click.echo("", err=True)
            self.current = None


def report_summary(summary: SyncSummary, as_json: bool) -> None:
    """Print one session's summary (with `as_json`, one JSON object on one line of stdout:
    a listener's sessions make JSON Lines). A session that ended before the peer proved
    who it is moved nothing: its error alone is said (by the caller), no counts."""
    if as_json:
        click.echo(json.dumps(summary.to_dict(), default=str))
        sys.stdout.flush()
        return
    if summary.error and not summary.peer_id and not summary.packets:
        return
    if summary.peer_id:
        click.echo(
            f"Peer {summary.peer_name or '?'} ({summary.peer_id}) at {summary.peer_label}: "
            f"{summary.peer_trust}, code {summary.sas}"
        )
    if summary.peer_trust == "pending":
        click.echo(
            f"  This peer is pending: if both devices show the code {summary.sas}, run "
            f"`fieldkit trust {summary.peer_id}` to accept its packets. It takes this "
            "device's packets only once it trusts this device the same way."
        )
    for p in summary.packets:
        extra = f" (resumed from {format_size(p.resumed_from)})" if p.resumed_from else ""
        why = f": {p.reason}" if p.reason else ""
        wire = f" {format_size(p.wire_bytes)} on the wire" if p.wire_bytes else ""
        click.echo(f"  {p.direction:<8} {p.status:<7} {p.name[:32]:<32}{wire}{extra}{why}")
    declined = f", declined by the peer {summary.declined}" if summary.declined else ""
    click.echo(
        f"Sent {summary.count('sent', 'ok')}, received {summary.count('received', 'ok')}, "
        f"refused {summary.refused}{declined}, "
        f"failed {sum(p.status == 'failed' for p in summary.packets)}."
    )
    sys.stdout.flush()


class SessionLog:
    """Reports a listener's sessions: each summary, and one line on stderr per failed session
    naming the peer's address and the reason. `error` is the failure of the session that
    ends a `once` listener (the one whose peer proved who it is), raised by `raise_if_failed`."""

    def __init__(self, as_json: bool, once: bool) -> None:
        self.as_json = as_json
        self.once = once
        self.error: str | None = None

    def __call__(self, summary: SyncSummary) -> None:
        report_summary(summary, self.as_json)
        if summary.ok:
            return
        reason = shown_text(summary.error or "Some packets failed to transfer.")
        named = summary.peer_label in reason  # "The link to HOST:PORT closed ..." names it
        error = f"The session{'' if named else f' with {summary.peer_label}'} failed: {reason}"
        if self.once and summary.peer_id:
            self.error = error  # this session ends the listener: the command exits with it
        else:
            click.echo(f"fieldkit: {error}", err=True)

    def refused(self, message: str) -> None:
        click.echo(f"fieldkit: {message}", err=True)

    def peer(self, summary: SyncSummary) -> None:
        """Show the pairing code of a peer not trusted yet as soon as it has proved who it
        is: the person at the other device is asked to compare it during the session."""
        if summary.peer_trust == "trusted":
            return
        who = f"{shown_text(summary.peer_name or 'A device')} ({summary.peer_id})"
        click.echo(
            f"{who} connected ({summary.peer_trust}): the code is {summary.sas}; the other "
            "device shows the same one if nothing stands between the two.",
            err=True,
        )

    def raise_if_failed(self) -> None:
        if self.once and self.error:
            raise SyncError(self.error)
