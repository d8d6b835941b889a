"""Two `bench_quality.py demo --json` runs on the same questions, compared answer by answer.

    .venv/bin/python bench/compare_quality.py --before A.json [B.json ...] --after C.json [D.json ...]
        [--by set|domain] [--sets noon,natural] [--system routed+notes] [--gaps]

For one system (default `routed+notes`, answers as `ask` gives them): keyword recall and
all-facts of the AFTER runs with 95% bootstrap intervals, over all the questions they
share with the BEFORE runs and per set (or per domain), each against BEFORE as a paired
difference (the questions resampled together), with how many questions did better and
worse (`score_packet.compare`). Use it when only the packets changed between the runs,
or only what a gap answer says: `--gaps` keeps the questions whose AFTER answer starts by
saying the packet has nothing on them (routed, the notes found no record that covers it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from score_packet import compare  # noqa: E402

from fieldkit.router.notices import GAP_OPENING  # noqa: E402
from fieldkit.training.evaluate import all_facts  # noqa: E402


def answers(paths: list[Path], system: str, by: str, sets: list[str] | None) -> dict[tuple, dict]:
    """Return {(set, question): answer row in `compare`'s shape} of the runs."""
    out = {}
    runs = [json.loads(path.read_text())["sets"] for path in paths]
    for name, cell in ((n, c) for run in runs for n, c in run.items()):
        if sets and name not in sets:
            continue
        for row in cell["answers"]:
            if row["system"] != system:
                continue
            out[(name, row["question"])] = {
                "set": name if by == "set" else row["domain"],
                "question": row["question"],
                "answer": row["answer"],
                "recall": row["recall"],
                "all_facts": all_facts(row["answer"], row["keywords"]),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, nargs="+", required=True)
    parser.add_argument("--after", type=Path, nargs="+", required=True)
    parser.add_argument("--by", choices=("set", "domain"), default="set")
    parser.add_argument("--sets", default=None, help="comma-separated; default: all shared")
    parser.add_argument("--system", default="routed+notes")
    parser.add_argument(
        "--gaps", action="store_true", help="only the questions AFTER answers as gaps"
    )
    args = parser.parse_args()
    sets = args.sets.split(",") if args.sets else None
    old = answers(args.before, args.system, args.by, sets)
    new = answers(args.after, args.system, args.by, sets)
    shared = [key for key in new if key in old]
    if args.gaps:  # the gap sentence opens the answer (notices.gap_message)
        shared = [key for key in shared if GAP_OPENING.match(new[key]["answer"])]
    print(json.dumps(compare([new[k] for k in shared], [old[k] for k in shared]), indent=1))


if __name__ == "__main__":
    main()
