"""Reading the passages ranked first: how READ_WEIGHT and READ_LEAD were chosen, and whether
what the model reads also tells a covered question from a gap.

    .venv/bin/python bench/bench_read.py --model M [--sets a,b] [--gaps a,b] [--rows OUT.jsonl]
        [--json OUT]

The library is the one `bench_route.py --only citations` builds (every demo packet with its
training records as notes, their phrasings included). Each question of the given short
sets goes to its own packet (no router: this measures the ranking within a packet). For
the READ_K passages ranked first it records their ranking z-scores, the base model's
reading of each (`answering.engine_reader`: the mean log-probability of the question's
words after the passage, as `ask` reads), whether each is the question's own record, and
the question's log-probability after a bare cue (`CUE`), so that reading minus that is how
much a passage raises the question's likelihood (pointwise mutual information). Then:

- how often the own record is among the READ_K passages at all;
- per READ_WEIGHT and READ_LEAD: how often the own record comes first;
- the area under the ROC curve between the covered questions (the sets) and the gap
  questions (`--gaps`) of the cover score that decides (`ranking.cover_score`), of the
  best passage's pointwise mutual information, and of the cover score plus a multiple of
  it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from bench_cover import auc_ci  # noqa: E402
from bench_route import (  # noqa: E402
    MemoEmbedder,
    add_rows_option,
    demo_rows,
    keep_row,
    notes_library,
    pace,
    saved_rows,
    sources,
)

from fieldkit.router.embedder import MiniLMEmbedder  # noqa: E402
from fieldkit.router.ranking import (  # noqa: E402
    READ_K,
    cover_score,
    rank_scores,
    read_first,
    zscores,
)
from fieldkit.store.notes import Passage  # noqa: E402

CUE = "A farm technician asks:"  # reading_prefix's cue with no record before it
WEIGHTS = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0)
LEADS = (0.5, 1.0, 1.5, 2.0, 3.0, 99.0)
MULTIPLES = (0.02, 0.05, 0.1, 0.2, 0.4)


def measure(engine, embedder, sets: list[str], gaps: list[str], tmp: Path, out) -> list[dict]:
    """Return one row per question of `sets` and `gaps` (and write each to `out`)."""
    from fieldkit.answering import engine_reader

    reader = engine_reader(engine)
    library, _router, index = notes_library(None, embedder, tmp)
    packets = {r.manifest["domain"]: r.packet_id for r in library.list_packets()}
    rows = []
    for name in [*sets, *gaps]:
        started = time.perf_counter()
        questions = demo_rows(name)
        for q in questions:
            pid = packets[q["domain"]]
            scores = index.scores(pid, q["question"])
            ranking = rank_scores(scores)
            order = np.argsort(-ranking, kind="stable")[:READ_K]
            passages = index.passages(pid)
            row = {
                "set": name,
                "gap": bool(q.get("gap")),
                "own": [passages[i].title in sources(q) for i in order],
                "z": zscores(ranking[None])[0][order].tolist(),
                "read": np.asarray(
                    reader(q["question"], [passages[i].full_text for i in order])
                ).tolist(),
                "cue": float(engine.mean_logprobs([CUE], q["question"])[0]),
                "cover": cover_score(scores),
            }
            keep_row(rows, out, row)
        pace(name, len(questions), started)
    library.close()
    return rows


def first(row: dict, weight: float, lead: float) -> bool:
    """Whether the own record comes first when `ranking.read_first` weighs the row's
    passages at `weight` and `lead`, with the scores the model gave them."""
    stand_ins = [Passage(str(i), str(i)) for i in range(len(row["z"]))]
    order = read_first(
        "",
        np.arange(len(row["z"])),
        np.array(row["z"]),
        stand_ins,
        lambda _question, _texts: np.array(row["read"]),
        weight,
        lead,
    )
    return row["own"][int(order[0])]


def summarise(rows: list[dict], sets: list[str]) -> dict:
    covered = [r for r in rows if not r["gap"]]
    gaps = [r for r in rows if r["gap"]]
    sweep = {}
    for weight in WEIGHTS:
        for lead in LEADS:
            cell = {name: float(np.mean([first(r, weight, lead) for r in covered
                                         if r["set"] == name])) for name in sets}  # fmt: skip
            cell["pooled"] = float(np.mean([first(r, weight, lead) for r in covered]))
            cell["read"] = sum(r["z"][0] - r["z"][1] < lead for r in covered)
            sweep[f"weight {weight}, lead {lead}"] = cell
    result: dict = {
        "questions": len(covered),
        "gap_questions": len(gaps),
        "own_record_in_read_k": float(np.mean([any(r["own"]) for r in covered])),
        "sweep": sweep,
    }
    if gaps and covered:

        def pmi(r: dict) -> float:
            return max(r["read"]) - r["cue"]

        result["auc"] = {
            "cover score": auc_ci([r["cover"] for r in covered], [r["cover"] for r in gaps]),
            "best reading minus the cue (PMI)": auc_ci(
                [pmi(r) for r in covered], [pmi(r) for r in gaps]
            ),
        }
        for m in MULTIPLES:
            result["auc"][f"cover score + {m} x PMI"] = auc_ci(
                [r["cover"] + m * pmi(r) for r in covered], [r["cover"] + m * pmi(r) for r in gaps]
            )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="mlx-lm model folder")
    parser.add_argument("--sets", default="brisk,hasty,rushed,terse")
    parser.add_argument("--gaps", default="gaps_rushed,gaps_hurried,gaps_brief")
    add_rows_option(parser)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--whole-output",
        action="store_true",
        help="read through the whole model output (every position's logits), as before the "
        "output layer was applied to the positions read alone: to time the two",
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sets = [s for s in args.sets.split(",") if s]
    gaps = [s for s in args.gaps.split(",") if s]
    measured: dict = {}
    rows = saved_rows(args.rows)  # summarise rows measured before
    if rows is None:
        from fieldkit.engine.engine import Engine

        if args.whole_output:
            from fieldkit.engine import mlx_backend

            mlx_backend.PLAIN_HEADS = ()
        embedder = MemoEmbedder(MiniLMEmbedder().load())
        engine = Engine(args.model)
        engine.load()
        rows_out = args.rows.open("w") if args.rows else open(os.devnull, "w")  # noqa: SIM115
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp, rows_out:
            rows = measure(engine, embedder, sets, gaps, Path(tmp), rows_out)
        seconds = (time.perf_counter() - started) / max(len(rows), 1)
        engine.close()
        measured = {
            "loadavg_1min": os.getloadavg()[0],
            "seconds_per_question": round(seconds, 3),  # the library's setup included
            "whole_output": args.whole_output,
        }
    result = summarise(rows, sets) | measured
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
