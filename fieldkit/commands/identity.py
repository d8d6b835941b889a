"""`fieldkit id` and `fieldkit name`: this device's identity."""

from __future__ import annotations

import click

from fieldkit.commands import echo_fields, emit_json, services


@click.command("id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def id_command(as_json: bool) -> None:
    """Show this device's id, name and public key fingerprint."""
    identity = services().identity
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
