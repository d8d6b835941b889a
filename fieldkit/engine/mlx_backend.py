"""The one module that imports mlx and mlx_lm: model, resident LoRA slots, generation.

Everything here must run on the engine's single MLX thread (MLX streams are
thread-local); `fieldkit.engine.engine.Engine` guarantees that. Importing this module
preloads OpenBLAS first, because mlx binds its BLAS when it loads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fieldkit.engine.blas import preload_openblas

preload_openblas()
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import numpy as np  # noqa: E402
from jinja2 import TemplateError  # noqa: E402
from mlx.utils import tree_unflatten  # noqa: E402
from mlx_lm.generate import generate_step  # noqa: E402
from mlx_lm.sample_utils import make_sampler  # noqa: E402
from mlx_lm.utils import load as mlx_lm_load  # noqa: E402

from fieldkit.errors import ModelError, gist  # noqa: E402
from fieldkit.store.adapter import Adapter, AdapterConfig, validate_tensors  # noqa: E402

Slot = tuple[int, str]  # (layer index, projection key)
# Prompt tokens read per step before the first new token. `cancelled()` is polled between
# steps, so a long question is dropped within one step when its asker hangs up or the
# server stops, not after the whole prompt (minutes on a small CPU).
PREFILL_STEP = 128


class _DroppedError(Exception):
    """Raised between prefill steps once `cancelled()` says so."""


class SwapLoRALinear(nn.Module):
    """A linear layer with a LoRA branch whose tensors are replaced in place on a swap.

    The branch is skipped while `active` is False, so the base model's output is exact.
    The rank is whatever the current adapter's tensors carry; nothing is padded.
    """

    def __init__(self, linear: nn.Module) -> None:
        super().__init__()
        self.linear = linear
        out_dims, in_dims = linear.weight.shape
        if isinstance(linear, nn.QuantizedLinear):
            in_dims = in_dims * 32 // linear.bits
        self.in_dims, self.out_dims = int(in_dims), int(out_dims)
        self.dtype = mx.float32 if isinstance(linear, nn.QuantizedLinear) else linear.weight.dtype
        self.lora_a = mx.zeros((self.in_dims, 1), dtype=self.dtype)
        self.lora_b = mx.zeros((1, self.out_dims), dtype=self.dtype)
        self.scale = 0.0
        self.active = False

    def __call__(self, x: mx.array) -> mx.array:
        y = self.linear(x)
        if not self.active:
            return y
        z = (x @ self.lora_a) @ self.lora_b
        return y + (self.scale * z).astype(x.dtype)


@dataclass
class PreparedAdapter:
    """An adapter checked against the resident slots and converted to mx arrays."""

    key: str
    scale: float
    tensors: dict[Slot, tuple[mx.array, mx.array]] = field(repr=False)
    nbytes: int = 0


def _split_name(name: str) -> Slot:
    # "model.layers.{i}.{a}.{b}.lora_x": validate_tensors has already checked the pattern.
    parts = name.split(".")
    return int(parts[2]), f"{parts[3]}.{parts[4]}"


class ResidentLoRA:
    """The LoRA slots installed on the resident model, and which adapter fills them."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.n_layers = len(model.layers)
        self.slots: dict[Slot, SwapLoRALinear] = {}
        self.active: PreparedAdapter | None = None

    def covers(self, config: AdapterConfig) -> bool:
        """Return True if every (layer, key) the config needs already has a slot."""
        layers = config.resolved_layers(self.n_layers)
        return all((i, k) in self.slots for i in layers for k in config.keys)

    def install(self, config: AdapterConfig) -> float:
        """Add slots for every (layer, key) of the config not yet covered; return ms spent."""
        tic = time.perf_counter()
        for i in config.resolved_layers(self.n_layers):
            layer = self.model.layers[i]
            modules = dict(layer.named_modules())
            new: list[tuple[str, nn.Module]] = []
            for key in config.keys:
                if (i, key) in self.slots:
                    continue
                linear = modules.get(key)
                if not isinstance(linear, nn.Linear | nn.QuantizedLinear):
                    raise ModelError(f"The base model's layer {i} has no projection {key}.")
                slot = SwapLoRALinear(linear)
                self.slots[(i, key)] = slot
                new.append((key, slot))
            if new:
                layer.update_modules(tree_unflatten(new))
        return (time.perf_counter() - tic) * 1000

    def prepare(self, adapter: Adapter) -> PreparedAdapter:
        """Check every tensor's name and shape against the slots; return mx arrays (each
        module at its own rank; a quantised adapter dequantised once, here).

        Raises PacketError if the adapter does not match its own config, and ModelError if
        a tensor names a slot the model lacks or its shape does not fit the projection.
        """
        config = adapter.config
        # A quantised packet's tensors dequantise as they are read: read each once, here
        # (the engine caches what this returns, so that happens on first use only).
        floats = dict(adapter.tensors.items())
        validate_tensors(config, floats, self.n_layers, exact_rank=False)
        if not self.covers(config):
            raise ModelError("The adapter needs LoRA slots the model does not have installed.")
        pairs: dict[Slot, dict[str, np.ndarray]] = {}
        for name, array in floats.items():
            pairs.setdefault(_split_name(name), {})[name.rsplit(".", 1)[1]] = array
        tensors: dict[Slot, tuple[mx.array, mx.array]] = {}
        nbytes = 0
        for (i, key), pair in sorted(pairs.items()):
            slot = self.slots[(i, key)]
            a, b = pair["lora_a"], pair["lora_b"]
            rank = a.shape[1]
            if a.shape != (slot.in_dims, rank) or b.shape != (rank, slot.out_dims):
                raise ModelError(
                    f"The adapter's {key} on layer {i} has shapes {a.shape} and {b.shape}, "
                    f"but the model needs ({slot.in_dims}, r) and (r, {slot.out_dims})."
                )
            ma = mx.array(a).astype(slot.dtype)
            mb = mx.array(b).astype(slot.dtype)
            tensors[(i, key)] = (ma, mb)
            nbytes += ma.nbytes + mb.nbytes
        mx.eval([t for pair in tensors.values() for t in pair])
        return PreparedAdapter(adapter.key, float(config.scale), tensors, nbytes)

    def apply(self, prepared: PreparedAdapter | None) -> None:
        """Fill the slots with the prepared adapter's tensors, or switch every slot off."""
        if self.active is not None:
            for slot_id in self.active.tensors:
                self.slots[slot_id].active = False
        for slot_id, (a, b) in prepared.tensors.items() if prepared else ():
            slot = self.slots[slot_id]
            slot.lora_a, slot.lora_b = a, b
            slot.scale = prepared.scale
            slot.active = True
        self.active = prepared


@dataclass
class TokenStats:
    """Counts and speeds of one generation (what mlx-lm's GenerationResponse reports)."""

    tokens: list[int]
    prompt_tokens: int
    prompt_tps: float
    generation_tps: float
    finish_reason: str


def encode_chat(tokenizer: Any, messages: Sequence[dict[str, str]]) -> list[int]:
    """Apply the tokenizer's chat template (with the assistant prompt) and tokenize."""
    if getattr(tokenizer, "chat_template", None):
        try:
            text = tokenizer.apply_chat_template(
                list(messages), add_generation_prompt=True, tokenize=False
            )
        except TemplateError as exc:  # a chat template that does not parse or run
            raise ModelError(f"The model's chat template cannot be used: {exc}.") from exc
    else:
        text = "\n".join(m["content"] for m in messages) + "\n"
    bos = tokenizer.bos_token
    add_special = bos is None or not text.startswith(bos)
    return list(tokenizer.encode(text, add_special_tokens=add_special))


class MlxRuntime:
    """The resident model, its tokenizer and its LoRA slots; lives on the MLX thread."""

    def __init__(self, model_dir: Path, profile: AdapterConfig) -> None:
        try:
            self.model, self.tokenizer = mlx_lm_load(str(model_dir))
        except (ValueError, FileNotFoundError, KeyError, OSError, RuntimeError) as exc:
            # RuntimeError: mlx's own, for weights it cannot read (a file cut short)
            raise ModelError(f"mlx-lm cannot load the model in {model_dir}: {gist(exc)}.") from exc
        self.resident = ResidentLoRA(self.model)
        self.install_ms = self.resident.install(profile)
        self.model.eval()
        self.eos_ids = stop_ids(self.tokenizer)
        # the most tokens the model reads at once (0: its config does not say)
        self.context = int(getattr(self.model.args, "max_position_embeddings", 0) or 0)

    def encode_chat(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Apply the model's chat template (with the assistant prompt) and tokenize."""
        return encode_chat(self.tokenizer, messages)

    def decode(self, tokens: Iterable[int]) -> str:
        return self.tokenizer.decode(list(tokens))

    def generate(
        self,
        prompt: list[int],
        *,
        max_tokens: int,
        temperature: float,
        emit: Callable[[str], bool],
        cancelled: Callable[[], bool],
    ) -> TokenStats:
        """Generate greedily (or sampled), calling emit(text_delta) per token.

        `emit` returns False to stop (a stop string was seen); `cancelled()` is polled
        before every token and between the steps that read the prompt (PREFILL_STEP).
        """
        detok = self.tokenizer.detokenizer
        detok.reset()
        sampler = make_sampler(temp=temperature) if temperature > 0 else None
        tokens: list[int] = []
        finish = "length"
        prompt_tps = 0.0
        tic = time.perf_counter()
        gen_tic = tic

        def reading(_done: int, _total: int) -> None:
            if cancelled():
                raise _DroppedError

        steps = generate_step(
            mx.array(prompt),
            self.model,
            max_tokens=max_tokens,
            sampler=sampler,
            prefill_step_size=PREFILL_STEP,
            prompt_progress_callback=reading,
        )
        try:
            for n, (token, _logprobs) in enumerate(steps):
                if n == 0:
                    prompt_tps = len(prompt) / max(time.perf_counter() - tic, 1e-9)
                    gen_tic = time.perf_counter()
                if cancelled():
                    finish = "cancelled"
                    break
                token = int(token)
                if token in self.eos_ids:
                    finish = "stop"
                    break
                tokens.append(token)
                detok.add_token(token)
                if not emit(detok.last_segment):
                    finish = "stop"
                    break
        except _DroppedError:  # while the prompt was read: nothing was generated
            finish = "cancelled"
        steps.close()
        detok.finalize()
        if finish != "cancelled":
            emit(detok.last_segment)
        elapsed = max(time.perf_counter() - gen_tic, 1e-9)
        return TokenStats(tokens, len(prompt), prompt_tps, len(tokens) / elapsed, finish)

    def mean_logprobs(self, prefixes: Sequence[str], text: str) -> np.ndarray:
        """Return, for each prefix, the mean log-probability of `text`'s tokens after it
        (plain text, no chat template), one batch. Rows are padded at the end, where
        causal attention keeps the padding out of every position that is read."""
        target = list(self.tokenizer.encode(" " + text.strip(), add_special_tokens=False))
        heads = [list(self.tokenizer.encode(prefix)) for prefix in prefixes]
        if not target or not heads:
            return np.zeros(len(heads), np.float32)
        width = max(len(head) for head in heads) + len(target)
        ids = np.zeros((len(heads), width), np.int32)
        for row, head in enumerate(heads):
            ids[row, : len(head) + len(target)] = head + target
        where = mx.array([[len(h) - 1 + j for j in range(len(target))] for h in heads])
        split = _body_and_head(self.model)
        if split is None:  # the whole vocabulary at every position, then those read
            logits = mx.take_along_axis(self.model(mx.array(ids)), where[..., None], axis=1)
        else:  # the output layer at the positions read alone (a third less time on this
            body, head = split  # CPU), and no (rows, positions, vocabulary) array
            logits = head(mx.take_along_axis(body(mx.array(ids)), where[..., None], axis=1))
        logits = logits.astype(mx.float32)
        picked = mx.take_along_axis(
            logits,
            mx.broadcast_to(mx.array(target, mx.int32)[None, :, None], where.shape + (1,)),
            axis=-1,
        )[..., 0] - mx.logsumexp(logits, axis=-1)
        return np.array(picked.mean(axis=1))

    def next_token_logits(self, prompt: list[int]) -> np.ndarray:
        """Return the logits for the token after the prompt, as float32 numpy."""
        logits = self.model(mx.array(prompt)[None])[0, -1].astype(mx.float32)
        return np.array(logits)


# mlx-lm models whose logits are their output layer applied to their inner model's output
# (`Model.__call__`: the tied embedding's `as_linear`, else `lm_head`), with nothing after.
PLAIN_HEADS = ("llama", "qwen2", "qwen3")


def _body_and_head(model: Any) -> tuple[Any, Any] | None:
    """Return (the model without its output layer, that layer) for a PLAIN_HEADS model,
    else None (another architecture may change its logits after the head)."""
    if getattr(model, "model_type", None) not in PLAIN_HEADS:
        return None
    body = model.model
    return body, body.embed_tokens.as_linear if model.args.tie_word_embeddings else model.lm_head


def release_thread() -> None:
    """Free the calling thread's MLX streams and random key; call it last on a thread that
    ran MLX, before the thread ends. Returns nothing.

    MLX keeps both in C++ thread-locals whose destructors take the GIL. Python's
    `Thread.join` returns before those destructors run, so the main thread may already be
    finalizing; taking the GIL then ends the thread by a forced unwind through a noexcept
    destructor, and the process aborts ("terminate called without an active exception",
    exit code 134) after its work is done. With the state freed here the destructors have
    nothing left to do. MLX's documented pattern: `mx.clear_streams()` at the end of a thread.
    """
    mx.synchronize()
    mx.clear_streams()


def write_mlx_adapter(adapter: Adapter, folder: Path) -> Path:
    """Write the adapter as mlx-lm reads it (adapters.safetensors + adapter_config.json)."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    arrays = {k: mx.array(v) for k, v in adapter.tensors.items()}
    mx.save_safetensors(str(folder / "adapters.safetensors"), arrays)
    (folder / "adapter_config.json").write_text(json.dumps(adapter.config.to_mlx_dict()))
    return folder


def stop_ids(tokenizer: Any) -> set[int]:
    """The tokens that end an answer: the tokenizer's EOS tokens and every special token.
    The model that writes <|endoftext|> or a new turn's <|im_start|> (when it lost the
    thread of a prompt too long for it) is done, and the token's text is no answer."""
    special = getattr(tokenizer, "all_special_ids", None) or []
    return set(tokenizer.eos_token_ids) | set(special)
