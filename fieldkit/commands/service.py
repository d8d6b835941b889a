"""`fieldkit service install|uninstall|status`: run `fieldkit serve` at login for this home."""

from __future__ import annotations

from typing import Any

import click

from fieldkit.commands import emit_json, services
from fieldkit.server import service_files

_KIND = click.option(
    "--kind",
    type=click.Choice(service_files.KINDS),
    default=None,
    help="launchd (macOS) or systemd (Linux) [default: this platform's].",
)


def _spec(kind: str | None) -> service_files.ServiceSpec:
    svc = services()
    return service_files.service_spec(svc.home, svc.model_override, kind)


@click.group("service")
def service() -> None:
    """Start the agent (`fieldkit serve`) at login, with logs where the platform keeps them."""


@service.command("install")
@_KIND
@click.option("--no-start", is_flag=True, help="Write the file only; start it at next login.")
def install_command(kind: str | None, no_start: bool) -> None:
    """Write the LaunchAgent or user unit for this home and start it."""
    services().require_model()
    spec = _spec(kind)
    service_files.install(spec, start=not no_start)
    click.echo(f"Installed {spec.path}.")
    if spec.log_path is not None:
        click.echo(f"Logs: {spec.log_path}")
    else:
        click.echo(f"Logs: journalctl --user -u {spec.path.name}")


@service.command("uninstall")
@_KIND
def uninstall_command(kind: str | None) -> None:
    """Stop the agent's login service for this home and remove its file."""
    spec = _spec(kind)
    if service_files.uninstall(spec):
        click.echo(f"Removed {spec.path}.")
    else:
        click.echo(f"No service was installed at {spec.path}.")


@service.command("status")
@_KIND
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status_command(kind: str | None, as_json: bool) -> None:
    """Say whether the login service is installed and whether the agent answers."""
    from fieldkit.server.client import find_agent

    svc = services()
    spec = _spec(kind)
    installed = spec.path.exists()
    client = find_agent(svc.home)
    agent: dict[str, Any] | None = None
    if client is not None:
        health = client.get("/health")
        agent = {
            "pid": client.info.pid,
            "socket": client.info.socket,
            "url": client.info.url if client.info.port else None,
            "status": health["status"],
            "model": health["model"],
            "served": health["served"],
        }
    out = {
        "kind": spec.kind,
        "label": spec.label,
        "path": str(spec.path),
        "installed": installed,
        "manager": service_files.manager_state(spec) if installed else "not installed",
        "logs": str(spec.log_path) if spec.log_path else f"journalctl --user -u {spec.path.name}",
        "agent": agent,
    }
    if as_json:
        emit_json(out)
        return
    click.echo(
        f"Service: {spec.label} ({spec.kind}) {'installed' if installed else 'not installed'}"
    )
    click.echo(f"  file:    {spec.path}")
    click.echo(f"  manager: {out['manager']}")
    click.echo(f"  logs:    {out['logs']}")
    if agent is None:
        click.echo("Agent: not running for this home.")
    else:
        where = f"{agent['socket']}" + (f" and {agent['url']}" if agent["url"] else "")
        click.echo(
            f"Agent: {agent['status']}, process {agent['pid']}, on {where}, "
            f"model {agent['model']}, {agent['served']} answers served."
        )
