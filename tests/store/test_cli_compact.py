"""`fieldkit library compact` and `fieldkit train --bits`, through click on real homes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fieldkit.cli import main
from fieldkit.home import Home
from fieldkit.store.identity import Identity
from fieldkit.store.library import Library
from fieldkit.store.quantize import QuantizedTensors, ranks
from tests.training.test_train import write_chat_jsonl


@pytest.fixture
def cli(tiny_model_dir):
    runner = CliRunner()

    def invoke(home: Home, *args: str):
        return runner.invoke(
            main, ["--home", str(home.root), "--model", str(tiny_model_dir), *args]
        )

    return invoke


def opened(home: Home) -> Library:
    return Library.open(home, identity=Identity.load_or_create(home))


def test_compact_signs_a_smaller_derived_packet_naming_its_source(cli, home, make_packet):
    source = make_packet(home, name="pumps")
    result = cli(home, "library", "compact", "pumps", "--bits", "4", "--energy", "0.9",
                 "--name", "pumps-small")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Compacted 'pumps' into 'pumps-small'" in result.output
    assert "int4" in result.output
    library = opened(home)
    try:
        new = library.get("pumps-small")
        assert library.get("pumps").packet_id == source.packet_id  # the source stays
        assert new.manifest["lineage"] == [source.packet_id]
        assert (new.manifest["format"], new.manifest["dtype"]) == (3, "int4")
        assert new.author_id == library.identity.device_id
        assert new.exemplars == source.exemplars
        assert new.size < source.size * 0.6  # int4; the header weighs much in a tiny packet
        adapter = library.load_adapter(new)
        assert isinstance(adapter.tensors, QuantizedTensors)
        assert max(ranks(adapter)) <= source.adapter.rank
    finally:
        library.close()
    assert cli(home, "library", "verify", "pumps-small").exit_code == 0


def test_compact_under_its_own_name_replaces_this_devices_packet(cli, home, make_packet):
    source = make_packet(home, name="pumps")
    result = cli(home, "library", "compact", "pumps", "--bits", "8")
    assert result.exit_code == 0, result.output
    library = opened(home)
    try:
        (only,) = library.list_packets()
        assert only.name == "pumps"
        assert only.manifest["dtype"] == "int8"
        assert only.manifest["lineage"] == [source.packet_id]
        assert only.manifest["created"] > source.manifest["created"]
    finally:
        library.close()


def test_compact_refusals_say_one_sentence_and_change_nothing(cli, make_home, make_packet) -> None:
    other, home = make_home("other"), make_home("home")
    theirs = make_packet(other, name="theirs")
    library = opened(other)
    weights = library.read_weights(theirs)
    library.close()
    mine = opened(home)
    mine.add(theirs.manifest, theirs.signature, weights, source="file")
    mine.close()
    make_packet(home, name="pumps")
    before = {r.packet_id for r in opened_list(home)}
    for args, code, message in [
        (["theirs", "--bits", "4"], 1, "is by another author: give the compacted packet a name"),
        (["pumps", "--bits", "4", "--name", "theirs"], 1, "named 'theirs' is already"),
        (["pumps", "--bits", "4", "--energy", "0"], 1, "energy must be above 0 and at most 1"),
        (["pumps", "--bits", "3"], 2, "'3' is not one of"),
        (["nothing", "--bits", "8"], 1, "nothing"),
    ]:
        result = cli(home, "library", "compact", *args)
        assert result.exit_code == code, result.output
        assert message in result.output
        assert "Traceback" not in result.output
    assert {r.packet_id for r in opened_list(home)} == before
    ok = cli(home, "library", "compact", "theirs", "--bits", "4", "--name", "theirs-q4")
    assert ok.exit_code == 0, ok.output


def opened_list(home: Home) -> list:
    library = opened(home)
    try:
        return library.list_packets()
    finally:
        library.close()


def test_train_bits_4_adds_a_4_bit_packet(cli, tmp_path: Path, home) -> None:
    data = write_chat_jsonl(tmp_path / "pumps.jsonl")
    result = cli(home, "train", str(data), "--name", "pumps", "--domain", "solar_pumps",
                 "--iters", "3", "--rank", "4", "--bits", "4")  # fmt: skip
    assert result.exit_code == 0, result.output
    (record,) = opened_list(home)
    assert (record.manifest["format"], record.manifest["dtype"]) == (3, "int4")
    assert cli(home, "library", "verify", "pumps").exit_code == 0


def test_compact_keeps_the_notes_in_format_3(cli, home, make_packet) -> None:
    from fieldkit.store.notes import Passage, notes_of

    notes = [Passage("r1", "Flush the pump every 9 days.", "How often to flush?")]
    source = make_packet(home, name="pumps", notes=notes)
    assert source.manifest["format"] == 2
    result = cli(home, "library", "compact", "pumps", "--bits", "4", "--name", "pumps-q4")
    assert result.exit_code == 0, result.output
    library = opened(home)
    try:
        new = library.get("pumps-q4")
        assert new.manifest["format"] == 3
        assert notes_of(new.manifest) == notes_of(source.manifest)
        assert library.verify("pumps-q4")[1] is None
        again = library.reissue("pumps-q4", description="Pump care.")
        assert again.manifest["format"] == 3
        assert again.sha256 == new.sha256
        assert notes_of(again.manifest) == notes_of(source.manifest)
    finally:
        library.close()
