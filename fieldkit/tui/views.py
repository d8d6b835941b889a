"""What the TUI shows, as plain data: rows, details, routes, progress, and the status rule.

No textual and no I/O here: the rules about how a packet looks (verified, unverified,
foreign base, blocked) and how numbers and times read live in one testable place.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fieldkit.store.usable import NO_MODEL, Blocked, PacketState, packet_state, shown_state

PEER_ID_LENGTH = 16  # a device id; other sources are words such as "local" or "demo"
THIS_DEVICE = "this device"  # the author trust of this device's own packets


class PacketStatus(enum.Enum):
    """How far a packet can be trusted on this device; only VERIFIED is shown as good."""

    VERIFIED = "verified"
    UNVERIFIED = "UNVERIFIED"
    FOREIGN_BASE = "FOREIGN BASE"
    BLOCKED = "BLOCKED AUTHOR"
    NO_MODEL = "NO MODEL"  # verified, but no base model is installed to check it against

    @property
    def label(self) -> str:
        """Return the text shown in tables; it never relies on colour alone."""
        return {
            PacketStatus.VERIFIED: "ok verified",
            PacketStatus.UNVERIFIED: "!! UNVERIFIED",
            PacketStatus.FOREIGN_BASE: "!! FOREIGN BASE",
            PacketStatus.BLOCKED: "!! BLOCKED",
            PacketStatus.NO_MODEL: "!! NO MODEL",
        }[self]

    @property
    def good(self) -> bool:
        return self is PacketStatus.VERIFIED


def packet_status(
    record: Any, base_fingerprint: str | None, blocked: Blocked | None = None
) -> PacketStatus:
    """Return how a library record shows, by the one usable-packet rule (store/usable.py).

    With no base model installed (`base_fingerprint` None), a packet that passes the rest
    of the rule shows NO_MODEL: nothing is shown as usable until the base it needs is
    here, and nothing is called foreign either.
    """
    state = packet_state(record, base_fingerprint, blocked or Blocked())
    if shown_state(state, base_fingerprint) == NO_MODEL:
        return PacketStatus.NO_MODEL
    return {
        PacketState.OK: PacketStatus.VERIFIED,
        PacketState.UNVERIFIED: PacketStatus.UNVERIFIED,
        PacketState.BLOCKED: PacketStatus.BLOCKED,
        PacketState.FOREIGN_BASE: PacketStatus.FOREIGN_BASE,
    }[state]


def human_time(value: Any) -> str:
    """Return a timestamp (epoch seconds, ISO text or datetime) as 'YYYY-MM-DD HH:MM'."""
    if value in (None, ""):
        return "-"
    try:
        if isinstance(value, int | float):
            stamp = datetime.fromtimestamp(value, tz=UTC)
        elif isinstance(value, datetime):
            stamp = value
        else:
            stamp = datetime.fromisoformat(str(value))
    except (ValueError, OSError, OverflowError):
        return str(value)[:16]
    return stamp.strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class PacketRow:
    """One line of the library table."""

    packet_id: str
    name: str
    domain: str
    size: str
    author: str
    author_id: str
    status: PacketStatus
    source: str  # "local", "file", "demo"..., or a sending peer's short id
    received: str
    notes: int = 0  # source passages carried in the signed manifest
    merged: bool = False
    from_peer: bool = False  # `source` is the peer it came from: its name, else its id
    # the author's trust here: 'trusted', 'blocked', 'pending' (met), '' (never met),
    # or THIS_DEVICE (this device wrote it)
    author_trust: str = ""


@dataclass(frozen=True)
class PacketDetail:
    """Everything the detail pane shows about one packet."""

    row: PacketRow
    description: str
    exemplars: list[str]
    base_model_id: str
    base_match: bool | None  # None: no base model is installed to compare with
    signature_ok: bool
    manifest: dict[str, Any]


@dataclass(frozen=True)
class PeerRow:
    """One known or discovered peer (`name` "": not known yet, see `peer_name`)."""

    peer_id: str
    name: str
    address: str
    trust: str
    via: str = "lan"


UNNAMED_PEER = "(name unknown)"  # a peer known by its id only: trusted by hand, not yet met


def peer_name(name: str) -> str:
    """Return how a peer's name shows in a table: itself, or UNNAMED_PEER."""
    return name or UNNAMED_PEER


def peer_label(name: str, peer_id: str) -> str:
    """Return a peer in a sentence: 'name (id)', or its id alone while it has no name."""
    return f"{name} ({peer_id})" if name else peer_id


@dataclass(frozen=True)
class RouteView:
    """The router's decision in words: which packet, how sure, and who came second."""

    packet_id: str | None
    label: str
    score: float
    runner_up: str
    reason: str
    route_ms: float
    manual: bool = False
    nearest: str = ""  # abstained: the packet that came near enough to ask by hand
    dropped: str = ""  # why the packet picked by hand was set aside for the router


@dataclass(frozen=True)
class SourceView:
    """A passage an answer cites: 'packet passage-id (score)', its title and text."""

    label: str
    title: str | None
    text: str
    read: bool = True  # given to the model (each part's, for an answer in parts)
    # whose record it is, and its id: a record an answer showed can be picked to answer
    # from (the Ask screen's Ctrl+N)
    packet: str = ""
    packet_id: str = ""
    passage_id: str = ""


@dataclass
class AnswerChunk:
    """A piece of a streamed answer; the last one carries `done`, the speed, the sources
    and the support marks. A first chunk may carry only `notice` (said before the answer:
    the notes have nothing on the question, or may not cover it)."""

    text: str = ""
    done: bool = False
    tokens_per_s: float | None = None
    tokens: int | None = None
    stopped: bool = False
    notice: str | None = None
    note: str = ""
    sources: list[SourceView] = field(default_factory=list)
    unsupported: list[tuple[int, int]] = field(default_factory=list)  # spans of `final`
    nearest: list[SourceView] = field(default_factory=list)  # a gap's nearest passage, unused
    final: str | None = None  # the whole answer text, once done
    warnings: str | None = None  # Answer.warnings, one a line (follows_unread, recites)
    generated: bool = True  # Answer.generated: False when the notes settled it
    as_written: bool = False  # Answer.as_written: the text is the gap's nearest record
    picked: str | None = None  # Answer.picked: the record a person picked to answer from


@dataclass
class SyncProgress:
    """A transfer's state for one packet, reported by the gossip session."""

    packet: str
    done_bytes: int
    total_bytes: int
    rate_bps: float = 0.0
    resumed: bool = False
    finished: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """The outcome of one action (a sync, an import) in one sentence, and whether it went
    wrong."""

    text: str
    ok: bool
    peer_id: str = ""  # a sync's peer, when it is not trusted here: `t` then trusts it
    untrusted: bool = False


def sync_result(summary: Any) -> Outcome:
    """Return the result of a gossip SyncSummary in a sentence, and when the peer is not
    trusted here, a second one saying how to trust it.

    A peer that speaks protocol version 3 says which of this device's packets it declined
    (counted apart); an older one does not, so a sync with a peer that is pending here says
    so even when nothing failed: that peer most likely does not trust this device either.
    """
    who = summary.peer_name or summary.peer_label or "the peer"
    if summary.peer_id:
        who += f" ({summary.peer_id})"
    received, sent = summary.count("received", "ok"), summary.count("sent", "ok")
    counts = f"{received} received, {sent} sent"
    if summary.refused:
        counts += f", {summary.refused} refused"
    if summary.declined:
        counts += f", {summary.declined} declined by the peer"
    hint = trust_hint(summary, moved=received + sent > 0)
    if summary.error:
        text, ok = f"Sync with {who} stopped: {summary.error} ({counts}).", False
    else:
        text, ok = f"Synced with {who}: {counts}.", summary.ok
    if not hint:
        return Outcome(text, ok)
    return Outcome(f"{text} {hint}", ok, peer_id=summary.peer_id, untrusted=True)


def trust_hint(summary: Any, moved: bool) -> str:
    """Return how to trust a sync's peer that is pending here (or any peer not trusted,
    when nothing moved), as `fieldkit sync` says it; "" for a trusted or blocked one."""
    trust = summary.peer_trust
    if not summary.peer_id or trust in ("trusted", "blocked"):
        return ""
    if trust != "pending" and moved:
        return ""
    name = summary.peer_name or summary.peer_id
    code = f" (code {summary.sas[:3]} {summary.sas[3:]})" if summary.sas else ""
    return (
        f"{name} is not trusted yet{code}: press t to trust it if both devices show this "
        "code; it takes this device's packets only once it trusts this device too."
    )


REFUSALS_SHOWN = 2  # a notice names this many refused files and counts the rest


def refusal(file_name: str, reason: str) -> str:
    """Return why one file was refused as a clause naming the file once ('junk.fkpkt is
    not a fieldkit packet file'), without its closing period."""
    reason = reason.strip().rstrip(".")
    return reason if reason.startswith(file_name) else f"{file_name}: {reason}"


def import_outcome(
    added: list[str],
    held: list[str],
    refused: list[tuple[str, str]],
    repaired: Sequence[str] = (),
) -> Outcome:
    """Return what came of importing packet files, a short sentence for each kind: the
    packets that came in, those repaired (held here with damaged weights), those already
    here, and the files refused, each `(file name, reason)`, the first REFUSALS_SHOWN of
    them with why."""
    sentences = []
    if added:
        sentences.append(f"Imported {len(added)} ({', '.join(added)}).")
    if repaired:
        sentences.append(f"Repaired from the file: {', '.join(repaired)}.")
    if held:
        sentences.append(f"Already here: {', '.join(held)}.")
    if refused:
        reasons = "; ".join(refusal(name, why) for name, why in refused[:REFUSALS_SHOWN])
        rest = len(refused) - REFUSALS_SHOWN
        more = f" (and {rest} more)" if rest > 0 else ""
        sentences.append(f"Refused {len(refused)}: {reasons}{more}.")
    return Outcome(" ".join(sentences), ok=not refused)
