"""Gossip benchmark: loopback goodput, protocol overhead, bytes re-sent after a cut, wire size.

    .venv/bin/python bench/bench_sync.py [--reps 5] [--ranks 8,32] [--json OUT]

The packet is a LoRA adapter with SmolLM2-135M's shapes (30 layers, hidden 576, kv 192,
mlp 1536; rank 8 on all 7 projections; fp16, 4.9 MB), drawn like a freshly trained one:
lora_a uniform in +-1/sqrt(in) (mlx-lm's init), lora_b normal(0, 0.002). No model is loaded.

1. Goodput: one real session over TCP on 127.0.0.1 (listener and client in this process,
   the receiver verifies and stores the packet), against a raw socket copy of the same
   weights bytes over the same loopback on the same event loop. Medians of --reps, with the
   session split into phases: until the last chunk is verified and in the part file
   (`transfer`), and from the receiver's PacketStart to then (`stream`); and the time of
   Library.add alone for the same packet (what ends every transfer). Then the same
   comparison over an in-memory link limited to 4 MB/s (a slow radio link).
   Then as two laptops run it: sessions to `fieldkit sync --listen` in another process (one
   listener, warmed up by a first session that is not timed), against a raw copy to another
   process, for packets of each rank in --ranks (rank 8: 4.9 MB, rank 32: 19.6 MB); and
   against a raw copy whose receiver also writes the bytes to a file and fsyncs it before
   answering (what storing them durably costs without any protocol).
   And the receiver's floor: hashing every chunk, hashing the whole file, writing the
   chunks and the fsync, each timed alone on the packet's bytes.
2. Protocol overhead: every byte both sides sent in a session with compression off, over the
   packet size.
3. A cut at 50% of the sender's bytes on the in-memory link, then a second session: chunks
   that had fully arrived and were sent again, and the extra wire bytes against a clean run.
4. Bytes of the packet's chunk frames with compression on (as a slow link carries them; on
   loopback the sender sends raw, compression does not pay there) against the same adapter
   as an fp32 PEFT safetensors file, and the effect of the fp16 byte shuffle.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from safetensors.numpy import save as save_safetensors  # noqa: E402

from fieldkit.gossip.chunks import ChunkEncoder  # noqa: E402
from fieldkit.gossip.framing import FrameDecoder, encode_frame  # noqa: E402
from fieldkit.gossip.messages import Chunk  # noqa: E402
from fieldkit.gossip.parts import held_chunks  # noqa: E402
from fieldkit.gossip.session import run_session  # noqa: E402
from fieldkit.gossip.summary import ProgressUpdate, SyncOptions, SyncSummary  # noqa: E402
from fieldkit.gossip.sync import start_listener, sync_with  # noqa: E402
from fieldkit.services import Services  # noqa: E402
from fieldkit.store.adapter import ALL_KEYS, Adapter, AdapterConfig  # noqa: E402
from fieldkit.store.library import PacketRecord  # noqa: E402
from fieldkit.testing.memory_link import Faults, memory_pair  # noqa: E402

BASE = "b" * 64
HIDDEN, KV, MLP, LAYERS, RANK = 576, 192, 1536, 30, 8
SHAPES = {
    "self_attn.q_proj": (HIDDEN, HIDDEN),
    "self_attn.k_proj": (HIDDEN, KV),
    "self_attn.v_proj": (HIDDEN, KV),
    "self_attn.o_proj": (HIDDEN, HIDDEN),
    "mlp.gate_proj": (HIDDEN, MLP),
    "mlp.up_proj": (HIDDEN, MLP),
    "mlp.down_proj": (MLP, HIDDEN),
}


def smollm_adapter(seed: int = 0, rank: int = RANK) -> Adapter:
    rng = np.random.default_rng(seed)
    config = AdapterConfig(rank=rank, scale=2.0, dropout=0.0, num_layers=LAYERS, keys=ALL_KEYS)
    tensors = {}
    for layer in range(LAYERS):
        for key, (d_in, d_out) in SHAPES.items():
            bound = 1 / np.sqrt(d_in)
            name = f"model.layers.{layer}.{key}"
            tensors[f"{name}.lora_a"] = rng.uniform(-bound, bound, (d_in, rank)).astype(np.float16)
            tensors[f"{name}.lora_b"] = rng.normal(0, 0.002, (rank, d_out)).astype(np.float16)
    return Adapter(config=config, tensors=tensors)


def peft_fp32_size(adapter: Adapter) -> int:
    """Size of the same adapter as a PEFT adapter_model.safetensors in fp32."""
    tensors = {}
    for name, array in adapter.tensors.items():
        stem, kind = name.rsplit(".", 1)
        peft = "lora_A" if kind == "lora_a" else "lora_B"
        tensors[f"base_model.model.{stem}.{peft}.weight"] = array.astype(np.float32).T.copy()
    return len(save_safetensors(tensors))


def add_packet(services: Services, adapter: Adapter, name: str) -> PacketRecord:
    return services.library.add_local(
        adapter,
        name=name,
        domain="irrigation",
        description="Synthetic adapter with SmolLM2-135M shapes.",
        exemplars=[f"Question {i} about irrigation?" for i in range(12)],
        base_model_id="smollm2-135m-instruct",
        base_fingerprint=BASE,
    )


class Devices:
    """A sender holding the packet and a fresh receiver that trusts it."""

    def __init__(self, root: Path, adapter: Adapter, label: str) -> None:
        self.sender = Services.build(root / f"{label}-sender")
        self.receiver = Services.build(root / f"{label}-receiver")
        self.record: PacketRecord = add_packet(self.sender, adapter, "irrigation")
        self.receiver.library.set_trust(self.sender.identity.device_id, "trusted")

    def close(self) -> None:
        self.sender.close()
        self.receiver.close()


async def tcp_session(devices: Devices, options: SyncOptions) -> tuple[float, dict, SyncSummary]:
    """Run one session over loopback; return (seconds until the packet is in the receiver's
    library, the phases in seconds, summary). Phases: `transfer` until the last chunk was
    verified and written to the part file, `stream` from the receiver's PacketStart to then."""
    size = devices.record.size
    marks: dict[str, float] = {}

    def progress(update: ProgressUpdate) -> None:
        if update.direction == "received":
            marks.setdefault("packet_start", time.perf_counter())
            if update.done == size:
                marks.setdefault("last_chunk", time.perf_counter())

    listener = await start_listener(
        devices.receiver, "127.0.0.1", 0, options, once=True, progress=progress
    )
    start = time.perf_counter()
    summary = await sync_with("127.0.0.1", listener.port, devices.sender, options)
    await listener.wait()
    elapsed = time.perf_counter() - start
    assert summary.ok, summary.error
    assert devices.receiver.library.has(devices.record.packet_id)
    phases = {
        "transfer": marks["last_chunk"] - start,
        "stream": marks["last_chunk"] - marks["packet_start"],
    }
    return elapsed, phases, summary


def library_add_s(root: Path, devices: Devices, label: str) -> float:
    """Time Library.add of the packet's bytes into a fresh library (what ends every transfer)."""
    record = devices.record
    weights = devices.sender.library.read_weights(record)
    fresh = Services.build(root / label)
    start = time.perf_counter()
    fresh.library.add(record.manifest, record.signature, weights, source="bench")
    elapsed = time.perf_counter() - start
    fresh.close()
    return elapsed


def encoded_size(weights: bytes, chunk_size: int, shuffle: bool) -> int:
    """Bytes of the chunk frames with compression always on (what a slow link carries)."""
    encoder = ChunkEncoder(shuffle=shuffle)
    total = 0
    for index, i in enumerate(range(0, len(weights), chunk_size)):
        codec, payload = encoder.encode(weights[i : i + chunk_size])
        total += len(encode_frame([Chunk.code, "0" * 64, index, codec, payload]))
    return total


async def raw_copy(data: bytes) -> float:
    """Time one plain TCP copy of `data` over loopback (the receiver keeps every byte)."""
    done = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = bytearray()
        while chunk := await reader.read(256 * 1024):
            got += chunk
        writer.close()
        done.set_result(len(got))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    start = time.perf_counter()
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    writer.close()
    assert await done == len(data)
    elapsed = time.perf_counter() - start
    server.close()
    return elapsed


RAW_RECEIVER = """
import os, socket, sys
server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
conn, _ = server.accept()
got = bytearray()
while chunk := conn.recv(256 * 1024):
    got += chunk
if len(sys.argv) > 1:  # store the bytes durably before answering
    with open(sys.argv[1], "wb") as f:
        f.write(got)
        f.flush()
        os.fsync(f.fileno())
conn.sendall(len(got).to_bytes(8, "big"))
conn.close()
"""


def start_process(args: list[str], first_line_on: str = "stderr") -> tuple[subprocess.Popen, str]:
    """Start a helper process; return it and the first line it prints on `first_line_on`."""
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )  # fmt: skip
    stream = proc.stdout if first_line_on == "stdout" else proc.stderr
    assert stream is not None
    return proc, stream.readline()


async def raw_copy_to_process(data: bytes, store_to: Path | None = None) -> float:
    """Time a plain TCP copy of `data` to another process that keeps every byte and answers
    with the count once the sender closed its side (`store_to`: after writing them to that
    file and fsyncing it)."""
    extra = [str(store_to)] if store_to is not None else []
    proc, line = start_process([sys.executable, "-c", RAW_RECEIVER, *extra], "stdout")
    port = int(line)
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    writer.write_eof()
    count = int.from_bytes(await reader.readexactly(8), "big")
    elapsed = time.perf_counter() - start
    writer.close()
    proc.wait(timeout=10)
    assert count == len(data)
    return elapsed


async def sessions_to_process(root: Path, reps: int, rank: int = RANK) -> list[float]:
    """Time sessions from this process to one long-running `fieldkit sync --listen` in
    another, each until the receiver has stored the packet (its Bye comes after that).
    Every session has its own sender and packet (same shapes, other seeds); the first one
    warms the listener up (imports, caches) and is not timed."""
    receiver = Services.build(root / f"proc-{rank}-receiver")
    senders = []
    for i in range(reps + 1):
        sender = Services.build(root / f"proc-{rank}-sender-{i}")
        add_packet(sender, smollm_adapter(seed=100 + i, rank=rank), f"irrigation-{i}")
        receiver.library.set_trust(sender.identity.device_id, "trusted")
        senders.append(sender)
    home = receiver.home.root
    receiver.close()
    proc, line = start_process(
        [sys.executable, "-c", "from fieldkit.cli import run; run()", "--home", str(home),
         "sync", "--listen", "--port", "0", "--json"]
    )  # fmt: skip
    assert "Listening on" in line, line
    port = int(line.split(":")[1].split()[0])
    times = []
    try:
        for i, sender in enumerate(senders):
            start = time.perf_counter()
            summary = await sync_with("127.0.0.1", port, sender, SyncOptions())
            elapsed = time.perf_counter() - start
            assert summary.ok, summary.error
            (sent,) = [p for p in summary.packets if p.direction == "sent"]
            assert sent.status == "ok", sent.reason
            if i:
                times.append(elapsed)
            sender.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    check = Services.build(home)
    assert len(check.library.list_packets()) == reps + 1
    check.close()
    return times


def receiver_floor(root: Path, data: bytes, chunk_size: int, reps: int) -> dict:
    """Time the work no receiver can skip, each alone (medians of `reps`): hashing every
    chunk against the manifest, hashing the whole file against the signature, writing the
    chunks to a part file, and the fsync that makes the packet durable."""
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]
    times: dict[str, list[float]] = {"chunk_hashes": [], "file_hash": [], "write": [], "fsync": []}
    for rep in range(reps):
        start = time.perf_counter()
        for chunk in chunks:
            hashlib.sha256(chunk).hexdigest()
        times["chunk_hashes"].append(time.perf_counter() - start)
        start = time.perf_counter()
        hashlib.sha256(data).hexdigest()
        times["file_hash"].append(time.perf_counter() - start)
        path = root / f"floor-{rep}.part"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            start = time.perf_counter()
            for index, chunk in enumerate(chunks):
                os.pwrite(fd, chunk, index * chunk_size)
            times["write"].append(time.perf_counter() - start)
            start = time.perf_counter()
            os.fsync(fd)
            times["fsync"].append(time.perf_counter() - start)
        finally:
            os.close(fd)
            path.unlink()
    result = {f"{name}_s": median(values) for name, values in times.items()}
    result["sum_s"] = sum(result.values())
    return result


def packet_chunks(delivered: bytes, pid: str) -> tuple[set[int], int]:
    frames = FrameDecoder()
    frames.feed(delivered)
    indices = set()
    while (frame := frames.next_message()) is not None:
        if frame[0][0] == Chunk.code and frame[0][1] == pid:
            indices.add(frame[0][2])
    return indices, frames.buffered


async def slow_link(root: Path, adapter: Adapter, weights: bytes, rate: float) -> dict:
    """A session and a plain copy of the weights over the same rate-limited in-memory link."""
    devices = Devices(root, adapter, f"slow-{rate:g}")
    start = time.perf_counter()
    (sent, _), _ = await memory_session(devices, Faults(rate=rate))
    session_s = time.perf_counter() - start
    assert sent.ok, sent.error
    (report,) = [p for p in sent.packets if p.direction == "sent"]
    devices.close()
    a, b = memory_pair(Faults(rate=rate))

    async def drain() -> int:
        got = 0
        while data := await b.receive():
            got += len(data)
        return got

    start = time.perf_counter()
    reader = asyncio.create_task(drain())
    for i in range(0, len(weights), 32 * 1024):
        await a.send(weights[i : i + 32 * 1024])
    await a.close()
    assert await reader == len(weights)
    copy_s = time.perf_counter() - start
    return {
        "link_bytes_per_s": rate,
        "session_s": session_s,
        "raw_copy_s": copy_s,
        "goodput_vs_raw_copy": copy_s / session_s,
        "packet_wire_bytes": report.wire_bytes,
    }


async def memory_session(devices: Devices, faults: Faults | None = None):
    a, b = memory_pair(faults)
    opts = SyncOptions(idle_timeout=5)
    sender, receiver = devices.sender, devices.receiver
    summaries = await asyncio.gather(
        run_session(a, sender.identity, sender.library, opts),
        run_session(b, receiver.identity, receiver.library, opts),
    )
    return summaries, a


async def cut_at_half(root: Path, adapter: Adapter) -> dict:
    clean = Devices(root, adapter, "clean")
    _, link = await memory_session(clean)
    clean_bytes = len(link.delivered)
    clean.close()
    cut = Devices(root, adapter, "cut")
    pid = cut.record.packet_id
    (_, first), link1 = await memory_session(cut, Faults(cut_after=clean_bytes // 2))
    arrived, partial = packet_chunks(link1.delivered, pid)
    held, _ = held_chunks(cut.receiver.library, pid)
    (_, second), link2 = await memory_session(cut)
    resent, _ = packet_chunks(link2.delivered, pid)
    assert second.ok
    assert cut.receiver.library.has(pid)
    chunk_size = cut.record.manifest["chunk_size"]
    result = {
        "chunk_size": chunk_size,
        "chunks": len(cut.record.manifest["chunk_hashes"]),
        "chunks_arrived_before_cut": len(arrived),
        "chunks_kept": len(held),
        "chunks_sent_again_that_had_arrived": len(resent & arrived),
        "bytes_of_the_chunk_frame_cut_in_flight": partial,
        "resumed_from": second.packets[0].resumed_from,
        "extra_wire_bytes_vs_clean_run": len(link1.delivered) + len(link2.delivered) - clean_bytes,
        "first_error": first.error,
    }
    cut.close()
    return result


async def main(reps: int, ranks: list[int]) -> dict:
    adapter = smollm_adapter()
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        probe = Devices(root, adapter, "probe")
        weights = probe.sender.library.read_weights(probe.record)
        size = len(weights)
        probe.close()
        results["packet_bytes"] = size
        results["chunk_size"] = probe.record.manifest["chunk_size"]

        for label, options in (
            ("zstd+shuffle", SyncOptions()),
            ("zstd", SyncOptions(shuffle=False)),
            ("raw", SyncOptions(compression_level=0)),
        ):
            times, transfers, streams, adds, summary = [], [], [], [], None
            for rep in range(reps):
                devices = Devices(root, adapter, f"{label}-{rep}")
                elapsed, phases, summary = await tcp_session(devices, options)
                times.append(elapsed)
                transfers.append(phases["transfer"])
                streams.append(phases["stream"])
                if label == "zstd+shuffle":
                    adds.append(library_add_s(root, devices, f"add-{rep}"))
                devices.close()
            (sent,) = [p for p in summary.packets if p.direction == "sent"]
            results[f"session_{label}"] = {
                "median_s": median(times),
                "best_s": min(times),
                "goodput_MBps": size / median(times) / 1e6,
                "transfer_median_s": median(transfers),
                "stream_median_s": median(streams),
                "packet_wire_bytes": sent.wire_bytes,
                "session_bytes_both_ways": summary.bytes_sent + summary.bytes_received,
            }
            if adds:
                results["library_add_median_s"] = median(adds)
        raw_times = [await raw_copy(weights) for _ in range(reps)]
        raw_s = median(raw_times)
        results["raw_copy"] = {
            "median_s": raw_s,
            "best_s": min(raw_times),
            "MBps": size / raw_s / 1e6,
        }
        for label in ("zstd+shuffle", "raw"):
            entry = results[f"session_{label}"]
            entry["goodput_vs_raw_copy"] = raw_s / entry["median_s"]
            entry["transfer_vs_raw_copy"] = raw_s / entry["transfer_median_s"]
            entry["stream_vs_raw_copy"] = raw_s / entry["stream_median_s"]
        results["receiver_floor"] = receiver_floor(root, weights, results["chunk_size"], reps)
        results["two_processes"] = []
        for rank in ranks:  # the packet size sweep: fixed costs against per-byte costs
            probe = Devices(root, smollm_adapter(rank=rank), f"probe-{rank}")
            data = probe.sender.library.read_weights(probe.record)
            probe.close()
            two = await sessions_to_process(root, reps, rank)
            raw_two = [await raw_copy_to_process(data) for _ in range(reps)]
            stored = [
                await raw_copy_to_process(data, root / f"copy-{rank}-{i}.bin") for i in range(reps)
            ]
            results["two_processes"].append(
                {
                    "rank": rank,
                    "packet_bytes": len(data),
                    "session_median_s": median(two),
                    "raw_copy_median_s": median(raw_two),
                    "goodput_MBps": len(data) / median(two) / 1e6,
                    "goodput_vs_raw_copy": median(raw_two) / median(two),
                    "raw_copy_stored_median_s": median(stored),
                    "goodput_vs_raw_copy_stored": median(stored) / median(two),
                }
            )
        uncompressed = results["session_raw"]
        results["protocol_overhead"] = (uncompressed["session_bytes_both_ways"] - size) / size
        results["cut_at_50pct"] = await cut_at_half(root, adapter)
        results["slow_link"] = await slow_link(root, adapter, weights, 4e6)
        peft = peft_fp32_size(adapter)
        chunk_size = results["chunk_size"]
        wire = encoded_size(weights, chunk_size, shuffle=True)
        results["compressed_chunk_frames_bytes"] = wire
        results["peft_fp32_bytes"] = peft
        results["wire_vs_peft_fp32"] = wire / peft
        results["compression_ratio_shuffle"] = size / wire
        results["compression_ratio_plain_zstd"] = size / encoded_size(weights, chunk_size, False)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--ranks", default="8,32", help="LoRA ranks of the packets sent to another process"
    )
    args = parser.parse_args()
    out = asyncio.run(main(args.reps, [int(r) for r in args.ranks.split(",")]))
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
