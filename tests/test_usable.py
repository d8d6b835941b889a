"""The one usable-packet rule: blocked authors and unverified packets never answer, by any path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from fieldkit.cli import main
from fieldkit.errors import PacketError
from fieldkit.home import Home
from fieldkit.store.identity import Identity
from fieldkit.store.library import Library
from fieldkit.store.models import model_fingerprint
from fieldkit.store.packet import build_manifest
from fieldkit.store.usable import (
    Blocked,
    PacketState,
    packet_state,
    shown_state,
    usable_packets,
)
from tests.fixtures.packets import exemplars_for
from tests.fixtures.tiny_model import random_adapter


def foreign_packet(
    author_home: Home,
    fingerprint: str,
    name: str = "pumps",
    lineage: tuple[str, ...] = (),
    seed: int = 3,
):
    """A packet signed by another device (the author), as a peer would send it; every one
    of one `seed` holds the same weights, bit for bit."""
    author = Identity.load_or_create(author_home)
    manifest, signature, data = build_manifest(
        random_adapter(seed=seed),
        author,
        name=name,
        domain="water",
        description="Pumps.",
        exemplars=exemplars_for("pumps and wells"),
        base_model_id="tiny-llama",
        base_fingerprint=fingerprint,
        lineage=lineage,
    )
    return author, manifest, signature, data


@pytest.fixture
def stocked_home(make_home, tiny_model_dir: Path):
    """A home holding a packet by another author, received from them."""
    home = make_home("me")
    author, manifest, signature, data = foreign_packet(
        make_home("author"), model_fingerprint(tiny_model_dir)
    )
    lib = Library.open(home, identity=Identity.load_or_create(home))
    lib.add(manifest, signature, data, source=author.device_id)
    lib.close()
    return home, author


def run(home: Home, model: Path, *args: str):
    return CliRunner().invoke(main, ["--home", str(home.root), "--model", str(model), *args])


def test_a_blocked_authors_packet_never_answers_and_unblocking_restores_it(
    stocked_home, tiny_model_dir: Path
) -> None:
    home, author = stocked_home
    ask = ("ask", "How do I fix the pump?", "--max-tokens", "4", "--json")
    first = run(home, tiny_model_dir, *ask, "--adapter", "pumps")
    assert first.exit_code == 0, first.output
    assert run(home, tiny_model_dir, "block", author.device_id).exit_code == 0

    named = run(home, tiny_model_dir, *ask, "--adapter", "pumps")
    assert named.exit_code == 1
    assert "blocked author" in named.output
    assert "Traceback" not in named.output
    routed = run(home, tiny_model_dir, "route", "Question 3 about pumps and wells?", "--json")
    assert routed.exit_code == 0, routed.output
    decision = json.loads(routed.stdout)
    assert decision["route"] is None
    assert "blocked author" in decision["reason"]

    assert run(home, tiny_model_dir, "trust", author.device_id).exit_code == 0
    restored = run(home, tiny_model_dir, *ask, "--adapter", "pumps")
    assert restored.exit_code == 0, restored.output
    assert json.loads(restored.stdout)["adapter"] == "pumps"


def test_library_list_and_show_state_the_same_rule(
    stocked_home, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """`library list` and `show` say what the TUI's Library says: a blocked author's packet
    is BLOCKED, not verified, until the author is trusted again; with no model installed,
    NO MODEL (the packets are not foreign, and none can answer yet)."""
    home, author = stocked_home

    def listed(model: Path = tiny_model_dir) -> tuple[str, str, str]:
        rows = json.loads(run(home, model, "library", "list", "--json").stdout)
        table = run(home, model, "library", "list").output.splitlines()[1]
        shown = run(home, model, "library", "show", "pumps").output
        state = next(line for line in shown.splitlines() if line.startswith("state"))
        assert re.search(r"^size +\d+(\.\d)? [kM]?B \(\d+ bytes\)$", shown, re.M), shown
        return rows[0]["state"], " ".join(table.split()[4:6]), state.split(maxsplit=1)[-1]

    assert listed() == ("ok", "verified -", "verified")
    assert listed(tmp_path / "no-model-here") == ("ok", "NO MODEL", "NO MODEL")
    assert run(home, tiny_model_dir, "block", author.device_id).exit_code == 0
    assert listed() == ("blocked", "BLOCKED -", "BLOCKED")
    assert run(home, tiny_model_dir, "trust", author.device_id).exit_code == 0
    assert listed() == ("ok", "verified -", "verified")


def test_an_unverified_packet_never_answers(stocked_home, tiny_model_dir: Path) -> None:
    home, _ = stocked_home
    lib = Library.open(home)
    lib.db["packets"].update(lib.get("pumps").packet_id, {"verified": 0})
    lib.close()
    result = run(home, tiny_model_dir, "ask", "Pump?", "--adapter", "pumps", "--max-tokens", "4")
    assert result.exit_code == 1
    assert "failed verification" in result.output


def test_a_relayed_copy_of_a_blocked_authors_packet_is_refused(make_home) -> None:
    home = make_home("me")
    author, manifest, signature, data = foreign_packet(make_home("author"), "ab" * 32)
    lib = Library.open(home, identity=Identity.load_or_create(home))
    lib.set_trust(author.device_id, "blocked")
    with pytest.raises(PacketError, match="blocked author"):
        lib.add(manifest, signature, data, source="0123456789abcdef")  # a trusted relay
    assert lib.list_packets() == []
    lib.close()


def test_the_rule_orders_its_reasons(make_home, make_packet) -> None:
    home = make_home("me")
    record = make_packet(home)
    lib = Library.open(home)
    assert packet_state(record, record.base_fingerprint, Blocked()) is PacketState.OK
    assert packet_state(record, "00" * 32, Blocked()) is PacketState.FOREIGN_BASE
    assert packet_state(record, None, Blocked()) is PacketState.OK
    blocked = Blocked(frozenset({record.author_id}))
    assert packet_state(record, None, blocked) is PacketState.BLOCKED
    assert shown_state(PacketState.OK, None) == "no model"  # routable, cannot answer yet
    assert shown_state(PacketState.BLOCKED, None) == "blocked"
    assert shown_state(PacketState.OK, record.base_fingerprint) == "ok"
    assert usable_packets(lib, record.base_fingerprint) == [record]
    assert usable_packets(lib, "00" * 32) == []
    lib.close()


def test_a_packet_whose_weights_vanished_is_one_sentence_and_is_set_aside(
    stocked_home, tiny_model_dir: Path
) -> None:
    home, _ = stocked_home
    lib = Library.open(home)
    lib.weights_path(lib.get("pumps")).unlink()  # deleted by hand, or a failing disk
    lib.close()
    asked = run(home, tiny_model_dir, "ask", "Pump?", "--adapter", "pumps", "--max-tokens", "4")
    assert asked.exit_code == 1
    assert "weights of 'pumps' are missing from the library" in asked.output
    assert "a good copy repairs it (`fieldkit library import pumps.fkpkt`)" in asked.output
    assert "Traceback" not in asked.output
    listed = json.loads(run(home, tiny_model_dir, "library", "list", "--json").stdout)
    assert listed[0]["state"] == "unverified"  # set aside by the load, as verify would
    assert run(home, tiny_model_dir, "library", "verify").exit_code == 1


def test_library_list_fits_80_columns_whatever_the_names(make_home, make_packet) -> None:
    home = make_home("a-device-with-a-long-name")
    make_packet(home, name="n" * 64, domain="d" * 64)
    lib = Library.open(home)
    lib.db["packets"].update(lib.list_packets()[0].packet_id, {"source": "0123456789abcdef"})
    lib.close()
    lines = CliRunner().invoke(main, ["--home", str(home.root), "library", "list"]).output
    assert max(len(line) for line in lines.splitlines()) <= 80, lines


def test_a_copy_of_a_blocked_authors_packet_re_signed_by_another_device_is_blocked_too(
    make_home,
) -> None:
    """A trusted device reissues the packet of an author blocked here (same weights, the
    blocked packet in its lineage): the copy is refused, and one already here is set aside."""
    home = make_home("me")
    author, manifest, signature, data = foreign_packet(make_home("author"), "ab" * 32)
    launderer_home = make_home("launderer")
    launderer = Identity.load_or_create(launderer_home)

    def copy(name: str, lineage: list[str]):  # noqa: ANN202 - the same weights, re-signed
        return foreign_packet(launderer_home, "ab" * 32, name, tuple(lineage))[1:]

    lib = Library.open(home, identity=Identity.load_or_create(home))
    original = lib.add(manifest, signature, data, source=author.device_id)
    early = lib.add(*copy("early-copy", [original.packet_id]), source=launderer.device_id)
    assert packet_state(early, "ab" * 32, lib.blocked()) is PacketState.OK
    lib.set_trust(author.device_id, "blocked")
    blocked = lib.blocked()
    assert packet_state(original, "ab" * 32, blocked) is PacketState.BLOCKED
    assert packet_state(early, "ab" * 32, blocked) is PacketState.BLOCKED  # held before
    assert usable_packets(lib, "ab" * 32) == []
    for name, lineage in (("laundered", [original.packet_id]), ("no-lineage", [])):
        with pytest.raises(PacketError, match="copies a blocked author's packet"):
            lib.add(*copy(name, lineage), source=launderer.device_id)  # weights alone tell
    lib.set_trust(author.device_id, "trusted")
    assert {r.name for r in usable_packets(lib, "ab" * 32)} == {"pumps", "early-copy"}
    lib.close()


def test_removing_a_blocked_authors_packet_does_not_admit_its_copies(make_home) -> None:
    """The block followed copies only through the packets still here: once the blocked
    original was removed, a re-signed copy came in as verified, and copies already held
    (a merge naming it in its lineage) were released."""
    home = make_home("me")
    author, manifest, signature, data = foreign_packet(make_home("author"), "ab" * 32)
    launderer_home = make_home("launderer")
    launderer = Identity.load_or_create(launderer_home)
    lib = Library.open(home, identity=Identity.load_or_create(home))
    original = lib.add(manifest, signature, data, source=author.device_id)
    merged = foreign_packet(launderer_home, "ab" * 32, "merged", (original.packet_id,), 8)
    held = lib.add(*merged[1:], source=launderer.device_id)
    lib.set_trust(author.device_id, "blocked")
    lib.remove("pumps")
    assert packet_state(held, "ab" * 32, lib.blocked()) is PacketState.BLOCKED
    copy = foreign_packet(launderer_home, "ab" * 32, "laundered", (original.packet_id,))[1:]
    with pytest.raises(PacketError, match="copies a blocked author's packet"):
        lib.add(*copy, source=launderer.device_id)
    lib.set_trust(author.device_id, "trusted")  # trust lifts the block, removed or not
    assert lib.add(*copy, source=launderer.device_id).name == "laundered"
    assert packet_state(held, "ab" * 32, lib.blocked()) is PacketState.OK
    lib.close()


def test_library_list_names_the_peer_a_packet_came_from(stocked_home, tiny_model_dir) -> None:
    home, author = stocked_home
    listed = run(home, tiny_model_dir, "library", "list")
    assert listed.output.splitlines()[1].split()[-2] == author.device_id[:8]  # not met yet
    lib = Library.open(home)
    lib.upsert_peer(author.public_key, "field-d")  # met: the Peers screen calls it field-d
    lib.close()
    listed = run(home, tiny_model_dir, "library", "list")
    assert listed.output.splitlines()[1].split()[-2] == "field-d"
