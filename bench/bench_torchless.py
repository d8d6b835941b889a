"""What replaced torch and scipy: the GGUF tokenizer and the MiniLM's GELU, held to both.

    .venv/bin/python bench/bench_torchless.py [--gguf FILE] [--json OUT]

Run in the dev environment (it has transformers with torch, and scipy):
- tokenizer: the embedded GGUF's (or FILE's) tokenizer built with `tokenizers` alone
  (`engine.gguf_tokenizer`) and by transformers, in that order in one process (so the
  transformers time includes its first import of torch); both loaded with transformers
  and compared on every demo question and record plus a few edge texts (ids and decoded
  text), and the files each writes once transformers saves it again;
- gelu: `router.minilm.gelu` and scipy's float32 path, 0.5 x (1 + erf(x / sqrt 2)), against
  Python's `math.erfc` in float64 on 400,001 points of [-12, 12] (largest absolute
  error; largest relative one where x < -5, where 1 + erf cancels), and the median time
  of five runs on a (64, 40, 1536) array, a batch of the encoder's inner layer.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_route import demo_texts, report  # noqa: E402

from fieldkit.engine.convert import find_default_gguf, read_gguf_weights  # noqa: E402
from fieldkit.engine.gguf_tokenizer import _write_with_transformers, write_tokenizer  # noqa: E402
from fieldkit.router.minilm import gelu  # noqa: E402

EDGES = ["", "  two  spaces\n\nnewlines\t 115 g 16.5% −20°C", "<|im_start|>user\nhi<|im_end|>"]
EDGES += ["émoji 🐔 ünïcode", "I'm sure WE'LL see 1234567 birds in 2026...\r\n"]


def tokenizer(gguf: Path) -> dict:
    from transformers import AutoTokenizer

    _, _, metadata = read_gguf_weights(gguf)
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = Path(tmp, "ours"), Path(tmp, "theirs")
        start = time.perf_counter()
        write_tokenizer(gguf, metadata, ours)
        ours_s = time.perf_counter() - start
        start = time.perf_counter()
        _write_with_transformers(gguf, theirs, "for comparison")
        theirs_s = time.perf_counter() - start
        a, b = AutoTokenizer.from_pretrained(str(ours)), AutoTokenizer.from_pretrained(str(theirs))
        texts = demo_texts() + EDGES
        ids_a, ids_b = [a.encode(t) for t in texts], [b.encode(t) for t in texts]
        a.save_pretrained(str(ours / "again")), b.save_pretrained(str(theirs / "again"))
        files = sorted(p.name for p in (ours / "again").iterdir())
        same = [
            n
            for n in files
            if (ours / "again" / n).read_bytes() == (theirs / "again" / n).read_bytes()
        ]
        return {
            "gguf": gguf.name,
            "built_here_s": round(ours_s, 2),
            "by_transformers_s": round(theirs_s, 2),
            "texts": len(texts),
            "ids_differ": sum(x != y for x, y in zip(ids_a, ids_b, strict=True)),
            "decoded_differ": sum(
                a.decode(x) != b.decode(y) for x, y in zip(ids_a, ids_b, strict=True)
            ),
            "files_written_again": files,
            "files_the_same": same,
        }


def gelu_check() -> dict:
    from scipy.special import erf

    def scipy_path(x: np.ndarray) -> np.ndarray:  # what router/minilm.py ran before
        return 0.5 * x * (1.0 + erf(x / np.float32(math.sqrt(2.0))))

    x = np.linspace(-12, 12, 400_001).astype(np.float32)
    wide = x.astype(np.float64)
    want = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in wide])
    tail = x < -5
    batch = (np.random.default_rng(0).standard_normal((64, 40, 1536)) * 2).astype(np.float32)
    out: dict = {}
    for name, fn in (("erfc_fit", gelu), ("scipy_erf", scipy_path)):
        error = np.abs(fn(x).astype(np.float64) - want)
        out[f"{name}_max_abs_error"] = float(error.max())
        out[f"{name}_tail_max_rel_error"] = float((error[tail] / np.abs(want[tail])).max())
        fn(batch)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            fn(batch)
            times.append((time.perf_counter() - start) * 1000)
        out[f"{name}_batch_ms"] = round(statistics.median(times), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    gguf = args.gguf or find_default_gguf()
    report({"tokenizer": tokenizer(gguf), "gelu": gelu_check()}, args.json)


if __name__ == "__main__":
    main()
