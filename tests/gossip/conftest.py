"""Devices for the gossip tests: each is a home with its own key and library."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fieldkit.home import Home
from fieldkit.store.identity import Identity
from tests.gossip.helpers import Device


@pytest.fixture
def make_device(make_home: Callable[[str], Home]) -> Iterator[Callable[[str], Device]]:
    opened: list[Device] = []

    def factory(label: str) -> Device:
        device = Device.open(make_home(label))
        opened.append(device)
        return device

    yield factory
    for device in opened:
        device.library.close()


@pytest.fixture
def ids(tmp_path: Path) -> tuple[Identity, Identity]:
    """Two identities (a, b) in homes under tmp_path."""
    return Identity.load_or_create(Home(tmp_path / "a")), Identity.load_or_create(
        Home(tmp_path / "b")
    )
