"""Router benchmark: accuracy (scoring methods, calibrated abstention, baselines) and latency.

    .venv/bin/python bench/bench_route.py [--reference ../shared/reference/gossip-handshake]
        [--model HOME/models/smollm2-135m-instruct]
        [--only sets|citations|cover-curve|everyday-sweep|small-libraries|accuracy|latency]
        [--json OUT]
        [--everyday-first N]

Sets (the default router, as shipped): every held-out set routed on libraries whose packets
carry notes (their training records) and on the same packets without notes, each also
without the everyday questions (fieldkit.router.everyday); per set, the share routed to the
question's own packet and, for the out-of-domain sets, the share that abstained. Nothing is
calibrated on these runs.

Accuracy: each data set becomes a real library (one signed packet per domain, its
exemplars = the domain's exemplar questions); questions that are not exemplars are routed.
Every question file is split in two by line parity: even lines calibrate the abstain
threshold, odd lines are the held-out report. Latency: p50 of `Router.route` for one
question with 100 and 1,000 synthetic packets, and a cold start in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fieldkit.home import Home  # noqa: E402
from fieldkit.router.embedder import Embedder, MiniLMEmbedder, normalise  # noqa: E402
from fieldkit.router.everyday import EVERYDAY_LEAD, Divide, everyday_questions  # noqa: E402
from fieldkit.router.minilm import NumpyMiniLM  # noqa: E402
from fieldkit.router.router import Router  # noqa: E402
from fieldkit.store.adapter import Adapter, AdapterConfig  # noqa: E402
from fieldkit.store.identity import Identity  # noqa: E402
from fieldkit.store.library import Library  # noqa: E402

BASE = "b" * 64
REF_DOMAINS = ("agronomy", "veterinary", "irrigation", "soil_science", "aquaculture")
# Keyword baseline. agronomy and veterinary: the reference repo's lists, verbatim
# (run_publication_experiment.py). The other domains: lists in the same style.
KEYWORDS = {
    "agronomy": "crop pest soil neem locust millet cassava maize sorghum fungus blight fertilizer "
    "irrigation seed harvest agronomy plant leaf root compost mulch frass uv weevil aphid "
    "mycotoxin aflatoxin drip",
    "veterinary": "cattle livestock vaccine newcastle selenium brahman veterinary vet poultry goat "
    "sheep animal disease mastitis tick deworm mineral limpopo trypanosomiasis foot mouth "
    "lumpy skin rinderpest anthrax brucellosis eye-drop thermotolerant herd flock",
    "irrigation": "irrigation water drip canal furrow sprinkler pump borehole well channel flood "
    "salinity evapotranspiration moisture tensiometer reservoir dam pipe emitter valve",
    "soil_science": "soil clay loam sand humus organic carbon ph nitrogen phosphorus erosion "
    "compaction biochar microbe fungi mycorrhiza horizon texture lime acidity",
    "aquaculture": "fish pond tilapia catfish aquaculture fingerling hatchery feed oxygen algae "
    "shrimp cage net water gill fry stocking prawn carp",
    "cold_chain": "vaccine fridge freezer cold ice pack temperature thermometer refrigerator "
    "cooler carrier frozen chain vial vvm logger",
    "poultry": "chicken hen chick poultry egg broiler layer flock coop bird wattle feather "
    "rooster brooder",
    "solar_pumps": "solar pump panel controller inverter battery water borehole tank voltage "
    "fault irradiance sun",
}
KEYWORDS = {d: w.split() for d, w in KEYWORDS.items()}


@dataclass
class DataSet:
    """Packets (domain -> exemplars) and questions (domain, text) to route."""

    name: str
    exemplars: dict[str, list[str]]
    questions: list[tuple[str, str]] = field(default_factory=list)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_demo(phrasings: bool = True) -> DataSet:
    """Demo packets; exemplars from exemplars.txt, as the shipped packets carry them (every
    training question, then every phrasing of them: 160 per domain), or without
    `phrasings` the training questions alone (40, as the packets carried before)."""
    data = DataSet("demo", {})
    for folder in sorted((REPO / "assets/demo").iterdir()):
        if not (folder / "exemplars.txt").is_file():
            continue
        lines = (folder / "exemplars.txt").read_text().splitlines()
        questions = [x.strip() for x in lines if x.strip()]
        if not phrasings:
            questions = [r["instruction"] for r in read_jsonl(folder / "train.jsonl")]
        data.exemplars[folder.name] = questions
        data.questions += [
            (folder.name, r["question"]) for r in read_jsonl(folder / "heldout.jsonl")
        ]
    return data


def combine(name: str, *sets: DataSet) -> DataSet:
    """One device holding the packets of several data sets."""
    data = DataSet(name, {k: v for d in sets for k, v in d.exemplars.items()})
    data.questions = [q for d in sets for q in d.questions]
    return data


class MemoEmbedder:
    """The real embedder, remembering vectors so each text is embedded once per run."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.id, self.memo = inner, inner.id, {}

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if todo:
            self.memo.update(zip(todo, self.inner.embed(todo), strict=True))
        return np.stack([self.memo[t] for t in texts])


def load_reference(corpus: Path, heldout: Path, phrasings: bool = True) -> DataSet:
    data = DataSet("reference", reference_exemplars(corpus, phrasings))
    data.questions = [(r["domain"], r["question"]) for r in read_jsonl(heldout)]
    return data


def reference_exemplars(corpus: Path, phrasings: bool = True) -> dict[str, list[str]]:
    """Each reference domain's exemplars as `train --paraphrases` picks them: every training
    question, then the phrasings of bench/data/reference_train_paraphrases.jsonl (without
    `phrasings`, the training questions alone)."""
    from fieldkit.training.dataset import attach_paraphrases, load_records, pick_exemplars

    rows = read_jsonl(REPO / "bench/data/reference_train_paraphrases.jsonl")
    out = {}
    for domain in REF_DOMAINS:
        records = load_records(corpus / f"{domain}.jsonl")
        out[domain] = pick_exemplars(attach_paraphrases(records, rows) if phrasings else records)
    return out


def tiny_adapter() -> Adapter:
    config = AdapterConfig(rank=1, scale=1.0, dropout=0.0, num_layers=1, keys=("self_attn.q_proj",))
    tensors = {
        "model.layers.0.self_attn.q_proj.lora_a": np.zeros((8, 1), np.float16),
        "model.layers.0.self_attn.q_proj.lora_b": np.zeros((1, 8), np.float16),
    }
    return Adapter(config=config, tensors=tensors)


def make_library(
    root: Path, packets: dict[str, list[str]], notes: dict[str, list] | None = None
) -> Library:
    """Return a real library under `root` holding one signed packet per entry (with its
    notes where `notes` has them)."""
    home = Home(root).ensure()
    library = Library.open(home, identity=Identity.load_or_create(home))
    adapter = tiny_adapter()
    for name, exemplars in packets.items():
        library.add_local(
            adapter,
            name=name,
            domain=name,
            description=f"Packet {name}.",
            exemplars=exemplars,
            base_model_id="bench",
            base_fingerprint=BASE,
            notes=(notes or {}).get(name),
        )
    return library


# -- the default router on every set ---------------------------------------------------------


# The long demo sets in the users' voice, whose citations are also pooled.
LONG_SETS = ("natural", "field", "site", "unseen", "fresh", "late")
# The nine short demo sets, as typed on a phone in a hurry, written before `sharp`.
SHORT_SETS = ("terse", "brisk", "hasty", "rushed", "hurried", "dashed", "brief", "quick", "curt")
# The demo question sets (assets/demo/<domain>/<name>.jsonl): in-domain, then gaps.
DEMO_SETS = (
    "heldout", "natural", "field", "site", "unseen", "fresh", "late", "terse", "brisk",
    "hasty", "rushed", "hurried", "dashed", "brief", "later", "quick", "curt", "shift", "sharp",
    "thumbs", "noon", "snap", "eve", "gaps", "gaps_natural", "gaps_unseen", "gaps_fresh",
    "gaps_late", "gaps_rushed", "gaps_hurried", "gaps_brief", "gaps_later", "gaps_curt",
    "gaps_sharp", "gaps_thumbs", "gaps_snap",
)  # fmt: skip
OOD_FILES = (
    ("out-of-domain", "out_of_domain.txt"),
    ("out-of-domain natural", "out_of_domain_natural.txt"),
    ("out-of-domain field", "out_of_domain_field.txt"),
    ("out-of-domain site", "out_of_domain_site.txt"),
    ("out-of-domain quick", "out_of_domain_quick.txt"),
    ("out-of-domain fresh", "out_of_domain_fresh.txt"),
    ("out-of-domain blind", "out_of_domain_blind.txt"),
    ("out-of-domain late", "out_of_domain_late.txt"),
    ("out-of-domain final", "out_of_domain_final.txt"),
    ("out-of-domain last", "out_of_domain_last.txt"),
    ("out-of-domain after", "out_of_domain_after.txt"),
    ("out-of-domain closing", "out_of_domain_closing.txt"),
    ("out-of-domain evening", "out_of_domain_evening.txt"),
    ("out-of-domain night", "out_of_domain_night.txt"),
    ("out-of-domain dawn", "out_of_domain_dawn.txt"),
)


def question_sets(reference: Path | None) -> dict[str, list[tuple[str, str]]]:
    """Return {set name: [(domain or "", question)]}; "" marks out-of-domain questions."""
    demo = REPO / "assets/demo"
    sets: dict[str, list[tuple[str, str]]] = {}
    for name in DEMO_SETS:
        sets[f"demo {name}"] = [
            (r["domain"], r["question"])
            for path in sorted(demo.glob(f"*/{name}.jsonl"))
            for r in read_jsonl(path)
        ]
    if reference is not None:
        for name in ("heldout", "natural"):
            path = REPO / f"bench/data/reference_{name}.jsonl"
            sets[f"reference {name}"] = [(r["domain"], r["question"]) for r in read_jsonl(path)]
    for name, path in OOD_FILES:
        sets[name] = [("", r["question"]) for r in question_rows(REPO / "bench/data" / path)]
    return sets


def demo_rows(name: str) -> list[dict]:
    """Return the rows of the demo question set `name` (assets/demo/<domain>/<name>.jsonl),
    every domain's, in domain order."""
    return [
        r for p in sorted((REPO / "assets/demo").glob(f"*/{name}.jsonl")) for r in read_jsonl(p)
    ]


def demo_texts() -> list[str]:
    """Every question, instruction and answer text of the demo's files (assets/demo/*/
    *.jsonl), file by file: what an embedder or a tokenizer is held to across the demo."""
    rows = [r for p in sorted((REPO / "assets/demo").glob("*/*.jsonl")) for r in read_jsonl(p)]
    return [row[k] for row in rows for k in ("question", "instruction", "output") if row.get(k)]


def sources(row: dict) -> list[str]:
    """Return the titles of a question row's source records ([] for a gap question): one
    title, or a list of them for a question that asks several things."""
    source = row.get("source") or []
    return source if isinstance(source, list) else [source]


def keep_row(rows: list[dict], out, row: dict) -> None:  # noqa: ANN001 - a text file
    """Add a measured row to `rows` and write it to `out` at once (a long run keeps its
    rows when stopped)."""
    rows.append(row)
    out.write(json.dumps(row) + "\n")
    out.flush()


def add_rows_option(parser: argparse.ArgumentParser) -> None:
    """Add `--rows FILE`: each question's row is written there as it is measured, and a
    file that exists is summarised instead, measuring nothing."""
    parser.add_argument(
        "--rows",
        type=Path,
        default=None,
        help="write each question's row here; if the file exists, summarise it, measuring nothing",
    )


def saved_rows(path: Path | None) -> list[dict] | None:
    """Return the rows a `--rows` file holds, or None when there is none to summarise."""
    if path is None or not path.is_file():
        return None
    return [json.loads(line) for line in path.read_text().splitlines()]


def pace(name: str, count: int, started: float) -> None:
    """Say on stderr how long each of a set's `count` questions took since `started`."""
    seconds = (time.perf_counter() - started) / max(count, 1)
    print(f"{name}: {count} questions, {seconds:.2f} s each", file=sys.stderr)


def question_rows(path: Path) -> list[dict]:
    """Return a question file's rows: jsonl as it is, a .txt file one {"question"} a line."""
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    return [{"question": x.strip()} for x in path.read_text().splitlines() if x.strip()]


def domain_notes(reference: Path | None, phrasings: bool = True) -> dict[str, list]:
    """Return every domain's training records as note passages, each with the phrasings of
    its question as `train --notes --paraphrases` stores them (none without `phrasings`)."""
    from dataclasses import replace

    from fieldkit.training.quality import domain_notes as notes_of_domain

    demo = REPO / "assets/demo"
    notes = {
        folder.name: notes_of_domain(demo, folder.name)
        for folder in sorted(demo.iterdir())
        if (folder / "train.jsonl").is_file()
    }
    if reference is not None:
        para = REPO / "bench/data/reference_train_paraphrases.jsonl"
        notes |= {domain: notes_of_domain(reference, domain, para) for domain in REF_DOMAINS}
    if not phrasings:
        notes = {d: [replace(p, asked=()) for p in v] for d, v in notes.items()}
    return notes


# The default router on packets with notes, on the same packets without, each also without
# the everyday questions (fieldkit.router.everyday), and the router as it was before notes,
# the two tiers and codes (nearest exemplar, one threshold of 0.47).
BEFORE_DIVIDE = {"everyday_near_lead": EVERYDAY_LEAD, "codes": False}  # the router of 8f7ae0c
VARIANTS = (
    ("notes", True, {}),
    ("no notes", False, {}),
    ("notes, no divide, no codes", True, BEFORE_DIVIDE),
    ("no notes, no divide, no codes", False, BEFORE_DIVIDE),
    ("notes, no leaning", True, {"leaning": None}),
    ("no notes, no leaning", False, {"leaning": None}),
    ("notes, no everyday list", True, {"everyday": ()}),
    ("no notes, no everyday list", False, {"everyday": ()}),
    (
        "before: exemplars only, 0.47",
        False,
        {"min_score": 0.47, "rescue_score": 9.0, "everyday": (), "codes": False},
    ),
)


def sets_report(
    datasets: list[DataSet],
    reference: Path | None,
    embedder,
    tmp: Path,
    variants=VARIANTS,
    phrasings: bool = True,
) -> dict:
    """Route every set with the default router on each library, packets with and without
    notes (`variants`: label, with notes, Router options); return {library: {label: {set:
    {"n", "right"|"abstained", "ci" (its 95% bootstrap interval), and the questions
    missed or routed}}}}."""
    from fieldkit.training.evaluate import bootstrap_ci

    sets = question_sets(reference)
    notes = domain_notes(reference, phrasings)
    out: dict = {}
    for data in datasets:
        for number, (label, with_notes, options) in enumerate(variants):
            root = tmp / f"sets-{data.name}-{number}"
            library = make_library(root, data.exemplars, notes if with_notes else None)
            router = Router(library, embedder, BASE, **options)
            row: dict = {}
            for name, questions in sets.items():
                domains = {d for d, _ in questions if d}
                if domains and not domains <= set(data.exemplars):
                    continue  # a set for packets this library does not hold
                decisions = router.route_many([q for _, q in questions])
                if domains:
                    hits = [
                        float(d.route == t) for d, (t, _) in zip(decisions, questions, strict=True)
                    ]
                    row[name] = {"n": len(hits), "right": sum(hits) / len(hits)}
                    row[name]["ci"] = bootstrap_ci(hits)
                    row[name]["missed"] = [
                        [t, d.route, round(d.score, 3), round(d.margin, 3), q[:80], d.reason]
                        for d, (t, q) in zip(decisions, questions, strict=True)
                        if d.route != t
                    ]
                else:
                    gone = [d for d in decisions if d.route is not None]
                    row[name] = {"n": len(questions), "abstained": 1 - len(gone) / len(questions)}
                    row[name]["ci"] = bootstrap_ci([float(d.route is None) for d in decisions])
                    row[name]["routed"] = [
                        [d.route, round(d.score, 3), round(d.margin, 3), q[:80]]
                        for d, (_, q) in zip(decisions, questions, strict=True)
                        if d.route is not None
                    ]
            out.setdefault(data.name, {})[label] = row
            library.close()
    return out


EVERYDAY_LEADS = (None, 0.04, 0.06, 0.08, 0.10, 0.11, 0.12, 0.13, 0.15, 0.20)
NEAR_LEADS = (0.02, 0.04, 0.06, 0.08, 0.10)  # the divide's, at the shipped lead


def everyday_sweep(datasets: list[DataSet], reference: Path | None, embedder, tmp: Path) -> dict:
    """The everyday questions' lead alone (the divide off), swept (None: no list), then the
    divide's near lead at the shipped lead: per setting, how many in-domain questions of
    every set and library, with notes and without, route to their own packet
    (`in_domain_right`, out of `in_domain`) and each out-of-domain set's share abstained on
    the libraries with notes; the sets_report cells are under `cells`."""
    settings: dict[str, dict] = {}
    for lead in EVERYDAY_LEADS:
        alone = {"everyday_lead": lead, "everyday_near_lead": lead}
        settings[f"lead {lead}"] = {"everyday": ()} if lead is None else alone
    for near in NEAR_LEADS:
        settings[f"near lead {near}"] = {"everyday_near_lead": near}
    variants = [
        (f"{'notes' if with_notes else 'no notes'}, {key}", with_notes, options)
        for key, options in settings.items()
        for with_notes in (True, False)
    ]
    cells = sets_report(datasets, reference, embedder, tmp, variants)
    out: dict = {"cells": cells, "leads": {}}
    for key in settings:
        right = total = 0
        abstained: dict = {}
        for library, rows in cells.items():
            for label, row in rows.items():
                if label.split(", ", 1)[1] != key:
                    continue
                for name, cell in row.items():
                    if "right" in cell and not name.startswith("demo gaps"):
                        right += round(cell["right"] * cell["n"])
                        total += cell["n"]
                    elif "abstained" in cell and label.startswith("notes"):
                        abstained[f"{library} {name}"] = cell["abstained"]
        out["leads"][key] = {"in_domain_right": right, "in_domain": total, "abstained": abstained}
    return out


def small_libraries(embedder, tmp: Path) -> dict:
    """One demo packet alone, with 10 or 40 exemplars (its training questions) and no notes,
    or 40 and its notes, or all 160 (with their phrasings) and its notes: per
    library, how many of its domain's in-domain questions (every demo set but the gaps) it
    is routed, and how many out-of-domain questions (every set) are abstained on, with the
    divide fitted whatever the library's size, and with the lead alone."""
    sets = question_sets(None)
    data, notes = load_demo(), domain_notes(None)
    ood = [q for name, rows in sets.items() if name.startswith("out-of-domain") for _, q in rows]
    routers = (("divide", {"divide_min_texts": 1}), ("lead alone", BEFORE_DIVIDE))
    out: dict = {}
    for domain, exemplars in data.exemplars.items():
        asked = [
            q
            for name, rows in sets.items()
            if not name.startswith("demo gaps")
            for d, q in rows
            if d == domain
        ]
        for count, with_notes in ((10, False), (40, False), (40, True), (len(exemplars), True)):
            root = tmp / f"small-{domain}-{count}-{int(with_notes)}"
            library = make_library(root, {domain: exemplars[:count]}, notes if with_notes else None)
            cell: dict = {"in_domain": len(asked), "out_of_domain": len(ood)}
            for key, options in routers:
                router = Router(library, embedder, BASE, **{**options, "codes": True})
                cell[key] = {
                    "right": sum(d.route == domain for d in router.route_many(asked)),
                    "abstained": sum(d.route is None for d in router.route_many(ood)),
                }
            out[f"{domain}, {count} exemplars{', notes' if with_notes else ''}"] = cell
            library.close()
    return out


def notes_library(reference: Path | None, embedder, root: Path, phrasings: bool = True):
    """Return (library, router, passage index) over every domain's packet with its training
    records as notes, and the exemplars its packet carries (load_demo, reference_exemplars)."""
    from fieldkit.router.retrieval import PassageIndex

    notes = domain_notes(reference, phrasings)
    packets = load_demo(phrasings).exemplars | (
        reference_exemplars(reference, phrasings) if reference else {}
    )
    library = make_library(root, packets, notes)
    return library, Router(library, embedder, BASE), PassageIndex(library, embedder)


def covers(router: Router, index, rows: list[dict], reader=None) -> list:
    """Route each row's question, then check the routed packet's notes: per row, its
    Coverage (None when the router abstained) and whether the first passage found is the
    row's source record (False for a row without one: gaps and out-of-domain)."""
    out = []
    for row, decision in zip(rows, router.route_many([r["question"] for r in rows]), strict=True):
        if decision.packet_id is None:
            out.append((None, False))
            continue
        cover = index.coverage(decision.packet_id, row["question"], reader=reader)
        out.append((cover, bool(cover.hits) and cover.hits[0].title in sources(row)))
    return out


def citations_report(
    reference: Path | None,
    embedder,
    tmp: Path,
    phrasings: bool = True,
    reader=None,
    only: tuple[str, ...] = (),
) -> dict:
    """Route, then retrieve the routed packet's top two passages, with no generation: per
    set, how often the first cited passage is the question's source record (citation
    precision; no citation is a miss), the keyword recall of the two passages alone (what a
    person is shown even when the generated answer adds nothing), the share the notes call
    covered (cited; for gap and out-of-domain sets, 1 - covered is the share refused:
    abstained on by the router or not covered by the routed packet's notes), the share
    covered surely (answered without the caution that the passages may not fit), how
    many questions name a code the routed packet's notes never name, and for how many the
    second passage shows a higher score than the first (`ranking.shown_scores`); and for
    the questions routed but not covered (answered "nothing on this"), for
    how many the nearest record shown under the answer is their own. With a `reader`
    (`--read`), the passages ranked first are reordered as the base model reads them
    (fieldkit.router.ranking.READ_K); `only` keeps those demo sets alone (`--sets`)."""
    from fieldkit.training.evaluate import bootstrap_ci, keyword_recall

    demo = REPO / "assets/demo"
    files = {f"demo {n}": sorted(demo.glob(f"*/{n}.jsonl")) for n in DEMO_SETS}
    if reference is not None:
        files |= {
            f"reference {n}": [REPO / f"bench/data/reference_{n}.jsonl"]
            for n in ("heldout", "natural")
        }
    library, router, index = notes_library(reference, embedder, tmp / "citations", phrasings)
    for name, path in OOD_FILES:  # out-of-domain: answered as if covered only when both
        files[name] = [REPO / "bench/data" / path]  # the router and the notes let it through
    if only:
        files = {name: paths for name, paths in files.items() if name.removeprefix("demo ") in only}
    out: dict = {}
    pooled: list[float] = []  # citations over the long demo sets (LONG_SETS)
    for name, paths in files.items():
        rows = [r for path in paths for r in question_rows(path)]
        cites, shown, covered, sure, coded, unordered = [], [], [], [], 0, 0
        uncovered, nearest_right = 0, 0  # routed, not covered: is the nearest shown its own?
        for row, (cover, right) in zip(rows, covers(router, index, rows, reader), strict=True):
            covered.append(float(bool(cover and cover.covered)))
            sure.append(float(bool(cover and cover.covered and cover.sure)))
            coded += bool(cover and cover.unknown_codes)
            found = cover.hits if cover else []
            unordered += len(found) > 1 and found[1].score > found[0].score
            if "expected_keywords" not in row:
                continue
            hits = cover.hits if cover and cover.covered else []
            cites.append(float(bool(hits) and right))
            if cover is not None and not cover.covered:
                uncovered += 1
                nearest_right += right
            shown.append(keyword_recall("\n".join(h.text for h in hits), row["expected_keywords"]))
        cell: dict = {
            "n": len(rows),
            "covered": sum(covered) / len(rows),
            "sure": sum(sure) / len(rows),
            "unknown_codes": coded,
            "shown_out_of_order": unordered,
        }
        if cites:
            cell |= {
                "citation_precision": sum(cites) / len(cites),
                "citation_ci": bootstrap_ci(cites),
                "passages_recall": sum(shown) / len(shown),
                "passages_recall_ci": bootstrap_ci(shown),
                "uncovered": uncovered,
                "uncovered_nearest_own": nearest_right,
            }
        out[name] = cell
        if name.removeprefix("demo ") in LONG_SETS:
            pooled += cites
    library.close()
    out["demo long sets, pooled"] = {"sets": list(LONG_SETS), "n": len(pooled)}
    if pooled:
        out["demo long sets, pooled"] |= {
            "citation_precision": sum(pooled) / len(pooled),
            "citation_ci": bootstrap_ci(pooled),
        }
    return out


COVER_THRESHOLDS = tuple(round(0.70 + 0.01 * i, 2) for i in range(31))


def cover_curve(reference: Path | None, embedder, tmp: Path, phrasings: bool = True) -> dict:
    """The coverage check's trade, threshold by threshold, on the library `citations` uses:
    citation precision on the demo sets whose questions a record covers, against the share
    of gap questions refused (abstained on, or not covered). Returns {threshold: {set: share}}."""
    sets = {n: demo_rows(n) for n in DEMO_SETS}
    library, router, index = notes_library(reference, embedder, tmp / "cover-curve", phrasings)
    seen: dict[str, list[tuple[float, bool]]] = {}  # per set: (cover score, top passage right)
    for name, rows in sets.items():
        seen[name] = [
            (-np.inf if cover is None else np.inf if cover.by_code else cover.score, right)
            for cover, right in covers(router, index, rows)
        ]
    library.close()
    out: dict = {}
    for t in COVER_THRESHOLDS:
        cell = {}
        for name, pairs in seen.items():
            if name.startswith("gaps"):
                cell[name] = sum(score < t for score, _ in pairs) / len(pairs)
            else:
                cell[name] = sum(score >= t and right for score, right in pairs) / len(pairs)
        out[f"{t:.2f}"] = cell
    return out


# -- accuracy -------------------------------------------------------------------------------


def split(questions: list, part: int) -> list:
    return questions[part::2]


def outcomes(router: Router, questions: list[str]) -> list[tuple[str, float, float]]:
    """Return (top name, top score, margin) per question, with abstention switched off."""
    router.min_score, router.min_margin = -9.0, -9.0
    return [(d.route or "", d.score, d.margin) for d in router.route_many(questions)]


def rates(ind, truth, ood, min_score: float, min_margin: float) -> tuple[float, float]:
    """Return (in-domain correct share, out-of-domain abstain share) under thresholds."""

    def keep(score: float, margin: float) -> bool:
        return score >= min_score and margin >= min_margin

    correct = sum(keep(s, m) and n == t for (n, s, m), t in zip(ind, truth, strict=True))
    abstain = sum(not keep(s, m) for _, s, m in ood)
    return correct / max(len(ind), 1), abstain / max(len(ood), 1)


def calibrate(ind, truth, ood, target: float = 0.9, margins=(0.0,)) -> tuple[float, float]:
    """Return (min_score, min_margin): best in-domain accuracy with OOD abstention >= target.

    If no threshold reaches the target, maximise the mean of the two rates instead.
    """
    grid = [(float(round(t, 2)), m) for t in np.arange(0.20, 0.80, 0.01) for m in margins]
    scored = [(rates(ind, truth, ood, t, m), t, m) for t, m in grid]
    feasible = [x for x in scored if x[0][1] >= target]
    pool = feasible or scored
    value = (lambda x: x[0][0]) if feasible else (lambda x: x[0][0] + x[0][1])
    best = max(value(x) for x in pool)
    margin = min(x[2] for x in pool if value(x) == best)
    tied = sorted(x[1] for x in pool if value(x) == best and x[2] == margin)
    return tied[len(tied) // 2], margin  # the middle of the best plateau, not its edge


def keyword_route(question: str, domains: list[str]) -> str:
    q = question.lower()
    hits = [sum(kw in q for kw in KEYWORDS.get(d, [])) for d in domains]
    return domains[int(np.argmax(hits))] if max(hits) > 0 else ""


def hidden_state_router(model_path: Path | None):
    """Return embed(texts) -> unit vectors from SmolLM2's mean-pooled last hidden state."""
    if model_path is None or not (model_path / "config.json").is_file():
        return None
    from fieldkit.engine.blas import preload_openblas

    preload_openblas()
    import mlx.core as mx
    from mlx_lm import load

    model, tokenizer = load(str(model_path))

    def embed(texts: list[str]) -> np.ndarray:
        out = []
        for text in texts:
            ids = mx.array([tokenizer.encode(text)])
            hidden = model.model(ids)  # final-normed last hidden state, (1, T, D)
            out.append(np.array(mx.mean(hidden[0].astype(mx.float32), axis=0)))
        vectors = np.stack(out)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    return embed


METHODS = {
    "centroid": {"method": "centroid"},
    "nearest exemplar (top-1)": {"method": "topk", "top_k": 1},
    "top-2 mean": {"method": "topk", "top_k": 2},
    "top-3 mean": {"method": "topk", "top_k": 3},
    "blend 0.25 centroid + top-1": {"method": "blend", "top_k": 1, "blend": 0.25},
    "blend 0.5 centroid + top-3": {"method": "blend", "top_k": 3, "blend": 0.5},
}


def accuracy(
    datasets: list[DataSet], ood: list[str], embedder, model_path, tmp: Path, margins=(0.0,)
) -> dict:
    """Route every question with each method; calibrate on `calibrate_on`'s even lines."""
    libraries = {d.name: make_library(tmp / f"acc-{d.name}", d.exemplars) for d in datasets}
    calibrate_on = datasets[-1].name
    results: dict = {"calibrated_on": calibrate_on, "methods": {}, "baselines": {}}
    for label, kw in METHODS.items():
        seen = {}
        for data in datasets:
            router = Router(libraries[data.name], embedder, BASE, everyday=(), **kw)
            truth = [d for d, _ in data.questions]
            seen[data.name] = (
                outcomes(router, [q for _, q in data.questions]),
                truth,
                outcomes(router, ood),
            )
        ind, truth, oo = seen[calibrate_on]
        min_score, min_margin = calibrate(
            split(ind, 0), split(truth, 0), split(oo, 0), margins=margins
        )
        row: dict = {"min_score": min_score, "min_margin": min_margin}
        for name, (ind, truth, oo) in seen.items():
            acc, abst = rates(split(ind, 1), split(truth, 1), split(oo, 1), min_score, min_margin)
            row[name] = {
                "top1_all": sum(n == t for (n, _, _), t in zip(ind, truth, strict=True))
                / len(truth),
                "heldout_acc": acc,
                "heldout_ood_abstain": abst,
                "n_heldout": len(split(truth, 1)),
                "n_ood": len(split(oo, 1)),
            }
        results["methods"][label] = row
        if kw == {"method": "topk", "top_k": 1}:  # the default: what it gets wrong, on all lines
            ind, truth, oo = seen[calibrate_on]
            results["default_detail"] = {
                "misrouted": [
                    [t, n, round(s, 3), q]
                    for (n, s, _), t, (_, q) in zip(
                        ind,
                        truth,
                        next(d for d in datasets if d.name == calibrate_on).questions,
                        strict=True,
                    )
                    if n != t
                ],
                "ood_routed": [
                    [i + 1, n, round(s, 3), ood[i]]
                    for i, (n, s, _) in enumerate(oo)
                    if s >= min_score
                ],
                "ood_best_score_percentiles_0_50_90_100": [
                    round(float(x), 3)
                    for x in np.percentile([s for _, s, _ in oo], [0, 50, 90, 100])
                ],
            }
    for data in datasets:
        domains = list(data.exemplars)
        truth = [d for d, _ in data.questions]
        picks = [keyword_route(q, domains) for _, q in data.questions]
        kw_ood = [keyword_route(q, domains) for q in ood]
        results["baselines"].setdefault("keywords", {})[data.name] = {
            "top1_all": sum(p == t for p, t in zip(picks, truth, strict=True)) / len(truth),
            "ood_abstain": sum(p == "" for p in kw_ood) / len(kw_ood),
        }
    hidden = hidden_state_router(model_path)
    for data in [d for d in datasets if not d.name.endswith("-train")]:
        if hidden is None:
            results["baselines"]["hidden-state centroids"] = f"skipped: no model in {model_path}"
            break
        domains = list(data.exemplars)
        centroids = np.stack([hidden(data.exemplars[d]).mean(axis=0) for d in domains])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        scores = hidden([q for _, q in data.questions]) @ centroids.T
        picks = [domains[i] for i in scores.argmax(axis=1)]
        truth = [d for d, _ in data.questions]
        results["baselines"].setdefault("hidden-state centroids", {})[data.name] = {
            "top1_all": sum(p == t for p, t in zip(picks, truth, strict=True)) / len(truth),
        }
    for lib in libraries.values():
        lib.close()
    return results


# -- latency --------------------------------------------------------------------------------

WORDS = [
    "pump",
    "goat",
    "solar",
    "vaccine",
    "maize",
    "fish",
    "soil",
    "battery",
    "fridge",
    "chicken",
    "canal",
    "tractor",
    "seed",
    "cow",
    "borehole",
    "inverter",
    "mastitis",
    "drip",
    "tilapia",
    "compost",
    "cassava",
    "poultry",
    "panel",
    "tank",
    "well",
    "hive",
    "honey",
    "bee",
    "sheep",
    "wool",
    "loom",
    "kiln",
    "brick",
    "clinic",
    "malaria",
    "dose",
    "bandage",
    "radio",
    "antenna",
]
TEMPLATES = (
    "How do I fix the {a} when the {b} fails?",
    "What is the right {a} dose for {b}?",
    "Why does my {a} stop working near the {b}?",
    "When should I check the {a} and the {b}?",
)


def synthetic_packets(n: int, per_packet: int = 12, seed: int = 0) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)
    packets = {}
    for i in range(n):
        a, b = rng.choice(WORDS, 2, replace=False)
        packets[f"synthetic-{i:04d}"] = [
            TEMPLATES[j % len(TEMPLATES)].format(a=a, b=b) + f" (case {j})"
            for j in range(per_packet)
        ]
    return packets


def prefill_cache(library: Library, embedder, pool_packets: int = 20, seed: int = 1) -> None:
    """Cache exemplar vectors for every packet without embedding 12,000 texts.

    The first `pool_packets` packets are embedded for real; every other packet gets a
    pool packet's vectors plus small noise. Query-time work does not depend on this.
    """
    rng = np.random.default_rng(seed)
    cache = library.vectors("exemplar_embeddings")
    records = library.list_packets()
    pool = [embedder.embed(r.exemplars) for r in records[:pool_packets]]
    for i, record in enumerate(records):
        vectors = pool[i] if i < len(pool) else pool[rng.integers(len(pool))]
        if i >= len(pool):
            vectors = normalise(vectors + rng.normal(0, 0.05, vectors.shape))
        cache.put(record.packet_id, embedder.id, vectors)


def latency(questions: list[str], embedder, tmp: Path, counts=(100, 1000)) -> dict:
    out: dict = {}
    for n in counts:
        library = make_library(tmp / f"lat-{n}", synthetic_packets(n))
        prefill_cache(library, embedder)
        start = time.perf_counter()
        Router(library, embedder, BASE).everyday()  # the shipped vectors, then cached
        everyday_s = time.perf_counter() - start
        start = time.perf_counter()
        embedder.embed(everyday_questions())  # what a list without shipped vectors costs
        everyday_embed_s = time.perf_counter() - start
        router = Router(library, embedder, BASE)
        start = time.perf_counter()
        router.warm()
        index_s = time.perf_counter() - start
        assert router.embedded_packets == 0
        start = time.perf_counter()  # the part of index_s that fits the library's divide
        Divide.fit(router._ensure_index().vectors, router.everyday().vectors)
        divide_s = time.perf_counter() - start
        for q in questions[:10]:
            router.route(q)
        wall, cpu, embed_wall, embed_cpu = [], [], [], []
        for q in questions:  # interleaved, so both see the same load from other work
            w, c = time.perf_counter(), time.process_time()
            router.route(q)
            wall.append((time.perf_counter() - w) * 1000)
            cpu.append((time.process_time() - c) * 1000)
            w, c = time.perf_counter(), time.process_time()
            embedder.embed([q])
            embed_wall.append((time.perf_counter() - w) * 1000)
            embed_cpu.append((time.process_time() - c) * 1000)
        memo = MemoEmbedder(embedder)
        memo.embed(questions)
        bare = Router(library, memo, BASE).warm()  # same index, question vectors known
        overhead = []
        for q in questions:
            w = time.perf_counter()
            bare.route(q)
            overhead.append((time.perf_counter() - w) * 1000)
        out[n] = {
            "p50_ms": statistics.median(wall),
            "without_embedding_p50_ms": statistics.median(overhead),
            "p90_ms": float(np.percentile(wall, 90)),
            "cpu_p50_ms": statistics.median(cpu),
            "embed_p50_ms": statistics.median(embed_wall),
            "embed_cpu_p50_ms": statistics.median(embed_cpu),
            "index_s": index_s,
            "divide_fit_s": divide_s,
            "everyday_load_s": everyday_s,  # the everyday list's vectors, once per library
            "everyday_embed_s": everyday_embed_s,  # embedding the list itself
            "exemplars": n * 12,
            "n": len(wall),
            "loadavg_1min": os.getloadavg()[0],
        }
        library.close()
        out[n]["cold"] = cold_start(tmp / f"lat-{n}", questions[0], embedder_code(embedder))
    return out


COLD = """
import time; t0 = time.perf_counter()
from fieldkit.router.router import Router
from fieldkit.home import Home
from pathlib import Path
from fieldkit.store.library import Library
lib = Library.open(Home(Path({root!r})))
t1 = time.perf_counter()
from fieldkit.router.embedder import MiniLMEmbedder
from fieldkit.router.minilm import NumpyMiniLM
router = Router(lib, {make}, base_fingerprint={base!r}).warm()
t2 = time.perf_counter()
router.route({q!r})
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, (t3 - t2) * 1000)
"""


def embedder_code(embedder: Embedder) -> str:
    """The expression that makes the same embedder in a fresh process (from the same
    model folder; the fresh process imports Path)."""
    folder = embedder.model_dir
    where = "None" if folder is None else f"Path({str(Path(folder).resolve())!r})"
    if isinstance(embedder, NumpyMiniLM):
        return f"NumpyMiniLM(model_dir={where})"
    return f"MiniLMEmbedder(quantize={embedder.quantize!r}, model_dir={where})"


def report(result: dict, path: Path | None) -> None:
    """Stamp `result` with the machine's load (1-minute average), print it as JSON, and
    write it to `path` too when one is given."""
    result["loadavg_1min"] = os.getloadavg()[0]
    print(json.dumps(result, indent=1))
    if path:
        path.write_text(json.dumps(result, indent=1))


def run_fresh(code: str) -> tuple[float, str]:
    """Run Python `code` in a fresh process, offline; return its wall seconds and stdout
    (SystemExit, with its error, if it fails)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if res.returncode:
        raise SystemExit(f"a fresh process failed: {res.stderr[-2000:]}")
    return wall, res.stdout


def cold_start(root: Path, question: str, make: str) -> dict:
    """Time a fresh process: imports, embedder load + index from cache, first question."""
    wall, out = run_fresh(COLD.format(root=str(root), base=BASE, q=question, make=make))
    imp, load, first = (float(x) for x in out.split()[-3:])
    return {"process_s": wall, "import_s": imp, "load_s": load, "first_route_ms": first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reference", type=Path, default=REPO / "../shared/reference/gossip-handshake"
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="mlx-lm SmolLM2 folder (default: <home>/models/smollm2-135m-instruct if present)",
    )
    parser.add_argument("--home", default=None, help="fieldkit home (default: $FIELDKIT_HOME)")
    parser.add_argument(
        "--only",
        choices=(
            "sets",
            "citations",
            "cover-curve",
            "everyday-sweep",
            "small-libraries",
            "accuracy",
            "latency",
        ),  # fmt: skip
        default=None,
    )
    parser.add_argument("--ood", type=Path, default=REPO / "bench/data/out_of_domain.txt")
    parser.add_argument("--heldout", type=Path, default=REPO / "bench/data/reference_heldout.jsonl")
    parser.add_argument(
        "--margins", default="0", help="margin thresholds to try, comma-separated (default: 0)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument(
        "--everyday-first",
        type=int,
        default=None,
        help="sets: the routers that hold the everyday list hold only its first N questions "
        "(the list as it was: 638 before the third writer's 400)",
    )
    parser.add_argument(
        "--int8", action="store_true", help="MiniLM with dynamic int8 Linear layers"
    )
    parser.add_argument(
        "--torch",
        action="store_true",
        help="MiniLM in torch (sentence-transformers), not fieldkit's NumPy copy of it",
    )
    parser.add_argument(
        "--no-phrasings",
        action="store_true",
        help="packets whose exemplars are their training questions alone and whose note "
        "passages list no phrasings, as before packets carried the phrasings",
    )
    parser.add_argument(
        "--read",
        action="store_true",
        help="citations: reorder the passages ranked first as the base model (--model) reads "
        "them, as `ask` does",
    )
    parser.add_argument(
        "--sets", default="", help="citations: these demo sets alone, comma-separated"
    )
    parser.add_argument(
        "--embedder-dir",
        type=Path,
        default=None,
        help="another MiniLM folder (one bench/bench_embedder_tune.py made)",
    )
    args = parser.parse_args()
    if args.model is None:
        args.model = Home.resolve(args.home).models_dir / "smollm2-135m-instruct"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.int8 or args.torch:  # the torch model (its int8 variant needs it)
        inner = MiniLMEmbedder(quantize=args.int8, model_dir=args.embedder_dir)
    else:  # what fieldkit routes with: the same vectors, in NumPy
        inner = NumpyMiniLM(model_dir=args.embedder_dir)
    embedder = MemoEmbedder(inner.load())
    datasets = [load_demo(not args.no_phrasings)]
    if args.reference.is_dir() and args.heldout.is_file():
        reference = load_reference(args.reference.resolve(), args.heldout, not args.no_phrasings)
        datasets += [reference, combine("all", datasets[0], reference)]  # last: calibration
    ood = [x.strip() for x in args.ood.read_text().splitlines() if x.strip()]
    results: dict = {}
    reference_dir = args.reference.resolve() if args.reference.is_dir() else None
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "sets"):
            variants = VARIANTS
            if args.everyday_first is not None:
                first = everyday_questions()[: args.everyday_first]
                variants = tuple(
                    (label, notes, options if "everyday" in options else {"everyday": first})
                    for label, notes, options in VARIANTS
                )
            results["sets"] = sets_report(
                datasets, reference_dir, embedder, Path(tmp), variants, not args.no_phrasings
            )
            results["sets_loadavg_1min"] = os.getloadavg()[0]
        if args.only in (None, "citations"):
            reader, engine = None, None
            if args.read:
                from fieldkit.answering import engine_reader
                from fieldkit.engine.engine import Engine

                engine = Engine(args.model)
                reader = engine_reader(engine)
            started = time.perf_counter()
            only = tuple(x for x in args.sets.split(",") if x)
            results["citations"] = citations_report(
                reference_dir, embedder, Path(tmp), not args.no_phrasings, reader, only
            )
            results["citations_s"] = round(time.perf_counter() - started, 1)
            if engine is not None:
                engine.close()
            results["citations_loadavg_1min"] = os.getloadavg()[0]
        if args.only in (None, "cover-curve"):
            results["cover_curve"] = cover_curve(
                reference_dir, embedder, Path(tmp), not args.no_phrasings
            )
            results["cover_curve_loadavg_1min"] = os.getloadavg()[0]
        if args.only in (None, "everyday-sweep"):
            results["everyday_sweep"] = everyday_sweep(datasets, reference_dir, embedder, Path(tmp))
            results["everyday_sweep_loadavg_1min"] = os.getloadavg()[0]
        if args.only in (None, "small-libraries"):
            results["small_libraries"] = small_libraries(embedder, Path(tmp))
            results["small_libraries_loadavg_1min"] = os.getloadavg()[0]
        if args.only in (None, "accuracy"):
            margins = tuple(float(m) for m in args.margins.split(","))
            results["accuracy"] = accuracy(
                datasets, ood, embedder, args.model, Path(tmp), margins=margins
            )
        if args.only in (None, "latency"):
            questions = [q for d in datasets for _, q in d.questions][:200]
            results["latency"] = latency(questions, embedder.inner, Path(tmp))
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
