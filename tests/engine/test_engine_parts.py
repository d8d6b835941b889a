"""The engine's pure-Python parts: the byte-bounded LRU and the stop-string scanner."""

from __future__ import annotations

import pytest

from fieldkit.engine.parts import ByteLRU, StopScanner, as_messages
from fieldkit.errors import FieldkitError


def test_lru_keeps_recent_entries_within_the_byte_budget() -> None:
    lru: ByteLRU[str] = ByteLRU(max_bytes=100)
    lru.put("a", "A", 40)
    lru.put("b", "B", 40)
    assert lru.get("a") == "A"  # a is now the most recent
    lru.put("c", "C", 40)
    assert lru.order() == ["a", "c"]
    assert lru.total_bytes == 80
    assert lru.get("b") is None


def test_lru_skips_a_value_larger_than_the_budget_and_replaces_in_place() -> None:
    lru: ByteLRU[str] = ByteLRU(max_bytes=100)
    lru.put("a", "A", 60)
    lru.put("huge", "H", 101)
    assert lru.order() == ["a"]
    lru.put("a", "A2", 30)
    assert (lru.get("a"), lru.total_bytes) == ("A2", 30)


def test_stop_string_split_across_deltas_is_held_back_and_cut() -> None:
    scanner = StopScanner(["<end>"])
    shown = [scanner.feed(d) for d in ("Paris is", " nice<e", "n", "d> more")]
    assert shown == ["Paris is", " nice", "", ""]
    assert scanner.stopped
    assert scanner.feed("later") == ""


def test_a_held_back_prefix_that_is_not_a_stop_is_released() -> None:
    scanner = StopScanner(["<end>"])
    assert scanner.feed("a <e") == "a "
    assert scanner.feed("xit") == "<exit"
    assert scanner.feed("<") == ""
    assert scanner.flush() == "<"
    assert not scanner.stopped


def test_without_stops_text_passes_through() -> None:
    scanner = StopScanner([])
    assert scanner.feed("<end>") == "<end>"


def test_prompts_become_chat_messages() -> None:
    assert as_messages("Hi?") == [{"role": "user", "content": "Hi?"}]
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    assert as_messages(chat) == chat
    with pytest.raises(FieldkitError, match="role and a content"):
        as_messages([{"content": "no role"}])
