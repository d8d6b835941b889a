"""Quality benchmark: routing between experts vs merging them, with the documented settings.

    .venv/bin/python bench/bench_quality.py reference [--corpus ../shared/reference/gossip-handshake]
        [--domains agronomy,veterinary] [--model DIR] [extra `fieldkit bench quality` options]
    .venv/bin/python bench/bench_quality.py demo [--sets heldout,natural] [--model DIR] [extra options]
    .venv/bin/python bench/bench_quality.py reference --notes-only --domains all [...]
    .venv/bin/python bench/bench_quality.py reference --domains all -- --grounded [...]

`reference` scores the corpus's domains on bench/data/reference_heldout.jsonl (paraphrased
held-out questions, 20 per domain) and on the corpus's own test_cases.jsonl; specialists
train on the corpus records plus bench/data/reference_train_paraphrases.jsonl (with
`--grounded`, the notes recipe of `fieldkit train --grounded`). `demo`
scores the four demo domains on assets/demo/*/heldout.jsonl and the natural-question set
assets/demo/*/natural.jsonl, or any other question file name there such as field
(`--sets heldout,natural,field`). `reference` also scores
bench/data/reference_natural.jsonl. Trained adapters and answers
are cached under bench/out/quality-<name>/, so a rerun reuses them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

REF_DOMAINS = ("agronomy", "veterinary", "irrigation", "soil_science", "aquaculture")
DEFAULT_MODEL = REPO / "bench/out/models/smollm2-135m-instruct"


def command(args: argparse.Namespace) -> list[str]:
    """Return the `fieldkit` argv for the chosen data set."""
    model = Path(args.model or DEFAULT_MODEL)
    if not (model / "config.json").is_file():
        from fieldkit.engine.convert import install_default

        model, _ = install_default(model.parent)
    tag = "-notes-only" if "--notes-only" in args.extra else ""
    out = REPO / "bench/out" / f"quality-{args.dataset}{tag}"
    argv = ["--home", str(out / "cli-home"), "--model", str(model), "bench", "quality"]
    if args.dataset == "reference":
        corpus = Path(args.corpus)
        argv += [
            "--data", str(corpus),
            "--questions", str(REPO / "bench/data/reference_heldout.jsonl"),
            "--questions", str(REPO / "bench/data/reference_natural.jsonl"),
            "--questions", str(corpus / "test_cases.jsonl"),
            "--paraphrases", str(REPO / "bench/data/reference_train_paraphrases.jsonl"),
            "--domains", ",".join(REF_DOMAINS) if args.domains == "all" else args.domains,
        ]  # fmt: skip
    else:
        argv += ["--data", str(REPO / "assets/demo")]
        for name in args.sets.split(","):
            for path in sorted((REPO / "assets/demo").glob(f"*/{name}.jsonl")):
                argv += ["--questions", str(path)]
    return [*argv, "--out", str(out), *args.extra]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["reference", "demo"])
    parser.add_argument("--corpus", default=str(REPO.parent / "shared/reference/gossip-handshake"))
    parser.add_argument("--domains", default="agronomy,veterinary")
    parser.add_argument("--model", default=None)
    parser.add_argument("--sets", default="heldout,natural", help="demo question files")
    args, extra = parser.parse_known_args()
    args.extra = [a for a in extra if a != "--"]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from fieldkit.cli import main as fieldkit

    fieldkit(command(args), standalone_mode=True)


if __name__ == "__main__":
    main()
