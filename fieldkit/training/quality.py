"""The quality harness: train or reuse specialists, merge them, answer and score.

Used by `fieldkit bench quality` (fieldkit/commands/bench_quality.py). For each domain a
specialist is trained (or reused); then every question is answered, greedily, by the base
model, each specialist, merges of all specialists, fieldkit's router choosing among the
specialists, and the oracle (each question sent to its own domain's specialist). Answers
come from mlx-lm's batched greedy generation and are cached in the output folder, so a
rerun only generates what changed. Packets with notes and grounded answers are in
fieldkit/training/quality_notes.py.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from fieldkit.errors import FieldkitError


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


class _Quiet:
    """A training progress display that shows nothing."""

    def __call__(self, progress: Any) -> None:
        pass

    def close(self) -> None:
        pass


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


def report_json(scores: list, answers: list) -> str:
    from fieldkit.training.evaluate import to_json

    return to_json(scores, answers, {})


def claim_folder(out_dir: Path) -> IO[str]:
    """Lock the benchmark folder for this process; return the open lock file (closing it,
    or the process ending, releases it).

    Two runs on one folder would replace each other's packets in its library, so the
    router of one would find packets the other put there. Raises FieldkitError when
    another process holds the folder.
    """
    import fcntl

    out_dir.mkdir(parents=True, exist_ok=True)
    handle = (out_dir / ".lock").open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise FieldkitError(
            f"Another `bench quality` run is using {out_dir}: wait for it to finish, or give "
            "this run a folder of its own (--out)."
        ) from None
    return handle


class QualityRun:
    """The trained specialists, merges and cached answers of one benchmark folder."""

    def __init__(
        self,
        svc: Any,
        out_dir: Path,
        base_id: str,
        fingerprint: str,
        max_tokens: int,
        log: Callable[..., None] = _stderr,
        progress: Callable[[], Any] = lambda: _Quiet(),
        raw: bool = False,
    ) -> None:
        from fieldkit.home import Home
        from fieldkit.store.identity import Identity
        from fieldkit.store.library import Library

        self.svc, self.out, self.base_id, self.fingerprint = svc, out_dir, base_id, fingerprint
        self.max_tokens = max_tokens
        self.raw = raw  # score the text as generated, not as clean decoding shows it
        self.log = log
        self.progress = progress  # makes a training progress display: call(p), close()
        svc._closers.append(claim_folder(out_dir).close)  # one run per folder at a time
        home = Home(out_dir / "home").ensure()
        self.library = Library.open(home, identity=Identity.load_or_create(home))
        svc._closers.append(self.library.close)
        self.adapters: dict[str, Any] = {}  # system name -> Adapter
        self.records: dict[str, Any] = {}  # domain -> PacketRecord of its specialist
        self.training: dict[str, Any] = {}
        self.routing: dict[str, Any] = {}
        self.merge_systems: list[str] = []  # scored merges, in the suite's order
        self.merge_info: dict[str, Any] = {}  # cost in seconds and recipe of each
        self.favoured: dict[str, dict[str, str]] = {}  # merge -> domain -> its adapter
        self.cache_path = out_dir / "answers.jsonl"
        # an answer as generated, and whether the model ended it (see shown)
        self.cache: dict[tuple[str, str, int], tuple[str, bool | None]] = {}
        self._shown: dict[tuple[str, str, int], str] = {}  # cleaned once, when first read
        self.seconds: dict[tuple[str, str, int], float] = {}  # batched generation s/answer
        if self.cache_path.is_file():
            for line in self.cache_path.read_text().splitlines():
                row = json.loads(line)
                key = (row["adapter"], row["question"], row["max_tokens"])
                self.cache[key] = (row["text"], row.get("ended"))
                if "seconds" in row:
                    self.seconds[key] = row["seconds"]

    def answer(self, key: tuple[str, str, int]) -> str:
        """Return the cached answer of `key` (answer_key) as the harness scores it (shown)."""
        if key not in self._shown:
            self._shown[key] = self.shown(*self.cache[key])
        return self._shown[key]

    def shown(self, text: str, ended: bool | None) -> str:
        """Return a generated answer as clean decoding shows it (no run-on repeat, no half
        sentence where the token budget cut it off), or as generated with `raw`. `ended`:
        the model ended it (None, an answer cached before that was kept: taken as ended,
        so only a repeat is cut)."""
        from fieldkit.engine.clean import cleaned

        return text if self.raw else cleaned(text, natural=ended is not False)

    def specialist(
        self,
        domain: str,
        train: Path,
        paraphrases: Path | None,
        args: dict[str, Any],
        notes: list | None = None,
    ) -> None:
        """Train (or load from the cache) the domain's specialist and put it in the library,
        carrying `notes` (passages) when given."""
        from fieldkit.store.adapter import Adapter, AdapterConfig, read_safetensors
        from fieldkit.training.dataset import (
            attach_paraphrases,
            exemplars_from,
            load_records,
            read_jsonl,
        )

        records = load_records(train)
        if paraphrases is not None:
            rows = [r for r in read_jsonl(paraphrases) if r.get("domain", domain) == domain]
            records = attach_paraphrases(records, rows)
        from fieldkit.training.grounded import training_examples

        examples = training_examples(
            records, domain, grounded=bool(args.get("grounded")), expand=args["expand"]
        )
        key = _digest(train.read_text(), [asdict(r) for r in records], args, self.fingerprint)
        weights = self.out / "adapters" / f"{domain}-{key}.safetensors"
        info_path = weights.with_suffix(".json")
        if weights.is_file() and info_path.is_file():
            info = json.loads(info_path.read_text())
            config = AdapterConfig.from_mlx_dict(info["adapter"])
            adapter = Adapter(config=config, tensors=read_safetensors(weights), key=info["key"])
            self.log(f"{domain}: reusing {weights.name}")
        else:
            adapter, info = self._train(domain, examples, args)
            weights.parent.mkdir(parents=True, exist_ok=True)
            from safetensors.numpy import save_file

            save_file(adapter.tensors, str(weights))
            info_path.write_text(json.dumps(info, indent=1))
        self.training[domain] = {k: v for k, v in info.items() if k not in {"adapter", "key"}}
        self.adapters[f"spec:{domain}"] = adapter
        self.put_packet(
            domain,
            adapter,
            description=f"{domain.replace('_', ' ')} specialist",
            exemplars=exemplars_from(records, examples),
            notes=notes or None,
        )

    def put_packet(self, domain: str, adapter: Any, **fields: Any) -> None:
        """Sign `adapter` into the run's library as the domain's packet (named after the
        domain, replacing an earlier one) and keep its record; `fields` are the rest of
        Library.add_local's (description, exemplars, notes)."""
        for old in self.library.list_packets():
            if old.name == domain:
                self.library.remove(old.packet_id)
        self.records[domain] = self.library.add_local(
            adapter,
            name=domain,
            domain=domain,
            base_model_id=self.base_id,
            base_fingerprint=self.fingerprint,
            **fields,
        )

    def _train(self, domain: str, examples: list, args: dict[str, Any]) -> tuple[Any, dict]:
        from fieldkit.training.train import TrainConfig, train_lora

        config = TrainConfig(
            rank=args["rank"],
            num_layers=args["layers"],
            iters=args["iters"],
            learning_rate=args["lr"],
            time_budget_s=60.0 * args["minutes"],
        )
        self.log(f"{domain}: training on {len(examples)} examples")
        progress = self.progress()
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

    def merges(
        self, domains: list[str], density: float, factorwise: bool, recipes: str | None = None
    ) -> None:
        """Build and time the merge suite's recipes (fieldkit/training/merge_suite.py; None:
        all of them; `density` is the "ties" recipe's), plus the factor-wise TIES if asked."""
        import dataclasses

        from fieldkit.training.merge import MergeSpec, merge_adapters
        from fieldkit.training.merge_suite import build_suite, choose

        chosen = [
            dataclasses.replace(r, spec=lambda n: MergeSpec("ties", density))
            if r.name == "ties"
            else r
            for r in choose(recipes)
        ]
        parts = [self.adapters[f"spec:{d}"] for d in domains]
        exemplars = [q for d in domains for q in self.records[d].exemplars]
        suite = build_suite(chosen, domains, parts, exemplars, self.svc.model_dir, log=self.log)
        self.adapters |= suite.adapters
        self.favoured = suite.favoured
        self.merge_systems = [r.name for r in chosen if r.name in suite.seconds]
        self.merge_info = {
            name: {"seconds": suite.seconds[name], "recipe": suite.recipes[name]}
            for name in self.merge_systems
        }
        if factorwise:
            spec = MergeSpec("ties", density, factorwise=True)
            self.adapters["ties-factorwise"] = merge_adapters(parts, spec)
            self.merge_systems.append("ties-factorwise")

    def merge_system(self, system: str, domain: str) -> str:
        """Return the adapter that answers a question of that domain for a system."""
        return self.favoured.get(system, {}).get(domain, system)

    def routed_merge(self, merge: str, routed: str | None) -> str:
        """Return the adapter of a merge for a question the router sent to `routed`: for a
        favouring merge the one favouring that packet (the base model on abstention), else
        the merge itself."""
        if merge in self.favoured:
            return self.favoured[merge][routed] if routed else "base"
        return merge

    def answer_key(self, system: str, question: str) -> tuple[str, str, int]:
        """Return the answer cache's key of a system's answer to a question."""
        adapter = self.adapters.get(system)
        return (adapter.key if adapter is not None else "base", question, self.max_tokens)

    def prefetch(self, pairs: list[tuple[str, str]]) -> None:
        """Generate every (system, question) answer not cached yet, one batch per system."""
        from fieldkit.training.train import generate_ended

        todo: dict[str, list[str]] = {}
        for system, question in pairs:
            if self.answer_key(system, question) not in self.cache:
                todo.setdefault(system, [])
                if question not in todo[system]:
                    todo[system].append(question)
        for system, questions in todo.items():
            self.log(f"{system}: answering {len(questions)} questions")
            adapter = self.adapters.get(system)
            started = time.perf_counter()
            texts = generate_ended(self.svc.model_dir, adapter, questions, self.max_tokens)
            each = (time.perf_counter() - started) / len(questions)
            with self.cache_path.open("a") as fh:
                for question, (text, ended) in zip(questions, texts, strict=True):
                    key = self.answer_key(system, question)
                    self.cache[key] = (text, ended)
                    self.seconds[key] = each
                    row = {"adapter": key[0], "question": question, "max_tokens": key[2]}
                    row |= {"system": system, "text": text, "ended": ended}
                    row |= {"seconds": round(each, 3)}
                    fh.write(json.dumps(row) + "\n")

    def answer_all(
        self, name: str, questions: list, domains: list[str], cross: bool = True
    ) -> list:
        """Answer every question with every system; return the Answers, unscored.

        With cross=False the specialists answer only what the oracle and the router need,
        and the per-specialist rows are left out.
        """
        from fieldkit.router.router import Router
        from fieldkit.training.evaluate import Answer

        router = Router(self.library, base_fingerprint=self.fingerprint)
        by_id = {r.packet_id: d for d, r in self.records.items()}
        merges = self.merge_systems
        specs = [f"spec:{d}" for d in domains] if cross else []
        systems = ["base", *specs, *merges]
        routes = {}
        for q in questions:
            decision = router.route(q.question)
            routes[q.question] = by_id.get(decision.packet_id or "")
        # Greedy decoding is deterministic: the routed answer is the chosen specialist's
        # answer (or the base model's when the router abstains).
        pairs = [(self.merge_system(s, q.domain), q.question) for q in questions for s in systems]
        # A favouring merge ("specialist + generalist") chosen by the router instead of the
        # oracle: the merge that favours the routed packet (the base model on abstention).
        chosen = {f"{merge} routed": merge for merge in self.favoured}
        for q in questions:
            routed = routes[q.question]
            pairs.append((f"spec:{routed}" if routed else "base", q.question))
            pairs.append((f"spec:{q.domain}", q.question))
            pairs += [(self.routed_merge(m, routed), q.question) for m in chosen.values()]
        self.prefetch(pairs)
        answers: list[Answer] = []
        hits = 0
        for q in questions:
            texts = {
                s: self.answer(self.answer_key(self.merge_system(s, q.domain), q.question))
                for s in systems
            }
            routed = routes[q.question]
            hits += routed == q.domain
            texts["routed"] = self.answer(
                self.answer_key(f"spec:{routed}" if routed else "base", q.question)
            )
            texts["oracle"] = self.answer(self.answer_key(f"spec:{q.domain}", q.question))
            for system, merge in chosen.items():
                adapter = self.routed_merge(merge, routed)
                texts[system] = self.answer(self.answer_key(adapter, q.question))
            answers += [Answer(s, q, t) for s, t in texts.items()]
        self.routing[name] = {"correct": hits, "questions": len(questions), "routes": routes}
        order = [*systems, *chosen, "routed", "oracle"]
        answers.sort(key=lambda a: order.index(a.system))
        return answers

    def reuse_packet(self, domain: str, library: Any, notes: list | None = None) -> None:
        """Use the packet of that domain from another library as the domain's specialist,
        with its own notes, else `notes` (passages) when given."""
        matches = [r for r in library.list_packets() if r.domain == domain and not r.merged]
        if not matches:
            raise FieldkitError(f"The library to reuse has no packet for the domain {domain!r}.")
        record = matches[-1]
        adapter = library.load_adapter(record)
        self.adapters[f"spec:{domain}"] = adapter
        self.training[domain] = {"packet": record.name, "packet_id": record.packet_id}
        from fieldkit.store.notes import notes_of

        self.put_packet(
            domain,
            adapter,
            description=record.description,
            exemplars=record.exemplars,
            notes=notes_of(record.manifest) or notes or None,
        )


def domain_notes(data: Path, domain: str, paraphrases: Path | None = None) -> list:
    """Return a domain's training records as note passages (fieldkit.store.notes), each
    with its phrasings from the domain's paraphrases file or `paraphrases` (as `train
    --notes --paraphrases` stores them), [] when the data folder has none for it."""
    from fieldkit.training.dataset import (
        attach_paraphrases,
        load_records,
        notes_from_records,
        read_jsonl,
    )

    try:
        train, para = training_files(data, domain)
    except FieldkitError:
        return []  # no records here (packets reused from a library): no notes to add
    records = load_records(train)
    for path in (para, paraphrases):
        if path is not None:
            rows = [r for r in read_jsonl(path) if r.get("domain", domain) == domain]
            records = attach_paraphrases(records, rows)
    return notes_from_records(records)
