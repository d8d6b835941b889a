"""The GGUF converter, on a tiny llama GGUF written here with the `gguf` package.

It covers what the embedded 93 MB SmolLM2 GGUF needs (llama.cpp names, permuted q/k rows,
Q8_0/Q4_1 blocks, a gpt2-style tokenizer and a chat template) without that file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fieldkit.engine.convert import DEFAULT_DIRNAME, convert_gguf, install_default, is_installed
from fieldkit.errors import ModelError
from tests.fixtures.tiny_model import TINY_CONFIG, build_weights

QUANTIZED = {"blk.1.ffn_gate.weight": "Q8_0", "blk.2.ffn_up.weight": "Q4_1"}
HF_TO_GGUF = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def llama_cpp_permute(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows."""
    rows = weight.shape[0]
    return (
        weight.reshape(n_heads, 2, rows // n_heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def gguf_name(hf_name: str) -> str:
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    _, _, layer, *rest = hf_name.split(".")
    return f"blk.{layer}.{HF_TO_GGUF['.'.join(rest[:-1])]}.weight"


def write_tiny_gguf(
    path: Path,
    tokenizer_dir: Path,
    metadata: dict | None = None,
    drop: tuple[str, ...] = (),
    replace: dict[str, np.ndarray] | None = None,
    pre: str = "default",
    merges: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Write the tiny model as a llama GGUF; return the weights it should convert back to.

    To write a misfit: `metadata` overrides TINY_CONFIG's values (and bos_token_id) in the
    metadata only, the tensors keep the tiny model's shapes; `drop` leaves out the
    llama.cpp tensors it names; `replace` writes other arrays under those names; `pre` is
    the pre-tokenizer the file names ("": no tokenizer at all); `merges` replace the
    tokenizer's merges.
    """
    import gguf

    cfg = {**TINY_CONFIG, **(metadata or {})}
    weights = build_weights(TINY_CONFIG)
    tok = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    tok_cfg = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
    specials = {t["content"]: t["id"] for t in tok["added_tokens"]}
    if merges is None:
        merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(cfg["max_position_embeddings"])
    writer.add_embedding_length(cfg["hidden_size"])
    writer.add_block_count(cfg["num_hidden_layers"])
    writer.add_feed_forward_length(cfg["intermediate_size"])
    writer.add_head_count(cfg["num_attention_heads"])
    writer.add_head_count_kv(cfg["num_key_value_heads"])
    writer.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    writer.add_rope_freq_base(cfg["rope_theta"])
    writer.add_rope_dimension_count(cfg["head_dim"])
    writer.add_vocab_size(cfg["vocab_size"])
    if pre:  # else a file with no tokenizer in it
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list([t for t, _ in vocab])
        writer.add_token_types([3 if t in specials else 1 for t, _ in vocab])
        writer.add_token_merges(merges)
        writer.add_bos_token_id((metadata or {}).get("bos_token_id", specials["<|endoftext|>"]))
        writer.add_eos_token_id(specials["<|im_end|>"])
        writer.add_chat_template(tok_cfg["chat_template"])
    expected: dict[str, np.ndarray] = {}
    for name, array in weights.items():
        target = gguf_name(name)
        if target in drop:
            continue
        if replace and target in replace:
            writer.add_tensor(target, replace[target])
            continue
        data = array
        if target.endswith("attn_q.weight"):
            data = llama_cpp_permute(array, TINY_CONFIG["num_attention_heads"])
        elif target.endswith("attn_k.weight"):
            data = llama_cpp_permute(array, TINY_CONFIG["num_key_value_heads"])
        if target in QUANTIZED:
            qtype = getattr(gguf.GGMLQuantizationType, QUANTIZED[target])
            blocks = gguf.quants.quantize(data, qtype)
            writer.add_tensor(target, blocks, raw_dtype=qtype)
            expected[name] = gguf.quants.dequantize(blocks, qtype).reshape(array.shape)
        else:
            writer.add_tensor(target, data)
            expected[name] = array
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return expected


@pytest.fixture(scope="module")
def converted(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("gguf")
    expected = write_tiny_gguf(work / "tiny.gguf", tiny_model_dir)
    steps: list[str] = []
    out = convert_gguf(work / "tiny.gguf", work / "models" / "tiny-mlx", steps.append)
    return out, expected, steps


def test_conversion_restores_every_tensor(converted) -> None:
    from safetensors.numpy import load_file

    out, expected, steps = converted
    assert steps[0] == "reading tiny.gguf"
    assert steps[-1] == "fingerprinting"
    got = {}
    for path in out.glob("*.safetensors"):
        got.update(load_file(str(path)))
    assert set(got) == set(expected)
    for name, want in expected.items():
        assert got[name].dtype == np.float32, name
        assert np.array_equal(got[name], want), f"{name} differs"


def test_conversion_writes_config_and_tokenizer(converted, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    out, _, _ = converted
    config = json.loads((out / "config.json").read_text())
    assert config["rope_theta"] == TINY_CONFIG["rope_theta"]
    assert config["tie_word_embeddings"] is True
    for key in ("num_hidden_layers", "num_key_value_heads", "head_dim", "vocab_size"):
        assert config[key] == TINY_CONFIG[key], key
    original = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    restored = AutoTokenizer.from_pretrained(str(out))
    text = "The pump needs fresh water before the rain, near Paris!"
    assert restored.encode(text) == original.encode(text)
    messages = [{"role": "user", "content": "Hi"}]
    assert restored.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    ) == original.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert restored.eos_token == "<|im_end|>"


@pytest.mark.parametrize("pre", ["default", "llama-bpe", "qwen2"])
def test_the_tokenizer_is_the_one_transformers_builds(
    tiny_model_dir: Path, tmp_path: Path, pre: str
) -> None:
    """The byte-level vocabulary built with `tokenizers` alone (pre "default", or Llama 3's
    split) and the one transformers builds from the same GGUF give the same folder once
    transformers writes them (mlx-lm's convert does); another pre-tokenizer ("qwen2") is
    transformers' to build."""
    from transformers import AutoTokenizer

    from fieldkit.engine.convert import read_gguf_weights
    from fieldkit.engine.gguf_tokenizer import PLAIN_PRE, SPLIT_PRE, write_tokenizer
    from fieldkit.engine.gguf_tokenizer import _write_with_transformers as by_transformers

    gguf = tmp_path / "tiny.gguf"
    write_tiny_gguf(gguf, tiny_model_dir, pre=pre)
    _, _, metadata = read_gguf_weights(gguf)
    write_tokenizer(gguf, metadata, tmp_path / "ours")
    ours_config = json.loads((tmp_path / "ours" / "tokenizer_config.json").read_text())
    # built here, it carries its template in the config; transformers writes a .jinja file.
    # For "qwen2" both folders are transformers': what follows then holds by construction,
    # and this line is what that case checks (which way the vocabulary goes).
    assert ("chat_template" in ours_config) == (pre in PLAIN_PRE or pre in SPLIT_PRE)
    by_transformers(gguf, tmp_path / "theirs", "gpt2")
    ours, theirs = (AutoTokenizer.from_pretrained(str(tmp_path / n)) for n in ("ours", "theirs"))
    texts = [
        "The pump needs 115 g of feed at 16.5%, near Paris!",
        "  two\n\nlines <|im_end|> ü 🐔",
        "",
        "I'm sure WE'LL see 1234567 birds in 2026...\r\n\n  end  ",  # digits, marks, runs
    ]
    assert [ours.encode(t) for t in texts] == [theirs.encode(t) for t in texts]
    messages = [{"role": "user", "content": "Hi"}]
    assert ours.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == (
        theirs.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    )
    ours.save_pretrained(str(tmp_path / "ours-again"))
    theirs.save_pretrained(str(tmp_path / "theirs-again"))
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        mine, other = tmp_path / "ours-again" / name, tmp_path / "theirs-again" / name
        assert mine.read_bytes() == other.read_bytes(), name


def test_a_gguf_without_a_tokenizer_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    gguf = tmp_path / "tiny.gguf"
    write_tiny_gguf(gguf, tiny_model_dir, pre="")
    with pytest.raises(ModelError, match=r"^tiny.gguf carries no tokenizer \(no token list"):
        convert_gguf(gguf, tmp_path / "models" / "tiny")
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("tokenizer.ggml.bos_token_id", [0, 1], "field tokenizer.ggml.bos_token_id holds 2 values"),
        ("tokenizer.ggml.token_type", 1, "has token types that do not fit its tokens"),
        ("tokenizer.ggml.token_type", [1, 1], "has token types that do not fit its tokens"),
        ("tokenizer.ggml.tokens", [1, 2], "carries no tokenizer"),
    ],
)
def test_metadata_of_the_wrong_shape_is_refused(
    tiny_model_dir: Path, tmp_path: Path, field: str, value: object, said: str
) -> None:
    """Fields as mlx reads them (numbers as arrays) where the file holds the wrong kind."""
    import mlx.core as mx

    from fieldkit.engine.convert import read_gguf_weights
    from fieldkit.engine.gguf_tokenizer import write_tokenizer

    gguf = tmp_path / "tiny.gguf"
    write_tiny_gguf(gguf, tiny_model_dir)
    _, _, metadata = read_gguf_weights(gguf)
    with pytest.raises(ModelError, match=said):
        write_tokenizer(gguf, {**metadata, field: mx.array(value)}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("merge", ["Ġ", "Ġ t h", "Ġ \u2603"])
def test_a_merge_the_tokens_cannot_make_is_refused(
    tiny_model_dir: Path, tmp_path: Path, merge: str
) -> None:
    gguf = tmp_path / "tiny.gguf"
    write_tiny_gguf(gguf, tiny_model_dir, merges=["Ġ t", merge])
    with pytest.raises(ModelError, match="has a merge its token list cannot make") as refused:
        convert_gguf(gguf, tmp_path / "models" / "tiny")
    assert str(refused.value).endswith(f"({merge!r}).")  # the bad one, not "Ġ t"
    assert not (tmp_path / "models" / "tiny").exists()


def test_converted_model_answers_like_the_original(converted, tiny_model_dir: Path) -> None:
    from fieldkit.engine.engine import Engine

    out, _, _ = converted
    question = "What does the pump need?"
    with Engine(out) as converted_engine, Engine(tiny_model_dir) as original_engine:
        got = converted_engine.next_token_logits(question)
        want = original_engine.next_token_logits(question)
        assert converted_engine.answer(question, max_tokens=4).generation_tokens > 0
    assert got.argmax() == want.argmax()
    np.testing.assert_allclose(got, want, atol=0.05 * np.abs(want).max())


def test_a_broken_gguf_leaves_nothing_behind(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    models = tmp_path / "models"
    with pytest.raises(ModelError, match="GGUF"):
        convert_gguf(bad, models / "out")
    assert list(models.iterdir()) == []


def test_install_default_is_idempotent(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    models = tmp_path / "models"
    shutil.copytree(tiny_model_dir, models / DEFAULT_DIRNAME)
    assert is_installed(models / DEFAULT_DIRNAME)
    steps: list[str] = []
    path, converted_now = install_default(models, steps.append)
    assert (path, converted_now) == (models / DEFAULT_DIRNAME, False)
    assert steps == ["already installed"]


def test_refuses_to_overwrite(tiny_model_dir: Path) -> None:
    with pytest.raises(ModelError, match="already exists"):
        convert_gguf(Path("unused.gguf"), tiny_model_dir)
