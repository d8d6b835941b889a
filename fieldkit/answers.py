"""What an answer is: where it came from, the passages it draws on, and its JSON form.

`fieldkit.answering` makes them (route, retrieve, prompt, generate, check support); the
commands, the screens and the agent read them. No textual, no click, no MLX here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from fieldkit.prompts import grounded_prompt
from fieldkit.store.notes import Passage, TitledText
from fieldkit.support import Unsupported, states_numbers, support_check

if TYPE_CHECKING:
    from fieldkit.engine.engine import GenerationResult
    from fieldkit.router.router import RouteDecision

# How the answer was made (Answer.grounding).
NOTES = "notes"  # the packet's passages were in the prompt, its adapter applied
GAP = "gap"  # the packet has notes, none covers the question: said first, then the nearest
# record as written (Answer.as_written), or the adapter's guess when the notes hold none
ADAPTER_ONLY = "adapter-only"  # the packet carries no notes
BASE = "base"  # no packet: the base model alone
# A gap answer shows this many of the passages nearest the question: the first as its
# text (Answer.as_written), or marked as not used under a code the notes do not list.
NEAREST_SHOWN = 1


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
        """A gap answer's nearest passages that are shown with it (NEAREST_SHOWN); [] for
        any other answer."""
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
    picked: str | None = None  # the passage id a person picked to answer from
    # the packet's passages, for an answer from its notes: what it may write out instead of
    # its sources (support.recited)
    notes: tuple[Passage, ...] = ()

    @property
    def writes(self) -> bool:
        """Whether a model writes the answer (with the packet's weights); False when the
        notes settled it (`said`): nothing to generate, no weights to load."""
        return self.said is None

    @property
    def unshown_notes(self) -> list[Passage]:
        """The packet's records that are not among the answer's sources: those it may
        write out instead of its own (support.recited)."""
        shown = {s.passage_id for s in self.sources}
        return [p for p in self.notes if p.passage_id not in shown]

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
    # what each part after [1] answers, in the asker's words (shorthand written out:
    # fieldkit.router.shorthand)
    other_asks: tuple[str, ...] = ()
    picked: str | None = None  # the passage id a person picked to answer from
    # said after an answer that writes out another record of the packet than its source
    # (support.recited, notices.recited_message), or that began to and is its record as
    # written instead (notices.written_instead_message)
    recites: str | None = None
    # the parts (1, 2, ...) given as their own record as written, because each began to
    # write out another record (fieldkit.generating.Opening)
    written_instead: tuple[int, ...] = ()

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
    def warnings(self) -> list[str]:
        """The sentences said after the answer when its source may not back it
        (follows_unread, recites)."""
        return [said for said in (self.follows_unread, self.recites) if said]

    @property
    def as_written(self) -> bool:
        """Whether the answer is a gap's nearest record as written (nothing generated:
        notices.nearest_as_written)."""
        shown = self.nearest_shown
        return not self.generated and bool(shown) and self.text == shown[0].text

    @property
    def note(self) -> str:
        """A short label of where the answer came from."""
        if self.as_written:
            return "nothing generated: the nearest record as written"
        if self.written_instead and not self.generated:
            return "nothing generated: the record found, as written"
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
            "as_written": self.as_written,
            "other_ask": self.other_asks[0] if self.other_asks else None,
            "other_asks": list(self.other_asks),
            "picked": self.picked,
            "recites": self.recites,
            "written_instead": list(self.written_instead),
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
                "written_instead": tuple(given.get("written_instead", ())),
            }
        )


def grounded_messages(question: str, hits: Sequence[TitledText]) -> list[dict[str, str]]:
    """Return the chat messages for a question and its passages ([] hits: the bare question).

    The passages come first, the question last, in one user turn (fieldkit.prompts, the
    format a packet trained on its notes has seen).
    """
    return [{"role": "user", "content": grounded_prompt(question, [h.full_text for h in hits])}]
