"""Guarding a child process: ``guard.run(argv)`` and ``guard.pipe(src, dst)``.

Many backups are commands (``pg_dump``, ``rsync``, ``tar``, ``restic``), not Python
loops. :func:`run_guarded` (``guard.run``) starts one under the guard:

* it runs **niced** (``nice=10``) and in the **idle I/O class** where the OS allows;
  without the privilege the child runs as it would have and the report and
  :meth:`GuardedProcess.decision` say so;
* it is **paused** while the guard's decision is paused (BLACKOUT, HALT, ``stop``,
  ``hold``): its own cgroup v2 is frozen when one can be created, otherwise its whole
  process group gets ``SIGSTOP``/``SIGCONT``;
* it is **duty-cycled** to the allowed byte rate, in the manner of ``cpulimit`` but on
  I/O: the bytes it reads and writes (its I/O counters, summed over its descendants)
  are charged to a budget and the child is stopped while it is in debt. The rate is the
  guard's decision (configured rate, calendar cap, impact controller) read live, capped
  by ``io_rate``. At PEAK its CPU time is capped the same way (``cpu_share``);
* it is **never left stopped**: it is resumed in ``finally``, at interpreter exit and
  when the guarding process receives a termination signal (SIGTERM, SIGINT, SIGHUP,
  SIGQUIT), which is then forwarded to the child's process group. What no code in the
  guarding process can cover (a ``SIGKILL``, the OOM killer) a small watchdog process
  covers: it sees the guard's end of a pipe close and resumes the child, or ends it
  (``on_guard_death``; by default it ends a child that holds a slot shared by many
  hosts, since that slot's lease lapses with the guard);
* after ``max_pause`` (30 minutes) in one pause it alerts the guard's sinks and, with
  ``on_max_pause="abort"``, ends the child: a paused ``pg_dump`` holds its snapshot and
  locks, which hurts production more than the backup does.

``input``, ``stdout``, ``stderr``, ``capture_output``, ``text``, ``cwd``, ``env``,
``timeout`` and ``check`` behave as in :func:`subprocess.run`; the exit code and the
output pass through unchanged.

Example::

    >>> import sys
    >>> import wedguard as wg
    >>> guard = wg.Guard(rate="50MB/s", calendar=None, sources=[], sinks=[])
    >>> done = guard.run([sys.executable, "-c", "print('hello')"], capture_output=True)
    >>> done.returncode, done.stdout
    (0, b'hello\\n')
    >>> done.report.returncode, done.report.aborted
    (0, '')

:func:`pipe_guarded` (``guard.pipe``) is the cooperative alternative for streaming
backups: it copies a stream through a guard session, so
``pg_dump | wedguard pipe --rate 10MB/s | aws s3 cp - s3://...`` is throttled by the
guard's budget and calendar (:func:`pipe_main` is that filter's entry point).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, TYPE_CHECKING, Any, Final, Literal

import attrs
import psutil

from wedguard.errors import ConfigError, EmergencyStop, WedguardError
from wedguard.io.copy import check_ends, copy_stream
from wedguard.io.priority import check_nice
from wedguard.levels import Level, Verdict
from wedguard.policy.alerting import Alert, Severity
from wedguard.redact import redact_argv, redact_text
from wedguard.units import format_duration, format_rate, parse_duration, parse_rate, parse_size

if TYPE_CHECKING:
    import argparse

    from wedguard.decision import Decision
    from wedguard.interfaces import GuardLike, GuardSession
    from wedguard.runtime.guard import Guard  # pipe_main's

__all__ = [
    "DutyCycle",
    "GuardedCompletedProcess",
    "GuardedProcess",
    "ProcessReport",
    "children_of",
    "descendant_pids",
    "pipe_guarded",
    "pipe_main",
    "run_guarded",
    "thaw_all",
]

_INF: Final = math.inf
TERMINATION_SIGNALS: Final = tuple(
    s
    for s in (
        getattr(signal, "SIGTERM", None),
        getattr(signal, "SIGINT", None),
        getattr(signal, "SIGHUP", None),
        getattr(signal, "SIGQUIT", None),
    )
    if s is not None
)
"""The signals the guarding process forwards to its children (after resuming them)."""

CGROUP_ROOT: Final = Path("/sys/fs/cgroup")


# -- the pure part: a duty cycle on a cumulative counter ----------------------------------


class DutyCycle:
    """How long a process must stay stopped so its counter grows at most ``rate``/s.

    A token bucket over a cumulative counter (bytes read and written, CPU seconds):
    each :meth:`update` credits ``rate`` per second since the last one (at most
    ``burst``), charges what the counter grew by, and answers how long the process
    must stay stopped to pay any debt back. The long-run rate holds exactly: over any
    span the counter grows by at most ``rate * span + burst`` plus the last step.

    Pure: time is passed in, nothing sleeps.

    Args:
        rate: units per second (``math.inf``: never stop; ``0``: always stopped).
        burst_seconds: the burst, in seconds' worth of ``rate`` (default 0.1 s).

    Example::

        >>> d = DutyCycle(1000.0, burst_seconds=0.1)
        >>> d.update(0.0, 0.0)          # the first reading sets the baseline
        0.0
        >>> d.update(0.1, 300.0)        # 100 credited (burst), 300 used: 200 in debt
        0.2
        >>> d.update(0.3, 300.0)        # debt paid: may run
        0.0

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_burst_s", "_last_t", "_last_used", "_rate", "_tokens")

    def __init__(self, rate: float | str = _INF, *, burst_seconds: float = 0.1) -> None:
        if isinstance(burst_seconds, bool) or not (
            isinstance(burst_seconds, (int, float)) and 0 < burst_seconds < _INF
        ):
            raise ConfigError("burst_seconds", burst_seconds, "seconds > 0")
        self._burst_s = float(burst_seconds)
        self._rate = parse_rate(rate, field="rate")
        self._tokens = 0.0
        self._last_t: float | None = None
        self._last_used = 0.0

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def burst(self) -> float:
        """The most that may be used at once after a rest (``rate * burst_seconds``)."""
        return self._rate * self._burst_s

    @property
    def tokens(self) -> float:
        """Credit left (negative: debt)."""
        return self._tokens

    def set_rate(self, rate: float | str) -> None:
        """Change the rate live; a change from or to unlimited starts a fresh bucket."""
        value = parse_rate(rate, field="rate")
        if (value == _INF) != (self._rate == _INF):
            self._tokens = 0.0
        self._rate = value
        self._tokens = min(self._tokens, self.burst) if value < _INF else 0.0

    def update(self, now: float, used: float) -> float:
        """Charge the counter's growth up to ``used`` at ``now``; seconds to stay stopped."""
        last = self._last_t
        grown = max(0.0, used - self._last_used)
        self._last_used = max(self._last_used, used)
        self._last_t = now if last is None else max(now, last)
        if last is None:
            return 0.0
        rate = self._rate
        if rate == _INF:
            return 0.0
        dt = max(0.0, now - last)
        self._tokens = min(self.burst, self._tokens + rate * dt) - grown
        if self._tokens >= -1e-9:
            return 0.0
        if rate <= 0:
            return _INF
        return -self._tokens / rate

    def __repr__(self) -> str:
        return f"DutyCycle(rate={format_rate(self._rate)}, tokens={self._tokens:.6g})"


# -- reports ---------------------------------------------------------------------------


def _frozen_pauses(value: Mapping[str, float]) -> Mapping[str, float]:
    from types import MappingProxyType

    return MappingProxyType(dict(value))


@attrs.frozen(slots=True)
class ProcessReport:
    """What happened to a guarded child process (also an event, ``kind == "process"``).

    Attributes:
        name: the child's name (the program's base name unless given).
        pid: its process id.
        argv: the command line, its secrets hidden (see
            :func:`wedguard.redact.redact_argv`): the report is logged, stored and sent.
        returncode: its exit status (negative: killed by that signal); None while it runs.
        started_at: when it started (aware datetime).
        duration: seconds from start to exit (or to now while it runs).
        io_bytes: bytes it read and wrote, summed over its descendants, as last read
            (what a short-lived child did after the monitor's last reading is not seen).
        io_counter: ``"bytes"`` (storage I/O) or ``"chars"`` (every read and write, used
            when the storage counters stay at zero, as on some filesystems and containers).
        cpu_seconds: CPU time it used, summed over its descendants.
        paused: seconds spent stopped, by cause: ``"stop"``, ``"calendar"``,
            ``"impact"``, ``"rate"`` (duty cycle on I/O), ``"cpu"`` (CPU cap).
        pauses: how many times it was stopped.
        longest_pause: the longest single pause, in seconds.
        freeze: how it is paused: ``"cgroup"`` (cgroup v2 freezer) or ``"signal"``.
        nice: the niceness it runs at (None when it could not be changed).
        ionice: ``"idle"`` when it runs in the idle I/O class, else None.
        notes: what the OS did not allow and other remarks, one line each.
        signals: the termination signals forwarded to it, by name.
        aborted: why the guard ended it (max pause, panic, timeout), or "".
        on_guard_death: what the watchdog does to it if the guarding process dies:
            ``"resume"``, ``"terminate"`` or ``"off"`` (no watchdog).

    .. versionadded:: 0.1.0
    """

    name: str
    pid: int
    argv: tuple[str, ...]
    returncode: int | None
    started_at: datetime
    duration: float
    io_bytes: float
    io_counter: str
    cpu_seconds: float
    paused: Mapping[str, float] = attrs.field(converter=_frozen_pauses)
    pauses: int
    longest_pause: float
    freeze: str
    nice: int | None
    ionice: str | None
    notes: tuple[str, ...]
    signals: tuple[str, ...]
    aborted: str
    on_guard_death: str = "off"

    @property
    def kind(self) -> str:
        return "process"

    @property
    def paused_total(self) -> float:
        return sum(self.paused.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "process",
            "name": self.name,
            "pid": self.pid,
            "argv": list(self.argv),
            "returncode": self.returncode,
            "started_at": self.started_at.isoformat(),
            "duration_s": self.duration,
            "io_bytes": self.io_bytes,
            "io_counter": self.io_counter,
            "cpu_seconds": self.cpu_seconds,
            "paused_s": dict(self.paused),
            "pauses": self.pauses,
            "longest_pause_s": self.longest_pause,
            "freeze": self.freeze,
            "nice": self.nice,
            "ionice": self.ionice,
            "notes": list(self.notes),
            "signals": list(self.signals),
            "aborted": self.aborted,
            "on_guard_death": self.on_guard_death,
        }

    def __str__(self) -> str:
        rc = "running" if self.returncode is None else f"exit {self.returncode}"
        lines = [
            f"{self.name} (pid {self.pid}): {rc} after {format_duration(self.duration)}, "
            f"{self.io_bytes:.0f} B I/O ({self.io_counter}), {self.cpu_seconds:.2f} s CPU, "
            f"paused {format_duration(self.paused_total)} in {self.pauses} pauses"
        ]
        if self.aborted:
            lines.append(f"  aborted: {self.aborted}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


class GuardedCompletedProcess(subprocess.CompletedProcess[Any]):
    """A :class:`subprocess.CompletedProcess` that also carries the :class:`ProcessReport`.

    ``args`` is the command as given; the repr shows it with its secrets hidden.
    """

    report: ProcessReport

    def __init__(
        self,
        args: Any,
        returncode: int,
        stdout: Any = None,
        stderr: Any = None,
        *,
        report: ProcessReport,
    ) -> None:
        super().__init__(args, returncode, stdout, stderr)
        self.report = report

    def __repr__(self) -> str:
        args = redact_argv(self.args) if isinstance(self.args, (list, tuple)) else self.args
        if isinstance(args, (str, bytes)):
            args = redact_text(args)
        parts = [f"args={args!r}", f"returncode={self.returncode!r}"]
        if self.stdout is not None:
            parts.append(f"stdout={self.stdout!r}")
        if self.stderr is not None:
            parts.append(f"stderr={self.stderr!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


# -- how a child is paused ------------------------------------------------------------------


def _has_children_files() -> bool:
    try:
        return os.path.exists(f"/proc/self/task/{threading.get_native_id()}/children")
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return False


_CHILDREN_FILES: Final = _has_children_files()
"""Linux's ``/proc/<pid>/task/<tid>/children``: a process's children without reading
every process on the machine (which psutil does, a few milliseconds with 100 processes
and tens with a thousand)."""


def descendant_pids(pid: int) -> list[int]:
    """The pids of the live descendants of ``pid``, parents before their children
    (empty when it is gone). Reads only the tree's own ``/proc`` files where Linux has
    them, else asks psutil."""
    if not _CHILDREN_FILES:
        return [c.pid for c in children_of(pid)]
    out: list[int] = []
    todo = [pid]
    seen = {pid}
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children", "rb") as f:
                    data = f.read()
            except OSError:
                continue
            for word in data.split():
                child = int(word)
                if child not in seen:
                    seen.add(child)
                    out.append(child)
                    todo.append(child)
    return out


def children_of(pid: int) -> list[psutil.Process]:
    """The live descendants of ``pid`` (empty when it is gone)."""
    if _CHILDREN_FILES:
        procs = []
        for child in descendant_pids(pid):
            with contextlib.suppress(psutil.Error, OSError):
                procs.append(psutil.Process(child))
        return procs
    try:
        return psutil.Process(pid).children(recursive=True)
    except (psutil.Error, OSError):
        return []


class _SignalFreezer:
    """SIGSTOP/SIGCONT of the child's process group and of descendants outside it."""

    kind = "signal"

    def __init__(self, pid: int) -> None:
        self._pid = pid
        # descendants outside the group that were stopped: resumed even if they have
        # been reparented since (they are then no longer descendants)
        self._outside: set[int] = set()

    def _send(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pid, sig)
        outside = set(self._outside)
        for child in descendant_pids(self._pid):
            with contextlib.suppress(OSError):
                if os.getpgid(child) != self._pid:
                    outside.add(child)
        for child in outside:
            with contextlib.suppress(OSError):
                os.kill(child, sig)
        self._outside = outside if sig == signal.SIGSTOP else set()

    def freeze(self) -> None:
        self._send(signal.SIGSTOP)

    def thaw(self) -> None:
        self._send(signal.SIGCONT)

    def close(self) -> None:
        self.thaw()


# The watchdog: a tiny interpreter (``python -I -S``) started before the child. It reads
# from a pipe whose write end only the guarding process holds: "pid N" (the child's
# process group), "cgroup PATH" (its freezer, if any), "done" (the guard ended normally:
# exit quietly). End of file without "done" means the guarding process died, however it
# died (SIGKILL, the OOM killer): the kernel closed the pipe. A parent that is no longer
# the guard (a fork of the guard may hold the pipe open) is checked once a second.
# Then it thaws the cgroup, sends SIGCONT to the group and to every descendant of it,
# and with "terminate" also SIGTERM, then SIGKILL after the grace period.
_WATCHDOG: Final = r"""
import os, select, signal, sys, time
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
    signal.signal(s, signal.SIG_IGN)
mode, grace, guard = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
buf = b""
while True:
    ready = select.select([0], [], [], 1.0)[0]
    if not ready:
        if os.getppid() != guard:
            break
        continue
    data = os.read(0, 4096)
    if not data:
        break
    buf += data
    if buf.endswith(b"done\n"):
        sys.exit(0)
lines = buf.decode("utf-8", "replace").splitlines()
if "done" in lines:
    sys.exit(0)
pgid, cgroup = 0, ""
for line in lines:
    key, _, value = line.partition(" ")
    if key == "pid":
        pgid = int(value)
    elif key == "cgroup":
        cgroup = value
if pgid <= 0:
    sys.exit(0)

def tree():
    # the group's members and every descendant of them (some leave the group)
    parents, members = {}, set()
    try:
        names = os.listdir("/proc")
    except OSError:
        return members
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open("/proc/" + name + "/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        pid = int(name)
        if fields[0] == b"Z":
            continue
        parents[pid] = int(fields[1])
        if int(fields[2]) == pgid:
            members.add(pid)
    grown = True
    while grown:
        grown = False
        for pid, ppid in parents.items():
            if ppid in members and pid not in members:
                members.add(pid)
                grown = True
    return members

def send(sig):
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass
    for pid in tree():
        try:
            os.kill(pid, sig)
        except OSError:
            pass

def thaw():
    if cgroup:
        try:
            with open(os.path.join(cgroup, "cgroup.freeze"), "w") as f:
                f.write("0")
        except OSError:
            pass
    send(signal.SIGCONT)

def alive():
    if tree():
        return True
    try:
        os.killpg(pgid, 0)
    except OSError:
        return False
    return not os.path.isdir("/proc")

thaw()
if mode == "terminate":
    send(signal.SIGTERM)
    send(signal.SIGCONT)
    end = time.monotonic() + grace
    while alive() and time.monotonic() < end:
        time.sleep(0.02)
    if alive():
        send(signal.SIGKILL)
if cgroup:
    # give the child back to the guard's cgroup, so the empty one can go
    try:
        with open(os.path.join(cgroup, "cgroup.procs")) as f:
            pids = f.read().split()
        for pid in pids:
            with open(os.path.join(os.path.dirname(cgroup), "cgroup.procs"), "w") as f:
                f.write(pid)
    except OSError:
        pass
    for _ in range(50):
        try:
            os.rmdir(cgroup)
            break
        except FileNotFoundError:
            break
        except OSError:
            time.sleep(0.02)
"""

WATCHDOG_MODES: Final = ("resume", "terminate")


class _Watchdog:
    """The guarding process's side of the watchdog: the helper and the pipe's write end.

    Cost: one small interpreter per child (started with ``-I -S``: no site packages,
    about 10 ms of CPU and 8-10 MB of memory), asleep in ``select`` with one wake-up a
    second; nothing is left behind after :meth:`close`.
    """

    __slots__ = ("_w", "helper", "mode")

    def __init__(self, mode: str, grace: float) -> None:
        r, w = os.pipe()
        try:
            self.helper = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _WATCHDOG, mode, repr(grace), str(os.getpid())],
                stdin=r,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            os.close(w)
            raise
        finally:
            os.close(r)
        self.mode = mode
        self._w: int | None = w

    def tell(self, line: str) -> None:
        """Pass one line to the helper (``pid N``, ``cgroup PATH``)."""
        if self._w is not None:
            with contextlib.suppress(OSError):
                os.write(self._w, (line + "\n").encode())

    def close(self, timeout: float = 2.0) -> None:
        """The guard ends normally: the helper exits without touching the child."""
        w, self._w = self._w, None
        if w is None:
            return
        with contextlib.suppress(OSError):
            os.write(w, b"done\n")
        os.close(w)
        try:
            self.helper.wait(timeout)
        except subprocess.TimeoutExpired:  # pragma: no cover - a helper that hangs
            self.helper.kill()
            self.helper.wait()


class _CgroupFreezer:
    """The child in a cgroup v2 of its own: ``cgroup.freeze`` 1/0."""

    kind = "cgroup"

    def __init__(self, path: Path, pid: int) -> None:
        self.path = path
        self._pid = pid
        self._signals = _SignalFreezer(pid)
        self._signalled = False

    @classmethod
    def create(cls, pid: int, root: Path = CGROUP_ROOT) -> _CgroupFreezer:
        """Give ``pid`` (and its descendants) a cgroup under ours; OSError if not allowed."""
        if not (root / "cgroup.controllers").exists():
            raise OSError(f"no cgroup v2 hierarchy at {root}")
        own = ""
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                own = line[3:].strip()
        parent = root / own.lstrip("/")
        if not os.access(parent, os.W_OK):
            raise OSError(f"{parent} is not writable")
        path = parent / f"wedguard-{os.getpid()}-{pid}"
        path.mkdir(exist_ok=True)
        try:
            if not (path / "cgroup.freeze").exists():
                raise OSError(f"{path} has no cgroup.freeze (a kernel before 5.2?)")
            for p in [pid, *(c.pid for c in children_of(pid))]:
                (path / "cgroup.procs").write_text(f"{p}\n")
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            raise
        return cls(path, pid)

    def freeze(self) -> None:
        try:
            (self.path / "cgroup.freeze").write_text("1")
        except OSError:
            # the cgroup went away or refuses: stop the child the old way
            self._signalled = True
            self._signals.freeze()

    def thaw(self) -> None:
        with contextlib.suppress(OSError):
            (self.path / "cgroup.freeze").write_text("0")
        if self._signalled:
            self._signalled = False
            self._signals.thaw()

    def close(self) -> None:
        self.thaw()
        with contextlib.suppress(OSError):
            self.path.rmdir()


# -- live children: atexit, termination signals, per-guard registry ------------------------

_LIVE: set[GuardedProcess] = set()
_LIVE_LOCK = threading.RLock()
_BY_GUARD: weakref.WeakKeyDictionary[Any, set[GuardedProcess]] = weakref.WeakKeyDictionary()
_PREVIOUS_HANDLERS: dict[int, Any] = {}
_ATEXIT_DONE = False


def thaw_all() -> None:
    """Resume every child this process guards (registered with :mod:`atexit`)."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for child in live:
        child._release_hold()


def _on_termination_signal(signum: int, frame: FrameType | None) -> None:
    with _LIVE_LOCK:
        live = [c for c in _LIVE if c._forward]
    if live:
        # a handler must not wait for a lock the interrupted code may hold: a short
        # thread resumes the children and forwards the signal
        def forward() -> None:
            for child in live:
                child._forward_signal(signum)

        threading.Thread(target=forward, name="wedguard-forward", daemon=True).start()
        return
    # no child left (the handler outlived them): behave as the previous handler would
    previous = _PREVIOUS_HANDLERS.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _register(child: GuardedProcess) -> None:
    global _ATEXIT_DONE
    with _LIVE_LOCK:
        if not _ATEXIT_DONE:
            atexit.register(thaw_all)
            _ATEXIT_DONE = True
        _LIVE.add(child)
        _BY_GUARD.setdefault(child.guard, set()).add(child)
        if child._forward:
            if threading.current_thread() is threading.main_thread():
                if not _PREVIOUS_HANDLERS:
                    for sig in TERMINATION_SIGNALS:
                        _PREVIOUS_HANDLERS[sig] = signal.signal(sig, _on_termination_signal)
            else:
                child._note("termination signals are not forwarded: not started in the main thread")


def _unregister(child: GuardedProcess) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(child)
        mine = _BY_GUARD.get(child.guard)
        if mine is not None:
            mine.discard(child)
        if (
            _PREVIOUS_HANDLERS
            and not any(c._forward for c in _LIVE)
            and threading.current_thread() is threading.main_thread()
        ):
            for sig, previous in _PREVIOUS_HANDLERS.items():
                with contextlib.suppress(ValueError, TypeError):
                    signal.signal(sig, previous)
            _PREVIOUS_HANDLERS.clear()


def guarded_children(guard: GuardLike) -> list[GuardedProcess]:
    """The children running under ``guard`` now."""
    with _LIVE_LOCK:
        return sorted(_BY_GUARD.get(guard, ()), key=lambda c: c.pid)


# -- the guarded child ------------------------------------------------------------------------


_CAUSE_ORDER: Final = ("stop", "calendar", "impact", "cpu", "rate")
_DUTY_PERIOD: Final = 0.2
"""Seconds' worth of budget a child stopped for its rate (or CPU share) gets before it
runs again: it then runs and stops a few times a second (see ``_resume_credit``)."""
_MAX_STOPPED_TICK: Final = 0.5


def _guard_pause_cause(d: Decision) -> str | None:
    if d.stopped or d.on_hold:
        return "stop"
    if d.level is Level.BLACKOUT:
        return "calendar"
    if d.verdict is Verdict.HALT or d.rate <= 0:
        return "impact" if d.verdict is not Verdict.OK else "calendar"
    return None


def _check_on_guard_death(value: object, watchdog: object) -> str:
    """``on_guard_death`` checked against the older ``watchdog`` flag."""
    if not isinstance(value, str) or value not in ("auto", *WATCHDOG_MODES, "off"):
        raise ConfigError("on_guard_death", value, "'auto', 'resume', 'terminate' or 'off'")
    if watchdog is not None and not isinstance(watchdog, bool):
        raise ConfigError("watchdog", watchdog, "True, False or None")
    if watchdog is False:
        if value in WATCHDOG_MODES:
            raise ConfigError("watchdog", watchdog, f"not False with on_guard_death={value!r}")
        return "off"
    return value


def _check_seconds(field: str, value: object, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(field, value, "a duration such as 30 or '30m'")
    seconds = parse_duration(value, field=field)
    if not 0 < seconds < _INF:
        raise ConfigError(field, value, "a duration > 0")
    return seconds


class _Child(subprocess.Popen[Any]):
    """A :class:`subprocess.Popen` that lets its :class:`GuardedProcess` read the
    child's last I/O and CPU counters before the child is reaped.

    A child that exits between two readings (a short ``pg_dump``) would otherwise be
    reported with the I/O of its last reading, or none: once reaped its counters are
    gone, while a zombie's ``/proc/<pid>/io`` still holds them. Every path that reaps
    (``poll``, ``wait``, ``communicate``) goes through ``_try_wait`` or
    ``_internal_poll``; both first ask ``waitid(..., WNOWAIT)`` whether the child has
    exited, and call :attr:`before_reap` once if it has.
    """

    before_reap: Callable[[], None] | None = None

    def _exited(self, block: bool) -> bool:
        flags = os.WEXITED | os.WNOWAIT | (0 if block else os.WNOHANG)
        try:
            return os.waitid(os.P_PID, self.pid, flags) is not None
        except (ChildProcessError, InterruptedError):
            return False

    def _last_look(self, block: bool) -> None:
        hook = self.before_reap
        if hook is not None and self.returncode is None and self._exited(block):
            self.before_reap = None
            with contextlib.suppress(Exception):
                hook()

    def _try_wait(self, wait_flags: int) -> tuple[int, int]:
        self._last_look(block=not wait_flags & os.WNOHANG)
        return super()._try_wait(wait_flags)  # type: ignore[misc, no-any-return]

    def _internal_poll(self, *args: Any, **kwargs: Any) -> int | None:
        self._last_look(block=False)
        return super()._internal_poll(*args, **kwargs)  # type: ignore[misc, no-any-return]


class GuardedProcess:
    """A child process under a guard: :class:`subprocess.Popen` plus a monitor thread.

    Prefer :meth:`wedguard.Guard.run` (or :func:`run_guarded`); this class is the lower
    level for hosts that need the pid, the live report or their own waiting. As a
    context manager it waits for the child on the way out, as :class:`subprocess.Popen`
    does; if the block raised, the child is resumed and ended instead (SIGTERM, then
    SIGKILL after ``kill_grace``), as :func:`subprocess.run` does.

    Args:
        guard: the guard whose decision, calendar and sinks apply.
        argv: the command (a sequence; no shell).
        name: names the child in reports, alerts and the control socket (default: the
            program's base name).
        nice: niceness to add (0..19, default 10; 0 leaves it alone).
        ionice: put the child in the idle I/O class (default True).
        io_rate: a byte-rate cap of its own, under the guard's (default: the guard's).
        cpu_share: the share of the machine's CPU it may use at PEAK (default 0.30;
            None: no cap). A calendar window with a ``cpu_share`` overrides it.
        max_pause: the longest one pause may last before an alert (default ``"30m"``).
        on_max_pause: ``"alert"`` (default) or ``"abort"``: also end the child.
        freeze: ``"auto"`` (cgroup v2 when possible, else signals), ``"cgroup"`` or
            ``"signal"``.
        interval: seconds between the monitor's readings while it limits the child
            (default 0.05 s; 5x longer while nothing limits).
        kill_grace: seconds between SIGTERM and SIGKILL when the child is ended.
        forward_signals: forward the guarding process's termination signals to the
            child (default True; needs the main thread).
        on_guard_death: what happens to the child if the guarding process dies without
            running its handlers (``SIGKILL``, the OOM killer): ``"resume"`` (it is
            resumed and runs on), ``"terminate"`` (it is resumed and ended: SIGTERM,
            SIGKILL after ``kill_grace``), ``"auto"`` (the default: ``"terminate"``
            when the child holds a slot shared by many hosts, whose lease lapses with
            the guard, else ``"resume"``) or ``"off"``. A small watchdog process does
            it: it waits on a pipe only the guarding process holds open.
        watchdog: ``False`` is ``on_guard_death="off"`` (kept for older code).
        session: take a guard session (a concurrency slot) for the child's life
            (default True): it counts toward ``max_concurrent`` and keeps the guard's
            sampler running.
        **popen: passed to :class:`subprocess.Popen` (``stdin``, ``stdout``,
            ``stderr``, ``cwd``, ``env``, ``text``...).

    Attributes:
        on_guard_death: what the watchdog does if the guarding process dies
            (``"resume"``, ``"terminate"`` or ``"off"``; ``"auto"`` resolved).

    Example::

        with GuardedProcess(guard, ["pg_dump", "-Fc", "-f", "db.dump", "app"]) as child:
            child.wait()
        print(child.report())

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        guard: GuardLike,
        argv: Sequence[str | os.PathLike[str]],
        *,
        name: str | None = None,
        nice: int = 10,
        ionice: bool = True,
        io_rate: float | str | None = None,
        cpu_share: float | None = 0.30,
        max_pause: float | str = "30m",
        on_max_pause: Literal["alert", "abort"] = "alert",
        freeze: Literal["auto", "cgroup", "signal"] = "auto",
        interval: float = 0.05,
        kill_grace: float | str = 5.0,
        forward_signals: bool = True,
        on_guard_death: Literal["auto", "resume", "terminate", "off"] = "auto",
        watchdog: bool | None = None,
        session: bool = True,
        **popen: Any,
    ) -> None:
        if not callable(getattr(guard, "decision", None)):
            raise ConfigError("guard", guard, "a wedguard.Guard")
        if isinstance(argv, (str, bytes)) or not isinstance(argv, Sequence) or not argv:
            shown = redact_text(argv) if isinstance(argv, (str, bytes)) else argv
            raise ConfigError("argv", shown, "a non-empty list of program and arguments")
        self._argv = tuple(os.fspath(a) for a in argv)
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError("name", name, "a non-empty string")
        self.name = name or (os.path.basename(self._argv[0]) or self._argv[0])
        nice = check_nice(nice)
        self._io_cap = _INF if io_rate is None else parse_rate(io_rate, field="io_rate")
        if not self._io_cap > 0:
            raise ConfigError("io_rate", io_rate, "a rate > 0, or None")
        if cpu_share is not None and (
            isinstance(cpu_share, bool)
            or not isinstance(cpu_share, (int, float))
            or not 0 < cpu_share <= 1
        ):
            raise ConfigError("cpu_share", cpu_share, "a share of the machine in (0, 1], or None")
        self._max_pause = _check_seconds("max_pause", max_pause)
        if on_max_pause not in ("alert", "abort"):
            raise ConfigError("on_max_pause", on_max_pause, "'alert' or 'abort'")
        if freeze not in ("auto", "cgroup", "signal"):
            raise ConfigError("freeze", freeze, "'auto', 'cgroup' or 'signal'")
        if isinstance(interval, bool) or not isinstance(interval, (int, float)):
            raise ConfigError("interval", interval, "seconds in [0.01, 5]")
        if not 0.01 <= interval <= 5:
            raise ConfigError("interval", interval, "seconds in [0.01, 5]")
        grace = _check_seconds("kill_grace", kill_grace)
        assert grace is not None
        death = _check_on_guard_death(on_guard_death, watchdog)
        for key in ("start_new_session", "preexec_fn", "process_group", "args"):
            if key in popen:
                raise ConfigError(key, popen[key], "not set: wedguard starts the child itself")

        self.guard = guard
        self._nice = nice
        self._ionice = bool(ionice)
        self._cpu_share = None if cpu_share is None else float(cpu_share)
        self._on_max_pause = on_max_pause
        self._interval = float(interval)
        self._kill_grace = grace
        self._forward = bool(forward_signals)
        self._notes: list[str] = []
        self._lock = threading.RLock()
        self._stopped_by: str | None = None
        self._pause_start = 0.0
        self._pause_time: dict[str, float] = dict.fromkeys(_CAUSE_ORDER, 0.0)
        self._pauses = 0
        self._longest = 0.0
        self._terminating = False
        self._aborted = ""
        self._signals: list[str] = []
        self._alerted = False
        self._pause_began = 0.0
        self._io_used = 0.0
        self._credited = 0.0  # of _io_used, counted in the session's bytes so far
        self._cpu_used = 0.0
        self._counter = "chars"
        self._io = DutyCycle(_INF, burst_seconds=_DUTY_PERIOD * 1.25)
        self._speed = 0.0
        self._last_step = 0.0
        self._last_cpu = -_INF
        self._cpu = DutyCycle(_INF, burst_seconds=_DUTY_PERIOD * 1.25)
        self._ncpu = os.cpu_count() or 1
        self._done = threading.Event()
        self._closed = threading.Event()
        self._session: GuardSession | None = None
        self._applied_nice: int | None = None
        self._applied_ionice: str | None = None

        if death == "auto":
            # a slot shared by many hosts lapses with the guard: the child must not outlive it
            shared = session and guard.coordinator is not None and guard.max_concurrent is not None
            death = "terminate" if shared else "resume"
        self.on_guard_death: str = death
        if session:
            self._session = guard.session(self.name)
            self._session.__enter__()
        # the watchdog starts first, so that it covers the child from its first instant
        self._watchdog: _Watchdog | None = None
        self._watchdog_started = False
        if death != "off":
            try:
                self._watchdog = _Watchdog(death, grace)
                self._watchdog_started = True
            except OSError as exc:
                self._note(f"no watchdog ({exc}): a SIGKILL of the guard would not be covered")
        try:
            self._started_at = datetime.now(timezone.utc)
            self._t0 = time.monotonic()
            self.popen: subprocess.Popen[Any] = _Child(self._argv, start_new_session=True, **popen)
        except BaseException as exc:
            self._stop_watchdog()
            self._end_session(exc)
            raise
        self.pid = self.popen.pid
        self.popen.before_reap = self._last_reading
        if self._watchdog is not None:
            self._watchdog.tell(f"pid {self.pid}")
        self._freezer: _SignalFreezer | _CgroupFreezer = self._make_freezer(freeze)
        if self._watchdog is not None and isinstance(self._freezer, _CgroupFreezer):
            self._watchdog.tell(f"cgroup {os.fspath(self._freezer.path)}")
        self._lower_priority()
        self._procs: dict[int, psutil.Process] = {}
        self._last_tree = 0.0
        self._bases: dict[str, float] = {}
        _register(self)
        self._step()  # a paused guard stops the child before it gets going
        self._monitor = threading.Thread(
            target=self._loop, name=f"wedguard-child-{self.pid}", daemon=True
        )
        self._monitor.start()

    # -- setup ----------------------------------------------------------------------------

    def _note(self, text: str) -> None:
        with self._lock:
            if text not in self._notes:
                self._notes.append(text)

    def _make_freezer(self, mode: str) -> _SignalFreezer | _CgroupFreezer:
        if mode != "signal":
            try:
                return _CgroupFreezer.create(self.pid)
            except OSError as exc:
                if mode == "cgroup":
                    self._kill_now()
                    self._stop_watchdog()
                    self._end_session(None)
                    raise ConfigError("freeze", mode, f"a cgroup v2 freezer ({exc})") from exc
                self._note(f"cgroup freezer unavailable ({exc}); pausing with SIGSTOP/SIGCONT")
        return _SignalFreezer(self.pid)

    def _lower_priority(self) -> None:
        if self._nice:
            try:
                current = os.getpriority(os.PRIO_PROCESS, self.pid)
                target = min(19, current + self._nice)
                os.setpriority(os.PRIO_PROCESS, self.pid, target)
                self._applied_nice = target
            except (OSError, AttributeError) as exc:
                self._note(f"not niced: {exc}")
        if self._ionice:
            idle = getattr(psutil, "IOPRIO_CLASS_IDLE", None)
            if idle is None:
                self._note("idle I/O class not available on this platform")
            else:
                try:
                    psutil.Process(self.pid).ionice(idle)
                    self._applied_ionice = "idle"
                except (psutil.Error, OSError, ValueError) as exc:
                    self._note(f"idle I/O class not allowed: {exc}")

    # -- measuring ------------------------------------------------------------------------

    def _tree(self, now: float) -> list[psutil.Process]:
        if now - self._last_tree >= 0.5 or self.pid not in self._procs:
            self._last_tree = now
            procs = self._procs
            try:
                root = procs.get(self.pid) or psutil.Process(self.pid)
                fresh = {self.pid: root}
                for pid in descendant_pids(self.pid):
                    known = procs.get(pid)
                    if known is None:
                        with contextlib.suppress(psutil.Error, OSError):
                            known = psutil.Process(pid)
                    if known is not None:
                        fresh[pid] = known
                self._procs = fresh
            except (psutil.Error, OSError):
                pass
        return list(self._procs.values())

    def _last_reading(self) -> None:
        """The child has exited and is not reaped yet: read its final counters."""
        with self._lock:
            self._last_tree = -_INF  # the tree as it is now
            self._measure(time.monotonic() + 1.0)

    def _measure(self, now: float) -> None:
        rb = wb = rc = wc = 0
        cpu = 0.0
        # CPU times every tick only while a CPU cap applies; else twice a second
        want_cpu = self._cpu.rate < _INF or now - self._last_cpu >= 0.5
        if want_cpu:
            self._last_cpu = now
        for p in self._tree(now):
            try:
                io = p.io_counters()
                if want_cpu:
                    t = p.cpu_times()
                    cpu += t.user + t.system + t.children_user + t.children_system
            except (psutil.Error, OSError, AttributeError):
                continue
            rb += io.read_bytes
            wb += io.write_bytes
            rc += getattr(io, "read_chars", 0)
            wc += getattr(io, "write_chars", 0)
        storage = float(rb + wb)
        chars = float(rc + wc)
        b = self._bases
        if self._counter == "chars" and storage > 0:
            # the storage counters move: account by them from here on; what the
            # character counters already counted stands for that much of them, the
            # rest is counted now (a short child's last reading would lose it all)
            self._counter = "bytes"
            b["bytes"] = min(storage, self._io_used)
        if self._counter == "bytes":
            grown = storage - b.get("bytes", storage)
            b["bytes"] = max(b.get("bytes", storage), storage)
        else:
            grown = chars - b.get("chars", 0.0)
            b["chars"] = max(b.get("chars", 0.0), chars)
        self._io_used += max(0.0, grown)
        if want_cpu:
            self._cpu_used = max(self._cpu_used, cpu)

    # -- the monitor --------------------------------------------------------------------

    def _step(self) -> float:
        """One reading and decision; returns how long to wait before the next."""
        g = self.guard
        now = time.monotonic()
        d = g.decision()
        with self._lock:
            if self._done.is_set():
                return _INF
            before = self._io_used
            self._measure(now)
            self._credit_session()
            if self._stopped_by is None and now > self._last_step:
                # the child's I/O speed while running, to stop it close to its budget
                speed = (self._io_used - before) / (now - self._last_step)
                self._speed = speed if self._speed <= 0 else 0.7 * self._speed + 0.3 * speed
            self._last_step = now
            rate = min(d.rate, self._io_cap)
            if rate != self._io.rate:
                self._io.set_rate(rate if rate > 0 else _INF)
            wait_io = self._resume_credit(self._io, "rate", self._io.update(now, self._io_used))
            share = d.cpu_share
            if share is None and d.level >= Level.PEAK:
                share = self._cpu_share
            cpu_rate = _INF if share is None else share * self._ncpu
            if cpu_rate != self._cpu.rate:
                self._cpu.set_rate(cpu_rate)
            wait_cpu = self._resume_credit(self._cpu, "cpu", self._cpu.update(now, self._cpu_used))
            cause = _guard_pause_cause(d)
            wait = 0.0
            if cause is None and wait_cpu > 0:
                cause, wait = "cpu", wait_cpu
            if cause is None and wait_io > 0:
                cause, wait = "rate", wait_io
            if self._terminating:
                cause = None
            self._set_stopped(cause, now)
            limiting = cause is not None or rate < _INF or cpu_rate < _INF
            tick = self._interval if limiting else self._interval * 5
            if cause in ("rate", "cpu"):
                # stopped for a known time: nothing to read until then (a new decision
                # wakes the monitor sooner)
                tick = min(max(wait, 0.002), _MAX_STOPPED_TICK)
            elif cause is None and rate < _INF:
                # run until the credit is likely spent, then look again
                spend = self._io.tokens / self._speed if self._speed > 0 else self._interval / 5
                tick = min(max(spend, 0.002), tick)
            return tick

    def _resume_credit(self, cycle: DutyCycle, cause: str, wait: float) -> float:
        """Hysteresis: a child stopped for its budget stays stopped until it has
        ``_DUTY_PERIOD`` seconds' worth of credit, so that it runs and stops a few times
        a second instead of at every reading (each stop and resume costs the guarding
        process signals and readings; the long-run rate is the same)."""
        if wait > 0 or self._stopped_by != cause or not 0 < cycle.rate < _INF:
            return wait
        missing = cycle.rate * _DUTY_PERIOD - cycle.tokens
        return missing / cycle.rate if missing > 1e-9 * cycle.rate else 0.0

    def _set_stopped(self, cause: str | None, now: float) -> None:
        """Stop or resume the child (lock held) and keep the pause books."""
        was = self._stopped_by
        if cause is not None and was is None:
            self._freezer.freeze()
            self._pause_start = self._pause_began = now
            self._pauses += 1
        elif cause is None and was is not None:
            self._freezer.thaw()
        if was is not None and cause != was:
            self._pause_time[was] += now - self._pause_start
            self._pause_start = now
        self._stopped_by = cause
        if was is not None and cause is None:
            self._longest = max(self._longest, now - self._pause_began)
            if self._alerted:
                self._alerted = False
                alert = self._max_pause_alert(now)
                self._emit(alert.resolved(datetime.now(timezone.utc)))
        elif cause is not None:
            self._check_max_pause(now)

    def _max_pause_alert(self, now: float) -> Alert:
        return Alert(
            f"wedguard/process/{self.name}/max-pause",
            Severity.HIGH,
            f"child {self.name!r} (pid {self.pid}) paused for "
            f"{format_duration(now - self._pause_began)}, longer than the maximum "
            f"{format_duration(self._max_pause or 0)}"
            + ("; ending it" if self._on_max_pause == "abort" else ""),
            details="A paused backup may hold snapshots and locks that hurt production.",
            labels={"component": "process", "process": self.name, "pid": str(self.pid)},
            started_at=datetime.now(timezone.utc) - timedelta(seconds=now - self._pause_began),
        )

    def _check_max_pause(self, now: float) -> None:
        assert self._max_pause is not None
        if now - self._pause_began < self._max_pause or self._alerted or self._terminating:
            return
        self._alerted = True
        self._emit(self._max_pause_alert(now))
        if self._on_max_pause == "abort":
            self._abort(f"paused longer than max_pause {format_duration(self._max_pause)}")

    def _emit(self, event: Any) -> None:
        with contextlib.suppress(Exception):  # a sink never breaks the child
            self.guard.publish(event)

    def _loop(self) -> None:
        while not self._done.is_set():
            try:
                tick = self._step()
            except Exception as exc:  # pragma: no cover - never leave the child stopped
                self._note(f"monitor error: {exc!r}")
                self._release_hold()
                tick = self._interval * 5
            if tick == _INF:
                break
            if self.popen.poll() is not None:
                self.close()  # the child ended: free its slot even if nobody waits for it
                break
            # a new decision (stop, resume, new rate) wakes us at once
            self.guard.wait_for_change(tick)

    # -- stopping, resuming, ending ----------------------------------------------------------

    def _release_hold(self) -> None:
        """Resume the child now and for good (exit, signals, errors)."""
        with self._lock:
            self._terminating = True
            self._set_stopped(None, time.monotonic())
            self._freezer.thaw()

    def _forward_signal(self, signum: int) -> None:
        self._release_hold()
        with contextlib.suppress(ValueError):
            self._signals.append(signal.Signals(signum).name)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def _kill_now(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.popen.kill()
        self.popen.wait()

    def _abort(self, reason: str) -> None:
        """End the child: resume it, SIGTERM its group, SIGKILL after ``kill_grace``."""
        with self._lock:
            if self._aborted or self.popen.poll() is not None:
                return
            self._aborted = reason
            self._note(f"aborted: {reason}")
        self._release_hold()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGTERM)

        def reap() -> None:
            try:
                self.popen.wait(self._kill_grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)

        threading.Thread(target=reap, name=f"wedguard-reap-{self.pid}", daemon=True).start()

    def abort(self, reason: str = "aborted") -> None:
        """End the child (SIGTERM, then SIGKILL after ``kill_grace``); it is not waited for."""
        self._abort(reason)

    def _credit_session(self) -> None:
        """Count the child's I/O in its session as it goes: the guard's controller
        reads the sessions' bytes to know the rate the backup achieves (with no
        byte budget, a THROTTLE cuts from that rate)."""
        s = self._session
        grown = self._io_used - self._credited
        if s is not None and grown > 0:
            with contextlib.suppress(Exception):
                s.count(grown)
                self._credited = self._io_used

    def _end_session(self, exc: BaseException | None) -> None:
        with self._lock:
            self._credit_session()
        s, self._session = self._session, None
        if s is not None:
            s.__exit__(None if exc is None else type(exc), exc, None)

    def close(self, exc: BaseException | None = None) -> None:
        """Stop monitoring: resume the child for good, release the session and registry."""
        with self._lock:
            if self._done.is_set():
                closed = True
            else:
                closed = False
                self._release_hold()
                if self.popen.poll() is not None:
                    with contextlib.suppress(Exception):
                        self._measure(time.monotonic() + 1.0)
                self._done.set()
        if closed:
            # another thread (the monitor, when the child ended) is closing: wait for it
            if threading.current_thread() is not getattr(self, "_monitor", None):
                self._closed.wait(5.0)
            _unregister(self)  # from the main thread this restores the signal handlers
            return
        try:
            self._freezer.close()
            self._stop_watchdog()
            _unregister(self)
            self._emit(self.report())
            self._end_session(exc)
        finally:
            self._closed.set()

    def _stop_watchdog(self) -> None:
        dog, self._watchdog = self._watchdog, None
        if dog is not None:
            dog.close()

    # -- Popen-like surface ----------------------------------------------------------------

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    @property
    def stopped(self) -> bool:
        """True while the guard holds the child stopped."""
        return self._stopped_by is not None

    @property
    def paused_cause(self) -> str | None:
        """Why the child is stopped now (``"stop"``, ``"calendar"``, ``"impact"``,
        ``"rate"``, ``"cpu"``), or None while it runs."""
        return self._stopped_by

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout)

    def communicate(self, input: Any = None, timeout: float | None = None) -> tuple[Any, Any]:
        return self.popen.communicate(input, timeout)

    def report(self) -> ProcessReport:
        """What has happened to the child so far."""
        with self._lock:
            now = time.monotonic()
            paused = dict(self._pause_time)
            longest = self._longest
            if self._stopped_by is not None:
                paused[self._stopped_by] += now - self._pause_start
                longest = max(longest, now - self._pause_began)
            return ProcessReport(
                name=self.name,
                pid=self.pid,
                argv=redact_argv(self._argv),
                returncode=self.popen.poll(),
                started_at=self._started_at,
                duration=now - self._t0,
                io_bytes=self._io_used,
                io_counter=self._counter,
                cpu_seconds=self._cpu_used,
                paused={k: v for k, v in paused.items() if v > 0},
                pauses=self._pauses,
                longest_pause=longest,
                freeze=self._freezer.kind,
                nice=self._applied_nice,
                ionice=self._applied_ionice,
                notes=tuple(self._notes),
                signals=tuple(self._signals),
                aborted=self._aborted,
                on_guard_death=self.on_guard_death if self._watchdog_started else "off",
            )

    def reasons(self) -> tuple[str, ...]:
        """One line per thing the guard does to this child now, and what it could not do."""
        cause = self._stopped_by
        head = f"child {self.name} (pid {self.pid}): "
        out = [head + ("running" if cause is None else f"paused ({cause})")]
        if self._io.rate < _INF:
            out.append(head + f"I/O duty-cycled to {format_rate(self._io.rate)}")
        if self._cpu.rate < _INF:
            out.append(head + f"CPU capped at {self._cpu.rate / self._ncpu:.0%} of the machine")
        out.extend(head + n for n in self._notes)
        return tuple(out)

    def decision(self) -> Decision:
        """The guard's decision, with this child's state and limitations in its reasons."""
        d = self.guard.decision()
        return attrs.evolve(d, reasons=(*d.reasons, *self.reasons()))

    def status(self) -> dict[str, Any]:
        """A JSON-serialisable summary (for the control socket)."""
        r = self.report()
        return {
            "name": self.name,
            "pid": self.pid,
            "state": "running" if self._stopped_by is None else f"paused ({self._stopped_by})",
            "io_rate": "inf" if self._io.rate == _INF else self._io.rate,
            "io_bytes": r.io_bytes,
            "cpu_seconds": r.cpu_seconds,
            "paused_s": dict(r.paused),
            "freeze": r.freeze,
            "notes": list(r.notes),
        }

    def __enter__(self) -> GuardedProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is not None and self.popen.poll() is None:
                self._abort(f"{type(exc).__name__} in the guarding code")
                try:
                    self.popen.wait(self._kill_grace + 1.0)
                except subprocess.TimeoutExpired:  # pragma: no cover
                    self._kill_now()
            for stream in (self.popen.stdout, self.popen.stderr, self.popen.stdin):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            if exc is None:
                self.popen.wait()  # as Popen does; still guarded while it runs
        finally:
            self.close(exc)

    def __repr__(self) -> str:
        state = "running" if self._stopped_by is None else f"paused ({self._stopped_by})"
        return f"GuardedProcess(name={self.name!r}, pid={self.pid}, {state})"


def run_guarded(
    guard: GuardLike,
    argv: Sequence[str | os.PathLike[str]],
    *,
    input: Any = None,
    capture_output: bool = False,
    timeout: float | None = None,
    check: bool = False,
    **kwargs: Any,
) -> GuardedCompletedProcess:
    """Run ``argv`` under ``guard`` and wait for it, as :func:`subprocess.run` does.

    Keyword arguments are those of :class:`GuardedProcess` (``name``, ``nice``,
    ``io_rate``, ``cpu_share``, ``max_pause``, ``on_max_pause``, ``on_guard_death``...)
    and of
    :class:`subprocess.Popen` (``stdout``, ``stderr``, ``cwd``, ``env``, ``text``...).

    Returns:
        a :class:`GuardedCompletedProcess`: ``returncode``, ``stdout``, ``stderr`` as
        :func:`subprocess.run` gives them, and ``report`` (a :class:`ProcessReport`).

    Raises:
        subprocess.TimeoutExpired: ``timeout`` passed (paused time counts); the child
            was killed.
        subprocess.CalledProcessError: ``check=True`` and the exit status is not 0.
        ConfigError: bad arguments, before anything starts.

    Example::

        >>> import sys, wedguard as wg
        >>> guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[])
        >>> guard.run([sys.executable, "-c", "raise SystemExit(3)"]).returncode
        3
    """
    if timeout is not None:
        timeout = _check_seconds("timeout", timeout)
    if input is not None:
        if kwargs.get("stdin") is not None:
            raise ConfigError("stdin", kwargs["stdin"], "not set together with input")
        kwargs["stdin"] = subprocess.PIPE
    if capture_output:
        if kwargs.get("stdout") is not None or kwargs.get("stderr") is not None:
            raise ConfigError(
                "capture_output", capture_output, "not set together with stdout or stderr"
            )
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    child = GuardedProcess(guard, argv, **kwargs)
    with child:
        try:
            stdout, stderr = child.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            child._release_hold()
            child._aborted = f"timeout after {format_duration(timeout or 0)}"
            child._kill_now()
            out, err = child.popen.communicate()
            exc.stdout, exc.stderr = out, err
            child.close()
            raise
        except BaseException:
            child._release_hold()
            child._kill_now()
            raise
        retcode = child.popen.wait()
    report = child.report()
    done = GuardedCompletedProcess(child.popen.args, retcode, stdout, stderr, report=report)
    if check:
        done.check_returncode()
    return done


# -- pipes --------------------------------------------------------------------------------


def pipe_guarded(
    guard: GuardLike,
    src: Any,
    dst: Any,
    *,
    name: str = "pipe",
    chunk_size: int | str = 64 * 1024,
    flush: bool = True,
) -> int:
    """Copy the stream ``src`` to ``dst`` through a guard session; return the bytes written.

    Reads what is available (``read1``/``readinto1`` when the stream has them, so a
    slow producer is forwarded as it produces), throttles each chunk before writing it,
    writes it in full (again after a short write) and flushes ``dst`` after each chunk
    (``flush=False`` to leave that to ``dst``). Inside a session of this guard (``with
    guard.session(...)``) the pipe runs in that session, without a second slot;
    otherwise in a session named ``name``. Nothing is dropped or reordered; an
    :class:`~wedguard.EmergencyStop` leaves ``dst`` holding whole chunks only. The loop
    is :func:`wedguard.io.copy.copy_stream`, shared with ``guard.copyfileobj``.

    Example::

        >>> import io, wedguard as wg
        >>> from wedguard.testing import FakeClock
        >>> guard = wg.Guard(rate="1MB/s", calendar=None, sources=[], sinks=[],
        ...                  clock=FakeClock())
        >>> out = io.BytesIO()
        >>> guard.pipe(io.BytesIO(b"x" * 3_000_000), out)
        3000000
        >>> round(guard.clock.monotonic(), 1)   # 3 MB at 1 MB/s after a 0.2 s burst
        2.8
    """
    size = chunk_size if isinstance(chunk_size, int) else parse_size(chunk_size, field="chunk_size")
    if isinstance(size, bool) or size <= 0:
        raise ConfigError("chunk_size", chunk_size, "a size in bytes > 0")
    check_ends(src, dst)
    outer = guard.current_session()
    if outer is not None:
        return copy_stream(outer, src, dst, size, available=True, flush=flush)
    with guard.session(name) as s:
        return copy_stream(s, src, dst, size, available=True, flush=flush)


def pipe_main(
    argv: Sequence[str] | None = None,
    *,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
) -> int:
    """``wedguard pipe``: copy stdin to stdout through a guard; the exit status.

    ``pg_dump app | wedguard pipe --rate 10MB/s | aws s3 cp - s3://bucket/app.dump``

    Options: ``--rate`` (default ``off``), ``--config FILE`` (a ``wedguard.toml``;
    ``--rate`` then overrides its rate), ``--calendar``/``--no-calendar`` (the default
    06:00-22:00 PEAK calendar; off by default without ``--config``), ``--name``,
    ``--chunk-size``, ``--control-socket PATH``.

    Exit status: 0 done, 1 an I/O error (such as a closed downstream), 2 usage or
    configuration error, 3 stopped.
    """
    import argparse

    parser = argparse.ArgumentParser(
        prog="wedguard pipe", description="Copy stdin to stdout, throttled by a guard."
    )
    parser.add_argument("--rate", default=None, help="byte rate, e.g. 10MB/s (default: off)")
    parser.add_argument("--config", default=None, help="a wedguard.toml to build the guard from")
    parser.add_argument(
        "--calendar",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="apply the default peak-hours calendar (06:00-22:00 UTC, 10 Mbit/s)",
    )
    parser.add_argument("--name", default="pipe", help="session name in reports")
    parser.add_argument("--chunk-size", default="64KiB", help="read size (default 64KiB)")
    parser.add_argument("--control-socket", default=None, help="serve the control socket here")
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else 2
    src = stdin if stdin is not None else sys.stdin.buffer
    dst = stdout if stdout is not None else sys.stdout.buffer
    guard: Any = None
    try:
        guard = _pipe_guard(args)
        pipe_guarded(guard, src, dst, name=args.name, chunk_size=args.chunk_size)
    except ConfigError as exc:
        print(f"wedguard pipe: {exc}", file=sys.stderr)
        return 2
    except EmergencyStop as exc:
        print(f"wedguard pipe: {exc}", file=sys.stderr)
        return 3
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), dst.fileno())
        return 1
    except (OSError, WedguardError) as exc:
        print(f"wedguard pipe: {exc}", file=sys.stderr)
        return 1
    finally:
        if guard is not None:
            guard.close()
    return 0


def _pipe_guard(args: argparse.Namespace) -> Guard:
    from wedguard.runtime.guard import DEFAULT, Guard

    if args.config is not None:
        import importlib

        try:
            config: Any = importlib.import_module("wedguard.config")
        except ImportError as exc:  # pragma: no cover - the config module lands separately
            raise ConfigError("--config", args.config, "a wedguard with wedguard.config") from exc
        guard: Guard = config.load(args.config)
        if args.rate is not None:
            guard.set_rate(args.rate)
        if args.control_socket is not None:
            guard.serve_control(args.control_socket)
        return guard
    return Guard(
        rate=args.rate if args.rate is not None else "off",
        calendar=DEFAULT if args.calendar else None,
        sources=[],
        control_socket=args.control_socket,
    )
