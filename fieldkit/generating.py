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

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fieldkit.answers import Grounding
    from fieldkit.engine.engine import Engine
    from fieldkit.engine.generation import GenerationChunk, GenerationResult

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


def stream(
    engine: Engine, grounding: Grounding, adapter: Any, **options: Any
) -> Iterator[GenerationChunk]:
    """Return the answer's chunks for the grounding (see the module's three shapes)."""
    if grounding.said is not None:
        return iter(_said(grounding.said))
    if not grounding.other_asks:
        return engine.generate(grounding.messages, adapter, **options)
    return _in_parts(engine, grounding, adapter, options)


async def astream(
    engine: Engine, grounding: Grounding, adapter: Any, **options: Any
) -> AsyncIterator[GenerationChunk]:
    """`stream` for asyncio code (the agent): the same parts, the same chunks."""
    if grounding.said is not None:
        for chunk in _said(grounding.said):
            yield chunk
    elif not grounding.other_asks:
        async for chunk in engine.astream(grounding.messages, adapter, **options):
            yield chunk
    else:
        results: list[GenerationResult] = []
        for mark, messages, part in _parts(grounding, options, results):
            yield mark
            async for chunk in engine.astream(messages, adapter, **part):
                if _shown(chunk, results):
                    yield chunk
        yield _last(results)


def _in_parts(
    engine: Engine, grounding: Grounding, adapter: Any, options: dict[str, Any]
) -> Iterator[GenerationChunk]:
    results: list[GenerationResult] = []
    for mark, messages, part in _parts(grounding, options, results):
        yield mark
        for chunk in engine.generate(messages, adapter, **part):
            if _shown(chunk, results):
                yield chunk
    yield _last(results)


def _parts(
    grounding: Grounding, options: dict[str, Any], results: list[GenerationResult]
) -> Iterator[tuple[GenerationChunk, list[dict[str, str]], dict[str, Any]]]:
    """Yield, for each part to generate, the chunk of its mark ("[1] ", "[2] ", ...), its
    prompt and its options (`part_options`), while the caller's `results` (one a part
    generated) leave room for it."""
    from fieldkit.engine.generation import GenerationChunk

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
    from fieldkit.engine.generation import GenerationChunk

    return GenerationChunk("", joined(results))


def part_options(
    options: dict[str, Any], done: list[GenerationResult], parts: int = 2
) -> dict[str, Any] | None:
    """Return the generation options of the next of an answer's `parts`, or None when no
    part is to follow: each may use an even share, rounded up, of what the answer's
    `max_tokens` has left after the parts `done` (the first of two half, the second what
    the first left); none follows a cancelled part or a spent budget."""
    from fieldkit.engine.generation import Job

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
    (a first part cut at its share of the budget is a cut answer), else the last part's."""
    last = results[-1]
    reasons = [r.finish_reason for r in results]
    reason = next((x for x in ("cancelled", "length") if x in reasons), last.finish_reason)
    text = in_parts(*(r.text for r in results))

    def rate(count: str, tps: str) -> float:
        seconds = sum(getattr(r, count) / getattr(r, tps) for r in results if getattr(r, tps))
        return sum(getattr(r, count) for r in results) / seconds if seconds else 0.0

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


def _said(text: str) -> list[GenerationChunk]:
    from fieldkit.engine.generation import GenerationChunk, GenerationResult

    done = GenerationResult(text, (), None, 0, 0, 0.0, 0.0, 0.0, "stop")
    return [GenerationChunk(text), GenerationChunk("", done)]
