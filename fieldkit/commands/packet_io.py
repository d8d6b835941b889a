"""The file side of `fieldkit library`: packet files and adapter folders in and out,
notes re-signed."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from fieldkit.errors import PacketError
from fieldkit.formats import format_size
from fieldkit.store.importers import SIGNED_FIELD
from fieldkit.store.library import PacketRecord
from fieldkit.store.notes import NOTES_FIELD, notes_count, notes_of
from fieldkit.store.packet import (
    export_path,
    packet_files_in,
    packet_id,
    read_packet_file,
    save_packet_file,
    verify_weights,
)


def export_folder(svc: Any, record: PacketRecord, output: Path, fmt: str) -> None:
    from fieldkit.store.adapter import infer_model_layers
    from fieldkit.store.exporters import export_adapter

    record, weights = svc.library.checked_weights(record.packet_id)  # what any export passes
    adapter = verify_weights(record.manifest, weights)  # the bytes just checked: no re-read
    info = {
        "name": record.name,
        "domain": record.domain,
        "description": record.description,
        "exemplars": record.exemplars,
    }
    if carried := record.manifest.get(NOTES_FIELD):  # so that importing it back keeps them
        info[NOTES_FIELD] = carried
    # the signed packet itself: imported back unchanged, it is the same packet again
    info[SIGNED_FIELD] = {"manifest": record.manifest, "signature": record.signature.hex()}
    export_adapter(
        adapter,
        output,
        fmt,
        n_model_layers=infer_model_layers(adapter.config, adapter.tensors),
        base_model=record.base_model_id,
        info=info,
    )
    click.echo(f"Exported {record.name!r} to {output} ({fmt} adapter folder).")


def import_folder(
    svc: Any, path: Path, name, domain, description, exemplars_file, notes=None
) -> PacketRecord:
    from fieldkit.store.importers import check_fits_model, read_adapter_folder, read_packet_info

    info = read_packet_info(path, name, domain, description, exemplars_file)
    if info.questions_read > len(info.exemplars):
        click.echo(
            f"Kept {len(info.exemplars)} of the {info.questions_read} questions in "
            f"{exemplars_file} as exemplars, evenly spread.",
            err=True,
        )
    model_id, fingerprint, config = svc.require_model()
    depth = config.get("num_hidden_layers")
    adapter, _kind = read_adapter_folder(path, depth if isinstance(depth, int) else None)
    check_fits_model(adapter, config)
    signed = info.signed
    if signed is not None and svc.library.blocked().covers(
        str(signed[0].get("author_id", "")), str(signed[0].get("weights_sha256", ""))
    ):
        raise PacketError(f"{path} was exported from a packet by an author blocked here.")
    as_exported = not any((name, domain, description, exemplars_file, notes))
    if signed is not None and as_exported and (restored := _restore(svc, path, adapter, signed)):
        return restored
    return svc.library.add_local(
        adapter,
        name=info.name,
        domain=info.domain,
        description=info.description,
        exemplars=info.exemplars,
        base_model_id=model_id,
        base_fingerprint=fingerprint,
        notes=notes if notes is not None else info.notes,
        lineage=[packet_id(signed[0])] if signed is not None else [],
    )


def _restore(
    svc: Any, folder: Path, adapter: Any, signed: tuple[dict, bytes]
) -> PacketRecord | None:
    """Return the packet a folder was exported from, stored again exactly as its author
    signed it, when the folder's weights are still its weights; else None (the folder is
    then signed anew by this device, the packet it came from in its lineage). A quantised
    packet's weights are quantised again from the folder's fp32 values (mlx-lm layout),
    which gives back its codes and scales exactly."""
    from fieldkit.store.adapter import tensors_to_bytes
    from fieldkit.store.importers import MAX_ADAPTER_FILE, read_adapter_weights
    from fieldkit.store.quantize import QUANT_BITS, quantize_tensors

    manifest, signature = signed
    dtype = manifest.get("dtype")
    weights = folder / "adapters.safetensors"
    try:
        if dtype in QUANT_BITS and weights.is_file():
            raw = read_adapter_weights(weights, MAX_ADAPTER_FILE)
            data = quantize_tensors(raw, str(dtype)).to_bytes()
        else:
            data = tensors_to_bytes(adapter.tensors, str(dtype))
    except (KeyError, TypeError, ValueError, PacketError):  # no way back to its bytes
        return None
    if hashlib.sha256(data).hexdigest() != manifest.get("weights_sha256"):
        return None
    return svc.library.add(manifest, signature, data, source="file", expected_base=None)


def resign(
    svc: Any,
    packet: Any,
    notes: list | None,
    expected: str | None,
    name,
    domain,
    description,
    exemplars_file,
) -> PacketRecord:
    """Store a packet file's weights as a new packet signed by this device, with the name,
    domain, description, exemplars or notes given (the file's own where None).

    The file's packet id joins the lineage; the weights and their dtype stay the same.
    Raises PacketError for a packet made for another base model, LibraryError when the
    name is taken.
    """
    from fieldkit.store.importers import read_questions
    from fieldkit.store.packet import verify_weights

    manifest = packet.manifest
    if expected is not None and manifest["base_fingerprint"] != expected:
        raise PacketError(
            f"Packet {manifest['name']!r} was made for another base model "
            f"({manifest['base_model_id']}), not the one this device runs."
        )
    exemplars = read_questions(exemplars_file) if exemplars_file else manifest["exemplars"]
    return svc.library.add_local(
        verify_weights(manifest, packet.weights),
        name=name or manifest["name"],
        domain=domain or manifest["domain"],
        description=manifest["description"] if description is None else description,
        exemplars=exemplars,
        base_model_id=manifest["base_model_id"],
        base_fingerprint=manifest["base_fingerprint"],
        merged=manifest["merged"],
        lineage=[*manifest["lineage"], packet_id(manifest)],
        dtype=manifest["dtype"],
        chunk_size=manifest["chunk_size"],
        notes=notes_of(manifest) if notes is None else notes,
    )


def holds_adapter(folder: Path) -> bool:
    """True when `folder` holds an adapter's weights file (mlx-lm or PEFT)."""
    from fieldkit.store.importers import ADAPTER_WEIGHTS

    return any((folder / name).exists() for name in ADAPTER_WEIGHTS)


def import_paths(paths: Sequence[Path]) -> list[Path]:
    """Return what to import, one item each: the PATHs as given, except that a folder holding
    no adapter stands for its packet files (a USB stick: store.packet.packet_files_in)."""
    items: list[Path] = []
    for path in paths:
        files = []
        if _is_folder(path) and not holds_adapter(path):
            files = packet_files_in(path)
        items.extend(files or [path])
    return items


def _is_folder(path: Path) -> bool:
    """True for a folder; False for anything else, including a path that cannot be looked
    at (reading it as a packet file then says why)."""
    try:
        return path.is_dir()
    except OSError:
        return False


def import_one(
    svc: Any,
    path: Path,
    name: str | None,
    domain: str | None,
    description: str | None,
    exemplars_file: Path | None,
    notes: Any,
    allow_foreign_base: bool,
) -> None:
    """Import one packet file or adapter folder, and say what came in (a packet held here
    whole is left as it is; one held with damaged weights is repaired from the file)."""
    if _is_folder(path):
        if not holds_adapter(path):
            raise PacketError(f"{path} holds no adapter and no .fkpkt packet files.")
        held = {r.packet_id for r in svc.library.list_packets()}
        record = import_folder(svc, path, name, domain, description, exemplars_file, notes)
        if record.packet_id in held:  # exported from a packet held here, weights unchanged
            click.echo(f"Packet {record.name!r} is already in the library.")
            return
    else:
        expected = None if allow_foreign_base else svc.base_fingerprint
        if any(given is not None for given in (name, domain, description, exemplars_file, notes)):
            record = resign(
                svc, read_packet_file(path), notes, expected, name, domain, description,
                exemplars_file,
            )  # fmt: skip
        else:
            record, arrival = svc.library.import_file(path, expected)
            if arrival == "held":
                click.echo(f"Packet {record.name!r} is already in the library.")
                return
            if arrival == "repaired":
                click.echo(
                    f"Repaired {record.name!r}: its weights were damaged here and the file's "
                    "are good."
                )
                return
    carried = notes_count(record.manifest)
    with_notes = f", {carried} notes" if carried else ""
    click.echo(
        f"Imported {record.name!r} ({record.domain}, {format_size(record.size)}{with_notes}, "
        f"id {record.short_id})."
    )


def export_one(svc: Any, record: PacketRecord, output: Path, force: bool) -> None:
    """Write one packet, its weights checked first, to the file `output` or as NAME.fkpkt
    in the folder `output`; say so."""
    path = export_path(output, record.name, replace=force)
    record, weights = svc.library.checked_weights(record.packet_id)
    save_packet_file(path, record.manifest, record.signature, weights)
    click.echo(f"Exported {record.name!r} to {path} ({format_size(path.stat().st_size)}).")
