"""`fieldkit id` and `fieldkit name`: this device's identity."""

from __future__ import annotations

import click

from fieldkit.commands import echo_fields, emit_json, services


@click.command("id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--new",
    "renew",
    is_flag=True,
    help="Give this device a new key and id (for a home copied from another device); "
    "peers that trusted the old id must trust the new one.",
)
def id_command(as_json: bool, renew: bool) -> None:
    """Show this device's id, name and public key fingerprint."""
    identity = services().identity
    if renew:
        old = identity.device_id
        identity = identity.renewed()
        click.echo(
            f"This device's id is now {identity.device_id} (it was {old}; the old key is "
            f"kept as device.key.{old}.old). Peers that trusted {old} must trust "
            f"{identity.device_id} now; restart `fieldkit serve` if it runs.",
            err=as_json,
        )
    data = {
        "id": identity.device_id,
        "name": identity.name,
        "fingerprint": identity.fingerprint,
        "public_key": identity.public_key.hex(),
        "home": str(services().home.root),
    }
    if as_json:
        emit_json(data)
        return
    echo_fields([(key, data[key]) for key in ("id", "name", "fingerprint", "home")], 12)


@click.command("name")
@click.argument("new_name")
def name_command(new_name: str) -> None:
    """Set this device's human name (shown to peers)."""
    identity = services().identity.with_name(new_name)
    click.echo(f"This device is now called {identity.name!r}.")
