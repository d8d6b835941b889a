"""How many passages to give the model: the first two, the two best last, or the first alone.

For each question, route it and search the routed packet's notes as `fieldkit ask` does,
then answer three times with the packet's adapter: the top two passages best first, the
top two best last (next to the question), and the first passage alone. Prints each
answer's keyword recall as it goes, then the summary; writes every answer and both
passages to the JSON file. Questions the router abstains on, or whose notes have nothing
on them, are skipped (recorded with the reason).

The summary, per prompt: mean keyword recall with a bootstrap 95% CI, all-facts; on how
many questions the first passage alone did better or worse than the two best first; and
of the answers to the two best first that missed a keyword, how many copied the second
passage (shared at least 0.2 more of its words than of the first's).

    .venv/bin/python bench/bench_prompt_passages.py HOME MODEL QUESTIONS.jsonl OUT.json [MAX_TOKENS]
    .venv/bin/python bench/bench_prompt_passages.py --summary OUT.json

For example, the reference corpus's specialists (the home `bench_quality.py reference`
builds) on its natural questions:

    .venv/bin/python bench/bench_prompt_passages.py bench/out/quality-reference2/home \
        bench/out/home/models/smollm2-135m-instruct bench/data/reference_natural.jsonl \
        bench/out/prompt-passages-reference.json 120
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fieldkit.answering import ground  # noqa: E402
from fieldkit.answers import NOTES, grounded_messages  # noqa: E402
from fieldkit.services import Services  # noqa: E402
from fieldkit.training.evaluate import all_facts, bootstrap_ci, keyword_recall  # noqa: E402

VARIANTS = ("p1p2", "p2p1", "p1")  # best first, best last, the first alone
COPIED = 0.2  # an answer holding this much more of the second passage's words copied it
_WORD = re.compile(r"[a-z0-9.%]+")


def answer_all(home: str, model: str, questions: str, max_tokens: int) -> list[dict]:
    services = Services.build(Path(home), Path(model))
    rows = [json.loads(line) for line in Path(questions).read_text().splitlines() if line]
    results: list[dict] = []
    started = time.time()
    for row in rows:
        question = row["question"]
        record, _ = services.pick_packet(question)
        grounding = ground(question, record, services.passages)
        if record is None or grounding.grounding != NOTES:
            results.append({"q": question, "skip": grounding.grounding})
            continue
        adapter = services.checked_adapter(record)
        found = grounding.sources
        prompts = {"p1p2": found, "p2p1": found[::-1], "p1": found[:1]}
        keywords = row["expected_keywords"]
        result = {"q": question, "domain": row["domain"], "kw": keywords}
        result["sure"] = grounding.caution is None
        result["passages"] = [s.full_text for s in found]
        for name, shown in prompts.items():
            messages = grounded_messages(question, shown)
            text = services.engine.answer(messages, adapter, max_tokens=max_tokens, clean=True).text
            result[name] = keyword_recall(text, keywords)
            result[f"{name}_all"] = all_facts(text, keywords)
            result[f"{name}_text"] = text
        results.append(result)
        scores = {name: result[name] for name in VARIANTS}
        print(len(results), scores, f"{time.time() - started:.0f}s", flush=True)
    services.close()
    return results


def _share(answer: str, passage: str) -> float:
    words = set(_WORD.findall(passage.lower()))
    return len(set(_WORD.findall(answer.lower())) & words) / max(len(words), 1)


def summary(results: list[dict]) -> dict:
    answered = [r for r in results if "p1" in r]
    out: dict = {"questions": len(results), "answered": len(answered)}
    for name in VARIANTS:
        recalls = [r[name] for r in answered]
        out[name] = {
            "recall": float(np.mean(recalls)),
            "recall_ci": bootstrap_ci(recalls),
            "all_facts": float(np.mean([r[f"{name}_all"] for r in answered])),
        }
    out["p1_better"] = sum(r["p1"] > r["p1p2"] for r in answered)
    out["p1_worse"] = sum(r["p1"] < r["p1p2"] for r in answered)
    missed = [r for r in answered if r["p1p2"] < 1 and len(r.get("passages", [])) > 1]
    out["p1p2_missed"] = len(missed)
    out["p1p2_missed_copied_second"] = sum(
        _share(r["p1p2_text"], r["passages"][1])
        >= _share(r["p1p2_text"], r["passages"][0]) + COPIED
        for r in missed
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("home", nargs="?", help="the home whose library answers")
    parser.add_argument("model", nargs="?", help="the base model folder")
    parser.add_argument("questions", nargs="?", help="a jsonl of questions with keywords")
    parser.add_argument("out", nargs="?", type=Path, help="where the answers are written")
    parser.add_argument("max_tokens", nargs="?", type=int, default=120)
    parser.add_argument("--summary", type=Path, metavar="OUT", help="only summarise OUT.json")
    args = parser.parse_args()
    if args.summary is not None:
        results = json.loads(args.summary.read_text())
    elif args.out is None:
        parser.error("give HOME MODEL QUESTIONS OUT (or --summary OUT)")
    else:
        results = answer_all(args.home, args.model, args.questions, args.max_tokens)
        args.out.write_text(json.dumps(results, indent=1))
    print(json.dumps(summary(results), indent=1))


if __name__ == "__main__":
    main()
