"""`fieldkit library ...`: list, show, import, export, verify and remove packets."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

import click

from fieldkit.commands import each_reported, echo_fields, emit_json, packet_io, services
from fieldkit.commands.complete import packet_names
from fieldkit.errors import LibraryError, PacketError
from fieldkit.formats import format_size
from fieldkit.store.exemplars import MAX_EXEMPLARS, MIN_EXEMPLARS
from fieldkit.store.importers import EXEMPLAR_FORMATS
from fieldkit.store.library import PacketRecord
from fieldkit.store.notes import notes_count
from fieldkit.store.usable import Blocked, PacketState, packet_state, shown_state

NOTES_HELP = (
    "Carry these source notes inside the signed packet: .jsonl Q&A records, "
    "or a text/markdown file split into passages."
)


def packet_summary(
    record: PacketRecord, base_fingerprint: str | None, blocked: Blocked
) -> dict[str, Any]:
    """Return the JSON form of a packet used by `library list` and `library show`; `state`
    is the one usable-packet rule's (store/usable.py): ok, unverified, blocked (its author
    is, or it copies a blocked author's packet), foreign base."""
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
        "notes": notes_count(record.manifest),
        "received_at": record.received_at,
        "state": packet_state(record, base_fingerprint, blocked).value,
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
    records = svc.library.list_packets()
    blocked = svc.library.blocked(records)
    rows = [packet_summary(r, base, blocked) for r in records]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("The library is empty. Import a packet with `fieldkit library import PATH`.")
        return
    # 80 columns: a device id (a peer as source, an author without a name) shows its first
    # 8 characters, a peer met by name its name, as the Library screen does, and long names
    # are cut; `library show` and --json give them whole.
    peers = svc.library.peer_names()
    click.echo(f"{'NAME':<16} {'DOMAIN':<13} {'SIZE':>9} {'STATE':<12} NOTES {'SOURCE':<8} AUTHOR")
    for row in rows:
        click.echo(
            f"{_fit(row['name'], 16):<16} {_fit(row['domain'], 13):<13} "
            f"{format_size(row['size']):>9} "
            f"{_state(row, base):<12} {row['notes'] or '-':>5} "
            f"{peers.get(row['source'], row['source'])[:8]:<8} "
            f"{row['author_name'][:11] if row['author_name'] else row['author'][:8]}"
        )


@library.command("show")
@click.argument("name", shell_complete=packet_names)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_command(name: str, as_json: bool) -> None:
    """Show one packet: manifest, exemplars, signature and base-model match."""
    svc = services()
    record, base = svc.library.get(name), svc.base_fingerprint
    data = packet_summary(record, base, svc.library.blocked())
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
    shown = ("name", "domain", "description", "packet_id", "sha256")
    author = f"{data['author_name']} ({data['author']})" if data["author_name"] else data["author"]
    rest = ("source", "base_model_id", "rank", "merged", "notes")
    echo_fields(
        [
            *((key, data[key]) for key in shown),
            ("size", f"{format_size(data['size'])} ({data['size']} bytes)"),
            ("author", author),
            *((key, _shown_value(data[key])) for key in rest),
            ("state", _state(data, base)),
        ],
        14,
    )
    click.echo(f"exemplars ({len(record.exemplars)}):")
    for question in record.exemplars:
        click.echo(f"  - {question}")


def _shown_value(value: object) -> object:
    """Return a field as `library show` prints it: yes/no for a flag (not True/False)."""
    return ("yes" if value else "no") if isinstance(value, bool) else value


@library.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--name", help="Packet name.")
@click.option("--domain", help="Domain.")
@click.option(
    "--description",
    callback=lambda ctx, param, value: _a_sentence(value),
    help="One-sentence description.",
)
@click.option(
    "--exemplars",
    "exemplars_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=f"{MIN_EXEMPLARS} to {MAX_EXEMPLARS} questions the packet answers well (the router "
    f"matches new questions against them), as {EXEMPLAR_FORMATS}.",
)
@click.option(
    "--allow-foreign-base", is_flag=True, help="Keep a packet made for another base model."
)
@click.option(
    "--notes",
    "notes_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=NOTES_HELP,
)
def import_command(
    paths: tuple[Path, ...],
    name: str | None,
    domain: str | None,
    description: str | None,
    exemplars_file: Path | None,
    allow_foreign_base: bool,
    notes_file: Path | None,
) -> None:
    """Import packet files, or an mlx-lm / PEFT adapter folder (signed by this device).

    Each PATH is a packet file (from `library export`; several at once, as in `library
    import /media/usb/*.fkpkt`: a bad or missing one is reported and the others still come
    in; a packet already here is left as it is, or repaired if its weights here are
    damaged), a folder of packet files (/media/usb: each of its .fkpkt files), or
    an adapter folder as `mlx_lm lora` writes it (adapters.safetensors +
    adapter_config.json) or as PEFT's save_pretrained writes it (adapter_model.safetensors
    + adapter_config.json), for the base model in use. A folder needs --name, --domain and
    --exemplars, or a packet.json beside the adapter with name, domain, description and
    exemplars. LoRA only: DoRA, trained biases, saved modules and initialisations that
    change the base model (PiSSA, OLoRA, CorDA, LoftQ) are refused with the reason.

    A packet file given with --name, --domain, --description, --exemplars or --notes comes
    in signed again by this device with those, same weights (its id joins the lineage)."""
    from fieldkit.store.notes import read_notes_file

    paths = tuple(packet_io.import_paths(paths))  # a folder of packet files: each of them
    per_packet = (name, domain, description, exemplars_file, notes_file)
    if len(paths) > 1 and any(option is not None for option in per_packet):
        raise click.UsageError(
            "--name, --domain, --description, --exemplars and --notes describe one packet: "
            "give them with one PATH."
        )
    notes = read_notes_file(notes_file) if notes_file is not None else None
    svc = services()
    came_in: list[Path] = []

    def one(path: Path) -> None:
        packet_io.import_one(
            svc, path, name, domain, description, exemplars_file, notes, allow_foreign_base
        )
        came_in.append(path)

    try:
        each_reported(paths, str, one, "imported")
    finally:
        if came_in and not svc.model_installed and not allow_foreign_base:
            _no_model_note(svc)


def _no_model_note(svc: Any) -> None:
    """Say on stderr that packets imported with the base model in use not installed here
    could not be checked against it."""
    from fieldkit.engine.convert import installed_models

    others = installed_models(svc.home.models_dir)
    hint = (
        f"`fieldkit model use NAME`; installed: {', '.join(others)}"
        if others
        else "`fieldkit model install-default`"
    )
    click.echo(
        f"The base model {svc.model_dir.name} is not installed here, so a packet's base "
        f"model is not checked yet; it shows NO MODEL until one is ({hint}).",
        err=True,
    )


def _a_sentence(value: str | None) -> str | None:
    """Refuse an empty --description, which would leave a packet described by nothing."""
    if value is not None and not value.strip():
        raise click.BadParameter("is empty; give a sentence, or leave the option out.")
    return value


def _output_path(ctx: click.Context, param: click.Parameter, value: str) -> Path:
    """Refuse an empty -o, which would silently mean the working directory."""
    if not value.strip():
        raise click.BadParameter("is empty; name a file or a folder.")
    return Path(value)


@library.command("export")
@click.argument("names", nargs=-1, shell_complete=packet_names)
@click.option(
    "-o",
    "--output",
    type=click.Path(),
    callback=_output_path,
    required=True,
    help="The file to write (packet), or a new folder (mlx-lm, peft); for several packets "
    "or --all, the folder their NAME.fkpkt files go in (made if need be).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["packet", "mlx-lm", "peft"]),
    default="packet",
    show_default=True,
    help="packet: one signed file for another fieldkit device (a USB stick); mlx-lm: a "
    "folder for `mlx_lm.generate --adapter-path`; peft: a folder for PeftModel.from_pretrained.",
)
@click.option("--all", "every", is_flag=True, help="Every packet in the library.")
@click.option("--force", is_flag=True, help="Replace packet files that exist.")
def export_command(
    names: tuple[str, ...], output: Path, fmt: str, every: bool, force: bool
) -> None:
    """Write a packet to one file (NAME.fkpkt in -o if it is a folder), or its adapter to a
    folder mlx-lm or PEFT loads; or several packets (NAMES, or --all) to a folder, one
    NAME.fkpkt file each.

    A damaged packet is not exported: its weights are checked as `library verify` does.
    Among several, it is reported and the others are still written."""
    if every == bool(names):
        raise click.UsageError("Name the packets to export, or give --all; not both.")
    svc = services()
    if fmt != "packet":  # the adapter is read with its weights checked (load_adapter)
        if every or len(names) > 1:
            raise click.UsageError("mlx-lm and peft folders are written one packet at a time.")
        if output.suffix.lower() == ".fkpkt":
            raise click.UsageError(
                f"{output} names a packet file; --format {fmt} writes a folder: give a name "
                "without .fkpkt."
            )
        packet_io.export_folder(svc, svc.library.get(names[0]), output, fmt)
        return
    records = svc.library.list_packets() if every else [svc.library.get(n) for n in names]
    records = list({r.packet_id: r for r in records}.values())  # a name given twice: once
    if not records:
        click.echo("The library is empty; nothing to export.")
        return
    if every or len(records) > 1:
        if output.exists() and not output.is_dir():
            raise PacketError(f"{output} is a file; several packets are written to a folder.")
        if not output.is_dir() and output.suffix.lower() == ".fkpkt":
            raise click.UsageError(
                f"{output} names a packet file; several packets go to a folder: give a "
                "name without .fkpkt."
            )
        output.mkdir(parents=True, exist_ok=True)
    each_reported(
        records,
        lambda record: record.name,
        lambda record: packet_io.export_one(svc, record, output, force),
        "exported",
    )


@library.command("verify")
@click.argument("name", required=False, shell_complete=packet_names)
def verify_command(name: str | None) -> None:
    """Re-check signatures and weights of one packet or all of them."""
    svc = services()
    names = [name] if name else [r.packet_id for r in svc.library.list_packets()]
    failed = 0
    for item in names:
        try:
            record, problem = svc.library.verify(item)
        except LibraryError:
            if name:
                raise
            continue  # removed by another process while this one was checking
        click.echo(f"{record.name:<24} {'ok' if problem is None else 'FAILED: ' + problem}")
        failed += problem is not None
    if not name:
        cleaned = svc.library.collect_garbage()
        if any(cleaned.values()):
            click.echo(
                f"Cleaned up {cleaned['blobs']} unused weights file(s), {cleaned['parts']} "
                f"abandoned part file(s), {cleaned['peers']} stale pending peer(s)."
            )
    if failed:
        raise click.exceptions.Exit(1)


@library.command("gc")
def gc_command() -> None:
    """Remove weights no packet uses, part files of abandoned transfers (a week without
    progress, or an hour after their last write once their transfer is gone: a sync may
    still be writing one) and pending peers not seen for 30 days."""
    cleaned = services().library.collect_garbage()
    click.echo(
        f"Removed {cleaned['blobs']} unused weights file(s), {cleaned['parts']} part file(s), "
        f"{cleaned['peers']} pending peer(s)."
    )


@library.command("reissue")
@click.argument("name", shell_complete=packet_names)
@click.option(
    "--exemplars",
    "exemplars_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=f"{MIN_EXEMPLARS} to {MAX_EXEMPLARS} new example questions, as {EXEMPLAR_FORMATS}.",
)
@click.option(
    "--description",
    callback=lambda ctx, param, value: _a_sentence(value),
    help="New one-sentence description.",
)
@click.option("--as", "new_name", help="Name of the new version (needed for another's packet).")
@click.option(
    "--notes",
    "notes_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=NOTES_HELP,
)
@click.option("--no-notes", is_flag=True, help="Sign the new version without notes.")
def reissue_command(
    name: str,
    exemplars_file: Path | None,
    description: str | None,
    new_name: str | None,
    notes_file: Path | None,
    no_notes: bool,
) -> None:
    """Sign a new version of a packet with new exemplars, description or notes, same weights."""
    from fieldkit.store.importers import read_questions
    from fieldkit.store.notes import read_notes_file

    if notes_file is not None and no_notes:
        raise click.UsageError("Give --notes FILE or --no-notes, not both.")
    if (exemplars_file, description, new_name, notes_file) == (None,) * 4 and not no_notes:
        raise click.UsageError("Give --exemplars, --description, --notes, --no-notes or --as.")
    exemplars = read_questions(exemplars_file) if exemplars_file is not None else None
    extra: dict[str, Any] = {}
    if notes_file is not None:
        extra["notes"] = read_notes_file(notes_file)
    elif no_notes:
        extra["notes"] = []
    svc = services()
    old = svc.library.get(name)
    record = svc.library.reissue(
        old.packet_id, exemplars=exemplars, description=description, name=new_name, **extra
    )
    click.echo(
        f"Reissued {old.name!r} as {record.name!r} (id {record.short_id}, "
        f"{len(record.exemplars)} exemplars, {notes_count(record.manifest)} notes, "
        "signed by this device)."
    )


@library.command("remove")
@click.argument("name", shell_complete=packet_names)
def remove_command(name: str) -> None:
    """Remove a packet from the library."""
    record = services().library.remove(name)
    click.echo(f"Removed {record.name if record else name!r}.")


def _fit(text: str, width: int) -> str:
    """Return `text` cut to `width` characters, its last one '~' when it was cut (a cut
    name is not a name `library show` takes)."""
    return text if len(text) <= width else text[: width - 1] + "~"


def _state(row: dict[str, Any], base_fingerprint: str | None) -> str:
    """The state column (store.usable.shown_state): upper case where the packet may not
    answer here, as on the Library screen."""
    shown = shown_state(PacketState(row["state"]), base_fingerprint)
    if shown != PacketState.OK.value:
        return shown.upper()
    return "merged" if row["merged"] else "verified"


library.add_command(import_module("fieldkit.commands.compact").compact_command)
