"""PEFT adapters made by PEFT itself (save_pretrained on the tiny model) import unchanged,
and packets export back to folders PeftModel.from_pretrained loads.

The yardstick is PEFT's own forward pass: a fresh fp32 tiny model with the saved folder
loaded by PeftModel.from_pretrained. The adapters' values are rounded to fp16 before they
are saved (a packet stores fp16), so what remains between the two is arithmetic:
MLX against torch, plus the exact-in-real-numbers rescaling of B that rank and alpha
patterns need. Tolerance: max |logit difference| below LOGIT_TOL, with logits of size ~10
and an adapter that moves them by several units; PATTERN_TOL where rank and alpha patterns
rescale B, which is then rounded to fp16 once more (a relative error of 2^-11 per value).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from fieldkit.cli import main
from fieldkit.engine.engine import Engine
from fieldkit.errors import PacketError
from fieldkit.services import Services
from fieldkit.store.adapter import Adapter
from fieldkit.store.importers import check_fits_model, read_adapter_folder
from fieldkit.store.models import model_fingerprint, read_config
from fieldkit.store.notes import Passage, notes_of

MESSAGES = [{"role": "user", "content": "What does the pump need?"}]
LOGIT_TOL = 1e-3
PATTERN_TOL = 5e-3
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
NOTES = [Passage("r1", "Clean the intake filter every 7 days.", "Filter cleaning?")]
EXEMPLARS = [f"How do I clean pump filter number {i}?" for i in range(12)]


@pytest.fixture(scope="module", autouse=True)
def _quiet_transformers() -> Iterator[None]:
    hf_logging.disable_progress_bar()
    yield
    hf_logging.enable_progress_bar()


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> Iterator[Engine]:
    with Engine(tiny_model_dir) as eng:
        yield eng


def base_model(model_dir: Path) -> Any:
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)


def save_peft(model_dir: Path, out: Path, dtype: torch.dtype = torch.float32, **lora: Any) -> Path:
    """Save a PEFT LoRA adapter with random A and B (fp16-exact values) to `out`."""
    torch.manual_seed(0)
    options = {"r": 4, "lora_alpha": 8, "init_lora_weights": False, "target_modules": ALL}
    model = get_peft_model(base_model(model_dir), LoraConfig(**{**options, **lora}))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(param.half().float())
    model.to(dtype).save_pretrained(out)
    return out


def peft_logits(model_dir: Path, folder: Path) -> np.ndarray:
    """Return PEFT's next-token logits for MESSAGES with the folder's adapter."""
    from fieldkit.engine.mlx_backend import encode_chat

    ids = encode_chat(AutoTokenizer.from_pretrained(model_dir), MESSAGES)
    model = PeftModel.from_pretrained(base_model(model_dir), folder)
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1].numpy()


def imported(folder: Path, model_dir: Path) -> Adapter:
    config = read_config(model_dir)
    adapter, kind = read_adapter_folder(folder, config["num_hidden_layers"])
    check_fits_model(adapter, config)
    assert kind == "peft"
    return adapter


CASES: dict[str, dict[str, Any]] = {
    "plain": {},
    "rslora": {"use_rslora": True, "target_modules": ["q_proj", "v_proj"]},
    "all-linear": {"target_modules": "all-linear", "r": 8, "lora_alpha": 16},
    "layers_to_transform": {"layers_to_transform": [0, 1], "target_modules": ["q_proj", "up_proj"]},
    "rank-and-alpha-patterns": {"rank_pattern": {"q_proj": 2}, "alpha_pattern": {"down_proj": 3}},
    "bf16": {"dtype": torch.bfloat16},
}


@pytest.mark.parametrize("case", CASES)
def test_peft_adapter_imports_and_matches_peft(
    case: str, tiny_model_dir: Path, engine: Engine, tmp_path: Path
) -> None:
    folder = save_peft(tiny_model_dir, tmp_path / case, **CASES[case])
    expected = peft_logits(tiny_model_dir, folder)
    adapter = imported(folder, tiny_model_dir)
    got = engine.next_token_logits(MESSAGES, adapter)
    base = engine.next_token_logits(MESSAGES, None)
    assert np.abs(expected - base).max() > 1.0  # the adapter matters
    assert np.abs(got - expected).max() < (PATTERN_TOL if "pattern" in case else LOGIT_TOL)


def test_a_layer_restricted_adapter_keeps_its_layers(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = save_peft(tiny_model_dir, tmp_path / "early", layers_to_transform=[1])
    adapter = imported(folder, tiny_model_dir)
    assert adapter.config.num_layers == 3  # layers 1 to 3; 2 and 3 hold zeros
    assert not adapter.tensors["model.layers.3.mlp.up_proj.lora_b"].any()
    assert adapter.tensors["model.layers.1.mlp.up_proj.lora_b"].any()


def test_an_adapter_for_a_deeper_model_names_the_layer(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    folder = save_peft(tiny_model_dir, tmp_path / "deep", target_modules=["q_proj"])
    with pytest.raises(
        PacketError, match="LoRA on layer 3, but the base model's layers are 0 to 1"
    ):
        read_adapter_folder(folder, 2)


@pytest.mark.parametrize(
    ("lora", "refusal"),
    [
        ({"init_lora_weights": "pissa_niter_4"}, r"init_lora_weights = 'pissa_niter_4' \(PiSSA\)"),
        ({"init_lora_weights": "olora"}, r"'olora' \(OLoRA\), which changed the base"),
        ({"use_dora": True}, "use_dora = True.*magnitude vector"),
        ({"bias": "all"}, "bias = 'all'.*biases of the base model"),
        ({"modules_to_save": ["lm_head"]}, r"modules_to_save = \['lm_head'\].*whole modules"),
    ],
)
def test_adapters_whose_weights_mean_more_than_lora_are_refused(
    lora: dict[str, Any], refusal: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    folder = save_peft(tiny_model_dir, tmp_path / "x", **lora)
    with pytest.raises(PacketError, match=refusal):
        read_adapter_folder(folder, 4)


def test_unknown_config_fields_count_only_when_set(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = save_peft(tiny_model_dir, tmp_path / "future", target_modules=["q_proj"])
    config_path = folder / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config.update(future_config=None, use_future=False, future_modules=[])
    config_path.write_text(json.dumps(config))
    read_adapter_folder(folder, 4)
    config.update(future_config={"mode": "warp"})
    config_path.write_text(json.dumps(config))
    with pytest.raises(PacketError, match="sets future_config = .* does not know"):
        read_adapter_folder(folder, 4)


def test_export_to_peft_round_trips(
    tiny_model_dir: Path, engine: Engine, make_home, make_packet, make_adapter, tmp_path: Path
) -> None:  # noqa: ANN001
    alice, bob = make_home("alice"), make_home("bob")
    record = make_packet(
        alice,
        name="pumps",
        domain="water",
        description="Pumps.",
        exemplars=EXEMPLARS,
        base_model_id="tiny-llama",
        base_fingerprint=model_fingerprint(tiny_model_dir),
        adapter=make_adapter(3, num_layers=2, keys=("self_attn.q_proj", "mlp.down_proj")),
        notes=NOTES,
    )
    services = Services.build(alice.root, tiny_model_dir)
    packet = services.library.load_adapter(record)
    services.close()
    runner = CliRunner()
    out = tmp_path / "exported"
    common = ["--model", str(tiny_model_dir)]
    result = runner.invoke(
        main,
        ["--home", str(alice.root), *common, "library", "export", "pumps", "-o", str(out)]
        + ["--format", "peft"],
    )
    assert result.exit_code == 0, result.output
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left
    expected = engine.next_token_logits(MESSAGES, packet)
    assert np.abs(peft_logits(tiny_model_dir, out) - expected).max() < LOGIT_TOL
    again = runner.invoke(main, ["--home", str(bob.root), *common, "library", "import", str(out)])
    assert again.exit_code == 0, again.output
    services = Services.build(bob.root, tiny_model_dir)
    back = services.library.load_adapter(services.library.get("pumps"))
    assert services.library.get("pumps").exemplars == EXEMPLARS
    assert notes_of(services.library.get("pumps").manifest) == NOTES  # the notes came back
    services.close()
    assert back.config == packet.config
    assert back.tensors.keys() == packet.tensors.keys()
    assert all(np.array_equal(back.tensors[k], packet.tensors[k]) for k in packet.tensors)
    refused = runner.invoke(
        main,
        ["--home", str(alice.root), *common, "library", "export", "pumps", "-o", str(out)]
        + ["--format", "peft"],
    )
    assert refused.exit_code != 0
    assert "already exists" in refused.output
