"""Packets this device signs: new ones from an adapter, and new versions of held ones."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from fieldkit.errors import LibraryError
from fieldkit.store.adapter import Adapter
from fieldkit.store.notes import notes_of
from fieldkit.store.packet import build_manifest, check_new_name

if TYPE_CHECKING:
    from sqlite_utils import Database

    from fieldkit.store.identity import Identity
    from fieldkit.store.records import PacketRecord


class AuthoringStore:
    """Signing packets by this device's identity (mixed into Library)."""

    db: Database
    identity: Identity | None
    add: Callable[..., PacketRecord]  # Library.add: verify and store a signed packet
    get: Callable[[str], PacketRecord]
    load_adapter: Callable[[PacketRecord], Adapter]

    def require_free_name(self, name: str, option: str = "--name") -> None:
        """Raise LibraryError when a packet here is named `name`, saying how to give the
        new one another (`option`, the command's)."""
        if self.db["packets"].count_where("name = ?", [name]):
            raise LibraryError(
                f"A packet named {name!r} is already in the library: give this one another "
                f"name ({option} NEW_NAME)."
            )

    def add_local(self, adapter: Adapter, *, name: str, **fields: Any) -> PacketRecord:
        """Sign a new packet by this device and store it; return its record.

        `fields` are build_manifest's other keywords: domain, description, exemplars,
        base_model_id, base_fingerprint, and the optional ones (merged, lineage, merge,
        dtype, notes...). Raises LibraryError when the name is taken, PacketError for a bad
        name or adapter.
        """
        identity = self._require_identity()
        name = check_new_name(name)
        self.require_free_name(name)
        manifest, signature, data = build_manifest(adapter, identity, name=name, **fields)
        return self.add(manifest, signature, data, source="local")

    def reissue(
        self,
        name_or_id: str,
        *,
        exemplars: Iterable[str] | None = None,
        description: str | None = None,
        name: str | None = None,
        **extra: Any,
    ) -> PacketRecord:
        """Sign a new version of a packet by this device, same weights, new exemplars or
        description or notes (`notes=[...]`, `[]` to drop them); return its record.

        The old packet's id joins the lineage. A packet of this device is replaced under
        its name; another author's packet stays, and its new version needs a `name` of its
        own. Raises LibraryError (and changes nothing) otherwise.
        """
        identity = self._require_identity()
        old = self.get(name_or_id)
        new_name = check_new_name(name) if name is not None else old.name
        if old.author_id != identity.device_id and new_name == old.name:
            raise LibraryError(
                f"{old.name!r} is by another author: give the new version a name of its own "
                "(--as NEW_NAME)."
            )
        if new_name != old.name:
            self.require_free_name(new_name, "--as")
        extra.setdefault("notes", notes_of(old.manifest))  # notes stay unless replaced
        manifest, signature, data = build_manifest(
            self.load_adapter(old),
            identity,
            name=new_name,
            domain=old.domain,
            description=old.description if description is None else description,
            exemplars=old.exemplars if exemplars is None else exemplars,
            base_model_id=old.base_model_id,
            base_fingerprint=old.base_fingerprint,
            merged=old.merged,
            lineage=[*old.manifest.get("lineage", []), old.packet_id],
            dtype=old.manifest["dtype"],
            created=max(int(time.time()), int(old.manifest["created"]) + 1),
            **extra,
        )
        return self.add(manifest, signature, data, source="local")

    def _require_identity(self) -> Identity:
        if self.identity is None:
            raise LibraryError("This library was opened without a device identity.")
        return self.identity
