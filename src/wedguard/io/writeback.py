"""Write a file to the disk as it is written, a window of bytes at a time.

A backup that writes a large file leaves it to the kernel to write back. The kernel
holds the dirty pages (seconds to half a minute, up to a share of memory) and then
writes them out in bursts of hundreds of megabytes; a production database's commit
(``fsync`` of its log) that arrives during a burst waits behind it. That wait is in
production's tail latency, not in the backup's.

:class:`WindowedWriter` keeps the writeback steady and its bytes in flight bounded, the
way RocksDB's ``bytes_per_sync`` and the kernel's own advice for streaming writes do:
after every ``window`` bytes it starts the window's writeback at once
(``sync_file_range(SYNC_FILE_RANGE_WRITE)``), waits for everything before that window
to reach the disk, and drops it from the page cache (``posix_fadvise(DONTNEED)``).
Between writes at most two windows are dirty or in flight (one being written back, one
being filled; a single write larger than that is written back before it returns): the
disk sees a steady stream of requests the size of a window instead of a burst, and the
backup's own writes slow down when the disk is busy (back-pressure on the writer, not
on production).

Where ``sync_file_range`` does not exist (not Linux) or the kernel refuses it, each
window is ``fdatasync``-ed instead: a stronger barrier with the same bound.

    >>> import tempfile
    >>> with tempfile.TemporaryFile() as f:
    ...     out = WindowedWriter(f, window=4096)
    ...     out.write(b"x" * 10_000)
    ...     out.close()
    ...     (out.written, out.synced)
    10000
    (10000, 10000)

.. versionadded:: 0.3.0
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable
from typing import IO

from wedguard.errors import ConfigError
from wedguard.units import parse_size

__all__ = ["DEFAULT_WINDOW", "WindowedWriter", "check_window"]

DEFAULT_WINDOW = 1 << 20
"""1 MiB: RocksDB's ``bytes_per_sync`` default, and a request the disk serves in about a
millisecond; a production read queued behind it waits no longer than that."""

_WRITE = 2  # SYNC_FILE_RANGE_WRITE
_UNSUPPORTED = {errno.ENOSYS, errno.EOPNOTSUPP}  # the kernel does not implement it
_WAIT = 1 | 2 | 4  # WAIT_BEFORE | WRITE | WAIT_AFTER


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's ``sync_file_range``, or None where it does not exist."""
    if not hasattr(os, "posix_fadvise"):  # not Linux: no sync_file_range either
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range  # libc, already loaded
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _load_sync_file_range()


def _datasync(fd: int) -> None:
    if hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:  # pragma: no cover - macOS
        os.fsync(fd)


def check_window(value: object, field: str = "window") -> int:
    """``value`` as a window in bytes (``1048576``, ``"1MiB"``), at least 4 KiB.

    >>> check_window("256KiB")
    262144
    >>> check_window(100)
    Traceback (most recent call last):
    ...
    wedguard.errors.ConfigError: window: 100 is not valid; expected a size of at least 4 KiB such as '1MiB'
    """
    expected = "a size of at least 4 KiB such as '1MiB'"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(field, value, expected)
    try:
        size = parse_size(value, field=field)
    except ConfigError:
        raise ConfigError(field, value, expected) from None
    if size < 4096:
        raise ConfigError(field, value, expected)
    return size


class WindowedWriter:
    """A binary file written to the disk a window at a time (see the module).

    Args:
        file: a binary file open for writing on a file system (``open(path, "wb")``,
            a shell's ``> file`` or ``>> file``), written where it writes (the windows
            are counted from where its first bytes land, at the end of a file opened
            for appending); flushed before each window is synced.
        window: bytes per window (default 1 MiB; ``"256KiB"`` and the like too), or
            None: written as it comes, left to the kernel, and fsync'ed at
            :meth:`close` (the one durable file, windowed or not, that
            ``guard.stream`` and ``wedguard copy`` write).
        drop: drop each window from the page cache once it is on the disk (default
            True): a backup's bytes are not read again, and production's pages stay.

    ``file`` is the file it writes; ``written`` counts the bytes written through it,
    ``synced`` those known to be on the disk. :meth:`close` syncs the rest (it does not
    close ``file``); a write error of the writeback (a full or failing disk) is raised by
    the write or close that meets it. Where the kernel refuses ``sync_file_range``
    (``ENOSYS``, ``EOPNOTSUPP``: some emulated kernels), it falls back to ``fdatasync``
    per window from then on.

    .. versionadded:: 0.3.0
    """

    def __init__(
        self, file: IO[bytes], window: int | str | None = DEFAULT_WINDOW, *, drop: bool = True
    ):
        if not callable(getattr(file, "fileno", None)) or not callable(
            getattr(file, "write", None)
        ):
            raise ConfigError("file", file, "a binary file open for writing, with fileno()")
        self.window = None if window is None else check_window(window)
        if not isinstance(drop, bool):
            raise ConfigError("drop", drop, "True or False")
        self.file = file
        try:
            self._fd = file.fileno()
            os.lseek(self._fd, 0, os.SEEK_CUR)
        except (OSError, ValueError):  # no descriptor (UnsupportedOperation), a pipe
            raise ConfigError(
                "file", file, "a regular file (a pipe or socket cannot be synced)"
            ) from None
        self.drop = drop
        self._base: int | None = None  # the file offset of the first byte written through
        self.written = 0
        self.synced = 0
        self._started = 0  # bytes whose writeback has been started

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Write ``data``; after every ``window`` bytes, start that window's writeback and
        wait for everything before it, so that when it returns at most two windows are
        dirty or in flight (a write larger than that is written back before it
        returns). Returns the bytes written."""
        n = self.file.write(data)
        n = len(data) if n is None else n
        self.written += n
        if self.window is not None and self.written - self._started >= self.window:
            self.file.flush()
            end = self.written - (self.written - self._started) % self.window
            self._start(self._started, end)
            # everything but the last window started is waited for
            self._wait(self.synced, end - self.window)
            self._started = end
        return n

    def flush(self) -> None:
        """Flush the file's buffer to the kernel (not to the disk: :meth:`close` does)."""
        self.file.flush()

    def close(self) -> None:
        """Write every byte written so far to the disk, drop it from the cache, and make
        it durable (``fdatasync``: the windows' writeback alone does not flush the
        disk's own cache or the file's size)."""
        self.file.flush()
        if self.window is None:  # all of it now
            os.fsync(self._fd)
            self.synced = self.written
            return
        if self.written > self._started:
            self._start(self._started, self.written)
            self._started = self.written
        self._wait(self.synced, self.written)
        if _sync_file_range is not None:  # else every window was fdatasync-ed already
            _datasync(self._fd)

    def _offset(self, start: int) -> int:
        """The file offset of byte ``start`` written through (the file is flushed)."""
        if self._base is None:  # where the bytes really went: the end, when appending
            self._base = os.lseek(self._fd, 0, os.SEEK_CUR) - self.written
        return self._base + start

    def _start(self, start: int, end: int) -> None:
        self._call(self._offset(start), end - start, _WRITE)

    def _wait(self, start: int, end: int) -> None:
        """Wait for bytes ``start..end`` to be on the disk and drop them."""
        if end <= start:
            return
        offset = self._offset(start)
        if not self._call(offset, end - start, _WAIT):  # no sync_file_range
            _datasync(self._fd)
        if self.drop and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self._fd, offset, end - start, os.POSIX_FADV_DONTNEED)
        self.synced = end

    def _call(self, offset: int, length: int, flags: int) -> bool:
        """``sync_file_range``; False (and fdatasync from now on) where the kernel does
        not implement it."""
        global _sync_file_range
        if _sync_file_range is None:
            return False
        if _sync_file_range(self._fd, offset, length, flags) == 0:
            return True
        err = ctypes.get_errno()
        if err in _UNSUPPORTED:
            _sync_file_range = None
            return False
        raise OSError(err, f"sync_file_range: {os.strerror(err)}")
