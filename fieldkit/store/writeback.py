"""Start writing a file's dirty pages to disk early, so that its final fsync waits less.

A packet being received is written chunk by chunk and fsynced once, at the end, before it
enters the library. On Linux, `sync_file_range(SYNC_FILE_RANGE_WRITE)` asks the kernel to
begin writing what has arrived so far without waiting for it: the disk works while the
network does, and the fsync finds most pages already written. Elsewhere it is a no-op (the
fsync alone keeps the same guarantee; this only moves work earlier).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Callable

SYNC_FILE_RANGE_WRITE = 2


@functools.cache
def _sync_file_range() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


def start_writeback(fd: int, offset: int = 0, length: int = 0) -> bool:
    """Ask the kernel to start writing `length` bytes of `fd` from `offset` (0: to the end)
    to disk, without waiting; return False where this cannot be asked (then nothing
    happened, and nothing needs to)."""
    call = _sync_file_range()
    return call is not None and call(fd, offset, length, SYNC_FILE_RANGE_WRITE) == 0
