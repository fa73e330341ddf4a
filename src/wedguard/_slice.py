"""The CPU slice of a task: how long it runs before a task waking on its core gets in.

Linux 6.6's scheduler (EEVDF) lets the task running on a core finish its slice (a
millisecond or two by default, more on larger machines) before a task that woke there
runs, whatever their niceness. Since Linux 6.12 a task may ask for a slice of its own
(``sched_setattr``'s ``sched_runtime``), from 0.1 ms to 100 ms, which the tasks it
starts inherit. A backup on a short slice keeps its share of the CPU but runs in
shorter pieces (the end of a slice is noticed at the next scheduler tick or event).
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
import errno
import functools
import os
import platform
import struct
import sys
import threading

from wedguard import _checks
from wedguard.errors import ConfigError

__all__ = ["SLICE_MAX", "SLICE_MIN", "apply", "check_slice", "libc", "set_slice", "slice_of"]

_LINUX = sys.platform.startswith("linux")
# (sched_setattr, sched_getattr) by the kernel's architecture and this process's
# pointer size: a 32-bit process on a 64-bit kernel calls the 32-bit numbers
_SYSCALLS = {
    ("x86_64", 8): (314, 315),
    ("aarch64", 8): (274, 275),
    ("x86_64", 4): (351, 352),
    ("i686", 4): (351, 352),
    ("i586", 4): (351, 352),
    ("i386", 4): (351, 352),
    ("aarch64", 4): (380, 381),
    ("armv7l", 4): (380, 381),
    ("armv8l", 4): (380, 381),
    ("armv6l", 4): (380, 381),
}
_SCHED_FLAG_RESET_ON_FORK = 0x01
_FAIR = (os.SCHED_OTHER, os.SCHED_BATCH, os.SCHED_IDLE) if _LINUX else ()
_SLICED = (os.SCHED_OTHER, os.SCHED_BATCH) if _LINUX else ()  # the kernel sets it there
NO_SLICES = "the kernel has no per-task CPU slice (Linux 6.12+)"
#: the shortest and longest CPU slice the kernel takes for a task (seconds)
SLICE_MIN, SLICE_MAX = 0.0001, 0.1


@functools.cache
def libc() -> ctypes.CDLL:
    """The C library this process has loaded, errno kept (loaded once: ~9 us a time);
    :mod:`wedguard.io.priority` calls its ``ioprio`` system calls through it too."""
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


def _syscalls() -> tuple[int, int]:
    calls = _SYSCALLS.get((platform.machine(), struct.calcsize("P")))
    if calls is None:
        raise OSError(errno.ENOSYS, f"no sched_setattr known on {platform.machine()}")
    return calls


def _sched_attr(tid: int) -> _SchedAttr:
    """``sched_getattr`` of thread ``tid``; OSError with the errno where it fails."""
    nr = _syscalls()[1]
    attr = _SchedAttr()
    if libc().syscall(nr, tid, ctypes.byref(attr), ctypes.sizeof(attr), 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
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


def apply(thread_id: int, seconds: float | None) -> None:
    """:func:`set_slice` for callers that tell failures apart: raises the
    :class:`OSError` subclass of what went wrong (:class:`ProcessLookupError`: the
    thread is gone; :class:`PermissionError`: not this process's to change; ``EINVAL``:
    not in ``SCHED_OTHER`` or ``SCHED_BATCH``, the only policies a slice is set in;
    ``EOPNOTSUPP``: a kernel without per-task slices, :data:`NO_SLICES`). ``seconds``
    is checked by the caller."""
    nr = _syscalls()[0]
    attr = _sched_attr(thread_id)
    if seconds is None and not attr.runtime:
        return  # nothing to put back: no slices here, or the policy has none
    if attr.policy not in _SLICED:
        raise OSError(
            errno.EINVAL,
            f"scheduling policy {attr.policy} takes no slice (SCHED_OTHER or SCHED_BATCH)",
        )
    if not attr.runtime:  # a normal task reads 0 before Linux 6.12
        raise OSError(errno.EOPNOTSUPP, NO_SLICES)
    want = 0 if seconds is None else round(seconds * 1e9)
    # the whole attribute set back as read (policy, niceness), the slice changed
    attr.size = ctypes.sizeof(attr)
    attr.flags &= _SCHED_FLAG_RESET_ON_FORK
    attr.runtime = want
    if libc().syscall(nr, thread_id, ctypes.byref(attr), 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    if want and _sched_attr(thread_id).runtime != want:
        raise OSError(errno.EOPNOTSUPP, NO_SLICES)  # taken, not applied


def set_slice(thread_id: int | None, seconds: float | None) -> str:
    """Give the calling thread (``thread_id`` None) or thread ``thread_id`` a CPU slice
    of ``seconds`` (:func:`check_slice`), or None: the kernel's own again. Its policy,
    niceness and everything else stay as they are; the processes and threads it
    starts afterwards inherit the slice, and so does the thread itself if it enters
    ``SCHED_IDLE`` afterwards (a thread already there takes none).

    A task waking on a core runs once the task there is no longer protected by its
    slice (Linux 6.6's EEVDF scheduler; the default slice is a millisecond or two, and
    the end of a slice is noticed at the next scheduler tick or event): a shorter
    slice means shorter protected pieces. The backup keeps its share of the CPU. Needs
    Linux 6.12 or later (per-task slices) and no privilege for a thread of one's own.

    Never raises for what the system refuses: returns why the slice was not set
    (``""`` when it was; None asked where no slice was set is done already).

    Raises:
        ConfigError: ``seconds`` is not what :func:`check_slice` takes.

    >>> set_slice(None, 0.0002) in ("", NO_SLICES)
    True
    >>> set_slice(None, None)
    ''
    """
    seconds = check_slice(seconds)
    if not _LINUX:
        return "CPU slices are set on Linux only"
    tid = threading.get_native_id() if thread_id is None else thread_id
    try:
        apply(tid, seconds)
    except OSError as exc:
        if exc.errno == errno.EOPNOTSUPP:
            return NO_SLICES
        return f"no CPU slice set: {exc.strerror or exc}"
    return ""
