"""The merge suite of `fieldkit bench quality`: every recipe built, timed and scored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fieldkit.cli import main
from fieldkit.engine.clean import cleaned
from fieldkit.errors import FieldkitError
from fieldkit.router.notices import AS_WRITTEN
from fieldkit.training.merge_suite import SUITE, build_suite, choose
from tests.fixtures.tiny_model import random_adapter
from tests.training.test_evaluate import two_domain_bench_args, two_packet_bench_args
from tests.training.test_merge import MODULES, product


def test_choose_keeps_suite_order_and_refuses_unknown_names() -> None:
    assert choose(None) == list(SUITE)
    assert [r.name for r in choose("linear, ties")] == ["linear", "ties"]
    with pytest.raises(FieldkitError, match="No merge recipe named 'soup'"):
        choose("ties,soup")


def test_suite_builds_every_fixed_recipe(tmp_path: Path) -> None:
    specialists = [random_adapter(s, rank=4) for s in (1, 2, 3)]
    recipes = [r for r in SUITE if not r.adaptive]
    logged: list[str] = []
    out = build_suite(recipes, ["a", "b", "c"], specialists, [], tmp_path, log=logged.append)
    assert set(out.seconds) == {r.name for r in recipes}
    assert len(logged) == len(recipes)
    assert out.favoured["linear-70/30"] == {d: f"linear-70/30:{d}" for d in "abc"}
    assert out.recipes["dare-ties-0.5/0.5"]["weights"] == [0.5, 0.5, 0.5]
    assert out.recipes["slerp-0.5"]["sequential"] is True  # three packets: pairwise, in order
    favour_b = out.adapters["linear-80/20:b"]
    for module in MODULES:
        d = [product(a, module) for a in specialists]
        expected = 0.1 * d[0] + 0.8 * d[1] + 0.1 * d[2]
        np.testing.assert_allclose(product(favour_b, module), expected, atol=1e-4)
    two = build_suite(recipes, ["a", "b"], specialists[:2], [], tmp_path, log=logged.append)
    assert "sequential-ties-0.5" not in two.seconds  # needs three packets
    assert two.recipes["slerp-0.5"]["weights"] == [0.5, 0.5]


def test_bench_quality_scores_the_whole_suite(
    tmp_path: Path, tiny_model_dir: Path, make_home, make_packet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = two_packet_bench_args(tmp_path, tiny_model_dir, make_home, make_packet)
    args += ["--no-notes"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    scored = [r.name for r in SUITE if r.name != "sequential-ties-0.5"]  # two packets
    chosen = ["linear-70/30 routed", "linear-80/20 routed"]  # the favouring merges, routed
    for system in [*scored, *chosen, "routed", "oracle"]:
        assert f"| {system} |" in result.output
    assert "Merge cost: linear " in result.output
    report = json.loads((tmp_path / "out" / "quality.json").read_text())
    merges = report["meta"]["merges"]
    assert list(merges) == scored
    assert (
        merges["adaptive"]["recipe"]["entropy_after"]
        < merges["adaptive"]["recipe"]["entropy_before"]
    )
    assert all(m["seconds"] >= 0 for m in merges.values())
    answers = report["sets"]["heldout"]["answers"]
    assert len(answers) == 2 * (1 + len(scored) + len(chosen) + 2)  # + routed, oracle
    text = {(a["system"], a["question"]): a["answer"] for a in answers}
    domain = {a["question"]: a["domain"] for a in answers}
    routes = report["meta"]["routing"]["heldout"]["routes"]
    assert len(routes) == 2
    checked = 0
    for question, routed in routes.items():
        for name in ("linear-70/30", "linear-80/20"):
            # The merge favouring the routed packet answers (the base model on abstention).
            expected = text[("base", question)] if routed is None else text[(name, question)]
            if routed is not None and routed != domain[question]:
                continue  # routed elsewhere: another merge than the oracle's answers
            assert text[(f"{name} routed", question)] == expected
            checked += 1
    assert checked >= 2
    # each answer is scored as `ask` shows it, cleaned; --raw scores it as generated
    assert report["meta"]["answers"] == "as shown (clean decoding)"
    out = tmp_path / "out"
    rows = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    generated = {r["question"]: r for r in rows if r["system"] == "base"}
    assert len(generated) == 2
    for question, row in generated.items():
        assert text[("base", question)] == cleaned(row["text"], natural=row["ended"])
    raw = CliRunner().invoke(main, [*args, "--raw", "--merges", "ties"])  # from the cache
    assert raw.exit_code == 0, raw.output
    report = json.loads((out / "quality.json").read_text())
    assert report["meta"]["answers"] == "as generated"
    for a in report["sets"]["heldout"]["answers"]:
        if a["system"] == "base":
            assert a["answer"] == generated[a["question"]]["text"]
    bad = CliRunner().invoke(main, [*args, "--merges", "ties,soup"])
    assert bad.exit_code == 1
    assert "No merge recipe named 'soup'" in bad.output


def test_merges_with_notes_read_the_routed_packets_passages(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = [*two_domain_bench_args(tmp_path, tiny_model_dir), "--merges", "ties,linear-80/20"]
    result = CliRunner().invoke(main, [*args, "--merges-with-notes", "linear-80/20,ties"])
    assert result.exit_code == 0, result.output
    for system in ("ties+notes", "linear-80/20+notes", "routed+notes"):
        assert f"| {system} |" in result.output
    out = tmp_path / "out"
    report = json.loads((out / "quality.json").read_text())
    by = {(a["system"], a["question"]): a for a in report["sets"]["heldout"]["answers"]}
    routes = report["meta"]["routing"]["heldout"]["routes"]
    generated = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    checked = 0
    for question, routed in routes.items():
        for merge in ("ties", "linear-80/20"):
            answer = by[f"{merge}+notes", question]
            # The same passages as routed+notes, answered by the merged adapter (for a
            # favouring merge, the one favouring the routed packet).
            assert answer["cited"] == by["routed+notes", question]["cited"]
            adapter = merge if merge == "ties" or routed is None else f"{merge}:{routed}"
            rows = [r for r in generated if r["system"] == adapter and question in r["question"]]
            if answer["cited"]:  # covered: the prompt holds the passages
                prompts = [r for r in rows if r["question"] != question]
                assert prompts
                assert answer["answer"].endswith(prompts[-1]["text"])
            else:  # a gap: the nearest record as written, as `ask` gives it, no adapter's
                assert AS_WRITTEN in answer["answer"]
                assert answer["answer"] == by["routed+notes", question]["answer"]
            checked += 1
    assert checked == 4
    for extra, message in (
        (["--merges-with-notes", "slerp-0.5"], "which --merges leaves out"),
        (["--merges-with-notes", "ties", "--no-notes"], "needs the notes systems"),
    ):
        bad = CliRunner().invoke(main, [*args, *extra])
        assert bad.exit_code == 1
        assert message in bad.output
