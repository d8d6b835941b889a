"""Interruptions a technician causes: Ctrl-C (SIGINT) or SIGTERM part-way through a command.

Each test runs fieldkit in a real process, holds it at a known point of its work (a stand-in
for a slow disk: tests.fixtures.processes.held), sends the real
signal and checks that the process ends with no traceback and nothing half-written.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
from pathlib import Path

import pytest

from fieldkit.home import Home
from tests.fixtures.processes import held
from tests.gossip.helpers import start_listener_process

SIGNALS = pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])


def interrupt(stall: str, signum: int, args: list[str], before: str = "pass") -> tuple[int, str]:
    """Run `fieldkit ARGS` held once it reaches `stall` ("module:function"), send `signum`
    there; return (exit status, stderr). Its stdin stays open: the signal, not a line,
    ends the wait."""
    proc = held(stall, *args, before=before)
    try:
        proc.send_signal(signum)
        proc.wait(timeout=60)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    return proc.returncode, err


@SIGNALS
def test_an_interrupted_export_leaves_no_partial_file(signum, home: Home, make_packet, tmp_path):
    """The bug: Ctrl-C or SIGTERM while the packet file was written left its temporary file
    (`.pumps.fkpkt.PID.tmp`, as large as the packet) beside the target."""
    make_packet(home, name="pumps")
    out = tmp_path / "usb"
    out.mkdir()
    status, err = interrupt(
        "fieldkit.store.packet:write_packet_file",
        signum,
        ["--home", str(home.root), "library", "export", "pumps", "-o", str(out / "pumps.fkpkt")],
        before="args[0].write(b'half a packet')",
    )
    assert status == 128 + signum, err  # as a shell reports the signal: 130, 143
    assert "Traceback" not in err
    assert err.strip().endswith("Aborted!")
    assert sorted(p.name for p in out.iterdir()) == []


def test_sigterm_while_a_model_installs_leaves_no_staging_folder(tiny_model_dir, tmp_path):
    """The bug: SIGTERM killed `model install` at once, leaving its staging folder
    (`models/.tiny.XXXX`, a whole copy of the model) for ever."""
    home = tmp_path / "home"
    status, err = interrupt(
        "fieldkit.engine.convert:model_fingerprint",
        signal.SIGTERM,
        ["--home", str(home), "model", "install", str(tiny_model_dir), "--name", "tiny"],
    )
    assert status == 143, err  # 128 + SIGTERM, as a shell reports it
    assert "Traceback" not in err
    assert sorted(p.name for p in (home / "models").iterdir()) == []


@SIGNALS
def test_a_listener_stopped_mid_session_prints_no_traceback(signum, make_home):
    """The bug: Ctrl-C on `sync --listen` while a peer was connected printed asyncio's
    "Exception in callback ... CancelledError" traceback (Python 3.11's start_server)."""
    home = make_home("listener")
    proc, port = start_listener_process(home.root)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as peer:
            assert peer.recv(1)  # the listener's session has started: it sent its hello
            proc.send_signal(signum)
            _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err
    assert "CancelledError" not in err


def test_a_staging_folder_left_by_a_dead_install_is_removed_by_the_next(
    tiny_model_dir, tmp_path
) -> None:
    """SIGKILL or a power cut during `model install` leaves its staging folder (a whole
    model copy); the next install of that name removes it, and no other's."""
    from click.testing import CliRunner

    from fieldkit.cli import main

    models = tmp_path / "home" / "models"
    dead = models / ".tiny.999999999.x1y2" / "model"  # no process has this id
    alive = models / f".tiny.{os.getpid()}.z3w4" / "model"  # an install still under way
    for folder in (dead, alive):
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"half a model")
    args = ["--home", str(tmp_path / "home"), "model", "install", str(tiny_model_dir)]
    result = CliRunner().invoke(main, [*args, "--name", "tiny"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in models.iterdir()) == [alive.parent.name, "tiny"]


def test_an_interrupted_rename_leaves_no_temporary_name_file(home: Home) -> None:
    """The bug: Ctrl-C during `fieldkit name` left its temporary file (`keys/.name-XXXX.tmp`)
    beside the device key for ever."""
    from fieldkit.store.identity import Identity

    Identity.load_or_create(home)
    status, err = interrupt(
        "os:replace", signal.SIGINT, ["--home", str(home.root), "name", "field laptop"]
    )
    assert status == 130, err  # 128 + SIGINT
    assert "Traceback" not in err
    assert sorted(p.name for p in home.keys_dir.iterdir()) == ["device.key"]


@SIGNALS
def test_an_interrupted_trust_change_is_all_or_nothing(signum, home: Home) -> None:
    """The bug: `fieldkit block ID` stopped after the peer row was written said "Aborted!",
    yet the peer stayed blocked, with no event in the log saying so."""
    from fieldkit.store.library import Library

    peer = "abcdefghabcdefgh"
    status, err = interrupt(
        "fieldkit.store.library:Library._log", signum, ["--home", str(home.root), "block", peer]
    )
    assert status == 128 + signum, err  # as a shell reports the signal: 130, 143
    assert "Traceback" not in err
    library = Library.open(home)
    try:
        assert library.get_peer(peer) is None
    finally:
        library.close()


def test_an_interrupted_folder_import_leaves_no_temporary_weights(
    home: Home, tiny_model_dir: Path, make_adapter, tmp_path: Path
) -> None:
    """The bug: SIGTERM while `library import` of a PEFT folder wrote the packet's weights
    left their temporary copy (`blobs/xx/.tmp-PID-...`, as large as the weights) in the
    home until the next command opened the library."""
    from fieldkit.store.identity import Identity
    from tests.store.test_cli_library import write_peft_folder

    Identity.load_or_create(home)  # its key is written (and fsynced) before the stall
    folder = write_peft_folder(tmp_path / "peft", make_adapter(1))
    questions = tmp_path / "questions.txt"
    questions.write_text("\n".join(f"How do I service pump part {i}?" for i in range(12)))
    status, err = interrupt(
        "os:fsync",  # the weights are written, not yet synced and renamed into place
        signal.SIGTERM,
        ["--home", str(home.root), "--model", str(tiny_model_dir), "library", "import",
         str(folder), "--name", "pumps", "--domain", "water", "--exemplars", str(questions)],
    )  # fmt: skip
    assert status == 143, err
    assert "Traceback" not in err
    assert [p for p in home.blobs_dir.rglob("*") if p.is_file()] == []


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_a_terminated_tui_restores_the_terminal_and_exits_non_zero(
    home: Home, make_packet, tiny_model_dir: Path
) -> None:
    """The bug: SIGTERM (or a SIGINT sent by `kill`) ended the TUI with exit status 0, as if
    the user had quit, where every command says "Aborted!" and exits 128 + the signal."""
    from tests.tui.tmux_drive import Tmux, fieldkit_command

    make_packet(home, name="pumps")
    command = fieldkit_command(home.root, tiny_model_dir, "xterm-256color")
    tmux = Tmux(f"{command}; echo exit status $?; sleep 60")  # says how fieldkit ended
    try:
        tmux.wait_for("the library", lambda s: "[F3 Library]" in s and "ready" in s)
        shell = tmux._tmux("display-message", "-p", "-t", tmux.name, "#{pane_pid}").strip()
        children = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
        os.kill(int(children[0]), signal.SIGTERM)
        screen = tmux.wait_for("the app to exit", lambda s: "exit status" in s)
        modes = tmux._tmux(
            "display-message", "-p", "-t", tmux.name, "#{alternate_on} #{mouse_any_flag}"
        ).split()
    finally:
        tmux.kill()
    assert "exit status 143" in screen, screen  # 128 + SIGTERM, as for any command
    assert modes == ["0", "0"], screen  # the normal screen again, no mouse mode left on
    assert "Aborted!" in screen
    assert "Traceback" not in screen


def test_an_interrupted_fingerprint_cache_write_leaves_no_temporary_file(
    home: Home, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The first look at a model writes its fingerprint cache into the model's folder; an
    interrupt there left `.fieldkit-fingerprint.PID.tmp` beside the weights."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    for cache in model.glob(".fieldkit-fingerprint*"):
        cache.unlink()
    before = sorted(p.name for p in model.iterdir())
    status, err = interrupt(
        "os:replace",
        signal.SIGTERM,
        ["--home", str(home.root), "--model", str(model), "model", "info"],
    )
    assert status == 143, err
    assert "Traceback" not in err
    assert sorted(p.name for p in model.iterdir()) == before


def stopped_while_loading(proc) -> tuple[list[str], str]:
    """Wait for the notice that a process stopped during its model load gives, then let
    the load end; return the stderr lines up to the notice and the rest of stderr."""
    import threading

    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        lines = []
        while not lines or "Stopping once" not in lines[-1]:
            line = proc.stderr.readline()
            assert line, f"it ended without the notice: {lines}"
            lines.append(line)
        proc.stdin.write("\n")  # the load goes on, and ends
        proc.stdin.flush()
        _, err = proc.communicate(timeout=60)
    finally:
        watchdog.cancel()
        proc.kill()
    return lines, err


def test_stopped_while_the_model_loads_it_says_why_it_waits(
    home: Home, tiny_model_dir: Path
) -> None:
    """MLX must end a load under way before the process may exit (mlx_backend.release_thread),
    so a stop during the load waits for it: the person is told so instead of a silent pause."""
    proc = held(
        "fieldkit.engine.mlx_backend:MlxRuntime",
        "--home", str(home.root), "--model", str(tiny_model_dir), "ask", "--base", "Pump?",
    )  # fmt: skip
    proc.send_signal(signal.SIGTERM)
    lines, err = stopped_while_loading(proc)
    assert lines[-1] == "fieldkit: Stopping once the model has finished loading.\n"
    assert proc.returncode == 143  # 128 + SIGTERM
    assert err.strip().splitlines() == ["Aborted!"], (lines, err)


def test_a_stop_the_kernel_hands_to_the_mlx_thread_is_heard(
    home: Home, tiny_model_dir: Path
) -> None:
    """The kernel may deliver a process's SIGTERM to any of its threads. Handed to the MLX
    thread during a load, it went unheard while the main thread waited on that load with
    no timeout (engine.SIGNAL_POLL_S), and the process hung until the load ended."""
    to_this_thread = (
        "import signal, threading; signal.pthread_kill(threading.get_ident(), signal.SIGTERM)"
    )
    proc = held(
        "fieldkit.engine.mlx_backend:MlxRuntime",
        "--home", str(home.root), "--model", str(tiny_model_dir), "ask", "--base", "Pump?",
        before=to_this_thread,
    )  # fmt: skip
    lines, err = stopped_while_loading(proc)
    assert lines[-1] == "fieldkit: Stopping once the model has finished loading.\n"
    assert proc.returncode == 143
    assert err.strip().splitlines() == ["Aborted!"], (lines, err)
