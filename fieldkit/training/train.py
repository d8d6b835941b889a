"""LoRA training on the current base model through mlx-lm's tuner pieces.

mlx-lm supplies the LoRA layers, the chat dataset with prompt masking, the batching and
the loss; the loop here adds what a packet needs: a validation split, early stop on the
validation loss (the best weights are kept, not the last), a time budget, and a progress
callback with loss, it/s and ETA. mlx is imported inside the functions, after OpenBLAS.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from fieldkit.errors import ModelError
from fieldkit.store.adapter import ALL_KEYS, Adapter, AdapterConfig, tensors_to_bytes
from fieldkit.training.dataset import DataError, Example

# The longest example trained whole (its attention grows with the square of its length);
# a longer one is refused with a sentence rather than cut.
MAX_SEQUENCE = 2048


@dataclass(frozen=True)
class TrainConfig:
    """How to train one adapter. Defaults are the library's profile (rank 8, scale 2.0)."""

    rank: int = 8
    scale: float = 2.0
    num_layers: int = -1
    keys: tuple[str, ...] = ALL_KEYS
    iters: int = 200
    batch_size: int = 4
    learning_rate: float = 5e-4
    val_fraction: float = 0.1
    max_val: int = 32
    steps_per_eval: int = 25
    patience: int = 3
    max_seq_length: int = 512  # raised to the longest example: an answer is never cut
    mask_prompt: bool = True
    seed: int = 0
    time_budget_s: float | None = None

    def adapter_config(self) -> AdapterConfig:
        """Return the AdapterConfig of the adapter this training produces."""
        return AdapterConfig(
            rank=self.rank, scale=self.scale, num_layers=self.num_layers, keys=tuple(self.keys)
        )


@dataclass(frozen=True)
class TrainProgress:
    """One step's report: the running train loss, last validation loss, speed and ETA."""

    iteration: int
    total: int
    train_loss: float
    val_loss: float | None
    it_per_s: float
    eta_s: float
    elapsed_s: float


@dataclass(frozen=True)
class TrainResult:
    """The trained adapter (best validation weights) and how the run went."""

    adapter: Adapter
    iterations: int
    train_loss: float
    best_val_loss: float | None
    best_iteration: int
    stopped_early: bool
    seconds: float
    n_train: int
    n_val: int
    val_history: list[tuple[int, float]] = field(default_factory=list)


def split_examples(
    examples: Sequence[Example],
    fraction: float,
    batch_size: int,
    seed: int,
    max_val: int | None = None,
) -> tuple[list[Example], list[Example]]:
    """Return (train, val): a seeded random share `fraction` (at most max_val) held out.

    Validation is skipped (val empty) when it would hold less than one batch or leave
    training with less than one batch.
    """
    items = list(examples)
    random.Random(seed).shuffle(items)
    n_val = round(len(items) * fraction)
    if max_val is not None:
        n_val = min(n_val, max_val)
    if n_val < batch_size or len(items) - n_val < batch_size:
        return items, []
    return items[n_val:], items[:n_val]


def _load_model(model_dir: Path):  # noqa: ANN202 - mlx types stay inside this module
    from fieldkit.engine.blas import preload_openblas

    preload_openblas()
    from mlx_lm import load

    if not (Path(model_dir) / "config.json").is_file():
        raise ModelError(f"No base model at {model_dir}; run `fieldkit model install-default`.")
    try:
        return load(str(model_dir))
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"The base model at {model_dir} could not be loaded.") from exc


def train_lora(
    model_dir: Path,
    examples: Sequence[Example],
    config: TrainConfig = TrainConfig(),  # noqa: B008 - frozen dataclass
    on_progress: Callable[[TrainProgress], None] | None = None,
    init: Adapter | None = None,
) -> TrainResult:
    """Train a LoRA adapter on chat examples and return the best one by validation loss.

    `init`: an adapter of the same shape to start from (a packet trained further) instead
    of fresh LoRA weights. Raises ModelError if the base model cannot be loaded and
    DataError if there are fewer examples than one batch or `init` has another shape.
    """
    if len(examples) < config.batch_size:
        raise DataError(
            f"Training needs at least {config.batch_size} examples, but there are {len(examples)}."
        )
    model, tokenizer = _load_model(model_dir)

    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    from mlx.utils import tree_flatten
    from mlx_lm.tuner.datasets import CacheDataset, ChatDataset
    from mlx_lm.tuner.trainer import default_loss, evaluate, iterate_batches
    from mlx_lm.tuner.utils import linear_to_lora_layers

    train_set, val_set = split_examples(
        examples, config.val_fraction, config.batch_size, config.seed, config.max_val
    )
    adapter_config = config.adapter_config()
    n_layers = len(model.layers)
    adapter_config.resolved_layers(n_layers)  # raises if num_layers exceeds the model
    mx.random.seed(config.seed)
    model.freeze()
    linear_to_lora_layers(
        model,
        n_layers if config.num_layers == -1 else config.num_layers,
        adapter_config.to_mlx_dict()["lora_parameters"],
    )

    if init is not None:
        if init.config.scale != config.scale:
            raise DataError(
                f"The packet to start from has LoRA scale {init.config.scale}, not {config.scale}."
            )
        _start_from(model, init)

    def dataset(items: list[Example]) -> CacheDataset:
        return CacheDataset(ChatDataset(items, tokenizer, mask_prompt=config.mask_prompt))

    train_data = dataset(train_set)
    val_data = dataset(val_set) if val_set else None
    seq_limit = _sequence_limit(config.max_seq_length, train_data, val_data)
    optimizer = optim.Adam(learning_rate=config.learning_rate)
    loss_and_grad = nn.value_and_grad(model, default_loss)

    state = [model.state, optimizer.state, mx.random.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(batch: mx.array, lengths: mx.array) -> mx.array:
        (loss, _), grad = loss_and_grad(model, batch, lengths)
        optimizer.update(model, grad)
        return loss

    def snapshot() -> dict[str, np.ndarray]:
        return {
            k: np.array(v, dtype=np.float32) for k, v in tree_flatten(model.trainable_parameters())
        }

    def validate() -> float:
        loss = evaluate(model, val_data, config.batch_size, -1, max_seq_length=seq_limit)
        model.train()
        return float(loss)

    model.train()
    start = time.perf_counter()
    best_val, best_iter, best_weights = math.inf, 0, snapshot()
    val_history: list[tuple[int, float]] = []
    if val_data is not None:
        best_val = validate()
        val_history.append((0, best_val))
    last_val: float | None = best_val if val_data is not None else None
    stale, stopped_early, it, running = 0, False, 0, 0.0
    batches = iterate_batches(train_data, config.batch_size, seq_limit, loop=True, seed=config.seed)
    train_start = time.perf_counter()
    for it, (batch, lengths) in zip(range(1, config.iters + 1), batches, strict=False):
        loss = step(batch, lengths)
        mx.eval(state, loss)
        value = float(loss.item())
        running = value if it == 1 else 0.9 * running + 0.1 * value
        out_of_time = (
            config.time_budget_s is not None and time.perf_counter() - start >= config.time_budget_s
        )
        if val_data is not None and (
            it % config.steps_per_eval == 0 or it == config.iters or out_of_time
        ):
            last_val = validate()
            val_history.append((it, last_val))
            if last_val < best_val - 1e-4:
                best_val, best_iter, best_weights, stale = last_val, it, snapshot(), 0
            else:
                stale += 1
                stopped_early = stale >= config.patience
        elapsed = time.perf_counter() - train_start
        rate = it / elapsed if elapsed > 0 else 0.0
        remaining = (config.iters - it) / rate if rate > 0 else 0.0
        if config.time_budget_s is not None:
            remaining = min(
                remaining, max(0.0, config.time_budget_s - (time.perf_counter() - start))
            )
        if on_progress is not None:
            on_progress(
                TrainProgress(it, config.iters, running, last_val, rate, remaining, elapsed)
            )
        if stopped_early or out_of_time:
            break
    if val_data is None:
        best_iter, best_weights = it, snapshot()
    tensors = {k: v for k, v in best_weights.items() if ".lora_" in k}
    key = hashlib.sha256(tensors_to_bytes(tensors)).hexdigest()
    adapter = Adapter(config=adapter_config, tensors=tensors, key=key)
    return TrainResult(
        adapter=adapter,
        iterations=it,
        train_loss=running,
        best_val_loss=None if val_data is None else best_val,
        best_iteration=best_iter,
        stopped_early=stopped_early,
        seconds=time.perf_counter() - start,
        n_train=len(train_set),
        n_val=len(val_set),
        val_history=val_history,
    )


def _sequence_limit(floor: int, *datasets: Any) -> int:
    """Return the sequence length to train at: `floor`, or the longest example if longer.

    mlx-lm cuts a longer example at the limit, which drops the end of its answer (the part
    the loss is on) and prints a warning on stdout; a record's answer is never cut here.
    DataError for an example past MAX_SEQUENCE tokens (too long to train on this machine).
    """
    lengths = [len(data[i][0]) for data in datasets if data is not None for i in range(len(data))]
    longest = max(lengths, default=0)
    if longest > MAX_SEQUENCE:
        over = sum(n > MAX_SEQUENCE for n in lengths)
        raise DataError(
            f"{over} training example(s) run past {MAX_SEQUENCE} tokens (the longest "
            f"{longest}); split those records into shorter ones."
        )
    return max(floor, longest)


def _start_from(model, init: Adapter) -> None:  # noqa: ANN001 - an mlx model
    """Load `init`'s LoRA weights into the model's fresh LoRA layers; DataError if they
    do not fit (another rank, other layers or projections, a trimmed packet)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    slots = {k: v.shape for k, v in tree_flatten(model.trainable_parameters())}
    weights = {k: np.asarray(v, dtype=np.float32) for k, v in init.tensors.items()}
    if set(weights) != {k for k in slots if ".lora_" in k} or any(
        tuple(slots[k]) != w.shape for k, w in weights.items()
    ):
        raise DataError(
            "The packet to start from has another shape (rank, layers or projections) "
            "than this training; use its rank and layer count."
        )
    model.load_weights([(k, mx.array(w)) for k, w in weights.items()], strict=False)


def generate_batch(
    model_dir: Path,
    adapter: Adapter | None,
    questions: Sequence[str],
    max_tokens: int = 128,
    batch_size: int = 32,
) -> list[str]:
    """Return greedy answers to many questions at once: `generate_ended`'s texts."""
    ended = generate_ended(model_dir, adapter, questions, max_tokens, batch_size)
    return [text for text, _ in ended]


def generate_ended(
    model_dir: Path,
    adapter: Adapter | None,
    questions: Sequence[str],
    max_tokens: int = 128,
    batch_size: int = 32,
) -> list[tuple[str, bool]]:
    """Return greedy answers to many questions at once (mlx-lm's batch_generate), each
    with whether the model ended it (True) rather than the token budget.

    For evaluation: one question at a time runs at a few tokens/s on a shared CPU, a batch
    of 32 shares every weight read. The prompt is the chat template with the question as
    the user message, as `Engine.generate` builds it; the adapter's LoRA is applied to a
    freshly loaded base model.
    """
    model, tokenizer = _load_model(model_dir)

    import mlx.core as mx
    from mlx_lm.generate import batch_generate
    from mlx_lm.tuner.utils import linear_to_lora_layers

    if adapter is not None:
        config = adapter.config
        n_layers = len(model.layers)
        config.resolved_layers(n_layers)
        linear_to_lora_layers(
            model,
            n_layers if config.num_layers == -1 else config.num_layers,
            config.to_mlx_dict()["lora_parameters"],
        )
        weights = [(k, mx.array(v.astype(np.float32))) for k, v in adapter.tensors.items()]
        model.load_weights(weights, strict=False)
    model.eval()
    from fieldkit.engine.mlx_backend import stop_ids

    tokenizer.eos_token_ids = stop_ids(tokenizer)  # the engine's stops: batch_generate reads them
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], add_generation_prompt=True, return_dict=False
        )
        for q in questions
    ]
    result = batch_generate(
        model,
        tokenizer,
        prompts,
        max_tokens=max_tokens,
        completion_batch_size=batch_size,
        return_token_ids=True,
    )
    # a stop token ends an answer unwritten: fewer tokens than the budget, the model ended it
    ids = result.token_ids
    return [(t.strip(), len(i) < max_tokens) for t, i in zip(result.texts, ids, strict=True)]
