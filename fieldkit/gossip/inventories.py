"""The inventories of one gossip connection: what each side offered, in either version.

`InventoryExchange` keeps the inventory rules of fieldkit.gossip.protocol.GossipConnection
(which checks the message order with the table in fieldkit.gossip.states first): in
version 1 each side sends its whole `Inventory`; in version 2 the sides trade `Summary`
and `Offer` messages (fieldkit.gossip.reconcile) until every difference is listed, and the
peer's offers then become one `Inventory` event. A peer may only want what this side
offered, and this side only what the peer offered.
"""

from __future__ import annotations

from collections.abc import Callable

from fieldkit.gossip.messages import Inventory, InventoryItem, Message, Offer, Summary
from fieldkit.gossip.reconcile import Reconciler


class InventoryExchange:
    """Both sides' inventories; `answer(message)` queues a reply the core makes on its own
    (version 2: its answer to a peer's summary)."""

    def __init__(self, max_inventory: int, answer: Callable[[Message], None]) -> None:
        self.done = False  # the peer's inventory is known
        self.peer_items: dict[str, InventoryItem] = {}
        self._max_inventory = max_inventory
        self._answer = answer
        self._reconciler: Reconciler | None = None
        self._early_summaries: list[Summary] = []
        self._offered: dict[str, InventoryItem] = {}

    def offered(self, packet_id: str) -> bool:
        """True if this side offered the packet (so the peer may want it)."""
        offered = self._reconciler.offered if self._reconciler else self._offered
        return packet_id in offered

    # --- receiving ---------------------------------------------------------------------

    def got_inventory(self, inventory: Inventory) -> Inventory:
        """Version 1: the peer's whole inventory; return it as the event."""
        self.peer_items = {item.packet_id: item for item in inventory.items}
        self.done = True
        return inventory

    def got_summary(self, summary: Summary) -> Inventory | None:
        """Version 2: answer the peer's summary (once ours is out); return the peer's
        Inventory event once nothing more is expected, else None."""
        if self._reconciler is None:  # ours is not out yet: answer once it is
            self._early_summaries.append(summary)
            return None
        for reply in self._reconciler.on_summary(summary):
            self._answer(reply)
        return self._reconciled()

    def got_offer(self, offer: Offer) -> Inventory | None:
        """Version 2: record the peer's items under one prefix; return as `got_summary`."""
        assert self._reconciler is not None  # the table: an Offer answers our Summary
        self._reconciler.on_offer(offer)
        return self._reconciled()

    def _reconciled(self) -> Inventory | None:
        """Once nothing more is expected, the peer's offers become one Inventory event."""
        rec = self._reconciler
        if rec is None or not rec.done or self.done:
            return None
        self.done = True
        self.peer_items = dict(rec.peer_items)
        return Inventory(tuple(rec.peer_items.values()))

    # --- sending -----------------------------------------------------------------------

    def sending_inventory(self, inventory: Inventory) -> None:
        """Version 1: remember what this side offers."""
        self._offered = {item.packet_id: item for item in inventory.items}

    def start_summary(self, inventory: Inventory) -> list[Message]:
        """Version 2: return what to send instead of `inventory`: its digest, then the
        answers to any summary of the peer's that arrived first."""
        self._reconciler = Reconciler(inventory.items, self._max_inventory)
        out: list[Message] = [self._reconciler.start()]
        for summary in self._early_summaries:
            out += self._reconciler.on_summary(summary)
        self._early_summaries.clear()
        return out
