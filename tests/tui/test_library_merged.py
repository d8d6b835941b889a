"""A merged packet is marked "merged" on the Library screen."""

from __future__ import annotations

from fieldkit.training.merge import MergeSpec, merge_adapters
from fieldkit.tui.app import make_app
from tests.tui.test_library import open_library


async def test_a_merged_packet_is_marked_merged(stocked, make_adapter) -> None:
    lib = stocked.library
    pumps = lib.get("pumps")
    merged = merge_adapters([make_adapter(1), make_adapter(3)], MergeSpec("ties"))
    lib.add_local(
        merged,
        name="both",
        domain="water+energy",
        description="TIES merge of pumps and solar",
        exemplars=pumps.exemplars,
        base_model_id=pumps.base_model_id,
        base_fingerprint=pumps.base_fingerprint,
        merged=True,
        lineage=[pumps.packet_id],
    )
    app = make_app(stocked, load_model=False)
    async with app.run_test(size=(100, 24)) as pilot:
        table = await open_library(pilot)
        names = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert "both (merged)" in names
        assert "pumps" in names
