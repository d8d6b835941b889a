"""`fieldkit sync --ble` and `fieldkit peers --ble`: the Bluetooth LE side of those commands.

Progress, summary and exit codes are the TCP sync's (fieldkit/commands/report.py). Without
--hci, a running agent of this home holds the radio (fieldkit/server/radio.py): connecting,
listening and scanning then run there, and print here what they would print on this
process's own radio.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import click

from fieldkit.commands import emit_json
from fieldkit.commands.report import SessionLog, SyncError, report_summary

if TYPE_CHECKING:
    from fieldkit.gossip.summary import (
        ConfirmCallback,
        ProgressCallback,
        SyncOptions,
        SyncSummary,
    )
    from fieldkit.server.client import AgentClient
    from fieldkit.services import Services


def quiet_bluetooth_logs() -> None:
    """Bumble logs every packet for a dropped link at WARNING; the summary says it once."""
    logging.getLogger("bumble").setLevel(logging.CRITICAL)


def run_sync(
    svc: Services,
    *,
    listen: bool,
    once: bool,
    peer: str | None,
    hci: str | None,
    options: SyncOptions,
    progress: ProgressCallback | None,
    confirm: ConfirmCallback | None,
    as_json: bool,
    scan_seconds: float,
) -> None:
    """Run `fieldkit sync --ble`; raises SyncError (exit 1) if a session failed.

    Without --hci, a running agent of this home holds the radio: the session runs there
    and prints here what it would print on this process's own radio.
    """
    if listen and peer:
        raise click.UsageError("--peer picks whom to connect to; it cannot go with --listen.")
    agent = _agent(svc, hci)
    quiet_bluetooth_logs()
    if listen:
        log = SessionLog(as_json, once)
        asyncio.run(_listen(svc, agent, hci, once, options, log, progress, confirm, as_json))
        log.raise_if_failed()
        return
    summary = asyncio.run(_connect(svc, agent, hci, peer, options, progress, confirm, scan_seconds))
    report_summary(summary, as_json)
    if not summary.ok:
        raise SyncError(summary.error or "Some packets failed to transfer.")


def _agent(svc: Services, hci: str | None) -> AgentClient | None:
    """Return the running agent of this home when it should hold the radio (no --hci)."""
    from fieldkit.server.client import find_agent, use_agent

    return find_agent(svc.home) if hci is None and use_agent() else None


async def _connect(svc, agent, hci, peer, options, progress, confirm, scan_seconds) -> SyncSummary:  # noqa: ANN001
    from fieldkit.gossip.ble.sync import open_radio
    from fieldkit.gossip.sync import sync_ble

    if agent is not None:
        return await agent.sync(options, peer, progress, confirm, scan_seconds)
    identity = svc.identity
    async with open_radio(identity.device_id, identity.name, hci) as radio:
        return await sync_ble(radio, svc, options, peer, progress, confirm, scan_seconds)


async def _listen(svc, agent, hci, once, options, log, progress, confirm, as_json) -> None:  # noqa: ANN001
    """Advertise and serve sessions (on the agent's radio when `agent` is given)."""
    from fieldkit.gossip.ble.sync import open_radio
    from fieldkit.gossip.sync import serve_ble

    identity = svc.identity

    def on_ready() -> None:
        where = " on the agent's radio" if agent else f" on {hci}" if hci else ""
        click.echo(
            f"Advertising over Bluetooth LE{where} as {identity.name} ({identity.device_id}).",
            err=as_json,
        )

    if agent is not None:
        await agent.listen(options, once, log, progress, confirm, on_ready, log.peer)
        return
    async with open_radio(identity.device_id, identity.name, hci) as radio:
        await serve_ble(
            radio, svc, options, once, log, progress, confirm, on_ready=on_ready, on_peer=log.peer
        )


def run_scan(svc: Services, *, hci: str | None, seconds: float, as_json: bool) -> None:
    """Run `fieldkit peers --ble`: list fieldkit peers in range (name, id, RSSI)."""
    from fieldkit.gossip.ble.sync import open_radio

    agent = _agent(svc, hci)  # the agent of this home holds the radio
    quiet_bluetooth_logs()
    identity = svc.identity

    async def scan():  # noqa: ANN202
        if agent is not None:
            return await agent.scan(seconds)
        async with open_radio(identity.device_id, identity.name, hci) as radio:
            return await radio.scan(seconds)

    sightings = asyncio.run(scan())
    known = {p.peer_id[:8]: p for p in svc.library.list_peers()}
    rows = []
    for s in sightings:
        peer = known.get(s.short_id)
        rows.append(
            {
                "name": s.name or (peer.name if peer else "") or "",
                "id": peer.peer_id if peer else s.short_id,
                "rssi": s.rssi,
                "address": s.address,
                "trust": peer.trust if peer else "unknown",
                "version": s.version,
            }
        )
    if as_json:
        emit_json({"peers": rows})
        return
    if not rows:
        click.echo(f"No fieldkit peers in Bluetooth LE range ({seconds:g} s scan).")
        return
    for row in rows:
        click.echo(
            f"{row['id']:<16}  {row['rssi']:>4} dBm  {row['trust']:<8} {row['name'] or '-':<20} "
            f"{row['address']}"
        )
