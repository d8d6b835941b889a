"""Real TCP on 127.0.0.1: the Python API, the CLI, a receiver killed mid-transfer, bad clients."""

from __future__ import annotations

import asyncio
import errno
import json
import signal
import socket
import time
from dataclasses import replace

import pytest
from click.testing import CliRunner, Result

from fieldkit.cli import main
from fieldkit.gossip.framing import HEADER, encode_frame
from fieldkit.gossip.messages import Abort, Hello
from fieldkit.gossip.parts import held_chunks
from fieldkit.gossip.summary import SyncOptions
from fieldkit.gossip.sync import start_listener, sync_with
from fieldkit.gossip.tcp import why_unreachable
from fieldkit.services import Services
from fieldkit.store.library import Library
from tests.gossip.helpers import SlowPerson, start_listener_process

FAST = SyncOptions(handshake_timeout=5, idle_timeout=5)


@pytest.fixture
def services(make_home):
    built: list[Services] = []

    def factory(label: str) -> Services:
        svc = Services.build(make_home(label).root)
        built.append(svc)
        return svc

    yield factory
    for svc in built:
        svc.close()


async def test_two_homes_sync_both_ways_over_tcp(services, make_packet):
    a, b = services("a"), services("b")
    pa = make_packet(a.home, name="pumps", size_scale=4)
    pb = make_packet(b.home, name="solar", seed=2)
    a.library.set_trust(b.identity.device_id, "trusted")
    b.library.set_trust(a.identity.device_id, "trusted")
    listener = await start_listener(b, "127.0.0.1", 0, FAST, once=True)
    summary = await sync_with("127.0.0.1", listener.port, a, FAST)
    await asyncio.wait_for(listener.wait(), 5)
    assert summary.ok, summary.error
    (served,) = listener.summaries
    assert served.ok, served.error
    want = {pa.packet_id, pb.packet_id}
    assert {r.packet_id for r in a.library.list_packets()} == want
    assert {r.packet_id for r in b.library.list_packets()} == want
    data = summary.to_dict()
    assert data["sent"] == 1
    assert data["received"] == 1
    sent = next(p for p in data["packets"] if p["direction"] == "sent")
    assert sent["sha256"] == pa.sha256
    assert 0 < sent["wire_bytes"] < pa.size * 1.02


async def test_a_listener_keeps_no_passing_port_as_a_peers_address(services):
    a, b = services("a"), services("b")
    listener = await start_listener(b, "127.0.0.1", 0, FAST, once=True)
    port = listener.port
    summary = await sync_with("127.0.0.1", port, a, FAST)
    await listener.wait()
    assert summary.error is None
    assert a.library.get_peer(b.identity.device_id).address == f"127.0.0.1:{port}"
    # a's source port was a passing one: `s` on the Peers screen offered it, and failed
    assert b.library.get_peer(a.identity.device_id).address == ""


async def stalling_relay(port: int, forward: int, both_ways: bool = False) -> asyncio.Server:
    """Relay connections to 127.0.0.1:`port`, passing at most `forward` bytes back; then it
    stops reading from that side but keeps its connection open, as a laptop suspended
    mid-transfer does (its socket buffer is kept small, so the sender's fills). With
    `both_ways`, from then on it carries nothing the other way either, as a link that dies
    without a word does (a laptop carried out of Wi-Fi range)."""

    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        server_r, server_w = await asyncio.open_connection(sock=sock)
        cut = asyncio.Event()

        async def up() -> None:
            while data := await client_r.read(65536):
                if not (both_ways and cut.is_set()):
                    server_w.write(data)
                    await server_w.drain()

        async def down() -> None:
            passed = 0
            while passed < forward and (data := await server_r.read(4096)):
                client_w.write(data)
                passed += len(data)
            cut.set()
            await asyncio.sleep(3600)  # reads no more, closes nothing

        await asyncio.gather(up(), down(), return_exceptions=True)

    return await asyncio.start_server(relay, "127.0.0.1", 0)


async def test_a_sender_whose_peer_stops_reading_ends_its_session(services, make_packet):
    """A listener sending a packet to a peer that stopped reading (its send queue full)
    ended its session when the peer fell silent, then waited for ever to flush the queue
    while closing: a `--once` listener never exited."""
    a, b = services("a"), services("b")
    make_packet(b.home, name="big", size_scale=400)  # 6.5 MB: more than the socket buffers
    a.library.set_trust(b.identity.device_id, "trusted")
    b.library.set_trust(a.identity.device_id, "trusted")
    listener = await start_listener(b, "127.0.0.1", 0, FAST, once=True)
    relay = await stalling_relay(listener.port, forward=128 * 1024)
    relay_port = relay.sockets[0].getsockname()[1]
    tic = time.monotonic()
    summary = await sync_with("127.0.0.1", relay_port, a, FAST)
    assert not summary.ok
    await asyncio.wait_for(listener.wait(), FAST.idle_timeout + 15)
    (served,) = listener.summaries
    assert "sent nothing for 5 seconds" in (served.error or "")
    assert time.monotonic() - tic < 2 * FAST.idle_timeout + 15
    relay.close()


LIVELY = SyncOptions(handshake_timeout=5, idle_timeout=30, keepalive=0.2, dead_after=1.5)


async def test_a_link_that_dies_without_a_word_is_noticed_in_seconds(services, make_packet):
    """Both sides of a version 4 session hear a Ping from the other whenever it has
    nothing else to send, so a link that stops carrying anything is called dead after
    dead_after (1.5 s here), not after the idle timeout (30 s here; 60 s by default)."""
    a, b = services("a"), services("b")
    make_packet(b.home, name="big", size_scale=400)
    a.library.set_trust(b.identity.device_id, "trusted")
    b.library.set_trust(a.identity.device_id, "trusted")
    listener = await start_listener(b, "127.0.0.1", 0, LIVELY, once=True)
    relay = await stalling_relay(listener.port, forward=128 * 1024, both_ways=True)
    tic = time.monotonic()
    summary = await sync_with("127.0.0.1", relay.sockets[0].getsockname()[1], a, LIVELY)
    assert "went silent: nothing came for 1.5 seconds" in (summary.error or ""), summary.error
    await asyncio.wait_for(listener.wait(), 15)
    assert time.monotonic() - tic < 15
    (served,) = listener.summaries
    assert "went silent" in (served.error or ""), served.error
    relay.close()


@pytest.mark.parametrize(
    ("version", "keepalive", "ok"), [(4, 0.2, True), (3, 100, True), (4, 100, False)]
)
async def test_a_person_slow_to_compare_codes_keeps_the_session_alive(
    services, make_packet, version, keepalive, ok
):
    """While b's person compares the code (4 s), b sends nothing but Pings, so a, which
    calls a link dead after 1.5 s of nothing, waits (a version 3 peer: only the idle timeout
    counts). Without b's Pings, a gives up: the test sees the difference."""
    a, b = services("a"), services("b")
    make_packet(a.home, name="pumps")  # b's person is asked before b takes it
    a.library.set_trust(b.identity.device_id, "trusted")
    b.library.set_setting("receive_policy", "ask")
    slow_person = SlowPerson(4.0)
    quick = SyncOptions(handshake_timeout=5, idle_timeout=10, keepalive=0.2, dead_after=1.5)
    mine = replace(quick, protocol_version=version, keepalive=keepalive)
    listener = await start_listener(b, "127.0.0.1", 0, mine, once=True, confirm=slow_person)
    summary = await sync_with("127.0.0.1", listener.port, a, quick)
    await asyncio.wait_for(listener.wait(), 15)
    assert slow_person.asked
    assert summary.ok is ok, summary.error
    if not ok:
        assert "went silent: nothing came for 1.5 seconds" in summary.error


async def test_a_packet_that_failed_verification_is_not_offered(services, make_packet):
    a, b = services("a"), services("b")
    good = make_packet(a.home, name="pumps")
    damaged = make_packet(a.home, name="solar", seed=2)
    a.library.db["packets"].update(damaged.packet_id, {"verified": 0})  # as verify marks it
    a.library.weights_path(damaged).unlink()
    b.library.set_trust(a.identity.device_id, "trusted")
    listener = await start_listener(b, "127.0.0.1", 0, FAST, once=True)
    summary = await sync_with("127.0.0.1", listener.port, a, FAST)
    await asyncio.wait_for(listener.wait(), 5)
    assert summary.ok, summary.error  # no "the peer cancelled: weights unreadable"
    assert [p["name"] for p in summary.to_dict()["packets"]] == ["pumps"]
    assert [r.packet_id for r in b.library.list_packets()] == [good.packet_id]


async def test_a_running_listener_introduces_itself_by_its_new_name(services):
    a, b = services("a"), services("b")
    listener = await start_listener(b, "127.0.0.1", 0, FAST)
    try:
        b.identity.with_name("clinic store laptop")  # `fieldkit name`, in another process
        summary = await sync_with("127.0.0.1", listener.port, a, FAST)
    finally:
        await listener.close()
    assert summary.peer_name == "clinic store laptop"
    assert a.library.get_peer(b.identity.device_id).name == "clinic store laptop"


async def test_a_packet_removed_as_a_peer_asks_for_it_is_no_failure(
    services, make_packet, monkeypatch
):
    a, b = services("a"), services("b")
    make_packet(a.home, name="pumps")
    b.library.set_trust(a.identity.device_id, "trusted")
    read_weights = a.library.read_weights

    def removed_first(record):  # another terminal: `fieldkit library remove pumps`
        other = Library.open(a.home)
        other.remove("pumps")
        other.close()
        return read_weights(record)

    monkeypatch.setattr(a.library, "read_weights", removed_first)
    listener = await start_listener(a, "127.0.0.1", 0, FAST, once=True)
    summary = await sync_with("127.0.0.1", listener.port, b, FAST)
    await asyncio.wait_for(listener.wait(), 5)
    (served,) = listener.summaries
    assert served.ok, served.error
    assert served.packets == []
    assert summary.error is None
    assert b.library.list_packets() == []


async def test_multi_hop_over_tcp(services, make_packet):
    a, b, c = services("a"), services("b"), services("c")
    pa = make_packet(a.home, name="pumps")
    b.library.set_trust(a.identity.device_id, "trusted")
    c.library.set_trust(b.identity.device_id, "trusted")
    for server, client in ((b, a), (c, b)):
        listener = await start_listener(server, "127.0.0.1", 0, FAST, once=True)
        assert (await sync_with("127.0.0.1", listener.port, client, FAST)).ok
        await asyncio.wait_for(listener.wait(), 5)
    record = c.library.find(pa.packet_id)
    assert record.author_id == a.identity.device_id
    assert record.source == b.identity.device_id


def test_cli_trust_block_peers_and_policy(make_home):
    home = make_home("cli")
    runner = CliRunner()
    peer = "abcdefghijklmnop"
    result = runner.invoke(main, ["--home", str(home.root), "trust", peer])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["--home", str(home.root), "peers", "--json"])
    data = json.loads(result.output)
    assert data["policy"] == "trusted-only"
    assert data["peers"][0]["trust"] == "trusted"
    assert data["peers"][0]["key_pinned"] is False
    runner.invoke(main, ["--home", str(home.root), "block", peer])
    result = runner.invoke(main, ["--home", str(home.root), "peers"])
    assert "blocked" in result.output
    result = runner.invoke(main, ["--home", str(home.root), "peers", "policy", "open"])
    assert "open" in result.output
    result = runner.invoke(main, ["--home", str(home.root), "trust", "not an id"])
    assert result.exit_code == 1
    assert "is not a device id" in result.output


def test_cli_sync_to_nowhere_is_one_clear_sentence(make_home):
    home = make_home("cli")
    result = CliRunner().invoke(main, ["--home", str(home.root), "sync", "127.0.0.1:1"])
    assert result.exit_code == 1
    assert "Cannot reach 127.0.0.1:1: nothing listens on that port there" in result.output
    assert "Errno" not in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(main, ["--home", str(home.root), "sync", "nohost"])
    assert result.exit_code == 2
    result = CliRunner().invoke(main, ["--home", str(home.root), "sync", "127.0.0.1:1", "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)  # a script reads an answer on stdout even then
    assert (data["ok"], data["peer"]["address"]) == (False, "127.0.0.1:1")
    assert "Cannot reach 127.0.0.1:1" in data["error"]


def test_why_a_connect_failed_is_said_in_words():
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('::1', 1)")
    assert why_unreachable(refused).startswith("nothing listens on that port there")
    unknown = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert why_unreachable(unknown) == "that host name is not known here"
    assert why_unreachable(TimeoutError()) == "the host did not answer"
    assert why_unreachable(OSError(errno.EACCES, "Permission denied")) == "Permission denied"


async def test_a_silent_server_is_said_to_be_most_likely_not_fieldkit(services):
    """A web server waits for a request line, so it answers fieldkit's binary greeting with
    silence: the sync said only that the peer 'timed out'."""

    async def wait_silently(reader, writer) -> None:  # noqa: ANN001
        await reader.read(1 << 20)  # never a newline in time: it never answers

    server = await asyncio.start_server(wait_silently, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    a = services("a")
    try:
        summary = await sync_with("127.0.0.1", port, a, SyncOptions(handshake_timeout=1))
    finally:
        server.close()
    assert summary.error == (
        f"127.0.0.1:{port} sent nothing in 1 second: a fieldkit device greets at once, so "
        "this is most likely not one (is it `fieldkit sync --listen`?)."
    )


def test_a_sync_with_something_that_is_not_fieldkit_says_so(make_home):
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer_like_a_web_server() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

    threading.Thread(target=answer_like_a_web_server, daemon=True).start()
    home = make_home("cli")
    result = CliRunner().invoke(main, ["--home", str(home.root), "sync", f"127.0.0.1:{port}"])
    server.close()
    assert result.exit_code == 1
    assert "not a fieldkit device: it speaks another protocol (it began with 'HTTP')" in (
        result.output
    )
    assert "Sent 0" not in result.output  # no session: no counts, only why


async def test_receiver_killed_mid_transfer_resumes_after_restart(services, make_packet):
    a, b = services("a"), services("b")
    pa = make_packet(a.home, name="pumps", size_scale=16)  # ~530 KB, 17 chunks
    count = len(pa.manifest["chunk_hashes"])
    b.library.set_trust(a.identity.device_id, "trusted")
    b_home = b.home.root
    b.close()
    proc, port = start_listener_process(b_home)
    watcher = Library.open(b.home)
    killed = []

    def kill_when_some_chunks_landed(update) -> None:
        if killed or update.done < 4 * pa.manifest["chunk_size"]:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not held_chunks(watcher, pa.packet_id)[0]:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        killed.append(len(held_chunks(watcher, pa.packet_id)[0]))

    try:
        first = await sync_with("127.0.0.1", port, a, FAST, progress=kill_when_some_chunks_landed)
        proc.wait(5)
    finally:
        proc.kill()
    assert killed
    assert first.error is not None
    assert 0 < killed[0] < count
    assert not watcher.has(pa.packet_id)

    proc, port = start_listener_process(b_home)
    try:
        second = await sync_with("127.0.0.1", port, a, FAST)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert second.ok, second.error
    assert proc.returncode == 0, err
    served = json.loads(out)
    (report,) = served["packets"]
    assert report["status"] == "ok"
    assert (
        report["resumed_from"] >= killed[0] * pa.manifest["chunk_size"] - pa.manifest["chunk_size"]
    )
    assert report["resumed_from"] > 0
    (sent,) = second.packets
    assert sent.resumed_from == report["resumed_from"]
    assert watcher.has(pa.packet_id)
    assert watcher.find(pa.packet_id).source == a.identity.device_id
    assert no_partial_state(watcher, pa.packet_id)
    assert served["peer"]["id"] == a.identity.device_id
    watcher.close()


def no_partial_state(library: Library, packet_id: str) -> bool:
    return library.transfer_state(packet_id) is None and not library.part_path(packet_id).exists()


def cli_sync_with_listener(a: Services, b: Services, *flags: str) -> tuple[Result, str, str, int]:
    """Close `b`, serve its home from a listener process and run `fieldkit sync` from `a`
    against it; return the CLI result and the listener's stdout, stderr and exit code."""
    b_home = b.home.root
    b.close()
    proc, port = start_listener_process(b_home)
    try:
        result = CliRunner().invoke(
            main, ["--home", str(a.home.root), "sync", f"127.0.0.1:{port}", *flags]
        )
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    return result, out, err, proc.returncode


def test_cli_sync_connects_and_prints_a_json_summary(services, make_packet):
    a, b = services("a"), services("b")
    pa = make_packet(a.home, name="pumps")
    b.library.set_trust(a.identity.device_id, "trusted")
    result, out, err, returncode = cli_sync_with_listener(a, b, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] is True
    (packet,) = data["packets"]
    assert packet["name"] == "pumps"
    assert packet["sha256"] == pa.sha256
    assert packet["direction"] == "sent"
    assert packet["status"] == "ok"
    assert packet["wire_bytes"] > 0
    assert packet["resumed_from"] == 0
    assert returncode == 0, err
    assert json.loads(out)["received"] == 1


def test_cli_sync_with_an_untrusting_listener_reports_the_refusal(services, make_packet):
    a, b = services("a"), services("b")
    make_packet(b.home, name="solar")
    result, *_ = cli_sync_with_listener(a, b)
    assert result.exit_code == 0, result.output
    assert "pending" in result.output
    assert "fieldkit trust" in result.output
    # the other side needs the same step before it takes this device's packets
    assert "It takes this device's packets only once it trusts this device" in result.output
    assert "refused" in result.output
    assert "Sent 0, received 0, refused 1, failed 0." in result.output


def test_cli_sync_refused_by_a_blocking_listener_exits_non_zero(services):
    a, b = services("a"), services("b")
    b.library.set_trust(a.identity.device_id, "blocked")
    result, out, _, returncode = cli_sync_with_listener(a, b, "--json")
    assert result.exit_code == 1
    # said as the peer's refusal: "This device refuses" read as this device's own
    assert "The peer ended the session: It refuses a session with this device." in result.output
    assert "Traceback" not in result.output
    assert returncode == 1
    assert "blocked" in json.loads(out)["error"]


BAD_CLIENTS = {
    b"GET / HTTP/1.0\r\n\r\n": "not a fieldkit device: it speaks another protocol",
    HEADER.pack(1 << 30) + b"\x00": "sent a 1073741824-byte frame; the limit is",
    HEADER.pack(100) + b"\x94\x01": "closed before the sync finished",  # cut short, then gone
    encode_frame(Hello(99, "x" * 16, "old", bytes(32), bytes(32), 65536).to_wire()): (
        "speaks gossip protocol version 99"
    ),
    encode_frame(
        Abort("bye \x1b]0;pwned\x07").to_wire()
    ): "ended the session: bye \ufffd]0;pwned\ufffd",
}


def send_and_wait_for_close(port: int, payload: bytes) -> str:
    """Send `payload` to the listener, stop sending and read until it hangs up; return the
    client's address as the listener names it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        while client.recv(65536):
            pass
        return f"127.0.0.1:{client.getsockname()[1]}"


def test_a_listener_says_why_each_bad_client_failed_and_goes_on_serving(services, make_packet):
    a, b = services("a"), services("b")
    make_packet(a.home, name="pumps")
    b.library.set_trust(a.identity.device_id, "trusted")
    b_home = b.home.root
    b.close()
    proc, port = start_listener_process(b_home)
    try:
        clients = {send_and_wait_for_close(port, bad): why for bad, why in BAD_CLIENTS.items()}
        result = CliRunner().invoke(main, ["--home", str(a.home.root), "sync", f"127.0.0.1:{port}"])
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert result.exit_code == 0, result.output
    assert proc.returncode == 0, err
    served = [json.loads(line) for line in out.splitlines()]  # JSON Lines: one a session
    assert [s["ok"] for s in served] == [False] * len(clients) + [True]
    assert served[-1]["received"] == 1
    lines = err.splitlines()
    assert len(lines) == len(clients), err
    for address, why in clients.items():
        (line,) = [line for line in lines if address in line]
        assert line.count(address) == 1, line
        assert line.startswith("fieldkit: The session "), line
        assert why in line
    assert "\x1b" not in err
    assert "Traceback" not in err


def test_a_copied_home_is_told_to_take_a_new_identity_and_then_syncs(services, make_packet):
    import shutil

    a = services("a")
    make_packet(a.home, name="pumps")
    copy = a.home.root.parent / "copy"
    shutil.copytree(a.home.root, copy)  # the same home on a second laptop: the same key
    a.library.remove("pumps")
    proc, port = start_listener_process(copy)  # --once: a failed handshake does not count
    try:
        result = CliRunner().invoke(main, ["--home", str(a.home.root), "sync", f"127.0.0.1:{port}"])
    finally:
        proc.kill()
        proc.communicate()
    assert result.exit_code == 1
    assert "one home was copied from the other" in result.output
    assert "fieldkit id --new" in result.output

    old = Services.build(copy).identity.device_id
    renewed = CliRunner().invoke(main, ["--home", str(copy), "id", "--new"])
    assert renewed.exit_code == 0, renewed.output
    b = Services.build(copy)
    assert b.identity.device_id != old
    assert f"Peers that trusted {old} must trust {b.identity.device_id}" in renewed.output
    assert (copy / "keys" / f"device.key.{old}.old").is_file()  # the old key is kept
    assert b.identity.device_id in CliRunner().invoke(main, ["--home", str(copy), "id"]).output
    b.library.set_trust(a.identity.device_id, "trusted")
    a.library.set_trust(b.identity.device_id, "trusted")
    result, out, err, returncode = cli_sync_with_listener(a, b)
    assert result.exit_code == 0, result.output
    assert "Sent 0, received 1" in result.output


async def test_a_listener_shows_the_pairing_code_while_the_other_side_compares(
    services, make_packet
):
    """The bug: `fieldkit sync --listen` printed the code only in its summary, after the
    session, while the person at the other device was asked to compare it."""
    a, b = services("a"), services("b")
    make_packet(b.home, name="pumps")
    a.library.set_setting("receive_policy", "ask")
    b_home = b.home.root
    b.close()
    proc, port = start_listener_process(b_home)
    shown: list[str] = []

    async def confirm(peer_id: str, name: str, sas: str) -> bool:
        shown.append(await asyncio.to_thread(proc.stderr.readline))  # the listener's next line
        shown.append(sas)
        return False

    try:
        summary = await sync_with("127.0.0.1", port, a, FAST, confirm=confirm)
        proc.communicate(timeout=10)
    finally:
        proc.kill()
    line, sas = shown
    assert line.startswith(f"{a.identity.name} ({a.identity.device_id}) connected (pending): ")
    assert f"the code is {sas};" in line
    assert summary.sas == sas
