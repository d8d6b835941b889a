"""The cover thresholds of notes whose passages list phrasings, pair by pair.

    .venv/bin/python bench/bench_thresholds.py [--pairs 0.93,0.85;0.94,0.86] [--json OUT]
        [--reference ../shared/reference/gossip-handshake] [--no-reference]

On the library `bench_route.py --only citations` builds (the demo packets and, where the
corpus is present, the reference ones, each with its records as notes and their
phrasings), every question of the short, long and gap sets is routed and checked against
the routed packet's notes once per (upper, lower) pair of `PassageIndex.phrased`. Per
pair: the mean citation precision (covered, and the first passage its own record) over
the short sets and over the long sets, the lowest short set's, the mean share of the gap
questions refused (abstained on, or not covered) over all gap sets and over the short
gap sets, and the share left not covered surely, of `gaps` and over all gap sets.
Citations and refusals depend on the lower threshold alone, what is left not sure on the
upper alone, so a diagonal of pairs shows both. The sets written after a choice
(`sharp`, `thumbs` and their gap sets) are left out: they score it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench_route import (
    DEMO_SETS,
    REPO,
    SHORT_SETS,
    MemoEmbedder,
    covers,
    demo_rows,
    notes_library,
)

from fieldkit.router.embedder import MiniLMEmbedder

# written after the choice: they score it
WRITTEN_AFTER = ("sharp", "gaps_sharp", "thumbs", "gaps_thumbs", "noon")
SHORT = SHORT_SETS
GAPS = tuple(n for n in DEMO_SETS if n.startswith("gaps") and n not in WRITTEN_AFTER)
LONG = tuple(n for n in DEMO_SETS if n not in (*SHORT, *GAPS, *WRITTEN_AFTER, "heldout"))
SHORT_GAPS = ("gaps", "gaps_rushed", "gaps_hurried", "gaps_brief", "gaps_curt")
PAIRS = "0.93,0.85;0.94,0.86;0.95,0.87;0.96,0.88"


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def score_pair(router, index, rows: dict[str, list[dict]], pair: tuple[float, float]) -> dict:
    """Route and cover every set's questions at one (upper, lower) pair; the shares above."""
    index.phrased = pair
    cited, refused, unsure = {}, {}, {}
    for name, questions in rows.items():
        found = covers(router, index, questions)
        if name.startswith("gaps"):
            refused[name] = mean([float(c is None or not c.covered) for c, _ in found])
            unsure[name] = mean([float(c is None or not c.sure) for c, _ in found])
        else:
            cited[name] = mean([float(c is not None and c.covered and r) for c, r in found])
    return {
        "short_cited": mean([cited[n] for n in SHORT]),
        "short_cited_lowest": min(cited[n] for n in SHORT),
        "long_cited": mean([cited[n] for n in LONG]),
        "gaps_refused": mean([refused[n] for n in GAPS]),
        "short_gaps_refused": mean([refused[n] for n in SHORT_GAPS]),
        "gaps_set_not_sure": unsure["gaps"],
        "all_gaps_not_sure": mean([unsure[n] for n in GAPS]),
        "cited": cited,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reference", type=Path, default=REPO / "../shared/reference/gossip-handshake"
    )
    parser.add_argument("--no-reference", action="store_true", help="the demo packets alone")
    parser.add_argument("--pairs", default=PAIRS, help="upper,lower pairs, ';'-separated")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    reference = None if args.no_reference else args.reference.resolve()
    if reference is not None and not reference.is_dir():
        reference = None
    pairs = [tuple(float(x) for x in p.split(",")) for p in args.pairs.split(";") if p]
    embedder = MemoEmbedder(MiniLMEmbedder().load())
    rows = {name: demo_rows(name) for name in (*SHORT, *LONG, *GAPS)}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        library, router, index = notes_library(reference, embedder, Path(tmp))
        out = {f"{u:.2f},{lo:.2f}": score_pair(router, index, rows, (u, lo)) for u, lo in pairs}
        library.close()
    for key, cell in out.items():
        print(
            f"upper,lower {key}: short cited {cell['short_cited']:.1%} (lowest "
            f"{cell['short_cited_lowest']:.1%}), long cited {cell['long_cited']:.1%}; gaps "
            f"refused {cell['gaps_refused']:.1%} (short {cell['short_gaps_refused']:.1%}); not "
            f"sure: gaps {cell['gaps_set_not_sure']:.1%}, all {cell['all_gaps_not_sure']:.1%}"
        )
    if args.json:
        meta = {"seconds": round(time.perf_counter() - started, 1)}
        meta["loadavg_1min"] = os.getloadavg()[0]
        meta["reference"] = reference is not None
        args.json.write_text(json.dumps({"pairs": out, **meta}, indent=1) + "\n")


if __name__ == "__main__":
    main()
