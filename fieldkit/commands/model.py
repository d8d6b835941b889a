"""`fieldkit model`: install the embedded default base model and describe the one in use."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import click

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
    for label, value in rows:
        click.echo(f"{label:<13} {value}")
