"""Derived packets: a library packet quantised and/or rank-trimmed, signed by this device.

The new packet keeps the source's exemplars, description, notes, domain, base model, merged
flag and merge recipe, and names the source last in its lineage. Under the source's own
name it replaces the source (allowed only for a packet this device authored, as `library
reissue` does); under a new name both stay.
"""

from __future__ import annotations

import time

from fieldkit.errors import LibraryError
from fieldkit.store.library import Library, PacketRecord
from fieldkit.store.notes import notes_of
from fieldkit.store.packet import build_manifest, check_new_name
from fieldkit.store.quantize import Compaction


def compact_packet(
    library: Library, name_or_id: str, compaction: Compaction, *, name: str | None = None
) -> tuple[PacketRecord, PacketRecord]:
    """Make and store the compacted packet; return (source record, new record).

    Raises LibraryError (changing nothing) without a device identity, for another author's
    packet kept under its own name, or for a new name already taken; PacketError if the
    compacted weights cannot be made (e.g. an odd width at 4 bits).
    """
    if library.identity is None:
        raise LibraryError("This library was opened without a device identity.")
    source = library.get(name_or_id)
    new_name = check_new_name(name) if name is not None else source.name
    if new_name == source.name and source.author_id != library.identity.device_id:
        raise LibraryError(
            f"{source.name!r} is by another author: give the compacted packet a name of its "
            "own (--name)."
        )
    if new_name != source.name:
        library.require_free_name(new_name)
    adapter = compaction.apply(library.load_adapter(source))
    manifest, signature, data = build_manifest(
        adapter,
        library.identity,
        name=new_name,
        domain=source.domain,
        description=source.description,
        exemplars=source.exemplars,
        base_model_id=source.base_model_id,
        base_fingerprint=source.base_fingerprint,
        merged=source.merged,
        lineage=[*source.manifest["lineage"], source.packet_id],
        created=max(int(time.time()), int(source.manifest["created"]) + 1),
        notes=notes_of(source.manifest),
        merge=source.manifest.get("merge"),
    )
    return source, library.add(manifest, signature, data, source="local")
