"""A variant not shipped: a one-sentence question's clauses read as its sentences.

    .venv/bin/python bench/bench_clauses.py [--lowers 0.87,0.88,0.89,0.90,0.91] [--json OUT]

Retrieval reads a long question sentence by sentence (`ranking.question_sentences`), in
ranking and in the cover score. This reads a one-sentence question's clauses (split at a
comma, " - " or an inner "?"; three words or more each) the same way, and scores both
readings as `bench_thresholds.py` does (the demo packets alone, the upper threshold at
0.96) at each lower threshold: the mean citation precision over the short sets, the
mean share refused of the gap sets and of the short gap sets, and the blind short sets
and their gap sets, which no choice was made on.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path

import bench_thresholds as bt

import fieldkit.router.retrieval as retrieval
from fieldkit.router.embedder import MiniLMEmbedder

SHIPPED = retrieval.question_sentences
BLIND = ("sharp", "thumbs")


def with_clauses(question: str) -> list[str]:
    """The shipped sentences of a question; for a one-sentence question, its clauses."""
    parts = SHIPPED(question)
    if parts:
        return parts
    bits = [b.strip(" ?.") for b in re.split(r",\s+|\s+-\s+|\?\s+", question)]
    bits = [b for b in bits if len(b.split()) >= 3]
    return bits if len(bits) > 1 else []


def blind(router, index, rows: dict[str, list[dict]]) -> dict[str, float]:  # noqa: ANN001
    """The blind short sets' citation precision and their gap sets' share refused."""
    out = {}
    for name in BLIND:
        found = bt.covers(router, index, rows[name])
        out[name] = bt.mean([float(c is not None and c.covered and r) for c, r in found])
        found = bt.covers(router, index, rows[f"gaps_{name}"])
        out[f"gaps_{name}"] = bt.mean([float(c is None or not c.covered) for c, _ in found])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lowers", default="0.87,0.88,0.89,0.90,0.91")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    lowers = [float(x) for x in args.lowers.split(",")]
    names = (*bt.SHORT, *bt.LONG, *bt.GAPS, *BLIND, *(f"gaps_{n}" for n in BLIND))
    rows = {name: bt.demo_rows(name) for name in names}
    embedder = bt.MemoEmbedder(MiniLMEmbedder().load())
    started, out = time.perf_counter(), {}
    with tempfile.TemporaryDirectory() as tmp:
        library, router, index = bt.notes_library(None, embedder, Path(tmp))
        for label, reading in (("shipped", SHIPPED), ("clauses", with_clauses)):
            retrieval.question_sentences = reading
            for lower in lowers:
                cell = bt.score_pair(router, index, rows, (0.96, lower)) | blind(
                    router, index, rows
                )
                out[f"{label} {lower:.2f}"] = cell
                blinds = ", ".join(
                    f"{n} {cell[n]:.1%}" for n in (*BLIND, "gaps_sharp", "gaps_thumbs")
                )
                print(
                    f"{label} {lower:.2f}: short cited {cell['short_cited']:.1%} (curt "
                    f"{cell['cited']['curt']:.1%}), gaps refused {cell['gaps_refused']:.1%} "
                    f"(short {cell['short_gaps_refused']:.1%}); {blinds}",
                    flush=True,
                )
        retrieval.question_sentences = SHIPPED
        library.close()
    if args.json:
        meta = {"seconds": round(time.perf_counter() - started, 1)}
        meta["loadavg_1min"] = os.getloadavg()[0]
        args.json.write_text(json.dumps({"cells": out, **meta}, indent=1) + "\n")


if __name__ == "__main__":
    main()
