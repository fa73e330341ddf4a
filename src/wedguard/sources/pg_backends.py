"""Lowering the CPU and I/O priority of the PostgreSQL backends that serve a backup.

A ``pg_dump`` beside a busy database harms production's queries mostly through the
server process that serves it (its backend runs ``COPY ... TO STDOUT``: it reads every
row and formats it as text), not through the ``pg_dump`` process, which the guard
already runs niced. That backend is a child of the server, at the server's priority,
out of the guard's reach, unless the guard lowers it: this module finds no backends
itself (:class:`~wedguard.sources.PostgresSource` does, by ``application_name``, in
``pg_stat_activity``) but changes a backend's priority and restores it.

The parts:

* :class:`BackendPriority` (pure): what a lowered backend runs at, checked when built;
* :func:`split_backends` (pure): which backends are new and which are gone;
* :func:`pid_span` (pure) and :class:`ForkWatch`: the server's new children, spotted
  within a fraction of a second from the system's last process id, with no round trip
  to the server while nothing new has started (:class:`~wedguard.sources.PostgresSource`
  confines a new dump's backend this way, before it does much work);
* :class:`BackendLowerer` (the operating system's part): lowers each backend once,
  remembers what it ran at and restores that, raising :class:`BackendPriorityError`
  with what is missing when the system refuses.

Changing another process's priority needs the right to: the same OS user as the
server (``postgres``) lowers a backend, root (or ``CAP_SYS_NICE``) lowers and also
restores it (raising a priority back needs the capability). The server must run on
this host, in this process namespace: a backend's ``pid`` names a local process only
then, which is checked (the process must be a ``postgres`` process) before anything is
changed. Linux only.

Example::

    >>> BackendPriority(cpus=None)
    BackendPriority(nice=19, ionice='idle', sched_idle=False, cpus=None, cpu_slice=None)
    >>> split_backends([7, 9], {5, 7})
    ([9], [5])
    >>> pid_span(100, 103, pid_max=32768)
    [101, 102, 103]
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable

import attrs
import psutil

from wedguard import _checks, _slice
from wedguard._slice import check_slice
from wedguard.errors import ConfigError, WedguardError

__all__ = [
    "BackendLowerer",
    "BackendPriority",
    "BackendPriorityError",
    "ForkWatch",
    "Saved",
    "pid_span",
    "split_backends",
]

log = logging.getLogger("wedguard.sources.pg_backends")

_LINUX = sys.platform.startswith("linux")
_IONICE = ("idle", None)


def _check_nice(_inst: object, _attr: object, value: object) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 19
    ):
        raise ConfigError("backend_priority.nice", value, "an integer from 0 to 19, or None")


def _check_ionice(_inst: object, _attr: object, value: object) -> None:
    if value not in _IONICE:
        raise ConfigError("backend_priority.ionice", value, "'idle' or None")


def _check_sched_idle(_inst: object, _attr: object, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError("backend_priority.sched_idle", value, "True or False")


def _to_slice(value: object) -> float | None:
    return check_slice(value, "backend_priority.cpu_slice")


def _to_cpus(value: object) -> frozenset[int] | None:
    return _checks.cpus(value, "backend_priority.cpus")


@attrs.frozen
class BackendPriority:
    """What a lowered backend runs at.

    Attributes:
        nice: its niceness, 0 to 19 (default 19, the lowest CPU weight; a backend
            already nicer is left as it is), or None to leave it.
        ionice: ``"idle"`` (default): the idle I/O class, served when no one else
            reads the disk; None to leave it.
        sched_idle: the ``SCHED_IDLE`` scheduling policy as well (default False): the
            backend runs only when a core would otherwise idle. It may then hold a
            buffer lock that a production query waits for while it does not run;
            ``nice=19`` alone leaves it a small share instead.
        cpus: confine it to some cores: ``"all-but-one"`` (the default: every core
            this process may use but the first, where ``guard.run`` puts ``pg_dump``
            by default; not confined where there is one core), a count (``1``: the
            last core), CPU numbers, or None (or ``"all"``: not confined), as
            ``Guard(cpus=)``, within the cores the backend may use (a server in a
            cpuset of other cores is not confined). ``pg_dump`` and its backend then
            share those cores,
            leaving the others to production (see the PostgreSQL how-to): confining
            ``pg_dump`` alone, its backend spilled onto the free core and the load's
            p95 rose ×1.6.
        cpu_slice: its CPU slice in seconds (0.0001 to 0.1), or None (default: the
            kernel's own, a millisecond or two): how long it runs in one piece while
            a production task waits on its core (Linux 6.12+; see
            :func:`wedguard.io.priority.set_slice`). Set before ``sched_idle``, which
            keeps it. Restored to the kernel's own (a slice the backend had of its
            own is not kept: PostgreSQL sets none). On an older kernel it is left,
            said once in the log. Measured, it did not lower a load's tail (the
            PostgreSQL how-to), so it is off unless asked.

    .. versionchanged:: 0.3.0 ``cpus``, by default ``"all-but-one"``.
    .. versionadded:: 0.4.0 ``cpu_slice``.

    >>> BackendPriority(nice=25)
    Traceback (most recent call last):
    ...
    wedguard.errors.ConfigError: backend_priority.nice: 25 is not valid; expected an integer from 0 to 19, or None
    """

    nice: int | None = attrs.field(default=19, validator=_check_nice)
    ionice: str | None = attrs.field(default="idle", validator=_check_ionice)
    sched_idle: bool = attrs.field(default=False, validator=_check_sched_idle)
    cpus: frozenset[int] | None = attrs.field(
        factory=lambda: _to_cpus(_checks.ALL_BUT_ONE), converter=_to_cpus
    )
    cpu_slice: float | None = attrs.field(default=None, converter=_to_slice)


def split_backends(current: Iterable[int], lowered: Iterable[int]) -> tuple[list[int], list[int]]:
    """The backends seen now and not lowered yet, and the lowered ones no longer seen
    (ended: nothing to restore), each sorted.

    >>> split_backends([3, 1, 2], [2, 4])
    ([1, 3], [4])
    """
    now, before = set(current), set(lowered)
    return sorted(now - before), sorted(before - now)


def pid_span(since: int, last: int, *, pid_max: int, limit: int = 4096) -> list[int] | None:
    """The process ids handed out after ``since`` up to ``last`` (the system's last one),
    in order, wrapping past ``pid_max``; None when there are more than ``limit`` (too
    many to look at: the caller looks another way).

    >>> pid_span(7, 7, pid_max=100)
    []
    >>> pid_span(98, 2, pid_max=100)
    [99, 1, 2]
    >>> pid_span(1, 9000, pid_max=32768) is None
    True
    """
    if last == since:
        return []
    if last > since:
        return list(range(since + 1, last + 1)) if last - since <= limit else None
    if (pid_max - 1 - since) + last > limit:  # wrapped past pid_max - 1: too many
        return None
    return [*range(since + 1, pid_max), *range(1, last + 1)]


def _last_pid() -> int:
    """The last process id the system handed out (in this pid namespace)."""
    with open("/proc/loadavg", "rb") as f:
        return int(f.read().split()[-1])


def _pid_max() -> int:
    with contextlib.suppress(OSError, ValueError), open("/proc/sys/kernel/pid_max", "rb") as f:
        return int(f.read())
    return 4_194_304  # the kernel's largest


def _parent(pid: int) -> int:
    """``pid``'s parent process id, or 0 when it is gone (or a thread of an ended one)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rindex(b")") + 2 :].split(None, 2)[1])
    except (OSError, ValueError, IndexError):
        return 0


class ForkWatch:
    """The new children of one process (a PostgreSQL server's postmaster: its new
    backends), spotted by reading the system's last process id.

    Each :meth:`new` reads ``/proc/loadavg`` (a few microseconds); only when processes
    (or threads) were started since the last call does it read the ``stat`` of each id
    handed out in between, keeping those whose parent is ``parent``. Not thread-safe:
    one thread calls it.

    Args:
        parent: the process whose children to spot.
        limit: the most ids one call looks at; beyond it :meth:`new` returns None.

    >>> watch = ForkWatch(os.getpid())
    >>> child = __import__("subprocess").Popen(["true"])
    >>> child.pid in watch.new()
    True
    >>> child.wait()
    0
    >>> watch.new()
    []
    """

    __slots__ = ("_last", "_pid_max", "limit", "parent")

    def __init__(self, parent: int, *, limit: int = 4096) -> None:
        self.parent = parent
        self.limit = limit
        self._pid_max = _pid_max()
        self._last = _last_pid()

    def new(self) -> list[int] | None:
        """The children of :attr:`parent` started since the last call (or since this
        watch was made) and still running; None when more than :attr:`limit` ids were
        handed out in between."""
        last = _last_pid()
        span = pid_span(self._last, last, pid_max=self._pid_max, limit=self.limit)
        self._last = last
        if span is None:
            return None
        return [pid for pid in span if _parent(pid) == self.parent]


@attrs.frozen
class Saved:
    """A backend's priority before it was lowered (to restore it).

    Attributes:
        pid: the backend's process id.
        started: its start time (``psutil``'s ``create_time``): a pid reused by
            another process is never touched.
        nice: its niceness.
        ioclass: its I/O class (``psutil.IOPRIO_CLASS_*`` as an int) and ``iovalue``
            its level in that class.
        policy: its scheduling policy (``os.SCHED_*``).
        affinity: the cores it could run on, when it was confined (else None).
        at: when it was lowered (:func:`time.monotonic`).
        cpu_slice: its CPU slice (seconds) when it was given one (else None).
    """

    pid: int
    started: float
    nice: int
    ioclass: int
    iovalue: int
    policy: int
    affinity: frozenset[int] | None = None
    at: float = 0.0
    cpu_slice: float | None = None


class BackendPriorityError(WedguardError, PermissionError):
    """The system refused to change a PostgreSQL backend's priority, or the backend is
    not a process on this host.

    Attributes:
        pid: the backend's process id.
        owner: the OS user that runs it (``""`` when unknown).
        reason: what went wrong, in a few words.
    """

    def __init__(self, pid: int, owner: str, reason: str) -> None:
        self.pid = pid
        self.owner = owner
        self.reason = reason
        who = f" (run by the OS user {owner!r})" if owner else ""
        fix = (
            f"run the guard as root, as the OS user {owner!r}, or with CAP_SYS_NICE"
            if owner
            else "the server must run on this host, in this process namespace"
        )
        super().__init__(
            f"cannot lower the priority of PostgreSQL backend {pid}{who}: {reason}; {fix}"
        )


def _owner(proc: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return proc.username()
    return ""


def _backend(pid: int) -> psutil.Process:
    """The local process ``pid``, checked to be a PostgreSQL server process."""
    try:
        proc = psutil.Process(pid)
        name = proc.name()
    except psutil.NoSuchProcess:
        raise BackendPriorityError(pid, "", "no such process on this host") from None
    except psutil.AccessDenied:  # pragma: no cover - the name is readable by anyone on Linux
        raise BackendPriorityError(pid, "", "its process cannot be read") from None
    if not name.startswith(("postgres", "postmaster")):
        raise BackendPriorityError(pid, "", f"process {pid} on this host is {name!r}, not postgres")
    return proc


class BackendLowerer:
    """Lowers PostgreSQL backends to a :class:`BackendPriority` and restores them.

    :meth:`update` takes the pids of the backends to keep lowered (found by the
    caller in ``pg_stat_activity``), lowers the new ones and forgets those that
    ended; :meth:`restore` puts the ones still running back to what they ran at.
    Thread-safe.

    Args:
        priority: what a lowered backend runs at (default :class:`BackendPriority`).

    Raises:
        ConfigError: not on Linux.
    """

    def __init__(self, priority: BackendPriority | None = None) -> None:
        if priority is None:
            priority = BackendPriority()
        if not isinstance(priority, BackendPriority):
            raise ConfigError("backend_priority", priority, "a BackendPriority")
        if not _LINUX:
            raise ConfigError("lower_backends", sys.platform, "Linux (per-process priorities)")
        self.priority = priority
        self._lock = threading.Lock()
        self._saved: dict[int, Saved] = {}

    @property
    def lowered(self) -> list[int]:
        """The pids lowered and not yet restored or seen ended."""
        with self._lock:
            return sorted(self._saved)

    def check(self, pid: int) -> None:
        """Raise :class:`BackendPriorityError` unless ``pid`` is a local PostgreSQL
        process whose priority this process may lower (its own value set again: the
        system's permission check without a change)."""
        proc = _backend(pid)
        try:
            if self.priority.nice is not None:
                os.setpriority(os.PRIO_PROCESS, pid, os.getpriority(os.PRIO_PROCESS, pid))
            if self.priority.sched_idle or self.priority.cpu_slice is not None:
                policy = os.sched_getscheduler(pid)
                os.sched_setscheduler(pid, policy, os.sched_getparam(pid))
            if self.priority.cpus is not None:
                os.sched_setaffinity(pid, os.sched_getaffinity(pid))
        except PermissionError as exc:
            raise BackendPriorityError(pid, _owner(proc), exc.strerror or "not permitted") from None
        except ProcessLookupError:
            raise BackendPriorityError(pid, "", "the process ended") from None

    def update(self, pids: Iterable[int], *, seen_at: float | None = None) -> list[int]:
        """Lower the backends in ``pids`` not lowered yet; forget the lowered ones
        missing from ``pids`` (ended). Returns the pids lowered now.

        ``seen_at`` (:func:`time.monotonic`) is when ``pids`` were read: a backend
        lowered since (by :meth:`add`, from another thread) is kept though missing.

        Raises:
            BackendPriorityError: the system refused (nothing is left half-changed on
                that backend), or a pid is not a local PostgreSQL process.
        """
        with self._lock:
            new, gone = split_backends(pids, self._saved)
            for pid in gone:
                if seen_at is None or self._saved[pid].at <= seen_at:
                    del self._saved[pid]
            return self._lower_all(new)

    def add(self, pids: Iterable[int]) -> list[int]:
        """Lower the backends in ``pids`` not lowered yet, forgetting none (a new
        backend spotted between two full lists). Returns the pids lowered now.

        Raises:
            BackendPriorityError: as :meth:`update`.
        """
        with self._lock:
            return self._lower_all(sorted(set(pids) - set(self._saved)))

    def _lower_all(self, pids: Iterable[int]) -> list[int]:
        done: list[int] = []
        for pid in pids:
            saved = self._lower(pid)
            if saved is not None:
                self._saved[pid] = saved
                done.append(pid)
        return done

    def restore(self) -> list[int]:
        """Put every lowered backend still running back to its own priority; returns
        the pids restored. A backend the system does not let this process raise
        again (no ``CAP_SYS_NICE``) stays lowered until it ends, said in the log."""
        with self._lock:
            saved, self._saved = list(self._saved.values()), {}
        return [s.pid for s in saved if _restore(s)]

    def _lower(self, pid: int) -> Saved | None:
        proc = _backend(pid)
        try:
            io = proc.ionice()
            saved = Saved(
                pid=pid,
                started=proc.create_time(),
                nice=os.getpriority(os.PRIO_PROCESS, pid),
                ioclass=int(io.ioclass),
                iovalue=int(io.value),
                policy=os.sched_getscheduler(pid),
                affinity=(
                    None if self.priority.cpus is None else frozenset(os.sched_getaffinity(pid))
                ),
                at=time.monotonic(),
            )
        except (psutil.NoSuchProcess, ProcessLookupError):
            return None  # ended between the query and now
        except (PermissionError, psutil.AccessDenied) as exc:
            why = getattr(exc, "strerror", None) or "Operation not permitted"
            raise BackendPriorityError(pid, _owner(proc), why) from None
        p = self.priority
        try:
            if p.cpu_slice is not None:  # first: SCHED_IDLE keeps it, takes none after
                saved = self._slice(pid, saved, p.cpu_slice)
            if p.nice is not None and p.nice > saved.nice:
                os.setpriority(os.PRIO_PROCESS, pid, p.nice)
            if p.ionice == "idle":
                proc.ionice(psutil.IOPRIO_CLASS_IDLE)
            if p.sched_idle:
                os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
            if p.cpus is not None and saved.affinity is not None:
                cores = p.cpus & saved.affinity  # within the server's own cpuset
                if cores:  # none in common: it runs away from the dump's cores already
                    os.sched_setaffinity(pid, cores)
        except (psutil.NoSuchProcess, ProcessLookupError):
            return None
        except (PermissionError, psutil.AccessDenied) as exc:
            _restore(saved)
            why = getattr(exc, "strerror", None) or "Operation not permitted"
            raise BackendPriorityError(pid, _owner(proc), why) from None
        except OSError as exc:  # e.g. cores outside the server's cpuset (EINVAL)
            _restore(saved)
            why = f"{exc.strerror or exc} (cpus {sorted(p.cpus or ())})"
            raise BackendPriorityError(pid, _owner(proc), why) from None
        log.debug("lowered PostgreSQL backend %d to %s", pid, p)
        return saved

    @staticmethod
    def _slice(pid: int, saved: Saved, seconds: float) -> Saved:
        """Give backend ``pid`` a CPU slice of ``seconds``; ``saved`` noting it."""
        try:
            _slice.apply(pid, seconds)
        except OSError as exc:
            if exc.errno != errno.EOPNOTSUPP:
                raise
            _slice_unknown()  # a kernel without per-task slices: left, said once
            return saved
        return attrs.evolve(saved, cpu_slice=seconds)


@functools.cache
def _slice_unknown() -> None:
    """Say once that backends keep the kernel's slice here."""
    log.info(
        "PostgreSQL backends keep the kernel's CPU slice: this kernel has no per-task "
        "slice (Linux 6.12+)"
    )


def _restore(saved: Saved) -> bool:
    """Put one backend back; False when it ended or the system refused."""
    try:
        proc = psutil.Process(saved.pid)
        if proc.create_time() != saved.started:
            return False  # the pid now names another process
        if saved.affinity is not None and os.sched_getaffinity(saved.pid) != saved.affinity:
            os.sched_setaffinity(saved.pid, saved.affinity)
        if os.sched_getscheduler(saved.pid) != saved.policy:
            os.sched_setscheduler(saved.pid, saved.policy, os.sched_param(0))
        io = proc.ionice()
        if (int(io.ioclass), int(io.value)) == (saved.ioclass, saved.iovalue):
            pass  # as it was (a change refused half-way changed nothing here)
        elif saved.ioclass in (psutil.IOPRIO_CLASS_RT, psutil.IOPRIO_CLASS_BE):
            proc.ionice(saved.ioclass, saved.iovalue)
        else:
            proc.ionice(saved.ioclass)
        if os.getpriority(os.PRIO_PROCESS, saved.pid) != saved.nice:
            os.setpriority(os.PRIO_PROCESS, saved.pid, saved.nice)
        if saved.cpu_slice is not None:  # last: the kernel's own slice again
            _slice.apply(saved.pid, None)
    except (psutil.NoSuchProcess, ProcessLookupError):
        return False
    except (PermissionError, psutil.AccessDenied) as exc:
        log.warning(
            "PostgreSQL backend %d stays lowered until it ends: %s (raising a priority "
            "back needs root or CAP_SYS_NICE)",
            saved.pid,
            getattr(exc, "strerror", None) or exc,
        )
        return False
    except OSError as exc:
        log.warning("PostgreSQL backend %d stays lowered until it ends: %s", saved.pid, exc)
        return False
    return True
