"""Score one packet of a fieldkit home on held-out questions: keyword recall and all-facts.

    .venv/bin/python bench/score_packet.py --home HOME --model MODEL_DIR --packet NAME \
        --questions assets/demo/solar_pumps/heldout.jsonl [FILE ...] [--max-tokens 80] \
        [--notes] [--json OUT] [--against OTHER.json]

The same greedy batch generation and scoring as `fieldkit bench quality`, for a single
specialist (that command needs two domains, to merge them). With `--notes` each question
is answered as `fieldkit ask` answers it from this packet (its oracle+notes): the packet's
passage in the prompt where its notes cover the question, the gap or caution sentence
first where they do not or may not. It prints recall and all-facts with
percentile-bootstrap 95% CIs, over all the questions ("all") and per question file when
there are several; `--json` writes that with every answer. `--against` a file so written
by another run on the same questions (another packet of the domain, say) adds the paired
difference (the questions resampled together) with its CI, how many questions did better
and worse, and how many answers changed at all.

    .venv/bin/python bench/score_packet.py --pool A.json B.json ... [--pool-against A0.json B0.json ...]

scores such files (a domain's packet each) together, the same way, against the same
questions answered by other packets.
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
        return [g.with_notice(t) for g, t in zip(grounded, texts, strict=True)]
    finally:
        library.close()


def _ci(values: np.ndarray) -> list[float]:
    from fieldkit.training.evaluate import bootstrap_ci

    return [round(x, 1) for x in bootstrap_ci(values)]


def compare(new: list[dict], old: list[dict]) -> dict:
    """Return, over all the answers ("all") and per question set when there are several:
    recall and all-facts in percent with CIs, and against `old` (the same questions in
    the same order; [] for none) the paired differences."""
    if old and [a["question"] for a in old] != [a["question"] for a in new]:
        raise SystemExit("the run compared against answers other questions")
    sets = list(dict.fromkeys(a["set"] for a in new))
    out = {}
    for name in ["all", *sets] if len(sets) > 1 else ["all"]:
        picks = [i for i, a in enumerate(new) if name in (a["set"], "all")]
        cell: dict = {"questions": len(picks)}
        for key in ("recall", "all_facts"):
            values = np.array([new[i][key] for i in picks]) * 100
            cell |= {key: round(float(values.mean()), 1), f"{key}_ci": _ci(values)}
            if old:
                diff = values - np.array([old[i][key] for i in picks]) * 100
                cell |= {
                    f"{key}_before": round(float((values - diff).mean()), 1),
                    f"{key}_diff": round(float(diff.mean()), 1),
                    f"{key}_diff_ci": _ci(diff),
                    f"{key}_better_worse": [int((diff > 0).sum()), int((diff < 0).sum())],
                }
        if old:
            cell["answers_changed"] = sum(new[i]["answer"] != old[i]["answer"] for i in picks)
        out[name] = cell
    return out


def _answers(files: list[Path]) -> list[dict]:
    return [a for f in files for a in json.loads(f.read_text())["answers"]]


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
    parser.add_argument("--pool", type=Path, nargs="+", help="score these --json files together")
    parser.add_argument("--pool-against", type=Path, nargs="+", default=[])
    args = parser.parse_args()
    if args.pool:
        print(json.dumps(compare(_answers(args.pool), _answers(args.pool_against)), indent=1))
        return
    if not (args.home and args.model and args.packet and args.questions):
        parser.error("--home, --model, --packet and --questions are required without --pool")
    from fieldkit.training.evaluate import all_facts, keyword_recall

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
    report = {
        "packet": args.packet,
        "home": str(args.home),
        "notes": args.notes,
        "max_tokens": args.max_tokens,
        "loadavg_1min": os.getloadavg()[0],
        "scores": compare(scored, _answers([args.against]) if args.against else []),
    }
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps({**report, "answers": scored}, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
