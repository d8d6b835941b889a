"""Several processes on one home at once: nothing lost, nothing locked out, nothing left over.

Two packets share one weights blob (a reissue keeps the weights). One process imports and
removes the first in a loop, another the second, a third verifies and lists, a fourth
receives a packet over TCP again and again. Before the library held every write under
SQLite's write lock, a remove could unlink the shared blob between another process's
"blob present" check and its row, and imports died with "database is locked".
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from pathlib import Path

from fieldkit.home import Home
from fieldkit.store.identity import Identity
from fieldkit.store.library import Library
from fieldkit.store.packet import read_packet_file, write_packet_file
from tests.fixtures.packets import TEST_BASE_FINGERPRINT, exemplars_for, random_adapter

SECONDS = 6.0


def _start(go, out) -> float:
    """Say this process is ready, wait for the others, return when to stop."""
    out.put(("ready", 0))
    go.wait(120)
    return time.time() + SECONDS


def _export(lib: Library, name: str, path: Path) -> None:
    record = lib.get(name)
    with open(path, "wb") as out:
        write_packet_file(out, record.manifest, record.signature, lib.read_weights(record))


def _import_remove_loop(root: str, packet_file: str, name: str, go, out) -> None:
    home = Home(Path(root))
    lib = Library.open(home, identity=Identity.load_or_create(home))
    packet = read_packet_file(Path(packet_file))
    until = _start(go, out)
    rounds = 0
    try:
        while time.time() < until:
            lib.add(packet.manifest, packet.signature, packet.weights, source="file")
            lib.remove(name)
            rounds += 1
        lib.add(packet.manifest, packet.signature, packet.weights, source="file")
        out.put(("ok", rounds))
    except Exception as exc:  # reported to the test, which fails on it
        out.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        lib.close()


def _verify_loop(root: str, go, out) -> None:
    from fieldkit.errors import LibraryError

    home = Home(Path(root))
    lib = Library.open(home)
    until = _start(go, out)
    rounds = 0
    try:
        while time.time() < until:
            for record in lib.list_packets():
                with contextlib.suppress(LibraryError):  # removed meanwhile: documented
                    lib.verify(record.packet_id)
            rounds += 1
        out.put(("ok", rounds))
    except Exception as exc:
        out.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        lib.close()


def _receive_loop(root: str, sender_root: str, go, out) -> None:
    from fieldkit.gossip.summary import SyncOptions
    from fieldkit.gossip.sync import start_listener, sync_with
    from tests.gossip.helpers import Device

    async def main() -> int:
        me = Device.open(Home(Path(root)))
        sender = Device.open(Home(Path(sender_root)))
        rounds = 0
        wells_id = sender.library.get("wells").packet_id
        options = SyncOptions(policy="open", handshake_timeout=10, idle_timeout=10)
        until = _start(go, out)
        while time.time() < until:
            listener = await start_listener(me, "127.0.0.1", 0, options, once=True)
            summary = await sync_with("127.0.0.1", listener.port, sender, options)
            await listener.close()
            # packets the other loops remove mid-session may fail to go the other way;
            # wells must arrive whole
            sent = [p for p in summary.packets if p.name == "wells" and p.direction == "sent"]
            if summary.error:  # a link cut under load loses nothing: try again
                if me.library.find(wells_id) is not None:
                    me.library.remove("wells")
                continue
            if not sent or sent[0].status != "ok":
                raise RuntimeError([(p.name, p.status, p.reason) for p in sent])
            rounds += 1
            me.library.remove("wells")
        return rounds

    try:
        out.put(("ok", asyncio.run(main())))
    except Exception as exc:
        out.put(("error", f"{type(exc).__name__}: {exc}"))


def test_four_processes_on_one_home_lose_nothing(make_home, tmp_path: Path) -> None:
    home, sender_home = make_home("shared"), make_home("sender")
    lib = Library.open(home, identity=Identity.load_or_create(home))
    lib.add_local(
        random_adapter(seed=1),
        name="pumps",
        domain="water",
        description="Pumps.",
        exemplars=exemplars_for("pumps"),
        base_model_id="tiny",
        base_fingerprint=TEST_BASE_FINGERPRINT,
    )
    lib.reissue("pumps", name="pumps-v2", description="The same weights, signed again.")
    files = {name: tmp_path / f"{name}.fkpkt" for name in ("pumps", "pumps-v2")}
    for name, path in files.items():
        _export(lib, name, path)
    lib.close()
    sender = Library.open(sender_home, identity=Identity.load_or_create(sender_home))
    sender.add_local(
        random_adapter(seed=2),
        name="wells",
        domain="water",
        description="Wells.",
        exemplars=exemplars_for("wells"),
        base_model_id="tiny",
        base_fingerprint=TEST_BASE_FINGERPRINT,
    )
    sender.close()

    ctx = multiprocessing.get_context("spawn")
    out, go = ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_import_remove_loop, args=(str(home.root), str(f), n, go, out))
        for n, f in files.items()
    ]
    procs.append(ctx.Process(target=_verify_loop, args=(str(home.root), go, out)))
    procs.append(
        ctx.Process(target=_receive_loop, args=(str(home.root), str(sender_home.root), go, out))
    )
    for p in procs:
        p.start()
    assert [out.get(timeout=120)[0] for _ in procs] == ["ready"] * len(procs)
    go.set()  # all four start together, whatever the machine's load
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    errors = [r for r in results if r[0] != "ok"]
    assert errors == [], errors
    assert all(rounds > 0 for _, rounds in results), results

    lib = Library.open(home)
    try:
        names = sorted(r.name for r in lib.list_packets())
        assert names == ["pumps", "pumps-v2"]
        for record in lib.list_packets():
            assert lib.verify(record.packet_id)[1] is None
            lib.load_adapter(record)
        referenced = {r.sha256 for r in lib.list_packets()}
        assert set(lib.blobs.stored()) == referenced  # no orphan blobs
        assert list(home.parts_dir.glob("*.part")) == []
        assert list(home.blobs_dir.glob("*/.tmp-*")) == []
    finally:
        lib.close()


def _device_id(root: str, start_at: float = 0.0) -> str:
    time.sleep(max(0.0, start_at - time.time()))  # all processes reach the race at once
    return Identity.load_or_create(Home(Path(root))).device_id


def test_processes_starting_on_a_new_home_at_once_share_one_identity(tmp_path: Path) -> None:
    """The first key written stays: none of the racing processes fails or replaces it."""
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        pool.map(time.sleep, [0.01] * 6)  # the workers are up before the clock starts
        for trial in range(5):
            root = tmp_path / f"new-home-{trial}"
            start_at = time.time() + 0.5
            ids = pool.starmap(_device_id, [(str(root), start_at)] * 6)
            assert len(set(ids)) == 1
            assert _device_id(str(root)) == ids[0]
            keys = sorted(p.name for p in (root / "keys").iterdir())
            assert not [k for k in keys if k.endswith(".tmp")]
