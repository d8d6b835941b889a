"""Same-domain merging: two packets trained on disjoint halves of one domain's records.

    .venv/bin/python bench/bench_same_domain.py poultry [--minutes 8] [--stage all|split|train|bench]
        [--model DIR] [extra `fieldkit bench quality` options after --]

`split` writes the domain's training records alternately into two halves
(`<domain>_a`, `<domain>_b`) under bench/out/same-<domain>/, and the domain's held-out
questions (assets/demo/<domain>/heldout.jsonl) relabelled with the half that holds each
question's source record. `train` trains one packet per half with `fieldkit train` (the
shipped packets' recipe: rank 8, scale 2.0, last 16 layers, lr 1e-3, the domain's
paraphrases; `--minutes` each). `bench` runs `fieldkit bench quality --from-library` on the
two packets: each packet alone, every merge of the two, the router choosing between them,
and the oracle (each question sent to the half that holds its fact). Its `all` column is
the whole domain's held-out set.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEFAULT_MODEL = REPO / "bench/out/models/smollm2-135m-instruct"


def split(domain: str, out: Path) -> list[str]:
    """Write the two halves and the relabelled held-out questions; return the half names."""
    src = REPO / "assets/demo" / domain
    rows = [json.loads(line) for line in (src / "train.jsonl").read_text().splitlines() if line]
    halves = [f"{domain}_a", f"{domain}_b"]
    owner: dict[str, str] = {}
    for k, half in enumerate(halves):
        part = rows[k::2]
        (out / half).mkdir(parents=True, exist_ok=True)
        (out / half / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
        owner |= {r["instruction"]: half for r in part}
    heldout = []
    for line in (src / "heldout.jsonl").read_text().splitlines():
        if line:
            q = json.loads(line)
            heldout.append(q | {"domain": owner[q["source"]]})
    (out / "heldout.jsonl").write_text("".join(json.dumps(q) + "\n" for q in heldout))
    return halves


def fieldkit(args: list[str]) -> None:
    """Run the fieldkit CLI in a subprocess (one model load per step, as a user would)."""
    exe = Path(sys.executable).parent / "fieldkit"
    subprocess.run([str(exe), *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("domain")
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--stage", choices=["all", "split", "train", "bench"], default="all")
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = REPO / "bench/out" / f"same-{args.domain}"
    home = out / "home"
    halves = split(args.domain, out)
    src = REPO / "assets/demo" / args.domain
    base = ["--home", str(home), "--model", args.model]
    if args.stage in ("all", "train"):
        for half in halves:
            subprocess.run(  # a rerun replaces the half's packet
                [str(Path(sys.executable).parent / "fieldkit"), *base, "library", "remove", half],
                capture_output=True,
            )
            fieldkit(
                [
                    *base, "train", str(out / half / "train.jsonl"), "--name", half,
                    "--domain", half, "--paraphrases", str(src / "paraphrases.jsonl"),
                    "--rank", "8", "--scale", "2.0", "--layers", "16", "--lr", "1e-3",
                    "--iters", "300", "--max-minutes", str(args.minutes),
                ]
            )  # fmt: skip
    if args.stage in ("all", "bench"):
        fieldkit(
            [
                "--home", str(out / "cli-home"), "--model", args.model, "bench", "quality",
                "--data", str(out), "--questions", str(out / "heldout.jsonl"),
                "--from-library", str(home), "--out", str(out / "quality"), *extra,
            ]
        )  # fmt: skip


if __name__ == "__main__":
    main()
