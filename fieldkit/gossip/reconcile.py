"""Compact inventory exchange (protocol version 2): a digest first, the list only where it differs.

Packet ids are sha256 hex, so they spread evenly over hex prefixes. Each side sends a
`SummaryEntry` for the empty prefix: how many packets it shares and an 8-byte digest of
their sorted ids. For every entry of the peer, both sides compare it with their own entry for
the same prefix and take the same decision, because `decide` is symmetric in the two entries:

- same count and digest: nothing more (the sets are equal, up to a 2^-64 digest collision);
- the smaller side holds at most `LEAF` packets there, or the prefix is `MAX_DEPTH` long:
  both send an `Offer` listing every packet they share under the prefix;
- else both split it: a Summary with the entries of its 16 one-digit-longer prefixes.

So a side sees the peer's items in every prefix where the two inventories differ, which
includes every packet it lacks: the same wants as with the whole list. Two devices that share
1,000 packets and differ by one exchange about 30 bytes of summaries per level (three levels)
and one short Offer instead of two 140 kB inventories. A peer answering a prefix nobody asked
about, or twice, is a ProtocolError; the number of prefixes is bounded by the depth.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable

from fieldkit.errors import ProtocolError
from fieldkit.gossip.messages import (
    MAX_SUMMARY,
    InventoryItem,
    Message,
    Offer,
    Summary,
    SummaryEntry,
)

LEAF = 16
MAX_DEPTH = 8
_HEX = "0123456789abcdef"


class InventoryIndex:
    """The packet ids one side shares, sorted, with their summary entries by prefix."""

    def __init__(self, items: Iterable[InventoryItem]) -> None:
        self.items = {item.packet_id: item for item in items}
        self.ids = sorted(self.items)

    def under(self, prefix: str) -> list[str]:
        """Return the sorted ids that start with `prefix`."""
        lo = bisect.bisect_left(self.ids, prefix)
        hi = bisect.bisect_left(self.ids, prefix + "g")  # "g" sorts after every hex digit
        return self.ids[lo:hi]

    def entry(self, prefix: str) -> SummaryEntry:
        """Return the count and digest of the ids under `prefix`."""
        ids = self.under(prefix)
        digest = hashlib.sha256("".join(ids).encode()).digest()[:8]
        return SummaryEntry(prefix, len(ids), digest)

    def offer(self, prefix: str) -> Offer:
        """Return the Offer of every item under `prefix`."""
        return Offer(prefix, tuple(self.items[i] for i in self.under(prefix)))


def decide(mine: SummaryEntry, theirs: SummaryEntry) -> str:
    """Return "same", "list" or "split" for one prefix; the same answer on both sides."""
    if mine.count == theirs.count and mine.digest == theirs.digest:
        return "same"
    if min(mine.count, theirs.count) <= LEAF or len(mine.prefix) >= MAX_DEPTH:
        return "list"
    return "split"


class Reconciler:
    """One side's part of the exchange: what it sent, what it waits for, what the peer offered.

    `start` returns the first Summary; `on_summary` and `on_offer` take the peer's messages
    and return what to send back. `done` is True once every differing prefix was listed by
    the peer; `peer_items` then holds everything the peer offered there.
    """

    def __init__(self, items: Iterable[InventoryItem], max_items: int) -> None:
        self.index = InventoryIndex(items)
        self.max_items = max_items
        self.awaiting_summary: set[str] = set()
        self.awaiting_offer: set[str] = set()
        self.peer_items: dict[str, InventoryItem] = {}
        self.offered: dict[str, InventoryItem] = {}

    @property
    def done(self) -> bool:
        """True when nothing more is expected from the peer."""
        return not self.awaiting_summary and not self.awaiting_offer

    def start(self) -> Summary:
        """Return the first message: the summary of the whole inventory."""
        self.awaiting_summary.add("")
        return Summary((self.index.entry(""),))

    def on_summary(self, summary: Summary) -> list[Message]:
        """Compare the peer's entries with ours; return our Offers and child Summary.

        Raises ProtocolError for an entry that answers no prefix we summarised.
        """
        replies: list[Message] = []
        children: list[SummaryEntry] = []
        for theirs in summary.entries:
            if theirs.prefix not in self.awaiting_summary:
                raise ProtocolError("The peer summarised a part of its inventory out of turn.")
            self.awaiting_summary.discard(theirs.prefix)
            mine = self.index.entry(theirs.prefix)
            verdict = decide(mine, theirs)
            if verdict == "list":
                offer = self.index.offer(theirs.prefix)
                self.offered.update((item.packet_id, item) for item in offer.items)
                self.awaiting_offer.add(theirs.prefix)
                replies.append(offer)
            elif verdict == "split":
                for digit in _HEX:
                    children.append(self.index.entry(theirs.prefix + digit))
        self.awaiting_summary.update(entry.prefix for entry in children)
        for i in range(0, len(children), MAX_SUMMARY):
            replies.append(Summary(tuple(children[i : i + MAX_SUMMARY])))
        return replies

    def on_offer(self, offer: Offer) -> None:
        """Record the peer's items under one prefix. Raises ProtocolError if not asked for,
        or if the peer's offers together exceed `max_items`."""
        if offer.prefix not in self.awaiting_offer:
            raise ProtocolError("The peer listed a part of its inventory out of turn.")
        self.awaiting_offer.discard(offer.prefix)
        self.peer_items.update((item.packet_id, item) for item in offer.items)
        if len(self.peer_items) > self.max_items:
            raise ProtocolError(
                f"The peer offered more than {self.max_items} packets; that is the limit."
            )
