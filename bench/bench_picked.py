"""What an asker gets by picking the nearest record a gap answer shows (`ask --passage`,
Ctrl+N on the Ask screen), when that record is theirs.

    .venv/bin/python bench/bench_picked.py [--home H] [--sets a,b] [--max-tokens N] [--json OUT]

The home is one built by `fieldkit demo` (the shipped packets with their notes and
adapters, the base model). Each question of the given demo sets is routed and grounded as
`ask` grounds it (the base model reading the passages ranked first). For every question
answered "nothing on this" (a gap answer) whose nearest record shown is its own source
record, both answers are generated, as `ask` writes them: the gap answer (the adapter
alone, what the asker reads first) and the answer from the picked record. Both are scored
on the question's keywords (recall and all-facts, with 95% bootstrap intervals), as
generated and as shown (the answer plus the record it cites; for the gap answer, the
nearest record shown under it, which it does not cite). Questions whose nearest record is
another are counted, not answered: picking a record that is not theirs is the asker's
mistake to make, and this measures what the key gives one who reads the record first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from bench_route import demo_rows, report, sources  # noqa: E402

SHORT_SETS = "terse,brisk,hasty,rushed,hurried,dashed,brief,quick,curt"


def measure(home: Path, sets: list[str], max_tokens: int) -> dict:
    from fieldkit.answering import answer, engine_reader, ground
    from fieldkit.answers import GAP
    from fieldkit.services import Services
    from fieldkit.training.evaluate import all_facts, bootstrap_ci, keyword_recall

    services = Services.build(home)
    reader = engine_reader(services.engine)
    out: dict = {}
    pooled: dict = {"questions": 0, "gap_answers": 0, "nearest_own": 0}
    pooled_scores: dict[str, list[float]] = {}
    for name in sets:
        started = time.perf_counter()
        rows = demo_rows(name)
        cell: dict = {"questions": len(rows), "gap_answers": 0, "nearest_own": 0}
        scores: dict[str, list[float]] = {}
        for row in rows:
            question, keywords = row["question"], row["expected_keywords"]
            record, decision = services.pick_packet(question)
            grounding = ground(question, record, services.passages, reader=reader,
                               abstained=decision is not None)  # fmt: skip
            if grounding.grounding != GAP or not grounding.nearest_shown:
                continue
            cell["gap_answers"] += 1
            nearest = grounding.nearest_shown[0]
            if nearest.title not in sources(row):
                continue
            cell["nearest_own"] += 1
            gap = answer(services, question, max_tokens=max_tokens)
            picked = answer(
                services, question, packet=record.name, passage=nearest.passage_id,
                max_tokens=max_tokens,
            )  # fmt: skip
            shown = {
                "gap answer": gap.text,
                "gap answer with the nearest record shown": f"{gap.text}\n{nearest.full_text}",
                "picked": picked.text,
                "picked, shown with its record": "\n".join(
                    [picked.text, *(s.full_text for s in picked.sources)]
                ),
            }
            for key, text in shown.items():
                scores.setdefault(f"{key}: recall", []).append(keyword_recall(text, keywords))
                scores.setdefault(f"{key}: all-facts", []).append(all_facts(text, keywords))
        cell |= _means(scores, bootstrap_ci)
        cell["seconds"] = round(time.perf_counter() - started, 1)
        out[name] = cell
        print(name, json.dumps(cell), file=sys.stderr)
        for key in pooled:
            pooled[key] += cell[key]
        for key, values in scores.items():
            pooled_scores.setdefault(key, []).extend(values)
    services.close()
    out["pooled"] = pooled | _means(pooled_scores, bootstrap_ci)
    return out


def _means(scores: dict[str, list[float]], bootstrap_ci) -> dict:  # noqa: ANN001
    """Per key, [mean, low, high] in percent (95% bootstrap interval)."""
    out = {}
    for key, values in scores.items():
        low, high = bootstrap_ci(values)
        mean = sum(values) / len(values)
        out[key] = [round(100 * mean, 1), round(100 * low, 1), round(100 * high, 1)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=REPO / "bench/out/home")
    parser.add_argument("--sets", default=SHORT_SETS)
    parser.add_argument("--max-tokens", type=int, default=80)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = measure(args.home, [s for s in args.sets.split(",") if s], args.max_tokens)
    report(result, args.json)


if __name__ == "__main__":
    main()
