"""The simulated devices: real identities (seeded keys), real SQLite libraries, small packets.

A simulation double only in what it leaves out (radios, clocks): every device below is a
real `Identity` and a real `Library` on disk, and every packet is really built, signed and
verified. Keys come from the seed, so a run is repeatable.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fieldkit.home import Home
from fieldkit.store.adapter import Adapter, AdapterConfig
from fieldkit.store.identity import Identity
from fieldkit.store.library import Library
from fieldkit.store.packet import build_manifest, packet_id

MESH_BASE_FINGERPRINT = hashlib.sha256(b"fieldkit-mesh-base").hexdigest()
_KEY = "self_attn.q_proj"
_RANK = 8


@dataclass(frozen=True)
class SimPacket:
    """A signed packet ready to be added to a library or served by a hostile device."""

    manifest: dict[str, Any]
    signature: bytes
    data: bytes

    @property
    def packet_id(self) -> str:
        return packet_id(self.manifest)

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class SimDevice:
    """One device of the mesh: `hostile` devices have no library and run their own loop."""

    index: int
    identity: Identity
    library: Library | None
    hostile: str = ""  # "", "tamper", "forge" or "flood"
    village: int = 0
    trusted: set[int] = field(default_factory=set)

    @property
    def device_id(self) -> str:
        return self.identity.device_id


def seeded_identity(root: Path, rng: random.Random, name: str) -> Identity:
    """Return an identity whose key comes from `rng` (nothing written but the home folders)."""
    private = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return Identity(private, public, name, Home(root))


def synthetic_packet(
    author: Identity, name: str, size: int, seed: int, created: int, chunk_size: int
) -> SimPacket:
    """Return a signed one-projection LoRA packet of about `size` bytes of fp16 weights."""
    width = max(8, size // (2 * _RANK * 2))
    rng = np.random.default_rng(seed)
    tensors = {
        f"model.layers.0.{_KEY}.lora_a": rng.normal(0, 0.02, (width, _RANK)).astype(np.float16),
        f"model.layers.0.{_KEY}.lora_b": rng.normal(0, 0.02, (_RANK, width)).astype(np.float16),
    }
    adapter = Adapter(AdapterConfig(rank=_RANK, num_layers=1, keys=(_KEY,)), tensors)
    manifest, signature, data = build_manifest(
        adapter,
        author,
        name=name,
        domain="mesh",
        description="A synthetic packet of the mesh simulation.",
        exemplars=[f"Question {i} about {name}?" for i in range(10)],
        base_model_id="mesh-base",
        base_fingerprint=MESH_BASE_FINGERPRINT,
        chunk_size=chunk_size,
        created=created,
    )
    return SimPacket(manifest, signature, data)


def open_device(
    root: Path, index: int, rng: random.Random, template: Path | None = None
) -> SimDevice:
    """Return device `index` with its library under `root/d<index>`: a fresh one, or a copy
    of the `template` home's library file with hard links to its blobs."""
    home = Home(root / f"d{index:05d}")
    identity = seeded_identity(home.root, rng, f"mesh-{index}")
    if template is not None:
        home.ensure()
        shutil.copyfile(Home(template).db_path, home.db_path)
        for blob in Home(template).blobs_dir.rglob("*.safetensors"):
            target = home.blobs_dir / blob.parent.name / blob.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(blob, target)
    return SimDevice(index, identity, Library.open(home, identity=identity))
