"""An adapter folder written by `mlx_lm lora` itself (a few iterations on the tiny model)
imports unchanged and answers as `mlx_lm` does with the same folder; packets export back
to folders mlx-lm loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fieldkit.cli import main
from fieldkit.engine.engine import Engine
from fieldkit.errors import PacketError
from fieldkit.home import Home
from fieldkit.services import Services
from fieldkit.store.adapter import Adapter
from fieldkit.store.models import model_fingerprint
from fieldkit.store.packet import EXEMPLARS_FORMAT

MESSAGES = [{"role": "user", "content": "What does the pump need?"}]
TOKENS = 12


def chat_lines(n: int) -> list[str]:
    pumps = ["the filter", "two bolts", "fresh water", "spare fuses"]
    return [
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"What does pump {i} need?"},
                    {
                        "role": "assistant",
                        "content": f"Pump {i} needs {pumps[i % 4]} every morning.",
                    },
                ]
            }
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def mlx_lm_folder(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train with the real `mlx_lm lora` command for a few iterations; return its folder."""
    work = tmp_path_factory.mktemp("mlx-lm-lora")
    data = work / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("\n".join(chat_lines(80)) + "\n")
    (data / "valid.jsonl").write_text("\n".join(chat_lines(4)) + "\n")
    out = work / "adapters"
    command = [sys.executable, "-m", "mlx_lm", "lora", "--model", str(tiny_model_dir)]
    command += ["--train", "--data", str(data), "--adapter-path", str(out), "--iters", "4"]
    command += ["--batch-size", "2", "--num-layers", "2", "--learning-rate", "0.05"]
    command += ["--steps-per-eval", "100", "--val-batches", "1", "--max-seq-length", "64"]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> Iterator[Engine]:
    with Engine(tiny_model_dir) as eng:
        yield eng


def mlx_lm_answer(model_dir: Path, adapter_dir: Path | None) -> list[int]:
    """Greedy tokens of plain mlx-lm (load + stream_generate) for MESSAGES."""
    from mlx_lm import load
    from mlx_lm.generate import stream_generate

    from fieldkit.engine.mlx_backend import encode_chat

    model, tokenizer = load(str(model_dir), adapter_path=str(adapter_dir) if adapter_dir else None)
    prompt = encode_chat(tokenizer, MESSAGES)
    tokens = []
    for response in stream_generate(model, tokenizer, prompt, max_tokens=TOKENS):
        if response.finish_reason in (None, "length"):
            tokens.append(int(response.token))
    return tokens


def import_folder(home: Home, model_dir: Path, folder: Path, *extra: str) -> Adapter:
    args = ["--home", str(home.root), "--model", str(model_dir), "library", "import", str(folder)]
    result = CliRunner().invoke(main, [*args, *extra])
    assert result.exit_code == 0, result.output
    services = Services.build(home.root, model_dir)
    try:
        records = services.library.list_packets()
        return services.library.load_adapter(records[-1])
    finally:
        services.close()


def test_mlx_lm_lora_output_imports_and_answers_as_mlx_lm(
    mlx_lm_folder: Path, tiny_model_dir: Path, engine: Engine, home: Home
) -> None:
    written = json.loads((mlx_lm_folder / "adapter_config.json").read_text())
    assert {"clear_cache_threshold", "trust_remote_code"} <= set(written)  # as mlx-lm writes it
    exemplars = mlx_lm_folder.parent / "data" / "train.jsonl"  # chat jsonl: the user turns
    adapter = import_folder(
        home,
        tiny_model_dir,
        mlx_lm_folder,
        "--name",
        "pumps",
        "--domain",
        "water",
        "--exemplars",
        str(exemplars),
    )
    services = Services.build(home.root, tiny_model_dir)
    record = services.library.get("pumps")
    exemplars = record.exemplars  # every one of the 80 user turns, in order
    assert len(exemplars) == 80
    assert exemplars[:2] == ["What does pump 0 need?", "What does pump 1 need?"]
    assert exemplars[-1] == "What does pump 79 need?"
    assert record.manifest["format"] == EXEMPLARS_FORMAT  # more than format 3 holds
    services.close()
    assert adapter.config.num_layers == 2
    expected = mlx_lm_answer(tiny_model_dir, mlx_lm_folder)
    assert expected != mlx_lm_answer(tiny_model_dir, None)  # the training changed something
    assert list(engine.answer(MESSAGES, adapter, max_tokens=TOKENS).tokens) == expected


def test_a_bf16_mlx_lm_adapter_imports(
    mlx_lm_folder: Path, tiny_model_dir: Path, engine: Engine, home: Home, tmp_path: Path
) -> None:
    import mlx.core as mx

    folder = tmp_path / "bf16"
    folder.mkdir()
    weights = mx.load(str(mlx_lm_folder / "adapters.safetensors"))
    mx.save_safetensors(
        str(folder / "adapters.safetensors"), {k: v.astype(mx.bfloat16) for k, v in weights.items()}
    )
    (folder / "adapter_config.json").write_text((mlx_lm_folder / "adapter_config.json").read_text())
    adapter = import_folder(
        home,
        tiny_model_dir,
        folder,
        "--name",
        "pumps16",
        "--domain",
        "water",
        "--exemplars",
        str(mlx_lm_folder.parent / "data" / "train.jsonl"),
    )
    assert all(t.dtype == np.float16 for t in adapter.tensors.values())
    expected = mlx_lm_answer(tiny_model_dir, folder)
    assert list(engine.answer(MESSAGES, adapter, max_tokens=TOKENS).tokens) == expected


def add_wells(home: Home, model_dir: Path, make_adapter, **fields) -> Services:  # noqa: ANN001
    """Add the packet 'wells' (three layers of LoRA) to `home`; return its services, open."""
    services = Services.build(home.root, model_dir)
    services.library.add_local(
        make_adapter(5, num_layers=3),
        name="wells",
        domain="water",
        description="Wells.",
        exemplars=[f"How deep is well {i}?" for i in range(10)],
        base_model_id="tiny-llama",
        base_fingerprint=model_fingerprint(model_dir),
        **fields,
    )
    return services


def test_export_to_mlx_lm_round_trips(
    tiny_model_dir: Path,
    engine: Engine,
    make_home: Callable[[str], Home],
    make_adapter: Callable[..., Adapter],
    tmp_path: Path,
) -> None:
    alice, bob = make_home("alice"), make_home("bob")
    services = add_wells(alice, tiny_model_dir, make_adapter)
    packet = services.library.load_adapter(services.library.get("wells"))
    services.close()
    out = tmp_path / "wells-mlx"
    args = ["--home", str(alice.root), "--model", str(tiny_model_dir), "library", "export"]
    result = CliRunner().invoke(main, [*args, "wells", "-o", str(out), "--format", "mlx-lm"])
    assert result.exit_code == 0, result.output
    answer = list(engine.answer(MESSAGES, packet, max_tokens=TOKENS).tokens)
    assert mlx_lm_answer(tiny_model_dir, out) == answer
    back = import_folder(bob, tiny_model_dir, out)  # packet.json names it
    assert back.config == packet.config
    assert all(np.array_equal(back.tensors[k], packet.tensors[k]) for k in packet.tensors)
    # ...and it comes back as it was: the same signed packet, its author's, at its size
    services = Services.build(alice.root, tiny_model_dir)
    original = services.library.get("wells")
    services.close()
    services = Services.build(bob.root, tiny_model_dir)
    try:
        came = services.library.get("wells")
        assert came.packet_id == original.packet_id
        assert came.author_id == original.author_id
        assert came.size == original.size
    finally:
        services.close()
    # the device that holds it is told so, as for a packet file (not "Imported")
    home = ["--home", str(alice.root), "--model", str(tiny_model_dir)]
    again = CliRunner().invoke(main, [*home, "library", "import", str(out)])
    assert again.exit_code == 0, again.output
    assert again.output == "Packet 'wells' is already in the library.\n"
    # a folder whose weights were changed is signed anew, the packet it came from named
    (out / "packet.json").write_text(
        (out / "packet.json").read_text().replace('"name": "wells"', '"name": "wells-2"', 1)
    )
    weights = out / "adapters.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-8:] = bytes(8)  # the last tensor's last values
    weights.write_bytes(bytes(raw))
    import_folder(bob, tiny_model_dir, out)
    services = Services.build(bob.root, tiny_model_dir)
    try:
        changed = services.library.get("wells-2")
        assert changed.author_id == services.identity.device_id != original.author_id
        assert changed.manifest["lineage"] == [original.packet_id]
    finally:
        services.close()


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"fine_tune_type": "dora"}, "DoRA adapters .* learned magnitude"),
        ({"fine_tune_type": "full"}, "full fine-tune"),
        ({"future_mode": "warp"}, "sets future_mode = 'warp', which fieldkit does not know"),
        ({"lora_parameters": {"rank": 8, "bias": True}}, "lora_parameters set bias = True"),
        ({"future_mode": None, "future_list": [], "clear_cache_threshold": 5}, None),
        ({"lora_parameters": {"rank": 8, "scale": 20.0, "future": None}}, None),
    ],
)
def test_mlx_lm_config_fields_count_only_when_set(change: dict, refusal: str | None) -> None:
    from fieldkit.store.adapter import AdapterConfig

    config = {"fine_tune_type": "lora", "num_layers": 2, "lora_parameters": {"rank": 8}}
    config.update(change)
    if refusal is None:
        assert AdapterConfig.from_mlx_lm(config).num_layers == 2
    else:
        with pytest.raises(PacketError, match=refusal):
            AdapterConfig.from_mlx_lm(config)


def test_a_quantised_packet_comes_back_whole_and_a_block_follows_it(
    tiny_model_dir: Path,
    make_home: Callable[[str], Home],
    make_adapter: Callable[..., Adapter],
    tmp_path: Path,
) -> None:
    """The demo packets are int4: their mlx-lm export is fp32, and importing it back made
    a 2.6 MB packet signed by the importer, which also carried a blocked packet past the
    block. The fp32 values quantise back to the very codes and scales."""
    alice, bob, carol = make_home("alice"), make_home("bob"), make_home("carol")
    services = add_wells(alice, tiny_model_dir, make_adapter, dtype="int4")
    original = services.library.get("wells")
    author = services.identity.device_id
    services.close()
    assert original.manifest["dtype"] == "int4"
    out = tmp_path / "wells-mlx"
    args = ["--home", str(alice.root), "--model", str(tiny_model_dir), "library", "export"]
    result = CliRunner().invoke(main, [*args, "wells", "-o", str(out), "--format", "mlx-lm"])
    assert result.exit_code == 0, result.output
    import_folder(bob, tiny_model_dir, out)
    services = Services.build(bob.root, tiny_model_dir)
    try:
        came = services.library.get("wells")
        assert (came.packet_id, came.author_id, came.size) == (
            original.packet_id, author, original.size,
        )  # fmt: skip
        services.library.set_trust(author, "blocked")
        with pytest.raises(PacketError, match="its author is blocked here"):
            services.library.checked_weights("wells")  # no export of what a block covers
    finally:
        services.close()
    blocked = Services.build(carol.root, tiny_model_dir)
    blocked.library.set_trust(author, "blocked")
    blocked.close()
    args = ["--home", str(carol.root), "--model", str(tiny_model_dir), "library", "import"]
    refused = CliRunner().invoke(main, [*args, str(out)])
    assert refused.exit_code == 1
    assert "exported from a packet by an author blocked here" in refused.output
