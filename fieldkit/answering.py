"""Grounded answering: route, retrieve the packet's notes, prompt, generate, check support.

One pipeline, `answer`, serves `fieldkit ask`, `fieldkit demo`, the Ask screen and an HTTP
server. It builds nothing: the caller hands it the parts (the Services object, or `Parts`
made from an engine, a library, a router and a passage index). Its stages are public too
(`ground`, `grounded_messages`, `finish`) for callers that show the route before the
answer streams (the Ask screen) or score the answers (the quality harness).

No textual, no click here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from fieldkit.prompts import PROMPT_PASSAGES, check_question, grounded_prompt, reading_prefix
from fieldkit.router.notices import caution_message, gap_message, unlisted_answer
from fieldkit.router.ranking import Reader, own_ask
from fieldkit.router.retrieval import DEFAULT_K
from fieldkit.store.notes import TitledText
from fieldkit.support import Unsupported, states_numbers, support_check

if TYPE_CHECKING:
    from fieldkit.engine.engine import Engine, GenerationResult
    from fieldkit.router.retrieval import PassageIndex
    from fieldkit.router.router import RouteDecision, Router

# How the answer was made (Answer.grounding).
NOTES = "notes"  # the packet's passages were in the prompt, its adapter applied
GAP = "gap"  # the packet has notes, none covers the question: said first, adapter only
ADAPTER_ONLY = "adapter-only"  # the packet carries no notes
BASE = "base"  # no packet: the base model alone
# A gap answer shows this many of the passages nearest the question (marked as not used),
# and its support check runs against them: what it was checked against is on screen.
NEAREST_SHOWN = 1
# Said before an answer the base model writes because the router found no packet for the
# question (not when a person asks for the base model by hand): a small base model knows
# nothing of the field and, asked about it, writes fluent inventions.
BASE_CAUTION = (
    "No packet answers this: the base model answers alone, without any packet's knowledge "
    "or notes. Check it before acting on it."
)


@dataclass(frozen=True)
class Source(TitledText):
    """A passage an answer draws on (or, for a gap, the nearest one); `read` is False for
    one found and shown but not given to the model (see PROMPT_PASSAGES)."""

    packet: str
    packet_id: str
    passage_id: str
    score: float
    text: str
    title: str | None = None
    read: bool = True

    @property
    def label(self) -> str:
        """'packet passage-id (score)', with ', near, not read' for a passage the model
        was not given (shown for the reader to check)."""
        near = "" if self.read else ", near, not read"
        return f"{self.packet} {self.passage_id} ({self.score:.2f}{near})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "score": round(self.score, 4)}


class _Notice:
    """The sentence said before an answer, for a Grounding and an Answer alike, and the
    nearest passages a gap answer shows."""

    gap: str | None
    caution: str | None
    grounding: str
    nearest: list[Source]

    @property
    def notice(self) -> str | None:
        """The gap or the caution sentence, if either."""
        return self.gap or self.caution

    @property
    def nearest_shown(self) -> list[Source]:
        """A gap answer's nearest passages that are shown under it, marked as not used, and
        that its support check runs against (NEAREST_SHOWN); [] for any other answer."""
        return self.nearest[:NEAREST_SHOWN] if self.grounding == GAP else []

    def with_notice(self, text: str) -> str:
        """Return what a person reads of an answer's text: the notice (if any), then it."""
        return f"{self.notice}\n{text}" if self.notice else text


@dataclass(frozen=True)
class Grounding(_Notice):
    """What an answer will be made from: the packet, the passages, the prompt."""

    question: str
    packet: str | None
    packet_id: str | None
    grounding: str  # NOTES, GAP, ADAPTER_ONLY or BASE
    messages: list[dict[str, str]]
    sources: list[Source] = field(default_factory=list)
    nearest: list[Source] = field(default_factory=list)  # a gap's nearest passages
    gap: str | None = None  # the sentence a gap answer starts with
    caution: str | None = None  # the sentence said first when the passages may not fit
    said: str | None = None  # the whole answer, when nothing is to be generated (`stream`)
    other_asks: tuple[str, ...] = ()  # what each source after the first answers apart

    @property
    def also(self) -> list[list[dict[str, str]]]:
        """The prompts of the parts after the first (each of `other_asks` with its source),
        which fieldkit.generating answers after the first; [] for an answer in one part."""
        return [
            grounded_messages(ask, self.sources[n : n + 1])
            for n, ask in enumerate(self.other_asks, 1)
        ]


@dataclass(frozen=True)
class Answer(_Notice):
    """An answer and everything a person needs to judge it."""

    question: str
    text: str
    packet: str | None
    packet_id: str | None
    grounding: str
    sources: list[Source]
    unsupported: list[Unsupported]
    decision: RouteDecision | None = None
    gap: str | None = None
    nearest: list[Source] = field(default_factory=list)
    result: GenerationResult | None = None
    caution: str | None = None
    generated: bool = True  # False: the notes settled it and no model wrote it (`stream`)
    other_asks: tuple[str, ...] = ()  # what each part after [1] answers, in the asker's words

    @property
    def shown_text(self) -> str:
        """What a person reads: the gap or caution sentence (if any), then the answer."""
        return self.with_notice(self.text)

    @property
    def follows_unread(self) -> str | None:
        """Say so when the answer's numbers are all in a passage shown beside it but not
        given to the model, and not all in those it was given: the adapter wrote out that
        record from its weights, so the first source does not back the answer. None
        otherwise (also for an answer that states no number)."""
        given = [s.full_text for s in self.sources if s.read]
        if not given or not states_numbers(self.text) or not support_check(self.text, given):
            return None
        for n, source in enumerate(self.sources, 1):
            if not source.read and not support_check(self.text, [source.full_text]):
                return (
                    f"its numbers are those of [{n}], which the model was not given, not of "
                    f"[1]: check that [{n}] answers the question"
                )
        return None

    @property
    def note(self) -> str:
        """A short label of where the answer came from."""
        if not self.generated:
            return "nothing generated: the notes hold no record of it"
        if self.grounding == NOTES:
            return f"from the {self.packet} notes and adapter"
        if self.grounding in (GAP, ADAPTER_ONLY):
            return "from the adapter only"
        return "from the base model only"

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form used by `ask --json` (and an HTTP server)."""
        out: dict[str, Any] = {
            "question": self.question,
            "answer": self.text,
            "adapter": self.packet,
            "packet_id": self.packet_id,
            "grounding": self.grounding,
            "note": self.note,
            "gap": self.gap,
            "caution": self.caution,
            "sources": [s.to_dict() for s in self.sources],
            "nearest": [s.to_dict() for s in self.nearest],
            "unsupported": [u.to_dict() for u in self.unsupported],
            "follows_unread": self.follows_unread,
            "generated": self.generated,
            "other_ask": self.other_asks[0] if self.other_asks else None,
            "other_asks": list(self.other_asks),
        }
        if self.result is not None:
            r = self.result
            out.update(
                swap_ms=round(r.swap_ms, 3),
                prompt_tokens=r.prompt_tokens,
                generation_tokens=r.generation_tokens,
                prompt_tps=round(r.prompt_tps, 2),
                generation_tps=round(r.generation_tps, 2),
                finish_reason=r.finish_reason,
            )
        if self.decision is not None:
            d = self.decision
            out.update(
                route=d.route,
                score=round(d.score, 4),
                margin=round(d.margin, 4),
                route_ms=round(d.route_ms, 2),
                reason=d.reason,
                candidates=d.to_dict()["candidates"],
            )
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Answer:
        """Rebuild the Answer that `to_dict` gave (an agent's reply); its generation numbers
        come back without the token ids."""
        from dataclasses import fields

        from fieldkit.engine.generation import GenerationResult
        from fieldkit.router.router import Candidate, RouteDecision

        renamed = {"answer": "text", "adapter": "packet"}  # to_dict's names for these fields
        given = {renamed.get(key, key): value for key, value in data.items()}
        kept = {f.name for f in fields(cls)} - {"decision", "result"}
        plain = {name: given[name] for name in kept if name in given}
        decision = None
        if "reason" in given:  # routed, or abstained on: the route's own fields
            route = given.get("route")
            shown = [Candidate(**c) for c in given.get("candidates", [])]
            decision = RouteDecision(
                route, given.get("packet_id") if route else None, given.get("score", 0.0),
                given.get("margin", 0.0), shown, given.get("route_ms", 0.0), given["reason"],
            )  # fmt: skip
        result = None
        if "finish_reason" in given:  # no token ids, and no adapter key ("": not sent)
            result = GenerationResult(
                given["text"], (), "", given["prompt_tokens"],
                given["generation_tokens"], given["prompt_tps"], given["generation_tps"],
                given["swap_ms"], given["finish_reason"],
            )  # fmt: skip
        return cls(
            **{
                **plain,
                "decision": decision,
                "result": result,
                "sources": [Source(**s) for s in given["sources"]],
                "nearest": [Source(**s) for s in given["nearest"]],
                "unsupported": [Unsupported(**u) for u in given["unsupported"]],
                "other_asks": tuple(given.get("other_asks", ())),
            }
        )


# --- the prompt ---------------------------------------------------------------------------


def grounded_messages(question: str, hits: Sequence[TitledText]) -> list[dict[str, str]]:
    """Return the chat messages for a question and its passages ([] hits: the bare question).

    The passages come first, the question last, in one user turn (fieldkit.prompts, the
    format a packet trained on its notes has seen).
    """
    return [{"role": "user", "content": grounded_prompt(question, [h.full_text for h in hits])}]


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
) -> Grounding:
    """Decide what the answer is made from: the packet's top passage (see PROMPT_PASSAGES)
    when the passages found cover the question (saying first that they may not, in the
    cautious middle), else the packet's adapter alone (saying first that the notes have
    nothing), else the base model (saying first that it answers alone when the router
    `abstained`: BASE_CAUTION). With a `reader`, the passages ranked first are reordered as
    it reads them (READ_K). Returns the Grounding with the prompt to generate from."""
    bare = [{"role": "user", "content": question}]
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
        said = unlisted_answer(missing) if missing else None
        return Grounding(question, name, pid, GAP, bare, [], sources, message, said=said)
    asked = own_ask(question, [s for ask in coverage.other_asks for s in ask])  # [1]: the rest
    messages = grounded_messages(asked, coverage.hits[:PROMPT_PASSAGES])
    caution = (
        None if coverage.sure else caution_message(name, coverage.hits, coverage.unknown_codes)
    )
    return Grounding(
        question, name, pid, NOTES, messages, sources, caution=caution, other_asks=other
    )


def finish(
    grounding: Grounding,
    text: str,
    decision: RouteDecision | None = None,
    result: GenerationResult | None = None,
) -> Answer:
    """Return the Answer for generated `text`, with its support marks (checked against
    its sources, or for a gap answer the nearest passage shown: NEAREST_SHOWN)."""
    checked = grounding.sources or grounding.nearest_shown
    passages = [s.full_text for s in checked]
    return Answer(
        question=grounding.question,
        text=text,
        packet=grounding.packet,
        packet_id=grounding.packet_id,
        grounding=grounding.grounding,
        sources=grounding.sources,
        unsupported=[] if grounding.said else support_check(text, passages),  # ours: no marks
        decision=decision,
        gap=grounding.gap,
        nearest=grounding.nearest,
        result=result,
        caution=grounding.caution,
        generated=grounding.said is None,
        other_asks=grounding.other_asks,
    )


def answer(
    parts: AnswerParts,
    question: str,
    *,
    packet: str | None = None,
    base: bool = False,
    use_adapter: bool = True,
    use_notes: bool = True,
    k: int = DEFAULT_K,
    max_tokens: int = 256,
    clean: bool = True,
    on_ground: Callable[[Grounding, RouteDecision | None], None] | None = None,
    on_text: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
) -> Answer:
    """Answer one question: route (or the named `packet`, or `base`), retrieve, generate.

    `use_adapter=False` keeps the packet's notes but answers with the base model (the
    "retrieval only" line of a benchmark); `use_notes=False` answers as before notes.
    The passages ranked first are weighed by the base model (engine_reader).
    `on_ground` hears the route and the grounding before generation starts (to show the
    route, or a gap sentence, first); `on_text` receives the answer as it streams.
    Raises FieldkitError subclasses for an empty or too long question (check_question), a
    missing model, an unknown packet, or a packet made for another base model.
    """
    from fieldkit.errors import FieldkitError
    from fieldkit.generating import stream

    check_question(question)
    record, decision = parts.pick_packet(question, packet, base)
    index = parts.passages if use_notes else None
    reader = engine_reader(parts.engine)
    grounding = ground(question, record, index, k=k, abstained=decision is not None, reader=reader)
    adapter = parts.checked_adapter(record) if record is not None and use_adapter else None
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
