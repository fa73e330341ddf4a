"""Lowering the CPU and I/O priority of a backup: a session's thread, a child process.

A guard built with ``nice=``, ``ionice=True`` or ``sched_idle=True`` applies them to the
thread that enters a (sync) session, and restores the thread's own values when its last
session ends, where the system allows: raising a priority back needs ``CAP_SYS_NICE`` or
a ``RLIMIT_NICE`` that permits it, so an unprivileged thread may stay lowered (it is a
backup thread; nothing is lost but the backup's own speed when production is busy).

``SCHED_IDLE`` is the strongest of the three for the CPU: the thread's weight drops to 3
(nice 19 is 15) and it loses the wake-up protection a normal thread has, so a production
thread that wakes on the same CPU runs at once instead of waiting for the backup's
slice. Entering it needs no privilege; leaving it (back to ``SCHED_OTHER``) needs
``CAP_SYS_NICE`` or a ``RLIMIT_NICE`` that allows the thread's niceness.

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

__all__ = [
    "Applied",
    "ChildPriority",
    "check_nice",
    "lower",
    "lower_process",
    "lowered",
    "restore",
    "scheduler_policy",
]

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
        sched_idle: True when the thread runs in the ``SCHED_IDLE`` CPU policy.

    .. versionchanged:: 0.3.0 ``sched_idle``.
    """

    nice: int | None = None
    ionice: str | None = None
    note: str = ""
    sched_idle: bool = False


@attrs.frozen
class _Saved:
    tid: int
    nice: int | None
    ioprio: int | None
    applied: Applied
    policy: int | None = None  # the CPU policy before SCHED_IDLE, when it was entered


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


def scheduler_policy(thread_id: int | None = None) -> int | None:
    """The CPU scheduling policy (``os.SCHED_*``) of the calling thread or of
    ``thread_id``; None where it cannot be read (not Linux, the thread is gone).

    >>> import os
    >>> scheduler_policy() in (None, os.SCHED_OTHER, os.SCHED_BATCH, os.SCHED_IDLE)
    True
    """
    if not _LINUX:
        return None
    try:
        return os.sched_getscheduler(threading.get_native_id() if thread_id is None else thread_id)
    except OSError:
        return None


def _enter_idle(tid: int, notes: list[str]) -> int | None:
    """Put thread ``tid`` in SCHED_IDLE; its former policy, or None (with a note)."""
    try:
        old = os.sched_getscheduler(tid)
        if old != os.SCHED_IDLE:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    except OSError as exc:
        notes.append(f"not in SCHED_IDLE: {exc}")
        return None
    return old


def _ioprio(table: dict[str, int], *args: int) -> int:
    nr = table.get(platform.machine())
    if nr is None:
        return -1
    return int(_libc().syscall(nr, *args))


def _lower_now(tid: int, nice: int, ionice: bool, sched_idle: bool = False) -> _Saved:
    notes: list[str] = []
    policy = _enter_idle(tid, notes) if sched_idle else None
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
    applied = Applied(new_nice, new_io, "; ".join(notes), policy is not None)
    return _Saved(tid, old_nice, old_io, applied, policy)


def check_sched_idle(value: object, field: str = "sched_idle") -> bool:
    """``value`` as the ``sched_idle`` switch: True or False."""
    if not isinstance(value, bool):
        raise ConfigError(field, value, "True or False")
    return value


def lower(nice: int = 19, ionice: bool = True, sched_idle: bool = False) -> Applied:
    """Add ``nice`` to the calling thread's niceness and, with ``ionice``, put it in
    the idle I/O class, and with ``sched_idle`` in the ``SCHED_IDLE`` CPU policy, until
    the matching :func:`restore`.

    Calls nest (the outermost one's values hold). Call :func:`restore` once for every
    call that asked for something (``nice`` > 0, ``ionice`` or ``sched_idle``). Never
    raises for what the system refuses: :attr:`Applied.note` says what was not done.
    Outside Linux nothing is changed.

    Raises:
        ConfigError: ``nice`` is not 0..19, or ``sched_idle`` not a bool.

    .. versionchanged:: 0.3.0 ``sched_idle``.
    """
    nice = check_nice(nice)
    sched_idle = check_sched_idle(sched_idle)
    if not (nice or ionice or sched_idle):
        return Applied()
    if not _LINUX:
        return Applied(note="thread priorities are changed on Linux only")
    tid = threading.get_native_id()
    with _lock:
        held = _held.get(tid)
        if held is not None:  # nested: the outermost call's values hold
            held.depth += 1
            return held.saved.applied
        saved = _lower_now(tid, nice, ionice, sched_idle)
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
    if saved.policy is not None and saved.policy != os.SCHED_IDLE:
        try:
            os.sched_setscheduler(tid, saved.policy, os.sched_param(0))
        except OSError as exc:
            log.info("session thread %d stays in SCHED_IDLE: %s", tid, exc)
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
def lowered(nice: int = 19, ionice: bool = True, sched_idle: bool = False) -> Iterator[Applied]:
    """:func:`lower` for the length of a ``with`` block."""
    applied = lower(nice, ionice, sched_idle)
    try:
        yield applied
    finally:
        if nice or ionice or sched_idle:
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
