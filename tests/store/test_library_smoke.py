from __future__ import annotations

from fieldkit.store.library import Library


def test_make_packet_round_trip(home, make_packet):
    record = make_packet(home, name="pumps", seed=1)
    lib = Library.open(home)
    got = lib.get("pumps")
    assert got.packet_id == record.packet_id
    assert got.verified
    adapter = lib.load_adapter(got)
    assert adapter.key == got.sha256
    assert len(adapter.tensors) == 2 * 7 * 2
    lib.close()
