"""fieldkit as `scripts/demo.sh` installs it: no torch, no sentence-transformers.

Those two serve the tests and benchmarks alone. Everything a person runs (a GGUF made into
a base model, routing, grounded answers) works without them, in a process that does not
see them installed (tests.fixtures.processes.without_dev_only).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from safetensors.numpy import load_file, save_file

from tests.engine.test_convert import write_tiny_gguf
from tests.fixtures.processes import REPO, without_dev_only
from tests.test_answering import noted_home  # noqa: F401  (a fixture)


def test_a_gguf_is_converted_and_questions_answered_without_torch(
    noted_home,  # noqa: F811
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    argv, env = without_dev_only(tmp_path / "site-packages")

    def fieldkit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*argv, "--home", str(noted_home.root), *args],
            capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
        )  # fmt: skip

    probe = subprocess.run(
        [*argv[:2], "-c", "import importlib.util as u; print(u.find_spec('torch'))"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert probe.stdout.strip() == "None", probe.stderr  # the view truly lacks torch
    gguf = tmp_path / "tiny.gguf"
    write_tiny_gguf(gguf, tiny_model_dir)
    installed = fieldkit("model", "install", str(gguf), "--name", "tiny-gguf")
    assert installed.returncode == 0, installed.stderr
    assert (noted_home.root / "models" / "tiny-gguf" / "tokenizer.json").is_file()
    bpe = tmp_path / "tiny-qwen2.gguf"  # a vocabulary transformers must read: needs torch
    write_tiny_gguf(bpe, tiny_model_dir, pre="qwen2")
    refused = fieldkit("model", "install", str(bpe))
    assert refused.returncode == 1
    *_, said = refused.stderr.splitlines()  # after the steps done, one sentence
    assert said.startswith("fieldkit: "), refused.stderr
    assert "Traceback" not in refused.stderr
    assert "(gpt2, qwen2) needs torch, which this install leaves out" in refused.stderr
    assert sorted(p.name for p in (noted_home.root / "models").iterdir()) == ["tiny-gguf"]
    hf = tmp_path / "hf-model"  # what that refusal offers: a Hugging Face folder
    shutil.copytree(tiny_model_dir, hf)
    weights = hf / "model.safetensors"
    save_file(load_file(weights), str(weights), metadata={"format": "pt"})  # not mlx-lm's
    folder = fieldkit("model", "install", str(hf), "--name", "tiny-hf")
    assert folder.returncode == 0, folder.stderr
    assert "converting hf-model with mlx-lm" in folder.stderr
    model = ("--model", str(tiny_model_dir))
    question = "How often should I clean the intake filter?"
    routed = fieldkit(*model, "route", question, "--json")
    assert routed.returncode == 0, routed.stderr
    assert json.loads(routed.stdout)["candidates"][0]["name"] == "pumps"
    asked = fieldkit(*model, "ask", question, "--adapter", "pumps", "--json",
                     "--max-tokens", "8", "--no-server")  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert answer["sources"][0]["passage_id"] == "r1"
    assert answer["prompt_tokens"] > 0  # the model and its tokenizer were loaded and read it
