"""Would a packet's notes, covering a question surely, be a fair reason to overrule the
everyday list? For every question of every set that the list takes from a packet, the
notes' coverage of it on that packet (`PassageIndex.coverage`).

    .venv/bin/python bench/bench_everyday_cover.py [--json OUT]

Each question is routed as `bench_route.py` routes it (the demo packets with their notes,
in a scratch library); where the decision is "an everyday question", the packet ranked
first is asked whether its notes cover the question. Counted by kind of set (in-domain,
gap, out-of-domain), by coverage (sure, in the cautious middle, not covered), and by
whether that packet is the question's own.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import bench_route  # noqa: E402

from fieldkit.router.embedder import default_embedder  # noqa: E402


def measure() -> dict:
    embedder = default_embedder()
    counts: Counter[str] = Counter()
    sure: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        library, router, index = bench_route.notes_library(None, embedder, Path(tmp))
        domains = {r.packet_id: r.domain for r in library.list_packets()}
        for name, rows in bench_route.question_sets(None).items():
            decisions = router.route_many([q for _, q in rows])
            for (domain, question), decision in zip(rows, decisions, strict=True):
                taken = decision.reason.startswith("an everyday question")
                if decision.route is not None or not taken or not decision.candidates:
                    continue
                packet = decision.candidates[0].packet_id
                cover = index.coverage(packet, question)
                kind = "out-of-domain" if not domain else "gap" if "gaps" in name else "in-domain"
                state = "sure" if cover.sure else "middle" if cover.covered else "not covered"
                own = "own packet" if domains[packet] == domain else "another packet"
                counts[f"{kind}, {state}, {own}"] += 1
                if cover.sure:
                    sure.append({"set": name, "question": question, "packet": domains[packet],
                                 "own": domains[packet] == domain,
                                 "cover": round(cover.score, 3)})  # fmt: skip
    return {"counts": dict(sorted(counts.items())), "covered surely": sure}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = measure()
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
