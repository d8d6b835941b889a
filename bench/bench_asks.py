"""A long question that asks two things: are both records shown?

    .venv/bin/python bench/bench_asks.py [--per-domain 60] [--seed 0] [--json OUT]

The library is the one `bench_route.py --only citations` builds (every demo packet with
its training records as notes, their phrasings included). A two-record question is two
questions of the long demo sets (`LONG`) of one domain, with different source records,
asked as one: the first's text, then the second's. Each goes to its own packet (no router,
no reading: this measures the ranking within a packet). What a person is shown is the two
passages ranked first (`ask` shows two; three for an answer in three parts). For each
question, and the same with the plain ranking (`ranking.rank_scores` alone, the order
before `ranking.other_ask_next`):

- `both`: both records are among the two shown;
- `first`: the first's record is;
- `second`: the second's record is;
- `shown_recall`: the keyword recall of the two passages for both questions' keywords.

`two_parts`: how often the answer comes in parts, two or three (`Coverage.other_asks`:
the passages after the first answer some sentences apart); `two_parts_both_records`: in
parts, the first two from the two records asked about; `three_parts`: in three;
`parts_read_both`: in parts, the parts read both records; `in_order`: of those, how often
the part from the record asked about first comes first (`ranking.in_asked_order`). For
single questions, parts are a false split.

The same for pairs of short questions (`two_short_asks`: 60 a domain, seed 1) and for
the `twin` and `duo` sets: questions of natural length written to ask two things two
records answer (`asks`), and the `joined` set's questions that ask two things in one
sentence ("... and how long ...?"; those one record answers: `joined, one record`, how
often their record comes first and how often the answer is split, a false split); and for `trio` (three asks, three records), how often the answer
comes in three parts and its parts read all three records (`in_order`: of those, how
often in the order they are asked).

And on the single questions of every in-domain demo set, long and short, whether the
second passage changes what they are shown (`shown_recall` of the two passages, and how
often the second passage is the question's own record), with every question's passages
shown whatever the coverage check says.
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

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_route import SHORT_SETS, MemoEmbedder, demo_rows, notes_library, sources  # noqa: E402

from fieldkit.router.embedder import default_embedder  # noqa: E402
from fieldkit.router.ranking import rank_scores  # noqa: E402
from fieldkit.training.evaluate import bootstrap_ci, keyword_recall  # noqa: E402

LONG = ("natural", "field", "site", "unseen", "fresh", "late", "shift")
SHORT = SHORT_SETS


def set_rows(names: tuple[str, ...]) -> list[dict]:
    return [r for n in names for r in demo_rows(n)]


def two_asks(per_domain: int, seed: int, names: tuple[str, ...] = LONG) -> list[dict]:
    """Return the two-record questions: `per_domain` random pairs a domain of the sets
    `names`, same record pairs left out. Short questions (the SHORT sets) each end in a
    question mark, as two asks typed one after the other."""
    rng = random.Random(seed)
    by_domain: dict[str, list[dict]] = {}
    for row in set_rows(names):
        by_domain.setdefault(row["domain"], []).append(row)
    out = []
    for domain, rows in sorted(by_domain.items()):
        for _ in range(per_domain):
            a, b = rng.sample(rows, 2)
            if set(sources(a)) & set(sources(b)):
                continue
            keywords = a["expected_keywords"] + b["expected_keywords"]
            question = f"{a['question']} {b['question']}"
            if names == SHORT:
                question = " ".join(f"{r['question'].rstrip(' ?.')}?" for r in (a, b))
            out.append(
                {"domain": domain, "question": question, "a": sources(a), "b": sources(b),
                 "expected_keywords": keywords}
            )  # fmt: skip
    return out


def shown(index, packet_id: str, question: str) -> tuple[list, list]:
    """Return the two passages shown as shipped, and as the plain ranking orders them."""
    passages = index.passages(packet_id)
    plain = np.argsort(-rank_scores(index.scores(packet_id, question)), kind="stable")[:2]
    by_id = {p.passage_id: p for p in passages}
    shipped = [by_id[h.passage_id] for h in index.search(packet_id, question, 2)]
    return shipped, [passages[i] for i in plain]


def share(values: list[float]) -> dict:
    return {"share": round(float(np.mean(values)), 4), "ci": bootstrap_ci(values)}


def both_shown(index, packet: dict[str, str], questions: list[dict]) -> dict:
    """Return, shipped and plain, how often both records (`a`, `b`) are shown, each is,
    and the keyword recall of the two passages shown."""
    cells: dict = {k: {"both": [], "first": [], "second": [], "shown_recall": []}
                   for k in ("shipped", "plain")}  # fmt: skip
    split, split_right, three, read_both, in_order = [], [], [], [], []
    for mix in questions:
        pairs = shown(index, packet[mix["domain"]], mix["question"])
        cover = index.coverage(packet[mix["domain"]], mix["question"])
        titles = [h.title for h in cover.hits]
        split.append(float(bool(cover.other_asks)))
        three.append(float(len(cover.other_asks) == 2))
        right = len(titles) > 1 and titles[0] in mix["a"] + mix["b"]
        right = right and titles[1] in mix["a"] + mix["b"] and titles[0] != titles[1]
        split_right.append(float(bool(cover.other_asks) and right))
        parts = titles[: 1 + len(cover.other_asks)]  # the records the parts read
        at_a = next((i for i, t in enumerate(parts) if t in mix["a"]), None)
        at_b = next((i for i, t in enumerate(parts) if t in mix["b"]), None)
        both = bool(cover.other_asks) and None not in (at_a, at_b) and at_a != at_b
        read_both.append(float(both))
        if both:  # the parts read both records: the first asked, answered first?
            in_order.append(float(at_a < at_b))
        for order, passages in zip(("shipped", "plain"), pairs, strict=True):
            titles = {p.title for p in passages}
            first, second = bool(titles & set(mix["a"])), bool(titles & set(mix["b"]))
            cell = cells[order]
            cell["both"].append(float(first and second))
            cell["first"].append(float(first))
            cell["second"].append(float(second))
            text = "\n".join(p.full_text for p in passages)
            cell["shown_recall"].append(keyword_recall(text, mix["expected_keywords"]))
    return {
        "n": len(questions),
        "two_parts": share(split),
        "two_parts_both_records": share(split_right),
        "three_parts": share(three),
        "parts_read_both": share(read_both),
        "in_order": share(in_order) | {"n": len(in_order)} if in_order else None,
    } | {order: {k: share(v) for k, v in cell.items()} for order, cell in cells.items()}


def one_record(index, packet: dict[str, str], questions: list[dict]) -> dict:
    """Return, for the questions of two asks one record answers (no `asks`), how often
    their record is cited first and how often the answer is split in parts (a false split)."""
    rows = [r for r in questions if "asks" not in r]
    own, split = [], []
    for row in rows:
        cover = index.coverage(packet[row["domain"]], row["question"])
        own.append(float(bool(cover.hits) and cover.hits[0].title in sources(row)))
        split.append(float(bool(cover.other_asks)))
    return {"n": len(rows), "own_first": share(own), "two_parts": share(split)}


def three_asks(index, packet: dict[str, str], questions: list[dict]) -> dict:
    """Return, for questions of three asks (`asks`: three records), how often the answer
    comes in three parts, and how often its parts read all three records."""
    parts, all_read, in_order = [], [], []
    for row in questions:
        cover = index.coverage(packet[row["domain"]], row["question"])
        read = [h.title for h in cover.hits[: 1 + len(cover.other_asks)]]
        parts.append(float(len(cover.other_asks) == 2))
        all_read.append(float(set(read) >= set(row["asks"])))
        if len(read) == 3 and set(read) == set(row["asks"]):
            in_order.append(float(read == list(row["asks"])))
    return {
        "n": len(questions), "three_parts": share(parts), "three_records_read": share(all_read),
        "in_order": share(in_order) | {"n": len(in_order)} if in_order else None,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-domain", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    embedder = MemoEmbedder(default_embedder())
    started = time.perf_counter()
    results: dict = {"command": " ".join(sys.argv[1:]), "loadavg_1min_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        library, _, index = notes_library(None, embedder, Path(tmp) / "asks")
        packet = {r.domain: r.packet_id for r in library.list_packets()}
        mixes = two_asks(args.per_domain, args.seed)
        results["two_asks"] = both_shown(index, packet, mixes)
        results["two_short_asks"] = both_shown(index, packet, two_asks(60, 1, SHORT))
        for name in ("twin", "duo", "joined"):
            rows = [r for r in set_rows((name,)) if "asks" in r]
            rows = [dict(r, a=[r["asks"][0]], b=[r["asks"][1]]) for r in rows]
            results[name] = both_shown(index, packet, rows)
        results["joined, one record"] = one_record(index, packet, set_rows(("joined",)))
        results["trio"] = three_asks(index, packet, set_rows(("trio",)))
        singles: dict = {}
        for label, names in (("long", LONG), ("short", SHORT)):
            rows = set_rows(names)
            for order in ("shipped", "plain"):
                recall, own_second, split, three = [], [], [], []
                for row in rows:
                    if order == "shipped":
                        cover = index.coverage(packet[row["domain"]], row["question"])
                        split.append(float(bool(cover.other_asks)))
                        three.append(float(len(cover.other_asks) == 2))
                    passages = shown(index, packet[row["domain"]], row["question"])
                    two = passages[0] if order == "shipped" else passages[1]
                    text = "\n".join(p.full_text for p in two)
                    recall.append(keyword_recall(text, row["expected_keywords"]))
                    own_second.append(float(len(two) > 1 and two[1].title in sources(row)))
                singles[f"{label} {order}"] = {
                    "n": len(rows), "shown_recall": share(recall), "second_is_own": sum(own_second)
                }  # fmt: skip
                if split:
                    singles[f"{label} {order}"]["two_parts"] = share(split)
                    singles[f"{label} {order}"]["three_parts"] = share(three)
        results["single_questions"] = singles
        library.close()
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["loadavg_1min_end"] = os.getloadavg()[0]
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
