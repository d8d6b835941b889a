"""Score answers against expected keywords: recall, all-facts, bootstrap CIs, reports.

Keyword recall is the reference's score: the share of a question's expected keywords that
occur in the answer (case-insensitive substring; a keyword holding a number must stand as
a whole number: "5 m" is not found in "15 m" or "5 mm", nor "5%" in "2.5%"). All-facts is
stricter: 1 only when every keyword occurs. For answers drawn from a packet's notes two more
scores: `shown_recall`, the recall of what the person is shown (the answer plus the passages
it cites, at most two), and `citation_precision`, the share of questions whose first cited
passage is the question's own source record (a question with no citation counts as a
miss). Each (system, domain) cell gets its mean and a percentile-bootstrap 95% confidence
interval over questions. No mlx here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fieldkit.training.dataset import DataError

ALL = "all"
SHOWN_PASSAGES = 2  # what a person is shown: the answer and at most this many cited passages


@dataclass(frozen=True)
class Question:
    """A held-out question with its domain and the keywords a right answer contains."""

    domain: str
    question: str
    keywords: tuple[str, ...]
    qid: str = ""
    sources: tuple[str, ...] = ()  # the instruction(s) of the record(s) it is drawn from


@dataclass(frozen=True)
class Answer:
    """One system's answer to one question."""

    system: str
    question: Question
    text: str
    cited: tuple[str, ...] | None = None  # cited passages (title + text), None: no notes
    cited_titles: tuple[str, ...] = ()  # their titles (a record passage's title: its question)
    seconds: float | None = None  # generation time per answer, where measured

    @property
    def shown(self) -> str | None:
        """The answer plus the passages shown with it; None for a system without notes."""
        if self.cited is None:
            return None
        return "\n".join([self.text, *self.cited[:SHOWN_PASSAGES]])

    @property
    def cites_source(self) -> float | None:
        """1.0 when the first cited passage is the question's source record, None without notes."""
        if self.cited is None:
            return None
        first = self.cited_titles[0].strip().lower() if self.cited_titles else None
        return float(
            first is not None and first in {s.strip().lower() for s in self.question.sources}
        )


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
    shown_recall: float | None = None
    shown_recall_ci: tuple[float, float] | None = None
    citation_precision: float | None = None
    citation_precision_ci: tuple[float, float] | None = None
    seconds: float | None = None  # mean generation seconds per answer, where measured


def _pattern(keyword: str) -> re.Pattern[str]:
    """Return the case-insensitive pattern of one keyword.

    A keyword holding a digit is anchored as a number: no digit (or decimal point and
    digit) just before a leading digit, no digit just after a trailing one, no letter just
    after a trailing unit letter ("5 m" is not in "15 m", "5 mm" or "5 months"; "5%" is
    not in "25%" or "2.5%"). Other keywords are plain substrings.
    """
    body = re.escape(keyword.strip())
    if not any(c.isdigit() for c in keyword):
        return re.compile(body, re.IGNORECASE)
    head = r"(?<![\d.,])(?<!\d[.,])" if keyword.strip()[0].isdigit() else ""
    last = keyword.strip()[-1]
    tail = r"(?![.,]?\d)" if last.isdigit() else r"(?![a-z])" if last.isalpha() else ""
    return re.compile(head + body + tail, re.IGNORECASE)


def keyword_found(answer: str, keyword: str) -> bool:
    """Return True when the keyword occurs in the answer (see `_pattern`)."""
    return _pattern(keyword).search(answer) is not None


def keyword_recall(answer: str, keywords: Sequence[str]) -> float:
    """Return the share of keywords found in answer (see `keyword_found`); 0 if none."""
    if not keywords:
        return 0.0
    return sum(keyword_found(answer, k) for k in keywords) / len(keywords)


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
    cells: dict[tuple[str, str], list[Answer]] = {}
    for a in answers:
        cells.setdefault((a.system, a.question.domain), []).append(a)
        cells.setdefault((a.system, ALL), []).append(a)
    scores = []
    for (system, domain), group in cells.items():
        recall = [keyword_recall(a.text, a.question.keywords) for a in group]
        facts = [all_facts(a.text, a.question.keywords) for a in group]
        shown = [keyword_recall(a.shown, a.question.keywords) for a in group if a.shown is not None]
        cites = [c for a in group if (c := a.cites_source) is not None]
        seconds = [a.seconds for a in group if a.seconds is not None]
        scores.append(
            Score(
                system=system,
                domain=domain,
                n=len(group),
                recall=float(np.mean(recall)),
                recall_ci=bootstrap_ci(recall, seed=seed),
                all_facts=float(np.mean(facts)),
                all_facts_ci=bootstrap_ci(facts, seed=seed),
                shown_recall=float(np.mean(shown)) if shown else None,
                shown_recall_ci=bootstrap_ci(shown, seed=seed) if shown else None,
                citation_precision=float(np.mean(cites)) if cites else None,
                citation_precision_ci=bootstrap_ci(cites, seed=seed) if cites else None,
                seconds=float(np.mean(seconds)) if seconds else None,
            )
        )
    return scores


def _pct(value: float) -> str:
    return f"{100 * value:.0f}"


def _with_ci(value: float | None, ci: tuple[float, float] | None) -> str:
    if value is None or ci is None:
        return "–"
    return f"{_pct(value)} [{_pct(ci[0])}–{_pct(ci[1])}]"


def summary_table(scores: Sequence[Score], routing: float | None = None) -> str:
    """Return a markdown table of the `all` cells: recall, all-facts, shown recall and
    citation precision with 95% CIs, and seconds per answer; `routing` (share routed to
    the question's own packet) is printed under it when given."""
    rows = [s for s in scores if s.domain == ALL]
    lines = [
        "| system | keyword recall | all-facts | shown recall | citation precision | s/answer |",
        "|---|---|---|---|---|---|",
    ]
    for s in rows:
        secs = "–" if s.seconds is None else f"{s.seconds:.2f}"
        lines.append(
            f"| {s.system} | {_with_ci(s.recall, s.recall_ci)} | "
            f"{_with_ci(s.all_facts, s.all_facts_ci)} | "
            f"{_with_ci(s.shown_recall, s.shown_recall_ci)} | "
            f"{_with_ci(s.citation_precision, s.citation_precision_ci)} | {secs} |"
        )
    if routing is not None:
        lines.append(f"\nrouted to the question's own packet: {_pct(routing)}%")
    return "\n".join(lines)


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
                    "cited": None if a.cited is None else list(a.cited_titles),
                    "shown_recall": None
                    if a.shown is None
                    else keyword_recall(a.shown, a.question.keywords),
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
        source = row.get("source") or ()
        sources = (source,) if isinstance(source, str) else tuple(str(s) for s in source)
        out.append(
            Question(
                row["domain"], row["question"], tuple(keywords), str(row.get("id", "")), sources
            )
        )
    return out
