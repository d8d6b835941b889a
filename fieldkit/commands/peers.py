"""`fieldkit peers`, `fieldkit trust` and `fieldkit block`: who this device syncs with."""

from __future__ import annotations

import time

import click

from fieldkit.commands import emit_json, services
from fieldkit.commands.complete import peer_ids
from fieldkit.store.settings import RECEIVE_POLICIES as POLICIES
from fieldkit.store.settings import RECEIVE_POLICY_SETTING as POLICY_SETTING


@click.group("peers", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--ble", is_flag=True, help="Scan for fieldkit peers in Bluetooth LE range.")
@click.option("--hci", default=None, metavar="SPEC", help="With --ble: a bumble HCI transport.")
@click.option(
    "--discover", is_flag=True, help="Look for fieldkit peers announced on the LAN (mDNS)."
)
@click.option(
    "--interface",
    "interfaces",
    multiple=True,
    metavar="ADDRESS",
    help="With --discover: browse only on the interface with this address (repeatable).",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Scan time (default: 5 with --ble, 3 with --discover).",
)
@click.pass_context
def peers(
    ctx: click.Context,
    as_json: bool,
    ble: bool = False,
    hci: str | None = None,
    seconds: float | None = None,
    discover: bool = False,
    interfaces: tuple[str, ...] = (),
) -> None:
    """List known peers with their trust state (or the peers in range with --ble or --discover)."""
    if ctx.invoked_subcommand is not None:
        return
    if interfaces and not discover:
        raise click.UsageError("--interface goes with --discover.")
    if discover:
        if ble or hci:
            raise click.UsageError("Use either --discover (LAN) or --ble, not both.")
        _discover(seconds or 3.0, list(interfaces) or None, as_json)
        return
    seconds = seconds or 5.0
    if ble or hci:
        from fieldkit.commands import sync_ble

        if not ble:
            raise click.UsageError("--hci goes with --ble.")
        sync_ble.run_scan(services(), hci=hci, seconds=seconds, as_json=as_json)
        return
    library = services().library
    rows = [
        {
            "id": p.peer_id,
            "name": p.name,
            "trust": p.trust,
            "key_pinned": p.public_key is not None,
            "address": p.address,
            "last_seen": p.last_seen,
        }
        for p in library.list_peers()
    ]
    if as_json:
        emit_json({"policy": library.receive_policy(), "peers": rows})
        return
    if not rows:
        click.echo("No peers yet. Run `fieldkit sync HOST:PORT` or `fieldkit trust PEER_ID`.")
        return
    for row in rows:
        seen = (
            time.strftime("%Y-%m-%d %H:%M", time.localtime(row["last_seen"]))
            if row["last_seen"]
            else "never met"
        )
        click.echo(f"{row['id']}  {row['trust']:<8} {(row['name'] or '-')[:20]:<20} {seen}")


def _discover(seconds: float, interfaces: list[str] | None, as_json: bool) -> None:
    """Browse the LAN for `seconds` and list the peers announced, with their trust state."""
    import asyncio

    from fieldkit.gossip.lan import configured_interfaces, discover

    svc = services()
    interfaces = interfaces or configured_interfaces(svc.library)
    found = asyncio.run(discover(seconds, svc.identity.device_id, interfaces))
    rows = []
    for peer in found:
        known = svc.library.get_peer(peer.device_id)
        rows.append({**peer.to_dict(), "trust": known.trust if known else "unknown"})
    if as_json:
        emit_json({"seconds": seconds, "peers": rows})
        return
    if not rows:
        click.echo(f"No fieldkit peers announced on the LAN in {seconds:g} s.")
        return
    for row in rows:
        click.echo(f"{row['id']}  {row['trust']:<8} {row['name'][:20]:<20} {row['address']}")
    click.echo("Sync with one: `fieldkit sync ADDRESS`.")


@peers.command("policy")
@click.argument("policy", required=False, type=click.Choice(POLICIES))
def policy_command(policy: str | None) -> None:
    """Show or set the receive policy: trusted-only (default), ask or open."""
    library = services().library
    if policy is not None:
        library.set_setting(POLICY_SETTING, policy)
    click.echo(f"Receive policy: {library.receive_policy()}")


@peers.command("forget")
@click.argument("peer_id", shell_complete=peer_ids)
def forget_command(peer_id: str) -> None:
    """Forget a peer (a mistyped id, a device given away): its trust, name and pinned key
    go, and it is a stranger again. Forgetting a blocked peer lifts the block."""
    peer = services().library.forget_peer(peer_id)
    lifted = " Its block is lifted." if peer.trust == "blocked" else ""
    click.echo(f"Forgot peer {peer.peer_id}{f' ({peer.name})' if peer.name else ''}.{lifted}")


@peers.command("lan")
@click.argument("addresses", nargs=-1, metavar="[ADDRESS]...")
@click.option("--all", "use_all", is_flag=True, help="Browse on every interface (the default).")
def lan_command(addresses: tuple[str, ...], use_all: bool) -> None:
    """Show or set the interfaces (by address) that LAN discovery browses on."""
    from fieldkit.gossip.lan import INTERFACES_SETTING, check_interfaces, configured_interfaces
    from fieldkit.gossip.lan_peers import machine_addresses

    if addresses and use_all:
        raise click.UsageError("Give addresses or --all, not both.")
    library = services().library
    if use_all:
        library.set_setting(INTERFACES_SETTING, None)
    elif addresses:
        checked = check_interfaces(addresses)
        library.set_setting(INTERFACES_SETTING, checked)
        present = machine_addresses()
        for address in (a for a in checked if a not in present):
            click.echo(
                f"fieldkit: No interface of this machine has {address} now; discovery browses "
                "on it once one has.",
                err=True,
            )
    chosen = configured_interfaces(library)
    click.echo(f"LAN discovery browses on: {', '.join(chosen) if chosen else 'every interface'}.")


@click.command("trust")
@click.argument("peer_id", shell_complete=peer_ids)
def trust_command(peer_id: str) -> None:
    """Trust a peer by id (works before the first contact): accept its packets."""
    peer = services().library.set_trust(peer_id, "trusted")
    click.echo(f"Peer {peer.peer_id} is trusted.")


@click.command("block")
@click.argument("peer_id", shell_complete=peer_ids)
def block_command(peer_id: str) -> None:
    """Block a peer by id: refuse every session with it, and quarantine every packet it
    authored, and copies others re-signed (same weights or lineage): never used to answer,
    never admitted from any relay, until it is trusted again."""
    peer = services().library.set_trust(peer_id, "blocked")
    click.echo(f"Peer {peer.peer_id} is blocked.")
