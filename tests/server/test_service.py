"""`fieldkit service`: the LaunchAgent and the systemd user unit as files, and `status`."""

from __future__ import annotations

import configparser
import json
import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from fieldkit.cli import main
from fieldkit.home import Home
from fieldkit.server.service_files import service_spec, systemd_unit
from tests.server.conftest import RunningAgent


@pytest.fixture
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for the person's home folder, where services are written."""
    home = tmp_path / "person"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return home


def invoke(home: Path, model: Path, *args: str):
    return CliRunner().invoke(main, ["--home", str(home), "--model", str(model), "service", *args])


def test_launchd_agent_is_a_valid_plist_that_runs_serve_for_this_home(
    user_home: Path, home: Home, tiny_model_dir: Path
) -> None:
    result = invoke(home.root, tiny_model_dir, "install", "--kind", "launchd", "--no-start")
    assert result.exit_code == 0, result.output
    (path,) = (user_home / "Library" / "LaunchAgents").glob("org.fieldkit.serve.*.plist")
    plist = plistlib.loads(path.read_bytes())
    args = plist["ProgramArguments"]
    assert Path(args[0]).name == "fieldkit"
    assert args[1:] == ["--home", str(home.root), "--model", str(tiny_model_dir), "serve"]
    assert plist["Label"] == path.stem
    assert plist["RunAtLoad"] is True
    assert plist["LimitLoadToSessionType"] == "Aqua"
    assert plist["EnvironmentVariables"]["HF_HUB_OFFLINE"] == "1"
    assert plist["StandardErrorPath"].startswith(str(user_home / "Library" / "Logs" / "fieldkit"))
    assert f"Logs: {plist['StandardErrorPath']}" in result.output
    removed = invoke(home.root, tiny_model_dir, "uninstall", "--kind", "launchd")
    assert removed.exit_code == 0, removed.output
    assert not path.exists()


def test_systemd_unit_has_the_sections_systemd_needs(
    user_home: Path, home: Home, tiny_model_dir: Path
) -> None:
    result = invoke(home.root, tiny_model_dir, "install", "--kind", "systemd", "--no-start")
    assert result.exit_code == 0, result.output
    (path,) = (user_home / ".config" / "systemd" / "user").glob("fieldkit-serve-*.service")
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string(path.read_text())
    assert unit.sections() == ["Unit", "Service", "Install"]
    assert unit["Service"]["Type"] == "simple"
    assert unit["Service"]["Restart"] == "on-failure"
    assert unit["Install"]["WantedBy"] == "default.target"
    exec_start = unit["Service"]["ExecStart"]
    assert exec_start.endswith(f'"--home" "{home.root}" "--model" "{tiny_model_dir}" "serve"')
    assert exec_start.startswith('"/')
    if shutil.which("systemd-analyze"):  # systemd's own parser, where it is installed
        check = subprocess.run(
            ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, check=False
        )
        assert check.returncode == 0, check.stderr
    assert "journalctl --user -u" in result.output


def test_unit_words_are_escaped(home: Home, user_home: Path) -> None:
    spec = service_spec(Home(Path('/srv/50% $HOME "x"')), kind="systemd", executable="/bin/fk")
    line = next(x for x in systemd_unit(spec).splitlines() if x.startswith("ExecStart="))
    assert '"/srv/50%% $$HOME \\"x\\""' in line
    assert spec.label.startswith("fieldkit-serve-")
    assert service_spec(home, kind="systemd").label != spec.label


def test_status_finds_the_running_agent(
    user_home: Path, running: RunningAgent, tiny_model_dir: Path
) -> None:
    result = invoke(running.home.root, tiny_model_dir, "status", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["installed"] is False
    assert out["agent"]["socket"] == running.info.socket
    assert out["agent"]["pid"] == running.info.pid
    text = invoke(running.home.root, tiny_model_dir, "status")
    assert f"process {running.info.pid}" in text.output
    running.stop()
    after = json.loads(invoke(running.home.root, tiny_model_dir, "status", "--json").stdout)
    assert after["agent"] is None


def test_unknown_kind_is_a_usage_error(home: Home, tiny_model_dir: Path) -> None:
    result = invoke(home.root, tiny_model_dir, "install", "--kind", "upstart")
    assert result.exit_code == 2
