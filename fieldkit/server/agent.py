"""The resident agent's state: one home's library, router, engine and request queue.

SQLite connections belong to the thread that opened them, so the library and the router
live on one thread the agent owns; the engine keeps its own MLX thread, on which a
request's adapter swap and its generation run as one job, so an adapter never leaks into
another request's answer. Everything here is awaited from the HTTP event loop.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from fieldkit.errors import FieldkitError, LibraryError
from fieldkit.server.chat import AUTO, BASE, ChatRequest, Limits, RequestError

if TYPE_CHECKING:
    from collections.abc import Callable

    from fieldkit.answers import Answer, Grounding
    from fieldkit.engine.engine import GenerationResult
    from fieldkit.router.embedder import Embedder
    from fieldkit.router.retrieval import PassageIndex
    from fieldkit.router.router import RouteDecision, Router
    from fieldkit.services import Services
    from fieldkit.store.adapter import Adapter
    from fieldkit.store.library import PacketRecord

T = TypeVar("T")
_ADAPTERS_KEPT = 8


@dataclass(frozen=True)
class Plan:
    """Who answers a request: a packet (None = base model), why, and from which notes."""

    record: PacketRecord | None
    adapter: Adapter | None
    decision: RouteDecision | None
    grounding: Grounding
    messages: list[dict[str, str]]  # the request's chat with its question grounded

    def extras(self) -> dict[str, Any]:
        """Return the `fieldkit` object before generation: the route and the grounding."""
        route = None
        if self.decision is not None:
            d = self.decision
            others = [c for c in d.candidates if c.packet_id != d.packet_id]
            route = {
                **d.to_dict(),
                "abstained": d.route is None,
                "runner_up": {"name": others[0].name, "score": round(others[0].score, 4)}
                if others
                else None,
            }
        g = self.grounding
        return {
            "packet": self.record.name if self.record else None,
            "packet_id": self.record.packet_id if self.record else None,
            "route": route,
            "grounding": g.grounding,
            "gap": g.gap,
            "caution": g.caution,
            "sources": [source.to_dict() for source in g.sources],
        }


class _LibraryThread:
    """One daemon thread running submitted calls in order (ended by `stop`)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name="fieldkit-library", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._jobs.put((future, fn))
        return future

    def stop(self) -> None:
        self._jobs.put(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:  # handed to the caller
                    future.set_exception(exc)


@dataclass
class Stats:
    """Counters shown by GET /health."""

    served: int = 0
    cancelled: int = 0
    failed: int = 0
    refused_busy: int = 0
    started: float = field(default_factory=time.time)


class Agent:
    """The resident parts of one home, shared by every request of one server."""

    def __init__(
        self, services: Services, limits: Limits | None = None, embedder: Embedder | None = None
    ) -> None:
        self.services = services
        self.limits = limits or Limits()
        self.stats = Stats()
        self._embedder = embedder
        self._built: tuple[Router, PassageIndex] | None = None
        self._library_thread = _LibraryThread()
        self._adapters: OrderedDict[str, Adapter] = OrderedDict()
        self._waiting = 0  # requests admitted and not finished (queued or generating)
        self._warm: threading.Event = threading.Event()
        self._warming = False
        self._closed = False
        self._stopping = False  # the server stops: answers under way are cut short
        self._live: set[threading.Event] = set()  # the cancel events of those answers
        self.load_error: str | None = None  # why the start-up load failed, in one sentence
        # The library connection belongs to the library thread: open it there, and settle
        # which model the home uses, so no other thread needs the library for that.
        self.on_library_sync(lambda: services.model_dir)

    # ---- the library thread ----------------------------------------------------------

    async def on_library(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the agent's library thread and return its result."""
        return await asyncio.wrap_future(self._library_thread.submit(fn))

    def on_library_sync(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the library thread and wait for its result (from any other thread)."""
        return self._library_thread.submit(fn).result()

    def _indexes(self) -> tuple[Router, PassageIndex]:
        """Return the router and the notes index, built on first use (library thread).

        With an embedder given, both use it and follow the library (packets that arrive
        are indexed) as the services' own router and notes index do.
        """
        if self._built is None:
            if self._embedder is None:
                self._built = (self.services.router, self.services.passages)
            else:
                from fieldkit.router.retrieval import PassageIndex

                library = self.services.library
                router = self.services.make_router(library, self._embedder)
                passages = PassageIndex(library, self._embedder)
                for index in (router, passages):
                    library.add_listener(index.index_packet)
                self._built = (router, passages)
        return self._built

    @property
    def router(self) -> Router:
        """The router (built on first use, on the library thread)."""
        return self._indexes()[0]

    @property
    def passages(self) -> PassageIndex:
        """The packets' note passages, searched with the router's embedder (library thread)."""
        return self._indexes()[1]

    def warm(self) -> None:
        """Load the base model, the router's index and the notes index now (blocking)."""

        def indexes() -> None:
            self.router.warm()
            _ = self.passages

        self._warming = True
        try:
            self.services.engine.load()
            self.on_library_sync(indexes)
        except FieldkitError as exc:
            self.load_error = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown by /health, not a silent hang
            self.load_error = f"The agent could not load: {type(exc).__name__}: {exc}"
        finally:
            self._warm.set()

    @property
    def still_loading(self) -> bool:
        """True while the start-up load runs (stopping then waits for it)."""
        return self._warming and not self._warm.is_set()

    @property
    def ready(self) -> bool:
        return self._warm.is_set() and self.services.engine.loaded

    def unusable(self, record: PacketRecord) -> str | None:
        """Return why this packet may not answer here, or None when it may (library thread)."""
        from fieldkit.store.usable import usable_problem

        return usable_problem(self.services.library, record, self.services.base_fingerprint)

    def usable_packets(self) -> list[PacketRecord]:
        """Return the packets that may answer here (library thread)."""
        from fieldkit.store.usable import usable_packets

        return usable_packets(self.services.library, self.services.base_fingerprint)

    def library_rows(self) -> list[dict[str, Any]]:
        """Return every packet as JSON rows with `usable` and `why_not` (library thread)."""
        rows = []
        for r in self.services.library.list_packets():
            why = self.unusable(r)
            rows.append(
                {
                    "name": r.name,
                    "packet_id": r.packet_id,
                    "domain": r.domain,
                    "description": r.description,
                    "author": r.author_name,
                    "author_id": r.author_id,
                    "base_model_id": r.base_model_id,
                    "size": r.size,
                    "source": r.source,
                    "received_at": r.received_at,
                    "verified": r.verified,
                    "merged": r.merged,
                    "usable": why is None,
                    "why_not": why,
                }
            )
        return rows

    def _adapter(self, record: PacketRecord) -> Adapter:
        adapter = self._adapters.get(record.packet_id)
        if adapter is None:
            adapter = self.services.checked_adapter(record)
            self._adapters[record.packet_id] = adapter
            while len(self._adapters) > _ADAPTERS_KEPT:
                self._adapters.popitem(last=False)
        self._adapters.move_to_end(record.packet_id)
        return adapter

    def _pick(self, request: ChatRequest) -> tuple[PacketRecord | None, RouteDecision | None]:
        """Return (packet or None, the router's decision) as `fieldkit ask` picks them.

        RequestError 404 for an unknown packet, 403 for one that may not answer here.
        """
        if request.model == AUTO:  # the router routes to usable packets only
            return self._route(request.question)
        if request.model == BASE:
            return None, None
        try:
            self.services.library.get(request.model)
        except LibraryError as exc:
            raise RequestError(404, str(exc), param="model", code="model_not_found") from None
        try:
            instead = 'Name another model, or "base".'
            return self.services.pick_packet(request.question, request.model, instead=instead)
        except LibraryError as exc:  # the usable-packet rule (fieldkit/store/usable.py)
            raise RequestError(403, str(exc), param="model", code="model_not_usable") from None

    def _route(self, question: str) -> tuple[PacketRecord | None, RouteDecision]:
        decision = self.router.route(question)
        record = self.services.library.get(decision.packet_id) if decision.packet_id else None
        return record, decision

    def plan(self, request: ChatRequest) -> Plan:
        """Return who answers `request` and its grounded prompt (library thread).

        The packet's notes ground the last user message as `fieldkit.answering.ground`
        grounds a question, so a one-question request is prompted exactly as `fieldkit
        ask` prompts it. RequestError 404/403 for a model that is unknown or may not answer.
        """
        from fieldkit.answering import engine_reader, ground

        record, decision = self._pick(request)
        index = self.passages if request.notes else None
        # While another request generates, the MLX thread is taken: weighing the passages
        # (ranking.READ_K) would hold this plan, and every library call queued behind it,
        # until that answer ends. The passages then keep the embedder's order.
        engine = self.services.engine
        reader = None if engine.generating else engine_reader(engine)
        try:
            grounding = ground(
                request.question, record, index, abstained=decision is not None,
                reader=reader, passage=request.passage,
            )  # fmt: skip
        except LibraryError as exc:  # a picked passage its packet's notes do not hold
            raise RequestError(404, str(exc), param="fieldkit", code="passage_not_found") from None
        messages = [dict(m) for m in request.messages]
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        messages[last_user : last_user + 1] = grounding.messages
        # `_pick` has checked the packet may answer here; an answer nothing will write
        # (grounding.said) needs no weights read.
        writes = record is not None and grounding.said is None
        adapter = self._adapter(record) if writes else None
        return Plan(record, adapter, decision, grounding, messages)

    # ---- answering -----------------------------------------------------------------

    async def answer(
        self, request: ChatRequest, cancel: threading.Event
    ) -> AsyncIterator[str | tuple[Plan, Answer | None]]:
        """Yield `(plan, None)` first, then text deltas, then `(plan, answer)`.

        The answer is `fieldkit.answering.finish`'s: sources and support marks included.
        Raises RequestError 503 when the queue is full, 404/403 for a bad model. Closing
        the iterator early, or setting `cancel`, stops the generation.
        """
        if self._closed:
            raise RequestError(503, "The server is shutting down.")
        if self._waiting >= self.limits.max_queue:
            self.stats.refused_busy += 1
            raise RequestError(
                503, f"{self._waiting} requests are already waiting; try again shortly."
            )
        self._waiting += 1
        self._live.add(cancel)
        from fieldkit.answering import finish
        from fieldkit.generating import astream

        outcome = "cancelled"  # unless the generation ends or fails
        try:
            plan = await self.on_library(lambda: self.plan(request))
            yield plan, None
            result: GenerationResult | None = None
            stream = astream(
                self.services.engine,
                replace(plan.grounding, messages=plan.messages),
                plan.adapter,
                max_tokens=request.max_tokens,
                stop=request.stop,
                temperature=request.temperature,
                cancel=cancel,
                clean=request.clean,
            )
            try:
                async for piece in stream:
                    if piece.result is not None:
                        result = piece.result
                    if piece.text:
                        yield piece.text
            finally:
                await stream.aclose()
            if result is not None and result.finish_reason != "cancelled":
                outcome = "served"
            if result is None:
                raise RequestError(500, "The engine ended without an answer.")
            if self._stopping and result.finish_reason == "cancelled":
                raise RequestError(
                    503, "The server stopped before the answer ended.", code="server_stopping"
                )
            yield plan, finish(plan.grounding, result.text, plan.decision, result)
        except RequestError as exc:  # an answer the stop cut short counts as cancelled
            outcome = "cancelled" if exc.code == "server_stopping" else "refused"
            raise
        except FieldkitError as exc:
            outcome = "failed"
            raise RequestError(400, str(exc)) from None
        finally:
            self._waiting -= 1
            self._live.discard(cancel)
            if outcome == "served":
                self.stats.served += 1
            elif outcome == "cancelled":
                self.stats.cancelled += 1
            elif outcome == "failed":
                self.stats.failed += 1

    @property
    def waiting(self) -> int:
        return self._waiting

    def stop_answers(self) -> None:
        """Refuse new requests and cut short the answers under way, each of which then
        ends with a 503 saying so (the server is stopping; event loop thread)."""
        self._closed = self._stopping = True
        for cancel in list(self._live):
            cancel.set()

    def close(self) -> None:
        """Stop the library thread and close the agent's services.

        Waits for a start-up load still running: torch and MLX work left on a thread while
        the interpreter exits can crash it.
        """
        self._closed = True
        if self._warming:
            self._warm.wait()

        def shut() -> None:
            self.services.close()

        closing = self._library_thread.submit(shut)
        self._library_thread.stop()
        closing.result()
