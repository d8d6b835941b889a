"""One generation: its options, its chunks and result, and the text it shows.

The engine queues a `Job` on its MLX thread; `run_job` generates there, feeding every
token's text through the stop-string scanner and (with `clean`) the sentence cleaner, and
hands each piece to the job's `emit`. No mlx is imported here: the runtime is passed in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict

from fieldkit.engine.clean import CleanText
from fieldkit.engine.parts import StopScanner
from fieldkit.errors import FieldkitError
from fieldkit.store.adapter import Adapter

if TYPE_CHECKING:
    from fieldkit.engine.mlx_backend import MlxRuntime


class GenerateOptions(TypedDict, total=False):
    """The keyword options of Engine.generate and Engine.astream (defaults: see Job)."""

    max_tokens: int
    stop: Sequence[str]
    temperature: float
    cancel: threading.Event | None
    clean: bool


@dataclass(frozen=True)
class GenerationResult:
    """The whole answer and its numbers; carried by the last chunk of a generation."""

    text: str
    tokens: tuple[int, ...]
    adapter: str | None  # the adapter's key, None for the base model
    prompt_tokens: int
    generation_tokens: int
    prompt_tps: float
    generation_tps: float
    swap_ms: float
    finish_reason: str  # "stop" (EOS or a stop string), "length", "repeat" or "cancelled"


@dataclass(frozen=True)
class GenerationChunk:
    """A text delta; the last chunk has `result` set (and usually empty text)."""

    text: str
    result: GenerationResult | None = None

    @property
    def done(self) -> bool:
        return self.result is not None


@dataclass
class Job:
    """One generation's parameters and its way back to the caller.

    Raises FieldkitError for `max_tokens` below 1 (TypeError for an unknown option).
    """

    messages: list[dict[str, str]]
    adapter: Adapter | None
    emit: Callable[[GenerationChunk | BaseException], None]
    max_tokens: int = 256
    stop: Sequence[str] = ()
    temperature: float = 0.0
    cancel: threading.Event | None = None
    clean: bool = False
    abandoned: threading.Event = field(default_factory=threading.Event)  # the reader left

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise FieldkitError("max_tokens must be at least 1.")
        self.stop = tuple(self.stop)

    def cancelled(self) -> bool:
        """True once the reader has gone or the caller's `cancel` event is set."""
        return self.abandoned.is_set() or (self.cancel is not None and self.cancel.is_set())


def run_job(runtime: MlxRuntime, job: Job, swap_ms: float) -> None:
    """Generate the job's answer on the MLX thread; emit its text chunks, then the result.

    Exceptions propagate to the caller (the engine hands them to the job's reader).
    """
    prompt = runtime.encode_chat(job.messages)
    room = runtime.context - len(prompt) if runtime.context else job.max_tokens
    if room < 1:  # past what it was trained to read, a model writes noise
        raise FieldkitError(
            f"The prompt comes to {len(prompt):,} tokens, and the model reads at most "
            f"{runtime.context:,} at once: ask in fewer words."
        )
    scanner = StopScanner(job.stop)
    cleaner = CleanText() if job.clean else None
    parts: list[str] = []

    def show(text: str) -> None:
        if cleaner is not None:
            text = cleaner.feed(text)
        if text:
            parts.append(text)
            job.emit(GenerationChunk(text))

    def emit(delta: str) -> bool:
        show(scanner.feed(delta))
        return not (scanner.stopped or (cleaner is not None and cleaner.stopped))

    stats = runtime.generate(
        prompt,
        max_tokens=min(job.max_tokens, room),  # the answer, too, within what it reads
        temperature=job.temperature,
        emit=emit,
        cancelled=job.cancelled,
    )
    show(scanner.flush())
    finish_reason = stats.finish_reason
    if cleaner is not None:
        if cleaner.repeated:
            finish_reason = "repeat"
        elif tail := cleaner.finish(natural=finish_reason == "stop"):
            parts.append(tail)
            job.emit(GenerationChunk(tail))
    result = GenerationResult(
        text="".join(parts),
        tokens=tuple(stats.tokens),
        adapter=job.adapter.key if job.adapter else None,
        prompt_tokens=stats.prompt_tokens,
        generation_tokens=len(stats.tokens),
        prompt_tps=stats.prompt_tps,
        generation_tps=stats.generation_tps,
        swap_ms=swap_ms,
        finish_reason=finish_reason,
    )
    job.emit(GenerationChunk("", result))
