"""A child process under a guard: :class:`GuardedProcess` (``guard.popen``).

The child runs niced and in the idle I/O class where the OS allows, is paused while the
guard's decision is paused, is duty-cycled to the allowed byte rate (and at PEAK to its
CPU share), and is never left stopped. See :mod:`wedguard.io.process` for the whole
story; this module holds the child and its monitor thread.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs

from wedguard import _checks
from wedguard.errors import ConfigError
from wedguard.io import children
from wedguard.io.duty_cycle import ChildPacer
from wedguard.io.freezing import _CgroupFreezer, _SignalFreezer
from wedguard.io.priority import (
    ChildPriority,
    check_cpus,
    check_nice,
    lower_process,
    starting_on,
)
from wedguard.io.process_report import PauseLog, ProcessReport
from wedguard.io.proctree import TreeMeter
from wedguard.io.watchdog import _check_on_guard_death, _Watchdog
from wedguard.policy.alerting import Alert, Severity
from wedguard.redact import redact_argv, redact_text
from wedguard.units import format_duration, format_rate, parse_duration, parse_rate

if TYPE_CHECKING:
    from wedguard.decision import Decision
    from wedguard.interfaces import GuardLike, GuardSession

__all__ = ["GuardedProcess"]

_INF: Final = math.inf

_CAUSE_ORDER: Final = ("stop", "calendar", "impact", "cpu", "rate")


def _max_pause_alert(name: str, pid: int, paused_for: float, opts: _Options) -> Alert:
    """The alert for child ``name`` paused ``paused_for`` seconds, past its max_pause."""
    return Alert(
        f"wedguard/process/{name}/max-pause",
        Severity.HIGH,
        f"child {name!r} (pid {pid}) paused for "
        f"{format_duration(paused_for)}, longer than the maximum "
        f"{format_duration(opts.max_pause)}"
        + ("; ending it" if opts.on_max_pause == "abort" else ""),
        details="A paused backup may hold snapshots and locks that hurt production.",
        labels={"component": "process", "process": name, "pid": str(pid)},
        started_at=datetime.now(timezone.utc) - timedelta(seconds=paused_for),
    )


def check_seconds(field: str, value: object, *, allow_none: bool = False) -> float | None:
    """``value`` as seconds > 0 (a number or a duration such as ``"30m"``); None only
    when ``allow_none``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(field, value, "a duration such as 30 or '30m'")
    seconds = parse_duration(value, field=field)
    if not 0 < seconds < _INF:
        raise ConfigError(field, value, "a duration > 0")
    return seconds


@attrs.frozen
class _Options:
    """A :class:`GuardedProcess`'s arguments, checked (see its docstring)."""

    name: str
    argv: tuple[str, ...]
    nice: int
    ionice: bool
    cpus: frozenset[int] | None
    io_cap: float
    cpu_share: float | None
    max_pause: float
    on_max_pause: str
    freeze: str
    interval: float
    kill_grace: float
    forward_signals: bool
    on_guard_death: str


def guard_child_cpus(guard: Any) -> frozenset[int] | None:
    """The cores ``guard`` runs a command on: its ``child_cpus`` (a guard-like object
    without one: its ``cpus``)."""
    return getattr(guard, "child_cpus", getattr(guard, "cpus", None))


def _options(
    guard: object,
    argv: Sequence[str | os.PathLike[str]],
    popen: dict[str, Any],
    *,
    name: str | None,
    nice: int,
    ionice: bool,
    cpus: Any,
    io_rate: float | str | None,
    cpu_share: float | None,
    max_pause: float | str,
    on_max_pause: str,
    freeze: str,
    interval: float,
    kill_grace: float | str,
    forward_signals: bool,
    on_guard_death: str,
    watchdog: bool | None,
) -> _Options:
    """:class:`GuardedProcess`'s arguments checked, in the order they are given; a
    :class:`ConfigError` naming the first bad one."""
    if not callable(getattr(guard, "decision", None)):
        raise ConfigError("guard", guard, "a wedguard.Guard")
    if isinstance(argv, (str, bytes)) or not isinstance(argv, Sequence) or not argv:
        shown = redact_text(argv) if isinstance(argv, (str, bytes)) else argv
        raise ConfigError("argv", shown, "a non-empty list of program and arguments")
    items = tuple(os.fspath(a) for a in argv)
    if name is not None and (not isinstance(name, str) or not name):
        raise ConfigError("name", name, "a non-empty string")
    niceness = check_nice(nice)
    cores = (
        guard_child_cpus(guard)
        if cpus == "guard"
        else check_cpus(cpus, expected="'guard', " + _checks.CPUS)
    )
    io_cap = _INF if io_rate is None else parse_rate(io_rate, field="io_rate")
    if not io_cap > 0:
        raise ConfigError("io_rate", io_rate, "a rate > 0, or None")
    if cpu_share is not None and (
        isinstance(cpu_share, bool)
        or not isinstance(cpu_share, (int, float))
        or not 0 < cpu_share <= 1
    ):
        raise ConfigError("cpu_share", cpu_share, "a share of the machine in (0, 1], or None")
    pause = check_seconds("max_pause", max_pause)
    if on_max_pause not in ("alert", "abort"):
        raise ConfigError("on_max_pause", on_max_pause, "'alert' or 'abort'")
    if freeze not in ("auto", "cgroup", "signal"):
        raise ConfigError("freeze", freeze, "'auto', 'cgroup' or 'signal'")
    if isinstance(interval, bool) or not isinstance(interval, (int, float)):
        raise ConfigError("interval", interval, "seconds in [0.01, 5]")
    if not 0.01 <= interval <= 5:
        raise ConfigError("interval", interval, "seconds in [0.01, 5]")
    grace = check_seconds("kill_grace", kill_grace)
    death = _check_on_guard_death(on_guard_death, watchdog)
    for key in ("start_new_session", "preexec_fn", "process_group", "args"):
        if key in popen:
            raise ConfigError(key, popen[key], "not set: wedguard starts the child itself")
    assert pause is not None
    assert grace is not None
    return _Options(
        name=name or (os.path.basename(items[0]) or items[0]),
        argv=items,
        nice=niceness,
        ionice=bool(ionice),
        cpus=cores,
        io_cap=io_cap,
        cpu_share=None if cpu_share is None else float(cpu_share),
        max_pause=pause,
        on_max_pause=on_max_pause,
        freeze=freeze,
        interval=float(interval),
        kill_grace=grace,
        forward_signals=bool(forward_signals),
        on_guard_death=death,
    )


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
        cpus: the cores the child and what it starts are confined to, from its first
            instruction: ``"guard"`` (the default: the guard's
            :attr:`~wedguard.Guard.child_cpus`, by default every core but the
            first), a count (``1``: the last core this process may use), CPU numbers,
            ``"all-but-one"``, or None (or ``"all"``: not confined). See
            :func:`wedguard.io.priority.check_cpus`.
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
        cpus: int | Iterable[int] | str | None = "guard",
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
        opts = _options(
            guard,
            argv,
            popen,
            name=name,
            nice=nice,
            ionice=ionice,
            cpus=cpus,
            io_rate=io_rate,
            cpu_share=cpu_share,
            max_pause=max_pause,
            on_max_pause=on_max_pause,
            freeze=freeze,
            interval=interval,
            kill_grace=kill_grace,
            forward_signals=forward_signals,
            on_guard_death=on_guard_death,
            watchdog=watchdog,
        )
        self.guard = guard
        self.name = opts.name
        self._argv = opts.argv
        self._opts = opts
        self._init_state()
        death = opts.on_guard_death
        if death == "auto":
            # a slot shared by many hosts lapses with the guard: the child must not outlive it
            shared = session and guard.coordinator is not None and guard.max_concurrent is not None
            death = "terminate" if shared else "resume"
        self.on_guard_death: str = death
        self._session: GuardSession | None = None
        if session:
            # the child is lowered, not the thread that starts it
            self._session = guard.session(self.name, lower_thread=False)
            self._session.__enter__()
        self._start(popen)

    def _init_state(self) -> None:
        opts = self._opts
        self._forward = opts.forward_signals  # read by the registry of live children
        self._notes: list[str] = []
        self._lock = threading.RLock()
        self._paused = PauseLog(_CAUSE_ORDER)
        self._terminating = False
        self._aborted = ""
        self._signals: list[str] = []
        self._alerted = False
        self._meter = TreeMeter()
        self._credited = 0.0  # of the meter's io_used, counted in the session's bytes so far
        self._pacer = ChildPacer(opts.io_cap, opts.cpu_share, os.cpu_count() or 1, opts.interval)
        self._done = threading.Event()
        self._closed = threading.Event()
        self._priority = ChildPriority()
        self._watchdog: _Watchdog | None = None
        self._watchdog_started = False

    def _start(self, popen: dict[str, Any]) -> None:
        """Start the watchdog, then the child, then its monitor."""
        # the watchdog starts first, so that it covers the child from its first instant
        if self.on_guard_death != "off":
            try:
                with starting_on(None):  # not on the session's cores: it outlives them
                    self._watchdog = _Watchdog(self.on_guard_death, self._opts.kill_grace)
                self._watchdog_started = True
            except OSError as exc:
                self._note(f"no watchdog ({exc}): a SIGKILL of the guard would not be covered")
        try:
            self._started_at = datetime.now(timezone.utc)
            self._t0 = time.monotonic()
            with starting_on(self._opts.cpus):  # the child inherits the cores at fork
                self.popen: subprocess.Popen[Any] = _Child(
                    self._argv, start_new_session=True, **popen
                )
        except BaseException as exc:
            self._stop_watchdog()
            self._end_session(exc)
            raise
        self.pid = self.popen.pid
        self.popen.before_reap = self._last_reading
        if self._watchdog is not None:
            self._watchdog.tell(f"pid {self.pid}")
        self._freezer: _SignalFreezer | _CgroupFreezer = self._make_freezer(self._opts.freeze)
        if self._watchdog is not None and isinstance(self._freezer, _CgroupFreezer):
            self._watchdog.tell(f"cgroup {os.fspath(self._freezer.path)}")
        self._priority = lower_process(
            self.pid, self._opts.nice, self._opts.ionice, self._opts.cpus
        )
        for note in self._priority.notes:
            self._note(note)
        children.register(self)
        self._step()  # a paused guard stops the child before it gets going
        self._monitor = threading.Thread(
            target=self._loop, name=f"wedguard-child-{self.pid}", daemon=True
        )
        with starting_on(None):  # the monitor pauses the child: not behind it on its core
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

    # -- measuring ------------------------------------------------------------------------

    def _last_reading(self) -> None:
        """The child has exited and is not reaped yet: read its final counters."""
        with self._lock:
            self._meter.forget_tree()  # the tree as it is now
            self._measure(time.monotonic() + 1.0)

    def _measure(self, now: float) -> None:
        # CPU times every tick only while a CPU cap applies; else twice a second
        self._meter.measure(self.pid, now, cpu_capped=self._pacer.cpu.rate < _INF)

    # -- the monitor --------------------------------------------------------------------

    def _step(self) -> float:
        """One reading and decision; returns how long to wait before the next."""
        now = time.monotonic()
        d = self.guard.decision()
        with self._lock:
            if self._done.is_set():
                return _INF
            meter = self._meter
            before = meter.io_used
            self._measure(now)
            self._credit_session()
            cause, tick = self._pacer.step(
                d,
                now,
                meter.io_used,
                meter.cpu_used,
                grown=meter.io_used - before,
                stopped=self._paused.cause,
                released=self._terminating,
            )
            self._set_stopped(cause, now)
            return tick

    def _set_stopped(self, cause: str | None, now: float) -> None:
        """Stop or resume the child (lock held) and keep the pause books."""
        was = self._paused.cause
        if cause is not None and was is None:
            self._freezer.freeze()
        elif cause is None and was is not None:
            self._freezer.thaw()
        self._paused.change(cause, now)
        if was is not None and cause is None:
            if self._alerted:
                self._alerted = False
                alert = _max_pause_alert(self.name, self.pid, now - self._paused.began, self._opts)
                self._emit(alert.resolved(datetime.now(timezone.utc)))
        elif cause is not None:
            self._check_max_pause(now)

    def _check_max_pause(self, now: float) -> None:
        began = self._paused.began
        if now - began < self._opts.max_pause or self._alerted or self._terminating:
            return
        self._alerted = True
        self._emit(_max_pause_alert(self.name, self.pid, now - began, self._opts))
        if self._opts.on_max_pause == "abort":
            self._abort(f"paused longer than max_pause {format_duration(self._opts.max_pause)}")

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
                tick = self._opts.interval * 5
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
                self.popen.wait(self._opts.kill_grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)

        threading.Thread(target=reap, name=f"wedguard-reap-{self.pid}", daemon=True).start()

    def abort(self, reason: str = "aborted") -> None:
        """End the child (SIGTERM, then SIGKILL after ``kill_grace``); it is not waited for."""
        self._abort(reason)

    def kill(self, reason: str = "") -> None:
        """Resume the child and SIGKILL its process group at once; wait for it.
        ``reason``, when given, is reported as why the guard ended it (``aborted``)."""
        self._release_hold()
        if reason:
            self._aborted = reason
        self._kill_now()

    def _credit_session(self) -> None:
        """Count the child's I/O in its session as it goes: the guard's controller
        reads the sessions' bytes to know the rate the backup achieves (with no
        byte budget, a THROTTLE cuts from that rate)."""
        s = self._session
        used = self._meter.io_used
        grown = used - self._credited
        if s is not None and grown > 0:
            with contextlib.suppress(Exception):
                s.count(grown)
                self._credited = used

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
            children.unregister(self)  # from the main thread this restores the signal handlers
            return
        try:
            self._freezer.close()
            self._stop_watchdog()
            children.unregister(self)
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
        return self._paused.cause is not None

    @property
    def paused_cause(self) -> str | None:
        """Why the child is stopped now (``"stop"``, ``"calendar"``, ``"impact"``,
        ``"rate"``, ``"cpu"``), or None while it runs."""
        return self._paused.cause

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout)

    def communicate(self, input: Any = None, timeout: float | None = None) -> tuple[Any, Any]:
        return self.popen.communicate(input, timeout)

    def report(self) -> ProcessReport:
        """What has happened to the child so far."""
        with self._lock:
            now = time.monotonic()
            paused = self._paused.paused(now)
            return ProcessReport(
                name=self.name,
                pid=self.pid,
                argv=redact_argv(self._argv),
                returncode=self.popen.poll(),
                started_at=self._started_at,
                duration=now - self._t0,
                io_bytes=self._meter.io_used,
                io_counter=self._meter.counter,
                cpu_seconds=self._meter.cpu_used,
                paused={k: v for k, v in paused.items() if v > 0},
                pauses=self._paused.count,
                longest_pause=self._paused.longest(now),
                freeze=self._freezer.kind,
                nice=self._priority.nice,
                ionice=self._priority.ionice,
                cpus=self._priority.cpus,
                notes=tuple(self._notes),
                signals=tuple(self._signals),
                aborted=self._aborted,
                on_guard_death=self.on_guard_death if self._watchdog_started else "off",
            )

    def reasons(self) -> tuple[str, ...]:
        """One line per thing the guard does to this child now, and what it could not do."""
        cause = self._paused.cause
        head = f"child {self.name} (pid {self.pid}): "
        out = [head + ("running" if cause is None else f"paused ({cause})")]
        io, cpu = self._pacer.io, self._pacer.cpu
        if io.rate < _INF:
            out.append(head + f"I/O duty-cycled to {format_rate(io.rate)}")
        if cpu.rate < _INF:
            out.append(head + f"CPU capped at {cpu.rate / self._pacer.ncpu:.0%} of the machine")
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
            "state": "running" if self._paused.cause is None else f"paused ({self._paused.cause})",
            "io_rate": "inf" if self._pacer.io.rate == _INF else self._pacer.io.rate,
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
                    self.popen.wait(self._opts.kill_grace + 1.0)
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
        state = "running" if self._paused.cause is None else f"paused ({self._paused.cause})"
        return f"GuardedProcess(name={self.name!r}, pid={self.pid}, {state})"
