"""Where the shipped demo data and demo packets are: the checkout's assets/ or the wheel's copy."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def assets_dir() -> Path:
    """Return the assets folder (repo checkout first, then the copy inside an installed wheel)."""
    for candidate in (_PACKAGE.parent / "assets", _PACKAGE / "assets"):
        if candidate.is_dir():
            return candidate
    return _PACKAGE.parent / "assets"


def demo_packets() -> list[Path]:
    """Return the shipped demo packet files, sorted by name."""
    return sorted((assets_dir() / "packets").glob("*.fkpkt"))


def demo_domains() -> list[Path]:
    """Return the demo domains' data folders, sorted by name."""
    root = assets_dir() / "demo"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
