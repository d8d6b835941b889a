"""Dependencies point down: the core never loads the UI, and heavy libraries load lazily."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import fieldkit

PACKAGE = Path(fieldkit.__file__).parent
CORE_DIRS = ("store", "gossip", "gossip/ble", "engine", "router", "training")
# The only modules allowed to import each heavy or platform library at module level.
OWNERS = {
    "mlx": {"engine/mlx_backend.py"},
    "mlx_lm": {"engine/mlx_backend.py"},
    "sentence_transformers": {"router/embedder.py"},
    "bleak": {"gossip/ble/central_bleak.py", "testing/bleak_over_bumble.py"},
    "bless": {"gossip/ble/peripheral_bless.py"},
    "bumble": {
        "gossip/ble/radio_bumble.py",
        "testing/bleak_over_bumble.py",
        "testing/virtual_radio.py",
    },
    "zeroconf": {"gossip/lan.py"},
    "textual": None,  # anywhere in the UI layer, never in the core
}


def _core_modules() -> list[str]:
    """Every core module except the owners of heavy libraries (which load them by design)."""
    owner_files = set().union(*(v for v in OWNERS.values() if v))
    names = []
    for sub in CORE_DIRS:
        for path in sorted((PACKAGE / sub).glob("*.py")):
            if f"{sub}/{path.name}" in owner_files:
                continue
            names.append(f"fieldkit.{sub.replace('/', '.')}.{path.stem}".removesuffix(".__init__"))
    return names


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_heavy_libraries_are_imported_at_top_level_only_by_their_owner():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        for lib in _top_level_imports(path) & set(OWNERS):
            owners = OWNERS[lib]
            in_core = rel.split("/")[0] in CORE_DIRS or rel in {"services.py", "cli.py", "home.py"}
            if (owners is None and in_core) or (owners is not None and rel not in owners):
                offenders.append(f"{rel} imports {lib}")
    assert offenders == []


def test_importing_the_core_and_cli_loads_no_ui_and_no_heavy_library():
    modules = [
        *_core_modules(),
        "fieldkit.gossip.lan",  # owns zeroconf, but imports it only when discovery starts
        "fieldkit.services",
        "fieldkit.cli",
        "fieldkit.commands.library",
    ]
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "heavy = ['textual', 'mlx', 'mlx_lm', 'torch', 'sentence_transformers', 'bleak', 'bumble',"
        " 'zeroconf']\n"
        "print(json.dumps(sorted(h for h in heavy if h in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_import_contracts_in_pyproject_hold():
    """The layers of docs/ARCHITECTURE.md, checked by import-linter (`lint-imports`)."""
    lint = Path(sys.executable).with_name("lint-imports")
    root = PACKAGE.parent
    result = subprocess.run(
        [str(lint), "--config", str(root / "pyproject.toml")],
        capture_output=True,
        text=True,
        cwd=root,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
