"""The `cli` fixture of the library's command-line tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fieldkit.cli import main


@pytest.fixture
def cli(tiny_model_dir):
    """Run `fieldkit --home HOME --model TINY ARGS...` through click."""
    runner = CliRunner()

    def invoke(home: Path, *args: str):
        return runner.invoke(main, ["--home", str(home), "--model", str(tiny_model_dir), *args])

    return invoke
