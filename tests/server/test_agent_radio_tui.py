"""The TUI's Peers screen in a process without a radio: BLE scans and syncs go through the
agent of its home, whose radio is a bumble virtual controller; the peer is another fieldkit
process listening on a second controller of the same virtual link."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from fieldkit.gossip.lan import INTERFACES_SETTING
from fieldkit.home import Home
from fieldkit.server.client import find_agent
from fieldkit.services import Services
from fieldkit.store.models import model_fingerprint
from fieldkit.tui.app import make_app
from tests.ble.test_cli_ble import controllers, fieldkit, start_ble_listener
from tests.server.conftest import Peer, StartAgent
from tests.tui.helpers import notices
from tests.tui.test_peers_ble import sync_from_screen, transfer, wait_for_sighting, wait_until

__all__ = ["controllers"]  # the fixture, used by name below


async def test_the_peers_screen_scans_and_syncs_on_the_agents_radio(
    start_agent: StartAgent,
    packet_home: Home,
    wells_peer: Peer,
    make_packet,  # noqa: ANN001
    tiny_model_dir: Path,
    controllers: tuple[int, int],
) -> None:
    port_a, port_b = controllers
    peer_home, peer_id = wells_peer.home, wells_peer.device_id
    dams = make_packet(peer_home, name="dams", domain="water", seed=5)
    assert dams.base_fingerprint != model_fingerprint(tiny_model_dir)  # another base model
    running = start_agent(packet_home, hci=f"tcp-client:127.0.0.1:{port_a}")
    listener = start_ble_listener(peer_home, port_b)
    mine = Services.build(packet_home.root, tiny_model_dir)  # this process opens no radio
    mine.library.set_setting(INTERFACES_SETTING, ["127.0.0.1"])  # LAN discovery: loopback
    app = make_app(mine, start_mode="peers", load_model=False)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            await wait_for_sighting(pilot, screen, limit_s=60)  # a scan on the agent's radio
            ble = str(screen.query_one("#ble", Static).render())
            assert ble.startswith("Bluetooth: 1 fieldkit peer(s) in range"), ble
            await sync_from_screen(pilot, screen)  # the pairing code, relayed: accepted
            state = screen.query_one("#sync-state", Static)
            await wait_until(
                pilot, lambda: "Synced with" in str(state.render()), "the result", limit_s=60
            )
            text = str(state.render())
            assert text.startswith("Synced with"), (text, notices(pilot))
            assert "1 received" in text
            assert "1 refused" in text  # dams: another base model, refused on the agent too
            assert "declined by the peer" in text  # wells has another base model: it says so
            progress = transfer(screen, "<- wells")
            assert progress is not None
            assert progress.finished
        listener.communicate(timeout=30)
        # The person accepted the code the agent relayed: the peer is trusted from now on.
        assert mine.library.get_peer(peer_id).trust == "trusted"
    finally:
        listener.kill()
        listener.wait(5)
        mine.close()
    names = [m["id"] for m in find_agent(packet_home).get("/v1/models")["data"]]
    assert "wells" in names
    assert "dams" not in [p["name"] for p in find_agent(packet_home).get("/v1/library")["packets"]]
    assert running.agent.stats.failed == 0


async def test_the_peers_screen_says_why_the_agents_radio_cannot_scan(
    start_agent: StartAgent, packet_home: Home, tiny_model_dir: Path, controllers: tuple[int, int]
) -> None:
    start_agent(packet_home, hci=f"tcp-client:127.0.0.1:{controllers[0]}")
    listener = fieldkit(
        packet_home, "--model", str(tiny_model_dir), "sync", "--ble", "--listen", "--json"
    )
    mine = Services.build(packet_home.root, tiny_model_dir)
    mine.library.set_setting(INTERFACES_SETTING, ["127.0.0.1"])
    app = make_app(mine, start_mode="peers", load_model=False)
    try:
        assert "on the agent's radio" in listener.stderr.readline()
        async with app.run_test(size=(80, 24)) as pilot:
            ble = app.screen.query_one("#ble", Static)
            await wait_until(pilot, lambda: "agent" in str(ble.render()), "the note", 60)
            note = str(ble.render())
            assert note.startswith("Bluetooth (through the agent): The agent's radio is serving")
            assert "not available on this machine" not in note  # the radio is there, and busy
    finally:
        listener.terminate()
        listener.wait(10)
        mine.close()
