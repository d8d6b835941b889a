"""The HTTP library stays inside fieldkit/server: `fieldkit ask` never loads it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fieldkit
from tests.test_import_hygiene import _top_level_imports

HTTP_OWNERS = {
    "starlette": {"server/app.py"},
    "uvicorn": {"server/run.py"},
    "anyio": {"server/app.py"},
}


def test_only_the_server_imports_the_http_library() -> None:
    package = fieldkit.__file__.rsplit("/", 1)[0]
    offenders = [
        f"{path.relative_to(package).as_posix()} imports {lib}"
        for path in Path(package).rglob("*.py")
        for lib in _top_level_imports(path) & set(HTTP_OWNERS)
        if path.relative_to(package).as_posix() not in HTTP_OWNERS[lib]
    ]
    assert offenders == []


def test_the_client_side_loads_no_http_library_and_no_model() -> None:
    modules = [
        "fieldkit.commands.ask",
        "fieldkit.commands.serve",
        "fieldkit.commands.service",
        "fieldkit.server.client",
        "fieldkit.server.service_files",
    ]
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "heavy = ['starlette', 'uvicorn', 'mlx', 'torch', 'textual']\n"
        "print(json.dumps(sorted(h for h in heavy if h in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
