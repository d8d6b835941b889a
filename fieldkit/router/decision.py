"""What the router reads from a library, and what it returns: a decision per question."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from fieldkit.store.vectors import VectorCache


class PacketLike(Protocol):
    """What the router reads from a library record (fieldkit.store.library.PacketRecord)."""

    packet_id: str
    name: str
    domain: str
    description: str
    exemplars: Sequence[str]
    base_fingerprint: str


class LibraryLike(Protocol):
    """The part of fieldkit.store.library.Library the router uses."""

    def list_packets(self) -> list[Any]: ...

    def blocked_authors(self) -> set[str]: ...

    def vectors(self, table: str) -> VectorCache: ...

    def change_token(self) -> tuple[int, int]: ...


@dataclass(frozen=True)
class Candidate:
    """One packet and its similarity to the question."""

    name: str
    packet_id: str
    score: float


@dataclass(frozen=True)
class RouteDecision:
    """Where a question goes. `route` None means: abstain, the base model answers."""

    route: str | None
    packet_id: str | None
    score: float
    margin: float
    candidates: list[Candidate] = field(default_factory=list)
    route_ms: float = 0.0
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form used by `fieldkit route --json` and `ask --json`."""
        out = asdict(self)
        out["score"] = round(self.score, 4)
        out["margin"] = round(self.margin, 4)
        out["route_ms"] = round(self.route_ms, 2)
        out["candidates"] = [{**asdict(c), "score": round(c.score, 4)} for c in self.candidates]
        return out


def exemplar_texts(record: PacketLike) -> list[str]:
    """Return the texts that stand for a packet: its exemplars, else its description."""
    texts = [t.strip() for t in (record.exemplars or []) if t and t.strip()]
    if texts:
        return texts
    fallback = getattr(record, "description", "") or getattr(record, "domain", "") or record.name
    return [fallback]
