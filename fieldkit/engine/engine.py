"""The engine: one resident base model, LoRA adapters swapped in place, streamed answers.

All MLX work runs on one dedicated thread (MLX streams are thread-local); every public
method may be called from any thread and hands its work to that thread. mlx is imported
there, on first use, through `fieldkit.engine.mlx_backend`.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fieldkit.engine.clean import CleanText
from fieldkit.engine.parts import ByteLRU, StopScanner, as_messages
from fieldkit.errors import FieldkitError, ModelError
from fieldkit.store.adapter import Adapter, AdapterConfig
from fieldkit.store.models import ModelInfo, model_info

if TYPE_CHECKING:
    import numpy as np

    from fieldkit.engine.mlx_backend import MlxRuntime, PreparedAdapter

DEFAULT_CACHE_BYTES = 256 * 1024 * 1024
Prompt = str | Sequence[dict[str, str]]
T = TypeVar("T")


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
class _Job:
    """One generation's parameters and its way back to the caller."""

    messages: list[dict[str, str]]
    adapter: Adapter | None
    max_tokens: int
    stop: Sequence[str]
    temperature: float
    emit: Callable[[GenerationChunk | BaseException], None]
    cancelled: Callable[[], bool]
    clean: bool = False


class _MlxWorker:
    """One daemon thread running submitted calls in order.

    Unlike ThreadPoolExecutor, whose threads are joined at interpreter exit, a daemon thread
    lets a person quit while the model is still loading.
    """

    def __init__(self, on_exit: Callable[[], None] = lambda: None) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple] | None] = (
            queue.SimpleQueue()
        )
        self._on_exit = on_exit
        self._thread = threading.Thread(target=self._run, name="fieldkit-mlx", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        self._jobs.put((future, fn, args))
        return future

    def shutdown(self, wait: bool = True) -> None:
        self._jobs.put(None)
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        try:
            while (job := self._jobs.get()) is not None:
                future, fn, args = job
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # handed to the caller, who re-raises it
                    future.set_exception(exc)
        finally:
            # Last, while this thread still holds a Python thread state: see
            # mlx_backend.release_thread for the abort it prevents.
            self._on_exit()


@dataclass
class Engine:
    """A base model kept resident, with LoRA adapters swapped onto it in milliseconds.

    `profile` is the adapter shape whose LoRA slots are installed at load (the library's
    default: all 7 projections on all layers). An adapter needing other slots widens
    them once; any rank fits a slot. `cache_bytes` bounds the in-RAM LRU of converted
    adapters.
    """

    model_dir: Path
    profile: AdapterConfig = field(default_factory=AdapterConfig)
    cache_bytes: int = DEFAULT_CACHE_BYTES
    _executor: _MlxWorker | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _runtime: MlxRuntime | None = field(default=None, init=False, repr=False)
    _cache: ByteLRU[PreparedAdapter] = field(init=False, repr=False)
    _info: ModelInfo | None = field(default=None, init=False, repr=False)
    _live: set[threading.Event] = field(default_factory=set, init=False, repr=False)
    _mlx_thread: int = field(default=0, init=False, repr=False)
    reinstall_ms: list[float] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.model_dir = Path(self.model_dir)
        self._cache = ByteLRU(self.cache_bytes)

    # ---- thread plumbing -------------------------------------------------------------

    def _submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        with self._lock:
            if self._executor is None:
                self._executor = _MlxWorker(on_exit=self._release_thread)
            return self._executor.submit(fn, *args)

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return self._submit(fn, *args).result()

    # ---- public API --------------------------------------------------------------------

    def info(self) -> ModelInfo:
        """Return the model's ModelInfo (no mlx needed); raise ModelError if not a model."""
        if self._info is None:
            if not (self.model_dir / "config.json").exists():
                raise ModelError(
                    f"No base model in {self.model_dir}; run `fieldkit model install-default` "
                    "or pass --model PATH."
                )
            self._info = model_info(self.model_dir)
        return self._info

    @property
    def fingerprint(self) -> str:
        return self.info().fingerprint

    def load(self) -> ModelInfo:
        """Load the base model and install the LoRA slots (blocking, idempotent)."""
        info = self.info()
        self._call(self._runtime_or_load)
        return info

    @property
    def loaded(self) -> bool:
        return self._runtime is not None

    def swap(self, adapter: Adapter | None) -> float:
        """Make `adapter` (None = base model) the active one; return the milliseconds spent."""
        self.load()
        return self._call(self._swap, adapter)

    def generate(
        self,
        prompt: Prompt,
        adapter: Adapter | None = None,
        *,
        max_tokens: int = 256,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        cancel: threading.Event | None = None,
        clean: bool = False,
    ) -> Iterator[GenerationChunk]:
        """Stream the answer as text deltas; the last chunk carries the GenerationResult.

        Greedy unless `temperature` > 0. Stops at EOS, at a stop string (not shown), after
        `max_tokens`, or when `cancel` is set. Leaving the loop early cancels too.
        `clean=True` shows whole sentences only, stops when the model repeats itself
        (finish reason "repeat") and drops a sentence the token budget cut off
        (fieldkit.engine.clean).
        """
        messages = as_messages(prompt)
        self.load()
        inbox: queue.SimpleQueue[GenerationChunk | BaseException] = queue.SimpleQueue()
        args = (messages, adapter, max_tokens, stop, temperature, cancel)
        abandoned = self._start(*args, emit=inbox.put, clean=clean)
        try:
            while True:
                item = inbox.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.result is not None:
                    return
        finally:
            self._forget(abandoned)

    async def astream(
        self,
        prompt: Prompt,
        adapter: Adapter | None = None,
        *,
        max_tokens: int = 256,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        cancel: threading.Event | None = None,
        clean: bool = False,
    ) -> AsyncIterator[GenerationChunk]:
        """The same stream as `generate`, for asyncio code (the TUI); loads if needed."""
        messages = as_messages(prompt)
        await asyncio.to_thread(self.load)
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[GenerationChunk | BaseException] = asyncio.Queue()
        args = (messages, adapter, max_tokens, stop, temperature, cancel)
        abandoned = self._start(
            *args, emit=lambda item: loop.call_soon_threadsafe(inbox.put_nowait, item), clean=clean
        )
        try:
            while True:
                item = await inbox.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.result is not None:
                    return
        finally:
            self._forget(abandoned)

    def answer(
        self, prompt: Prompt, adapter: Adapter | None = None, **kwargs: Any
    ) -> GenerationResult:
        """Run `generate` to the end and return its GenerationResult."""
        for chunk in self.generate(prompt, adapter, **kwargs):
            if chunk.result is not None:
                return chunk.result
        raise AssertionError("generation ended without a result")  # pragma: no cover

    def next_token_logits(self, prompt: Prompt, adapter: Adapter | None = None) -> np.ndarray:
        """Return float32 logits for the first answer token (for checks and evaluation)."""
        messages = as_messages(prompt)
        self.load()

        def work() -> np.ndarray:
            runtime = self._runtime_or_load()
            self._swap(adapter)
            return runtime.next_token_logits(runtime.encode_chat(messages))

        return self._call(work)

    def cached_adapters(self) -> list[str]:
        """Return the keys of the converted adapters held in RAM, least recent first."""
        return [key[0] for key in self._cache.order()]

    @property
    def cached_bytes(self) -> int:
        return self._cache.total_bytes

    def close(self) -> None:
        """Cancel running generations, free the model, stop the MLX thread (idempotent)."""
        for event in list(self._live):
            event.set()
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.submit(self._unload)
            executor.shutdown(wait=True)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- on the MLX thread -------------------------------------------------------------

    def _runtime_or_load(self) -> MlxRuntime:
        # Every MLX call goes through here; a call from another thread is a bug in fieldkit.
        if self._runtime is None:
            from fieldkit.engine.mlx_backend import MlxRuntime

            self._mlx_thread = threading.get_ident()  # set first: a failed load used MLX too
            self._runtime = MlxRuntime(self.model_dir, self.profile)
        elif threading.get_ident() != self._mlx_thread:
            raise RuntimeError("MLX work must run on the engine's own thread.")
        return self._runtime

    def _unload(self) -> None:
        self._runtime = None
        self._cache.clear()

    def _release_thread(self) -> None:
        # Runs as the MLX thread ends; only a thread that tried to load the model ran MLX.
        if self._mlx_thread == threading.get_ident():
            self._unload()
            from fieldkit.engine.mlx_backend import release_thread

            release_thread()
            self._mlx_thread = 0

    def _swap(self, adapter: Adapter | None) -> float:
        runtime = self._runtime_or_load()
        resident = runtime.resident
        tic = time.perf_counter()
        if adapter is None:
            resident.apply(None)
            return (time.perf_counter() - tic) * 1000
        cache_key = (adapter.key, adapter.config)
        prepared = self._cache.get(cache_key) if adapter.key else None
        if prepared is not None and prepared is resident.active:
            return (time.perf_counter() - tic) * 1000
        if prepared is None:
            if not resident.covers(adapter.config):
                self.reinstall_ms.append(resident.install(adapter.config))
            prepared = resident.prepare(adapter)
            if adapter.key:
                self._cache.put(cache_key, prepared, prepared.nbytes)
        resident.apply(prepared)
        return (time.perf_counter() - tic) * 1000

    def _start(
        self,
        messages: list[dict[str, str]],
        adapter: Adapter | None,
        max_tokens: int,
        stop: Sequence[str],
        temperature: float,
        cancel: threading.Event | None,
        *,
        emit: Callable[[GenerationChunk | BaseException], None],
        clean: bool = False,
    ) -> threading.Event:
        """Queue a generation whose chunks go to `emit`; return its 'abandoned' event."""
        abandoned = threading.Event()
        job = self._job(messages, adapter, max_tokens, stop, temperature, cancel, abandoned)
        job.emit, job.clean = emit, clean
        self._submit(self._run_job, job)
        return abandoned

    def _forget(self, abandoned: threading.Event) -> None:
        """Stop a generation whose reader has gone (idempotent)."""
        abandoned.set()
        self._live.discard(abandoned)

    def _job(
        self,
        messages: list[dict[str, str]],
        adapter: Adapter | None,
        max_tokens: int,
        stop: Sequence[str],
        temperature: float,
        cancel: threading.Event | None,
        abandoned: threading.Event,
    ) -> _Job:
        if max_tokens < 1:
            raise FieldkitError("max_tokens must be at least 1.")
        self._live.add(abandoned)

        def cancelled() -> bool:
            return abandoned.is_set() or (cancel is not None and cancel.is_set())

        return _Job(
            messages, adapter, max_tokens, tuple(stop), temperature, lambda _: None, cancelled
        )

    def _run_job(self, job: _Job) -> None:
        try:
            runtime = self._runtime_or_load()
            swap_ms = self._swap(job.adapter)
            prompt = runtime.encode_chat(job.messages)
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
                max_tokens=job.max_tokens,
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
        except BaseException as exc:  # handed to the caller's thread, raised there
            job.emit(exc)
