"""Lowering the CPU and I/O priority of a backup: a session's thread, a child process.

A guard built with ``nice=`` or ``ionice=True`` applies them to the thread that enters
a (sync) session, and restores the thread's own values when its last session ends,
where the system allows: raising a priority back needs ``CAP_SYS_NICE`` or a
``RLIMIT_NICE`` that permits it, so an unprivileged thread may stay lowered (it is a
backup thread; nothing is lost but the backup's own speed when production is busy).

Linux keeps both priorities per thread, so only the calling thread changes; on other
systems the calls would change the whole process, and nothing is done.

A guarded child process (``guard.run``) is lowered for good with :func:`lower_process`.

Example::

    >>> from wedguard.io.priority import lowered
    >>> with lowered(nice=5) as applied:
    ...     applied.nice is None or applied.nice >= 5
    True
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import platform
import sys
import threading
from collections.abc import Iterator

import attrs

from wedguard.errors import ConfigError

__all__ = ["Applied", "ChildPriority", "check_nice", "lower", "lower_process", "lowered", "restore"]

log = logging.getLogger("wedguard.priority")

_LINUX = sys.platform.startswith("linux")
_IOPRIO_WHO_PROCESS = 1  # a process or, on Linux, a single thread
_IOPRIO_CLASS_SHIFT = 13
_IOPRIO_CLASS_IDLE = 3
_SYS_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "i686": 289, "i386": 289, "armv7l": 314}
_SYS_IOPRIO_GET = {"x86_64": 252, "aarch64": 31, "i686": 290, "i386": 290, "armv7l": 315}


@attrs.frozen
class Applied:
    """What a thread runs at after :func:`lower`.

    Attributes:
        nice: its niceness, when it was changed (else None).
        ionice: ``"idle"`` when it was put in the idle I/O class (else None).
        note: why something asked for was not done ("" when all was).
    """

    nice: int | None = None
    ionice: str | None = None
    note: str = ""


@attrs.frozen
class _Saved:
    tid: int
    nice: int | None
    ioprio: int | None
    applied: Applied


class _Held:
    __slots__ = ("depth", "saved")

    def __init__(self, saved: _Saved) -> None:
        self.depth = 1
        self.saved = saved


_lock = threading.Lock()
_held: dict[int, _Held] = {}  # thread id -> its outermost lowering and the depth


def check_nice(value: object, field: str = "nice") -> int:
    """A niceness to add, 0..19 (0 leaves the thread alone)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 19:
        raise ConfigError(field, value, "a niceness to add, 0..19")
    return value


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)  # loaded once: ~9 us a time


def _ioprio(table: dict[str, int], *args: int) -> int:
    nr = table.get(platform.machine())
    if nr is None:
        return -1
    return int(_libc().syscall(nr, *args))


def _lower_now(tid: int, nice: int, ionice: bool) -> _Saved:
    notes: list[str] = []
    old_nice: int | None = None
    new_nice: int | None = None
    if nice:
        try:
            old_nice = os.getpriority(os.PRIO_PROCESS, tid)
            target = min(19, old_nice + nice)
            if target != old_nice:
                os.setpriority(os.PRIO_PROCESS, tid, target)
            new_nice = target
        except OSError as exc:
            old_nice = None
            notes.append(f"not niced: {exc}")
    old_io: int | None = None
    new_io: str | None = None
    if ionice:
        current = _ioprio(_SYS_IOPRIO_GET, _IOPRIO_WHO_PROCESS, tid)
        value = _IOPRIO_CLASS_IDLE << _IOPRIO_CLASS_SHIFT
        if current >= 0 and _ioprio(_SYS_IOPRIO_SET, _IOPRIO_WHO_PROCESS, tid, value) == 0:
            old_io, new_io = current, "idle"
        else:
            notes.append(f"not in the idle I/O class: errno {ctypes.get_errno()}")
    return _Saved(tid, old_nice, old_io, Applied(new_nice, new_io, "; ".join(notes)))


def lower(nice: int = 19, ionice: bool = True) -> Applied:
    """Add ``nice`` to the calling thread's niceness and, with ``ionice``, put it in
    the idle I/O class, until the matching :func:`restore`.

    Calls nest (the outermost one's values hold). Call :func:`restore` once for every
    call that asked for something (``nice`` > 0 or ``ionice``). Never raises for what
    the system refuses: :attr:`Applied.note` says what was not done. Outside Linux
    nothing is changed.

    Raises:
        ConfigError: ``nice`` is not 0..19.
    """
    nice = check_nice(nice)
    if not (nice or ionice):
        return Applied()
    if not _LINUX:
        return Applied(note="thread priorities are changed on Linux only")
    tid = threading.get_native_id()
    with _lock:
        held = _held.get(tid)
        if held is not None:  # nested: the outermost call's values hold
            held.depth += 1
            return held.saved.applied
        saved = _lower_now(tid, nice, ionice)
        _held[tid] = _Held(saved)
    if saved.applied.note:
        log.info("session thread %d: %s", tid, saved.applied.note)
    return saved.applied


def restore(thread_id: int | None = None) -> None:
    """Undo the outermost :func:`lower` of the calling thread, or of the thread
    ``thread_id`` (:func:`threading.get_native_id`); inner calls only count down.

    A priority the system does not let the thread raise back stays lowered (logged).
    """
    if not _LINUX:
        return
    tid = threading.get_native_id() if thread_id is None else thread_id
    with _lock:
        held = _held.get(tid)
        if held is None:
            return
        held.depth -= 1
        if held.depth > 0:
            return
        del _held[tid]
    saved = held.saved
    if saved.nice is not None and saved.applied.nice != saved.nice:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, saved.nice)
        except OSError as exc:
            log.info("session thread %d stays at nice %s: %s", tid, saved.applied.nice, exc)
    if (
        saved.ioprio is not None
        and _ioprio(_SYS_IOPRIO_SET, _IOPRIO_WHO_PROCESS, tid, saved.ioprio) != 0
    ):
        log.info("session thread %d stays in the idle I/O class", tid)


@contextlib.contextmanager
def lowered(nice: int = 19, ionice: bool = True) -> Iterator[Applied]:
    """:func:`lower` for the length of a ``with`` block."""
    applied = lower(nice, ionice)
    try:
        yield applied
    finally:
        if nice or ionice:
            restore()


@attrs.frozen
class ChildPriority:
    """What a child process runs at after :func:`lower_process`.

    Attributes:
        nice: its niceness, when it was changed (else None).
        ionice: ``"idle"`` when it was put in the idle I/O class (else None).
        notes: what was asked for and not done, one line each.
    """

    nice: int | None = None
    ionice: str | None = None
    notes: tuple[str, ...] = ()


def lower_process(pid: int, nice: int, ionice: bool) -> ChildPriority:
    """Add ``nice`` to process ``pid``'s niceness and, with ``ionice``, put it in the
    idle I/O class, for the rest of its life (its children inherit both).

    Never raises for what the system refuses: :attr:`ChildPriority.notes` says it.
    """
    import psutil  # only where children are run: `import wedguard` stays light

    notes: list[str] = []
    new_nice: int | None = None
    if nice:
        try:
            target = min(19, os.getpriority(os.PRIO_PROCESS, pid) + nice)
            os.setpriority(os.PRIO_PROCESS, pid, target)
            new_nice = target
        except (OSError, AttributeError) as exc:
            notes.append(f"not niced: {exc}")
    new_io: str | None = None
    if ionice:
        idle = getattr(psutil, "IOPRIO_CLASS_IDLE", None)
        if idle is None:
            notes.append("idle I/O class not available on this platform")
        else:
            try:
                psutil.Process(pid).ionice(idle)
                new_io = "idle"
            except (psutil.Error, OSError, ValueError) as exc:
                notes.append(f"idle I/O class not allowed: {exc}")
    return ChildPriority(new_nice, new_io, tuple(notes))
