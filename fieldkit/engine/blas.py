"""Load Debian's OpenBLAS before mlx, whose bundled CPU BLAS is about 25x slower here.

mlx resolves its BLAS symbols when its extension loads, so a library already loaded with
RTLD_GLOBAL wins. Call `preload_openblas()` before the first `import mlx` (after torch, if
torch is used). It is a no-op on macOS (Accelerate) and when FIELDKIT_NO_OPENBLAS=1.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

DEBIAN_PATHS = (
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libblas.so.3",
)
DISABLE_ENV = "FIELDKIT_NO_OPENBLAS"

# The loaded handle is kept on the module on purpose: a process loads a shared library
# once, and dropping the handle would not unload it anyway.
_loaded: list[str] = []


def _dpkg_candidate() -> str | None:
    """Return the libblas.so.3 that the libopenblas0-pthread package installed, if any."""
    try:
        out = subprocess.run(
            ["dpkg", "-L", "libopenblas0-pthread"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if line.endswith("/libblas.so.3") and Path(line).exists():
            return line
    return None


def find_openblas() -> str | None:
    """Return the path of a usable OpenBLAS libblas.so.3, or None."""
    for path in DEBIAN_PATHS:
        if Path(path).exists():
            return path
    return _dpkg_candidate()


def preload_openblas() -> str | None:
    """Load OpenBLAS globally (idempotent) and return its path, or None if not loaded.

    Returns None on macOS, when FIELDKIT_NO_OPENBLAS=1, or when no OpenBLAS is installed.
    """
    if _loaded:
        return _loaded[0]
    if sys.platform == "darwin" or os.environ.get(DISABLE_ENV) == "1":
        return None
    path = find_openblas()
    if path is None:
        return None
    try:
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return None
    _loaded.append(path)
    return path


def openblas_loaded() -> str | None:
    """Return the path preloaded in this process, or None."""
    return _loaded[0] if _loaded else None
