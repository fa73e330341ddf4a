"""What the writeback tests read: how much of a file is in the page cache (``mincore``
over a shared mapping: a file written back and dropped, against one left to the kernel,
since a dirty page cannot be dropped), and which windows a ``WindowedWriter`` wrote
back while it wrote (:class:`SyncSpy`)."""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path
from typing import Any


def resident_pages(path: Path) -> int:
    """Pages of ``path`` in the page cache now."""
    size = path.stat().st_size
    if size == 0:
        return 0
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long,
    )  # fmt: skip
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        vec = ctypes.create_string_buffer(pages)
        try:
            assert libc.mincore(ctypes.c_void_p(addr), size, vec) == 0
        finally:
            libc.munmap(ctypes.c_void_p(addr), size)
    finally:
        os.close(fd)
    return sum(b & 1 for b in vec.raw)


def pages_of(size: int) -> int:
    return (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE


class SyncSpy:
    """Records each ``sync_file_range`` call a ``WindowedWriter`` makes (offset, length,
    flags) and passes it on: ``starts`` are the windows whose writeback began."""

    def __init__(self, monkeypatch: Any) -> None:
        from wedguard.io import writeback

        self.real = writeback._sync_file_range
        assert self.real is not None, "sync_file_range (Linux)"
        self.calls: list[tuple[int, int, int]] = []
        monkeypatch.setattr(writeback, "_sync_file_range", self)

    def __call__(self, fd: int, offset: int, length: int, flags: int) -> int:
        self.calls.append((offset, length, flags))
        assert self.real is not None
        return self.real(fd, offset, length, flags)

    @property
    def starts(self) -> list[tuple[int, int]]:
        return [(o, n) for o, n, f in self.calls if f == 2]
