"""Smaller packets: the demo packets as fp16, int8 and 4-bit, at full rank and trimmed.

    .venv/bin/python bench/bench_compact.py [--energy 0.95] [--out bench/out/compact]
        [--ble 100000 30000] [--ble-settings int4-e95 ...] [--model DIR] [--json OUT]
        [--source HOME] [--settings fp16 int4 ...]

For each setting it compacts the four shipped demo packets (assets/packets/*.fkpkt) with
`fieldkit.store.compact` (or, with `--source HOME`, every unmerged packet of that home's
library: the reference specialists `bench_quality.py reference` trained) into a home of
its own, `OUT/<setting>/` (so `bench_quality.py demo -- --from-library OUT/<setting>`
scores exactly those packets), and reports:

- the mean relative error (Frobenius) of each module's delta A @ B against the original;
- packet bytes (the weights files) and wire bytes: every 32 KiB chunk encoded as a gossip
  session sends it (`ChunkEncoder`, zstd level 3 with the fp16 byte shuffle, raw where that
  does not shrink it), summed over the four packets;
- with `--ble RATE ...`: one full gossip session moving the four packets over the throttled
  bumble link of bench_ble.py at each rate (MTU 247), its time and its bytes on the air;
- with `--model DIR`: first-use swap (dequantise, convert, check and install the adapter on
  the resident model) and the swap after it (cached), median over the four packets swapped
  three times each as if new.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402

from fieldkit.assets import demo_packets  # noqa: E402
from fieldkit.gossip.chunks import ChunkEncoder  # noqa: E402
from fieldkit.home import Home  # noqa: E402
from fieldkit.store.compact import compact_packet  # noqa: E402
from fieldkit.store.identity import Identity  # noqa: E402
from fieldkit.store.library import Library  # noqa: E402
from fieldkit.store.packet import read_packet_file  # noqa: E402
from fieldkit.store.quantize import Compaction, ranks  # noqa: E402


def settings(energy: float) -> dict[str, Compaction | None]:
    """Return the settings by label (None: the packets as shipped)."""
    tag = f"e{round(energy * 100)}"
    return {
        "fp16": None,
        f"fp16-{tag}": Compaction(None, energy),
        "int8": Compaction(8, None),
        f"int8-{tag}": Compaction(8, energy),
        "int4": Compaction(4, None),
        f"int4-{tag}": Compaction(4, energy),
    }


def source_packets(source: Path | None) -> list[tuple[dict, bytes, bytes]]:
    """Return (manifest, signature, weights) of the packets to compact: the shipped demo
    packets, or every unmerged packet of the library at `source`."""
    if source is None:
        packets = [read_packet_file(path) for path in demo_packets()]
        return [(p.manifest, p.signature, p.weights) for p in packets]
    library = Library.open(Home(source))
    try:
        return [
            (r.manifest, r.signature, library.read_weights(r))
            for r in library.list_packets()
            if not r.merged
        ]
    finally:
        library.close()


def build_home(
    folder: Path, compaction: Compaction | None, source: Path | None = None
) -> tuple[Library, float]:
    """Make a home holding the packets (the demo packets, or those of `source`), compacted
    (named NAME-c: another device signed the originals); return it and the mean relative
    error of the modules' deltas A @ B against the originals (Frobenius norm)."""
    shutil.rmtree(folder, ignore_errors=True)
    home = Home(folder).ensure()
    library = Library.open(home, identity=Identity.load_or_create(home))
    errors: list[float] = []
    for manifest, signature, weights in source_packets(source):
        record = library.add(manifest, signature, weights, source="file")
        if compaction is not None:
            _, new = compact_packet(library, record.packet_id, compaction, name=f"{record.name}-c")
            errors += delta_errors(library.load_adapter(record), library.load_adapter(new))
            library.remove(record.packet_id)
    return library, statistics.mean(errors) if errors else 0.0


def delta_errors(before, after) -> list[float]:  # noqa: ANN001
    """Return |after - before| / |before| of each module's delta A @ B."""
    out = []
    for name in before.tensors:
        if name.endswith(".lora_a"):
            b_name = name.removesuffix("_a") + "_b"
            d0 = before.tensors[name].astype(np.float64) @ before.tensors[b_name]
            d1 = after.tensors[name].astype(np.float64) @ after.tensors[b_name]
            out.append(float(np.linalg.norm(d1 - d0) / np.linalg.norm(d0)))
    return out


def wire_bytes(library: Library) -> tuple[int, int]:
    """Return (weights bytes, gossip chunk payload bytes) over the library's packets."""
    encoder = ChunkEncoder()
    size = wire = 0
    for record in library.list_packets():
        data = library.read_weights(record)
        step = record.manifest["chunk_size"]
        size += len(data)
        wire += sum(len(encoder.encode(data[i : i + step])[1]) for i in range(0, len(data), step))
    return size, wire


def swap_times(model: Path, library: Library, rounds: int = 3) -> tuple[float, float]:
    """Return the median first-use and cached swap, ms, over the library's packets, each
    swapped `rounds` times as if new (a key of its own each time, so nothing is cached)."""
    from fieldkit.engine.engine import Engine
    from fieldkit.store.adapter import Adapter

    first, again = [], []
    with Engine(model) as engine:
        engine.load()
        engine.swap(None)
        for record in library.list_packets():
            loaded = library.load_adapter(record)
            for n in range(rounds):
                adapter = Adapter(loaded.config, loaded.tensors, key=f"{loaded.key}-{n}")
                first.append(engine.swap(adapter))
                engine.swap(None)
                again.append(engine.swap(adapter))
                engine.swap(None)
    return statistics.median(first), statistics.median(again)


async def ble_session(library_home: Path, rate: float, root: Path) -> dict:
    """One BLE gossip session moving the home's packets; bench_ble.py's packets_session."""
    from bench_ble import packets_session

    def fill(target: Library) -> list[int]:
        source = Library.open(Home(library_home))
        try:
            sizes = []
            for record in source.list_packets():
                data = source.read_weights(record)
                target.add(record.manifest, record.signature, data, source="file")
                sizes.append(record.size)
            return sizes
        finally:
            source.close()

    return await packets_session(247, rate, 0.015, root, f"r{int(rate)}", fill)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--energy", type=float, default=0.95)
    parser.add_argument("--out", type=Path, default=REPO / "bench/out/compact")
    parser.add_argument("--ble", type=float, nargs="*", default=[])
    parser.add_argument("--ble-settings", nargs="*", default=None, help="default: all")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help="a home whose unmerged packets to compact (default: the demo's)",
    )
    parser.add_argument("--settings", nargs="*", default=None, help="default: all")
    args = parser.parse_args()
    logging.getLogger("bumble").setLevel(logging.CRITICAL)
    rows = []
    for label, compaction in settings(args.energy).items():
        if args.settings is not None and label not in args.settings:
            continue
        tic = time.perf_counter()
        library, error = build_home(args.out / label, compaction, args.source)
        try:
            kept = [r for rec in library.list_packets() for r in ranks(library.load_adapter(rec))]
            size, wire = wire_bytes(library)
            row = {
                "setting": label,
                "compact_s": round(time.perf_counter() - tic, 2),
                "mean_rank": round(sum(kept) / len(kept), 2),
                "delta_error": round(error, 4),
                "packet_bytes": size,
                "wire_bytes": wire,
            }
            if args.model is not None:
                first, cached = swap_times(args.model, library)
                row |= {"first_swap_ms": round(first, 1), "cached_swap_ms": round(cached, 2)}
        finally:
            library.close()
        if args.ble_settings is None or label in args.ble_settings:
            for rate in args.ble:
                tmp = args.out / "_ble"
                shutil.rmtree(tmp, ignore_errors=True)
                result = asyncio.run(ble_session(args.out / label, rate, tmp))
                row[f"ble_{int(rate)}"] = result
                shutil.rmtree(tmp, ignore_errors=True)
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = rows[0]["wire_bytes"]
    for row in rows:
        print(
            f"{row['setting']:<10} wire {row['wire_bytes']:>10,} = {row['wire_bytes'] / base:.3f}x"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
