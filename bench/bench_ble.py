"""Bluetooth LE benchmark on a throttled bumble link: goodput share and packet transfer time.

    .venv/bin/python bench/bench_ble.py [--rate 100000] [--interval 0.015] [--mb 1]
                                        [--reps 3] [--mtu 247 517] [--skip-packets]
                                        [--json OUT]

Two bumble devices (real host stacks and controllers) share an in-process `ThrottledLink`
that carries `--rate` bytes per second of L2CAP payload (ATT values plus their 7 header
bytes) and makes a packet that finds the air idle wait for the next connection event
(`--interval` seconds). Both directions share the air.

1. Goodput: `--mb` MB of random bytes through one BleByteStream, central to peripheral,
   `--reps` times at each MTU. `--rate 0` runs it on an unthrottled link instead, which
   shows how fast the bumble stack itself goes on this CPU. Share = stream bytes per second / rate: what is left after ATT and
   L2CAP headers, our 1-byte frame header, credit frames and idle air.
2. Packets: one full gossip session (handshake, inventories, manifests, chunks,
   verification, storage) moving the demo packets (assets/packets/*.fkpkt), then one
   moving a packet of SmolLM2-135M's adapter size (4.9 MB fp16, see bench_sync.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_sync import BASE, smollm_adapter  # noqa: E402

from fieldkit.assets import demo_packets  # noqa: E402
from fieldkit.gossip.ble.radio_bumble import (  # noqa: E402
    BumblePeripheral,
    BumbleRadio,
    connect,
    power_on,
    scan,
)
from fieldkit.gossip.summary import SyncOptions  # noqa: E402
from fieldkit.gossip.sync import serve_ble, sync_ble_peer  # noqa: E402
from fieldkit.services import Services  # noqa: E402
from fieldkit.store.packet import read_packet_file  # noqa: E402
from fieldkit.testing.virtual_radio import LocalLink, ThrottledLink, VirtualRadio  # noqa: E402

CENTRAL_ID, PERIPHERAL_ID = "centralcentral23", "peripheralperiph"
OPTIONS = SyncOptions(handshake_timeout=60, idle_timeout=60)


async def goodput(mtu: int, rate: float, interval: float, size: int) -> dict:
    """Move `size` random bytes one way; return throughput and its share of the link."""
    link = ThrottledLink(rate=rate, interval=interval) if rate > 0 else LocalLink()
    radio = VirtualRadio(link=link)
    central, peripheral_device = radio.device(CENTRAL_ID), radio.device(PERIPHERAL_ID)
    await power_on(central)
    await power_on(peripheral_device)
    peripheral = BumblePeripheral(peripheral_device, device_id=PERIPHERAL_ID, name="p", mtu=mtu)
    await peripheral.start()
    [peer] = await scan(central, 5.0, stop_early=PERIPHERAL_ID[:8])
    c = await connect(central, peer.address, mtu=mtu)
    p = await peripheral.accept()
    data = os.urandom(size)
    got = 0

    async def read_all() -> None:
        nonlocal got
        while got < size:
            got += len(await p.receive())

    carried_before = getattr(link, "bytes_carried", 0)
    start = time.perf_counter()
    await asyncio.gather(_send(c, data), read_all())
    elapsed = time.perf_counter() - start
    carried = getattr(link, "bytes_carried", 0) - carried_before
    throttled = rate > 0  # rate 0: an unthrottled LocalLink, no capacity to compare with
    await asyncio.gather(c.close(), p.close())
    return {
        "mtu": mtu,
        "value_size": c.mtu_value_size,
        "bytes": size,
        "seconds": round(elapsed, 3),
        "goodput_Bps": round(size / elapsed),
        "share_of_capacity": round(size / elapsed / rate, 4) if throttled else None,
        "air_busy": round(carried / elapsed / rate, 4) if throttled else None,
    }


async def _send(stream, data: bytes) -> None:  # noqa: ANN001
    for i in range(0, len(data), 64 * 1024):
        await stream.send(data[i : i + 64 * 1024])


async def packets_session(
    mtu: int, rate: float, interval: float, root: Path, label: str, fill
) -> dict:  # noqa: ANN001
    """One gossip session moving what `fill(library)` adds to the central's library."""
    sender = Services.build(root / f"{label}-{mtu}-sender")
    receiver = Services.build(root / f"{label}-{mtu}-receiver")
    try:
        sizes = fill(sender.library)
        receiver.library.set_trust(sender.identity.device_id, "trusted")
        sender.library.set_trust(receiver.identity.device_id, "trusted")
        radio = VirtualRadio(link=ThrottledLink(rate=rate, interval=interval))
        dc = radio.device(sender.identity.device_id)
        dp = radio.device(receiver.identity.device_id)
        await power_on(dc)
        await power_on(dp)
        rc, rp = BumbleRadio(dc, mtu=mtu), BumbleRadio(dp, mtu=mtu)
        serving = asyncio.create_task(serve_ble(rp, receiver, OPTIONS, once=True))
        await asyncio.sleep(0.1)
        start = time.perf_counter()
        summary = await sync_ble_peer(rc, sender, OPTIONS, peer=receiver.identity.device_id)
        (received,) = await serving
        elapsed = time.perf_counter() - start
        assert summary.ok, summary.error
        assert received.ok, received.error
        assert received.count("received", "ok") == len(sizes)
        return {
            "mtu": mtu,
            "packets": len(sizes),
            "packet_bytes": sum(sizes),
            "wire_bytes": summary.bytes_sent,
            "seconds": round(elapsed, 2),
            "packet_Bps": round(sum(sizes) / elapsed),
            "share_of_capacity": round(summary.bytes_sent / elapsed / rate, 4),
        }
    finally:
        sender.close()
        receiver.close()


def add_demo_packets(library) -> list[int]:  # noqa: ANN001
    sizes = []
    for path in demo_packets():
        packet = read_packet_file(path)
        record = library.add(packet.manifest, packet.signature, packet.weights, source="file")
        sizes.append(record.size)
    if not sizes:
        raise SystemExit("no demo packets in assets/packets")
    return sizes


def add_smollm_packet(library) -> list[int]:  # noqa: ANN001
    record = library.add_local(
        smollm_adapter(seed=3),
        name="irrigation",
        domain="irrigation",
        description="Synthetic adapter with SmolLM2-135M shapes.",
        exemplars=[f"Question {i} about irrigation?" for i in range(12)],
        base_model_id="smollm2-135m-instruct",
        base_fingerprint=BASE,
    )
    return [record.size]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rate", type=float, default=100_000.0, help="link bytes per second (0: unthrottled)"
    )
    parser.add_argument("--interval", type=float, default=0.015, help="connection interval, s")
    parser.add_argument("--mb", type=float, default=1.0, help="MB for the goodput runs")
    parser.add_argument("--reps", type=int, default=3, help="goodput runs per MTU")
    parser.add_argument("--mtu", type=int, nargs="+", default=[247, 517])
    parser.add_argument("--skip-packets", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logging.getLogger("bumble").setLevel(logging.CRITICAL)

    results: dict = {"rate_Bps": args.rate, "interval_s": args.interval, "goodput": []}
    for mtu in args.mtu:
        for _ in range(args.reps):
            row = await goodput(mtu, args.rate, args.interval, int(args.mb * 1_000_000))
            results["goodput"].append(row)
            print(json.dumps(row), flush=True)
    if not args.skip_packets:
        results["packets"] = []
        with tempfile.TemporaryDirectory() as tmp:
            for label, fill in (("demo", add_demo_packets), ("smollm", add_smollm_packet)):
                for mtu in args.mtu:
                    row = await packets_session(
                        mtu, args.rate, args.interval, Path(tmp), label, fill
                    )
                    row["set"] = label
                    results["packets"].append(row)
                    print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    asyncio.run(main())
