"""How an answer's text is generated from its Grounding: the one generation path of `ask`,
the Ask screen and the agent (`stream`, `astream`).

Three shapes of answer:
- the notes settled it (`Grounding.said`): that text, and a result that counts no token;
- one prompt: the engine's own stream;
- a question that asks two things two records answer (`Grounding.also`, from
  `ranking.other_ask_sentences`): the first record answers the question's other sentences
  (`ranking.own_ask`), then the second answers the sentences it stands out for, each part
  marked with the source it comes from
  ("[1] ...", "[2] ..."), the second only if the first was not cancelled. The two share
  the answer's `max_tokens` (`part_options`): the first may use half, the second what is
  left. The last chunk carries one result for both (`joined`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fieldkit.answering import Grounding
    from fieldkit.engine.engine import Engine
    from fieldkit.engine.generation import GenerationChunk, GenerationResult

FIRST_PART = "[1] "
SECOND_PART = "\n\n[2] "


def two_parts(first: str, second: str) -> str:
    """Return the text of a two-part answer from its parts' texts."""
    return f"{FIRST_PART}{first}{SECOND_PART}{second}"


def stream(
    engine: Engine, grounding: Grounding, adapter: Any, **options: Any
) -> Iterator[GenerationChunk]:
    """Return the answer's chunks for the grounding (see the module's three shapes)."""
    if grounding.said is not None:
        return iter(_said(grounding.said))
    if grounding.other_ask is None:
        return engine.generate(grounding.messages, adapter, **options)
    return _two(engine, grounding, adapter, options)


async def astream(
    engine: Engine, grounding: Grounding, adapter: Any, **options: Any
) -> AsyncIterator[GenerationChunk]:
    """`stream` for asyncio code (the agent): the same parts, the same chunks."""
    if grounding.said is not None:
        for chunk in _said(grounding.said):
            yield chunk
    elif grounding.other_ask is None:
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


def _two(
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
    """Yield, for each part to generate, the chunk of its mark ("[1] ", then "[2] "), its
    prompt and its options (`part_options`), while the caller's `results` (one a part
    generated) leave room for it."""
    from fieldkit.engine.generation import GenerationChunk

    for mark, messages in ((FIRST_PART, grounding.messages), (SECOND_PART, grounding.also)):
        part = part_options(options, results)
        if part is None or messages is None:
            return
        yield GenerationChunk(mark), messages, part


def _shown(chunk: GenerationChunk, results: list[GenerationResult]) -> bool:
    """True for a text chunk, to pass on; a part's last chunk gives its result instead."""
    if chunk.result is None:
        return True
    results.append(chunk.result)
    return False


def _last(results: list[GenerationResult]) -> GenerationChunk:
    from fieldkit.engine.generation import GenerationChunk

    return GenerationChunk("", joined(results))


def part_options(options: dict[str, Any], done: list[GenerationResult]) -> dict[str, Any] | None:
    """Return the generation options of an answer's next part, or None when no part is to
    follow: the first may use half the answer's `max_tokens` (rounded up), the second what
    the first left; none follows a cancelled part or a spent budget."""
    from fieldkit.engine.generation import Job

    budget = int(options.get("max_tokens", Job.max_tokens))  # the engine's own default
    if not done:
        return {**options, "max_tokens": (budget + 1) // 2}
    left = budget - sum(r.generation_tokens for r in done)
    if done[-1].finish_reason == "cancelled" or left < 1 or len(done) > 1:
        return None
    return {**options, "max_tokens": left}


def joined(results: list[GenerationResult]) -> GenerationResult:
    """Return one result for the parts of an answer: their texts marked as parts (a lone
    part, cancelled before the second, keeps its mark), tokens and counts summed, rates
    over the summed time; its finish reason "cancelled" or "length" when any part's was
    (a first part cut at its half of the budget is a cut answer), else the last part's."""
    first, last = results[0], results[-1]
    reasons = [r.finish_reason for r in results]
    reason = next((x for x in ("cancelled", "length") if x in reasons), last.finish_reason)
    text = two_parts(first.text, last.text) if len(results) > 1 else FIRST_PART + first.text

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
