"""Two fieldkit processes on one home at once: a technician's command while the agent, a
listener or another terminal works on the same library.

Each test holds one real fieldkit process at a known point of its work (the function there
prints "stalled" and waits for a line on stdin), runs the other command for real against
the same SQLite file, then lets the first go on and checks the outcome and the library.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fieldkit.errors import LibraryError, PacketRemoved
from fieldkit.home import Home
from fieldkit.store.identity import Identity
from fieldkit.store.library import Library
from tests.fixtures.processes import ENV, FIELDKIT, REPO, held

TRAIN_DATA = REPO / "assets" / "demo" / "solar_pumps" / "train.jsonl"


def fieldkit(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `fieldkit ARGS` in a process of its own; return it finished."""
    return subprocess.run(
        [*FIELDKIT, *args],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=REPO,
        timeout=120,
    )


def release(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Let a held process go on; return its exit status, stdout and stderr."""
    try:
        out, err = proc.communicate("go\n", timeout=300)
    finally:
        proc.kill()
    return proc.returncode, out, err


def export(home: Home, name: str, path: Path) -> Path:
    done = fieldkit("--home", str(home.root), "library", "export", name, "-o", str(path))
    assert done.returncode == 0, done.stderr
    return path


def stored_weights(home: Home) -> set[str]:
    return {p.name.split(".")[0] for p in Path(home.blobs_dir).rglob("*.safetensors")}


def test_a_refused_import_leaves_no_weights_behind(make_home, make_packet, tmp_path) -> None:
    """The bug: two terminals imported two packets named 'pumps' by different authors at
    once; the one refused because the other got the name first left its weights in the blob
    store with no packet row (weights without a row, until a `library gc`)."""
    make_packet(alice := make_home("alice"), name="pumps")
    ours = export(alice, "pumps", tmp_path / "ours.fkpkt")
    make_packet(bob := make_home("bob"), name="pumps", seed=1)
    theirs = export(bob, "pumps", tmp_path / "theirs.fkpkt")
    home = make_home("home")
    first = held(
        "fieldkit.store.blobs:BlobStore.write", "--home", str(home.root), "library", "import",
        str(ours),
    )  # fmt: skip
    second = fieldkit("--home", str(home.root), "library", "import", str(theirs))
    assert second.returncode == 0, second.stderr
    status, _, err = release(first)
    assert status == 1, err
    assert err == (
        "fieldkit: A packet named 'pumps' by another author is already in the library: "
        "`fieldkit library remove pumps` makes way for this one.\n"
    )
    library = Library.open(home)
    try:
        [record] = library.list_packets()
        assert stored_weights(home) == {record.sha256}
    finally:
        library.close()


def test_weights_of_a_packet_removed_meanwhile_say_it_was_removed(home, make_packet) -> None:
    """The bug: the agent answering with a packet (or a listener sending it) that another
    terminal removed the moment before reported "The weights of 'pumps' are missing from
    the library (`fieldkit library verify` sets the packet aside)", as if it were damaged."""
    make_packet(home, name="pumps")
    library = Library.open(home, identity=Identity.load_or_create(home))
    try:
        record = library.get("pumps")
        removed = fieldkit("--home", str(home.root), "library", "remove", "pumps")
        assert removed.returncode == 0, removed.stderr
        with pytest.raises(PacketRemoved) as caught:  # a LibraryError the session tells apart
            library.read_weights(record)
        assert str(caught.value) == "'pumps' was removed from the library."
        assert isinstance(caught.value, LibraryError)
    finally:
        library.close()


def test_training_keeps_its_packet_when_the_name_is_taken_meanwhile(
    home, make_packet, tiny_model_dir
) -> None:
    """The bug: `train --name pumps` ran for minutes while another terminal imported a
    packet named 'pumps'; at the end train said "A packet named 'pumps' is already in the
    library." and the trained adapter was thrown away."""
    trainer = held(
        "fieldkit.training.train:train_lora", "--home", str(home.root), "--model",
        str(tiny_model_dir), "train", str(TRAIN_DATA), "--name", "pumps", "--domain", "pumps",
        "--iters", "2", "--batch-size", "1",
    )  # fmt: skip
    make_packet(home, name="pumps")
    status, out, err = release(trainer)
    assert status == 0, err
    assert "Traceback" not in err
    assert "it is kept as 'pumps-2'" in err
    library = Library.open(home)
    try:
        assert [r.name for r in library.list_packets()] == ["pumps", "pumps-2"]
    finally:
        library.close()
