"""A device the asker says they have not got: is its record still read first?

    .venv/bin/python bench/bench_lacking.py [--json OUT]

"we dont have a GC-3, how to check grain dryness" asks what to do without the GC-3; the
GC-3 record does not answer it. The questions below were written after the rule
(fieldkit.router.codes.NoteCodes.naming with `lacking`) to check it, not blind: each names
a device or fault code one or two records are about, and says the asker lacks it or that
the screen no longer shows it (LACKING, with the record that answers them instead), or
that the device is there and shows nothing or has a fault (PRESENT: its own record must
stay first). The library is the one `bench_route.py --only citations`
builds; each question goes to its domain's packet. Counted: how often the first passage
is the expected record, and how often the lacked device's record is among the two shown.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_route import MemoEmbedder, notes_library  # noqa: E402

from fieldkit.router.embedder import default_embedder  # noqa: E402

GC3 = "How do you measure grain moisture with the GrainCheck GC-3?"
SALT = "How do you do the salt jar test for grain dryness?"
KC4 = "How do you pack vaccines in the KC-4 carrier?"
PK60 = "How do I maintain the wick of the Paraflame PK-60 kerosene fridge?"
E07 = "What does fault code E07 mean on an AquaVolt AV-750 pump controller?"
E12 = "What does fault code E12 mean on the AquaVolt controller?"
E21 = "What does fault code E21 mean?"
SG1 = "How long can grain stay in a SiloGuard SG-1 metal silo?"
SG1_SIZE = "What is the capacity of the SiloGuard SG-1?"
SG1_FUMIGATED = "How is the SiloGuard silo fumigated?"
WOVEN = "How long does shelled maize keep in ordinary woven polypropylene bags?"
FUMITAB = "How is grain fumigated with Fumitab tablets?"
RATS = "How do you protect stored grain from rats?"
TL30 = "How do you set up the ThermoLog TL-30 data logger?"
TL30_BATTERY = "How do you check the battery of the ThermoLog TL-30?"
RECORDED = "How often must the fridge temperature be recorded?"
# (domain, question, the record that answers it, the record about the device it lacks)
LACKING = [
    ("grain_storage", "we dont have a GC-3, how to check grain dryness", SALT, GC3),
    ("grain_storage", "Our co-op has no GC-3 meter yet. How can the farmers check at home "
     "that their maize is dry enough to bag?", SALT, GC3),
    ("grain_storage", "without the GC-3 how do i know if the sorghum is dry", SALT, GC3),
    ("grain_storage", "The GC-3 was stolen from the store last week and we are receiving "
     "maize from members. Is there another way to test grain dryness?", SALT, GC3),
    ("grain_storage", "we do not have a GC-3 at the collection point, how do we test "
     "moisture", SALT, GC3),
    ("grain_storage", "farmer hasnt got a gc-3, quick dryness test?", SALT, GC3),
    # written after the phrasings of a device gone (stolen, lost, missing, instead of)
    ("grain_storage", "someone stole the co-op GC-3, how else do we check maize is dry "
     "before bagging?", SALT, GC3),
    ("grain_storage", "what can farmers use instead of the GC-3 to test dryness at home",
     SALT, GC3),
    ("grain_storage", "GC-3 missing from the store, quick way to test sorghum dryness?",
     SALT, GC3),
    # written after "not E07": a code the asker says the screen does not show
    ("solar_pumps", "not E07 this time, the screen says E12, what now", E12, E07),
    ("solar_pumps", "it isnt E21 any more, now the controller shows E12, what does it mean",
     E12, E21),
    # written after a device named by many records (SG-1: four) or by its maker's name
    # alone (SiloGuard, ThermoLog: words.device_names)
    ("grain_storage", "we have no SG-1 silo, only HB-90 bags, how long can the maize keep",
     WOVEN, SG1),
    ("grain_storage", "we dont have the SiloGuard, how do we fumigate the store", FUMITAB,
     SG1_FUMIGATED),
    ("grain_storage", "Our co-op has no SiloGuard silos, just a bag store. How do we keep "
     "the rats out of the grain?", RATS, SG1_SIZE),
    ("cold_chain", "we dont have a ThermoLog at this clinic, how often do we write down "
     "the fridge temperature", RECORDED, TL30),
]  # fmt: skip
# (domain, question, its own record): the device is there; its reading or display is not
PRESENT = [
    ("grain_storage", "no GC-3 reading after 8 seconds, what am i doing wrong", GC3),
    ("grain_storage", "There is no GC-3 display when I press the grain key. How is the "
     "meter used?", GC3),
    ("cold_chain", "no KC-4 result yet, how do i pack the vials in it", KC4),
    ("cold_chain", "PK-60 flame smoky and yellow, how to fix the wick", PK60),
    ("grain_storage", "our GC-3 lost its calibration, how do we check it against the "
     "district meter", GC3),
    ("grain_storage", "the SiloGuard is new, how do we fumigate it", SG1_FUMIGATED),
    ("cold_chain", "no ThermoLog reading since monday, how do i check its battery",
     TL30_BATTERY),
]  # fmt: skip


def measure(tmp: Path) -> dict:
    started = time.perf_counter()
    embedder = MemoEmbedder(default_embedder().load())  # what fieldkit runs: NumPy MiniLM
    library, _, index = notes_library(None, embedder, tmp)
    packets = {r.name.replace("-", "_"): r.packet_id for r in library.list_packets()}
    titles = {pid: {p.passage_id: p.title for p in index.passages(pid)} for pid in packets.values()}

    def row(domain: str, question: str, expected: str, lacked: str | None = None) -> dict:
        pid = packets[domain]
        cover = index.coverage(pid, question)
        hits = [titles[pid][h.passage_id] for h in cover.hits[:2]]
        out = {"question": question, "first": hits[0] if hits else None,
               "right": bool(hits) and hits[0] == expected,
               "cited": bool(hits) and hits[0] == expected and cover.covered}  # fmt: skip
        return out if lacked is None else out | {"lacked shown": lacked in hits}

    lacking = [row(*case) for case in LACKING]
    present = [row(*case) for case in PRESENT]
    library.close()
    return {
        "lacking: first passage the expected record": sum(r["right"] for r in lacking),
        "lacking: cited (covered, the expected record first)": sum(r["cited"] for r in lacking),
        "lacking: the lacked device's record shown": sum(r["lacked shown"] for r in lacking),
        "lacking: questions": len(lacking),
        "present: first passage its own record": sum(r["right"] for r in present),
        "present: cited": sum(r["cited"] for r in present),
        "present: questions": len(present),
        "seconds": round(time.perf_counter() - started, 1),
        "loadavg_1min": round(os.getloadavg()[0], 2),
        "rows": lacking + present,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        results = measure(Path(tmp))
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
