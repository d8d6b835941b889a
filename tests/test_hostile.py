"""Hostile and careless input, replayed by class: every case ends in one sentence and a
non-zero exit (or a clean refusal), never a traceback, a hang past its deadline, or loss.

Each class counts its outcomes, so a regression shows which case broke.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from fieldkit.cli import main
from fieldkit.errors import FieldkitError, PacketError, TransportError
from fieldkit.gossip.summary import SyncOptions
from fieldkit.gossip.sync import GuardedStream, start_listener, sync_with
from fieldkit.home import Home
from fieldkit.store.identity import Identity
from fieldkit.store.library import Library
from fieldkit.store.packet import (
    SIGNING_CONTEXT,
    build_manifest,
    canonical_bytes,
    chunk_hashes,
    read_packet_file,
    write_packet_file,
)
from fieldkit.testing.memory_link import memory_pair
from tests.fixtures.packets import TEST_BASE_FINGERPRINT, exemplars_for, random_adapter
from tests.fixtures.processes import FIELDKIT
from tests.gossip.helpers import Device


def signed(identity: Identity, weights: bytes | None = None, **changes):
    """A packet signed by `identity` with legal fields, then `changes` and `weights` put in
    and signed again: the signature holds, the values are absurd."""
    manifest, _, data = build_manifest(
        random_adapter(seed=1),
        identity,
        name="pumps",
        domain="water",
        description="Pumps.",
        exemplars=exemplars_for("pumps"),
        base_model_id="tiny",
        base_fingerprint=TEST_BASE_FINGERPRINT,
    )
    data = data if weights is None else weights
    manifest.update(
        weights_sha256=hashlib.sha256(data).hexdigest(),
        weights_size=len(data),
        chunk_hashes=chunk_hashes(data, manifest["chunk_size"]),
    )
    manifest.update(changes)
    return manifest, identity.sign(SIGNING_CONTEXT + canonical_bytes(manifest)), data


def safetensors_bytes(header: dict, data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + data


MUTANTS = {
    "a tensor of shape [2**64, 0]": lambda me: signed(
        me,
        safetensors_bytes(
            {
                "model.layers.0.self_attn.q_proj.lora_a": {
                    "dtype": "F16",
                    "shape": [2**64, 0],
                    "data_offsets": [0, 0],
                }
            }
        ),
    ),
    "a LoRA scale of 1e308": lambda me: signed(
        me,
        adapter={
            "fine_tune_type": "lora",
            "num_layers": -1,
            "lora_parameters": {
                "rank": 4,
                "scale": 1e308,
                "dropout": 0.0,
                "keys": ["self_attn.q_proj"],
            },
        },
    ),
    "a rank of 100000": lambda me: signed(
        me,
        adapter={
            "fine_tune_type": "lora",
            "num_layers": -1,
            "lora_parameters": {"rank": 100000, "scale": 2.0, "dropout": 0.0},
        },
    ),
    "a name that climbs out of a folder": lambda me: signed(me, name="../../x"),
    "a name of 100,000 characters": lambda me: signed(me, name="n" * 100_000),
    "a control character in the name": lambda me: signed(me, name="pumps\x1b[2J"),
    "a window-title escape in the description": lambda me: signed(
        me, description="Pumps \x1b]0;pwned\x07 and wells."
    ),
    "a screen-clearing exemplar": lambda me: signed(
        me, exemplars=[*exemplars_for("pumps")[1:], "How is a pump \x1b[2J primed?"]
    ),
    "a header nested 200,000 deep": lambda me: signed(
        me, safetensors_bytes({"a": 0})[:8] + b"[" * 200_000
    ),
}


@pytest.mark.parametrize("case", sorted(MUTANTS))
def test_signed_packets_with_absurd_values_are_refused_whole(case: str, make_home, tmp_path):
    home = make_home("me")
    me = Identity.load_or_create(home)
    manifest, signature, data = MUTANTS[case](me)
    lib = Library.open(home, identity=me)
    with pytest.raises(PacketError):
        lib.add(manifest, signature, data, source="file")
    assert lib.list_packets() == []
    lib.close()
    path = tmp_path / "mutant.fkpkt"
    with open(path, "wb") as out:
        write_packet_file(out, manifest, signature, data)
    result = CliRunner().invoke(main, ["--home", str(home.root), "library", "import", str(path)])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("fieldkit: "), result.output
    assert result.output.count("\n") == 1, result.output
    assert "Traceback" not in result.output


def test_imports_read_regular_files_only(make_home, tmp_path) -> None:
    home = make_home("me")
    fifo = tmp_path / "fifo.fkpkt"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo), str(tmp_path)):
        with pytest.raises(PacketError, match="not a regular file|is not a folder|cannot be read"):
            read_packet_file(Path(path))
        result = CliRunner().invoke(main, ["--home", str(home.root), "library", "import", path])
        assert result.exit_code != 0
        assert "Traceback" not in result.output


BAD_COMMAND_LINES = [
    ["sync", "--idle-timeout", "nan", "127.0.0.1:1"],
    ["sync", "--idle-timeout", "0", "127.0.0.1:1"],
    ["sync", "--idle-timeout", "-1", "127.0.0.1:1"],
    ["sync", "h" * 300 + ":7744"],
    ["sync", "--listen", "--host", "h" * 300, "--port", "0", "--once"],
    ["library", "remove", "n" * 100_000],
    ["library", "remove", "______"],
    ["library", "export", "%%%%%%", "-o", "x.fkpkt"],
    ["train", "data.jsonl", "--name", "x", "--domain", "y", "--seed", "-1"],
    ["train", "data.jsonl", "--name", "x", "--domain", "y", "--lr", "nan"],
    ["trust", "x" * 300],
    ["merge", "pumps", "pumps", "--name", "twice"],
    ["name", "field laptop \x1b]0;pwned\x07"],  # peers print this device's name
    ["name", "n" * 65],
    ["route", "\udcff\udcfe grain"],  # bytes the shell passed that are not UTF-8
    ["library", "show", "\udcff"],
    ["library", "export", "\udcff", "-o", "x.fkpkt"],
]


def test_bad_command_lines_get_one_sentence(make_home, make_packet) -> None:
    home = make_home("me")
    make_packet(home, name="pumps")
    outcomes = {}
    for argv in BAD_COMMAND_LINES:
        result = CliRunner().invoke(main, ["--home", str(home.root), *argv])
        outcomes[" ".join(argv)[:60]] = (result.exit_code, "Traceback" in result.output)
        assert result.exit_code != 0, (argv[:3], result.output)
        assert "Traceback" not in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), argv[:3]
    lib = Library.open(home)
    assert [r.name for r in lib.list_packets()] == ["pumps"]  # `remove ______` removed nothing
    lib.close()


def test_a_broken_home_is_one_sentence(tmp_path) -> None:
    file_home = tmp_path / "a-file"
    file_home.write_text("")
    broken = tmp_path / "broken"
    (broken / "library.db").mkdir(parents=True)  # the database cannot be opened
    for root in (file_home / "sub", broken, tmp_path / ("x" * 300)):
        result = CliRunner().invoke(main, ["--home", str(root), "library", "list"])
        assert result.exit_code == 1, result.output
        assert result.output.startswith("fieldkit: "), result.output
        assert "Traceback" not in result.output


def test_export_refuses_a_device_and_keeps_it(make_home, make_packet, tmp_path) -> None:
    home = make_home("me")
    make_packet(home, name="pumps")
    before = os.stat("/dev/null")
    result = CliRunner().invoke(
        main, ["--home", str(home.root), "library", "export", "pumps", "-o", "/dev/null"]
    )
    assert result.exit_code == 1
    assert "not a regular file" in result.output
    assert os.stat("/dev/null").st_rdev == before.st_rdev  # still the device node
    assert list(Path("/dev").glob(".null.*.tmp")) == []


class TrickleClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_trickling_peer_is_cut_by_the_minimum_rate() -> None:
    a, b = memory_pair()
    clock = TrickleClock()
    guarded = GuardedStream(b, deadline=3600, min_rate=256, window=30, clock=clock)
    with pytest.raises(TransportError, match="bytes/s"):  # noqa: PT012 - the loop is the case
        for second in range(0, 120, 2):  # one byte every two seconds
            clock.now = float(second)
            await a.send(b"x")
            await guarded.receive()
    assert clock.now <= 32


async def test_pings_are_idle_time_not_a_trickle() -> None:
    """A peer whose person compares a code for a minute sends nothing but Pings (version
    4): the rate guard counts that as idle time, not as a trickle far below the minimum
    rate; a real byte among them is still counted."""
    from fieldkit.gossip.protocol import PING_FRAME

    a, b = memory_pair()
    clock = TrickleClock()
    guarded = GuardedStream(b, deadline=3600, min_rate=256, window=30, clock=clock)
    for second in range(0, 120, 5):  # a Ping every five seconds for two minutes
        clock.now = float(second)
        await a.send(PING_FRAME)
        assert await guarded.receive() == PING_FRAME
    with pytest.raises(TransportError, match="bytes/s"):  # noqa: PT012 - the loop is the case
        for second in range(120, 240, 2):  # then one real byte every two seconds
            clock.now = float(second)
            await a.send(b"x")
            await guarded.receive()


async def test_a_session_ends_at_its_deadline_however_fast_bytes_come() -> None:
    a, b = memory_pair()
    clock = TrickleClock()
    guarded = GuardedStream(b, deadline=60, min_rate=1, window=30, clock=clock)
    clock.now = 61.0
    await a.send(b"x" * 10_000)
    with pytest.raises(TransportError, match="deadline"):
        await guarded.receive()


async def test_a_listener_caps_its_sessions_and_once_waits_for_a_real_peer(make_home, make_packet):
    home, other = make_home("me"), make_home("other")
    make_packet(other, name="wells")
    me, peer = Device.open(home), Device.open(other)
    options = SyncOptions(policy="open", handshake_timeout=3, idle_timeout=3)
    refused: list[str] = []
    listener = await start_listener(
        me, "127.0.0.1", 0, options, once=True, max_sessions=1, on_refused=refused.append
    )
    loop = asyncio.get_running_loop()
    holder = socket.create_connection(("127.0.0.1", listener.port))  # holds the one session
    await asyncio.sleep(0.2)
    extra = socket.create_connection(("127.0.0.1", listener.port))
    extra.settimeout(5)
    assert await loop.run_in_executor(None, extra.recv, 10) == b""  # closed at once
    assert listener.refused == 1
    assert "already running" in refused[0]
    holder.close()  # a stray connection: no handshake, so --once is not used up
    extra.close()
    await asyncio.sleep(3.5)
    summary = await sync_with("127.0.0.1", listener.port, peer, options)
    assert summary.ok, summary.error
    await asyncio.wait_for(listener.wait(), 10)  # the first authenticated session closed it
    assert "wells" in [r.name for r in me.library.list_packets()]


def test_pending_peers_and_events_stay_bounded(make_home) -> None:
    from fieldkit.store import peers, settings

    home = make_home("me")
    lib = Library.open(home, identity=Identity.load_or_create(home))
    for i in range(peers.PENDING_PEER_CAP + 50):
        key = hashlib.sha256(str(i).encode()).digest()
        lib.upsert_peer(key, f"junk {i}")
    assert len(lib.list_peers()) <= peers.PENDING_PEER_CAP + 1
    for _ in range(settings.EVENT_CAP + 300):
        lib.log_event("junk")
    assert lib.db["events"].count <= settings.EVENT_CAP + 100
    lib.close()


def test_a_home_path_that_cannot_work_is_a_fieldkit_error(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(FieldkitError, match="cannot be used"):
        Home(blocker / "home").ensure()


def _read_only_mounts() -> bool:
    """True where this process may bind-mount a folder read-only in a mount namespace of
    its own (root on Linux with unshare): a real read-only medium, not a chmod root ignores."""
    import shutil
    import subprocess
    import tempfile

    if not shutil.which("unshare") or os.geteuid() != 0:
        return False
    with tempfile.TemporaryDirectory() as folder:
        mount = f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder}"
        probe = subprocess.run(["unshare", "-m", "sh", "-c", mount], capture_output=True)
    return probe.returncode == 0


def _on_a_read_only_medium(home: Path, tmp_path: Path, *commands: list[str]) -> list:
    """Run each fieldkit command (`--home` the medium first) with `home` bind-mounted
    read-only as the medium, in a mount namespace of its own; return their results."""
    import shlex
    import subprocess

    from tests.fixtures.processes import ENV

    mount = tmp_path / "medium"
    mount.mkdir(exist_ok=True)
    results = []
    for command in commands:
        line = " ".join(shlex.quote(a) for a in (*FIELDKIT, "--home", str(mount), *command))
        script = (
            f"mount --bind {shlex.quote(str(home))} {shlex.quote(str(mount))} && "
            f"mount -o remount,ro,bind {shlex.quote(str(mount))} && {line}"
        )
        run = subprocess.run(
            ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=ENV
        )
        results.append(run)
    return results


@pytest.mark.skipif(not _read_only_mounts(), reason="needs root and unshare for a read-only mount")
def test_a_read_only_home_is_read_and_left_as_it_was(tmp_path) -> None:
    """The bug: a home on a read-only medium (a stick handed round) was refused whole, even
    to list its packets; a command that would change it is refused in one sentence."""
    from fieldkit.store.files import READ_ONLY_HOME

    home = Home(tmp_path / "home")
    library = Library.open(home.ensure(), identity=Identity.load_or_create(home))
    library.add_local(
        random_adapter(seed=1), name="pumps", domain="pumps", description="Test packet.",
        exemplars=exemplars_for("pumps"), base_model_id="tiny",
        base_fingerprint=TEST_BASE_FINGERPRINT,
    )  # fmt: skip
    library.close()
    before = sorted((p.name, p.stat().st_size) for p in home.root.rglob("*"))
    listed, shown, removed = _on_a_read_only_medium(
        home.root, tmp_path, ["library", "list", "--json"], ["library", "show", "pumps"],
        ["library", "remove", "pumps"],
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert [p["name"] for p in json.loads(listed.stdout)] == ["pumps"]
    assert shown.returncode == 0, shown.stderr
    assert removed.returncode == 1, removed.stdout
    assert removed.stderr.strip() == f"fieldkit: {READ_ONLY_HOME}"
    for run in (listed, shown, removed):
        assert "Traceback" not in run.stderr
    assert sorted((p.name, p.stat().st_size) for p in home.root.rglob("*")) == before


@pytest.mark.skipif(not _read_only_mounts(), reason="needs root and unshare for a read-only mount")
def test_a_read_only_home_routes_and_answers(tmp_path, tiny_model_dir, make_adapter) -> None:
    from fieldkit.store.models import model_fingerprint

    home = Home(tmp_path / "home")
    library = Library.open(home.ensure(), identity=Identity.load_or_create(home))
    library.add_local(
        make_adapter(1), name="pumps", domain="pumps", description="Test packet.",
        exemplars=exemplars_for("pumps"), base_model_id="tiny",
        base_fingerprint=model_fingerprint(tiny_model_dir),
    )  # fmt: skip
    library.close()
    before = sorted((p.name, p.stat().st_size) for p in home.root.rglob("*"))
    model = ["--model", str(tiny_model_dir)]
    routed, answered = _on_a_read_only_medium(
        home.root, tmp_path, [*model, "route", "--json", exemplars_for("pumps")[0]],
        [*model, "ask", "--no-server", "--adapter", "pumps", "--max-tokens", "2", "Why?"],
    )  # fmt: skip
    assert routed.returncode == 0, routed.stderr
    assert json.loads(routed.stdout)["route"] == "pumps"
    assert answered.returncode == 0, answered.stderr
    assert "(from the adapter only: pumps carries no notes)" in answered.stdout
    assert sorted((p.name, p.stat().st_size) for p in home.root.rglob("*")) == before


@pytest.mark.skipif(not _read_only_mounts(), reason="needs root and unshare for a read-only mount")
def test_a_read_only_folder_with_no_library_is_named_as_such(tmp_path) -> None:
    home = Home(tmp_path / "home").ensure()
    Identity.load_or_create(home)  # a device, with no library yet
    (listed,) = _on_a_read_only_medium(home.root, tmp_path, ["library", "list"])
    assert listed.returncode == 1, listed.stderr
    assert "cannot write to it (a read-only medium" in listed.stderr
    assert "Traceback" not in listed.stderr
    assert listed.stderr.count("\n") == 1


def test_an_empty_home_or_model_is_refused_not_read_as_the_default(tmp_path) -> None:
    for option in ("--home", "--model"):
        result = CliRunner().invoke(main, [option, "", "id"])
        assert result.exit_code == 2, result.output
        assert f"Invalid value for '{option}': is empty" in result.output


def test_a_mistyped_model_name_is_refused_before_any_work(make_home) -> None:
    """The bug: `--model nosuch library list` listed every packet as NO MODEL, exit 0, and
    `--model nosuch ask` spoke of a folder in the working directory."""
    home = make_home("me")
    for argv in (["library", "list"], ["ask", "hens"], ["route", "hens"]):
        result = CliRunner().invoke(main, ["--home", str(home.root), "--model", "nosuch", *argv])
        assert result.exit_code == 2, result.output
        assert "no model named 'nosuch' is installed (`fieldkit model list`)" in result.output


def test_text_from_a_peer_cannot_drive_the_terminal() -> None:
    from fieldkit.formats import control_chars, shown_text

    reason = "go away \x1b]0;pwned\x07\x1b[2J now\x00"
    assert shown_text(reason) == "go away \ufffd]0;pwned\ufffd\ufffd[2J now\ufffd"
    assert shown_text("line one\n\tline two") == "line one\n\tline two"
    assert control_chars("a\tb\nc", "\t\n") == []
    assert control_chars("a\x9bc", "\t\n") == ["\x9b"]  # a C1 CSI


def test_notes_with_control_characters_are_refused() -> None:
    from fieldkit.store.notes import check_notes

    for text, title in (("Prime it \x1b[2J first.", None), ("Prime it.", "Pump\x07")):
        note = {"id": "r1", "text": text} | ({"title": title} if title else {})
        with pytest.raises(PacketError, match="control characters"):
            check_notes([note])
    assert check_notes([{"id": "r1", "text": "Step one.\n\tStep two.", "title": "Priming"}])


def test_export_keeps_an_existing_file_and_refuses_a_damaged_packet(
    make_home, make_packet, tmp_path
) -> None:
    home = make_home("me")
    make_packet(home, name="pumps")
    precious = tmp_path / "precious.jsonl"
    precious.write_text('{"question": "mine"}\n')
    base = ["--home", str(home.root), "library", "export", "pumps", "-o", str(precious)]
    kept = CliRunner().invoke(main, base)
    assert kept.exit_code == 1
    assert "already exists" in kept.output
    assert precious.read_text() == '{"question": "mine"}\n'
    assert CliRunner().invoke(main, [*base, "--force"]).exit_code == 0
    assert read_packet_file(precious).manifest["name"] == "pumps"

    blob = next(p for p in (home.root / "blobs").rglob("*") if p.is_file())
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    out = tmp_path / "copy.fkpkt"
    damaged = CliRunner().invoke(
        main, ["--home", str(home.root), "library", "export", "pumps", "-o", str(out)]
    )
    assert damaged.exit_code == 1, damaged.output
    assert "'pumps' is not copied: the weights of 'pumps'" in damaged.output
    assert not out.exists()


def test_this_device_cannot_trust_or_block_itself(make_home) -> None:
    home = make_home("me")
    me = Identity.load_or_create(home).device_id
    for verb in ("block", "trust"):
        result = CliRunner().invoke(main, ["--home", str(home.root), verb, me])
        assert result.exit_code == 1, result.output
        assert "is this device" in result.output
    lib = Library.open(home)
    assert lib.get_peer(me) is None
    lib.close()


def test_an_id_no_device_can_have_is_refused_and_a_mistyped_peer_can_be_forgotten(
    make_home, make_packet
) -> None:
    """`trust 1111111111111111` was accepted (device ids are base32: no 0, 1, 8 or 9), and
    a peer trusted or blocked by mistake could not be removed."""
    home = make_home("me")
    other = make_home("other")
    theirs = make_packet(other, name="pumps")
    lib = Library.open(home)
    lib.add(theirs.manifest, theirs.signature, Library.open(other).read_weights(theirs), "peer")
    lib.close()

    def fieldkit(*argv: str):  # noqa: ANN202
        return CliRunner().invoke(main, ["--home", str(home.root), *argv])

    refused = fieldkit("trust", "1111111111111111")
    assert refused.exit_code == 1
    assert "'1111111111111111' is not a device id (16 characters" in refused.output
    author = theirs.author_id
    assert fieldkit("block", author.upper()).exit_code == 0
    assert json.loads(fieldkit("library", "list", "--json").output)[0]["state"] == "blocked"
    forgot = fieldkit("peers", "forget", author)
    assert forgot.exit_code == 0, forgot.output
    assert forgot.output == f"Forgot peer {author}. Its block is lifted.\n"
    assert json.loads(fieldkit("library", "list", "--json").output)[0]["state"] != "blocked"
    again = fieldkit("peers", "forget", author)
    assert again.exit_code == 1
    assert f"No peer {author} is known on this device." in again.output
    lib = Library.open(home)
    assert lib.get_peer(author) is None
    lib.close()


def test_an_emptied_database_beside_stored_packets_is_refused(
    make_home, make_packet, tmp_path
) -> None:
    import shutil

    home = make_home("me")
    make_packet(home, name="pumps")  # its library stays open: damage a copy of the home
    copy = tmp_path / "copy"
    shutil.copytree(home.root, copy, ignore=shutil.ignore_patterns("*-wal", "*-shm"))
    database = copy / Path(home.db_path).relative_to(home.root)
    database.write_bytes(b"")
    result = CliRunner().invoke(main, ["--home", str(copy), "library", "list"])
    assert result.exit_code == 1, result.output
    assert "is empty, yet 1 packet weight files are stored" in result.output
    assert database.stat().st_size == 0  # nothing written over it


def test_a_reader_that_stops_reading_ends_the_command_quietly(make_home, make_packet) -> None:
    """`fieldkit library show pumps | head -1`: the pipe closes under the command, which
    stops without "The system refused: Broken pipe." or a traceback."""
    import subprocess

    home = make_home("me")
    make_packet(home, name="pumps")
    for args in (["library", "show", "pumps"], ["library", "list", "--json"]):
        proc = subprocess.Popen(
            [*FIELDKIT, "--home", str(home.root), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        proc.stdout.close()  # before the command writes a byte
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, err
        assert err == b"", err


def test_a_name_file_edited_by_hand_into_no_device_name_falls_back(make_home) -> None:
    """Peers refuse a Hello whose name holds a control character, so a name file edited
    into one must not cut this device off: the default name stands in."""
    home = make_home("me")
    Identity.load_or_create(home)
    (home.keys_dir / "device.json").write_text(json.dumps({"name": "lab\x1b[2J"}))
    identity = Identity.load_or_create(home)
    assert "\x1b" not in identity.name
    assert identity.name.endswith(f"-{identity.device_id[:4]}")


def test_the_tui_outside_a_terminal_is_a_usage_error_not_a_hang(make_home) -> None:
    """The bug: `fieldkit < /dev/null > out` (a script, a service) started the TUI, which
    wrote escape codes into the file and ran until killed."""
    import subprocess

    home = make_home("me")
    done = subprocess.run(
        [*FIELDKIT, "--home", str(home.root)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert "The TUI needs a terminal; outside one, give a command." in done.stderr


def test_once_without_listen_is_a_usage_error(make_home) -> None:
    """`sync --once HOST:PORT` was accepted and --once silently ignored."""
    home = make_home("me")
    for argv in (["sync", "--once", "127.0.0.1:1"], ["sync", "--ble", "--once"]):
        result = CliRunner().invoke(main, ["--home", str(home.root), *argv])
        assert result.exit_code == 2, result.output
        assert "--once goes with --listen." in result.output


def test_a_refused_move_names_both_ends() -> None:
    """The bug: a folder where a packet's weights go was reported as the temporary file
    being moved there, which no longer exists."""
    from fieldkit.cli import environment_error

    refused = OSError(21, "Is a directory", "/home/blobs/09/.tmp-1-09", None, "/home/blobs/09/09")
    assert environment_error(refused) == (
        "The system refused: Is a directory (moving /home/blobs/09/.tmp-1-09 to /home/blobs/09/09)."
    )
    plain = OSError(13, "Permission denied", "/home/library.db")
    assert environment_error(plain) == "The system refused: Permission denied (/home/library.db)."
