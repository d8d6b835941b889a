"""Score one packet of a fieldkit home on held-out questions: keyword recall and all-facts.

    .venv/bin/python bench/score_packet.py --home HOME --model MODEL_DIR --packet NAME \
        --questions assets/demo/solar_pumps/heldout.jsonl [FILE ...] [--max-tokens 80] \
        [--notes] [--json OUT] [--against OTHER.json]

The same greedy batch generation and scoring as `fieldkit bench quality`, for a single
specialist (that command needs two domains, to merge them). With `--notes` each question
is answered as `fieldkit ask` answers it from this packet (its oracle+notes): the packet's
passage in the prompt where its notes cover the question, the gap or caution sentence
first where they do not or may not. `--json` writes every answer with its scores;
`--against` a file so written by another run on the same questions (another packet of the
domain, say) prints the paired difference, the questions resampled together, with a
percentile-bootstrap 95% CI. With several question files the scores are also given per
file (`by_set`).

    .venv/bin/python bench/score_packet.py --pool A.json B.json ... [--pool-against A0.json B0.json ...]

pools such files (a domain's packet each) per question file: recall and all-facts over
every domain's questions, with CIs, and against the same questions answered by other
packets, the paired difference's CI.
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


def answer(args: argparse.Namespace, rows: list[dict]) -> list[str]:
    """Return the packet's answer to every row's question (with its notes, if asked)."""
    from fieldkit.answering import ground
    from fieldkit.home import Home
    from fieldkit.router.retrieval import PassageIndex
    from fieldkit.store.library import Library
    from fieldkit.training.train import generate_batch

    library = Library.open(Home(args.home))
    try:
        record = library.get(args.packet)
        adapter = library.load_adapter(record)
        questions = [row["question"] for row in rows]
        if not args.notes:
            return generate_batch(args.model, adapter, questions, args.max_tokens)
        index = PassageIndex(library)
        grounded = [ground(q, record, index) for q in questions]
        prompts = [g.messages[-1]["content"] for g in grounded]
        texts = generate_batch(args.model, adapter, prompts, args.max_tokens)
        return [f"{g.notice}\n{t}" if g.notice else t for g, t in zip(grounded, texts, strict=True)]
    finally:
        library.close()


def pool(paths: list[Path], against: list[Path]) -> dict:
    """Return the answers of several --json files (one packet each) pooled per question
    set and over all ("all"): recall and all-facts with CIs, and with `against` (files of the same questions in
    the same order) the paired recall difference."""
    from fieldkit.training.evaluate import bootstrap_ci

    def rows(files: list[Path]) -> list[dict]:
        return [a for f in files for a in json.loads(f.read_text())["answers"]]

    new, old = rows(paths), rows(against) if against else []
    if old and [a["question"] for a in old] != [a["question"] for a in new]:
        raise SystemExit("--pool-against answers other questions")
    out = {}
    for name in [*dict.fromkeys(a["set"] for a in new), "all"]:
        picks = [i for i, a in enumerate(new) if name in (a["set"], "all")]
        cell: dict = {"questions": len(picks)}
        for key in ("recall", "all_facts"):
            values = np.array([new[i][key] for i in picks]) * 100
            cell[key] = round(float(values.mean()), 1)
            cell[f"{key}_ci"] = [round(x, 1) for x in bootstrap_ci(values)]
            if old:
                before = np.array([old[i][key] for i in picks]) * 100
                cell[f"{key}_before"] = round(float(before.mean()), 1)
                cell[f"{key}_diff_ci"] = [round(x, 1) for x in bootstrap_ci(values - before)]
        out[name] = cell
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--packet")
    parser.add_argument("--questions", type=Path, nargs="+")
    parser.add_argument("--max-tokens", type=int, default=80)
    parser.add_argument("--notes", action="store_true", help="answer as `ask` does, with notes")
    parser.add_argument("--json", type=Path, default=None, help="write every answer here")
    parser.add_argument("--against", type=Path, default=None, help="a --json of another run")
    parser.add_argument("--pool", type=Path, nargs="+", help="pool these --json files per set")
    parser.add_argument("--pool-against", type=Path, nargs="+", default=[])
    args = parser.parse_args()
    if args.pool:
        print(json.dumps(pool(args.pool, args.pool_against), indent=1))
        return
    if not (args.home and args.model and args.packet and args.questions):
        parser.error("--home, --model, --packet and --questions are required without --pool")
    from fieldkit.training.evaluate import all_facts, bootstrap_ci, keyword_recall

    rows = [
        {**json.loads(line), "set": path.stem}
        for path in args.questions
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    texts = answer(args, rows)
    scored = [
        {
            "set": row["set"],
            "question": row["question"],
            "keywords": row["expected_keywords"],
            "answer": text,
            "recall": keyword_recall(text, row["expected_keywords"]),
            "all_facts": all_facts(text, row["expected_keywords"]),
        }
        for row, text in zip(rows, texts, strict=True)
    ]
    recall = np.array([r["recall"] for r in scored]) * 100
    facts = np.array([r["all_facts"] for r in scored]) * 100
    report: dict = {
        "packet": args.packet,
        "home": str(args.home),
        "notes": args.notes,
        "max_tokens": args.max_tokens,
        "questions": len(rows),
        "keyword_recall": round(float(recall.mean()), 1),
        "recall_ci": [round(x, 1) for x in bootstrap_ci(recall)],
        "all_facts": round(float(facts.mean()), 1),
        "all_facts_ci": [round(x, 1) for x in bootstrap_ci(facts)],
        "loadavg_1min": os.getloadavg()[0],
    }
    sets = list(dict.fromkeys(r["set"] for r in scored))
    if len(sets) > 1:  # per question file, in percent
        report["by_set"] = {
            name: {
                key: round(100 * float(np.mean([r[key] for r in scored if r["set"] == name])), 1)
                for key in ("recall", "all_facts")
            }
            for name in sets
        }
    if args.against:
        other = json.loads(args.against.read_text())
        if [r["question"] for r in other["answers"]] != [r["question"] for r in scored]:
            parser.error(f"{args.against} answers other questions")
        for key in ("recall", "all_facts"):
            pairs = zip(scored, other["answers"], strict=True)
            diff = np.array([a[key] - b[key] for a, b in pairs]) * 100
            report[f"{key}_diff"] = round(float(diff.mean()), 1)
            report[f"{key}_diff_ci"] = [round(x, 1) for x in bootstrap_ci(diff)]
            report[f"{key}_better_worse"] = [int((diff > 0).sum()), int((diff < 0).sum())]
        if "by_set" in report:
            for name, cell in report["by_set"].items():
                before = [b["recall"] for b in other["answers"] if b["set"] == name]
                cell["recall_before"] = round(100 * float(np.mean(before)), 1)
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps({**report, "answers": scored}, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
