"""`fieldkit bench quality`: does routing between experts beat merging them? Measure it.

For each domain a specialist is trained (or reused from the output folder's cache); then
every question is answered, greedily, by: the base model; each specialist; a dense TIES
merge and a dense linear merge of all specialists (optionally the factor-wise TIES of the
reference); fieldkit's router choosing among the specialists; and the oracle (each
question sent to its own domain's specialist). Answers come from mlx-lm's batched greedy
generation (32 questions share each weight read; one at a time runs at a few tokens/s on
a shared CPU) and are cached too, so a rerun only generates what changed. Output: markdown tables, a terminal bar chart, and a JSON file.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from fieldkit.commands import services
from fieldkit.errors import FieldkitError


def training_files(data: Path, domain: str) -> tuple[Path, Path | None]:
    """Return (train jsonl, paraphrases jsonl or None) of a domain in a data folder.

    Two layouts: the demo's `<data>/<domain>/train.jsonl` (+ paraphrases.jsonl) and the
    reference corpus's `<data>/<domain>.jsonl`.
    """
    nested = data / domain / "train.jsonl"
    if nested.is_file():
        para = data / domain / "paraphrases.jsonl"
        return nested, para if para.is_file() else None
    flat = data / f"{domain}.jsonl"
    if flat.is_file():
        return flat, None
    raise FieldkitError(f"No training data for the domain {domain!r} in {data}.")


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


@click.command("quality")
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--questions",
    "question_files",
    required=True,
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Held-out questions (jsonl: domain, question, expected_keywords); repeatable. "
    "Files with the same name form one question set.",
)
@click.option("--domains", default=None, help="Comma-separated domains (default: all asked).")
@click.option(
    "--paraphrases",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Training paraphrases (jsonl: domain, source, questions) for the flat layout.",
)
@click.option("--out", "out_dir", default="bench/out/quality", type=click.Path(path_type=Path))
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--iters", default=150, show_default=True)
@click.option("--rank", default=8, show_default=True)
@click.option("--layers", default=8, show_default=True)
@click.option("--lr", "learning_rate", default=1e-3, show_default=True)
@click.option("--minutes", default=12.0, show_default=True, help="Training budget per specialist.")
@click.option("--no-expand", is_flag=True, help="Train on the records as given.")
@click.option("--density", default=0.5, show_default=True)
@click.option("--factorwise", is_flag=True, help="Also score the factor-wise (PEFT) TIES merge.")
@click.option("--max-tokens", default=128, show_default=True)
@click.option(
    "--from-library",
    "reuse_home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Take each domain's specialist from the packets in this home instead of training.",
)
@click.option(
    "--cross/--no-cross",
    default=True,
    show_default=True,
    help="Score every specialist on every domain (--no-cross: only what oracle and router need).",
)
def quality(
    data_dir: Path,
    question_files: tuple[Path, ...],
    domains: str | None,
    paraphrases: Path | None,
    out_dir: Path,
    json_path: Path | None,
    iters: int,
    rank: int,
    layers: int,
    learning_rate: float,
    minutes: float,
    no_expand: bool,
    density: float,
    factorwise: bool,
    max_tokens: int,
    reuse_home: Path | None,
    cross: bool,
) -> None:
    """Train or reuse one specialist per domain, then score base, specialists, merges, routed, oracle."""
    from fieldkit.training.dataset import read_jsonl
    from fieldkit.training.evaluate import parse_questions

    svc = services()
    base_id, fingerprint, _ = svc.require_model()
    sets: dict[str, list] = {}
    for path in question_files:
        sets.setdefault(path.stem, []).extend(parse_questions(read_jsonl(path), path.name))
    asked = list(dict.fromkeys(q.domain for qs in sets.values() for q in qs))
    chosen = [d.strip() for d in domains.split(",")] if domains else asked
    for name in sets:
        sets[name] = [q for q in sets[name] if q.domain in chosen]
    if len(chosen) < 2:
        raise FieldkitError("The quality benchmark needs at least two domains.")
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    run = QualityRun(svc, out_dir, base_id, fingerprint, max_tokens)
    train_args = {
        "iters": iters,
        "rank": rank,
        "layers": layers,
        "lr": learning_rate,
        "minutes": minutes,
        "expand": not no_expand,
    }
    if reuse_home is not None:
        from fieldkit.home import Home
        from fieldkit.store.library import Library

        other = Library.open(Home(reuse_home))
        try:
            for domain in chosen:
                run.reuse_packet(domain, other)
        finally:
            other.close()
    else:
        for domain in chosen:
            train, para = training_files(data_dir, domain)
            run.specialist(domain, train, para or paraphrases, train_args)
    run.merges(chosen, density, factorwise)
    reports = {}
    for name, questions in sets.items():
        reports[name] = run.answer_and_score(name, questions, chosen, cross)
    meta = {
        "model": base_id,
        "fingerprint": fingerprint,
        "domains": chosen,
        "train": train_args if reuse_home is None else f"packets from {reuse_home}",
        "density": density,
        "max_tokens": max_tokens,
        "minutes_total": round((time.perf_counter() - started) / 60, 1),
        "training": run.training,
        "routing": run.routing,
    }
    from fieldkit.training.evaluate import bar_chart, markdown_table

    document: dict[str, Any] = {"meta": meta, "sets": {}}
    for name, (scores, answers) in reports.items():
        click.echo(f"\n## {name} ({len(sets[name])} questions)\n")
        click.echo(markdown_table(scores))
        click.echo("\n" + bar_chart(scores))
        document["sets"][name] = json.loads(_report_json(scores, answers))
    target = json_path or out_dir / "quality.json"
    target.write_text(json.dumps(document, indent=1))
    click.echo(f"\nJSON: {target} ({meta['minutes_total']} min)")


def _report_json(scores: list, answers: list) -> str:
    from fieldkit.training.evaluate import to_json

    return to_json(scores, answers, {})


class QualityRun:
    """The trained specialists, merges and cached answers of one benchmark folder."""

    def __init__(
        self, svc: Any, out_dir: Path, base_id: str, fingerprint: str, max_tokens: int
    ) -> None:
        from fieldkit.home import Home
        from fieldkit.store.identity import Identity
        from fieldkit.store.library import Library

        self.svc, self.out, self.base_id, self.fingerprint = svc, out_dir, base_id, fingerprint
        self.max_tokens = max_tokens
        home = Home(out_dir / "home").ensure()
        self.library = Library.open(home, identity=Identity.load_or_create(home))
        svc._closers.append(self.library.close)
        self.adapters: dict[str, Any] = {}  # system name -> Adapter
        self.records: dict[str, Any] = {}  # domain -> PacketRecord of its specialist
        self.training: dict[str, Any] = {}
        self.routing: dict[str, Any] = {}
        self.cache_path = out_dir / "answers.jsonl"
        self.cache: dict[tuple[str, str, int], str] = {}
        if self.cache_path.is_file():
            for line in self.cache_path.read_text().splitlines():
                row = json.loads(line)
                self.cache[(row["adapter"], row["question"], row["max_tokens"])] = row["text"]

    def specialist(
        self, domain: str, train: Path, paraphrases: Path | None, args: dict[str, Any]
    ) -> None:
        """Train (or load from the cache) the domain's specialist and put it in the library."""
        from fieldkit.store.adapter import Adapter, AdapterConfig, read_safetensors
        from fieldkit.training.dataset import (
            attach_paraphrases,
            build_examples,
            exemplars_from,
            load_records,
            read_jsonl,
        )

        records = load_records(train)
        if paraphrases is not None:
            rows = [r for r in read_jsonl(paraphrases) if r.get("domain", domain) == domain]
            records = attach_paraphrases(records, rows)
        examples = build_examples(records, domain, expand=args["expand"])
        key = _digest(train.read_text(), [asdict(r) for r in records], args, self.fingerprint)
        weights = self.out / "adapters" / f"{domain}-{key}.safetensors"
        info_path = weights.with_suffix(".json")
        if weights.is_file() and info_path.is_file():
            info = json.loads(info_path.read_text())
            config = AdapterConfig.from_mlx_dict(info["adapter"])
            adapter = Adapter(config=config, tensors=read_safetensors(weights), key=info["key"])
            click.echo(f"{domain}: reusing {weights.name}", err=True)
        else:
            adapter, info = self._train(domain, examples, args)
            weights.parent.mkdir(parents=True, exist_ok=True)
            from safetensors.numpy import save_file

            save_file(adapter.tensors, str(weights))
            info_path.write_text(json.dumps(info, indent=1))
        self.training[domain] = {k: v for k, v in info.items() if k not in {"adapter", "key"}}
        self.adapters[f"spec:{domain}"] = adapter
        for old in self.library.list_packets():
            if old.name == domain:
                self.library.remove(old.packet_id)
        self.records[domain] = self.library.add_local(
            adapter,
            name=domain,
            domain=domain,
            description=f"{domain.replace('_', ' ')} specialist",
            exemplars=exemplars_from(records, examples),
            base_model_id=self.base_id,
            base_fingerprint=self.fingerprint,
        )

    def _train(self, domain: str, examples: list, args: dict[str, Any]) -> tuple[Any, dict]:
        from fieldkit.commands.train import ProgressLine
        from fieldkit.training.train import TrainConfig, train_lora

        config = TrainConfig(
            rank=args["rank"],
            num_layers=args["layers"],
            iters=args["iters"],
            learning_rate=args["lr"],
            time_budget_s=60.0 * args["minutes"],
        )
        click.echo(f"{domain}: training on {len(examples)} examples", err=True)
        progress = ProgressLine()
        try:
            result = train_lora(self.svc.model_dir, examples, config, on_progress=progress)
        finally:
            progress.close()
        info = {
            "adapter": result.adapter.config.to_mlx_dict(),
            "key": result.adapter.key,
            "examples": len(examples),
            "iterations": result.iterations,
            "best_iteration": result.best_iteration,
            "best_val_loss": result.best_val_loss,
            "stopped_early": result.stopped_early,
            "minutes": round(result.seconds / 60, 1),
            "val_history": result.val_history,
        }
        return result.adapter, info

    def merges(self, domains: list[str], density: float, factorwise: bool) -> None:
        """Build the dense TIES and linear merges (and the factor-wise TIES if asked)."""
        from fieldkit.training.merge import MergeSpec, merge_adapters

        parts = [self.adapters[f"spec:{d}"] for d in domains]
        self.adapters["ties"] = merge_adapters(parts, MergeSpec("ties", density))
        self.adapters["linear"] = merge_adapters(parts, MergeSpec("linear"))
        if factorwise:
            spec = MergeSpec("ties", density, factorwise=True)
            self.adapters["ties-factorwise"] = merge_adapters(parts, spec)

    def _key(self, system: str, question: str) -> tuple[str, str, int]:
        adapter = self.adapters.get(system)
        return (adapter.key if adapter is not None else "base", question, self.max_tokens)

    def prefetch(self, pairs: list[tuple[str, str]]) -> None:
        """Generate every (system, question) answer not cached yet, one batch per system."""
        from fieldkit.training.train import generate_batch

        todo: dict[str, list[str]] = {}
        for system, question in pairs:
            if self._key(system, question) not in self.cache:
                todo.setdefault(system, [])
                if question not in todo[system]:
                    todo[system].append(question)
        for system, questions in todo.items():
            click.echo(f"{system}: answering {len(questions)} questions", err=True)
            adapter = self.adapters.get(system)
            texts = generate_batch(self.svc.model_dir, adapter, questions, self.max_tokens)
            with self.cache_path.open("a") as fh:
                for question, text in zip(questions, texts, strict=True):
                    key = self._key(system, question)
                    self.cache[key] = text
                    row = {"adapter": key[0], "question": question, "max_tokens": key[2]}
                    fh.write(json.dumps(row | {"system": system, "text": text}) + "\n")

    def answer_and_score(
        self, name: str, questions: list, domains: list[str], cross: bool = True
    ) -> tuple:
        """Answer every question with every system; return (scores, answers).

        With cross=False the specialists answer only what the oracle and the router need,
        and the per-specialist rows are left out.
        """
        from fieldkit.router.router import Router
        from fieldkit.training.evaluate import Answer, score

        router = Router(self.library, base_fingerprint=self.fingerprint)
        by_id = {r.packet_id: d for d, r in self.records.items()}
        merges = [s for s in ("ties", "ties-factorwise", "linear") if s in self.adapters]
        specs = [f"spec:{d}" for d in domains] if cross else []
        systems = ["base", *specs, *merges]
        routes = {}
        for q in questions:
            decision = router.route(q.question)
            routes[q.question] = by_id.get(decision.packet_id or "")
        # Greedy decoding is deterministic: the routed answer is the chosen specialist's
        # answer (or the base model's when the router abstains).
        pairs = [(s, q.question) for q in questions for s in systems]
        for q in questions:
            routed = routes[q.question]
            pairs.append((f"spec:{routed}" if routed else "base", q.question))
            pairs.append((f"spec:{q.domain}", q.question))
        self.prefetch(pairs)
        answers: list[Answer] = []
        hits = 0
        for q in questions:
            texts = {system: self.cache[self._key(system, q.question)] for system in systems}
            routed = routes[q.question]
            hits += routed == q.domain
            texts["routed"] = self.cache[
                self._key(f"spec:{routed}" if routed else "base", q.question)
            ]
            texts["oracle"] = self.cache[self._key(f"spec:{q.domain}", q.question)]
            answers += [Answer(s, q, t) for s, t in texts.items()]
        self.routing[name] = {"correct": hits, "questions": len(questions)}
        order = [*systems, "routed", "oracle"]
        answers.sort(key=lambda a: order.index(a.system))
        return score(answers), answers

    def reuse_packet(self, domain: str, library: Any) -> None:
        """Use the packet of that domain from another library as the domain's specialist."""
        matches = [r for r in library.list_packets() if r.domain == domain and not r.merged]
        if not matches:
            raise FieldkitError(f"The library to reuse has no packet for the domain {domain!r}.")
        record = matches[-1]
        adapter = library.load_adapter(record)
        self.adapters[f"spec:{domain}"] = adapter
        self.training[domain] = {"packet": record.name, "packet_id": record.packet_id}
        for old in self.library.list_packets():
            if old.name == domain:
                self.library.remove(old.packet_id)
        self.records[domain] = self.library.add_local(
            adapter,
            name=domain,
            domain=domain,
            description=record.description,
            exemplars=record.exemplars,
            base_model_id=self.base_id,
            base_fingerprint=self.fingerprint,
        )
