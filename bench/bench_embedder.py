"""The router's MiniLM in NumPy against the same model in torch: vectors, speed, cold start.

    .venv/bin/python bench/bench_embedder.py [--home H] [--json OUT]

- agreement: the two embedders' vectors over every question and answer of the demo sets
  and records, the out-of-domain questions, an empty text and one past 256 tokens;
- bulk: embedding all of those at once (a library's first indexing), each loaded first;
- one question: p50 of 200 one-question embeddings, three rounds each, interleaved;
- cold: a fresh process that opens the home's library (default: $FIELDKIT_HOME), routes
  one question with the chosen embedder and exits: its wall time and peak memory (median
  of three), and in a fresh process the time to import the embedder's libraries.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_route import demo_texts, embedder_code, report, run_fresh  # noqa: E402

from fieldkit.router.embedder import MiniLMEmbedder  # noqa: E402
from fieldkit.router.minilm import NumpyMiniLM  # noqa: E402

QUESTION = "fl220 display shows HI-1, what now"
EDGES = ["", "a", "tank " * 400]
COLD = """
import sys
from pathlib import Path
from fieldkit.services import Services
from fieldkit.router.embedder import MiniLMEmbedder
from fieldkit.router.minilm import NumpyMiniLM
services = Services.build({home!r})
router = services.make_router(services.library, {make})
print(router.route({question!r}).packet_id)
"""
IMPORTS = {
    "numpy": "from safetensors.numpy import load_file; from tokenizers import Tokenizer",
    "torch": "import torch; from sentence_transformers import SentenceTransformer",
}


def texts() -> list[str]:
    out = demo_texts()
    ood = REPO / "bench/data/out_of_domain.txt"
    out += [line.strip() for line in ood.read_text().splitlines() if line.strip()]
    return out + EDGES


def child(code: str) -> tuple[float, float]:
    """Run `code` in a fresh process; return its wall seconds and its peak memory in MB."""
    # VmHWM: the peak of this process's own memory (ru_maxrss would count the parent's
    # memory at the fork)
    code += (
        "\nimport re, pathlib\n"
        "print(re.search(r'VmHWM:\\s+(\\d+)', pathlib.Path('/proc/self/status').read_text())[1])\n"
    )
    wall, out = run_fresh(code)
    return wall, int(out.split()[-1]) / 1024  # kB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=os.environ.get("FIELDKIT_HOME"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    every = texts()
    embedders = {"numpy": NumpyMiniLM().load(), "torch": MiniLMEmbedder().load()}
    result: dict = {"texts": len(every)}
    vectors = {}
    for name, embedder in embedders.items():
        start = time.perf_counter()
        vectors[name] = embedder.embed(every)
        result[f"bulk_s_{name}"] = round(time.perf_counter() - start, 2)
    diff = np.abs(vectors["numpy"] - vectors["torch"])
    result["max_abs_diff"] = float(diff.max())
    result["mean_row_max_diff"] = float(diff.max(axis=1).mean())
    result["min_cosine"] = float((vectors["numpy"] * vectors["torch"]).sum(axis=1).min())
    questions = [q for q in every if 3 < len(q) < 200][:200]
    rounds: dict[str, list[float]] = {name: [] for name in embedders}
    for _ in range(3):
        for name, embedder in embedders.items():
            times = []
            for q in questions:
                start = time.perf_counter()
                embedder.embed([q])
                times.append((time.perf_counter() - start) * 1000)
            rounds[name].append(round(statistics.median(times), 2))
    result["one_question_p50_ms"] = rounds
    if args.home:  # cold starts are measured in the processes of their own, one at a time
        for name, embedder in embedders.items():
            code = COLD.format(home=args.home, make=embedder_code(embedder), question=QUESTION)
            runs = [child(code) for _ in range(3)]
            result[f"cold_route_s_{name}"] = round(statistics.median(w for w, _ in runs), 2)
            result[f"cold_route_peak_mb_{name}"] = round(max(m for _, m in runs))
            imports = [child(IMPORTS[name])[0] for _ in range(3)]
            result[f"import_s_{name}"] = round(statistics.median(imports), 2)
    report(result, args.json)


if __name__ == "__main__":
    main()
