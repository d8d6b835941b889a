"""`sync --ble` (connecting or listening) and `peers --ble` in a process without a radio go
through the agent's radio.

The agent's radio is a bumble virtual controller; the peer is another fieldkit process
listening on a second controller of the same virtual link (see tests/ble/test_cli_ble.py).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from pathlib import Path

from click.testing import CliRunner

from fieldkit.cli import main
from fieldkit.home import Home
from fieldkit.server.client import CONFIRM_PATH, SYNC_PATH, find_agent
from fieldkit.store.identity import Identity
from tests.ble.test_cli_ble import (
    controllers,
    fieldkit,
    said_while_syncing,
    start_ble_central,
    start_ble_listener,
)
from tests.server.conftest import Peer, RunningAgent, StartAgent, trust

__all__ = ["controllers"]  # the fixture, used by name below


def cli(home: Home, model_dir: Path, *args: str):  # noqa: ANN201
    """Run `fieldkit --home HOME --model MODEL ARGS...` in this process (no radio here)."""
    return CliRunner().invoke(main, ["--home", str(home.root), "--model", str(model_dir), *args])


def test_sync_ble_goes_through_the_agents_radio(
    start_agent: StartAgent,
    packet_home: Home,
    wells_peer: Peer,
    tiny_model_dir: Path,
    controllers: tuple[int, int],
) -> None:
    port_a, port_b = controllers
    peer_id = wells_peer.device_id
    trust(packet_home, tiny_model_dir, peer_id)  # so the agent accepts the peer's packet
    running = start_agent(packet_home, hci=f"tcp-client:127.0.0.1:{port_a}")
    listener = start_ble_listener(wells_peer.home, port_b)
    try:
        scan = cli(packet_home, tiny_model_dir, "peers", "--ble", "--json", "--seconds", "1")
        assert scan.exit_code == 0, scan.output
        assert [p["id"] for p in json.loads(scan.stdout)["peers"]] == [peer_id]  # trusted: known
        result = cli(
            packet_home, tiny_model_dir, "sync", "--ble", "--peer", peer_id, "--json",
            "--idle-timeout", "10",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["ok"]
        assert summary["peer"]["id"] == peer_id
        assert "over BLE" in summary["peer"]["address"]
        received = [p["name"] for p in summary["packets"] if p["direction"] == "received"]
        assert received == ["wells"]
        listener.communicate(timeout=30)
    finally:
        listener.kill()
        listener.wait(5)
    # The packet that arrived on the agent's radio is listed and answers at once.
    models = find_agent(packet_home).get("/v1/models")
    assert "wells" in [m["id"] for m in models["data"]]
    assert running.agent.stats.failed == 0


def test_a_failed_session_through_the_agent_exits_1_with_its_sentence(
    start_agent: StartAgent, packet_home: Home, tiny_model_dir: Path
) -> None:
    start_agent(packet_home, hci="tcp-client:127.0.0.1:1")  # no controller there
    result = cli(packet_home, tiny_model_dir, "sync", "--ble", "--scan-seconds", "1")
    assert result.exit_code == 1
    assert "Cannot open the Bluetooth controller" in result.output
    assert "Traceback" not in result.output


def test_sync_ble_listen_serves_peers_on_the_agents_radio(
    start_agent: StartAgent,
    packet_home: Home,
    wells_peer: Peer,
    tiny_model_dir: Path,
    controllers: tuple[int, int],
) -> None:
    port_a, port_b = controllers
    peer_id = wells_peer.device_id
    my_id = trust(packet_home, tiny_model_dir, peer_id)  # the agent accepts the peer's packet
    start_agent(packet_home, hci=f"tcp-client:127.0.0.1:{port_a}")
    # `sync --ble --listen` with no radio of its own: the agent advertises and serves.
    listener = fieldkit(
        packet_home, "--model", str(tiny_model_dir), "sync", "--ble", "--listen", "--once",
        "--json", "--idle-timeout", "10",
    )  # fmt: skip
    try:
        ready = listener.stderr.readline()
        assert ready.startswith("Advertising over Bluetooth LE on the agent's radio as"), (
            ready + listener.stderr.read()
        )
        central = start_ble_central(wells_peer.home, my_id, port_b)
        c_out, c_err = central.communicate(timeout=60)
        assert central.returncode == 0, c_err
        assert json.loads(c_out)["peer"]["id"] == my_id
        out, err = listener.communicate(timeout=30)
    finally:
        listener.kill()
        listener.wait(5)
    assert listener.returncode == 0, err
    summary = json.loads(out)  # the summary the agent's session made, printed here
    assert summary["ok"]
    assert summary["peer"]["id"] == peer_id
    received = [p["name"] for p in summary["packets"] if p["direction"] == "received"]
    assert received == ["wells"]
    assert "wells" in [m["id"] for m in find_agent(packet_home).get("/v1/models")["data"]]


def test_a_listener_on_the_agents_radio_shows_a_new_peers_code_during_the_session(
    start_agent: StartAgent,
    packet_home: Home,
    wells_peer: Peer,
    tiny_model_dir: Path,
    controllers: tuple[int, int],
) -> None:
    """The agent relays the moment a stranger proves who it is (its `peer` event), so
    `sync --ble --listen` says the code while the other side compares it, as over TCP."""
    port_a, port_b = controllers
    start_agent(packet_home, hci=f"tcp-client:127.0.0.1:{port_a}")
    my_id = Identity.load_or_create(packet_home).device_id
    listener = fieldkit(
        packet_home, "--model", str(tiny_model_dir), "sync", "--ble", "--listen", "--once",
        "--json", "--idle-timeout", "10",
    )  # fmt: skip
    assert "on the agent's radio" in listener.stderr.readline()
    central = start_ble_central(wells_peer.home, my_id, port_b)
    said, c_out, out = said_while_syncing(listener, central)
    code = json.loads(out)["peer"]["sas"]
    assert f"({wells_peer.device_id}) connected (pending): the code is {code};" in said, said
    assert json.loads(c_out)["peer"]["sas"] == code


def test_a_listener_on_the_agents_radio_keeps_scans_off_it(
    start_agent: StartAgent, packet_home: Home, tiny_model_dir: Path, controllers: tuple[int, int]
) -> None:
    start_agent(packet_home, hci=f"tcp-client:127.0.0.1:{controllers[0]}")
    listener = fieldkit(
        packet_home, "--model", str(tiny_model_dir), "sync", "--ble", "--listen", "--json"
    )
    try:
        assert "on the agent's radio" in listener.stderr.readline()
        scan = cli(packet_home, tiny_model_dir, "peers", "--ble", "--seconds", "1")
        assert scan.exit_code == 1
        assert "serving `fieldkit sync --ble --listen`" in scan.output
    finally:
        listener.terminate()  # the agent stops advertising when its client hangs up
        listener.wait(10)
    deadline = time.monotonic() + 15  # the agent notices the hang-up on its event loop
    while True:
        scan = cli(packet_home, tiny_model_dir, "peers", "--ble", "--json", "--seconds", "1")
        if scan.exit_code == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert scan.exit_code == 0, scan.output


def test_radio_requests_are_refused_off_the_unix_socket_and_when_malformed(
    running: RunningAgent,
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", running.info.port, timeout=30)
    try:
        conn.request("POST", SYNC_PATH, body=b"{}", headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 403
        assert "Unix socket only" in json.loads(response.read())["error"]["message"]
    finally:
        conn.close()
    client = find_agent(running.home)

    bad = [{"policy": "whatever"}, {"peer": 5}, {"scan_seconds": 0}, {"idle_timeout": "x"}]

    async def ask() -> tuple[list[list[dict]], dict]:
        events = [[e async for e in client.apost_lines(SYNC_PATH, body)] for body in bad]
        return events, await client.apost(CONFIRM_PATH, {"id": "nobody", "accept": True})

    events, answer = asyncio.run(ask())
    assert events == [[{"error": "The sync request's fields are not valid."}]] * len(bad)
    assert answer == {"error": "No pairing question with that id is waiting."}
