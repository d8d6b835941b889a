"""`fieldkit sync`: exchange packets with a peer over TCP (connect, or listen)."""

from __future__ import annotations

import asyncio
import sys

import click

from fieldkit.commands import emit_json, services
from fieldkit.errors import FieldkitError
from fieldkit.gossip.summary import ProgressUpdate, SyncOptions, SyncSummary
from fieldkit.gossip.tcp import DEFAULT_PORT


class SyncError(FieldkitError):
    """A session ended early or a packet failed; the summary was printed already."""


@click.command("sync")
@click.argument("address", required=False, metavar="HOST:PORT")
@click.option("--listen", is_flag=True, help="Wait for peers instead of connecting.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option("--once", is_flag=True, help="With --listen: stop after the first session.")
@click.option(
    "--advertise/--no-advertise",
    default=None,
    help="With --listen: announce this device on the LAN (mDNS) so peers find it "
    "[default: on, unless --host is a loopback address].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option(
    "--accept-pending",
    is_flag=True,
    help="Under the `ask` policy without a person to ask, accept packets from pending peers.",
)
@click.option(
    "--idle-timeout", type=float, default=60.0, show_default=True, help="Seconds of silence."
)
@click.option("--ble", is_flag=True, help="Sync over Bluetooth LE instead of TCP.")
@click.option(
    "--peer", "peer", default=None, metavar="ID", help="With --ble: the peer to sync with."
)
@click.option(
    "--hci",
    default=None,
    metavar="SPEC",
    help="With --ble: a bumble HCI transport (usb:0, tcp-client:127.0.0.1:PORT) "
    "instead of the system Bluetooth stack.",
)
@click.option(
    "--scan-seconds", type=float, default=10.0, show_default=True, help="With --ble: scan time."
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

    Over Bluetooth LE: `fieldkit sync --ble [--peer ID]` or `fieldkit sync --ble --listen`.
    """
    svc = services()
    options = SyncOptions(accept_pending=accept_pending, idle_timeout=idle_timeout)
    interactive = not as_json and sys.stdin.isatty() and sys.stderr.isatty()
    bars = _Bars() if not as_json and sys.stderr.isatty() else None
    confirm = _ask if interactive else None
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
        target_host, target_port = _parse_address(address)
        summary = asyncio.run(_connect(svc, target_host, target_port, options, progress, confirm))
        _report(summary, as_json)
        if not summary.ok:
            raise SyncError(summary.error or "Some packets failed to transfer.")
        return
    error = asyncio.run(
        _listen(svc, host, port, once, options, progress, confirm, as_json, advertise)
    )
    if error:
        raise SyncError(error)


def _parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{address!r} is not HOST:PORT.", param_hint="HOST:PORT")
    return host.strip("[]"), int(port)


async def _connect(svc, host, port, options, progress, confirm) -> SyncSummary:  # noqa: ANN001
    from fieldkit.gossip.tcp import sync_with

    return await sync_with(host, port, svc, options, progress, confirm)


async def _listen(
    svc, host, port, once, options, progress, confirm, as_json, advertise
) -> str | None:  # noqa: ANN001
    """Serve sessions; return the error of the last failed one (None if all went well).

    The listener is announced on the LAN when `advertise` is True, or when it is None and
    the host is not a loopback address. A failed announcement ends the command only when it
    was asked for; otherwise the listener goes on with a warning.
    """
    from fieldkit.gossip.tcp import start_listener

    error: str | None = None

    def on_summary(summary: SyncSummary) -> None:
        nonlocal error
        if not summary.ok:
            error = summary.error or "Some packets failed to transfer."
        _report(summary, as_json)
        if summary.error and not once:
            click.echo(f"fieldkit: {summary.error}", err=True)

    listener = await start_listener(svc, host, port, options, once, on_summary, progress, confirm)
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
    return error if once else None


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


async def _ask(peer_id: str, name: str, sas: str) -> bool:
    question = (
        f"{name or 'A new device'} ({peer_id}) wants to send packets. Does it show the code "
        f"{sas}? Trust it"
    )
    return await asyncio.to_thread(click.confirm, question, default=False, err=True)


class _Bars:
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
            f"{100 * update.done // total:3d}% {_size(update.done)} of {_size(update.total)}"
        )
        click.echo(line, err=True, nl=False)
        if update.done >= update.total:
            click.echo("", err=True)
            self.current = None


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MiB"


def _report(summary: SyncSummary, as_json: bool) -> None:
    if as_json:
        emit_json(summary.to_dict())
        sys.stdout.flush()
        return
    if summary.peer_id:
        click.echo(
            f"Peer {summary.peer_name or '?'} ({summary.peer_id}) at {summary.peer_label}: "
            f"{summary.peer_trust}, code {summary.sas}"
        )
    if summary.peer_trust == "pending":
        click.echo(
            f"  This peer is pending: if both devices show the code {summary.sas}, run "
            f"`fieldkit trust {summary.peer_id}` to accept its packets."
        )
    for p in summary.packets:
        extra = f" (resumed from {_size(p.resumed_from)})" if p.resumed_from else ""
        why = f": {p.reason}" if p.reason else ""
        wire = f" {_size(p.wire_bytes)} on the wire" if p.wire_bytes else ""
        click.echo(f"  {p.direction:<8} {p.status:<7} {p.name[:32]:<32}{wire}{extra}{why}")
    click.echo(
        f"Sent {summary.count('sent', 'ok')}, received {summary.count('received', 'ok')}, "
        f"refused {sum(p.status == 'refused' for p in summary.packets)}, "
        f"failed {sum(p.status == 'failed' for p in summary.packets)}."
    )
    sys.stdout.flush()
