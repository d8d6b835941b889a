"""Test and benchmark yardstick: plain mlx-lm, loaded fresh, as a user of mlx-lm runs it.

Never used by the product. Its mlx objects come from fieldkit.engine.mlx_backend, the one
module that imports mlx, so the OpenBLAS preload and the import rules hold here too.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fieldkit.engine.mlx_backend import encode_chat, mlx_lm_load, mx, write_mlx_adapter
from fieldkit.store.adapter import Adapter


@dataclass
class ReferenceRun:
    """What plain mlx-lm produced: tokens, text, speed, and how long loading took."""

    tokens: list[int]
    text: str
    load_ms: float
    generation_tps: float
    logits: np.ndarray | None = field(default=None, repr=False)


class ReferenceModel:
    """Plain mlx-lm, the yardstick: base (+ adapter) loaded fresh, `stream_generate`.

    This is what a user of mlx-lm does to change adapters (load the base and the adapter
    again). Used by tests and benchmarks; it runs on the calling thread.
    """

    def __init__(self, model_dir: Path, adapter: Adapter | None) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            adapter_path = str(write_mlx_adapter(adapter, Path(tmp))) if adapter else None
            tic = time.perf_counter()
            self.model, self.tokenizer = mlx_lm_load(str(model_dir), adapter_path=adapter_path)
            self.load_ms = (time.perf_counter() - tic) * 1000

    def generate(
        self, messages: Sequence[dict[str, str]], max_tokens: int = 32, with_logits: bool = False
    ) -> ReferenceRun:
        """Generate greedily with mlx-lm's own `stream_generate`, ended as fieldkit's
        engine ends an answer: at its end-of-turn token, or at any other special token."""
        from mlx_lm.generate import stream_generate

        prompt = encode_chat(self.tokenizer, messages)
        special = set(getattr(self.tokenizer, "all_special_ids", None) or ())
        tokens: list[int] = []
        text = ""
        tps = 0.0
        for response in stream_generate(self.model, self.tokenizer, prompt, max_tokens=max_tokens):
            if response.finish_reason is None and int(response.token) in special:
                break
            text += response.text
            tps = response.generation_tps
            # The closing "length" response carries the last token; a "stop" one carries EOS.
            if response.finish_reason in (None, "length"):
                tokens.append(int(response.token))
        logits = None
        if with_logits:
            out = self.model(mx.array(prompt)[None])[0, -1].astype(mx.float32)
            logits = np.array(out)
        return ReferenceRun(tokens, text, self.load_ms, tps, logits)


def reference_generate(
    model_dir: Path,
    adapter: Adapter | None,
    messages: Sequence[dict[str, str]],
    *,
    max_tokens: int = 32,
    with_logits: bool = False,
) -> ReferenceRun:
    """Load base (+ adapter) fresh with mlx-lm and generate once (see ReferenceModel)."""
    return ReferenceModel(model_dir, adapter).generate(messages, max_tokens, with_logits)
