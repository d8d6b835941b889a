"""Grounded answering: route, retrieve the packet's notes, prompt, generate, check support.

One pipeline, `answer`, serves `fieldkit ask`, `fieldkit demo`, the Ask screen and an HTTP
server. It builds nothing: the caller hands it the parts (the Services object, or `Parts`
made from an engine, a library, a router and a passage index). Its stages are public too
(`ground`, `finish`) for callers that show the route before the answer streams (the Ask
screen) or score the answers (the quality harness). What it makes, the Grounding and the
Answer, is `fieldkit.answers`.

No textual, no click here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from fieldkit.answers import (
    ADAPTER_ONLY,
    BASE,
    GAP,
    NOTES,
    Answer,
    Grounding,
    Source,
    grounded_messages,
)
from fieldkit.prompts import PROMPT_PASSAGES, check_question, reading_prefix
from fieldkit.router.notices import (
    caution_message,
    gap_message,
    nearest_as_written,
    picked_message,
    recited_message,
    unlisted_answer,
    written_instead_message,
)
from fieldkit.router.ranking import Reader, own_ask
from fieldkit.router.retrieval import DEFAULT_K
from fieldkit.router.shorthand import written_out
from fieldkit.support import recited, support_check

if TYPE_CHECKING:
    from fieldkit.engine.engine import Engine, GenerationResult
    from fieldkit.router.retrieval import PassageIndex
    from fieldkit.router.router import RouteDecision, Router

# Said before an answer the base model writes because the router found no packet for the
# question (not when a person asks for the base model by hand): a small base model knows
# nothing of the field and, asked about it, writes fluent inventions.
BASE_CAUTION = (
    "No packet answers this: the base model answers alone, without any packet's knowledge "
    "or notes. Check it before acting on it."
)


def engine_reader(engine: Engine) -> Reader:
    """Return a Reader (fieldkit.router.ranking.READ_K) on the engine's base model: how
    well each passage explains the question, read as `prompts.reading_prefix` lays it out."""

    def read(question: str, texts: Sequence[str]) -> Any:
        return engine.mean_logprobs([reading_prefix(t) for t in texts], question)

    return read


# --- the pipeline -------------------------------------------------------------------------


class AnswerParts(Protocol):
    """What `answer` needs; fieldkit.services.Services offers it, and so does `Parts`."""

    @property
    def engine(self) -> Engine: ...

    @property
    def passages(self) -> PassageIndex: ...

    def pick_packet(
        self, question: str, name: str | None = None, base: bool = False
    ) -> tuple[Any, RouteDecision | None]: ...

    def checked_adapter(self, record: Any) -> Any: ...


@dataclass
class Parts:
    """`AnswerParts` from parts built elsewhere (a benchmark, a test, a server)."""

    engine: Engine
    library: Any
    router: Router | None
    passages: PassageIndex

    def pick_packet(
        self, question: str, name: str | None = None, base: bool = False
    ) -> tuple[Any, RouteDecision | None]:
        """A named packet wins, then `base`; otherwise the router decides."""
        if name:
            return self.library.get(name), None
        if base or self.router is None:
            return None, None
        decision = self.router.route(question)
        record = self.library.get(decision.packet_id) if decision.packet_id else None
        return record, decision

    def checked_adapter(self, record: Any) -> Any:
        return self.library.load_adapter(record)


def ground(
    question: str,
    record: Any | None,
    index: PassageIndex | None,
    *,
    k: int = DEFAULT_K,
    abstained: bool = False,
    reader: Reader | None = None,
    passage: str | None = None,
) -> Grounding:
    """Decide what the answer is made from: the packet's top passage (see PROMPT_PASSAGES)
    when the passages found cover the question (saying first that they may not, in the
    cautious middle), else their nearest record as written, nothing generated (saying first
    that the notes have nothing on it: notices.nearest_as_written), else the packet's
    adapter alone (a packet without notes), else the base model (saying first that it
    answers alone when the router `abstained`: BASE_CAUTION). With a `reader`, the passages
    ranked first are reordered as it reads them (READ_K). A `passage` id names the record a
    person picked to answer from (see `picked`). Returns the Grounding with the prompt to
    generate from."""
    if passage is not None:
        return picked(question, record, index, passage)
    as_read = written_out(question)  # the model reads it as the router and retrieval do
    bare = [{"role": "user", "content": as_read}]
    if record is None:
        caution = BASE_CAUTION if abstained else None
        return Grounding(question, None, None, BASE, bare, caution=caution)
    name, pid = record.name, record.packet_id
    if index is None or not index.has_notes(pid):
        return Grounding(question, name, pid, ADAPTER_ONLY, bare)
    coverage = index.coverage(pid, question, k, reader)
    other = tuple(" ".join(sentences) for sentences in coverage.other_asks)
    read = PROMPT_PASSAGES + len(other)
    sources = [
        Source(name, pid, h.passage_id, h.score, h.text, h.title, read=i < read)
        for i, h in enumerate(coverage.hits)
    ]
    if not coverage.covered:
        missing = coverage.missing_codes
        message = gap_message(name, coverage.hits, missing, coverage.family)
        said = unlisted_answer(missing) if missing else nearest_as_written(coverage.hits)
        return Grounding(question, name, pid, GAP, bare, [], sources, message, said=said)
    asked = own_ask(as_read, [s for ask in coverage.other_asks for s in ask])  # [1]: the rest
    messages = grounded_messages(asked, coverage.hits[:PROMPT_PASSAGES])
    caution = (
        None
        if coverage.sure
        else caution_message(name, coverage.hits, coverage.unknown_codes, coverage.unstated)
    )
    notes = tuple(index.passages(pid))
    return Grounding(
        question, name, pid, NOTES, messages, sources, caution=caution, other_asks=other,
        notes=notes,
    )  # fmt: skip


def picked(
    question: str, record: Any | None, index: PassageIndex | None, passage: str
) -> Grounding:
    """Return the Grounding of an answer from the record a person picked, whatever the notes
    judge of it (a gap answer's nearest record, which they may know to be theirs): it alone
    is in the prompt and is the source, and the answer says first whose pick it was.
    Raises LibraryError, in one sentence, when there is no such record to pick."""
    from fieldkit.errors import LibraryError
    from fieldkit.formats import shown_text

    if record is None:
        raise LibraryError("A record was picked, but no packet: name the packet it is from.")
    name, pid = record.name, record.packet_id
    if index is None or (hit := index.hit(pid, question, passage)) is None:
        has = index is not None and index.has_notes(pid)
        what = f"no record {shown_text(passage)!r}" if has else "no notes"
        raise LibraryError(f"The {name} packet has {what} to answer from.")
    source = Source(name, pid, hit.passage_id, hit.score, hit.text, hit.title)
    messages = grounded_messages(written_out(question), [hit])
    caution = picked_message(name, hit.passage_id, hit)
    return Grounding(
        question, name, pid, NOTES, messages, [source], caution=caution, picked=passage,
        notes=tuple(index.passages(pid)),
    )  # fmt: skip


def finish(
    grounding: Grounding,
    text: str,
    decision: RouteDecision | None = None,
    result: GenerationResult | None = None,
) -> Answer:
    """Return the Answer for generated `text`, with its support marks (checked against
    its sources; an answer with none, or not generated, has no marks). An answer each of
    whose parts is its record as written (WrittenResult.recited) was not generated."""
    from fieldkit.generating import parts_of

    passages = [s.full_text for s in grounding.sources]
    instead: tuple[tuple[int, str], ...] = getattr(result, "recited", ())
    read = sum(s.read for s in grounding.sources)
    written = grounding.writes and len(instead) < len(parts_of(text, read))
    return Answer(
        question=grounding.question,
        text=text,
        packet=grounding.packet,
        packet_id=grounding.packet_id,
        grounding=grounding.grounding,
        sources=grounding.sources,
        unsupported=support_check(text, passages) if grounding.writes else [],  # ours: no marks
        decision=decision,
        gap=grounding.gap,
        nearest=grounding.nearest,
        result=result,
        caution=grounding.caution,
        generated=written,
        other_asks=grounding.other_asks,
        picked=grounding.picked,
        recites=recites(grounding, text, instead) if grounding.writes else None,
        written_instead=tuple(n for n, _ in instead),
    )


def recites(grounding: Grounding, text: str, instead: Sequence[tuple[int, str]] = ()) -> str | None:
    """Return the sentence said after an answer from the notes whose part began to write
    out another record of the packet than the source it was given, and is that source as
    written instead (`instead`: WrittenResult.recited); else whose part writes one out
    later in its text (support.recited); None when every part follows its own. Records
    shown beside it are follows_unread's."""
    from fieldkit.generating import parts_of

    read = [s for s in grounding.sources if s.read]
    others = grounding.unshown_notes
    if instead:  # the first part given as its record instead
        n, pid = instead[0]
        other = next(p for p in others if p.passage_id == pid)
        return written_instead_message(grounding.packet or "", n, len(read), pid, other)
    for n, (part, source) in enumerate(zip(parts_of(text, len(read)), read, strict=False), 1):
        at = recited(part, source.full_text, [p.full_text for p in others])
        if at is not None:
            name = grounding.packet or ""
            return recited_message(name, n, len(read), others[at].passage_id, others[at])
    return None


def answer(
    parts: AnswerParts,
    question: str,
    *,
    packet: str | None = None,
    base: bool = False,
    use_adapter: bool = True,
    use_notes: bool = True,
    k: int = DEFAULT_K,
    passage: str | None = None,
    max_tokens: int = 256,
    clean: bool = True,
    on_ground: Callable[[Grounding, RouteDecision | None], None] | None = None,
    on_text: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
) -> Answer:
    """Answer one question: route (or the named `packet`, or `base`), retrieve, generate.

    `use_adapter=False` keeps the packet's notes but answers with the base model (the
    "retrieval only" line of a benchmark); `use_notes=False` answers as before notes.
    The passages ranked first are weighed by the base model (engine_reader). `passage`
    answers from the record of that id a person picked (see `picked`).
    `on_ground` hears the route and the grounding before generation starts (to show the
    route, or a gap sentence, first); `on_text` receives the answer as it streams.
    Raises FieldkitError subclasses for an empty or too long question (check_question), a
    missing model, an unknown packet or picked record, or a packet made for another base
    model.
    """
    from fieldkit.errors import FieldkitError
    from fieldkit.generating import stream

    check_question(question)
    record, decision = parts.pick_packet(question, packet, base)
    index = parts.passages if use_notes else None
    reader = engine_reader(parts.engine)
    abstained = decision is not None
    grounding = ground(
        question, record, index, k=k, abstained=abstained, reader=reader, passage=passage
    )
    writes = record is not None and use_adapter and grounding.writes
    adapter = parts.checked_adapter(record) if writes else None
    if on_ground is not None:
        on_ground(grounding, decision)
    result = None
    for chunk in stream(
        parts.engine, grounding, adapter, max_tokens=max_tokens, clean=clean, cancel=cancel
    ):
        if chunk.text and on_text is not None:
            on_text(chunk.text)
        if chunk.result is not None:
            result = chunk.result
    if result is None:  # pragma: no cover - the engine always ends with a result
        raise FieldkitError("The engine ended without an answer.")
    return finish(grounding, result.text, decision, result)
