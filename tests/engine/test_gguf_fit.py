"""A GGUF whose structure is sound but whose llama metadata does not fit its tensors: a
width, block count or head count the tensor shapes deny, a required tensor missing, two
tensors that disagree. mlx-lm used to fail deep inside model construction with a
traceback; `model install` now says one sentence, exits 1 and leaves nothing behind.

The files are the tiny model's GGUF (tests/engine/test_convert.py) with one thing wrong.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fieldkit.cli import main
from fieldkit.engine.convert import gguf_config
from fieldkit.engine.gguf_check import check_gguf, check_llama_tensors
from fieldkit.errors import ModelError
from tests.engine.test_convert import write_tiny_gguf
from tests.engine.test_model_files import leftovers, one_sentence
from tests.fixtures.tiny_model import TINY_CONFIG

_Q = "llama.embedding_length, llama.attention.head_count, llama.rope.dimension_count"
MISFITS = {  # file stem: (write_tiny_gguf options, the sentence `model install` prints)
    "wide": (
        {"metadata": {"hidden_size": 96}},
        "wide.gguf has the tensor token_embd.weight of shape [64, 512], but its metadata "
        "(llama.embedding_length, llama.vocab_size) calls for [96, 512].",
    ),
    "deep": (
        {"metadata": {"num_hidden_layers": 6}},
        "deep.gguf has no tensor blk.4.attn_q.weight, though its llama.block_count says 6 blocks.",
    ),
    "shallow": (
        {"metadata": {"num_hidden_layers": 2}},
        "shallow.gguf has the tensor blk.2.attn_q.weight, but its llama.block_count says 2 blocks.",
    ),
    "no-embedding": (
        {"drop": ("token_embd.weight",)},
        "no-embedding.gguf has no tensor token_embd.weight, which every llama model needs.",
    ),
    "no-query": (
        {"drop": ("blk.1.attn_q.weight",)},
        "no-query.gguf has no tensor blk.1.attn_q.weight, though its llama.block_count says "
        "4 blocks.",
    ),
    "heads": (
        {"metadata": {"num_attention_heads": 8}},
        f"heads.gguf has the tensor blk.0.attn_q.weight of shape [64, 64], but its metadata "
        f"({_Q}) calls for [64, 128].",
    ),
    "vocab": (
        {"metadata": {"vocab_size": 600}},
        "vocab.gguf has the tensor token_embd.weight of shape [64, 512], but its metadata "
        "(llama.embedding_length, llama.vocab_size) calls for [64, 600].",
    ),
    "ragged": (  # one tensor disagrees with the others (and the metadata)
        {"replace": {"blk.2.ffn_down.weight": np.zeros((64, 64), np.float32)}},
        "ragged.gguf has the tensor blk.2.ffn_down.weight of shape [64, 64], but its metadata "
        "(llama.embedding_length, llama.feed_forward_length) calls for [128, 64].",
    ),
    "no-heads": (
        {"metadata": {"num_attention_heads": 0}},
        "The GGUF's field llama.attention.head_count is not a positive whole number.",
    ),
    "kv-heads": (
        {"metadata": {"num_key_value_heads": 3}},
        "The GGUF's llama.attention.head_count (4) is not a multiple of its "
        "llama.attention.head_count_kv (3).",
    ),
    "far-bos": (
        {"metadata": {"bos_token_id": 100_000}},
        "The tokenizer in far-bos.gguf names a special token its token list lacks.",
    ),
}


@pytest.fixture(scope="module")
def ggufs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with tiny.gguf (it fits) and one STEM.gguf for each misfit."""
    folder = tmp_path_factory.mktemp("misfits")
    write_tiny_gguf(folder / "tiny.gguf", tiny_model_dir)
    for stem, (options, _) in MISFITS.items():
        write_tiny_gguf(folder / f"{stem}.gguf", tiny_model_dir, **options)
    return folder


def install(gguf: Path, home: Path):
    return CliRunner().invoke(main, ["--home", str(home), "model", "install", str(gguf)])


@pytest.mark.parametrize("stem", list(MISFITS))
def test_a_gguf_whose_metadata_does_not_fit_is_one_sentence(
    stem: str, ggufs: Path, tmp_path: Path
) -> None:
    result = install(ggufs / f"{stem}.gguf", tmp_path / "home")
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # handled, not a traceback
    assert "Traceback" not in result.output
    sentence = MISFITS[stem][1]
    assert result.output.strip().splitlines()[-1] == f"fieldkit: {sentence}"
    assert one_sentence(sentence)
    assert leftovers(tmp_path / "home" / "models") == []


def test_mlx_lm_refusing_the_weights_is_one_sentence_too(
    ggufs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the check miss a misfit, mlx-lm's own refusal is one sentence as well."""
    monkeypatch.setattr("fieldkit.engine.convert.check_llama_tensors", lambda *_: None)
    result = install(ggufs / "wide.gguf", tmp_path / "home")
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last == (
        "fieldkit: mlx-lm cannot convert wide.gguf: Expected shape (512, 96) but received "
        "shape (512, 64) for parameter model.embed_tokens.weight."
    )
    assert leftovers(tmp_path / "home" / "models") == []


def test_the_check_is_bounded_and_refuses_unknown_block_names(ggufs: Path) -> None:
    tensors = check_gguf(ggufs / "tiny.gguf")
    check_llama_tensors("tiny.gguf", TINY_CONFIG, tensors)  # it fits
    huge = {**TINY_CONFIG, "num_hidden_layers": 1 << 31}  # stops at the first missing block
    with pytest.raises(ModelError, match=r"no tensor blk\.4\.attn_q\.weight, though"):
        check_llama_tensors("tiny.gguf", huge, tensors)
    padded = [  # blk.01 would land on layer 1 beside blk.1
        dataclasses.replace(t, name="blk.01.attn_q.weight")
        if t.name == "blk.1.attn_q.weight"
        else t
        for t in tensors
    ]
    with pytest.raises(ModelError, match=r"does not know: blk\.01\.attn_q\.weight\.$"):
        check_llama_tensors("tiny.gguf", TINY_CONFIG, padded)


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("llama.block_count", "four", "llama.block_count is not a positive whole number."),
        ("llama.block_count", [4, 4], "llama.block_count holds 2 values, not one."),
        ("llama.embedding_length", True, "llama.embedding_length is not a positive whole"),
        ("llama.attention.layer_norm_rms_epsilon", "x", "epsilon is not a positive number."),
        ("llama.rope.dimension_count", 15, "gives each attention head 15 dimensions"),
    ],
)
def test_metadata_of_the_wrong_kind_is_one_sentence(
    key: str, value: object, says: str, ggufs: Path
) -> None:
    import mlx.core as mx

    raw, metadata = mx.load(str(ggufs / "tiny.gguf"), return_metadata=True)
    assert gguf_config(metadata, has_lm_head=False)["num_hidden_layers"] == 4
    metadata[key] = value if isinstance(value, str) else mx.array(value)
    with pytest.raises(ModelError) as caught:
        gguf_config(metadata, has_lm_head=False)
    assert says in str(caught.value)
    assert one_sentence(str(caught.value))
