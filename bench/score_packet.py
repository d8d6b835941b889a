"""Score one packet of a fieldkit home on held-out questions: keyword recall and all-facts.

    .venv/bin/python bench/score_packet.py --home HOME --model MODEL_DIR --packet NAME \
        --questions assets/demo/solar_pumps/heldout.jsonl [--max-tokens 80]

The same greedy batch generation and scoring as `fieldkit bench quality`, for a single
specialist (that command needs two domains, to merge them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--packet", required=True)
    parser.add_argument("--questions", type=Path, required=True)
    parser.add_argument("--max-tokens", type=int, default=80)
    args = parser.parse_args()
    from fieldkit.home import Home
    from fieldkit.store.library import Library
    from fieldkit.training.evaluate import all_facts, keyword_recall
    from fieldkit.training.train import generate_batch

    rows = [json.loads(line) for line in args.questions.read_text().splitlines() if line.strip()]
    library = Library.open(Home(args.home))
    adapter = library.load_adapter(library.get(args.packet))
    questions = [row["question"] for row in rows]
    texts = generate_batch(args.model, adapter, questions, args.max_tokens)
    recall = [keyword_recall(t, r["expected_keywords"]) for t, r in zip(texts, rows, strict=True)]
    facts = [all_facts(t, r["expected_keywords"]) for t, r in zip(texts, rows, strict=True)]
    print(
        json.dumps(
            {
                "packet": args.packet,
                "questions": len(rows),
                "keyword_recall": sum(recall) / len(rows),
                "all_facts": sum(facts) / len(rows),
                "answers": [
                    {"question": q, "answer": t} for q, t in zip(questions, texts, strict=True)
                ],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
