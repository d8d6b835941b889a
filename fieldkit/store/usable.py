"""The one rule for which packets may answer a question.

A packet may answer when it verified, was made for the base model in use, and its author
is not blocked. `fieldkit ask`, `fieldkit route`, the Ask screen and the server all ask here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fieldkit.store.library import Library
    from fieldkit.store.records import PacketRecord


def usable_problem(
    library: Library, record: PacketRecord, base_fingerprint: str | None
) -> str | None:
    """Return why `record` may not answer (one sentence), or None when it may."""
    if record.author_id in library.blocked_authors():
        return f"{record.name!r} is by a blocked author."
    if not record.verified:
        return f"{record.name!r} failed verification (run `fieldkit library verify`)."
    if base_fingerprint is not None and record.base_fingerprint != base_fingerprint:
        return f"{record.name!r} was made for another base model ({record.base_model_id})."
    return None


def usable_packets(library: Library, base_fingerprint: str | None) -> list[PacketRecord]:
    """Return the packets that may answer on this base model (see usable_problem)."""
    blocked = library.blocked_authors()
    return [
        r
        for r in library.list_packets()
        if r.author_id not in blocked
        and r.verified
        and (base_fingerprint is None or r.base_fingerprint == base_fingerprint)
    ]
