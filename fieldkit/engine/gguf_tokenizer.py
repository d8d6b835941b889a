"""The tokenizer a llama GGUF describes, written as a Hugging Face tokenizer folder.

A GGUF has no tokenizer.json: it lists the tokens, their types, the merges and the special
token ids as metadata. transformers 5 reads those through a module that imports torch, and
the install `scripts/demo.sh` makes has no torch (it serves the tests and benchmarks only).
So a byte-level BPE vocabulary (`tokenizer.ggml.model` "gpt2") that splits text the GPT-2
way (`tokenizer.ggml.pre` in PLAIN_PRE: the embedded SmolLM2) or Llama 3's (SPLIT_PRE) is
built here with `tokenizers` alone, as transformers builds it: each token spelled in the byte alphabet, the
file's merges, its control tokens as special added tokens and its user-defined ones as
plain added tokens. mlx-lm's convert then loads the folder with transformers and writes it
again, so the model folder holds the files transformers writes (the suite checks that both
ways give the same encodings). Any other vocabulary is read by transformers itself, which
needs torch for it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fieldkit.engine.gguf_check import metadata_value
from fieldkit.errors import ModelError, gist

# Pre-tokenizer names whose text is split by the GPT-2 pattern (transformers maps no other
# pattern to them); "smollm" is the embedded default's.
PLAIN_PRE = frozenset({"default", "gpt2", "gpt-2", "smollm"})
# Llama 3's split (tiktoken's cl100k pattern: up to three digits a piece, a letter run with
# one leading mark), under the names llama.cpp gives it.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPLIT_PRE = {"llama3": _LLAMA3_SPLIT, "llama-v3": _LLAMA3_SPLIT, "llama-bpe": _LLAMA3_SPLIT}
CONTROL, USER_DEFINED = 3, 4  # llama.cpp's token types
SPECIAL_IDS = {
    "bos_token": "bos",
    "eos_token": "eos",
    "unk_token": "unknown",
    "pad_token": "padding",
}


def write_tokenizer(gguf_path: Path, metadata: Mapping[str, Any], out_dir: Path) -> None:
    """Write tokenizer.json and tokenizer_config.json for the GGUF into `out_dir`.

    Raises ModelError for a vocabulary that cannot be read (a special token id past the
    token list, a transformers failure, or torch missing where transformers needs it)."""
    model = metadata.get("tokenizer.ggml.model")
    pre = str(metadata.get("tokenizer.ggml.pre", "default"))
    tokens = metadata.get("tokenizer.ggml.tokens")
    if not isinstance(model, str) or not isinstance(tokens, list) or not tokens:
        raise ModelError(f"{gguf_path.name} carries no tokenizer (no token list in its metadata).")
    if model == "gpt2" and (pre in PLAIN_PRE or pre in SPLIT_PRE):
        _write_byte_level(gguf_path.name, metadata, out_dir, SPLIT_PRE.get(pre))
    else:
        _write_with_transformers(gguf_path, out_dir, f"{model}, {pre}")


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's spelling of each byte as a printable character (the byte-level alphabet)."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    kept += range(ord("®"), ord("ÿ") + 1)
    spelling = {b: chr(b) for b in kept}
    for n, b in enumerate(b for b in range(256) if b not in spelling):
        spelling[b] = chr(256 + n)
    return spelling


def _write_byte_level(
    name: str, metadata: Mapping[str, Any], out_dir: Path, split: str | None
) -> None:
    """Build the vocabulary with `tokenizers`: text split by `split` (a regular expression)
    then spelled in bytes, or split the GPT-2 way when it is None."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    tokens = [str(t) for t in metadata["tokenizer.ggml.tokens"]]  # a list: write_tokenizer
    listed = metadata.get("tokenizer.ggml.merges")
    merges = [tuple(str(m).split(" ")) for m in listed] if isinstance(listed, list) else []
    types = metadata.get("tokenizer.ggml.token_type")  # a number each, or none at all
    types = types.tolist() if hasattr(types, "tolist") else [] if types is None else types
    if (
        not isinstance(types, list)
        or len(types) not in (0, len(tokens))
        or not all(isinstance(t, int) for t in types)
    ):
        raise ModelError(f"The tokenizer in {name} has token types that do not fit its tokens.")
    spelling = _byte_alphabet()
    alphabet = set(spelling.values())
    vocab = {
        t if set(t) <= alphabet else "".join(spelling[b] for b in t.encode()): i
        for i, t in enumerate(tokens)
    }
    bad = next((m for m in merges if len(m) != 2 or not set(m) <= vocab.keys()), None)
    if bad is not None:  # tokenizers would refuse it with a traceback of its own
        raise ModelError(
            f"The tokenizer in {name} has a merge its token list cannot make "
            f"({' '.join(bad)[:40]!r})."
        )
    bpe = BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
              end_of_word_suffix="", fuse_unk=False)  # fmt: skip
    tokenizer = Tokenizer(bpe)
    tokenizer.pre_tokenizer = (
        pre_tokenizers.ByteLevel(add_prefix_space=False)
        if split is None
        else pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    )  # fmt: skip
    tokenizer.decoder = decoders.ByteLevel()
    kinds = list(zip(tokens, types, strict=False))
    tokenizer.add_special_tokens(  # a control token outside the byte alphabet is mislabelled
        [AddedToken(t, normalized=False, special=True) for t, k in kinds
         if k == CONTROL and set(t) <= alphabet]
    )  # fmt: skip
    tokenizer.add_tokens(
        [AddedToken(t, normalized=False, special=False) for t, k in kinds
         if k == USER_DEFINED and t in vocab]
    )  # fmt: skip
    config: dict[str, Any] = {"tokenizer_class": "TokenizersBackend"}
    for field, key in SPECIAL_IDS.items():
        index = metadata_value(metadata, f"tokenizer.ggml.{key}_token_id")
        if index is None:  # stated as none, as transformers does
            config[field] = None
        elif not isinstance(index, int) or not 0 <= index < len(tokens):
            raise ModelError(f"The tokenizer in {name} names a special token its token list lacks.")
        else:
            config[field] = tokens[index]
    for flag in ("add_bos_token", "add_eos_token"):
        value = metadata_value(metadata, f"tokenizer.ggml.{flag}")
        if value is not None:
            config[flag] = bool(value)
    template = metadata.get("tokenizer.chat_template")
    if isinstance(template, str) and template:
        config["chat_template"] = template
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def _write_with_transformers(gguf_path: Path, out_dir: Path, kind: str) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    except ImportError as exc:  # transformers reads a GGUF with torch
        raise ModelError(
            f"Reading the tokenizer of {gguf_path.name} ({kind}) needs torch, which this "
            "install leaves out: install torch into its environment, or install the "
            "model's Hugging Face folder instead."
        ) from exc
    except IndexError as exc:  # transformers looks each special token's id up in the list
        raise ModelError(
            f"The tokenizer in {gguf_path.name} names a special token its token list lacks."
        ) from exc
    except (ValueError, OSError, KeyError) as exc:
        raise ModelError(f"The tokenizer in {gguf_path.name} cannot be read: {gist(exc)}.") from exc
    tokenizer.save_pretrained(str(out_dir))
