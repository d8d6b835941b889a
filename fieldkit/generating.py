"""How an answer's text is generated from its Grounding: the one generation path of `ask`,
the Ask screen and the agent (`stream`, `astream`).

Three shapes of answer:
- the notes settled it (`Grounding.said`): that text, and a result that counts no token;
- one prompt: the engine's own stream;
- a question that asks two or three things as many records answer (`Grounding.also`,
  from `ranking.other_asks`): the first record answers the question's other sentences
  (`ranking.own_ask`), then each next record the sentences it stands out for, each part
  marked with the source it comes from ("[1] ...", "[2] ...", "[3] ..."), a part only if
  the one before was not cancelled. The parts share the answer's `max_tokens`
  (`part_options`): each may use an even share of what the parts before it left. The
  last chunk carries one result for them all (`joined`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from fieldkit.engine.generation import GenerationChunk, GenerationResult, Job
from fieldkit.support import opening, recited

if TYPE_CHECKING:
    from fieldkit.answers import Grounding, Source
    from fieldkit.engine.engine import Engine
    from fieldkit.store.notes import Passage

FIRST_PART = "[1] "


def mark(n: int) -> str:
    """Return the mark that starts the answer's `n`th part ("[1] ", "\n\n[2] ", ...)."""
    return FIRST_PART if n == 1 else f"\n\n[{n}] "


def in_parts(*texts: str) -> str:
    """Return the text of an answer in parts from its parts' texts."""
    return "".join(mark(n) + text for n, text in enumerate(texts, 1))


def parts_of(text: str, count: int) -> list[str]:
    """Return the parts' texts of an answer written in up to `count` parts (in_parts'
    inverse; fewer when it stopped before the last); [text] for an answer in one."""
    if count < 2 or not text.startswith(FIRST_PART):
        return [text]
    out, rest = [], text[len(FIRST_PART) :]
    for n in range(2, count + 1):
        head, found, rest = rest.partition(mark(n))
        out.append(head)
        if not found:
            return out
    return [*out, rest]


@dataclass(frozen=True)
class WrittenResult(GenerationResult):
    """The result of an answer some of whose parts are their own records as written,
    because each began to write out another record (`Opening`)."""

    recited: tuple[tuple[int, str], ...] = ()  # (part, the passage id it began to write out)


class Opening:
    """Holds a part's text back until its opening is written (`support.opening`), then
    lets it through; or, when the opening writes out another record of the packet than
    the part's `own` source (`support.recited`), sets `other` to that record and shows
    nothing more: the part is then `own` as written."""

    def __init__(self, own: Source, others: Sequence[Passage]) -> None:
        self.own, self.others = own, others
        self.held = ""
        self.decided = False
        self.other: Passage | None = None

    def feed(self, text: str, done: bool = False) -> str:
        """Return what may be shown of the part after `text` ("" while it is held)."""
        if self.decided:
            return "" if self.other else text
        self.held += text
        start = opening(self.held, done)
        if start is None:
            return ""
        self.decided = True
        at = recited(start, self.own.full_text, [p.full_text for p in self.others])
        if at is not None:
            self.other = self.others[at]
            return ""
        return self.held

    def result(self, base: GenerationResult | None) -> WrittenResult:
        """Return the part's result once `other` is set: its text is its record as written
        (the counts are those of `base`, the generation's own, when it ended by itself)."""
        assert self.other is not None
        done = replace(base or _NOTHING, text=self.own.text, finish_reason="stop")
        return _recited(done, ((1, self.other.passage_id),))


def openings(grounding: Grounding) -> list[Opening]:
    """Return an Opening for each part the grounding's answer is written in (one a source
    the model reads), each checked against the packet's records not shown beside it; []
    when there is none to check against (no notes, or nothing but the sources)."""
    read = [s for s in grounding.sources if s.read]
    others = grounding.unshown_notes
    return [Opening(source, others) for source in read] if others else []


def as_streamed(grounding: Grounding, text: str) -> tuple[str, tuple[tuple[int, str], ...]]:
    """Return an answer's whole text as a clean `stream` shows it (each part that began to
    write out another record given as its own record), and those parts (see
    WrittenResult.recited): for a caller that holds the generated text already (the
    quality harness)."""
    checks = openings(grounding)
    if not checks:
        return text, ()
    parts, recites = parts_of(text, len(checks)), []
    for n, (check, part) in enumerate(zip(checks, parts, strict=False), 1):
        check.feed(part, done=True)
        if check.other is not None:
            parts[n - 1] = check.own.text
            recites.append((n, check.other.passage_id))
    whole = in_parts(*parts) if len(checks) > 1 and text.startswith(FIRST_PART) else parts[0]
    return whole, tuple(recites)


def stream(
    engine: Engine, grounding: Grounding, adapter: Any, **options: Any
) -> Iterator[GenerationChunk]:
    """Return the answer's chunks for the grounding (see the module's three shapes)."""
    if grounding.said is not None:
        return iter(_said(grounding.said))
    checks = openings(grounding) if options.get("clean") else []
    if not grounding.other_asks:
        chunks = engine.generate(grounding.messages, adapter, **options)
        return _opened(chunks, checks[0]) if checks else chunks
    return _in_parts(engine, grounding, adapter, options, checks)


async def astream(
    engine: Engine, grounding: Grounding, adapter: Any, **options: Any
) -> AsyncIterator[GenerationChunk]:
    """`stream` for asyncio code (the agent): the same parts, the same chunks."""
    if grounding.said is not None:
        for chunk in _said(grounding.said):
            yield chunk
        return
    checks = openings(grounding) if options.get("clean") else []
    if not grounding.other_asks:
        chunks = engine.astream(grounding.messages, adapter, **options)
        async for chunk in _aopened(chunks, checks[0] if checks else None):
            yield chunk
        return
    results: list[GenerationResult] = []
    for n, (mark, messages, part) in enumerate(_parts(grounding, options, results)):
        yield mark
        chunks = engine.astream(messages, adapter, **part)
        async for chunk in _aopened(chunks, checks[n] if n < len(checks) else None):
            if _shown(chunk, results):
                yield chunk
    yield _last(results)


def _opened(chunks: Iterator[GenerationChunk], check: Opening | None) -> Iterator[GenerationChunk]:
    """Pass a part's chunks on through its Opening check (`check` None: as they come)."""
    for chunk in chunks:
        out, stop = _through(check, chunk)
        if stop:  # leaving the engine's stream cancels the generation
            getattr(chunks, "close", lambda: None)()
        yield from out
        if stop:
            return


async def _aopened(
    chunks: AsyncIterator[GenerationChunk], check: Opening | None
) -> AsyncIterator[GenerationChunk]:
    """`_opened` for asyncio code."""
    async for chunk in chunks:
        out, stop = _through(check, chunk)
        close = getattr(chunks, "aclose", None)
        if stop and close is not None:
            await close()
        for piece in out:
            yield piece
        if stop:
            return


def _through(check: Opening | None, chunk: GenerationChunk) -> tuple[list[GenerationChunk], bool]:
    """Return what a part's `chunk` becomes through its Opening check (held back, or let
    through with its result, if any, in a chunk of its own), and whether the generation is
    to be left: once the opening writes out another record, the part is its own record as
    written, with its result."""
    if check is None:
        return [chunk], False
    shown = check.feed(chunk.text, chunk.done)
    if check.other is not None:
        result = check.result(chunk.result)
        return [GenerationChunk(check.own.text), GenerationChunk("", result)], True
    return [GenerationChunk(t, r) for t, r in ((shown, None), ("", chunk.result)) if t or r], False


def _in_parts(
    engine: Engine,
    grounding: Grounding,
    adapter: Any,
    options: dict[str, Any],
    checks: Sequence[Opening],
) -> Iterator[GenerationChunk]:
    results: list[GenerationResult] = []
    for n, (mark, messages, part) in enumerate(_parts(grounding, options, results)):
        yield mark
        chunks = engine.generate(messages, adapter, **part)
        for chunk in _opened(chunks, checks[n] if n < len(checks) else None):
            if _shown(chunk, results):
                yield chunk
    yield _last(results)


def _parts(
    grounding: Grounding, options: dict[str, Any], results: list[GenerationResult]
) -> Iterator[tuple[GenerationChunk, list[dict[str, str]], dict[str, Any]]]:
    """Yield, for each part to generate, the chunk of its mark ("[1] ", "[2] ", ...), its
    prompt and its options (`part_options`), while the caller's `results` (one a part
    generated) leave room for it."""
    prompts = [grounding.messages, *grounding.also]
    for n, messages in enumerate(prompts, 1):
        part = part_options(options, results, len(prompts))
        if part is None:
            return
        yield GenerationChunk(mark(n)), messages, part


def _shown(chunk: GenerationChunk, results: list[GenerationResult]) -> bool:
    """True for a text chunk, to pass on; a part's last chunk gives its result instead."""
    if chunk.result is None:
        return True
    results.append(chunk.result)
    return False


def _last(results: list[GenerationResult]) -> GenerationChunk:
    return GenerationChunk("", joined(results))


def part_options(
    options: dict[str, Any], done: list[GenerationResult], parts: int = 2
) -> dict[str, Any] | None:
    """Return the generation options of the next of an answer's `parts`, or None when no
    part is to follow: each may use an even share, rounded up, of what the answer's
    `max_tokens` has left after the parts `done` (the first of two half, the second what
    the first left); none follows a cancelled part or a spent budget."""
    budget = int(options.get("max_tokens", Job.max_tokens))  # the engine's own default
    left = budget - sum(r.generation_tokens for r in done)
    cancelled = bool(done) and done[-1].finish_reason == "cancelled"
    if cancelled or left < 1 or len(done) >= parts:
        return None
    share = -(-left // (parts - len(done)))  # rounded up
    return {**options, "max_tokens": share}


def joined(results: list[GenerationResult]) -> GenerationResult:
    """Return one result for the parts of an answer: their texts marked as parts (a lone
    part, cancelled before the second, keeps its mark), tokens and counts summed, rates
    over the summed time; its finish reason "cancelled" or "length" when any part's was
    (a first part cut at its share of the budget is a cut answer), else the last part's;
    a WrittenResult when any part is its record as written, numbered as the parts are."""
    last = results[-1]
    reasons = [r.finish_reason for r in results]
    reason = next((x for x in ("cancelled", "length") if x in reasons), last.finish_reason)
    text = in_parts(*(r.text for r in results))

    def rate(count: str, tps: str) -> float:
        seconds = sum(getattr(r, count) / getattr(r, tps) for r in results if getattr(r, tps))
        return sum(getattr(r, count) for r in results) / seconds if seconds else 0.0

    recited = tuple(
        (n, pid) for n, r in enumerate(results, 1) for _, pid in getattr(r, "recited", ())
    )
    if recited:
        last = _recited(last, recited)
    return replace(
        last,
        text=text,
        tokens=tuple(t for r in results for t in r.tokens),
        prompt_tokens=sum(r.prompt_tokens for r in results),
        generation_tokens=sum(r.generation_tokens for r in results),
        prompt_tps=rate("prompt_tokens", "prompt_tps"),
        generation_tps=rate("generation_tokens", "generation_tps"),
        swap_ms=sum(r.swap_ms for r in results),
        finish_reason=reason,
    )


# The result of an answer no model wrote: no token, no time.
_NOTHING = GenerationResult("", (), None, 0, 0, 0.0, 0.0, 0.0, "stop")


def _recited(result: GenerationResult, recited: tuple[tuple[int, str], ...]) -> WrittenResult:
    """Return `result` as a WrittenResult whose parts `recited` are their records."""
    kept = {f.name: getattr(result, f.name) for f in fields(GenerationResult)}
    return WrittenResult(**kept, recited=recited)


def _said(text: str) -> list[GenerationChunk]:
    return [GenerationChunk(text), GenerationChunk("", replace(_NOTHING, text=text))]
