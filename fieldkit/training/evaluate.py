"""Score answers against expected keywords: recall, all-facts, bootstrap CIs, reports.

Keyword recall is the reference's score: the share of a question's expected keywords that
occur in the answer (case-insensitive substring). All-facts is stricter: 1 only when every
keyword occurs. Each (system, domain) cell gets its mean and a percentile-bootstrap 95%
confidence interval over questions. No mlx here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fieldkit.training.dataset import DataError

ALL = "all"


@dataclass(frozen=True)
class Question:
    """A held-out question with its domain and the keywords a right answer contains."""

    domain: str
    question: str
    keywords: tuple[str, ...]
    qid: str = ""


@dataclass(frozen=True)
class Answer:
    """One system's answer to one question."""

    system: str
    question: Question
    text: str


@dataclass(frozen=True)
class Score:
    """Mean keyword recall and all-facts share of one (system, domain) cell, with 95% CIs."""

    system: str
    domain: str
    n: int
    recall: float
    recall_ci: tuple[float, float]
    all_facts: float
    all_facts_ci: tuple[float, float]


def keyword_recall(answer: str, keywords: Sequence[str]) -> float:
    """Return the share of keywords found in answer (case-insensitive substring); 0 if none."""
    if not keywords:
        return 0.0
    low = answer.lower()
    return sum(k.lower() in low for k in keywords) / len(keywords)


def all_facts(answer: str, keywords: Sequence[str]) -> float:
    """Return 1.0 when every keyword occurs in answer, else 0.0."""
    return float(bool(keywords) and keyword_recall(answer, keywords) == 1.0)


def bootstrap_ci(
    values: Sequence[float], n_resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Return the percentile-bootstrap confidence interval of the mean of values."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, (n_resamples, data.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return (float(low), float(high))


def score(answers: Iterable[Answer], seed: int = 0) -> list[Score]:
    """Return one Score per (system, domain) and per (system, "all"), in first-seen order."""
    cells: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for a in answers:
        pair = (
            keyword_recall(a.text, a.question.keywords),
            all_facts(a.text, a.question.keywords),
        )
        cells.setdefault((a.system, a.question.domain), []).append(pair)
        cells.setdefault((a.system, ALL), []).append(pair)
    scores = []
    for (system, domain), pairs in cells.items():
        recall = [p[0] for p in pairs]
        facts = [p[1] for p in pairs]
        scores.append(
            Score(
                system=system,
                domain=domain,
                n=len(pairs),
                recall=float(np.mean(recall)),
                recall_ci=bootstrap_ci(recall, seed=seed),
                all_facts=float(np.mean(facts)),
                all_facts_ci=bootstrap_ci(facts, seed=seed),
            )
        )
    return scores


def _pct(value: float) -> str:
    return f"{100 * value:.0f}"


def markdown_table(scores: Sequence[Score]) -> str:
    """Return a markdown table: one row per system, recall [95% CI] per domain, then all."""
    systems = list(dict.fromkeys(s.system for s in scores))
    domains = [d for d in dict.fromkeys(s.domain for s in scores) if d != ALL] + [ALL]
    cell = {(s.system, s.domain): s for s in scores}
    header = "| system | " + " | ".join(domains) + " | all-facts (all) |"
    lines = [header, "|" + "---|" * (len(domains) + 2)]
    for system in systems:
        row = [system]
        for domain in domains:
            s = cell.get((system, domain))
            row.append(
                "–"
                if s is None
                else f"{_pct(s.recall)} [{_pct(s.recall_ci[0])}–{_pct(s.recall_ci[1])}]"
            )
        total = cell.get((system, ALL))
        row.append("–" if total is None else f"{_pct(total.all_facts)}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def bar_chart(scores: Sequence[Score], width: int = 40, domain: str = ALL) -> str:
    """Return a terminal bar chart of each system's recall on one domain (default: all)."""
    rows = [s for s in scores if s.domain == domain]
    if not rows:
        return ""
    label = max(len(s.system) for s in rows)
    out = [f"keyword recall, {domain} (%, 95% CI)"]
    for s in rows:
        filled = round(s.recall * width)
        bar = "█" * filled + "·" * (width - filled)
        ci = f"[{_pct(s.recall_ci[0])}–{_pct(s.recall_ci[1])}]"
        out.append(f"{s.system.ljust(label)} {bar} {_pct(s.recall):>3} {ci}")
    return "\n".join(out)


def to_json(scores: Sequence[Score], answers: Sequence[Answer], meta: dict[str, Any]) -> str:
    """Return the JSON report: run metadata, every score cell and every answer."""
    return json.dumps(
        {
            "meta": meta,
            "scores": [asdict(s) for s in scores],
            "answers": [
                {
                    "system": a.system,
                    "domain": a.question.domain,
                    "question": a.question.question,
                    "keywords": list(a.question.keywords),
                    "recall": keyword_recall(a.text, a.question.keywords),
                    "answer": a.text,
                }
                for a in answers
            ],
        },
        indent=1,
    )


def parse_questions(rows: Iterable[Any], label: str = "questions") -> list[Question]:
    """Return Questions from rows `{"domain", "question", "expected_keywords", "id"?}`.

    Raises DataError on a row without a domain, a question, or a non-empty keyword list.
    """
    out = []
    for n, row in enumerate(rows, start=1):
        keywords = (
            row.get("expected_keywords") or row.get("keywords") if isinstance(row, dict) else None
        )
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("domain"), str)
            or not isinstance(row.get("question"), str)
            or not isinstance(keywords, list)
            or not keywords
            or not all(isinstance(k, str) for k in keywords)
        ):
            raise DataError(
                f"{label} line {n} needs a domain, a question and a list of expected_keywords."
            )
        out.append(
            Question(row["domain"], row["question"], tuple(keywords), str(row.get("id", "")))
        )
    return out
