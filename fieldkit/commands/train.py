"""`fieldkit train DATA.jsonl --name N --domain D`: LoRA on the base model into a packet."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fieldkit.commands import Finite, services
from fieldkit.errors import LibraryError
from fieldkit.store.importers import EXEMPLAR_FORMATS


def format_seconds(seconds: float) -> str:
    """Return 75 -> '1m15s', 3700 -> '1h01m'."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class ProgressLine:
    """A one-line progress bar on stderr: steps, loss, validation loss, it/s, ETA."""

    def __init__(self, width: int = 24) -> None:
        self.width = width
        self.tty = sys.stderr.isatty()

    def __call__(self, p) -> None:  # noqa: ANN001 - TrainProgress, imported lazily
        filled = round(self.width * p.iteration / max(p.total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        val = "" if p.val_loss is None else f" val {p.val_loss:.3f}"
        line = (
            f"[{bar}] {p.iteration}/{p.total} loss {p.train_loss:.3f}{val} "
            f"{p.it_per_s:.2f} it/s ETA {format_seconds(p.eta_s)}"
        )
        if self.tty:
            click.echo("\r" + line.ljust(100), nl=False, err=True)
        elif p.iteration == 1 or p.iteration % 10 == 0 or p.iteration == p.total:
            click.echo(line, err=True)

    def close(self) -> None:
        if self.tty:
            click.echo("", err=True)


@click.command("train")
@click.argument("data", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--name",
    required=True,
    help="Packet name (if another packet takes it while this one trains, this one is kept as NAME-2).",
)
@click.option("--domain", required=True, help="The field the packet knows (e.g. agronomy).")
@click.option(
    "--iters",
    default=200,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Most training steps.",
)
@click.option(
    "--rank", default=8, show_default=True, type=click.IntRange(1, 256), help="LoRA rank."
)
@click.option(
    "--layers",
    default=-1,
    show_default=True,
    type=click.IntRange(-1, 1024),
    help="LoRA on the last N layers (-1: all).",
)
@click.option("--scale", default=2.0, show_default=True, help="LoRA scale.")
@click.option(
    "--lr",
    "learning_rate",
    default=5e-4,
    show_default=True,
    type=Finite(1e-8, 1.0),
    help="Learning rate.",
)
@click.option("--batch-size", default=4, show_default=True, help="Examples a training step.")
@click.option("--description", default="", help="What the packet knows, in one sentence.")
@click.option(
    "--exemplars",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Questions for the router, as {EXEMPLAR_FORMATS} (default: every training "
    "question, then the --paraphrases phrasings, up to 256).",
)
@click.option(
    "--paraphrases",
    type=click.Path(dir_okay=False, path_type=Path),
    help='Extra phrasings: jsonl of {"question": original, "paraphrases": [...]}.',
)
@click.option("--no-expand", is_flag=True, help="Train on the records as given, one phrasing each.")
@click.option(
    "--max-minutes", type=Finite(0.01, 10_080), default=None, help="Stop training after this long."
)
@click.option("--patience", default=3, show_default=True, help="Evaluations without progress.")
@click.option(
    "--notes/--no-notes",
    default=False,
    show_default=True,
    help="Carry the training records inside the signed packet as source notes "
    "(answers then cite them). Off by default: raw data stays on this device.",
)
@click.option(
    "--grounded/--no-grounded",
    default=False,
    show_default=True,
    help="Also train on questions asked with two of the records in the prompt, as a "
    "packet with notes is asked (the notes recipe: the adapter learns to read its notes; "
    "longer prompts, so slower steps).",
)
@click.option(
    "--from",
    "start_from",
    metavar="PACKET",
    help="Start from this packet's weights (a name in the library or a .fkpkt file) "
    "instead of fresh ones; its rank, layers and scale are used.",
)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1))
@click.option(
    "--bits",
    type=click.Choice(["16", "8", "4"]),
    default="16",
    show_default=True,
    help="Weights in the packet: float16, int8 or 4-bit (per-group scales).",
)
def train_command(
    data: Path,
    name: str,
    domain: str,
    iters: int,
    rank: int,
    layers: int,
    scale: float,
    learning_rate: float,
    batch_size: int,
    description: str,
    exemplars: Path | None,
    paraphrases: Path | None,
    no_expand: bool,
    max_minutes: float | None,
    patience: int,
    notes: bool,
    grounded: bool,
    start_from: str | None,
    seed: int,
    bits: str,
) -> None:
    """Train a LoRA packet on DATA (chat or instruction jsonl) and add it to the library."""
    from fieldkit.store.exemplars import MIN_EXEMPLARS, check_texts, packet_texts
    from fieldkit.store.importers import read_questions
    from fieldkit.store.packet import check_new_name
    from fieldkit.training.dataset import (
        DataError,
        attach_paraphrases,
        exemplars_from,
        load_records,
        read_jsonl,
    )
    from fieldkit.training.train import TrainConfig, train_lora

    svc = services()
    name, domain = check_new_name(name), check_new_name(domain, "domain")  # before any training
    svc.library.require_free_name(name)
    if iters < 1 or batch_size < 1:
        raise DataError("--iters and --batch-size must be at least 1.")
    base_id, fingerprint, model_config = svc.require_model()
    depth = model_config.get("num_hidden_layers")
    if isinstance(depth, int) and layers > depth:
        raise DataError(f"--layers {layers} is more than the base model's {depth} layers.")
    records = load_records(data)
    if paraphrases is not None:
        extended = attach_paraphrases(records, read_jsonl(paraphrases))
        if [r.paraphrases for r in extended] == [r.paraphrases for r in records]:
            raise DataError(f"{paraphrases.name} gives no phrasing of any training question.")
        records = extended
    from fieldkit.training.grounded import training_examples

    examples = training_examples(
        records, domain, grounded=grounded, expand=not no_expand, seed=seed
    )
    init = None if start_from is None else _starting_adapter(svc, start_from)
    if init is not None:
        rank, layers, scale = init.config.rank, init.config.num_layers, init.config.scale
    passages = None
    if notes:  # checked against the packet limits before any training
        from fieldkit.store.notes import to_manifest_notes
        from fieldkit.training.dataset import notes_from_records

        passages = notes_from_records(records)  # each with its --paraphrases phrasings
        to_manifest_notes(passages)
    if exemplars:
        questions = read_questions(exemplars)
    else:
        questions = exemplars_from(records, examples, MIN_EXEMPLARS)
    check_texts(*packet_texts(description, questions))
    config = TrainConfig(
        keys=init.config.keys if init is not None else TrainConfig.keys,
        rank=rank,
        scale=scale,
        num_layers=layers,
        iters=iters,
        batch_size=batch_size,
        learning_rate=learning_rate,
        patience=patience,
        seed=seed,
        time_budget_s=None if max_minutes is None else 60.0 * max_minutes,
    )
    config.adapter_config()  # a bad rank or layer count fails before the model loads
    click.echo(
        f"Training {name}: {len(records)} records -> {len(examples)} examples, "
        f"rank {rank}, layers {layers}, up to {iters} steps.",
        err=True,
    )
    progress = ProgressLine()
    try:
        result = train_lora(svc.model_dir, examples, config, on_progress=progress, init=init)
    finally:
        progress.close()
    from fieldkit.store.quantize import Compaction

    record = _add_trained(
        svc,
        Compaction(bits=None if bits == "16" else int(bits)).apply(result.adapter),
        name,
        domain=domain,
        description=description or f"{domain.replace('_', ' ')} facts from {data.name}",
        exemplars=questions,
        base_model_id=base_id,
        base_fingerprint=fingerprint,
        notes=passages,
    )
    val = "" if result.best_val_loss is None else f", best val loss {result.best_val_loss:.3f}"
    stop = " (early stop)" if result.stopped_early else ""
    carried = f", {len(passages)} notes" if passages else ""
    click.echo(
        f"Added {record.name} ({record.short_id}{carried}): {result.iterations} steps{stop} in "
        f"{format_seconds(result.seconds)}{val} at step {result.best_iteration}."
    )


def _starting_adapter(svc, value: str):  # noqa: ANN001, ANN202 - Services, Adapter (lazy)
    """Return the adapter `--from` names: a .fkpkt file, else a packet in the library.

    Raises PacketError / LibraryError / ModelError (one sentence) for a bad file, an
    unknown name, or a packet made for another base model.
    """
    from fieldkit.errors import ModelError
    from fieldkit.store.packet import read_packet_file, verify_weights

    path = Path(value).expanduser()
    if path.suffix == ".fkpkt" or path.is_file():
        packet = read_packet_file(path)
        _, fingerprint, _ = svc.require_model()
        if packet.manifest["base_fingerprint"] != fingerprint:
            raise ModelError(f"{path.name} was made for another base model than the one in use.")
        return verify_weights(packet.manifest, packet.weights)
    return svc.checked_adapter(svc.library.get(value))


def _add_trained(svc, adapter, name: str, **fields):  # noqa: ANN001, ANN202 - lazy types
    """Add the trained packet as `name`, or, when a packet of that name entered the library
    while it trained (an import, a sync), as the first free `name-2`, `name-3`... so the
    training is never lost; return its record. Raises LibraryError for any other refusal."""
    for candidate in [name, *(f"{name[:60]}-{n}" for n in range(2, 100))]:
        try:
            record = svc.library.add_local(adapter, name=candidate, **fields)
        except LibraryError:
            if not any(r.name == candidate for r in svc.library.list_packets()):
                raise
            continue
        if candidate != name:
            click.echo(
                f"A packet named {name!r} entered the library while this one trained; "
                f"it is kept as {candidate!r}.",
                err=True,
            )
        return record
    raise LibraryError(f"Every name from {name!r} to {name[:60]}-99 is taken in the library.")
