"""Bring your own base model: `model install PATH`, `model use NAME`, $FIELDKIT_MODEL and
--model; packets made for another base stay refused. Also shell completion of names."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from fieldkit.cli import main
from fieldkit.commands.complete import installed_models, packet_names, peer_ids
from fieldkit.home import Home
from fieldkit.services import Services
from fieldkit.store.adapter import Adapter
from fieldkit.store.models import model_fingerprint

QUESTION = "What does the pump need?"


def fieldkit(home: Home, *args: str, env: dict[str, str] | None = None):
    result = CliRunner().invoke(main, ["--home", str(home.root), *args], env=env)
    return result


def model_path(home: Home, *args: str, env: dict[str, str] | None = None) -> str:
    result = fieldkit(home, *args, "model", "info", "--json", env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["path"]


def test_an_installed_model_is_chosen_remembered_and_overridden(
    home: Home, tiny_model_dir: Path, tmp_path: Path
) -> None:
    installed = fieldkit(home, "model", "install", str(tiny_model_dir), "--name", "tiny")
    assert installed.exit_code == 0, installed.output
    assert "fieldkit model use tiny" in installed.stdout
    target = home.models_dir / "tiny"
    assert model_fingerprint(target) == model_fingerprint(tiny_model_dir)
    assert not [p for p in home.models_dir.iterdir() if p.name.startswith(".")]
    again = fieldkit(home, "model", "install", str(tiny_model_dir), "--name", "tiny")
    assert again.exit_code != 0
    assert "already installed" in again.output
    assert fieldkit(home, "model", "info").exit_code != 0  # no default installed, none chosen
    assert fieldkit(home, "model", "use", "tiny").exit_code == 0
    assert model_path(home) == str(target)  # remembered in the home
    assert fieldkit(home, "model", "list").stdout == "* tiny\n"
    assert model_path(home, env={"FIELDKIT_MODEL": str(tiny_model_dir)}) == str(tiny_model_dir)
    assert model_path(home, "--model", "tiny") == str(target)  # an installed name
    unknown = fieldkit(home, "model", "use", "nope")
    assert unknown.exit_code != 0
    assert "No model named 'nope' is installed (installed: tiny)" in unknown.output


def test_a_model_not_in_use_is_removed_whole_and_its_packets_stay(
    home: Home, tiny_model_dir: Path, tmp_path: Path, make_packet
) -> None:
    import shutil

    other = tmp_path / "other"  # the same model with other weights' fingerprint
    shutil.copytree(tiny_model_dir, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 2e-5}))
    for name, source in (("tiny", tiny_model_dir), ("spare", other)):
        assert fieldkit(home, "model", "install", str(source), "--name", name).exit_code == 0
    assert fieldkit(home, "model", "use", "spare").exit_code == 0
    make_packet(home, name="pumps", base_fingerprint=model_fingerprint(home.models_dir / "spare"))
    refused = fieldkit(home, "model", "remove", "spare")
    assert refused.exit_code == 1
    assert refused.stderr == (
        "fieldkit: spare is the model this home uses; choose another first "
        "(`fieldkit model use tiny`), then remove it.\n"
    )
    assert fieldkit(home, "model", "use", "tiny").exit_code == 0
    removed = fieldkit(home, "model", "remove", "spare")
    assert removed.exit_code == 0, removed.output
    assert removed.stdout.startswith("Removed spare (")
    assert "1 packet(s) here were made for it (pumps)" in removed.stdout
    assert sorted(p.name for p in home.models_dir.iterdir()) == ["tiny"]
    assert fieldkit(home, "model", "list").stdout == "* tiny\n"
    assert "pumps" in fieldkit(home, "library", "list").stdout
    last = fieldkit(home, "model", "remove", "tiny")
    assert last.exit_code == 1
    assert "install another first" in last.stderr
    gone = fieldkit(home, "model", "remove", "spare")
    assert gone.exit_code == 1
    assert "No model named 'spare' is installed (installed: tiny)" in gone.stderr


def test_a_hugging_face_folder_is_converted_and_foreign_packets_stay_refused(
    home: Home, tiny_model_dir: Path, tmp_path: Path, make_adapter: Callable[..., Adapter]
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = tmp_path / "hf-model"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    model.save_pretrained(hf)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(hf)
    installed = fieldkit(home, "model", "install", str(hf), "--dtype", "float16")
    assert installed.exit_code == 0, installed.output
    assert fieldkit(home, "model", "use", "hf-model").exit_code == 0
    info = json.loads(fieldkit(home, "model", "info", "--json").stdout)
    assert info["dtype"] == "float16"
    assert fieldkit(home, "ask", QUESTION, "--base", "--max-tokens", "3").exit_code == 0
    services = Services.build(home.root, tiny_model_dir)
    services.library.add_local(
        make_adapter(1),
        name="pumps",
        domain="water",
        description="Pumps.",
        exemplars=[f"How do I fix pump part {i}?" for i in range(12)],
        base_model_id="tiny-llama",
        base_fingerprint=model_fingerprint(tiny_model_dir),
    )
    services.close()
    refused = fieldkit(home, "ask", QUESTION, "--adapter", "pumps", "--max-tokens", "3")
    assert refused.exit_code != 0
    assert "was made for another base model" in refused.output


def test_names_complete_from_the_home(
    home: Home, tiny_model_dir: Path, make_adapter: Callable[..., Adapter]
) -> None:
    services = Services.build(home.root, tiny_model_dir)
    for name in ("pumps", "pumice", "wells"):
        services.library.add_local(
            make_adapter(len(name)),
            name=name,
            domain="water",
            description="",
            exemplars=[f"Question {i} about {name}?" for i in range(10)],
            base_model_id="tiny-llama",
            base_fingerprint=model_fingerprint(tiny_model_dir),
        )
    services.library.set_trust("abcdefghijklmnop", "trusted")
    services.close()
    (home.models_dir / "tiny").mkdir()
    ctx = main.make_context(
        "fieldkit", ["--home", str(home.root), "library"], resilient_parsing=True
    )
    assert sorted(item.value for item in packet_names(ctx, None, "pu")) == ["pumice", "pumps"]
    assert installed_models(ctx, None, "t") == ["tiny"]
    assert [item.value for item in peer_ids(ctx, None, "ABC")] == ["abcdefghijklmnop"]
    assert peer_ids(ctx, None, "ff") == []
    empty = main.make_context(
        "fieldkit", ["--home", str(home.root / "nowhere"), "library"], resilient_parsing=True
    )
    assert packet_names(empty, None, "") == []
    assert not (home.root / "nowhere" / "library.db").exists()


@pytest.fixture
def home(make_home: Callable[[str], Home]) -> Home:
    return make_home("byo")


def test_sources_it_cannot_use_are_refused_and_leave_nothing(
    home: Home, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from safetensors.numpy import load_file, save_file

    bad = tmp_path / "bad.gguf"  # well formed (one F32 tensor), but no metadata at all
    info = struct.pack("<Q", 17) + b"token_embd.weight" + struct.pack("<IQIQ", 1, 32, 0, 0)
    header = b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + info
    bad.write_bytes(header + bytes(-len(header) % 32 + 32 * 4))
    refused = fieldkit(home, "model", "install", str(bad))
    assert refused.exit_code != 0
    assert "fieldkit: The GGUF lacks the field general.architecture." in refused.output
    fused = tmp_path / "fused"  # phi-3 style: one qkv_proj instead of q, k and v
    fused.mkdir()
    for item in tiny_model_dir.iterdir():
        if item.suffix != ".safetensors" and item.is_file():
            (fused / item.name).write_bytes(item.read_bytes())
    weights = load_file(str(tiny_model_dir / "model.safetensors"))
    renamed = {k.replace("self_attn.q_proj", "self_attn.qkv_proj"): v for k, v in weights.items()}
    save_file(renamed, str(fused / "model.safetensors"), metadata={"format": "mlx"})
    refused = fieldkit(home, "model", "install", str(fused))
    assert refused.exit_code != 0
    assert "have no self_attn.q_proj" in refused.output
    assert list(home.models_dir.iterdir()) == []
