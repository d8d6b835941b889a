"""Quality cost of smaller packets: each compacted demo packet on its own held-out questions.

    .venv/bin/python bench/bench_compact_quality.py --model DIR [--homes bench/out/compact]
        [--settings fp16 int4 ...] [--max-tokens 80] [--json OUT]
    .venv/bin/python bench/bench_compact_quality.py --quality FP16.json INT4.json ...
        [--system routed+notes] [--json OUT]

`--homes` is what bench/bench_compact.py wrote: one home per setting holding the four demo
packets compacted that way. For each setting, each packet answers the 25 held-out questions
of its own domain (assets/demo/<domain>/heldout.jsonl; the oracle of `fieldkit bench
quality`), greedily, with the same batched generation and scores: keyword recall and
all-facts over the 100 questions with percentile-bootstrap 95% CIs, and the paired
difference from the first setting (the same questions resampled together), with its CI.
Answers are cached in `<homes>/<setting>/answers.json`.

With `--quality`, the answers come instead from `fieldkit bench quality --json` reports, one
per setting (the first is the reference for the paired differences), each scored on the
same questions: one system's answers (`--system`, routed+notes by default) to the
report's first question set. That is how the reference corpus's compacted specialists are
compared (docs/BENCHMARKS.md, "Smaller packets").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def answers_for(home: Path, model: Path, max_tokens: int) -> list[dict]:
    """Return one row per held-out question: domain, keywords, answer (cached)."""
    from fieldkit.home import Home
    from fieldkit.store.library import Library
    from fieldkit.training.train import generate_batch

    cache = home / "answers.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    library = Library.open(Home(home))
    rows = []
    try:
        for record in sorted(library.list_packets(), key=lambda r: r.domain):
            path = REPO / "assets/demo" / record.domain / "heldout.jsonl"
            items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            adapter = library.load_adapter(record)
            texts = generate_batch(model, adapter, [q["question"] for q in items], max_tokens)
            rows += [
                {"domain": record.domain, "question": q["question"],
                 "keywords": q["expected_keywords"], "answer": text}
                for q, text in zip(items, texts, strict=True)
            ]  # fmt: skip
    finally:
        library.close()
    cache.write_text(json.dumps(rows, indent=1))
    return rows


def quality_rows(path: Path, system: str) -> list[dict]:
    """Return one row per question of a `fieldkit bench quality --json` report's first
    question set: the answer of `system`, in the report's order."""
    sets = json.loads(path.read_text())["sets"]
    answers = next(iter(sets.values()))["answers"]
    return [
        {"domain": a["domain"], "question": a["question"], "keywords": a["keywords"],
         "answer": a["answer"]}
        for a in answers if a["system"] == system
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--homes", type=Path, default=REPO / "bench/out/compact")
    parser.add_argument("--settings", nargs="+", default=["fp16", "int8", "int4"])
    parser.add_argument("--max-tokens", type=int, default=80)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--quality",
        type=Path,
        nargs="+",
        default=None,
        help="score these bench quality reports instead (one per setting)",
    )
    parser.add_argument("--system", default="routed+notes", help="with --quality")
    args = parser.parse_args()
    from fieldkit.training.evaluate import all_facts, bootstrap_ci, keyword_recall

    if args.quality:
        sources = {path.stem: quality_rows(path, args.system) for path in args.quality}
    elif args.model is None:
        parser.error("--model is required without --quality")
    else:
        sources = {
            setting: answers_for(args.homes / setting, args.model, args.max_tokens)
            for setting in args.settings
        }
    results, first = [], None
    for setting, rows in sources.items():
        recall = np.array([keyword_recall(r["answer"], r["keywords"]) for r in rows]) * 100
        facts = np.array([all_facts(r["answer"], r["keywords"]) for r in rows]) * 100
        row = {
            "setting": setting,
            "questions": len(rows),
            "keyword_recall": round(float(recall.mean()), 1),
            "recall_ci": [round(x, 1) for x in bootstrap_ci(recall)],
            "all_facts": round(float(facts.mean()), 1),
            "all_facts_ci": [round(x, 1) for x in bootstrap_ci(facts)],
        }
        if first is None:
            first = (recall, facts, rows)
        else:
            assert [r["question"] for r in rows] == [r["question"] for r in first[2]]
            diff = recall - first[0]
            row["recall_diff"] = round(float(diff.mean()), 1)
            row["recall_diff_ci"] = [round(x, 1) for x in bootstrap_ci(diff)]
            row["all_facts_diff"] = round(float((facts - first[1]).mean()), 1)
            row["answers_changed"] = sum(
                a["answer"] != b["answer"] for a, b in zip(rows, first[2], strict=True)
            )
        results.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
