"""The Ask screen's half of the backend: the route, the grounding and the streamed answer,
through the one answering pipeline's stages (fieldkit/answering.py). Mixed into TuiBackend;
no textual here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from fieldkit.errors import LibraryError
from fieldkit.store.usable import usable_problem
from fieldkit.tui.views import AnswerChunk, RouteView, SourceView

if TYPE_CHECKING:
    from fieldkit.answers import Source
    from fieldkit.services import Services


def source_view(source: Source, read: bool = True) -> SourceView:
    """Return an answers.Source as the Ask screen shows it, with whose record it is (a
    person may pick it to answer from: Ctrl+N)."""
    return SourceView(
        source.label, source.title, source.text, read,
        source.packet, source.packet_id, source.passage_id,
    )  # fmt: skip


class AskBackend:
    """Routing, grounding and answering for the Ask screen (mixed into TuiBackend)."""

    services: Services
    _router: Any
    _passages: Any
    _on_library_thread: Callable[..., Any]

    def route(self, question: str) -> RouteView:
        """Ask the router which packet should answer; 'base model' when none fits."""
        decision = self._on_library_thread(lambda lib: self._get_router(lib).route(question))
        records = {r.packet_id: r for r in self._on_library_thread(lambda lib: lib.list_packets())}
        packet_id = decision.packet_id
        runner = ""
        cands = list(decision.candidates or [])
        rest = [c for c in cands if c.packet_id != packet_id]
        if rest:
            runner = f"{rest[0].name} {rest[0].score:.2f}"
        from fieldkit.router.router import near_miss

        label = "base model"
        reason = str(decision.reason or "")
        near = near_miss(decision)
        if packet_id:  # the router only picks usable packets (store/usable.py)
            rec = records.get(packet_id)
            label = rec.name if rec else packet_id[:8]
        return RouteView(
            packet_id=packet_id,
            label=label,
            score=float(decision.score or 0.0),
            runner_up=runner or "-",
            reason=reason,
            route_ms=float(decision.route_ms or 0.0),
            nearest=near.name if near is not None else "",
        )

    def _get_router(self, lib: Any) -> Any:
        if self._router is None:
            self._router = self.services.make_router(lib)
        return self._router

    def manual_route(self, packet_id: str | None, name: str = "") -> RouteView:
        """Return a decision picked by hand: a packet, or None for the base model.

        Raises FieldkitError (one sentence) when the packet picked may no longer answer:
        removed since, its author blocked (the one usable-packet rule, store/usable.py)."""
        if packet_id is None:
            return RouteView(None, "base model", 0.0, "-", "picked by hand", 0.0, manual=True)

        def check(lib: Any) -> Any:
            try:
                rec = lib.get(packet_id)
            except LibraryError:
                raise LibraryError(f"The packet {name!r} is no longer in the library.") from None
            problem = usable_problem(lib, rec, self.services.base_fingerprint)
            if problem is not None:
                raise LibraryError(problem)
            return rec

        rec = self._on_library_thread(check)
        return RouteView(rec.packet_id, rec.name, 0.0, "-", "picked by hand", 0.0, manual=True)

    def _get_passages(self, lib: Any) -> Any:
        if self._passages is None:
            from fieldkit.router.retrieval import PassageIndex

            self._passages = PassageIndex(lib, self._get_router(lib).embedder)
        return self._passages

    def ground(
        self,
        question: str,
        packet_id: str | None,
        abstained: bool = False,
        passage: str | None = None,
    ) -> Any:
        """Return the fieldkit.answers.Grounding: the packet's passages, or why none
        (`abstained`: the router found no packet, said first: answering.BASE_CAUTION), or
        the `passage` a person picked (answering.picked).
        The library thread loads the packet's passages; the search and the model's reading
        of them run on the calling thread, so library work never waits behind the model."""
        from fieldkit.answering import engine_reader, ground

        def prepare(lib: Any) -> tuple[Any, Any]:
            record = lib.get(packet_id) if packet_id else None
            index = self._get_passages(lib) if record else None
            if index is not None:
                index.prepare(record.packet_id)
            return record, index

        record, index = self._on_library_thread(prepare)
        reader = engine_reader(self.services.engine)
        return ground(question, record, index, abstained=abstained, reader=reader, passage=passage)

    def answer(
        self,
        question: str,
        packet_id: str | None,
        cancel: threading.Event,
        max_tokens: int = 256,
        abstained: bool = False,
        passage: str | None = None,
    ) -> Iterator[AnswerChunk]:
        """Stream the answer from the engine (its own thread does the MLX work), grounded
        in the packet's notes when it has them (or in the `passage` a person picked); the
        last chunk carries sources and marks."""
        from fieldkit.answering import finish
        from fieldkit.generating import stream

        grounding = self.ground(question, packet_id, abstained, passage)
        if grounding.notice:
            yield AnswerChunk(notice=grounding.notice)
        adapter = None
        if packet_id and grounding.writes:  # no weights to read for an answer not written
            adapter = self._on_library_thread(lambda lib: lib.load_adapter(lib.get(packet_id)))
        for chunk in stream(
            self.services.engine,
            grounding,
            adapter,
            max_tokens=max_tokens,
            cancel=cancel,
            clean=True,
        ):
            result = chunk.result
            if result is None:
                yield AnswerChunk(text=chunk.text)
                continue
            done = finish(grounding, result.text, result=result)
            yield AnswerChunk(
                text=chunk.text,
                done=True,
                tokens_per_s=result.generation_tps,
                tokens=result.generation_tokens,
                stopped=result.finish_reason == "cancelled",
                note=done.note,
                sources=[source_view(s, s.read) for s in done.sources],
                nearest=[source_view(s) for s in done.nearest_shown],
                picked=done.picked,
                unsupported=[(u.start, u.end) for u in done.unsupported],
                final=done.text,
                warnings="\n".join(done.warnings) or None,
                generated=done.generated,
                as_written=done.as_written,
            )
