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
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

from fieldkit.engine.generation import (
    GenerateOptions,
    GenerationChunk,
    GenerationResult,
    Job,
    run_job,
)
from fieldkit.engine.parts import ByteLRU, MlxWorker, Prompt, as_messages
from fieldkit.errors import ModelError
from fieldkit.store.adapter import Adapter, AdapterConfig
from fieldkit.store.models import ModelInfo, model_info

if TYPE_CHECKING:
    import numpy as np

    from fieldkit.engine.mlx_backend import MlxRuntime, PreparedAdapter

__all__ = ["DEFAULT_CACHE_BYTES", "Engine", "GenerationChunk", "GenerationResult", "Prompt"]

DEFAULT_CACHE_BYTES = 256 * 1024 * 1024
# A caller waiting on the MLX thread wakes this often. The kernel may hand Ctrl-C or SIGTERM
# to any thread, and Python runs its handler only when the main thread wakes: a main thread
# blocked with no timeout on a long load would not hear the stop until the load ended.
SIGNAL_POLL_S = 0.2
T = TypeVar("T")


def _wait(future: Future[T]) -> T:
    """Return the future's result, waking every SIGNAL_POLL_S so a signal is handled."""
    while True:
        try:
            return future.result(timeout=SIGNAL_POLL_S)
        except FutureTimeout:
            continue


def _next(inbox: queue.SimpleQueue[GenerationChunk | BaseException]) -> GenerationChunk:
    """Return the next chunk from the MLX thread, waking as `_wait` does."""
    while True:
        try:
            return _unwrap(inbox.get(timeout=SIGNAL_POLL_S))
        except queue.Empty:
            continue


def _unwrap(item: GenerationChunk | BaseException) -> GenerationChunk:
    """Return a chunk from the MLX thread; raise the exception it sent instead."""
    if isinstance(item, BaseException):
        raise item
    return item


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
    _executor: MlxWorker | None = field(default=None, init=False, repr=False)
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
                self._executor = MlxWorker(on_exit=self._release_thread)
            return self._executor.submit(fn, *args)

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return _wait(self._submit(fn, *args))

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

    def load_unless(self, cancelled: Callable[[], bool], poll_s: float = 0.1) -> bool:
        """Load as `load` does, but stop waiting (the load goes on) once `cancelled()` is
        true; return whether the model is loaded. For a caller whose wait would hold up
        its own exit (the TUI quit while the model loads: see `close`)."""
        self.info()
        future = self._submit(self._runtime_or_load)
        while True:
            try:
                future.result(timeout=poll_s)
                return True
            except FutureTimeout:
                if cancelled():
                    return False

    @property
    def loaded(self) -> bool:
        return self._runtime is not None

    @property
    def generating(self) -> bool:
        """True while a generation is queued or running (its stream not yet closed)."""
        return bool(self._live)

    def swap(self, adapter: Adapter | None) -> float:
        """Make `adapter` (None = base model) the active one; return the milliseconds spent."""
        self.load()
        return self._call(self._swap, adapter)

    def generate(
        self, prompt: Prompt, adapter: Adapter | None = None, **options: Unpack[GenerateOptions]
    ) -> Iterator[GenerationChunk]:
        """Stream the answer as text deltas; the last chunk carries the GenerationResult.

        Options: `max_tokens` (256), `stop` strings (not shown), `temperature` (0.0:
        greedy), `cancel` (a threading.Event), `clean` (False). Stops at EOS, at a stop
        string, after `max_tokens`, or when `cancel` is set; leaving the loop early cancels
        too. `clean=True` shows whole sentences only, stops when the model repeats itself
        (finish reason "repeat") and drops a sentence the token budget cut off
        (fieldkit.engine.clean). Raises FieldkitError for a bad prompt or option.
        """
        messages = as_messages(prompt)
        self.load()
        inbox: queue.SimpleQueue[GenerationChunk | BaseException] = queue.SimpleQueue()
        abandoned = self._start(Job(messages, adapter, inbox.put, **options))
        try:
            while not (item := _next(inbox)).done:
                yield item
            yield item
        finally:
            self._forget(abandoned)

    async def astream(
        self, prompt: Prompt, adapter: Adapter | None = None, **options: Unpack[GenerateOptions]
    ) -> AsyncIterator[GenerationChunk]:
        """The same stream as `generate`, for asyncio code (the TUI); loads if needed."""
        messages = as_messages(prompt)
        await asyncio.to_thread(self.load)
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[GenerationChunk | BaseException] = asyncio.Queue()

        def emit(item: GenerationChunk | BaseException) -> None:
            loop.call_soon_threadsafe(inbox.put_nowait, item)

        abandoned = self._start(Job(messages, adapter, emit, **options))
        try:
            while not (item := _unwrap(await inbox.get())).done:
                yield item
            yield item
        finally:
            self._forget(abandoned)

    def answer(
        self, prompt: Prompt, adapter: Adapter | None = None, **options: Unpack[GenerateOptions]
    ) -> GenerationResult:
        """Run `generate` to the end and return its GenerationResult."""
        for chunk in self.generate(prompt, adapter, **options):
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

    def mean_logprobs(self, prefixes: Sequence[str], text: str) -> np.ndarray:
        """Return, per prefix, the mean log-probability of `text`'s tokens after it under
        the base model (plain text, no chat template): how well each prefix explains the
        text. Loads if needed."""
        self.load()

        def work() -> np.ndarray:
            runtime = self._runtime_or_load()
            self._swap(None)
            return runtime.mean_logprobs(prefixes, text)

        return self._call(work)

    def cached_adapters(self) -> list[str]:
        """Return the keys of the converted adapters held in RAM, least recent first."""
        return [key[0] for key in self._cache.order()]

    @property
    def cached_bytes(self) -> int:
        return self._cache.total_bytes

    def close(self, slow: Callable[[str], None] | None = None) -> None:
        """Cancel running generations, free the model, stop the MLX thread (idempotent).

        The MLX thread must end its call under way (a load cannot be cut short) before the
        process may exit; when that takes a while, `slow` is told why, in one sentence."""
        for event in list(self._live):
            event.set()
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.submit(self._unload)
            what = "loading" if self._runtime is None else "its step under way"
            notice = f"Stopping once the model has finished {what}."
            executor.shutdown(wait=True, slow=(lambda: slow(notice)) if slow else None)

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

    def _start(self, job: Job) -> threading.Event:
        """Queue a generation; return its 'abandoned' event (set it to stop the job)."""
        self._live.add(job.abandoned)
        self._submit(self._run_job, job)
        return job.abandoned

    def _forget(self, abandoned: threading.Event) -> None:
        """Stop a generation whose reader has gone (idempotent)."""
        abandoned.set()
        self._live.discard(abandoned)

    def _run_job(self, job: Job) -> None:
        try:
            runtime = self._runtime_or_load()
            run_job(runtime, job, self._swap(job.adapter))
        except BaseException as exc:  # handed to the caller's thread, raised there
            job.emit(exc)
