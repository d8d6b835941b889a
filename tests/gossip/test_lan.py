"""LAN discovery with real zeroconf on 127.0.0.1 (mDNS works over loopback here).

The loopback interface has no MULTICAST flag, yet zeroconf bound to `interfaces=["127.0.0.1"]`
sends to and hears 224.0.0.251 on it, within one process and between processes.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fieldkit.cli import main
from fieldkit.gossip.lan import (
    SERVICE_TYPE,
    LanAdvertiser,
    LanBrowser,
    LanChange,
    LanPeer,
    advertise_by_default,
    discover,
    parse_txt,
)
from fieldkit.gossip.protocol import PROTOCOL_VERSION
from fieldkit.services import Services
from tests.gossip.helpers import start_listener_process

LOOPBACK = ["127.0.0.1"]
ALICE, BOB, CAROL = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc"
GOOD = {b"id": BOB.encode(), b"name": b"bob", b"proto": b"1"}


async def next_change(browser: LanBrowser, limit_s: float = 10.0) -> LanChange:
    """Return the browser's next change; fail after `limit_s` seconds."""
    return await asyncio.wait_for(anext(aiter(browser)), limit_s)


async def until_seen(browser: LanBrowser, device_id: str, limit_s: float = 10.0) -> LanPeer:
    """Return the announced peer with this id once the browser has it."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        for peer in browser.peers:
            if peer.device_id == device_id:
                return peer
        await asyncio.sleep(0.05)
    raise AssertionError(f"{device_id} was never announced; seen: {browser.peers}")


# -- the announcement's fields, checked before they are believed ----------------------------


def test_parse_txt_reads_a_good_announcement() -> None:
    peer = parse_txt(GOOD, "192.168.1.20", 7744)
    assert peer == LanPeer(BOB, "bob", "192.168.1.20", 7744, 1)
    assert peer.address == "192.168.1.20:7744"
    assert LanPeer(BOB, "bob", "fe80::1%2", 7744, 1).address == "[fe80::1%2]:7744"


@pytest.mark.parametrize(
    ("change", "host", "port"),
    [
        ({b"id": None}, "10.0.0.2", 7744),
        ({b"name": None}, "10.0.0.2", 7744),
        ({b"proto": None}, "10.0.0.2", 7744),
        ({b"id": b"BBBBBBBBBBBBBBBB"}, "10.0.0.2", 7744),  # not lowercase base32
        ({b"id": b"bbbbbbbbbbbbbbb"}, "10.0.0.2", 7744),  # 15 characters
        ({b"id": b"b" * 10_000}, "10.0.0.2", 7744),
        ({b"name": b""}, "10.0.0.2", 7744),
        ({b"name": b"x" * 65}, "10.0.0.2", 7744),
        ({b"name": "é".encode() * 200}, "10.0.0.2", 7744),
        ({b"name": b"x" * 1_000_000}, "10.0.0.2", 7744),
        ({b"name": b"\xff\xfe"}, "10.0.0.2", 7744),
        ({b"name": b"bob\x1b[2J"}, "10.0.0.2", 7744),  # a terminal escape
        ({b"proto": b"one"}, "10.0.0.2", 7744),
        ({b"proto": b"9" * 50}, "10.0.0.2", 7744),
        ({}, None, 7744),
        ({}, "10.0.0.2", 0),
        ({}, "10.0.0.2", None),
        ({}, "10.0.0.2", 70_000),
    ],
)
def test_parse_txt_ignores_bad_or_hostile_fields(change, host, port) -> None:
    properties = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    assert parse_txt(properties, host, port) is None


@pytest.mark.parametrize(
    ("host", "announced"),
    [
        ("127.0.0.1", False),
        ("127.3.4.5", False),
        ("localhost", False),
        ("::1", False),
        ("[::1]", False),
        ("0.0.0.0", True),
        ("::", True),
        ("192.168.1.20", True),
        ("fieldkit.example", True),
    ],
)
def test_listeners_are_announced_unless_on_loopback(host: str, announced: bool) -> None:
    assert advertise_by_default(host) is announced


# -- real announcements on loopback ---------------------------------------------------------


async def test_an_announced_listener_is_found_with_its_fields_and_leaves() -> None:
    async with LanBrowser(ALICE, interfaces=LOOPBACK) as browser:
        advertiser = LanAdvertiser(BOB, "bob's laptop", 7745, host="127.0.0.1")
        await advertiser.start()
        try:
            change = await next_change(browser)
            assert change == LanChange(
                LanPeer(BOB, "bob's laptop", "127.0.0.1", 7745, PROTOCOL_VERSION), present=True
            )
            assert browser.peers == [change.peer]
        finally:
            await advertiser.stop()
        gone = await next_change(browser)  # the goodbye removes it at once
        assert gone == LanChange(change.peer, present=False)
        assert browser.peers == []


async def found_ids(own_id: str | None, expected: int, tries: int = 3) -> list[str]:
    """The device ids `discover` finds on loopback, over up to `tries` windows of 2 s until
    `expected` are found: a loaded machine may answer a query after its window closed."""
    ids: set[str] = set()
    for _ in range(tries):
        ids |= {p.device_id for p in await discover(2.0, own_id=own_id, interfaces=LOOPBACK)}
        if len(ids) >= expected:
            break
    return sorted(ids)


async def test_own_announcement_is_ignored() -> None:
    advertisers = [
        LanAdvertiser(ALICE, "alice", 7744, host="127.0.0.1"),
        LanAdvertiser(BOB, "bob", 7745, host="127.0.0.1"),
    ]
    await asyncio.gather(*(a.start() for a in advertisers))
    try:
        assert await found_ids(own_id=ALICE, expected=1) == [BOB]
        assert await found_ids(own_id=None, expected=2) == [ALICE, BOB]
    finally:
        await asyncio.gather(*(a.stop() for a in advertisers))


async def test_bad_announcements_are_ignored_and_the_good_one_found() -> None:
    """Hostile peers speak raw mDNS, so they are made with zeroconf itself."""
    from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

    hostile = {
        "no-id": {"name": "x", "proto": "1"},
        "bad-id": {"id": "../../etc/passwd", "name": "x", "proto": "1"},
        "huge-name": {"id": CAROL, "name": "x" * 240, "proto": "1"},
        "bad-name": {"id": CAROL, "name": b"\xff\xfe\xfd", "proto": "1"},
        "bad-proto": {"id": CAROL, "name": "carol", "proto": "-1"},
        "truncated": b"\x40id=cccccccccccccccc",  # says 64 bytes, holds 19
        "empty": b"",
    }
    zc = AsyncZeroconf(interfaces=LOOPBACK)
    try:
        announcing = await asyncio.gather(
            *(
                zc.async_register_service(
                    AsyncServiceInfo(
                        SERVICE_TYPE,
                        f"{label}.{SERVICE_TYPE}",
                        port=7746,
                        properties=properties,
                        server="hostile.local.",
                        parsed_addresses=["127.0.0.1"],
                    )
                )
                for label, properties in hostile.items()
            )
        )
        await asyncio.gather(*announcing)
        async with (
            LanAdvertiser(BOB, "bob", 7745, host="127.0.0.1"),
            LanBrowser(ALICE, interfaces=LOOPBACK) as browser,
        ):
            await until_seen(browser, BOB)
            await asyncio.sleep(1.5)  # the hostile answers came with bob's, or just after
            assert [p.device_id for p in browser.peers] == [BOB]
    finally:
        await zc.async_close()


async def test_discovery_that_cannot_start_is_one_sentence() -> None:
    from fieldkit.errors import TransportError

    with pytest.raises(TransportError, match=r"^Cannot start LAN discovery \(mDNS\) on 10\."):
        await discover(0.1, interfaces=["10.255.255.1"])
    with pytest.raises(TransportError, match="at least one network interface"):
        await discover(0.1, interfaces=[])


# -- the CLI: `fieldkit sync --listen` announces, `fieldkit peers --discover` finds ----------


def test_cli_discovers_an_announced_listener_and_syncs_with_it(make_home, make_packet) -> None:
    alice, bob, carol = (Services.build(make_home(n).root) for n in ("alice", "bob", "carol"))
    make_packet(alice.home, name="pumps")
    bob.library.set_trust(alice.identity.device_id, "trusted")
    alice.library.set_trust(bob.identity.device_id, "trusted")
    ids = {s.identity.device_id: s for s in (alice, bob, carol)}
    for svc in ids.values():
        svc.close()
    bob_proc, bob_port = start_listener_process(bob.home.root, "--advertise")
    carol_proc, _ = start_listener_process(carol.home.root)  # loopback: not announced
    try:
        assert "Announced on the LAN at 127.0.0.1" in bob_proc.stderr.readline()
        found = CliRunner().invoke(
            main,
            ["--home", str(alice.home.root), "peers", "--discover", "--json"]
            + ["--interface", "127.0.0.1", "--seconds", "3"],
        )
        assert found.exit_code == 0, found.output
        [peer] = json.loads(found.output)["peers"]
        assert peer == {
            "id": bob.identity.device_id,
            "name": bob.identity.name,
            "host": "127.0.0.1",
            "port": bob_port,
            "address": f"127.0.0.1:{bob_port}",
            "version": PROTOCOL_VERSION,
            "trust": "trusted",
        }
        synced = CliRunner().invoke(
            main, ["--home", str(alice.home.root), "sync", peer["address"], "--json"]
        )
        assert synced.exit_code == 0, synced.output
        assert json.loads(synced.output)["peer"]["id"] == bob.identity.device_id
        out, err = bob_proc.communicate(timeout=15)
        assert bob_proc.returncode == 0, err
        assert json.loads(out)["received"] == 1
    finally:
        bob_proc.kill()
        carol_proc.kill()
        bob_proc.communicate()
        carol_proc.communicate()


def test_cli_discover_text_and_errors(make_home) -> None:
    home = str(make_home("alice").root)
    empty = CliRunner().invoke(
        main, ["--home", home, "peers", "--discover", "--interface", "127.0.0.1", "--seconds", "1"]
    )
    assert empty.exit_code == 0, empty.output
    assert empty.output == "No fieldkit peers announced on the LAN in 1 s.\n"
    broken = CliRunner().invoke(
        main, ["--home", home, "peers", "--discover", "--interface", "10.255.255.1"]
    )
    assert broken.exit_code == 1
    assert broken.output.startswith("fieldkit: Cannot start LAN discovery (mDNS) on 10.255")
    assert broken.output.count("\n") == 1
    assert "Traceback" not in broken.output
    for args in (["--interface", "127.0.0.1"], ["--discover", "--ble"]):
        assert CliRunner().invoke(main, ["--home", home, "peers", *args]).exit_code == 2
    for args in (["127.0.0.1:1", "--advertise"], ["--ble", "--listen", "--no-advertise"]):
        misplaced = CliRunner().invoke(main, ["--home", home, "sync", *args])
        assert misplaced.exit_code == 2
        assert "go with" in misplaced.output


def test_peers_lan_sets_the_interfaces_discovery_uses(make_home) -> None:
    home = str(make_home("alice").root)

    def fieldkit(*args: str):
        return CliRunner().invoke(main, ["--home", home, "peers", *args])

    assert fieldkit("lan").output == "LAN discovery browses on: every interface.\n"
    chosen = fieldkit("lan", "10.255.255.1")
    assert chosen.exit_code == 0, chosen.output
    assert chosen.stdout == "LAN discovery browses on: 10.255.255.1.\n"
    assert chosen.stderr == (  # set all the same: a USB Ethernet adapter may come later
        "fieldkit: No interface of this machine has 10.255.255.1 now; discovery browses on "
        "it once one has.\n"
    )
    broken = fieldkit("--discover", "--seconds", "1")  # no --interface: the setting applies
    assert broken.exit_code == 1
    assert "Cannot start LAN discovery (mDNS) on 10.255.255.1" in broken.output
    services = Services.build(Path(home))
    from fieldkit.tui.backend import TuiBackend

    assert TuiBackend(services).lan_interfaces == ["10.255.255.1"]
    assert TuiBackend(services, lan_interfaces=["127.0.0.1"]).lan_interfaces == ["127.0.0.1"]
    services.close()
    bad = fieldkit("lan", "eth0")
    assert bad.exit_code == 1
    assert bad.output == "fieldkit: 'eth0' is not an interface address (e.g. 192.168.1.20).\n"
    assert fieldkit("lan", "127.0.0.1").stderr == ""  # an address this machine has
    assert fieldkit("lan", "--all").output == "LAN discovery browses on: every interface.\n"
    assert fieldkit("lan", "--all", "127.0.0.1").exit_code == 2
