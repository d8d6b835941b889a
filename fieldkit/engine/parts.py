"""Small parts of the engine with no MLX: the byte-bounded adapter cache, the stop-string
scanner, how a prompt becomes chat messages, and the thread all MLX work runs on."""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from fieldkit.errors import FieldkitError

T = TypeVar("T")
Prompt = str | Sequence[dict[str, str]]


class ByteLRU(Generic[T]):
    """A least-recently-used map bounded by the total byte size of its values."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Any, tuple[T, int]] = OrderedDict()
        self.total_bytes = 0

    def get(self, key: Any) -> T | None:
        """Return the value (marking it recently used) or None."""
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: Any, value: T, nbytes: int) -> None:
        """Store the value, evicting the oldest entries to stay within max_bytes.

        A value larger than the whole budget is not stored.
        """
        if key in self._items:
            self.total_bytes -= self._items.pop(key)[1]
        if nbytes > self.max_bytes:
            return
        self._items[key] = (value, nbytes)
        self.total_bytes += nbytes
        while self.total_bytes > self.max_bytes:
            _, (_, size) = self._items.popitem(last=False)
            self.total_bytes -= size

    def order(self) -> list[Any]:
        """Return the keys, least recently used first."""
        return list(self._items)

    def clear(self) -> None:
        self._items.clear()
        self.total_bytes = 0


class StopScanner:
    """Finds stop strings in streamed text, holding back what may be a stop's beginning."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.stopped = False

    def feed(self, delta: str) -> str:
        """Return the text that is safe to show; set `stopped` once a stop string is seen."""
        if self.stopped:
            return ""
        if not self.stops:
            return delta
        self.pending += delta
        hits = [i for s in self.stops if (i := self.pending.find(s)) >= 0]
        if hits:
            out, self.pending, self.stopped = self.pending[: min(hits)], "", True
            return out
        hold = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self.pending)), 0, -1):
                if self.pending.endswith(stop[:n]):
                    hold = max(hold, n)
                    break
        cut = len(self.pending) - hold
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


def as_messages(prompt: Prompt) -> list[dict[str, str]]:
    """Return chat messages for a question string or a list of messages."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise FieldkitError("The question is empty.")
        return [{"role": "user", "content": prompt}]
    messages = [dict(m) for m in prompt]
    if not messages or not all({"role", "content"} <= set(m) for m in messages):
        raise FieldkitError("Chat messages must each have a role and a content.")
    return messages


SLOW_SHUTDOWN_S = 0.5


class MlxWorker:
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

    def shutdown(self, wait: bool = True, slow: Callable[[], None] | None = None) -> None:
        """End the thread after the calls already submitted; with `wait`, join it, calling
        `slow()` once if that takes over SLOW_SHUTDOWN_S (a model still loading)."""
        self._jobs.put(None)
        if wait and threading.current_thread() is not self._thread:
            self._thread.join(SLOW_SHUTDOWN_S if slow else None)
            if self._thread.is_alive() and slow is not None:
                slow()
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
