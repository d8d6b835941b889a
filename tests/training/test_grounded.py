"""The notes recipe: grounded training examples, and training further from a packet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fieldkit.answers import grounded_messages
from fieldkit.cli import main
from fieldkit.home import Home
from fieldkit.prompts import PROMPT_PASSAGES
from fieldkit.router.retrieval import Hit
from fieldkit.store.identity import Identity
from fieldkit.store.library import Library
from fieldkit.store.notes import notes_of
from fieldkit.training.dataset import Record, build_examples
from fieldkit.training.grounded import TRAIN_PASSAGES, grounded_examples, neighbours
from tests.training.test_train import RECORDS, write_instruction_jsonl

RECS = [Record(q, a) for q, a in RECORDS]


def _user(example: dict) -> str:
    return example["messages"][-2]["content"]


@pytest.mark.parametrize("passages", [PROMPT_PASSAGES, TRAIN_PASSAGES])
def test_grounded_examples_keep_every_bare_one_and_add_prompts_with_notes(passages: int) -> None:
    """Training prompts hold as many passages as asked: one, as an answer reads, or two."""
    bare = build_examples(RECS, "pumps", seed=3)
    mixed = grounded_examples(RECS, "pumps", seed=3, passages=passages)
    assert mixed[: len(bare)] == bare
    added = mixed[len(bare) :]
    assert 0.25 * len(bare) < len(added) < 0.75 * len(bare)
    for example in added:
        prompt, answer = _user(example), example["messages"][-1]["content"]
        assert prompt.startswith("Answer the question using these notes.\n- ")
        assert prompt.count("\n- ") == passages
        assert answer in {a for _, a in RECORDS}
    with_own = sum(e["messages"][-1]["content"] in _user(e) for e in added)
    assert 0.6 * len(added) <= with_own < len(added)  # some have only neighbours


def test_the_recipe_holds_train_passages_by_default() -> None:
    """By default a training prompt holds TRAIN_PASSAGES passages."""
    added = grounded_examples(RECS, "pumps", share=1.0)[len(build_examples(RECS, "pumps")) :]
    assert added
    assert {_user(e).count("\n- ") for e in added} == {TRAIN_PASSAGES}


def test_the_training_prompt_is_the_answering_prompt() -> None:
    """What the adapter learns to read is exactly what it is shown when answering."""
    question, answer = RECORDS[0]
    hit = Hit("r1", 0.9, answer, question)
    shown = grounded_messages("Why E07?", [hit])[0]["content"]
    trained = {_user(e) for e in grounded_examples(RECS, "pumps", share=1.0)}
    line = shown.splitlines()[1]
    assert any(line in t.splitlines() for t in trained)


def test_neighbours_share_words() -> None:
    near = neighbours(RECS)
    assert 2 in near[0][:2]  # both AquaVolt records
    assert all(i not in row for i, row in enumerate(near))


def test_train_from_a_packet_starts_from_its_weights(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = write_instruction_jsonl(tmp_path / "pumps.jsonl")
    home = tmp_path / "home"
    base = ["--home", str(home), "--model", str(tiny_model_dir)]
    first = CliRunner().invoke(
        main,
        [*base, "train", str(data), "--name", "pumps", "--domain", "solar_pumps",
         "--iters", "4", "--rank", "4", "--layers", "2", "--lr", "5e-3"],
    )  # fmt: skip
    assert first.exit_code == 0, first.output
    exported = tmp_path / "pumps.fkpkt"
    out = CliRunner().invoke(main, [*base, "library", "export", "pumps", "-o", str(exported)])
    assert out.exit_code == 0, out.output
    first_question = json.loads(data.read_text().splitlines()[0])["instruction"]
    paraphrases = tmp_path / "paraphrases.jsonl"
    asked = ["What is the first pump question, put another way?", "And a third way?"]
    paraphrases.write_text(json.dumps({"source": first_question, "questions": asked}) + "\n")
    again = CliRunner().invoke(
        main,
        [*base, "train", str(data), "--name", "pumps-2", "--domain", "solar_pumps",
         "--iters", "1", "--lr", "1e-8", "--notes", "--grounded", "--from", str(exported),
         "--paraphrases", str(paraphrases)],
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    h = Home(home)
    library = Library.open(h, identity=Identity.load_or_create(h))
    try:
        old, new = library.get("pumps"), library.get("pumps-2")
        assert (new.adapter.rank, new.adapter.num_layers) == (4, 2)  # taken from the packet
        first = notes_of(new.manifest)[0]  # its phrasings kept with its passage, and routed on
        assert (first.title, first.asked) == (first_question, tuple(asked))
        assert set(asked) <= set(new.exemplars)
        assert new.manifest["format"] == 4
        a, b = library.load_adapter(old), library.load_adapter(new)
        moved = max(float(np.abs(t).max()) for n, t in a.tensors.items() if "lora_b" in n)
        assert moved > 1e-3  # fresh LoRA B is zero: a run not started from `pumps` differs
        for name, tensor in a.tensors.items():  # a tiny learning rate: the same weights
            assert np.allclose(tensor, b.tensors[name], atol=moved / 50)
    finally:
        library.close()
    missing = CliRunner().invoke(
        main, [*base, "train", str(data), "--name", "x", "--domain", "d", "--from", "nope"]
    )
    assert missing.exit_code == 1
    assert "Traceback" not in missing.output
    damaged = tmp_path / "bad.fkpkt"
    damaged.write_bytes(b"not a packet")
    bad = CliRunner().invoke(
        main, [*base, "train", str(data), "--name", "x", "--domain", "d", "--from", str(damaged)]
    )
    assert bad.exit_code == 1
    assert "not a fieldkit packet file" in bad.output
