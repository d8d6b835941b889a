"""Early writeback of a part file: asked of Linux, harmless everywhere."""

from __future__ import annotations

import os
import sys

from fieldkit.store.writeback import start_writeback


def test_writeback_is_started_on_linux_and_changes_no_byte(tmp_path):
    path = tmp_path / "packet.part"
    data = os.urandom(3 * 1024 * 1024)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data, 0)
        assert start_writeback(fd) is sys.platform.startswith("linux")
        assert start_writeback(fd, 1024 * 1024, 4096) is sys.platform.startswith("linux")
        os.fsync(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == data


def test_a_bad_descriptor_is_refused_quietly():
    assert start_writeback(-1) is False
