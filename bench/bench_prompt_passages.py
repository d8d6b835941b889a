"""How many passages to give the model: the first two, the two best last, or the first alone.

For each question, route it and search the routed packet's notes as `fieldkit ask` does,
then answer three times with the packet's adapter: the top two passages best first, the
top two best last (next to the question), and the first passage alone. Prints each
answer's keyword recall as it goes and the means at the end; writes every answer to the
JSON file. Questions the router abstains on, or whose notes have nothing on them, are
skipped (recorded with the reason).

    .venv/bin/python bench/bench_prompt_passages.py HOME MODEL QUESTIONS.jsonl OUT.json [MAX_TOKENS]

For example, the reference corpus's specialists (the home `bench_quality.py reference`
builds) on its natural questions:

    .venv/bin/python bench/bench_prompt_passages.py bench/out/quality-reference2/home \
        bench/out/home/models/smollm2-135m-instruct bench/data/reference_natural.jsonl \
        bench/out/prompt-passages-reference.json 120
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fieldkit.answering import NOTES, ground, grounded_messages  # noqa: E402
from fieldkit.router.retrieval import Hit  # noqa: E402
from fieldkit.services import Services  # noqa: E402
from fieldkit.training.evaluate import all_facts, keyword_recall  # noqa: E402

VARIANTS = ("p1p2", "p2p1", "p1")  # best first, best last, the first alone


def main() -> None:
    home, model, questions, out = sys.argv[1:5]
    max_tokens = int(sys.argv[5]) if len(sys.argv) > 5 else 120
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
        hits = [Hit(s.passage_id, s.score, s.text, s.title) for s in grounding.sources]
        prompts = {"p1p2": hits, "p2p1": hits[::-1], "p1": hits[:1]}
        keywords = row["expected_keywords"]
        result = {"q": question, "domain": row["domain"], "kw": keywords}
        result["sure"] = grounding.caution is None
        for name, shown in prompts.items():
            messages = grounded_messages(question, shown)
            text = services.engine.answer(messages, adapter, max_tokens=max_tokens, clean=True).text
            result[name] = keyword_recall(text, keywords)
            result[f"{name}_all"] = all_facts(text, keywords)
            result[f"{name}_text"] = text
        results.append(result)
        scores = {name: result[name] for name in VARIANTS}
        print(len(results), scores, f"{time.time() - started:.0f}s", flush=True)
    Path(out).write_text(json.dumps(results, indent=1))
    answered = [r for r in results if "p1" in r]
    for name in VARIANTS:
        recall = np.mean([r[name] for r in answered])
        every = np.mean([r[f"{name}_all"] for r in answered])
        print(name, recall, every)
    services.close()


if __name__ == "__main__":
    main()
