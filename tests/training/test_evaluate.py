"""Scoring fixed answers gives known numbers; reports show them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fieldkit.cli import main
from fieldkit.training.dataset import DataError
from fieldkit.training.evaluate import (
    Answer,
    Question,
    all_facts,
    bar_chart,
    bootstrap_ci,
    keyword_recall,
    markdown_table,
    parse_questions,
    score,
    to_json,
)

Q1 = Question(
    "agronomy", "Neem oil against the locust?", ("12%", "4 AM", "neem oil", "exoskeleton")
)
Q2 = Question("agronomy", "Locust frass?", ("silver frass", "UV light"))
Q3 = Question("veterinary", "Goat fever?", ("41.5", "ivermectin"))


def test_keyword_recall_is_a_case_insensitive_substring_share() -> None:
    answer = "Use 12% NEEM OIL at 4 am, when the exoskeleton is soft."
    assert keyword_recall(answer, Q1.keywords) == 1.0
    assert keyword_recall("Use neem oil.", Q1.keywords) == 0.25
    assert keyword_recall("", Q1.keywords) == 0.0
    assert all_facts(answer, Q1.keywords) == 1.0
    assert all_facts("12% neem oil at 4 AM", Q1.keywords) == 0.0


def fixed_answers() -> list[Answer]:
    return [
        Answer("oracle", Q1, "12% neem oil at 4 AM"),  # 3/4
        Answer("oracle", Q2, "silver frass seen under UV light"),  # 2/2
        Answer("oracle", Q3, "Give ivermectin."),  # 1/2
        Answer("base", Q1, "I do not know."),  # 0
        Answer("base", Q2, "Look for silver frass."),  # 1/2
        Answer("base", Q3, "Call a vet."),  # 0
    ]


def test_scores_of_fixed_answers() -> None:
    cells = {(s.system, s.domain): s for s in score(fixed_answers())}
    assert cells["oracle", "agronomy"].recall == pytest.approx((0.75 + 1.0) / 2)
    assert cells["oracle", "veterinary"].recall == pytest.approx(0.5)
    assert cells["oracle", "all"].recall == pytest.approx((0.75 + 1.0 + 0.5) / 3)
    assert cells["oracle", "all"].all_facts == pytest.approx(1 / 3)
    assert cells["base", "all"].recall == pytest.approx(0.5 / 3)
    assert cells["base", "all"].all_facts == 0.0
    assert cells["oracle", "all"].n == 3
    low, high = cells["oracle", "all"].recall_ci
    assert 0.5 <= low <= 0.75 <= high <= 1.0


def test_bootstrap_ci() -> None:
    assert bootstrap_ci([0.4] * 10) == pytest.approx((0.4, 0.4))
    low, high = bootstrap_ci([0.0] * 50 + [1.0] * 50, seed=1)
    assert 0.38 < low < 0.5 < high < 0.62  # about 0.5 +- 1.96 * 0.05
    assert bootstrap_ci([]) == (0.0, 0.0)


def test_reports_show_the_numbers() -> None:
    answers = fixed_answers()
    scores = score(answers)
    table = markdown_table(scores)
    assert table.splitlines()[0] == "| system | agronomy | veterinary | all | all-facts (all) |"
    assert table.splitlines()[2].startswith("| oracle | 88 [")
    assert "| base | 25 [0–50] | 0 [0–0] | 17 [" in table
    chart = bar_chart(scores, width=10)
    assert chart.splitlines()[1].startswith("oracle ████████·· " + " 75")
    data = json.loads(to_json(scores, answers, {"run": 1}))
    assert data["meta"] == {"run": 1}
    assert len(data["answers"]) == 6
    assert data["answers"][0]["recall"] == 0.75


def test_question_rows_parse_or_fail_in_one_sentence() -> None:
    rows = [{"domain": "agronomy", "question": "q?", "expected_keywords": ["a"], "id": "x1"}]
    assert parse_questions(rows) == [Question("agronomy", "q?", ("a",), "x1")]
    with pytest.raises(DataError, match="line 1 needs a domain"):
        parse_questions([{"domain": "agronomy", "question": "q?", "expected_keywords": []}])


def write_domain(path: Path, topic: str) -> None:
    rows = [
        {
            "instruction": f"What does the {topic} part {i} need?",
            "input": "",
            "output": f"The {topic} part {i} needs check {i}.",
        }
        for i in range(6)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_bench_quality_end_to_end_on_the_tiny_model(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = tmp_path / "data"
    data.mkdir()
    write_domain(data / "pumps.jsonl", "pump")
    write_domain(data / "goats.jsonl", "goat")
    questions = tmp_path / "heldout.jsonl"
    rows = [
        {
            "domain": "pumps",
            "question": "What about pump part 2?",
            "expected_keywords": ["check 2"],
        },
        {"domain": "goats", "question": "Goat part 3 needs?", "expected_keywords": ["check 3"]},
    ]
    questions.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out"
    args = [
        "--home", str(tmp_path / "home"), "--model", str(tiny_model_dir), "bench", "quality",
        "--data", str(data), "--questions", str(questions), "--out", str(out),
        "--iters", "2", "--rank", "4", "--layers", "2", "--max-tokens", "3",
        "--merges", "ties,linear",
    ]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for system in ("base", "spec:pumps", "spec:goats", "ties", "linear", "routed", "oracle"):
        assert f"| {system} |" in result.output
    report = json.loads((out / "quality.json").read_text())
    answers = report["sets"]["heldout"]["answers"]
    assert len(answers) == 2 * 7
    by = {(a["system"], a["question"]): a["answer"] for a in answers}
    assert by["oracle", "What about pump part 2?"] == by["spec:pumps", "What about pump part 2?"]
    assert report["meta"]["routing"]["heldout"]["questions"] == 2
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "reusing" in again.output


def test_bench_quality_reuses_packets_of_another_library(
    tmp_path: Path, tiny_model_dir: Path, make_home, make_packet, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fieldkit.store.models import model_fingerprint
    from tests.fixtures.tiny_model import random_adapter

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = make_home("source")
    fingerprint = model_fingerprint(tiny_model_dir)
    for seed, domain in enumerate(("pumps", "goats")):
        make_packet(
            source, name=domain, adapter=random_adapter(seed, num_layers=2),
            exemplars=[f"What does the {domain[:-1]} part {i} need?" for i in range(12)],
            base_fingerprint=fingerprint,
        )  # fmt: skip
    questions = tmp_path / "heldout.jsonl"
    rows = [
        {"domain": "pumps", "question": "What about pump part 2?", "expected_keywords": ["check"]},
        {"domain": "goats", "question": "Goat part 3 needs?", "expected_keywords": ["check"]},
    ]
    questions.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    args = [
        "--home", str(tmp_path / "home"), "--model", str(tiny_model_dir), "bench", "quality",
        "--data", str(tmp_path), "--questions", str(questions), "--out", str(tmp_path / "out"),
        "--from-library", str(source.root), "--no-cross", "--max-tokens", "2", "--merges", "ties",
    ]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "| routed |" in result.output
    assert "| spec:pumps |" not in result.output
    report = json.loads((tmp_path / "out" / "quality.json").read_text())
    assert report["meta"]["routing"]["heldout"] == {"correct": 2, "questions": 2}
