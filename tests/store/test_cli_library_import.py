"""`fieldkit library import` on real homes: a good file repairs a packet damaged here, a
missing PATH is reported in its turn, and a folder of packet files imports each of them.

No base model is installed in these homes (the packets' base is then not checked), so the
CLI runs without building one.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fieldkit.cli import main
from fieldkit.home import Home
from fieldkit.store.identity import Identity
from fieldkit.store.library import Library
from fieldkit.store.packet import packet_id, read_packet_file, save_packet_file

REPAIRED = "Repaired 'pumps': its weights were damaged here and the file's are good.\n"


def fieldkit(home: Home, *args: str) -> Result:
    return CliRunner().invoke(main, ["--home", str(home.root), *args])


def export(home: Home, name: str, path: Path) -> Path:
    """Write packet `name` of `home` to the packet file `path`; return the path."""
    library = Library.open(home)
    record, weights = library.checked_weights(name)
    library.close()
    save_packet_file(path, record.manifest, record.signature, weights)
    return path


def blob_of(home: Home, name: str) -> Path:
    library = Library.open(home)
    path = library.weights_path(library.get(name))
    library.close()
    return path


def names_in(home: Home) -> list[str]:
    library = Library.open(home)
    names = [record.name for record in library.list_packets()]
    library.close()
    return names


def damage(home: Home, blob: Path, how: str) -> None:
    """Damage packet 'pumps' here: flip a byte of its weights, delete them, or only set it
    aside as `library verify` does after a failed check (the weights are fine)."""
    if how == "flipped":
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))
    elif how == "missing":
        blob.unlink()
    else:
        con = sqlite3.connect(home.db_path)
        con.execute("update packets set verified = 0 where name = 'pumps'")
        con.commit()
        con.close()


@pytest.fixture
def pumps(home: Home, make_packet, tmp_path: Path) -> Path:
    """Return a good packet file of packet 'pumps', which `home` holds."""
    make_packet(home, name="pumps", seed=1)
    return export(home, "pumps", tmp_path / "pumps.fkpkt")


def test_a_good_file_repairs_a_packet_whose_weights_are_damaged_here(home, pumps):
    blob = blob_of(home, "pumps")
    damage(home, blob, "flipped")
    assert fieldkit(home, "library", "verify", "pumps").exit_code == 1
    assert json.loads(fieldkit(home, "library", "list", "--json").stdout)[0]["verified"] is False
    result = fieldkit(home, "library", "import", str(pumps))
    assert result.exit_code == 0, result.output
    assert result.stdout == REPAIRED
    listed = json.loads(fieldkit(home, "library", "list", "--json").stdout)
    assert (listed[0]["verified"], listed[0]["state"]) == (True, "ok")
    assert fieldkit(home, "library", "verify", "pumps").exit_code == 0
    assert not list(blob.parent.glob(".tmp-*"))  # written as new weights are: no temp left


@pytest.mark.parametrize("how", ["flipped", "missing", "set aside"])
def test_import_file_repairs_weights_damaged_missing_or_set_aside(home, pumps, how):
    blob = blob_of(home, "pumps")
    good = blob.read_bytes()
    damage(home, blob, how)
    library = Library.open(home)
    record, arrival = library.import_file(pumps, None)
    assert arrival == "repaired"
    assert record.verified
    assert library.get("pumps").verified
    assert library.blobs.holds(record.sha256)
    assert blob.read_bytes() == good
    assert library.import_file(pumps, None)[1] == "held"  # now whole: left as it is
    library.close()


def test_a_whole_packet_is_left_as_it_is_and_nothing_is_rewritten(home, pumps):
    blob = blob_of(home, "pumps")
    before = os.stat(blob)
    result = fieldkit(home, "library", "import", str(pumps))
    assert result.exit_code == 0, result.output
    assert result.stdout == "Packet 'pumps' is already in the library.\n"
    after = os.stat(blob)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_packet_file_given_exemplars_comes_in_signed_again_with_them(make_home, pumps, tmp_path):
    other = make_home("other")
    questions = tmp_path / "questions.txt"
    questions.write_text("\n".join(f"How do I prime pump {i}?" for i in range(100)))
    result = fieldkit(other, "library", "import", str(pumps), "--exemplars", str(questions))
    assert result.exit_code == 0, result.output
    library = Library.open(other)
    record = library.get("pumps")
    assert record.exemplars == questions.read_text().splitlines()  # all 100 of them, in order
    assert record.manifest["format"] == 4
    assert record.author_id == Identity.load_or_create(other).device_id  # signed here
    original = read_packet_file(pumps).manifest
    assert record.manifest["lineage"] == [packet_id(original)]  # whose weights it keeps
    assert record.manifest["weights_sha256"] == original["weights_sha256"]
    library.close()


def test_a_missing_path_is_reported_and_the_others_still_come_in(make_home, pumps, tmp_path):
    other = make_home("other")
    missing = tmp_path / "nonexist.fkpkt"
    result = fieldkit(other, "library", "import", str(pumps), str(missing))
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith("Imported 'pumps' (")
    errors = result.stderr.splitlines()
    assert errors[0].startswith(f"fieldkit: {missing}: ")
    assert "cannot be read" in errors[0]
    assert errors[-1] == "fieldkit: 1 of 2 were not imported (see above)."
    assert names_in(other) == ["pumps"]


def test_one_missing_path_is_one_sentence_and_exit_1(make_home, tmp_path):
    missing = tmp_path / "nonexist.fkpkt"
    result = fieldkit(make_home("other"), "library", "import", str(missing))
    assert result.exit_code == 1, result.output
    assert result.output == (
        f"fieldkit: The packet file {missing} cannot be read (No such file or directory).\n"
    )


def test_a_folder_of_packet_files_imports_each_of_them(home, make_home, make_packet, tmp_path):
    make_packet(home, name="pumps", seed=1)
    make_packet(home, name="wells", seed=2)
    usb = tmp_path / "usb"
    usb.mkdir()
    for name in ("pumps", "wells"):
        export(home, name, usb / f"{name}.fkpkt")
    (usb / "._pumps.fkpkt").write_bytes(b"\0" * 4096)  # macOS's resource fork on FAT: skipped
    (usb / "README.txt").write_text("Packets for the north district.")
    other = make_home("other")
    result = fieldkit(other, "library", "import", str(usb))
    assert result.exit_code == 0, result.output
    assert [line.split(" (")[0] for line in result.stdout.splitlines()] == [
        "Imported 'pumps'",
        "Imported 'wells'",
    ]
    assert names_in(other) == ["pumps", "wells"]
    (usb / "bad.fkpkt").write_bytes(b"not a packet")
    again = fieldkit(make_home("third"), "library", "import", str(usb))
    assert again.exit_code == 1
    assert again.stderr.splitlines()[0].startswith(f"fieldkit: {usb / 'bad.fkpkt'}: ")
    assert again.stderr.splitlines()[-1] == "fieldkit: 1 of 3 were not imported (see above)."


def test_a_folder_with_neither_an_adapter_nor_packet_files_says_so(make_home, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing to import")
    other = make_home("other")
    result = fieldkit(other, "library", "import", str(empty))
    assert result.exit_code == 1
    assert result.output == f"fieldkit: {empty} holds no adapter and no .fkpkt packet files.\n"


def test_a_folder_holding_an_adapter_is_read_as_one_even_beside_packet_files(
    home, pumps, make_home, tmp_path
):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapters.safetensors").write_bytes(b"")
    (folder / "pumps.fkpkt").write_bytes(pumps.read_bytes())
    other = make_home("other")
    result = fieldkit(other, "library", "import", str(folder))
    assert result.exit_code == 1
    assert "needs a name and a domain" in result.output
    assert names_in(other) == []


def test_weights_found_damaged_on_loading_set_the_packet_aside_and_say_how_to_repair(home, pumps):
    """The bug: `ask` found the weights damaged, said so, and left the packet listed as
    verified (the router kept picking it), with no word of what to do."""
    from fieldkit.errors import PacketError

    damage(home, blob_of(home, "pumps"), "flipped")
    library = Library.open(home)
    try:
        with pytest.raises(PacketError) as caught:
            library.load_adapter(library.get("pumps"))
        assert str(caught.value) == (
            "The weights of 'pumps' do not match their sha256; it is set aside until a good "
            "copy is imported (`fieldkit library import pumps.fkpkt` repairs it)."
        )
        assert library.get("pumps").verified is False
    finally:
        library.close()
    assert fieldkit(home, "library", "import", str(pumps)).stdout == REPAIRED
