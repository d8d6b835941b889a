"""Packet notes: what they cost in bytes, how well retrieval finds and abstains, and what
clean decoding and grounding do to answers, on the shipped demo packets.

    .venv/bin/python bench/bench_notes.py [--model DIR] [--generate N] [--max-tokens 120]
        [--bytes]

1. bytes: each demo packet file, as shipped (its notes are its training records, each
   with the other phrasings of its question), is imported into a fresh home; its size is
   compared with the same packet file without notes, and the notes' own size (canonical
   JSON) is given. `--bytes` measures this alone.
2. retrieval: every held-out question (assets/demo/*/heldout.jsonl, whose `source` names
   its training record) is searched in its own packet's notes: is the source passage
   first, or in the top 2, and is the question covered at the default threshold? Every
   gap question (assets/demo/*/gaps.jsonl: in the domain, covered by no record) should
   not be covered. A threshold sweep shows the trade-off.
   `--score ANSWERS` only scores an answers.jsonl (a run cut short too).
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
    """Import every shipped demo packet (it carries its notes) into a fresh home; return
    the home and what the notes cost in bytes."""
    import shutil

    from click.testing import CliRunner

    from fieldkit.assets import demo_packets
    from fieldkit.cli import main
    from fieldkit.store.notes import notes_bytes
    from fieldkit.store.packet import read_packet_file

    home = OUT / "home"
    shutil.rmtree(home, ignore_errors=True)
    runner = CliRunner()
    sizes = {}
    for path in demo_packets():
        base = ["--home", str(home), "--model", str(model), "library"]
        result = runner.invoke(main, [*base, "import", str(path)])
        assert result.exit_code == 0, result.output
        packet = read_packet_file(path)
        sizes[packet.manifest["name"]] = {
            "passages": len(packet.manifest["notes"]),
            "phrasings": sum(len(n.get("asked", ())) for n in packet.manifest["notes"]),
            "notes_bytes": notes_bytes(packet.manifest["notes"]),
            "file_before": without_notes_size(packet),
            "file_after": path.stat().st_size,
        }
    return home, sizes


def without_notes_size(packet) -> int:  # noqa: ANN001 - a PacketFile
    """Return the size of the same packet file without its notes (format 1)."""
    import io

    from fieldkit.store.packet import FORMAT_VERSION, write_packet_file

    manifest = {k: v for k, v in packet.manifest.items() if k != "notes"}
    manifest["format"] = FORMAT_VERSION
    out = io.BytesIO()
    write_packet_file(out, manifest, packet.signature, packet.weights)
    return len(out.getvalue())


def retrieval(home: Path, model: Path) -> dict:
    """Rank, cover and abstain on the demo questions; return the numbers and a sweep."""
    import numpy as np

    from fieldkit.assets import demo_domains
    from fieldkit.router.retrieval import DEFAULT_MIN_COVER
    from fieldkit.services import Services

    services = Services.build(home, model)
    index = services.passages
    records = {r.domain: r for r in services.library.list_packets()}
    held, gaps, gap_scores = [], [], []
    for folder in demo_domains():
        domain = json.loads((folder / "meta.json").read_text())["domain"]
        record = records[domain]
        titles = {p.passage_id: p.title for p in index.passages(record.packet_id)}
        for row in rows(folder / "heldout.jsonl"):
            coverage = index.coverage(record.packet_id, row["question"], k=2)
            ids = [titles[h.passage_id] for h in coverage.hits]
            held.append(
                (coverage.score, ids[0] == row["source"], row["source"] in ids, coverage.covered)
            )
        gap_file = folder / "gaps.jsonl"
        for row in rows(gap_file) if gap_file.is_file() else []:
            gaps.append(index.coverage(record.packet_id, row["question"]).covered)
            gap_scores.append(index.coverage(record.packet_id, row["question"]).score)
    services.close()
    held_scores = np.array([h[0] for h in held])
    gap_scores = np.array(gap_scores)
    sweep = []  # the cover score alone (without the shared-code rule)
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
        "covered": sum(h[3] for h in held) / len(held),
        "gap_abstain": 1 - sum(gaps) / len(gaps) if gaps else None,
        "heldout_scores": [round(float(s), 3) for s in sorted(held_scores)],
        "gap_scores": [round(float(s), 3) for s in sorted(gap_scores)],
        "sweep": sweep,
    }


MODES = {  # label: answer() options; "clean" is derived from "raw" (see generate)
    "adapter, raw decoding": {"use_notes": False, "clean": False},
    "adapter + notes": {"use_notes": True, "clean": True},
    "base + notes": {"use_notes": True, "clean": True, "use_adapter": False},
}
CLEAN = "adapter, clean decoding"


def generate(home: Path, model: Path, per_domain: int, max_tokens: int) -> dict:
    """Answer the first held-out questions of each domain every way; return the scores.

    Greedy decoding makes clean decoding a pure function of the raw token stream (it only
    stops earlier and drops what it holds back), so the clean answers are the raw ones
    passed through fieldkit.engine.clean.CleanText, as tests/engine/test_clean.py checks
    against the engine.
    """
    from fieldkit.answering import answer
    from fieldkit.assets import demo_domains
    from fieldkit.engine.clean import CleanText
    from fieldkit.services import Services
    from fieldkit.training.evaluate import all_facts, bootstrap_ci, keyword_recall

    def cleaned(text: str, natural: bool) -> tuple[str, bool]:
        clean, shown = CleanText(), ""
        for piece in __import__("re").findall(r"\S+\s*|\s+", text):
            shown += clean.feed(piece)
            if clean.stopped:
                break
        return shown + clean.finish(natural and not clean.stopped), clean.repeated

    services = Services.build(home, model)
    names = {r.domain: r.name for r in services.library.list_packets()}
    questions = []
    for folder in demo_domains():
        domain = json.loads((folder / "meta.json").read_text())["domain"]
        questions += [(names[domain], r) for r in rows(folder / "heldout.jsonl")[:per_domain]]
    scores: dict = {m: {"recall": [], "facts": [], "shown": [], "repeats": 0, "tokens": 0,
                        "seconds": 0.0} for m in [*MODES, CLEAN]}  # fmt: skip
    log = (OUT / "answers.jsonl").open("w")

    def record(mode: str, text: str, keywords: list, cited: str, tokens: int, sec: float) -> None:
        s = scores[mode]
        s["recall"].append(keyword_recall(text, keywords))
        s["facts"].append(all_facts(text, keywords))
        s["shown"].append(keyword_recall(f"{text} {cited}", keywords))
        s["tokens"] += tokens
        s["seconds"] += sec

    for n, (name, row) in enumerate(questions, 1):
        keywords = row["expected_keywords"]
        for mode, options in MODES.items():
            tic = time.perf_counter()
            got = answer(services, row["question"], packet=name, max_tokens=max_tokens, **options)
            sec = time.perf_counter() - tic
            cited = " ".join(s.full_text for s in got.sources[:2])
            record(mode, got.text, keywords, cited, got.result.generation_tokens, sec)
            scores[mode]["repeats"] += got.result.finish_reason == "repeat"
            log.write(json.dumps({"mode": mode, "question": row["question"], "answer": got.text,
                                  "grounding": got.grounding, "sources": cited}) + "\n")  # fmt: skip
            if mode == "adapter, raw decoding":
                text, repeated = cleaned(got.text, got.result.finish_reason == "stop")
                record(CLEAN, text, keywords, "", 0, 0.0)
                scores[CLEAN]["repeats"] += repeated
                log.write(json.dumps({"mode": CLEAN, "question": row["question"], "answer": text})
                          + "\n")  # fmt: skip
        log.flush()
        print(f"  {n}/{len(questions)} answered", file=sys.stderr, flush=True)
    services.close()
    out = {}
    for mode, s in scores.items():
        out[mode] = {
            "n": len(s["recall"]),
            "recall": sum(s["recall"]) / len(s["recall"]),
            "recall_ci": bootstrap_ci(s["recall"]),
            "all_facts": sum(s["facts"]) / len(s["facts"]),
            "all_facts_ci": bootstrap_ci(s["facts"]),
            "shown_recall": sum(s["shown"]) / len(s["shown"]) if "notes" in mode else None,
            "stopped_on_repeat": s["repeats"],
            "seconds": s["seconds"],
        }
    return out


def markdown(report: dict) -> str:
    lines = ["| packet | passages | phrasings | notes bytes | file without | file with | growth |"]
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    if "bytes" not in report:
        lines = []
    for name, s in report.get("bytes", {}).items():
        growth = s["file_after"] / s["file_before"] - 1
        lines.append(
            f"| {name} | {s['passages']} | {s['phrasings']} | {s['notes_bytes']:,} | "
            f"{s['file_before']:,} | "
            f"{s['file_after']:,} | +{growth:.2%} |"
        )
    r = report.get("retrieval")
    lines += (
        []
        if r is None
        else [
            "",
            f"Retrieval on {r['heldout']} held-out questions: source passage first "
            f"{r['top1_source']:.0%}, in the top 2 {r['top2_source']:.0%}; covered at "
            f"{r['threshold']:.2f}: {r['covered']:.0%}. Gap questions ({r['gaps']}) said to be "
            f"not covered: {r['gap_abstain']:.0%}.",
        ]
    )
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


def score_log(path: Path) -> dict:
    """Score an answers.jsonl (also one cut short): every mode on the questions that all
    modes answered, keyword recall and all-facts with bootstrap 95% CIs."""
    from fieldkit.assets import demo_domains
    from fieldkit.training.evaluate import all_facts, bootstrap_ci, keyword_recall

    keywords = {
        r["question"]: r["expected_keywords"]
        for folder in demo_domains()
        for r in rows(folder / "heldout.jsonl")
    }
    answers: dict = {}
    cited: dict = {}
    for line in rows(path):
        answers.setdefault(line["mode"], {})[line["question"]] = line["answer"]
        if "sources" in line:
            cited.setdefault(line["mode"], {})[line["question"]] = line["sources"]
    common = set.intersection(*(set(a) for a in answers.values()))
    out = {}
    for mode, got in answers.items():
        recall = [keyword_recall(got[q], keywords[q]) for q in sorted(common)]
        facts = [all_facts(got[q], keywords[q]) for q in sorted(common)]
        shown = None
        if "notes" in mode and mode in cited:
            both = [keyword_recall(f"{got[q]} {cited[mode][q]}", keywords[q]) for q in common]
            shown = sum(both) / len(both)
        out[mode] = {
            "n": len(common),
            "recall": sum(recall) / len(recall),
            "recall_ci": bootstrap_ci(recall),
            "all_facts": sum(facts) / len(facts),
            "all_facts_ci": bootstrap_ci(facts),
            "shown_recall": shown,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--generate", type=int, default=0, metavar="N")
    parser.add_argument("--max-tokens", type=int, default=120)
    parser.add_argument("--score", type=Path, metavar="ANSWERS", help="Only score this log.")
    parser.add_argument("--bytes", action="store_true", help="Only measure what notes cost.")
    args = parser.parse_args()
    if args.score is not None:
        print(markdown({"generate": score_log(args.score)}))
        return
    model = Path(args.model or DEFAULT_MODEL)
    if not (model / "config.json").is_file():
        from fieldkit.engine.convert import install_default

        model, _ = install_default(model.parent)
    OUT.mkdir(parents=True, exist_ok=True)
    home, sizes = build_home(model)
    report: dict = {"bytes": sizes}
    if not args.bytes:
        report["retrieval"] = retrieval(home, model)
    if args.generate and not args.bytes:
        report["generate"] = generate(home, model, args.generate, args.max_tokens)
    report["load"] = os.getloadavg()
    (OUT / "report.json").write_text(json.dumps(report, indent=2))
    print(markdown(report))


if __name__ == "__main__":
    main()
