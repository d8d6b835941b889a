"""The packet's adapter as a reader: does its likelihood of a record, given a short question,
put the question's own record first, or tell a covered question from a gap?

    .venv/bin/python bench/bench_adapter_read.py --home H [--sets a,b] [--gaps a,b]
        [--rows OUT.jsonl] [--json OUT]

The adapter was trained to answer its records' questions, asked many ways, with the
record's text; so the likelihood it gives a record's text after a question might be a
reader that knows the packet's own vocabulary (the base model's reading, bench_read.py,
does not). The home is one built by `fieldkit demo` (the shipped packets, their notes and
adapters, the base model). Each question of the given sets goes to its own domain's packet
(no router); the passages are ranked as `ask` ranks them (the base model reading the first
ones, as `ask` does). For the TOP passages ranked first it records the log-probability of
each token of the passage's text after the question (the chat template, as the adapter was
trained), once under the packet's adapter and once under the base model alone. Then, for
several ways to sum those (the first token, the first 3 or 8, all, the mean, and each
minus the base model's), how often the passage it puts first among the first 2, 3 or TOP is
the question's own record (against the ranking alone), and the area under the ROC curve
between covered questions whose own record ranks first and gap questions, of the first
passage's value, of the best value among the first three, and of the lead of the best over
the second.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from bench_cover import auc_ci  # noqa: E402
from bench_route import add_rows_option, demo_rows, keep_row, pace, saved_rows, sources  # noqa: E402

TOP = 5


def _sums(adapter: list[float], base: list[float]) -> dict[str, float]:
    return {
        "first token": adapter[0],
        "first 3": sum(adapter[:3]),
        "first 8": sum(adapter[:8]),
        "sum": sum(adapter),
        "mean": float(np.mean(adapter)),
        "sum minus the base model's": sum(adapter) - sum(base),
        "mean minus the base model's": float(np.mean(adapter) - np.mean(base)),
        "first 8 minus the base model's": sum(adapter[:8]) - sum(base[:8]),
    }


def token_logprobs(engine, adapter, question: str, texts: list[str]) -> list[list[float]]:
    """Per text, the log-probability of each of its tokens after the chat-templated question,
    under `adapter` (None: the base model). It uses the engine's MLX thread and swap, which
    the product keeps private: this is a measurement, not a feature."""

    def work() -> list[list[float]]:
        import mlx.core as mx

        runtime = engine._runtime_or_load()
        engine._swap(adapter)
        tok = runtime.tokenizer
        messages = [{"role": "user", "content": question}]
        prefix = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        head = list(tok.encode(prefix, add_special_tokens=False))
        out = []
        for text in texts:
            target = list(tok.encode(text.strip(), add_special_tokens=False))
            logits = runtime.model(mx.array([head + target]))[0].astype(mx.float32)
            logits = logits[len(head) - 1 : len(head) + len(target) - 1]
            picked = mx.take_along_axis(logits, mx.array(target)[:, None], axis=-1)[:, 0]
            out.append(np.array(picked - mx.logsumexp(logits, axis=-1)).round(4).tolist())
        return out

    return engine._call(work)


def measure(home: Path, sets: list[str], out) -> list[dict]:
    from fieldkit.answering import engine_reader
    from fieldkit.services import Services

    services = Services.build(home)
    library, index, engine = services.library, services.passages, services.engine
    reader = engine_reader(engine)
    packets = {r.manifest["domain"]: r for r in library.list_packets()}
    rows = []
    for name in sets:
        started = time.perf_counter()
        questions = demo_rows(name)
        for q in questions:
            record = packets[q["domain"]]
            cover = index.coverage(record.packet_id, q["question"], TOP, reader)
            texts = [h.text for h in cover.hits]
            adapter = library.load_adapter(record)
            row = {
                "set": name,
                "gap": "expected_keywords" not in q,
                "own": [h.title in sources(q) for h in cover.hits],
                "covered": cover.covered,
                "cover": cover.score,
                "adapter": token_logprobs(engine, adapter, q["question"], texts),
                "base": token_logprobs(engine, None, q["question"], texts),
            }
            keep_row(rows, out, row)
        pace(name, len(questions), started)
    services.close()
    return rows


def summarise(rows: list[dict]) -> dict:
    covered = [r for r in rows if not r["gap"] and any(r["own"])]
    gaps = [r for r in rows if r["gap"]]
    first_own = [r for r in covered if r["own"][0]]
    result: dict = {
        "questions": len(covered),
        "gap_questions": len(gaps),
        "own_record_first_by_the_ranking": sum(r["own"][0] for r in covered),
        "cover_score_auc": auc_ci([r["cover"] for r in first_own], [r["cover"] for r in gaps]),
    }

    def values(r: dict, key: str) -> list[float]:
        return [_sums(a, b)[key] for a, b in zip(r["adapter"], r["base"], strict=True)]

    for key in _sums([0.0], [0.0]):
        cell: dict = {}
        for k in (2, 3, TOP):
            cell[f"own first of {k}"] = sum(
                r["own"][int(np.argmax(values(r, key)[:k]))] for r in covered
            )
        if gaps and first_own:

            def lead(r: dict, key: str = key) -> float:
                v = sorted(values(r, key), reverse=True)
                return v[0] - v[1]

            cell["auc, first passage"] = auc_ci(
                [values(r, key)[0] for r in first_own], [values(r, key)[0] for r in gaps]
            )
            cell["auc, best of three"] = auc_ci(
                [max(values(r, key)[:3]) for r in first_own],
                [max(values(r, key)[:3]) for r in gaps],
            )
            cell["auc, lead over the second"] = auc_ci(
                [lead(r) for r in first_own], [lead(r) for r in gaps]
            )
        result[key] = cell
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=REPO / "bench/out/home")
    parser.add_argument(
        "--sets", default="curt,hasty,dashed,gaps_curt,gaps_rushed,gaps_hurried,gaps_brief"
    )
    add_rows_option(parser)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    measured: dict = {}
    rows = saved_rows(args.rows)
    if rows is None:
        rows_out = args.rows.open("w") if args.rows else open(os.devnull, "w")  # noqa: SIM115
        started = time.perf_counter()
        with rows_out:
            rows = measure(args.home, [s for s in args.sets.split(",") if s], rows_out)
        measured = {
            "loadavg_1min": os.getloadavg()[0],
            "seconds_per_question": round((time.perf_counter() - started) / len(rows), 3),
        }
    result = summarise(rows) | measured
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
