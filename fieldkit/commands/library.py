"""`fieldkit library ...`: list, show, import, export, verify and remove packets."""

from __future__ import annotations

import os
from importlib import import_module
from pathlib import Path
from typing import Any

import click

from fieldkit.commands import emit_json, services
from fieldkit.errors import PacketError
from fieldkit.formats import format_size
from fieldkit.store.library import PacketRecord


def packet_summary(record: PacketRecord, base_fingerprint: str | None) -> dict[str, Any]:
    """Return the JSON form of a packet used by `library list` and `library show`."""
    return {
        "name": record.name,
        "domain": record.domain,
        "packet_id": record.packet_id,
        "sha256": record.sha256,
        "size": record.size,
        "author": record.author_id,
        "author_name": record.author_name,
        "verified": record.verified,
        "source": record.source,
        "base_model_id": record.base_model_id,
        "base_match": None
        if base_fingerprint is None
        else record.base_fingerprint == base_fingerprint,
        "merged": record.merged,
        "rank": record.adapter.rank,
        "received_at": record.received_at,
    }


@click.group("library")
def library() -> None:
    """The packets on this device."""


@library.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(as_json: bool) -> None:
    """List every packet."""
    svc = services()
    base = svc.base_fingerprint
    rows = [packet_summary(r, base) for r in svc.library.list_packets()]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("The library is empty. Import a packet with `fieldkit library import PATH`.")
        return
    click.echo(f"{'NAME':<20} {'DOMAIN':<16} {'SIZE':>9}  {'STATE':<10} {'SOURCE':<16} AUTHOR")
    for row in rows:
        click.echo(
            f"{row['name'][:20]:<20} {row['domain'][:16]:<16} {format_size(row['size']):>9}  "
            f"{_state(row):<10} {row['source'][:16]:<16} {row['author_name'] or row['author']}"
        )


@library.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_command(name: str, as_json: bool) -> None:
    """Show one packet: manifest, exemplars, signature and base-model match."""
    svc = services()
    record = svc.library.get(name)
    data = packet_summary(record, svc.base_fingerprint)
    data.update(
        description=record.description,
        exemplars=record.exemplars,
        adapter=record.adapter.to_mlx_dict(),
        base_fingerprint=record.base_fingerprint,
        created=record.manifest["created"],
        chunk_size=record.manifest["chunk_size"],
        chunks=len(record.manifest["chunk_hashes"]),
        lineage=record.manifest["lineage"],
        signature=record.signature.hex(),
    )
    if as_json:
        emit_json(data)
        return
    for key in (
        "name",
        "domain",
        "description",
        "packet_id",
        "sha256",
        "size",
        "author",
        "author_name",
        "source",
        "base_model_id",
        "rank",
        "merged",
    ):
        click.echo(f"{key:<14} {data[key]}")
    click.echo(f"{'state':<14} {_state(data)}")
    click.echo(f"exemplars ({len(record.exemplars)}):")
    for question in record.exemplars:
        click.echo(f"  - {question}")


@library.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--name", help="Packet name (adapter folders).")
@click.option("--domain", help="Domain (adapter folders).")
@click.option("--description", help="One-sentence description (adapter folders).")
@click.option(
    "--exemplars",
    "exemplars_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Example questions: one per line, or .jsonl with question/instruction fields.",
)
@click.option(
    "--allow-foreign-base", is_flag=True, help="Keep a packet made for another base model."
)
def import_command(
    path: Path,
    name: str | None,
    domain: str | None,
    description: str | None,
    exemplars_file: Path | None,
    allow_foreign_base: bool,
) -> None:
    """Import a packet file, or an mlx-lm / PEFT adapter folder (signed by this device)."""
    svc = services()
    if path.is_dir():
        record = _import_folder(svc, path, name, domain, description, exemplars_file)
    else:
        from fieldkit.store.packet import read_packet_file

        packet = read_packet_file(path)
        expected = None if allow_foreign_base else svc.base_fingerprint
        if svc.library.has(_packet_id(packet.manifest)):
            click.echo(f"Packet {packet.manifest['name']!r} is already in the library.")
            return
        record = svc.library.add(
            packet.manifest, packet.signature, packet.weights, source="file", expected_base=expected
        )
    click.echo(
        f"Imported {record.name!r} ({record.domain}, {format_size(record.size)}, id {record.short_id})."
    )


@library.command("export")
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
def export_command(name: str, output: Path) -> None:
    """Write a packet to one file (for a USB stick)."""
    from fieldkit.store.packet import write_packet_file

    svc = services()
    record = svc.library.get(name)
    weights = svc.library.read_weights(record)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as out:
            write_packet_file(out, record.manifest, record.signature, weights)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise PacketError(f"Cannot write {output} ({exc.strerror}).") from exc
    click.echo(f"Exported {record.name!r} to {output} ({format_size(output.stat().st_size)}).")


@library.command("verify")
@click.argument("name", required=False)
def verify_command(name: str | None) -> None:
    """Re-check signatures and weights of one packet or all of them."""
    svc = services()
    names = [name] if name else [r.packet_id for r in svc.library.list_packets()]
    failed = 0
    for item in names:
        record, problem = svc.library.verify(item)
        click.echo(f"{record.name:<24} {'ok' if problem is None else 'FAILED: ' + problem}")
        failed += problem is not None
    if failed:
        raise click.exceptions.Exit(1)


@library.command("reissue")
@click.argument("name")
@click.option(
    "--exemplars",
    "exemplars_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="New example questions: one per line, or .jsonl with question/instruction fields.",
)
@click.option("--description", help="New one-sentence description.")
@click.option("--as", "new_name", help="Name of the new version (needed for another's packet).")
def reissue_command(
    name: str, exemplars_file: Path | None, description: str | None, new_name: str | None
) -> None:
    """Sign a new version of a packet with new exemplars or description, same weights."""
    from fieldkit.store.importers import read_questions

    if exemplars_file is None and description is None and new_name is None:
        raise click.UsageError("Give --exemplars, --description or --as.")
    exemplars = read_questions(exemplars_file) if exemplars_file is not None else None
    svc = services()
    old = svc.library.get(name)
    record = svc.library.reissue(
        old.packet_id, exemplars=exemplars, description=description, name=new_name
    )
    click.echo(
        f"Reissued {old.name!r} as {record.name!r} (id {record.short_id}, "
        f"{len(record.exemplars)} exemplars, signed by this device)."
    )


@library.command("remove")
@click.argument("name")
def remove_command(name: str) -> None:
    """Remove a packet from the library."""
    record = services().library.remove(name)
    click.echo(f"Removed {record.name!r}.")


def _import_folder(svc: Any, path: Path, name, domain, description, exemplars_file) -> PacketRecord:
    from fieldkit.store.importers import check_fits_model, read_adapter_folder, read_packet_info

    info = read_packet_info(path, name, domain, description, exemplars_file)
    adapter, _kind = read_adapter_folder(path)
    model_id, fingerprint, config = svc.require_model()
    check_fits_model(adapter, config)
    return svc.library.add_local(
        adapter,
        name=info.name,
        domain=info.domain,
        description=info.description,
        exemplars=info.exemplars,
        base_model_id=model_id,
        base_fingerprint=fingerprint,
    )


def _packet_id(manifest: dict[str, Any]) -> str:
    from fieldkit.store.packet import packet_id

    return packet_id(manifest)


def _state(row: dict[str, Any]) -> str:
    if not row["verified"]:
        return "UNVERIFIED"
    if row["base_match"] is False:
        return "FOREIGN"
    return "merged" if row["merged"] else "verified"


library.add_command(import_module("fieldkit.commands.compact").compact_command)
