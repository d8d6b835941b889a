"""BLE tests reuse the gossip tests' devices (a home, identity and library each)."""

from tests.gossip.conftest import make_device

__all__ = ["make_device"]
