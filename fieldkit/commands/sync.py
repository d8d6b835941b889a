"""`fieldkit sync`: exchange packets with a peer over TCP (connect, or listen)."""

from __future__ import annotations

import asyncio
import sys

import click

from fieldkit.commands import Seconds, hci_option, listen_options, services
from fieldkit.commands.report import (
    ProgressBars,
    SessionLog,
    SyncError,
    ask_trust,
    report_summary,
)
from fieldkit.errors import FieldkitError
from fieldkit.gossip.summary import SyncOptions, SyncSummary
from fieldkit.gossip.tcp import DEFAULT_PORT


@click.command("sync")
@click.argument("address", required=False, metavar="HOST:PORT")
@click.option("--listen", is_flag=True, help="Wait for peers instead of connecting.")
@listen_options("Address to listen on.", DEFAULT_PORT, "Port to listen on (0: any free port).")
@click.option(
    "--once",
    is_flag=True,
    help="With --listen: stop after the first session with a peer that proves who it is "
    "(a stranger's failed handshake does not count).",
)
@click.option(
    "--advertise/--no-advertise",
    default=None,
    help="With --listen: announce this device on the LAN (mDNS) so peers find it "
    "[default: on, unless --host is a loopback address].",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print each session's summary as one line of JSON (a listener: one line a session).",
)
@click.option(
    "--accept-pending",
    is_flag=True,
    help="Under the `ask` policy without a person to ask, accept packets from pending peers.",
)
@click.option(
    "--idle-timeout",
    type=Seconds(),
    default=60.0,
    show_default=True,
    help="Seconds without progress (a peer's keepalives are none) before the session ends.",
)
@click.option("--ble", is_flag=True, help="Sync over Bluetooth LE instead of TCP.")
@click.option(
    "--peer", "peer", default=None, metavar="ID", help="With --ble: the peer to sync with."
)
@hci_option("With --ble")
@click.option(
    "--scan-seconds",
    type=Seconds(0.5, 3600),
    default=10.0,
    show_default=True,
    help="With --ble: scan time.",
)
def sync_command(
    address: str | None,
    listen: bool,
    host: str,
    port: int,
    once: bool,
    as_json: bool,
    accept_pending: bool,
    idle_timeout: float,
    ble: bool = False,
    peer: str | None = None,
    hci: str | None = None,
    scan_seconds: float = 10.0,
    advertise: bool | None = None,
) -> None:
    """Sync packets with a peer: `fieldkit sync HOST:PORT` or `fieldkit sync --listen`.

    Over Bluetooth LE: `fieldkit sync --ble [--peer ID]` or `fieldkit sync --ble --listen`;
    without --hci, a running `fieldkit serve` of this home lends its radio.
    """
    if once and not listen:
        raise click.UsageError("--once goes with --listen.")
    svc = services()
    options = SyncOptions(accept_pending=accept_pending, idle_timeout=idle_timeout)
    interactive = not as_json and sys.stdin.isatty() and sys.stderr.isatty()
    bars = ProgressBars() if not as_json and sys.stderr.isatty() else None
    confirm = ask_trust if interactive else None
    progress = bars.update if bars else None
    if ble or peer or hci:
        from fieldkit.commands import sync_ble

        if address or not ble:
            raise click.UsageError("--peer and --hci go with --ble, which takes no HOST:PORT.")
        if advertise is not None:
            raise click.UsageError("--advertise and --no-advertise go with a TCP --listen.")
        sync_ble.run_sync(
            svc,
            listen=listen,
            once=once,
            peer=peer,
            hci=hci,
            options=options,
            progress=progress,
            confirm=confirm,
            as_json=as_json,
            scan_seconds=scan_seconds,
        )
        return
    if listen == bool(address):
        raise click.UsageError("Give either HOST:PORT or --listen.")
    if advertise is not None and not listen:
        raise click.UsageError("--advertise and --no-advertise go with --listen.")
    if address:
        target_host, target_port = _parse_target(address)
        try:
            summary = asyncio.run(
                _connect(svc, target_host, target_port, options, progress, confirm)
            )
        except FieldkitError as exc:  # no session at all (nobody listens): --json says so too
            if as_json:
                report_summary(SyncSummary(peer_label=address, error=str(exc)), as_json)
            raise
        report_summary(summary, as_json)
        if not summary.ok:
            raise SyncError(summary.error or "Some packets failed to transfer.")
        return
    asyncio.run(_listen(svc, host, port, once, options, progress, confirm, as_json, advertise))


def _parse_target(address: str) -> tuple[str, int]:
    """Return (host, port) of HOST:PORT; a usage error when the port is missing or bad."""
    from fieldkit.errors import TransportError
    from fieldkit.formats import parse_address

    if ":" not in address:
        raise click.BadParameter(f"{address[:60]!r} is not HOST:PORT.", param_hint="HOST:PORT")
    try:
        return parse_address(address, DEFAULT_PORT)
    except TransportError as exc:
        raise click.BadParameter(str(exc), param_hint="HOST:PORT") from None


async def _connect(svc, host, port, options, progress, confirm) -> SyncSummary:  # noqa: ANN001
    from fieldkit.gossip.sync import sync_with

    return await sync_with(host, port, svc, options, progress, confirm)


async def _listen(svc, host, port, once, options, progress, confirm, as_json, advertise) -> None:  # noqa: ANN001
    """Serve sessions until closed (or after the first authenticated one with `once`).

    The listener is announced on the LAN when `advertise` is True, or when it is None and
    the host is not a loopback address. A failed announcement ends the command only when it
    was asked for; otherwise the listener goes on with a warning. Raises SyncError when the
    `once` session failed.
    """
    from fieldkit.gossip.sync import start_listener

    log = SessionLog(as_json, once)
    listener = await start_listener(
        svc, host, port, options, once, log, progress, confirm, on_refused=log.refused,
        on_peer=log.peer,
    )  # fmt: skip
    identity = svc.identity
    click.echo(
        f"Listening on {host}:{listener.port} as {identity.name} ({identity.device_id}).",
        err=as_json,
    )
    sys.stdout.flush()
    try:
        advertiser = await _advertise(identity, host, listener.port, advertise, as_json)
        try:
            await listener.wait()
        finally:
            if advertiser is not None:
                await advertiser.stop()
    finally:
        await listener.close()
    log.raise_if_failed()


async def _advertise(identity, host: str, port: int, advertise: bool | None, as_json: bool):  # noqa: ANN001, ANN202
    """Announce the listener on the LAN if asked (or by default); return the advertiser."""
    from fieldkit.gossip.lan import LanAdvertiser, advertise_by_default

    if advertise is False or (advertise is None and not advertise_by_default(host)):
        return None
    advertiser = LanAdvertiser(identity.device_id, identity.name, port, host=host)
    try:
        await advertiser.start()
    except FieldkitError as exc:
        if advertise:
            raise
        click.echo(f"fieldkit: {exc} Peers can still sync with HOST:PORT.", err=True)
        return None
    addresses = ", ".join(advertiser.addresses)
    click.echo(f"Announced on the LAN at {addresses} (mDNS).", err=as_json)
    return advertiser
