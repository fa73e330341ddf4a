"""The CPU slice of a task: how long it runs before a task waking on its core gets in.

Linux 6.6's scheduler (EEVDF) lets the task running on a core finish its slice (a
millisecond or two by default, more on larger machines) before a task that woke there
runs, whatever their niceness. Since Linux 6.12 a task may ask for a slice of its own
(``sched_setattr``'s ``sched_runtime``), from 0.1 ms to 100 ms, which the tasks it
starts inherit. A backup on a short slice keeps its share of the CPU but runs in short
pieces: production waking on its core waits about that long instead of a whole slice.
Measured beside a PostgreSQL load on two cores it did not lower the load's tail (the
PostgreSQL how-to, "A core kept busy, and short CPU slices"), so nothing in wedguard
sets one unless asked.

Pure ``ctypes`` over two system calls, below every layer that uses them
(:mod:`wedguard.io.priority` for the backup, :mod:`wedguard.sources.pg_backends` for a
dump's server backend).

Example::

    >>> from wedguard._slice import check_slice
    >>> check_slice(0.0001)
    0.0001
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys
import threading

from wedguard import _checks
from wedguard.errors import ConfigError

__all__ = ["SLICE_MAX", "SLICE_MIN", "check_slice", "set_slice", "slice_of"]

_LINUX = sys.platform.startswith("linux")
_SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274, "i686": 351, "i386": 351, "armv7l": 380}
_SYS_SCHED_GETATTR = {"x86_64": 315, "aarch64": 275, "i686": 352, "i386": 352, "armv7l": 381}
_SCHED_FLAG_RESET_ON_FORK = 0x01
_FAIR = (os.SCHED_OTHER, os.SCHED_BATCH, os.SCHED_IDLE) if _LINUX else ()
#: the shortest and longest CPU slice the kernel takes for a task (seconds)
SLICE_MIN, SLICE_MAX = 0.0001, 0.1


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


class _SchedAttr(ctypes.Structure):
    """``struct sched_attr`` up to ``sched_period`` (its first version, 48 bytes)."""

    _fields_ = [
        ("size", ctypes.c_uint32),
        ("policy", ctypes.c_uint32),
        ("flags", ctypes.c_uint64),
        ("nice", ctypes.c_int32),
        ("priority", ctypes.c_uint32),
        ("runtime", ctypes.c_uint64),
        ("deadline", ctypes.c_uint64),
        ("period", ctypes.c_uint64),
    ]


def _sched_attr(tid: int) -> _SchedAttr:
    """``sched_getattr`` of thread ``tid``; OSError with the errno where it fails."""
    nr = _SYS_SCHED_GETATTR.get(platform.machine())
    if nr is None:
        raise OSError(0, f"no sched_getattr on {platform.machine()}")
    attr = _SchedAttr()
    if _libc().syscall(nr, tid, ctypes.byref(attr), ctypes.sizeof(attr), 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return attr


def check_slice(value: object, field: str = "slice") -> float | None:
    """``value`` as a CPU slice in seconds, 0.0001 (0.1 ms) to 0.1, or None (the
    kernel's own).

    >>> check_slice(0.0002)
    0.0002
    >>> check_slice(0.5)
    Traceback (most recent call last):
    ...
    wedguard.errors.ConfigError: slice: 0.5 is not valid; expected seconds from 0.0001 to 0.1, or None
    """
    if value is None:
        return None
    expected = f"seconds from {SLICE_MIN:g} to {SLICE_MAX:g}, or None"
    seconds = _checks.real(value, field, expected)
    if not SLICE_MIN <= seconds <= SLICE_MAX:
        raise ConfigError(field, value, expected)
    return seconds


def slice_of(thread_id: int | None = None) -> float | None:
    """The CPU slice (seconds) the scheduler gives the calling thread, or thread
    ``thread_id`` (a process id names its first thread), in a normal policy: how long
    it may run before a task waking on its core is let in. None where it cannot be
    read: not Linux, a kernel before 6.12 (no per-task slice), the thread is gone.

    >>> s = slice_of()
    >>> s is None or 0.0001 <= s <= 0.1
    True
    """
    if not _LINUX:
        return None
    try:
        attr = _sched_attr(threading.get_native_id() if thread_id is None else thread_id)
    except OSError:
        return None
    if attr.policy not in _FAIR or not attr.runtime:
        return None
    return float(attr.runtime) / 1e9


def set_slice(thread_id: int | None, seconds: float | None) -> str:
    """Give the calling thread (``thread_id`` None) or thread ``thread_id`` a CPU slice
    of ``seconds`` (:func:`check_slice`), or None: the kernel's own again. Its policy,
    niceness and everything else stay as they are; the processes and threads it
    starts afterwards inherit the slice.

    A task waking on a core runs once the task there has used its slice (Linux 6.6's
    EEVDF scheduler; the default slice is a millisecond or two): a backup with a slice of
    0.1 ms lets a production task waking on its core in within about that, where at
    the default one it may wait a whole slice. It keeps its share of the CPU; only the
    pieces it runs in are shorter. Needs Linux 6.12 or later (per-task slices) and no
    privilege for a thread of one's own.

    Never raises for what the system refuses: returns why the slice was not set
    (``""`` when it was).

    Raises:
        ConfigError: ``seconds`` is not what :func:`check_slice` takes.

    >>> set_slice(None, 0.0002) in ("", "the kernel has no per-task CPU slice (Linux 6.12+)")
    True
    >>> set_slice(None, None)
    ''
    """
    seconds = check_slice(seconds)
    if not _LINUX:
        return "CPU slices are set on Linux only"
    tid = threading.get_native_id() if thread_id is None else thread_id
    nr = _SYS_SCHED_SETATTR.get(platform.machine())
    try:
        attr = _sched_attr(tid)
        if nr is None:
            raise OSError(0, f"no sched_setattr on {platform.machine()}")
    except OSError as exc:
        return f"no CPU slice set: {exc.strerror or exc}"
    if attr.policy not in _FAIR:
        return f"no CPU slice set: scheduling policy {attr.policy} is not a normal one"
    if not attr.runtime:  # a fair task reads 0 before Linux 6.12
        return "" if seconds is None else "the kernel has no per-task CPU slice (Linux 6.12+)"
    want = 0 if seconds is None else round(seconds * 1e9)
    # the whole attribute set back as read (policy, niceness), the slice changed
    attr.size = ctypes.sizeof(attr)
    attr.flags &= _SCHED_FLAG_RESET_ON_FORK
    attr.runtime = want
    if _libc().syscall(nr, tid, ctypes.byref(attr), 0) != 0:
        errno = ctypes.get_errno()
        return f"no CPU slice set: {os.strerror(errno)}"
    return ""
