"""Does the cover score tell a question its notes answer from one they do not? Leave one out.

    .venv/bin/python bench/bench_cover.py [--json OUT]

The library is the one `bench_route.py --only citations` builds: every demo packet with
its training records as notes. Each record's training paraphrases
(assets/demo/*/paraphrases.jsonl, three a record) are scored twice on their own packet:
against its notes (covered: their record is there) and against the same notes without
that record (a gap: a question of the domain whose record is missing, the near miss a
gap set is written to be). The area under the ROC curve (AUC) between the two says how
well a score separates them at any threshold: 0.5 is chance, 1.0 a clean cut.

The same is measured on the sets written in users' words, each question on the packet
the router sends it to: the in-domain questions whose own record ranks first, short sets
against the short gap sets and long against long. Scores: the cover score that decides
(`ranking.cover_score`), and three of its parts: the best passage's score, its lead
over the second, and how far it stands out from the packet's passages (z-score).
A rare code the question shares with a passage covers it whatever the score (see
CODE_MAX_PASSAGES); that rule is outside this measure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_route import MemoEmbedder, demo_rows, notes_library, read_jsonl, sources  # noqa: E402

from fieldkit.router.embedder import MiniLMEmbedder  # noqa: E402
from fieldkit.router.ranking import cover_score, rank_scores, zscores  # noqa: E402

SHORT = ("terse", "brisk", "hasty", "rushed", "hurried", "dashed")
LONG = ("natural", "field", "site", "unseen", "fresh", "late")
SHORT_GAPS = ("gaps_rushed", "gaps_hurried")
LONG_GAPS = ("gaps", "gaps_natural", "gaps_unseen", "gaps_fresh", "gaps_late")
RESAMPLES = 1000


def parts(rows: np.ndarray) -> dict[str, float]:
    """The cover score of (texts, passages) scores, and three of its parts."""
    first = np.sort(rows[0])[::-1]
    return {
        "cover score": cover_score(rows),
        "best score": float(rows.max()),
        "lead over the second": float(first[0] - first[1]),
        "stands out (z)": float(zscores(rows).max()),
    }


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney AUC: the chance a positive scores above a negative (ties count half)."""
    both = np.concatenate([pos, neg])
    order = both.argsort(kind="stable")
    ranks = np.empty(len(both))
    ranks[order] = np.arange(1, len(both) + 1)
    for value in np.unique(both):  # average ranks over ties
        tied = both == value
        ranks[tied] = ranks[tied].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def auc_ci(pos: list[float], neg: list[float], seed: int = 0) -> dict:
    """AUC with a 95% bootstrap interval (positives and negatives resampled apart)."""
    p, n = np.asarray(pos), np.asarray(neg)
    rng = np.random.default_rng(seed)
    draws = [
        auc(rng.choice(p, len(p)), rng.choice(n, len(n))) for _ in range(RESAMPLES)
    ]  # fmt: skip
    low, high = np.percentile(draws, [2.5, 97.5])
    return {
        "auc": round(auc(p, n), 3),
        "ci": [round(low, 3), round(high, 3)],
        "n": [len(p), len(n)],
    }


def logistic_fit(pos: np.ndarray, neg: np.ndarray, steps: int = 3000) -> np.ndarray:
    """Weights (bias last) of a logistic regression of positive vs negative rows of parts,
    on standardised columns, by plain gradient descent."""
    x = np.concatenate([pos, neg])
    mean, spread = x.mean(axis=0), x.std(axis=0) + 1e-9
    x = np.hstack([(x - mean) / spread, np.ones((len(x), 1))])
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        w -= 0.5 * x.T @ (1 / (1 + np.exp(-x @ w)) - y) / len(y)
    return np.concatenate([w[:-1] / spread, [w[-1] - (w[:-1] * mean / spread).sum()]])


def measure(embedder, tmp: Path) -> dict:  # noqa: ANN001 - a bench_route.MemoEmbedder
    library, router, index = notes_library(None, embedder, tmp)
    packets = {r.name: r.packet_id for r in library.list_packets()}
    demo = REPO / "assets/demo"
    seen: dict[str, list[dict[str, float]]] = {
        k: [] for k in ("kept", "left out", "short", "short gaps", "long", "long gaps")
    }
    for domain, packet_id in sorted(packets.items()):
        titles = [p.title for p in index.passages(packet_id)]
        for row in read_jsonl(demo / domain / "paraphrases.jsonl"):
            own = titles.index(row["source"])
            for question in row["questions"]:
                rows = index.scores(packet_id, question)
                seen["kept"].append(parts(rows))
                seen["left out"].append(parts(np.delete(rows, own, axis=1)))
    groups = {"short": SHORT, "short gaps": SHORT_GAPS, "long": LONG, "long gaps": LONG_GAPS}
    for group, names in groups.items():
        for name in names:
            questions = demo_rows(name)
            decisions = router.route_many([r["question"] for r in questions])
            for row, decision in zip(questions, decisions, strict=True):
                if decision.packet_id is None:
                    continue
                rows = index.scores(decision.packet_id, row["question"])
                if "gaps" not in group:  # in-domain: only where its own record ranks first
                    top = index.passages(decision.packet_id)[int(rank_scores(rows).argmax())]
                    if top.title not in sources(row):
                        continue
                seen[group].append(parts(rows))
    library.close()
    # The four parts combined by a fit on the paraphrase pairs alone (the packets' own
    # records calibrate it; no set in users' words is seen), then scored like the others.
    names = list(seen["kept"][0])
    matrix = {k: np.array([[s[n] for n in names] for s in v]) for k, v in seen.items()}
    w = logistic_fit(matrix["kept"], matrix["left out"])
    for group, rows in matrix.items():
        for entry, combined in zip(seen[group], rows @ w[:-1] + w[-1], strict=True):
            entry["the four, fitted on the paraphrases"] = float(combined)
    out: dict = {}
    for label, (pos, neg) in {
        "paraphrases: record kept / left out": ("kept", "left out"),
        "short sets / short gap sets": ("short", "short gaps"),
        "long sets / long gap sets": ("long", "long gaps"),
    }.items():
        out[label] = {
            score: auc_ci([s[score] for s in seen[pos]], [s[score] for s in seen[neg]])
            for score in seen[pos][0]
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    embedder = MemoEmbedder(MiniLMEmbedder().load())
    with tempfile.TemporaryDirectory() as tmp:
        results = {"cover_auc": measure(embedder, Path(tmp)), "loadavg_1min": os.getloadavg()[0]}
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
