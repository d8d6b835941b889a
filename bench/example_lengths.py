"""Token lengths of the examples a packet trains on, per domain, with or without the notes recipe.

    .venv/bin/python bench/example_lengths.py --model MODEL_DIR [--plain] [--json FILE]

For each demo domain (assets/demo/*/train.jsonl with its paraphrases.jsonl) and each reference domain (the corpus at
../shared/reference/gossip-handshake, with bench/data/reference_train_paraphrases.jsonl,
if present): how many examples, their median, 90th percentile and longest length in
tokens (the chat template of MODEL_DIR's tokenizer), and how many run past 512 tokens,
the floor `fieldkit train` batches at (longer ones raise the limit; before, mlx-lm cut the
end of their answers).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FLOOR = 512
REF_DOMAINS = ("agronomy", "veterinary", "irrigation", "soil_science", "aquaculture")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def domains(corpus: Path) -> dict[str, tuple[Path, dict]]:
    """Return {domain: (records file, {question: paraphrases})}."""
    out = {}
    for folder in sorted((REPO / "assets/demo").iterdir()):
        rows = read_jsonl(folder / "paraphrases.jsonl")
        out[folder.name] = (
            folder / "train.jsonl",
            {r["source"]: tuple(r["questions"]) for r in rows},
        )
    paraphrases = REPO / "bench/data/reference_train_paraphrases.jsonl"
    if corpus.is_dir() and paraphrases.is_file():
        extra: dict[str, dict] = {}
        for row in read_jsonl(paraphrases):
            extra.setdefault(row["domain"], {})[row["source"]] = tuple(row["questions"])
        for domain in REF_DOMAINS:
            out[domain] = (corpus / f"{domain}.jsonl", extra.get(domain, {}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument(
        "--corpus", type=Path, default=REPO.parent / "shared/reference/gossip-handshake"
    )
    parser.add_argument("--plain", action="store_true", help="bare examples, not the notes recipe")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import numpy as np

    from fieldkit.engine.blas import preload_openblas

    preload_openblas()
    from mlx_lm import load

    from fieldkit.training.dataset import Record
    from fieldkit.training.grounded import training_examples

    _, tokenizer = load(str(args.model))
    report = {}
    print("| domain | examples | median | p90 | longest | past 512 |\n|---|---|---|---|---|---|")
    for domain, (path, paraphrases) in domains(args.corpus).items():
        records = [
            Record(r["instruction"], r["output"], paraphrases.get(r["instruction"], ()))
            for r in read_jsonl(path)
        ]
        examples = training_examples(records, domain, grounded=not args.plain)
        lengths = [
            len(tokenizer.apply_chat_template(e["messages"], return_dict=False)) for e in examples
        ]
        over = sum(n > FLOOR for n in lengths)
        row = {
            "examples": len(lengths),
            "median": int(np.median(lengths)),
            "p90": int(np.percentile(lengths, 90)),
            "longest": max(lengths),
            "past_512": over,
        }
        report[domain] = row
        print(
            f"| {domain} | {row['examples']} | {row['median']} | {row['p90']} | "
            f"{row['longest']} | {over} ({100 * over / len(lengths):.0f}%) |"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
