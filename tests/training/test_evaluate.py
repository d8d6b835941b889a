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
    keyword_found,
    keyword_recall,
    markdown_table,
    parse_questions,
    score,
    summary_table,
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


def two_domain_bench_args(tmp_path: Path, tiny_model_dir: Path) -> list[str]:
    """Return `fieldkit bench quality` arguments that train two tiny specialists (pumps,
    goats: six records each, which are also their notes) and ask one question of each."""
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
    return [
        "--home", str(tmp_path / "home"), "--model", str(tiny_model_dir), "bench", "quality",
        "--data", str(data), "--questions", str(questions), "--out", str(tmp_path / "out"),
        "--iters", "2", "--rank", "4", "--layers", "2", "--max-tokens", "3",
    ]  # fmt: skip


def test_bench_quality_end_to_end_on_the_tiny_model(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "out"
    args = [*two_domain_bench_args(tmp_path, tiny_model_dir), "--merges", "ties,linear"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    systems = ("base", "spec:pumps", "spec:goats", "ties", "linear", "routed", "oracle")
    grounded = ("base+notes", "routed+notes", "oracle+notes")
    for system in systems + grounded:
        assert f"| {system} |" in result.output
    assert "| system | keyword recall | all-facts | shown recall | citation precision |" in (
        result.output
    )
    report = json.loads((out / "quality.json").read_text())
    answers = report["sets"]["heldout"]["answers"]
    assert len(answers) == 2 * 10
    by = {(a["system"], a["question"]): a for a in answers}
    q = "What about pump part 2?"
    assert by["oracle", q]["answer"] == by["spec:pumps", q]["answer"]
    # The oracle's notes are the pump records; a grounded answer cites the nearest of them,
    # and a notes system is scored on what it shows too.
    # Every trained specialist carries its domain's records as notes, so the grounded
    # systems retrieve from them (a gap still names the nearest passage).
    assert any(a["cited"] for a in answers if a["system"].endswith("+notes"))
    assert by["oracle+notes", q]["cited"] is None or all(
        t.startswith("What does the pump part") for t in by["oracle+notes", q]["cited"]
    )
    assert by["oracle", q]["shown_recall"] is None
    assert by["oracle+notes", q]["shown_recall"] is not None
    assert report["meta"]["routing"]["heldout"]["questions"] == 2
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "reusing" in again.output
    # The notes recipe trains anew (its own cache key) on the bare examples plus grounded ones.
    bare = report["meta"]["training"]["pumps"]["examples"]
    notes_recipe = CliRunner().invoke(main, [*args, "--grounded", "--no-notes"])
    assert notes_recipe.exit_code == 0, notes_recipe.output
    assert "pumps: reusing" not in notes_recipe.output
    trained = json.loads((out / "quality.json").read_text())["meta"]["training"]["pumps"]
    assert trained["examples"] > bare


def test_bench_quality_reuses_packets_of_another_library(
    tmp_path: Path, tiny_model_dir: Path, make_home, make_packet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = two_packet_bench_args(tmp_path, tiny_model_dir, make_home, make_packet)
    args += ["--merges", "ties"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "| routed |" in result.output
    assert "| spec:pumps |" not in result.output
    report = json.loads((tmp_path / "out" / "quality.json").read_text())
    routing = report["meta"]["routing"]["heldout"]
    assert (routing["correct"], routing["questions"]) == (2, 2)
    assert routing["routes"] == {"What about pump part 2?": "pumps", "Goat part 3 needs?": "goats"}


def test_bench_quality_notes_only_scores_retrieval_without_training(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = tmp_path / "data"
    data.mkdir()
    write_domain(data / "pumps.jsonl", "pump")
    write_domain(data / "goats.jsonl", "goat")
    source = "What does the pump part 2 need?"
    row = {"domain": "pumps", "question": "Pump part 2?", "expected_keywords": ["check 2"]}
    questions = tmp_path / "natural.jsonl"
    questions.write_text(json.dumps(row | {"source": source}) + "\n")
    args = [
        "--home", str(tmp_path / "home"), "--model", str(tiny_model_dir), "bench", "quality",
        "--data", str(data), "--questions", str(questions), "--out", str(tmp_path / "out"),
        "--domains", "pumps,goats", "--notes-only", "--max-tokens", "2",
    ]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "training on" not in result.output
    report = json.loads((tmp_path / "out" / "quality.json").read_text())
    answers = {a["system"]: a for a in report["sets"]["natural"]["answers"]}
    assert set(answers) == {"base", "base+notes"}
    assert answers["base"]["cited"] is None  # the bare base model: no notes in its prompt
    grounded = answers["base+notes"]
    if grounded["cited"]:  # covered: the first cited passage is the record itself
        assert grounded["cited"][0] == source
        assert grounded["shown_recall"] == 1.0
    cells = {s["system"]: s for s in report["sets"]["natural"]["scores"] if s["domain"] == "all"}
    assert cells["base"]["citation_precision"] is None
    assert cells["base+notes"]["citation_precision"] in (0.0, 1.0)


@pytest.mark.parametrize(
    ("keyword", "answer", "found"),
    [
        ("5 m", "hang it 5 m below the water", True),
        ("5 m", "hang it 15 m below the water", False),
        ("5 m", "wait 5 months", False),
        ("5 m", "a 5 mm hole", False),
        ("5%", "about 5% of the grain", True),
        ("5%", "about 25% of the grain", False),
        ("5%", "about 2.5% of the grain", False),
        ("day 5", "at day 5 and day 26", True),
        ("day 5", "at day 50", False),
        ("1,000 kg", "it holds 1,000 kg", True),
        ("1,000 kg", "it holds 11,000 kg", False),
        ("-0.5°C", "colder than -0.5°C", True),
        ("12.5%", "dry it to 12.5%.", True),
        ("silver frass", "Silver Frass trails", True),
    ],
)
def test_numeric_keywords_match_whole_numbers_only(keyword: str, answer: str, found: bool) -> None:
    assert keyword_found(answer, keyword) is found


SOURCE = "What concentration of neem oil deters the Silver-Back Locust?"
QS = Question("agronomy", "Neem strength?", ("12%", "4 AM"), sources=(SOURCE,))


def test_shown_recall_and_citation_precision() -> None:
    passage = "12% neem oil applied at 4 AM."
    answers = [
        # The answer misses 4 AM, the cited passage shows it: shown 2/2, cites its source.
        Answer("notes", QS, "Use 12% neem.", cited=(passage,), cited_titles=(SOURCE,)),
        # Cites another record first: shown recall counts only what is shown.
        Answer("notes", QS, "No idea.", cited=("other", passage), cited_titles=("Other?", SOURCE)),
        # No citation at all: a citation miss, shown = the answer alone.
        Answer("notes", QS, "At 4 AM.", cited=(), cited_titles=()),
        Answer("plain", QS, "Use 12% neem."),  # a system without notes
    ]
    cells = {s.system: s for s in score(answers) if s.domain == "all"}
    assert cells["notes"].recall == pytest.approx((0.5 + 0 + 0.5) / 3)
    assert cells["notes"].shown_recall == pytest.approx((1.0 + 1.0 + 0.5) / 3)
    assert cells["notes"].citation_precision == pytest.approx(1 / 3)
    assert cells["plain"].shown_recall is None
    assert cells["plain"].citation_precision is None
    table = summary_table(list(cells.values()), routing=0.5)
    assert "| notes | 33 [" in table
    assert "| plain | 50 [50–50] | 0 [0–0] | – | – | – |" in table
    assert "routed to the question's own packet: 50%" in table


def test_parse_questions_keeps_sources() -> None:
    rows = [
        {"domain": "d", "question": "q1", "expected_keywords": ["a"], "source": "S1"},
        {"domain": "d", "question": "q2", "expected_keywords": ["b"], "source": ["S1", "S2"]},
    ]
    one, two = parse_questions(rows)
    assert one.sources == ("S1",)
    assert two.sources == ("S1", "S2")


def two_packet_bench_args(
    tmp_path: Path, tiny_model_dir: Path, make_home, make_packet
) -> list[str]:
    """Return `fieldkit bench quality` arguments over a library holding two random packets
    (pumps, goats) for the tiny model and one held-out question for each."""
    from fieldkit.store.models import model_fingerprint
    from tests.fixtures.tiny_model import random_adapter

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
    return [
        "--home", str(tmp_path / "home"), "--model", str(tiny_model_dir), "bench", "quality",
        "--data", str(tmp_path), "--questions", str(questions), "--out", str(tmp_path / "out"),
        "--from-library", str(source.root), "--no-cross", "--max-tokens", "2",
    ]  # fmt: skip


def test_bench_quality_refuses_a_folder_another_run_holds(
    tmp_path: Path, tiny_model_dir: Path, make_home, make_packet, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fieldkit.training.quality import claim_folder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = [*two_packet_bench_args(tmp_path, tiny_model_dir, make_home, make_packet), "--no-notes"]
    held = claim_folder(tmp_path / "out")  # another run, as far as the lock can tell
    try:
        busy = CliRunner().invoke(main, args)
    finally:
        held.close()
    assert busy.exit_code == 1
    assert "Another `bench quality` run is using" in busy.output
    assert "Traceback" not in busy.output
    assert not (tmp_path / "out" / "home").exists()  # nothing started
    free = CliRunner().invoke(main, args)
    assert free.exit_code == 0, free.output


def test_bench_quality_no_bare_scores_the_notes_systems_alone(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = [*two_domain_bench_args(tmp_path, tiny_model_dir), "--no-bare"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for system in ("base+notes", "routed+notes", "oracle+notes"):
        assert f"| {system} |" in result.output
    for system in ("base", "routed", "oracle", "ties", "adaptive"):
        assert f"| {system} |" not in result.output
    report = json.loads((tmp_path / "out" / "quality.json").read_text())
    assert report["meta"]["merges"] == {}  # no merge built: none is scored
    answers = report["sets"]["heldout"]["answers"]
    assert sorted({a["system"] for a in answers}) == ["base+notes", "oracle+notes", "routed+notes"]
    assert len(answers) == 2 * 3
    bad = CliRunner().invoke(main, [*args, "--no-notes"])
    assert bad.exit_code == 1
    assert "--no-bare leaves only the notes systems" in bad.output
