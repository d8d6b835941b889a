"""Packet notes: what they cost in bytes, how well retrieval finds and abstains, and what
clean decoding and grounding do to answers, on the shipped demo packets.

    .venv/bin/python bench/bench_notes.py [--model DIR] [--generate N] [--max-tokens 120]

1. bytes: each demo packet file is imported with `library import FILE --notes
   assets/demo/<domain>/train.jsonl` into a fresh home and exported again; the sizes of
   both files and of the notes (canonical JSON) are compared.
2. retrieval: every held-out question (assets/demo/*/heldout.jsonl, whose `source` names
   its training record) is searched in its own packet's notes: is the source passage
   first, or in the top 2, and is the question covered at the default threshold? Every
   gap question (assets/demo/*/gaps.jsonl: in the domain, covered by no record) should
   not be covered. A threshold sweep shows the trade-off.
3. with --generate N: the first N held-out questions of each domain are answered by their
   own packet four ways (adapter raw decoding as before; adapter clean; adapter + notes;
   base + notes), keyword recall and all-facts with bootstrap 95% CIs; for answers with
   notes also `shown_recall` (the answer plus the passages it cites).

Writes bench/out/notes/report.json and prints markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEFAULT_MODEL = REPO / "bench/out/models/smollm2-135m-instruct"
OUT = REPO / "bench/out/notes"


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def build_home(model: Path) -> tuple[Path, dict]:
    """Import every demo packet with its notes into a fresh home; return it and byte costs."""
    import shutil

    from click.testing import CliRunner

    from fieldkit.assets import demo_domains, demo_packets
    from fieldkit.cli import main
    from fieldkit.store.notes import notes_bytes
    from fieldkit.store.packet import read_packet_file

    home = OUT / "home"
    shutil.rmtree(home, ignore_errors=True)
    runner = CliRunner()
    files = {read_packet_file(p).manifest["domain"]: p for p in demo_packets()}
    sizes = {}
    for folder in demo_domains():
        meta = json.loads((folder / "meta.json").read_text())
        original = files[meta["domain"]]
        base = ["--home", str(home), "--model", str(model), "library"]
        result = runner.invoke(
            main, [*base, "import", str(original), "--notes", str(folder / "train.jsonl")]
        )
        assert result.exit_code == 0, result.output
        exported = OUT / f"{meta['name']}.fkpkt"
        result = runner.invoke(main, [*base, "export", meta["name"], "-o", str(exported)])
        assert result.exit_code == 0, result.output
        before, after = read_packet_file(original), read_packet_file(exported)
        assert before.weights == after.weights  # the same weights, only signed again
        sizes[meta["name"]] = {
            "passages": len(after.manifest["notes"]),
            "notes_bytes": notes_bytes(after.manifest["notes"]),
            "file_before": original.stat().st_size,
            "file_after": exported.stat().st_size,
        }
    return home, sizes


def retrieval(home: Path, model: Path) -> dict:
    """Rank, cover and abstain on the demo questions; return the numbers and a sweep."""
    import numpy as np

    from fieldkit.assets import demo_domains
    from fieldkit.router.retrieval import DEFAULT_MIN_COVER
    from fieldkit.services import Services

    services = Services.build(home, model)
    index = services.passages
    records = {r.domain: r for r in services.library.list_packets()}
    held, gaps = [], []
    for folder in demo_domains():
        domain = json.loads((folder / "meta.json").read_text())["domain"]
        record = records[domain]
        titles = {p.passage_id: p.title for p in index.passages(record.packet_id)}
        for row in rows(folder / "heldout.jsonl"):
            coverage = index.coverage(record.packet_id, row["question"], k=2)
            ids = [titles[h.passage_id] for h in coverage.hits]
            held.append((coverage.score, ids[0] == row["source"], row["source"] in ids))
        gap_file = folder / "gaps.jsonl"
        for row in rows(gap_file) if gap_file.is_file() else []:
            gaps.append(index.coverage(record.packet_id, row["question"]).score)
    services.close()
    held_scores = np.array([h[0] for h in held])
    gap_scores = np.array(gaps)
    sweep = []
    for t in np.arange(0.6, 1.01, 0.025):
        covered = float((held_scores >= t).mean())
        abstain = float((gap_scores < t).mean()) if len(gap_scores) else 0.0
        sweep.append({"threshold": round(float(t), 3), "covered": covered, "gap_abstain": abstain})
    return {
        "heldout": len(held),
        "gaps": len(gaps),
        "top1_source": sum(h[1] for h in held) / len(held),
        "top2_source": sum(h[2] for h in held) / len(held),
        "threshold": DEFAULT_MIN_COVER,
        "covered": float((held_scores >= DEFAULT_MIN_COVER).mean()),
        "gap_abstain": float((gap_scores < DEFAULT_MIN_COVER).mean()) if len(gaps) else None,
        "heldout_scores": [round(float(s), 3) for s in sorted(held_scores)],
        "gap_scores": [round(float(s), 3) for s in sorted(gap_scores)],
        "sweep": sweep,
    }


MODES = {
    "adapter, raw decoding": {"use_notes": False, "clean": False},
    "adapter, clean decoding": {"use_notes": False, "clean": True},
    "adapter + notes": {"use_notes": True, "clean": True},
    "base + notes": {"use_notes": True, "clean": True, "use_adapter": False},
}


def generate(home: Path, model: Path, per_domain: int, max_tokens: int) -> dict:
    """Answer the first held-out questions of each domain every way; return the scores."""
    from fieldkit.answering import answer
    from fieldkit.assets import demo_domains
    from fieldkit.services import Services
    from fieldkit.training.evaluate import all_facts, bootstrap_ci, keyword_recall

    services = Services.build(home, model)
    names = {r.domain: r.name for r in services.library.list_packets()}
    questions = []
    for folder in demo_domains():
        domain = json.loads((folder / "meta.json").read_text())["domain"]
        questions += [(names[domain], r) for r in rows(folder / "heldout.jsonl")[:per_domain]]
    out: dict = {}
    answers: list = []
    for mode, options in MODES.items():
        recall, facts, shown, repeats, tokens = [], [], [], 0, 0
        tic = time.perf_counter()
        for name, row in questions:
            got = answer(services, row["question"], packet=name, max_tokens=max_tokens, **options)
            keywords = row["expected_keywords"]
            recall.append(keyword_recall(got.text, keywords))
            facts.append(all_facts(got.text, keywords))
            cited = " ".join(s.full_text for s in got.sources[:2])
            shown.append(keyword_recall(f"{got.text} {cited}", keywords))
            repeats += got.result.finish_reason == "repeat"
            tokens += got.result.generation_tokens
            answers.append({"mode": mode, "question": row["question"], "answer": got.text})
        out[mode] = {
            "n": len(questions),
            "recall": sum(recall) / len(recall),
            "recall_ci": bootstrap_ci(recall),
            "all_facts": sum(facts) / len(facts),
            "all_facts_ci": bootstrap_ci(facts),
            "shown_recall": sum(shown) / len(shown) if options.get("use_notes") else None,
            "stopped_on_repeat": repeats,
            "mean_tokens": tokens / len(questions),
            "seconds": time.perf_counter() - tic,
        }
        print(f"  {mode}: recall {out[mode]['recall']:.1%}", file=sys.stderr, flush=True)
    services.close()
    (OUT / "answers.jsonl").write_text("\n".join(json.dumps(a) for a in answers) + "\n")
    return out


def markdown(report: dict) -> str:
    lines = ["| packet | passages | notes bytes | file before | file after | growth |"]
    lines.append("|---|---:|---:|---:|---:|---:|")
    for name, s in report["bytes"].items():
        growth = s["file_after"] / s["file_before"] - 1
        lines.append(
            f"| {name} | {s['passages']} | {s['notes_bytes']:,} | {s['file_before']:,} | "
            f"{s['file_after']:,} | +{growth:.2%} |"
        )
    r = report["retrieval"]
    lines += [
        "",
        f"Retrieval on {r['heldout']} held-out questions: source passage first "
        f"{r['top1_source']:.0%}, in the top 2 {r['top2_source']:.0%}; covered at "
        f"{r['threshold']:.2f}: {r['covered']:.0%}. Gap questions ({r['gaps']}) said to be "
        f"not covered: {r['gap_abstain']:.0%}.",
    ]
    if "generate" in report:
        lines += ["", "| answers | recall [95% CI] | all facts [95% CI] | shown recall |"]
        lines.append("|---|---|---|---|")
        for mode, g in report["generate"].items():
            shown = "-" if g["shown_recall"] is None else f"{g['shown_recall']:.0%}"
            lines.append(
                f"| {mode} | {g['recall']:.0%} [{g['recall_ci'][0]:.0%}-{g['recall_ci'][1]:.0%}]"
                f" | {g['all_facts']:.0%} [{g['all_facts_ci'][0]:.0%}-{g['all_facts_ci'][1]:.0%}]"
                f" | {shown} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--generate", type=int, default=0, metavar="N")
    parser.add_argument("--max-tokens", type=int, default=120)
    args = parser.parse_args()
    model = Path(args.model or DEFAULT_MODEL)
    if not (model / "config.json").is_file():
        from fieldkit.engine.convert import install_default

        model, _ = install_default(model.parent)
    OUT.mkdir(parents=True, exist_ok=True)
    home, sizes = build_home(model)
    report: dict = {"bytes": sizes, "retrieval": retrieval(home, model)}
    if args.generate:
        report["generate"] = generate(home, model, args.generate, args.max_tokens)
    report["load"] = os.getloadavg()
    (OUT / "report.json").write_text(json.dumps(report, indent=2))
    print(markdown(report))


if __name__ == "__main__":
    main()
