"""`fieldkit model`: install base models (the embedded default or your own), choose the
one in use, describe it, and remove the others."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from fieldkit.commands import echo_fields
from fieldkit.commands.complete import installed_models
from fieldkit.formats import format_size

if TYPE_CHECKING:
    from fieldkit.services import Services


@click.group("model")
def model() -> None:
    """The base model every packet adapts (default: SmolLM2-135M-Instruct, embedded)."""


@model.command("install-default")
@click.pass_obj
def install_default_command(services: Services) -> None:
    """Convert the embedded SmolLM2-135M-Instruct GGUF into this home (once)."""
    from fieldkit.engine.convert import install_default
    from fieldkit.store.models import model_info

    start = time.perf_counter()

    def progress(step: str) -> None:
        click.echo(f"[{time.perf_counter() - start:5.1f}s] {step}", err=True)

    path, converted = install_default(services.home.models_dir, progress)
    info = model_info(path)
    verb = "installed" if converted else "already installed"
    click.echo(
        f"{verb}: {path} ({info.architecture}, {info.dtype}, "
        f"{format_size(info.size_bytes)}, fingerprint {info.fingerprint[:16]})"
    )


@model.command("install")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--name", help="The name to install it under (default: the folder or file name).")
@click.option(
    "--dtype",
    type=click.Choice(["float16", "bfloat16", "float32"]),
    default=None,
    help="Hugging Face folders: the dtype to convert to (default: the model's own).",
)
@click.pass_obj
def install_command(services: Services, path: Path, name: str | None, dtype: str | None) -> None:
    """Install your own base model from PATH into this home.

    PATH is an mlx-lm model folder (copied), a Hugging Face model folder with
    safetensors weights (converted by mlx-lm), or a llama GGUF file (Q4_0, Q4_1, Q8_0,
    F16 or F32: what mlx reads). Nothing is downloaded. Then choose it with
    `fieldkit model use NAME`. Packets remember the model they were made for and are
    refused with any other.
    """
    from fieldkit.engine.convert import install_model
    from fieldkit.store.models import model_info

    start = time.perf_counter()

    def progress(step: str) -> None:
        click.echo(f"[{time.perf_counter() - start:5.1f}s] {step}", err=True)

    target = install_model(path, services.home.models_dir, name, dtype, progress)
    info = model_info(target)
    click.echo(
        f"installed {target.name}: {info.architecture}, {info.n_layers} layers, {info.dtype}, "
        f"{format_size(info.size_bytes)}, fingerprint {info.fingerprint[:16]}. "
        f"Use it with `fieldkit model use {target.name}`."
    )


@model.command("use")
@click.argument("name", shell_complete=installed_models)
@click.pass_obj
def use_command(services: Services, name: str) -> None:
    """Make the installed model NAME the one this home uses (remembered; --model and
    $FIELDKIT_MODEL still win for one command)."""
    _installed_folder(services, name)
    services.use_model(name)
    click.echo(f"This home now uses {name}.")


@model.command("remove")
@click.argument("name", shell_complete=installed_models)
@click.pass_obj
def remove_command(services: Services, name: str) -> None:
    """Remove the installed model NAME from this home, to free its disk space. The model
    this home uses is refused: choose another first with `fieldkit model use`. Packets made
    for NAME stay in the library; they answer again once it is installed again."""
    from fieldkit.engine.convert import remove_model
    from fieldkit.errors import ModelError
    from fieldkit.store.models import model_fingerprint, weight_files

    folder, models = _installed_folder(services, name), services.home.models_dir
    others = [n for n in _installed(services) if n != name]
    if name == services.chosen_model:
        hint = (
            f"choose another first (`fieldkit model use {others[0]}`)"
            if others
            else "install another first (`fieldkit model install PATH`) and choose it"
        )
        raise ModelError(f"{name} is the model this home uses; {hint}, then remove it.")
    fingerprint = model_fingerprint(folder)
    size = sum(f.stat().st_size for f in weight_files(folder))
    made_for = sorted(
        r.name for r in services.library.list_packets() if r.base_fingerprint == fingerprint
    )
    if made_for and any(model_fingerprint(models / n) == fingerprint for n in others):
        made_for = []  # the same weights stay installed under another name: they still answer
    remove_model(folder)
    click.echo(f"Removed {name} ({format_size(size)} of weights).")
    if made_for:
        shown = ", ".join(made_for[:5]) + (", ..." if len(made_for) > 5 else "")
        click.echo(
            f"{len(made_for)} packet(s) here were made for it ({shown}): they stay in the "
            "library and answer again once it is installed again."
        )


@model.command("list")
@click.pass_obj
def list_command(services: Services) -> None:
    """List the models installed in this home; * marks the one in use."""
    current = services.model_dir
    names = _installed(services)
    if not names:
        click.echo("No model is installed; run `fieldkit model install-default`.")
    for name in names:
        mark = "*" if services.home.models_dir / name == current else " "
        click.echo(f"{mark} {name}")


def _installed_folder(services: Services, name: str) -> Path:
    """Return the folder of the installed model NAME; ModelError naming those installed."""
    from fieldkit.engine.convert import is_installed
    from fieldkit.errors import ModelError

    folder = services.home.models_dir / name
    if "/" in name or name.startswith(".") or not is_installed(folder):
        known = ", ".join(_installed(services)) or "none yet"
        raise ModelError(f"No model named {name!r} is installed (installed: {known}).")
    return folder


def _installed(services: Services) -> list[str]:
    from fieldkit.engine.convert import installed_models

    return installed_models(services.home.models_dir)


@model.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def info_command(services: Services, as_json: bool) -> None:
    """Show the base model in use: path, architecture, dtype, fingerprint, size."""
    from fieldkit.engine.blas import preload_openblas
    from fieldkit.store.models import model_info

    services.require_model()
    info = model_info(services.model_dir)
    data = {**info.to_dict(), "openblas": preload_openblas()}
    if as_json:
        click.echo(json.dumps(data))
        return
    rows = [
        ("path", data["path"]),
        ("model id", info.model_id),
        ("architecture", f"{info.architecture}, {info.n_layers} layers"),
        ("dtype", info.dtype),
        ("fingerprint", info.fingerprint),
        ("size", f"{format_size(info.size_bytes)}"),
        ("OpenBLAS", data["openblas"] or "not loaded (mlx's bundled BLAS, slower on CPU)"),
    ]
    echo_fields(rows, 13)
