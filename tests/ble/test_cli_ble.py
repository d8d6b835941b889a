"""`fieldkit sync --ble` and `fieldkit peers --ble` as real processes on bumble controllers.

`python -m bumble.apps.controllers tcp-server:_:PORT_A tcp-server:_:PORT_B` runs two
virtual controllers on one link; each fieldkit process attaches to one of them with
`--hci tcp-client:127.0.0.1:PORT`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from fieldkit.cli import main
from fieldkit.home import Home
from fieldkit.store.identity import Identity
from fieldkit.store.library import Library
from tests.fixtures.processes import FIELDKIT

ROOT = Path(__file__).parents[2]
ENV = dict(os.environ, HF_HUB_OFFLINE="1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    """True if something listens on `port` (read from /proc, so no connection is used up)."""
    try:
        table = Path("/proc/net/tcp").read_text() + Path("/proc/net/tcp6").read_text()
    except OSError:
        return False
    wanted = f":{port:04X} "
    return any(wanted in line and line.split()[3] == "0A" for line in table.splitlines()[1:])


@pytest.fixture
def controllers() -> Iterator[tuple[int, int]]:
    """Two bumble controllers on one virtual link, served over TCP; yields their ports.

    Each tcp-server takes exactly one host connection, so readiness is read from /proc
    (or, where there is none, waited out) instead of probed with a connection.
    """
    port_a, port_b = _free_port(), _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bumble.apps.controllers",
            f"tcp-server:_:{port_a}",
            f"tcp-server:_:{port_b}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 15
        while not (_listening(port_a) and _listening(port_b)):
            if not Path("/proc/net/tcp").exists():
                time.sleep(3)
                break
            assert time.monotonic() < deadline, "bumble controllers did not start"
            assert proc.poll() is None, "bumble controllers exited"
            time.sleep(0.05)
        yield port_a, port_b
    finally:
        proc.kill()
        proc.wait(5)


def fieldkit(home: Home, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*FIELDKIT, "--home", str(home.root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=ROOT,
    )


def start_ble_listener(home: Home, port: int) -> subprocess.Popen:
    proc = fieldkit(
        home, "sync", "--ble", "--listen", "--once", "--json", "--idle-timeout", "10",
        "--hci", f"tcp-client:127.0.0.1:{port}",
    )  # fmt: skip
    line = proc.stderr.readline()
    if "Advertising over Bluetooth LE" not in line:
        proc.kill()
        raise AssertionError(line + proc.stderr.read())
    return proc


def start_ble_central(home: Home, peer_id: str, port: int) -> subprocess.Popen:
    """`sync --ble --peer PEER_ID --json` on the controller at `port`."""
    return fieldkit(
        home, "sync", "--ble", "--peer", peer_id, "--json", "--idle-timeout", "10",
        "--hci", f"tcp-client:127.0.0.1:{port}",
    )  # fmt: skip


def said_while_syncing(
    listener: subprocess.Popen, central: subprocess.Popen
) -> tuple[str, str, str]:
    """Return the listener's next line on stderr, said while `central` syncs with it, then
    the central's and the listener's JSON summaries once both ended (each exit 0)."""
    try:
        said = listener.stderr.readline()
        out, err = central.communicate(timeout=60)
        assert central.returncode == 0, err
        l_out, l_err = listener.communicate(timeout=30)
        assert listener.returncode == 0, l_err
    finally:
        listener.kill()
        listener.wait(5)
    return said, out, l_out


def test_two_processes_scan_then_sync_over_bumble_controllers(make_home, make_packet, controllers):
    port_a, port_b = controllers
    a, b = make_home("a"), make_home("b")
    pa = make_packet(a, name="pumps", size_scale=2)
    id_a = Identity.load_or_create(a).device_id
    id_b = Identity.load_or_create(b).device_id
    library = Library.open(b)
    library.set_trust(id_a, "trusted")
    library.close()

    listener = start_ble_listener(b, port_b)
    try:
        scan = fieldkit(
            a, "peers", "--ble", "--json", "--seconds", "1",
            "--hci", f"tcp-client:127.0.0.1:{port_a}",
        )  # fmt: skip
        out, err = scan.communicate(timeout=30)
        assert scan.returncode == 0, err
        [peer] = json.loads(out)["peers"]
        assert peer["id"] == id_b[:8]  # not met yet: only the advertised short id is known
        assert peer["trust"] == "unknown"
        assert isinstance(peer["rssi"], int)

        central = start_ble_central(a, id_b, port_a)
        out, err = central.communicate(timeout=60)
        if central.returncode != 0:
            listener.kill()
            raise AssertionError(err + "\nlistener: " + "".join(listener.communicate(timeout=5)))
        summary = json.loads(out)
        assert summary["ok"]
        assert summary["peer"]["id"] == id_b
        assert "over BLE" in summary["peer"]["address"]
        assert [(p["direction"], p["status"]) for p in summary["packets"]] == [("sent", "ok")]
        l_out, l_err = listener.communicate(timeout=30)
        assert listener.returncode == 0, l_err
        assert json.loads(l_out)["peer"]["id"] == id_a
    finally:
        listener.kill()
        listener.wait(5)

    library = Library.open(b)
    try:
        got = library.find(pa.packet_id)
        assert got is not None
        assert got.verified
        assert library.verify(pa.packet_id)
    finally:
        library.close()


def test_a_ble_listener_shows_the_pairing_code_of_a_new_peer_during_the_session(
    make_home, make_packet, controllers
):
    """The bug: `sync --ble --listen` said a new peer's code only in its summary, after the
    session, while the person at the other device was asked to compare it (`sync --listen`
    over TCP said it at once)."""
    port_a, port_b = controllers
    a, b = make_home("a"), make_home("b")
    make_packet(a, name="pumps")
    me = Identity.load_or_create(a)
    id_a, id_b = me.device_id, Identity.load_or_create(b).device_id
    listener = start_ble_listener(b, port_b)  # a is a stranger to b: pending
    said, out, l_out = said_while_syncing(listener, start_ble_central(a, id_b, port_a))
    summary = json.loads(l_out)
    assert summary["peer"]["id"] == id_a
    code = summary["peer"]["sas"]
    assert said.startswith(f"{me.name} ({id_a}) connected (pending): the code is {code};"), said
    assert json.loads(out)["peer"]["sas"] == code  # the code both screens show


def test_ble_usage_errors_are_one_line(make_home):
    home = str(make_home("cli").root)
    result = CliRunner().invoke(main, ["--home", home, "sync", "--ble", "1.2.3.4:5"])
    assert result.exit_code == 2
    result = CliRunner().invoke(main, ["--home", home, "sync", "--hci", "usb:0"])
    assert result.exit_code == 2
    assert "--ble" in result.output
    result = CliRunner().invoke(main, ["--home", home, "sync", "--ble", "--hci", "bogus:1"])
    assert result.exit_code == 1
    assert "Cannot open the Bluetooth controller 'bogus:1'" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(
        main, ["--home", home, "peers", "--ble", "--hci", "tcp-client:127.0.0.1:1"]
    )
    assert result.exit_code == 1
    assert "Cannot open the Bluetooth controller" in result.output
