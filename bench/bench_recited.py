"""How often a packet's adapter writes out another record than the one it was given, and
what those answers hold: the rule `fieldkit.support.recited` on answers already written.

    .venv/bin/python bench/bench_recited.py [--answers bench/out/quality-demo/answers.jsonl] [--json OUT]

The answers are those `bench_quality.py demo` cached (every demo set it was run on since
the cache was made): each answer written by a packet's adapter from one record of its
notes (the prompt names the record). Each is checked against the other records of its
packet, as `ask` checks an answer. Where the prompt's question is a demo set's question,
its keyword recall says whether the answer holds its facts, and the record given is
compared with the question's own record.

The rule that acts on it (`fieldkit.generating.Opening`) decides on the answer's opening
alone (`support.opening`), while the answer streams: an answer whose opening writes out
another record is given as its own record instead. The figures under "opening" count what
that rule finds, and the recall of those answers as written and as given instead.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_route import sources  # noqa: E402

from fieldkit.support import opening, recited  # noqa: E402
from fieldkit.training.evaluate import bootstrap_ci, keyword_recall  # noqa: E402

DOMAINS = ("cold_chain", "grain_storage", "poultry", "solar_pumps")
_PROMPT = re.compile(r"\n- (.+?\?): (.+?)\n\nQuestion: (.+)$", re.S)


def records() -> dict[str, tuple[str, str]]:
    """Every demo record's title: (its domain, its title and text as notes hold them)."""
    out = {}
    for domain in DOMAINS:
        for line in (REPO / "assets/demo" / domain / "train.jsonl").read_text().splitlines():
            row = json.loads(line)
            out[row["instruction"]] = (domain, f"{row['instruction']}\n{row['output']}")
    return out


def questions() -> dict[str, dict]:
    """Every demo set's question: its row (expected keywords, source)."""
    out = {}
    for path in sorted((REPO / "assets/demo").glob("*/*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if "question" in row and "expected_keywords" in row:
                out[row["question"].strip()] = row
    return out


def measure(answers: Path) -> dict:
    known, asked = records(), questions()
    by_domain: dict[str, list[str]] = {}
    for title, (domain, _) in known.items():
        by_domain.setdefault(domain, []).append(title)
    counts: Counter[str] = Counter()
    recall: dict[str, list[float]] = {"written out": [], "the others": []}
    checked: list[tuple[str, str, list[str]]] = []  # for other thresholds
    opened: dict[str, list[float]] = {"as written": [], "given instead": [], "all, as written": [],
                                      "all, with the rule": []}  # fmt: skip
    for line in answers.read_text().splitlines():
        row = json.loads(line)
        found = _PROMPT.search(row["question"])
        if row["adapter"] == "base" or not found or found.group(1) not in known:
            continue  # the base model's answers, and prompts without one record
        given = found.group(1)
        domain, text = known[given]
        others = [t for t in by_domain[domain] if t != given]
        at = recited(row["text"], text, [known[t][1] for t in others])
        checked.append((row["text"], text, [known[t][1] for t in others]))
        counts["answers"] += 1
        key = "written out" if at is not None else "the others"
        counts[key] += 1
        begun = recited(opening(row["text"], done=True), text, [known[t][1] for t in others])
        counts["opening writes out another"] += begun is not None
        counts["opening writes out another, and so does the whole"] += None not in (begun, at)
        question = asked.get(found.group(3).strip())
        if question is None:
            continue  # a part's prompt: asked some sentences of a question
        keywords = question["expected_keywords"]
        recall[key].append(keyword_recall(row["text"], keywords))
        written = keyword_recall(row["text"], keywords)
        given_text = keyword_recall(text.split("\n", 1)[1], keywords)  # the record's text
        opened["all, as written"].append(written)
        opened["all, with the rule"].append(written if begun is None else given_text)
        if begun is not None:
            opened["as written"].append(written)
            opened["given instead"].append(given_text)
        if at is not None:
            mine = sources(question)
            own = "given" if given in mine else ("written out" if others[at] in mine else "neither")
            counts[f"written out, own record: {own}"] += 1
    out: dict = dict(counts)
    out["written out, by share and lead"] = {
        f"{share} {lead}": sum(
            recited(text, given, others, share, lead) is not None for text, given, others in checked
        )
        for share in (0.4, 0.5, 0.6, 0.7)
        for lead in (0.1, 0.2, 0.3, 0.4)
    }
    for key, values in recall.items():
        out[f"recall, {key}"] = _mean_ci(values)
    for key, values in opened.items():
        out[f"opening: recall, {key}"] = _mean_ci(values)
    before, after = opened["all, as written"], opened["all, with the rule"]
    out["opening: recall gained, paired [95% CI]"] = _mean_ci(
        [b - a for a, b in zip(before, after, strict=True)]
    )
    return out


def _mean_ci(values: list[float]) -> dict:
    low, high = bootstrap_ci(values) if values else (0.0, 0.0)
    mean = sum(values) / len(values) if values else 0.0
    return {"n": len(values), "mean": round(100 * mean, 1),
            "ci": [round(100 * low, 1), round(100 * high, 1)]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--answers", type=Path, default=REPO / "bench/out/quality-demo/answers.jsonl"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = measure(args.answers)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
