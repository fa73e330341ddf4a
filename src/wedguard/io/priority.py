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

``cpus`` confines the backup to some of the machine's cores (its CPU affinity): the
session's thread while it runs, a child process (and what it starts) for its life. On a
machine with few cores a backup that keeps every core busy at once delays production's
wake-ups whatever its niceness or policy, and one that leaves a core free does not
(measured in the PostgreSQL how-to, "A core left free"). :func:`check_cpus` turns
``cpus=1`` into the set of the last core this process may use.

Example::

    >>> from wedguard.io.priority import lowered
    >>> with lowered(nice=5) as applied:
    ...     applied.nice is None or applied.nice >= 5
    True
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform
import sys
import threading
from collections.abc import Iterable, Iterator

import attrs

from wedguard import _checks
from wedguard._slice import check_slice, libc, set_slice, slice_of
from wedguard.errors import ConfigError

__all__ = [
    "Applied",
    "ChildPriority",
    "check_cpus",
    "check_nice",
    "check_slice",
    "confine",
    "cores_before",
    "lower",
    "lower_process",
    "lowered",
    "restore",
    "scheduler_policy",
    "set_slice",
    "slice_of",
    "starting_on",
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
        cpus: the cores the thread is confined to, when it was (else None).

    .. versionchanged:: 0.3.0 ``sched_idle``.
    .. versionchanged:: 0.3.0 ``cpus``.
    """

    nice: int | None = None
    ionice: str | None = None
    note: str = ""
    sched_idle: bool = False
    cpus: tuple[int, ...] | None = None


@attrs.frozen
class _Saved:
    tid: int
    nice: int | None
    ioprio: int | None
    applied: Applied
    policy: int | None = None  # the CPU policy before SCHED_IDLE, when it was entered
    affinity: frozenset[int] | None = None  # the cores before ``cpus``, when it was confined


class _Held:
    __slots__ = ("depth", "saved")

    def __init__(self, saved: _Saved) -> None:
        self.depth = 1
        self.saved = saved


_lock = threading.Lock()
_held: dict[int, _Held] = {}  # thread id -> its outermost lowering and the depth


def check_cpus(
    value: object, field: str = "cpus", expected: str = _checks.CPUS
) -> frozenset[int] | None:
    """``value`` as the cores to confine a backup to: None or ``"all"`` (no
    confinement), a count ``n`` >= 1 (the last ``n`` cores this process may use now;
    all of them when it may use no more), ``"all-but-one"`` (every core it may use but
    the first; None where it may use only one, or not on Linux) or CPU numbers this
    process may use. Inside a session that confined the calling thread, "this process"
    still means the cores it had before.

    >>> import os
    >>> check_cpus(None) is None
    True
    >>> check_cpus(1) == {max(os.sched_getaffinity(0))}
    True
    >>> check_cpus(0)
    Traceback (most recent call last):
    ...
    wedguard.errors.ConfigError: cpus: 0 is not valid; expected a number of cores >= 1, CPU numbers, 'all-but-one', or 'all' (None)

    Raises:
        ConfigError: not a count >= 1, an empty set (``expected`` says what is), a CPU
            this process may not use, or not Linux.
    """
    return _checks.cpus(value, field, cores_before(), expected)


def _cores(cpus: frozenset[int] | int | Iterable[int] | None) -> frozenset[int] | None:
    """``cpus`` as given to :func:`lower` or :func:`lower_process`: checked unless it
    is a set :func:`check_cpus` already made."""
    return cpus if cpus is None or isinstance(cpus, frozenset) else check_cpus(cpus)


@contextlib.contextmanager
def starting_on(cpus: frozenset[int] | None) -> Iterator[None]:
    """The calling thread on ``cpus`` while the block starts a process (which inherits
    them at fork) or a thread (which inherits them at creation), its own cores back
    after. With None, a thread a session confined has its former cores back for the
    block, so that what it starts is not the session's.

    >>> import os, threading
    >>> with starting_on(None):
    ...     t = threading.Thread(target=lambda: None)
    ...     t.start()
    >>> t.join()
    """
    held_before = cores_before()
    target = cpus if cpus is not None else held_before
    changed = False
    before: frozenset[int] = frozenset()
    if target is not None and _LINUX:
        try:
            before = frozenset(os.sched_getaffinity(0))
            if before != target:
                os.sched_setaffinity(0, target)
                changed = True
        except OSError:
            pass  # said by whoever confines the child itself (lower_process)
    try:
        yield
    finally:
        if changed:
            # a session ended from another thread meanwhile: its former cores, not its own
            back = before if held_before is None or cores_before() is not None else held_before
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, back)


def confine(pid: int, cpus: frozenset[int]) -> str:
    """Confine thread or process ``pid`` (0: the calling thread) to ``cpus``; what went
    wrong, or ``""``. Never raises for what the system refuses."""
    try:
        os.sched_setaffinity(pid, cpus)
    except (OSError, AttributeError) as exc:
        return f"not confined to cores {sorted(cpus)}: {exc}"
    return ""


def _on(pid: int, cpus: frozenset[int]) -> bool:
    """Whether ``pid`` runs on ``cpus`` only already (False when it cannot be read)."""
    try:
        return frozenset(os.sched_getaffinity(pid)) <= cpus
    except (OSError, AttributeError):
        return False


def cores_before() -> frozenset[int] | None:
    """The cores the calling thread could use before a :func:`lower` confined it
    (None: it is not confined by one): what a child it starts with ``cpus=None`` gets."""
    with _lock:
        held = _held.get(threading.get_native_id())
    return None if held is None else held.saved.affinity


def check_nice(value: object, field: str = "nice") -> int:
    """A niceness to add, 0..19 (0 leaves the thread alone)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 19:
        raise ConfigError(field, value, "a niceness to add, 0..19")
    return value


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
    return int(libc().syscall(nr, *args))


def _lower_now(
    tid: int,
    nice: int,
    ionice: bool,
    sched_idle: bool = False,
    cpus: frozenset[int] | None = None,
) -> _Saved:
    notes: list[str] = []
    policy = _enter_idle(tid, notes) if sched_idle else None
    affinity: frozenset[int] | None = None
    if cpus is not None:
        try:
            before = frozenset(os.sched_getaffinity(tid))
        except OSError as exc:
            notes.append(f"not confined to cores {sorted(cpus)}: {exc}")
        else:
            note = "" if before == cpus else confine(tid, cpus)
            if note:
                notes.append(note)
            else:
                affinity = before
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
    shown = None if affinity is None or cpus is None else tuple(sorted(cpus))
    applied = Applied(new_nice, new_io, "; ".join(notes), policy is not None, shown)
    return _Saved(tid, old_nice, old_io, applied, policy, affinity)


def check_sched_idle(value: object, field: str = "sched_idle") -> bool:
    """``value`` as the ``sched_idle`` switch: True or False."""
    if not isinstance(value, bool):
        raise ConfigError(field, value, "True or False")
    return value


def lower(
    nice: int = 19,
    ionice: bool = True,
    sched_idle: bool = False,
    cpus: frozenset[int] | int | Iterable[int] | None = None,
) -> Applied:
    """Add ``nice`` to the calling thread's niceness and, with ``ionice``, put it in
    the idle I/O class, with ``sched_idle`` in the ``SCHED_IDLE`` CPU policy, and with
    ``cpus`` (from :func:`check_cpus`) confine it to those cores, until the matching
    :func:`restore`.

    Calls nest (the outermost one's values hold). Call :func:`restore` once for every
    call that asked for something (``nice`` > 0, ``ionice``, ``sched_idle`` or
    ``cpus``). Never raises for what the system refuses: :attr:`Applied.note` says what
    was not done. Outside Linux nothing is changed.

    Raises:
        ConfigError: ``nice`` is not 0..19, ``sched_idle`` not a bool, or ``cpus``
            not what :func:`check_cpus` takes.

    .. versionchanged:: 0.3.0 ``sched_idle``.
    .. versionchanged:: 0.3.0 ``cpus``.
    """
    nice = check_nice(nice)
    sched_idle = check_sched_idle(sched_idle)
    cores = _cores(cpus)
    if not (nice or ionice or sched_idle or cores is not None):
        return Applied()
    if not _LINUX:
        return Applied(note="thread priorities are changed on Linux only")
    tid = threading.get_native_id()
    with _lock:
        held = _held.get(tid)
        if held is not None:  # nested: the outermost call's values hold
            held.depth += 1
            return held.saved.applied
        saved = _lower_now(tid, nice, ionice, sched_idle, cores)
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
    if saved.affinity is not None:
        note = confine(tid, saved.affinity)
        if note:
            log.info("session thread %d stays confined: %s", tid, note)
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
def lowered(
    nice: int = 19,
    ionice: bool = True,
    sched_idle: bool = False,
    cpus: frozenset[int] | int | Iterable[int] | None = None,
) -> Iterator[Applied]:
    """:func:`lower` for the length of a ``with`` block."""
    applied = lower(nice, ionice, sched_idle, cpus)
    try:
        yield applied
    finally:
        if nice or ionice or sched_idle or cpus is not None:
            restore()


@attrs.frozen
class ChildPriority:
    """What a child process runs at after :func:`lower_process`.

    Attributes:
        nice: its niceness, when it was changed (else None).
        ionice: ``"idle"`` when it was put in the idle I/O class (else None).
        notes: what was asked for and not done, one line each.
        cpus: the cores it is confined to, when it was (else None).

    .. versionchanged:: 0.3.0 ``cpus``.
    """

    nice: int | None = None
    ionice: str | None = None
    notes: tuple[str, ...] = ()
    cpus: tuple[int, ...] | None = None


def lower_process(
    pid: int, nice: int, ionice: bool, cpus: frozenset[int] | int | Iterable[int] | None = None
) -> ChildPriority:
    """Add ``nice`` to process ``pid``'s niceness and, with ``ionice``, put it in the
    idle I/O class, and with ``cpus`` confine it to those cores, for the rest of its
    life (the processes it starts inherit all three; its threads started before the
    call keep their cores: call this before it starts any).

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
    confined: tuple[int, ...] | None = None
    cores = _cores(cpus)
    if cores is not None:
        # started on them (GuardedProcess forks from a thread on them): nothing to change
        note = "" if _on(pid, cores) else confine(pid, cores)
        if note:
            notes.append(note)
        else:
            confined = tuple(sorted(cores))
    return ChildPriority(new_nice, new_io, tuple(notes), confined)
