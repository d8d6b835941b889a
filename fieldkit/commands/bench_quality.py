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

import json
import time
from pathlib import Path
from typing import Any

import click

from fieldkit.commands import services
from fieldkit.commands.train import ProgressLine
from fieldkit.errors import FieldkitError
from fieldkit.training.evaluate import score
from fieldkit.training.quality import QualityRun, domain_notes, report_json, training_files
from fieldkit.training.quality_notes import notes_answers, notes_packet


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
@click.option(
    "--out",
    "out_dir",
    default="bench/out/quality",
    type=click.Path(path_type=Path),
    help="Folder for the run: its home, trained specialists, merges and answers.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the scores here.",
)
@click.option("--iters", default=150, show_default=True, help="Most steps per specialist.")
@click.option("--rank", default=8, show_default=True, help="LoRA rank of each specialist.")
@click.option("--layers", default=8, show_default=True, help="LoRA on the last N layers.")
@click.option("--lr", "learning_rate", default=1e-3, show_default=True)
@click.option("--minutes", default=12.0, show_default=True, help="Training budget per specialist.")
@click.option("--no-expand", is_flag=True, help="Train on the records as given.")
@click.option(
    "--grounded",
    is_flag=True,
    help="Train each specialist with the notes recipe (`fieldkit train --grounded`).",
)
@click.option("--density", default=0.5, show_default=True)
@click.option("--factorwise", is_flag=True, help="Also score the factor-wise (PEFT) TIES merge.")
@click.option(
    "--merges",
    "merge_recipes",
    default=None,
    help="Comma-separated merge recipes to score (default: the whole suite, "
    "fieldkit/training/merge_suite.py).",
)
@click.option(
    "--merges-with-notes",
    "notes_merges",
    default=None,
    help="Comma-separated merges (of --merges) to score also with the routed packet's "
    "passages in the prompt, as `<merge>+notes`: what routed+notes reads, with the merged "
    "adapter instead of the routed packet's.",
)
@click.option("--max-tokens", default=128, show_default=True)
@click.option(
    "--from-library",
    "reuse_home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Take each domain's specialist from the packets in this home instead of training.",
)
@click.option(
    "--notes/--no-notes",
    "with_notes",
    default=True,
    show_default=True,
    help="Also score answers grounded in each packet's notes (base+notes, routed+notes, "
    "oracle+notes); a packet without notes gets its domain's training records as notes.",
)
@click.option(
    "--bare/--no-bare",
    default=True,
    show_default=True,
    help="Score the systems that answer without notes too (base, specialists, merges, "
    "routed, oracle); --no-bare: the notes systems alone, e.g. at another --max-tokens.",
)
@click.option(
    "--notes-only",
    is_flag=True,
    help="Train nothing: each domain's packet carries only exemplars and notes; score the "
    "base model with and without them.",
)
@click.option(
    "--cross/--no-cross",
    default=True,
    show_default=True,
    help="Score every specialist on every domain (--no-cross: only what oracle and router need).",
)
@click.option(
    "--raw",
    is_flag=True,
    help="Score each answer as the model generated it, not as `ask` shows it (clean "
    "decoding: no run-on repeat, no half sentence at the token budget).",
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
    grounded: bool,
    density: float,
    factorwise: bool,
    merge_recipes: str | None,
    notes_merges: str | None,
    max_tokens: int,
    reuse_home: Path | None,
    with_notes: bool,
    bare: bool,
    notes_only: bool,
    cross: bool,
    raw: bool,
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
    from fieldkit.training.merge_suite import choose

    scored = {r.name for r in choose(merge_recipes)}  # an unknown recipe stops the run here
    with_merges = [r.name for r in choose(notes_merges)] if notes_merges else []
    unscored = [m for m in with_merges if m not in scored]
    if unscored:
        raise FieldkitError(
            f"--merges-with-notes names {unscored[0]!r}, which --merges leaves out."
        )
    if with_merges and (notes_only or not with_notes):
        raise FieldkitError("--merges-with-notes needs the notes systems (leave out --no-notes).")
    if not bare and (notes_only or not with_notes):
        raise FieldkitError("--no-bare leaves only the notes systems: leave out --no-notes.")
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    run = QualityRun(svc, out_dir, base_id, fingerprint, max_tokens, progress=ProgressLine, raw=raw)
    train_args = {
        "iters": iters,
        "rank": rank,
        "layers": layers,
        "lr": learning_rate,
        "minutes": minutes,
        "expand": not no_expand,
    }
    if grounded:  # only when set, so the cache keys of bare-question specialists stay
        train_args["grounded"] = True
    with_them = with_notes or notes_only
    notes = {d: domain_notes(data_dir, d, paraphrases) for d in chosen} if with_them else {}
    if notes_only:
        from fieldkit.training.dataset import build_examples, exemplars_from, load_records

        for domain in chosen:
            records = load_records(training_files(data_dir, domain)[0])
            examples = build_examples(records, domain, expand=True)  # phrasings to top up
            notes_packet(run, domain, exemplars_from(records, examples), notes[domain])
    elif reuse_home is not None:
        from fieldkit.home import Home
        from fieldkit.store.library import Library

        other = Library.open(Home(reuse_home))
        try:
            for domain in chosen:
                run.reuse_packet(domain, other, notes.get(domain))
        finally:
            other.close()
    else:
        for domain in chosen:
            train, para = training_files(data_dir, domain)
            run.specialist(domain, train, para or paraphrases, train_args, notes.get(domain))
    collected: dict[str, list] = {name: [] for name in sets}
    for name, questions in sets.items():  # grounded answers first: the cheapest to read
        if notes_only:
            collected[name] += notes_answers(run, name, questions, ("base", "base+notes"))
        elif with_notes:
            collected[name] += notes_answers(run, name, questions)
    if not notes_only and (bare or with_merges):
        # --no-bare: only the merges answering with notes are built.
        run.merges(chosen, density, factorwise and bare, merge_recipes if bare else notes_merges)
        for name, questions in sets.items():
            if bare:
                collected[name][:0] = run.answer_all(name, questions, chosen, cross)
            if with_merges:
                systems = tuple(f"{m}+notes" for m in with_merges)
                collected[name] += notes_answers(run, name, questions, systems)
    reports = {name: (score(answers), answers) for name, answers in collected.items()}
    meta = {
        "model": base_id,
        "fingerprint": fingerprint,
        "domains": chosen,
        "train": "none (notes only)"
        if notes_only
        else train_args
        if reuse_home is None
        else f"packets from {reuse_home}",
        "density": density,
        "max_tokens": max_tokens,
        "answers": "as generated" if raw else "as shown (clean decoding)",
        "minutes_total": round((time.perf_counter() - started) / 60, 1),
        "training": run.training,
        "routing": run.routing,
        "merges": run.merge_info,
    }
    from fieldkit.training.evaluate import bar_chart, markdown_table, summary_table

    document: dict[str, Any] = {"meta": meta, "sets": {}}
    for name, (scores, answers) in reports.items():
        click.echo(f"\n## {name} ({len(sets[name])} questions)\n")
        click.echo(markdown_table(scores))
        routing = run.routing.get(name)
        share = routing["correct"] / max(routing["questions"], 1) if routing else None
        click.echo("\n" + summary_table(scores, share))
        click.echo("\n" + bar_chart(scores))
        document["sets"][name] = json.loads(report_json(scores, answers))
    costs = ", ".join(f"{k} {v['seconds']} s" for k, v in run.merge_info.items())
    click.echo(f"\nMerge cost: {costs}")
    target = json_path or out_dir / "quality.json"
    target.write_text(json.dumps(document, indent=1))
    click.echo(f"\nJSON: {target} ({meta['minutes_total']} min)")
