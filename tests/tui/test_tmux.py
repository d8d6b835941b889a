"""The real `fieldkit` binary in tmux at 80x24: library and ask flows, keys only."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from fieldkit.store.packet import read_packet_file
from tests.tui.tmux_drive import FIELDKIT, drive, library_in_16_colours

pytestmark = [
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.skipif(not FIELDKIT.exists(), reason=f"{FIELDKIT} is not installed"),
]


def test_library_and_ask_flows_in_tmux(stocked, tiny_model_dir: Path, tmp_path: Path) -> None:
    # started as a user starts it: no --model, the model the home chose with `model use`
    # (read from the library while workers load the model and list the packets)
    shutil.copytree(tiny_model_dir, stocked.home.models_dir / "tiny")
    stocked.use_model("tiny")
    stocked.close()  # the app opens the home itself, as a second process would
    export_dir = tmp_path / "exported"
    show = bool(os.environ.get("FIELDKIT_TMUX_SHOW"))  # print each checkpoint's screen
    screens = drive(stocked.home.root, None, export_dir, show=show)
    assert any("route: pumps" in screen for screen in screens)
    [exported] = list(export_dir.iterdir())
    assert read_packet_file(exported).manifest["name"] == "pumps"


def test_sixteen_colour_terminal_keeps_states_in_words(stocked, tiny_model_dir: Path) -> None:
    stocked.close()
    styled = library_in_16_colours(stocked.home.root, tiny_model_dir)
    assert "\x1b[" in styled, "the capture holds the colour codes it is checked for"
    plain = re.sub(r"\x1b\[[0-9;]*m", "", styled)
    assert "ok verified" in plain
    assert "!! UNVERIFIED" in plain
