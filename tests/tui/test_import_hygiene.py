"""Only the app, its screens and widgets import textual; the core and the TUI facade never do."""

from __future__ import annotations

import subprocess
import sys

CORE = [
    "fieldkit.cli",
    "fieldkit.services",
    "fieldkit.tui.backend",
    "fieldkit.tui.views",
    "fieldkit.store.library",
    "fieldkit.gossip.session",
    "fieldkit.gossip.tcp",
    "fieldkit.engine.engine",
    "fieldkit.router.router",
]


def loaded_after_import(modules: list[str]) -> set[str]:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print(' '.join(sorted(n.split('.')[0] for n in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


def test_core_and_facade_do_not_import_textual() -> None:
    assert "textual" not in loaded_after_import(CORE)


def test_the_app_does_import_textual() -> None:
    assert "textual" in loaded_after_import(["fieldkit.tui.app"])
