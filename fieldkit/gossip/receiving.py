"""The receiving side of one gossip session: what to ask for, and where it is written.

`Receiver` is held by the session (fieldkit.gossip.session). It decides, packet by offered
packet, whether to ask for it (the peer's trust and the receive policy, the base model, the
size limit, a name taken by another author, another session receiving it), checks each
arriving manifest, writes the chunks to a part file and hands a finished part to the
library. Every decision lands in a `PacketReport` of the session's summary.
"""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable
from typing import Any

from fieldkit.errors import FieldkitError, PacketError, ProtocolError
from fieldkit.gossip.messages import (
    Cancel,
    Chunk,
    Decline,
    Inventory,
    Message,
    PacketEnd,
    PacketStart,
    Want,
)
from fieldkit.gossip.parts import PartFile, held_chunks
from fieldkit.gossip.summary import (
    ConfirmCallback,
    PacketReport,
    ProgressCallback,
    SyncOptions,
    SyncSummary,
    report_progress,
)
from fieldkit.gossip.transfers import chunk_count, have_bitmap
from fieldkit.store.library import Library
from fieldkit.store.packet import packet_id as manifest_packet_id
from fieldkit.store.packet import verify_manifest

Send = Callable[[Message], Awaitable[int]]


def receive_policy(library: Library) -> str:
    """Return the library's receive policy (trusted-only unless set)."""
    return library.receive_policy()


class Receiver:
    """The packets one session asks for and receives.

    `send(message) -> wire size` is the session's sender; `claims` is shared by the
    concurrent sessions of one listener, so that two peers never write the same part file.
    """

    def __init__(
        self,
        library: Library,
        options: SyncOptions,
        summary: SyncSummary,
        send: Send,
        claims: set[str],
        progress: ProgressCallback | None = None,
        confirm: ConfirmCallback | None = None,
    ) -> None:
        self.library = library
        self.options = options
        self.summary = summary
        self.claims = claims
        self.policy = options.policy or receive_policy(library)
        self.wants_sent = False
        self._send = send
        self._progress = progress
        self._confirm = confirm
        self._parts: dict[str, PartFile] = {}
        self._incoming: dict[str, PacketReport] = {}
        self._held: dict[str, tuple[set[int], dict[str, Any] | None]] = {}

    def close(self) -> None:
        """Close the open part files (kept for a later resume) and release the claims."""
        for part in self._parts.values():
            part.close()
        for pid in self._incoming:
            self.claims.discard(pid)

    async def _accepts_peer(self) -> tuple[bool, str, str]:
        """Return whether packets from this peer may be received, and if not, why (a
        sentence, and the word a Decline carries)."""
        trust = self.summary.peer_trust
        if trust == "trusted" or self.policy == "open":
            return True, "", ""
        if self.policy == "ask":
            if self._confirm is not None:
                peer_id, name, sas = self.summary.peer_id, self.summary.peer_name, self.summary.sas
                if await self._confirm(peer_id, name, sas):
                    self.library.set_trust(peer_id, "trusted")
                    self.summary.peer_trust = "trusted"
                    return True, "", ""
                return False, "the peer was not accepted", "not-accepted"
            if self.options.accept_pending:
                return True, "", ""
        return False, f"the peer is {trust} and the receive policy is {self.policy}", "untrusted"

    async def on_inventory(self, inventory: Inventory, declines: bool = False) -> None:
        """Ask for each offered packet this library lacks and may take; report the others,
        and with `declines` (protocol version 3) tell the peer why each was not asked for."""
        offered = [item for item in inventory.items if not self.library.has(item.packet_id)]
        if self.options.send_order == "newest":  # in a short encounter, the newest first
            offered.sort(key=lambda item: -item.created)
        accepted, why, word = (True, "", "") if not offered else await self._accepts_peer()
        base = self.options.base_fingerprint
        blocked = self.library.blocked() if offered else None
        for item in offered:
            report = PacketReport(item.packet_id, item.name, item.sha256, "received", "refused")
            report.size = item.size
            if not accepted:
                report.reason = why
            elif blocked is not None and blocked.covers(item.author_id, item.sha256):
                report.reason = "it is by a blocked author, or holds a blocked packet's weights"
                word = "blocked"  # Library.add would refuse it once it had all come
            elif base is not None and item.base_fingerprint != base:
                report.reason, word = "it was made for another base model", "base-model"
            elif item.packet_id in self.claims:
                report.reason, word = "it is being received from another peer", "busy"
            elif item.size > self.options.limits.max_packet:
                report.reason, word = "it is larger than the packet size limit", "too-large"
            elif self._name_taken(item.name, item.author_id):
                report.reason = (
                    f"a packet named {item.name!r} by another author is already here "
                    f"(`fieldkit library remove {shlex.quote(item.name)}` makes way for theirs)"
                )
                word = "name-taken"
            else:
                report.status = "pending"
                self.claims.add(item.packet_id)
                self._incoming[item.packet_id] = report
                held, manifest = held_chunks(self.library, item.packet_id)
                self._held[item.packet_id] = (held, manifest)  # hashed once per transfer
                have = b""
                if manifest is not None and held:
                    count = chunk_count(manifest["weights_size"], manifest["chunk_size"])
                    have = have_bitmap(held, count)
                await self._send(Want(item.packet_id, have))
            if report.status == "refused" and declines:
                await self._send(Decline(item.packet_id, word))
            self.summary.packets.append(report)
        self.wants_sent = True

    def _name_taken(self, name: str, author_id: str) -> bool:
        """True if the library holds a packet of this name by another author (it would be
        refused after the transfer, so it is not asked for)."""
        return self.library.name_conflict(name, author_id) is not None

    async def on_start(self, start: PacketStart) -> None:
        """Check the manifest of a wanted packet; open its part file, or cancel it.

        Raises ProtocolError if the manifest does not match the packet id that was asked for.
        """
        report = self._incoming[start.packet_id]
        manifest = start.manifest
        try:
            computed = manifest_packet_id(manifest)
        except PacketError:
            computed = ""
        if computed != start.packet_id:
            raise ProtocolError(f"The peer's manifest for {report.name!r} does not match its id.")
        reason = ""
        try:
            verify_manifest(manifest, start.signature)
        except PacketError as exc:
            reason = str(exc)
        base = self.options.base_fingerprint
        if not reason and base is not None and manifest["base_fingerprint"] != base:
            reason = f"Packet {manifest['name']!r} was made for another base model."
        report.name = manifest.get("name", report.name) if not reason else report.name
        report.wire_bytes += start.wire_size
        if reason:
            report.status, report.reason = "refused", reason
            await self._send(Cancel(start.packet_id, reason[:500]))
            return
        # the chunks announced in our Want (the sender sends exactly the others)
        held, stored = self._held.pop(start.packet_id, (set(), None))
        held = held if stored == manifest else set()
        part = PartFile(
            self.library, start.packet_id, self.summary.peer_id, manifest, start.signature, held
        )
        self._parts[start.packet_id] = part
        report.resumed_from = part.held_bytes
        report_progress(self._progress, report, part.held_bytes)

    def on_chunk(self, chunk: Chunk) -> None:
        """Write one chunk (the core checked its index and decoded it) to its part file."""
        part = self._parts[chunk.packet_id]
        report = self._incoming[chunk.packet_id]
        part.write(chunk.index, chunk.data)
        report.wire_bytes += chunk.wire_size
        report_progress(self._progress, report, part.held_bytes)

    async def on_end(self, end: PacketEnd) -> None:
        """Hand the finished part to the library; a packet it refuses is discarded."""
        report = self._incoming[end.packet_id]
        report.wire_bytes += end.wire_size
        self.claims.discard(end.packet_id)
        part = self._parts.pop(end.packet_id, None)
        if part is None:  # we refused it after its manifest
            return
        try:
            part.finish(self.options.base_fingerprint)
        except FieldkitError as exc:
            part.discard()
            report.status, report.reason = "refused", str(exc)
        else:
            report.status = "ok"
            self.library.log_event(
                "packet_received", packet_id=end.packet_id, peer_id=self.summary.peer_id
            )

    def on_cancel(self, cancel: Cancel) -> bool:
        """Mark a pending packet the sender cannot give as failed; return False if `cancel`
        was not about a packet this side is receiving."""
        report = self._incoming.get(cancel.packet_id)
        if report is None or report.status != "pending":
            return False
        report.status, report.reason = "failed", f"the peer cancelled: {cancel.reason}"
        self.claims.discard(cancel.packet_id)
        part = self._parts.pop(cancel.packet_id, None)
        if part is not None:
            part.close()
        return True
