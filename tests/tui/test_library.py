"""Library mode on a real library: states, detail pane, verify, remove, export, trust."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path

from textual.widgets import Input

from fieldkit.store.packet import read_packet_file
from fieldkit.tui.app import make_app
from fieldkit.tui.screens.base import KeysFooter
from fieldkit.tui.screens.dialogs import ConfirmDialog, TextDialog
from fieldkit.tui.views import PacketStatus
from fieldkit.tui.widgets.packet_detail import PacketDetailPane
from fieldkit.tui.widgets.packet_table import PacketTable
from tests.tui.helpers import footer_shown, notices, settle, wait_for_screen


def states(app) -> dict[str, PacketStatus]:
    table = app.screen.query_one(PacketTable)
    return {row.name: row.status for row in table.rows_by_key.values()}


def detail_text(app) -> str:
    return app.screen.query_one(PacketDetailPane).plain_text()


def damage(services, name: str) -> None:
    """Flip one byte of a packet's weights on disk."""
    blob = services.library.weights_path(services.library.get(name))
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))


async def export_to(pilot, folder: Path) -> None:
    """Export the packet under the cursor to `folder` through the dialog (a folder that is
    not there yet is made when the screen asks)."""
    missing = not await asyncio.to_thread(folder.exists)
    await type_in_dialog(pilot, "e", str(folder))
    if missing:
        asked = await wait_for_screen(pilot, ConfirmDialog)
        assert f"{folder} does not exist" in asked.question
        await pilot.press("y")
    await settle(pilot)


async def type_in_dialog(pilot, key: str, text: str) -> None:
    """Press `key`, type `text` into the dialog it opens, and press Enter."""
    await pilot.press(key)
    dialog = await wait_for_screen(pilot, TextDialog)
    dialog.query_one(Input).value = text
    await pilot.press("enter")


async def open_library(pilot) -> PacketTable:
    await settle(pilot)
    table = pilot.app.screen.query_one(PacketTable)
    table.focus()
    return table


async def test_every_column_but_the_date_fits_80_columns(
    make_services, make_packet, base_fp
) -> None:
    services = make_services("alice", seed=1)
    make_packet(
        services.home, name="grain-storage", domain="grain_storage", base_fingerprint=base_fp
    )
    for n in range(12):  # more rows than the table shows: its vertical scrollbar is up
        make_packet(services.home, name=f"z{n:02d}", domain="water", seed=10 + n)
    peer = "x" * 16  # a sending peer's device id
    services.library.db["packets"].update(
        services.library.get("grain-storage").packet_id, {"source": peer}
    )
    app = make_app(services, load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        table = await open_library(pilot)
        # nothing scrolls sideways (scrolling right would hide the names)
        assert table.virtual_size.width <= table.scrollable_content_region.width
        assert not table.show_horizontal_scrollbar
        assert table.show_vertical_scrollbar
        lines = [table.render_line(y).text for y in range(2)]
        assert lines[0].split() == ["name", "state", "domain", "size", "author", "source"]
        assert lines[1].split()[:4] == ["grain-storage", "ok", "verified", "grain_storage"]
        source = lines[0].index("source")
        assert lines[1][source:].split()[0] == peer[:8]
        detail = detail_text(app)
        assert f"source     peer {peer[:8]}, received 20" in detail  # the date is here
        await pilot.resize_terminal(100, 24)  # room for the date: it shows in the table
        await settle(pilot)
        assert table.render_line(0).text.split()[-1] == "received"
        assert table.virtual_size.width <= table.scrollable_content_region.width
        assert table.rows_by_key[table.current_packet_id].name == "grain-storage"
        footer = app.screen.query_one(KeysFooter)
        assert not footer.compact
        await pilot.resize_terminal(60, 20)  # a narrow terminal drops columns from the end
        await settle(pilot)
        assert table.render_line(0).text.split() == ["name", "state", "domain", "size"]
        assert table.virtual_size.width <= table.scrollable_content_region.width
        assert footer.compact  # and packs the keys closer, leaving "q Quit" to Ctrl+Q
        assert footer_shown(app) == [
            "Verify", "Remove", "Export", "Import", "Trust", "Block", "Help"
        ]  # fmt: skip
        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        assert footer_shown(app)[-2:] == ["Help", "Quit"]


async def test_states_and_detail_follow_the_cursor(stocked) -> None:
    app = make_app(stocked, load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_library(pilot)
        assert states(app) == {
            "pumps": PacketStatus.VERIFIED,
            "solar": PacketStatus.UNVERIFIED,
            "vaccines": PacketStatus.FOREIGN_BASE,
        }
        assert "matches this device" in detail_text(app)
        await pilot.press("down")
        await settle(pilot)
        assert "NOT VERIFIED" in detail_text(app)
        await pilot.press("down")
        await settle(pilot)
        assert "FOREIGN: made for test-base" in detail_text(app)


async def test_with_no_model_installed_no_packet_is_called_foreign(
    make_services, make_packet, tmp_path
) -> None:
    services = make_services("bare", model=tmp_path / "no-model-here")
    make_packet(services.home, name="pumps", domain="water")
    app = make_app(services, load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_library(pilot)
        assert states(app) == {"pumps": PacketStatus.NO_MODEL}
        assert "no model installed here; made for" in detail_text(app)
        assert "FOREIGN" not in detail_text(app)
        assert "1 NOT usable" in str(app.screen.query_one("#library-count").render())


async def test_verify_catches_damaged_weights_and_clears_a_good_packet(stocked) -> None:
    damage(stocked, "pumps")
    app = make_app(stocked, load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_library(pilot)
        await pilot.press("v")  # pumps: damaged on disk
        await settle(pilot)
        assert any("FAILED verification" in n for n in notices(pilot))
        assert states(app)["pumps"] is PacketStatus.UNVERIFIED
        await pilot.press("down", "v")  # solar: marked unverified but intact
        await settle(pilot)
        assert states(app)["solar"] is PacketStatus.VERIFIED


async def test_remove_asks_first(stocked) -> None:
    app = make_app(stocked, load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        table = await open_library(pilot)
        await pilot.press("down", "d")  # solar, the middle one
        await wait_for_screen(pilot, ConfirmDialog)
        await pilot.press("y")
        await settle(pilot)
        assert "solar" not in states(app)
        assert table.current_packet_id == stocked.library.get("vaccines").packet_id  # next
        await pilot.press("home", "d")
        await wait_for_screen(pilot, ConfirmDialog)
        await pilot.press("n")
        await settle(pilot)
        assert "pumps" in states(app)
        await pilot.press("d")
        await wait_for_screen(pilot, ConfirmDialog)
        await pilot.press("y")
        await settle(pilot)
        assert "pumps" not in states(app)
    assert [r.name for r in stocked.library.list_packets()] == ["vaccines"]


async def test_the_detail_of_the_next_packet_shows_from_its_top(stocked) -> None:
    app = make_app(stocked, load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_library(pilot)
        pane = app.screen.query_one(PacketDetailPane)
        assert pane.max_scroll_y > 0, "pumps' detail (10 exemplars) is longer than the pane"
        pane.scroll_end(animate=False, immediate=True)
        await pilot.pause()
        assert pane.scroll_y > 0
        await pilot.press("d")  # remove pumps: solar's detail takes its place
        await wait_for_screen(pilot, ConfirmDialog)
        await pilot.press("y")
        await settle(pilot)
        assert pane.detail.row.name == "solar"
        assert pane.scroll_y == 0, "the packet's name is in view"


async def test_export_writes_a_verifiable_packet_file(stocked, tmp_path: Path) -> None:
    out = tmp_path / "usb-stick"
    app = make_app(stocked, load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_library(pilot)
        await export_to(pilot, out)
    [written] = list(out.iterdir())
    packet = read_packet_file(written)
    assert packet.manifest["name"] == "pumps"


async def test_export_asks_before_replacing_a_file_and_remembers_the_folder(
    stocked, tmp_path: Path
) -> None:
    out = tmp_path / "usb-stick"
    out.mkdir()
    earlier = out / "pumps.fkpkt"
    earlier.write_bytes(b"an earlier export, kept unless the user says yes")
    app = make_app(stocked, load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_library(pilot)
        await export_to(pilot, out)
        dialog = await wait_for_screen(pilot, ConfirmDialog)
        assert f"{earlier} already exists" in dialog.question
        await pilot.press("n")
        await settle(pilot)
        assert earlier.read_bytes().startswith(b"an earlier export")
        assert any("nothing was exported" in n for n in notices(pilot))
        await pilot.press("e")  # the folder used last is offered again
        dialog = await wait_for_screen(pilot, TextDialog)
        assert dialog.query_one(Input).value == str(out)
        await pilot.press("enter")
        await wait_for_screen(pilot, ConfirmDialog)
        await pilot.press("y")
        await settle(pilot)
        assert any(n == f"Exported to {earlier}." for n in notices(pilot))
    assert read_packet_file(earlier).manifest["name"] == "pumps"
    app = make_app(stocked, load_model=False)  # the next session offers it too
    async with app.run_test(size=(80, 24)) as pilot:
        await open_library(pilot)
        await pilot.press("e")
        dialog = await wait_for_screen(pilot, TextDialog)
        assert dialog.query_one(Input).value == str(out)
    out.rename(tmp_path / "unplugged")  # a stick no longer there: the home's own folder
    app = make_app(stocked, load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_library(pilot)
        await pilot.press("e")
        dialog = await wait_for_screen(pilot, TextDialog)
        assert dialog.query_one(Input).value == str(stocked.home.root / "exports")


def add_carols_packet(services, make_home, make_adapter, base_fp):
    """Add 'aqua', first in the table, by carol, a device never met (no peer row, no name);
    return carol's Identity."""
    from fieldkit.store.identity import Identity
    from fieldkit.store.packet import build_manifest
    from tests.tui.conftest import PUMP_QUESTIONS

    carol = Identity.load_or_create(make_home("carol"))
    manifest, signature, data = build_manifest(
        make_adapter(4),
        carol,
        name="aqua",  # first in the table, where the cursor starts
        domain="water",
        description="Fish ponds.",
        exemplars=PUMP_QUESTIONS,
        base_model_id="test-base",
        base_fingerprint=base_fp,
    )
    services.library.add(manifest, signature, data, source=carol.device_id)
    return carol


@asynccontextmanager
async def library_with_carol(stocked, make_home, make_adapter, base_fp):  # noqa: ANN201
    """Open Library mode at 80x24 on `stocked` with carol's 'aqua' added
    (add_carols_packet); yield (carol, app, pilot)."""
    carol = add_carols_packet(stocked, make_home, make_adapter, base_fp)
    app = make_app(stocked, load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_library(pilot)
        yield carol, app, pilot


async def test_blocking_an_author_marks_every_packet(
    stocked, make_home, make_adapter, base_fp
) -> None:
    async with library_with_carol(stocked, make_home, make_adapter, base_fp) as (carol, app, pilot):
        # b sets packets aside, and t takes them in: each asks first, as remove does
        for key, verb, kept, changed in (
            ("b", "Block", PacketStatus.VERIFIED, PacketStatus.BLOCKED),
            ("t", "Trust", PacketStatus.BLOCKED, PacketStatus.VERIFIED),
        ):
            await pilot.press(key)
            dialog = await wait_for_screen(pilot, ConfirmDialog)
            asked = str(dialog.query_one("Label").render())
            assert asked.startswith(f"{verb} {carol.device_id[:8]}, the author of aqua? ")
            await pilot.press("n")
            await settle(pilot)
            assert states(app)["aqua"] is kept
            await pilot.press(key)
            await wait_for_screen(pilot, ConfirmDialog)
            await pilot.press("y")
            await settle(pilot)
            assert states(app)["aqua"] is changed
            assert states(app)["pumps"] is PacketStatus.VERIFIED  # this device's own
        await pilot.press("down")  # pumps, by this device: it cannot block itself
        await pilot.press("b")
        await wait_for_screen(pilot, ConfirmDialog)
        await pilot.press("y")
        await settle(pilot)
        assert any("is this device" in n for n in notices(pilot))
        assert states(app)["pumps"] is PacketStatus.VERIFIED
        assert app.is_running


async def test_an_author_trusted_here_is_a_peer_with_its_id_not_a_question_mark(
    stocked, make_home, make_adapter, base_fp
) -> None:
    from textual.widgets import DataTable

    carol = add_carols_packet(stocked, make_home, make_adapter, base_fp)
    app = make_app(stocked, load_model=False, ble=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_library(pilot)
        await pilot.press("t")  # trust aqua's author: carol becomes a known peer
        await wait_for_screen(pilot, ConfirmDialog)
        await pilot.press("y")
        await settle(pilot)
        await pilot.press("f2")
        await settle(pilot)
        peers = app.screen.query_one("#peers", DataTable)
        [row] = [[str(cell) for cell in peers.get_row_at(i)] for i in range(peers.row_count)]
        assert row[:2] == ["(name unknown)", carol.device_id]
        assert row[-1] == "trusted"


async def test_export_to_a_folder_not_there_asks_before_making_it(stocked, tmp_path: Path) -> None:
    stick = tmp_path / "media" / "usb"  # not mounted
    app = make_app(stocked, load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_library(pilot)
        await type_in_dialog(pilot, "e", str(stick))
        asked = await wait_for_screen(pilot, ConfirmDialog)
        assert "a USB stick not mounted" in asked.question
        await pilot.press("n")
        await settle(pilot)
        assert any("Nothing was exported" in n for n in notices(pilot))
        assert not (tmp_path / "media").exists()  # nothing made
    assert stocked.library.get_setting("exchange_folder") is None  # nor remembered


async def test_export_to_an_unwritable_place_is_a_notice(stocked, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    app = make_app(stocked, load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_library(pilot)
        await export_to(pilot, blocker / "sub")
        assert any("Cannot write" in n for n in notices(pilot))
        assert app.is_running


async def test_a_damaged_packet_is_not_exported(stocked, tmp_path: Path) -> None:
    damage(stocked, "pumps")
    app = make_app(stocked, load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_library(pilot)
        await export_to(pilot, tmp_path / "out")
        assert any("'pumps' is not copied: " in n for n in notices(pilot))
        assert not (tmp_path / "out" / "pumps.fkpkt").exists()
        assert app.is_running


async def test_the_detail_says_whether_a_packet_carries_notes(
    stocked, make_packet, make_adapter, base_fp
) -> None:
    from fieldkit.store.notes import Passage

    notes = [Passage("r1", "Prime with 2 litres."), Passage("r2", "Check the seal weekly.")]
    make_packet(
        stocked.home, name="wells", domain="water", base_fingerprint=base_fp,
        adapter=make_adapter(4), notes=notes,
    )  # fmt: skip
    app = make_app(stocked, load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        table = await open_library(pilot)
        rows = {row.name: row.notes for row in table.rows_by_key.values()}
        assert rows == {"pumps": 0, "solar": 0, "vaccines": 0, "wells": 2}
        assert "none: answers come from the adapter only" in detail_text(app)
        for _ in range(len(rows)):
            if table.rows_by_key[table.current_packet_id].name == "wells":
                break
            await pilot.press("down")
            await settle(pilot)
        assert "2 source passages, signed" in detail_text(app)


async def test_import_takes_every_packet_file_of_a_folder_and_names_the_bad_ones(
    stocked, make_services, make_packet, base_fp, tmp_path: Path
) -> None:
    from fieldkit.store.packet import save_packet_file

    bob = make_services("bob", seed=2)
    make_packet(bob.home, name="wells", domain="water", base_fingerprint=base_fp, seed=5)
    usb = tmp_path / "usb"
    usb.mkdir()
    for library, name in ((bob.library, "wells"), (stocked.library, "pumps")):
        record, weights = library.checked_weights(name)
        save_packet_file(usb / f"{name}.fkpkt", record.manifest, record.signature, weights)
    (usb / "broken.fkpkt").write_bytes((usb / "wells.fkpkt").read_bytes()[:40])  # cut short
    (usb / "junk.fkpkt").write_bytes(b"holiday photos")
    app = make_app(stocked, load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_library(pilot)
        await type_in_dialog(pilot, "i", str(usb))
        await settle(pilot)
        [said] = [n for n in notices(pilot) if "Imported" in n]
        assert said == (
            "Imported 1 (wells). Already here: pumps. Refused 2: broken.fkpkt is truncated "
            "or its header is damaged; junk.fkpkt is not a fieldkit packet file."
        )
        assert states(app)["wells"] is PacketStatus.VERIFIED
        await pilot.press("i")
        dialog = await wait_for_screen(pilot, TextDialog)
        assert dialog.query_one(Input).value == str(usb)  # the stick is offered again
        dialog.query_one(Input).value = str(tmp_path / "nowhere")
        await pilot.press("enter")
        await settle(pilot)
        assert any("nowhere does not exist" in n for n in notices(pilot))
        assert app.is_running


def test_an_import_notice_names_each_file_once_and_counts_what_it_leaves_out() -> None:
    from fieldkit.tui.views import import_outcome

    refused = [
        ("a.fkpkt", "a.fkpkt is not a fieldkit packet file."),
        ("b.fkpkt", "The packet 'b' was made for another base model."),
        ("c.fkpkt", "c.fkpkt has a damaged header."),
    ]
    said = import_outcome([], ["poultry"], refused)
    assert said.text == (
        "Already here: poultry. Refused 3: a.fkpkt is not a fieldkit packet file; "
        "b.fkpkt: The packet 'b' was made for another base model (and 1 more)."
    )
    assert not said.ok
    assert import_outcome(["cold-chain"], [], []).text == "Imported 1 (cold-chain)."


def test_an_import_repairs_a_packet_damaged_here_and_says_so(stocked, tmp_path: Path) -> None:
    """The notice counted a repair as "Imported"."""
    from fieldkit.store.packet import save_packet_file
    from fieldkit.tui.backend import TuiBackend

    record, weights = stocked.library.checked_weights("pumps")
    good = tmp_path / "pumps.fkpkt"
    save_packet_file(good, record.manifest, record.signature, weights)
    damage(stocked, "pumps")
    backend = TuiBackend(stocked)
    said = backend.import_packets(good)
    assert (said.text, said.ok) == ("Repaired from the file: pumps.", True)
    assert stocked.library.get("pumps").verified
    assert backend.import_packets(good).text == "Already here: pumps."


async def test_home_and_end_move_the_cursor(stocked, make_home, make_adapter, base_fp) -> None:
    add_carols_packet(stocked, make_home, make_adapter, base_fp)
    app = make_app(stocked, load_model=False)
    async with app.run_test(size=(80, 24)) as pilot:
        table = await open_library(pilot)
        await pilot.press("end")
        await settle(pilot)
        assert table.cursor_row == table.row_count - 1 > 0
        await pilot.press("home")
        await settle(pilot)
        assert table.cursor_row == 0


async def test_a_packet_from_a_peer_names_the_peer_as_the_peers_screen_does(
    stocked, make_home, make_adapter, base_fp
) -> None:
    carol = add_carols_packet(stocked, make_home, make_adapter, base_fp)
    stocked.library.upsert_peer(carol.public_key, "field-c")  # met: it told its name
    app = make_app(stocked, load_model=False)
    async with app.run_test(size=(120, 24)) as pilot:
        table = await open_library(pilot)
        assert table.rows_by_key[stocked.library.get("aqua").packet_id].source == "field-c"
