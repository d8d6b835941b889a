"""Real temp homes for the TUI: fixed device keys (stable snapshots), the tiny model, packets."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fieldkit.gossip.lan import INTERFACES_SETTING
from fieldkit.home import Home
from fieldkit.services import Services
from fieldkit.store.identity import KEY_FILE, NAME_FILE
from fieldkit.store.models import model_fingerprint

PUMP_QUESTIONS = [
    "How do I prime a hand pump?",
    "Why does the water pump lose pressure?",
    "How often should the pump seals be replaced?",
    "The borehole pump makes a grinding noise, what is wrong?",
    "How do I fix a leaking pump handle?",
    "What size pipe does the water pump need?",
    "How do I clean the pump intake filter?",
    "Why is the well pump running but no water comes out?",
    "How deep can a hand pump lift water?",
    "How do I replace the pump check valve?",
]
FIXED_RECEIVED_AT = 1767225600.0  # 2026-01-01 00:00 UTC, so snapshots never show "now"


def write_fixed_identity(home: Home, seed: int, name: str) -> None:
    """Give a home a deterministic key pair and name (a device id that never changes)."""
    key = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = home.keys_dir / KEY_FILE
    path.write_bytes(pem)
    path.chmod(0o600)
    (home.keys_dir / NAME_FILE).write_text(json.dumps({"name": name}))


@pytest.fixture
def make_services(
    make_home: Callable[[str], Home], tiny_model_dir: Path
) -> Iterator[Callable[..., Services]]:
    """Return a factory: make_services("alice", seed=1) -> Services on a fresh home."""
    built: list[Services] = []

    def factory(label: str = "alice", seed: int = 1, model: Path | None = None) -> Services:
        home = make_home(label)
        write_fixed_identity(home, seed, label)
        services = Services.build(home=home.root, model_path=model or tiny_model_dir)
        services.library.set_setting(INTERFACES_SETTING, ["127.0.0.1"])  # tests: loopback only
        built.append(services)
        return services

    yield factory
    for services in built:
        services.close()


@pytest.fixture
def base_fp(tiny_model_dir: Path) -> str:
    return model_fingerprint(tiny_model_dir)


@pytest.fixture
def stocked(
    make_services: Callable[..., Services], make_packet, make_adapter, base_fp: str
) -> Services:
    """A home with three packets: one good, one for a foreign base, one that fails checks."""
    services = make_services("alice", seed=1)
    home = services.home
    make_packet(
        home,
        name="pumps",
        domain="water",
        base_fingerprint=base_fp,
        adapter=make_adapter(1),
        exemplars=PUMP_QUESTIONS,
    )
    make_packet(home, name="vaccines", domain="clinic", seed=2)  # the fixtures' foreign base
    broken = make_packet(
        home, name="solar", domain="energy", base_fingerprint=base_fp, adapter=make_adapter(3)
    )
    lib = services.library
    for record in lib.list_packets():
        lib.db["packets"].update(record.packet_id, {"received_at": FIXED_RECEIVED_AT})
    lib.db["packets"].update(broken.packet_id, {"verified": 0})
    return services


@pytest.fixture
def make_bob(
    make_services: Callable[..., Services], make_packet, make_adapter, base_fp: str
) -> Callable[..., Services]:
    """Return a factory: make_bob(rank=8) -> a second device holding one packet, 'wells'."""

    def factory(rank: int = 8) -> Services:
        bob = make_services("bob", seed=2)
        make_packet(
            bob.home,
            name="wells",
            domain="water",
            base_fingerprint=base_fp,
            adapter=make_adapter(7) if rank == 8 else make_adapter(7, rank=rank),
            exemplars=[q.replace("pump", "well") for q in PUMP_QUESTIONS],
        )
        return bob

    return factory
