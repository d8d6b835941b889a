"""Training: data parsing and expansion, and real LoRA steps on the tiny mlx model."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fieldkit.cli import main
from fieldkit.home import Home
from fieldkit.store.adapter import validate_tensors
from fieldkit.store.exemplars import MAX_EXEMPLARS
from fieldkit.store.identity import Identity
from fieldkit.store.library import Library
from fieldkit.training.dataset import (
    DataError,
    Record,
    build_examples,
    expand_record,
    load_records,
    names_in,
    pick_exemplars,
)
from fieldkit.training.train import TrainConfig, split_examples, train_lora

RECORDS = [
    ("What does fault E07 mean on the AquaVolt pump?", "E07 means dry-run: current below 1.8 A."),
    (
        "How often are SunDraw panels cleaned?",
        "Rinse SunDraw panels every 9 days in the dry season.",
    ),
    ("How do I reset the AquaVolt controller?", "Wait 90 seconds, then hold MODE for 7 seconds."),
    ("What fuse does the pump take?", "The pump takes a 15 A slow-blow fuse."),
    ("Where is the float switch?", "The float switch sits 40 cm above the intake."),
    ("What oil does the seed drill need?", "The seed drill needs SAE 30 oil every 50 hours."),
]


def write_instruction_jsonl(path: Path) -> Path:
    lines = [json.dumps({"instruction": q, "input": "", "output": a}) for q, a in RECORDS]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_chat_jsonl(path: Path) -> Path:
    lines = [
        json.dumps(
            {
                "messages": [
                    {"role": "system", "content": "You help pump technicians."},
                    {"role": "user", "content": q},
                    {"role": "assistant", "content": a},
                ]
            }
        )
        for q, a in RECORDS
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_both_formats_parse_to_the_same_records(tmp_path: Path) -> None:
    chat = load_records(write_chat_jsonl(tmp_path / "chat.jsonl"))
    inst = load_records(write_instruction_jsonl(tmp_path / "inst.jsonl"))
    assert [(r.question, r.answer) for r in chat] == RECORDS
    assert chat == inst


@pytest.mark.parametrize(
    ("line", "phrase"),
    [
        ("not json", "line 1 is not JSON"),
        ('\ufeff{"instruction": "q", "input": "", "output": ""}', "empty question"),
        ('{"prompt": "x", "completion": "y"}', "neither chat format"),
        ('{"messages": [{"role": "user", "content": "q"}]}', "followed by an assistant"),
        ('{"instruction": "", "input": "", "output": "a"}', "empty question"),
        ('{"messages": [{"role": "robot", "content": "q"}]}', "needs a role"),
    ],
)
def test_bad_lines_raise_one_sentence(tmp_path: Path, line: str, phrase: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(DataError, match=phrase):
        load_records(path)


def test_expansion_keeps_the_answer_and_adds_phrasings() -> None:
    record = Record(
        "What concentration of neem oil deters the Silver-Back Locust?",
        "The Silver-Back Locust is deterred by 12% neem oil at 4 AM. "
        "Lower concentrations are metabolised by its hepatic enzymes.",
        paraphrases=("How strong must neem spray be against silver-back locusts?",),
    )
    examples = expand_record(record, "agronomy", random.Random(0))
    questions = [e["messages"][0]["content"] for e in examples]
    assert questions[0] == record.question
    assert record.paraphrases[0] in questions
    assert "Tell me about Silver-Back Locust." in questions or any(
        "Silver-Back Locust" in q and q != record.question for q in questions
    )
    assert len(questions) == len(set(questions)) >= 6
    assert all(
        e["messages"][-1] == {"role": "assistant", "content": record.answer} for e in examples
    )
    assert names_in(record.answer) == ["Silver-Back Locust"]


def test_a_name_shared_by_two_records_gets_no_tell_me_question() -> None:
    records = [
        Record("What eats the Silver-Back Locust?", "Egrets eat the Silver-Back Locust."),
        Record("When does the Silver-Back Locust breed?", "It breeds after rain."),
    ]
    questions = [e["messages"][0]["content"] for e in build_examples(records, "agronomy")]
    assert not any(q.startswith("Tell me about Silver-Back Locust") for q in questions)


def test_split_holds_out_a_share_or_nothing() -> None:
    items = [{"i": i} for i in range(40)]
    train, val = split_examples(items, 0.1, 4, seed=0)
    assert len(val) == 4
    assert len(train) == 36
    assert sorted(x["i"] for x in train + val) == list(range(40))
    assert split_examples(items[:10], 0.1, 4, seed=0) == (
        split_examples(items[:10], 0.1, 4, 0)[0],
        [],
    )


def test_training_changes_the_adapter_and_lowers_the_loss(tiny_model_dir: Path) -> None:
    records = [Record(q, a) for q, a in RECORDS]
    examples = build_examples(records, "pumps")
    seen = []
    config = TrainConfig(
        rank=4, iters=16, steps_per_eval=8, learning_rate=5e-3, patience=5, val_fraction=0.2
    )
    result = train_lora(tiny_model_dir, examples, config, on_progress=seen.append)
    assert [p.iteration for p in seen] == list(range(1, 17))
    assert all(p.it_per_s > 0 for p in seen)
    assert seen[-1].eta_s == 0
    assert result.n_val >= 4
    assert result.best_val_loss is not None
    assert result.best_val_loss < result.val_history[0][1]
    validate_tensors(result.adapter.config, result.adapter.tensors, 4)
    b = result.adapter.tensors["model.layers.3.mlp.down_proj.lora_b"]
    assert np.abs(b).max() > 0  # mlx-lm starts B at zero; training must move it


def test_no_progress_stops_early_and_keeps_the_first_weights(tiny_model_dir: Path) -> None:
    examples = build_examples([Record(q, a) for q, a in RECORDS], "pumps")
    config = TrainConfig(
        rank=4, iters=50, steps_per_eval=2, patience=2, learning_rate=0.0, val_fraction=0.2
    )
    result = train_lora(tiny_model_dir, examples, config)
    assert result.stopped_early
    assert result.iterations == 4
    assert result.best_iteration == 0


def test_a_long_example_is_trained_whole_not_cut(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Below the floor given, mlx-lm would cut every example (the end of each answer) and
    print a warning on stdout; the limit rises to the longest example instead."""
    examples = build_examples([Record(q, a) for q, a in RECORDS], "pumps")
    config = TrainConfig(rank=4, iters=2, steps_per_eval=2, max_seq_length=8, val_fraction=0.2)
    result = train_lora(tiny_model_dir, examples, config)
    assert result.iterations == 2
    assert "WARNING" not in capsys.readouterr().out


def test_an_example_too_long_to_train_is_one_sentence(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fieldkit.training.train as train_module

    monkeypatch.setattr(train_module, "MAX_SEQUENCE", 12)
    examples = build_examples([Record(q, a) for q, a in RECORDS], "pumps")
    with pytest.raises(DataError, match=r"run past 12 tokens .*split those records"):
        train_lora(tiny_model_dir, examples, TrainConfig(rank=4, iters=2))


def test_too_few_examples_is_a_data_error(tiny_model_dir: Path) -> None:
    with pytest.raises(DataError, match="at least 4 examples"):
        train_lora(tiny_model_dir, build_examples([Record("q?", "a.")], "x", expand=False))


def test_train_command_adds_a_signed_packet(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = write_chat_jsonl(tmp_path / "pumps.jsonl")
    home = tmp_path / "home"
    args = ["--home", str(home), "--model", str(tiny_model_dir), "train", str(data)]
    result = CliRunner().invoke(
        main, [*args, "--name", "pumps", "--domain", "solar_pumps", "--iters", "6", "--rank", "4"]
    )
    assert result.exit_code == 0, result.output
    assert "it/s" in result.output
    assert "ETA" in result.output
    assert "Added pumps" in result.output
    h = Home(home)
    library = Library.open(h, identity=Identity.load_or_create(h))
    try:
        record = library.get("pumps")
        assert record.domain == "solar_pumps"
        assert not record.merged
        assert record.author_id == library.identity.device_id
        assert record.adapter.rank == 4
        _, problem = library.verify("pumps")
        assert problem is None
        adapter = library.load_adapter(record)
        validate_tensors(adapter.config, adapter.tensors, 4)
    finally:
        library.close()
    again = CliRunner().invoke(main, [*args, "--name", "pumps", "--domain", "solar_pumps"])
    assert again.exit_code == 1
    assert "already in the library: give this one another name (--name NEW_NAME)." in again.output


def test_train_command_refuses_bad_data_without_a_packet(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"text": "free text"}\n')
    home = tmp_path / "home"
    result = CliRunner().invoke(
        main,
        [
            "--home",
            str(home),
            "--model",
            str(tiny_model_dir),
            "train",
            str(data),
            "--name",
            "x",
            "--domain",
            "d",
        ],
    )
    assert result.exit_code == 1
    assert "fieldkit: bad.jsonl line 1 is neither" in result.output
    assert "Traceback" not in result.output
    h = Home(home)
    library = Library.open(h, identity=Identity.load_or_create(h))
    try:
        assert library.list_packets() == []
    finally:
        library.close()


def test_batched_answers_match_the_engine_on_the_base_model(tiny_model_dir: Path) -> None:
    from fieldkit.engine.engine import Engine
    from fieldkit.training.train import generate_batch

    questions = ["What does the pump need?", "Where is the well?"]
    batched = generate_batch(tiny_model_dir, None, questions, max_tokens=5)
    with Engine(tiny_model_dir) as engine:
        single = [engine.answer(q, None, max_tokens=5).text.strip() for q in questions]
    assert batched == single


def test_exemplars_cover_every_training_question_up_to_the_packet_limit() -> None:
    records = [Record(f"Question {i}?", "Answer.") for i in range(300)]
    assert pick_exemplars(records[:40]) == [r.question for r in records[:40]]
    spread = pick_exemplars(records)
    assert len(spread) == MAX_EXEMPLARS == len(set(spread))
    assert spread[0] == "Question 0?"
    assert spread[-1] in {"Question 298?", "Question 299?"}


def test_exemplars_add_every_records_phrasings_after_the_questions() -> None:
    records = [Record(f"Q{i}?", "A.", (f"Q{i} first?", f"Q{i} second?")) for i in range(3)]
    assert pick_exemplars(records) == [
        "Q0?", "Q1?", "Q2?",
        "Q0 first?", "Q1 first?", "Q2 first?",
        "Q0 second?", "Q1 second?", "Q2 second?",
    ]  # fmt: skip
    assert pick_exemplars(records, k=5) == ["Q0?", "Q1?", "Q2?", "Q0 first?", "Q1 first?"]


def test_train_reads_exemplars_as_library_import_does(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A .jsonl of questions (or chat messages) is read as questions, not as raw lines."""
    data = write_chat_jsonl(tmp_path / "pumps.jsonl")
    asked = [f"How is pump {n} primed?" for n in range(9)]
    lines = [json.dumps({"question": q}) for q in asked]
    lines.append(json.dumps({"messages": [{"role": "user", "content": "Why does E07 show?"}]}))
    exemplars = tmp_path / "asked.jsonl"
    exemplars.write_text("\n".join(lines) + "\n")
    home = tmp_path / "home"
    args = ["--home", str(home), "--model", str(tiny_model_dir), "train", str(data)]
    result = CliRunner().invoke(
        main,
        [*args, "--name", "pumps", "--domain", "solar_pumps", "--iters", "2", "--rank", "2"]
        + ["--exemplars", str(exemplars)],
    )
    assert result.exit_code == 0, result.output
    h = Home(home)
    library = Library.open(h, identity=Identity.load_or_create(h))
    try:
        assert library.get("pumps").exemplars == [*asked, "Why does E07 show?"]
    finally:
        library.close()


@pytest.mark.parametrize(
    ("extra", "phrase"),
    [
        (["--name", "  ", "--domain", "d"], "name must be 1 to 64 printable"),
        (["--name", "p", "--domain", ""], "domain must be 1 to 64 printable"),
        (["--name", "p", "--domain", "d", "--description", "Pumps\x1b]0;x\x07"], "control"),
        (["--name", "p", "--domain", "d", "--paraphrases", "PARA"], "gives no phrasing"),
        (["--name", "p", "--domain", "d", "--layers", "1000"], "more than the base model's"),
    ],
)
def test_train_refuses_bad_options_before_training(
    tmp_path: Path, tiny_model_dir: Path, extra: list[str], phrase: str
) -> None:
    data = write_chat_jsonl(tmp_path / "pumps.jsonl")
    para = tmp_path / "para.jsonl"
    para.write_text("[1, 2, 3]\n")
    extra = [str(para) if x == "PARA" else x for x in extra]
    args = ["--home", str(tmp_path / "home"), "--model", str(tiny_model_dir), "train", str(data)]
    result = CliRunner().invoke(main, [*args, *extra, "--iters", "2"])
    assert result.exit_code == 1, result.output
    assert phrase in result.output
    assert "Training" not in result.output  # refused before any step
    assert "Traceback" not in result.output


def test_a_byte_order_mark_before_the_first_record_is_read(tmp_path: Path) -> None:
    path = write_instruction_jsonl(tmp_path / "bom.jsonl")
    plain = load_records(path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_records(path) == plain
