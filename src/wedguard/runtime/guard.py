"""The guard: where the policies meet the host's copy loops.

:class:`Guard` is wiring: it checks its arguments (:mod:`wedguard.runtime.settings`)
and builds its :class:`~wedguard.runtime.core.GuardCore`, which drives the pure
decision engine (:mod:`wedguard.policy.decision`) and owns the slots, the sampler, the
event queue, the stops and the fleet. The hot path (``s.throttle(n)``) only reads the
decision in force and asks the token bucket; it never samples and never does I/O.

On a clock other than :class:`~wedguard.SystemClock` (such as
:class:`wedguard.testing.FakeClock`) there is no thread: the guard samples inline, at
most once per ``sample_interval`` of that clock's time, and delivers events to sinks
synchronously (``background=True`` or ``False`` chooses).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Final, Literal, ParamSpec, TypeVar, cast, overload

from wedguard.clock import Clock
from wedguard.decision import Decision
from wedguard.errors import ConfigError
from wedguard.interfaces import (
    Analyzer,
    Breaker,
    Calendar,
    Controller,
    Event,
    SessionHost,
    Sink,
    Source,
)
from wedguard.policy.shaping import ChunkPolicy
from wedguard.runtime import at_exit as _atexit
from wedguard.runtime import protect as _protect
from wedguard.runtime.aliases import GuardAliases, bind
from wedguard.runtime.core import GuardCore
from wedguard.runtime.defaults import (
    CPUS,
    IONICE,
    MAX_CONCURRENT,
    NICE,
    RATE,
    SAMPLE_INTERVAL,
    STOP_CHECK_INTERVAL,
)
from wedguard.runtime.prepaid import current as current_prepaid
from wedguard.runtime.session import Cutoff, DeadlineSpec, Session
from wedguard.runtime.settings import (
    DEFAULT,
    MAX_INTERVAL,
    MAX_SLOT_TIMEOUT,
    MIN_INTERVAL,
    MIN_RATE,
    _Default,
    guard_settings,
)
from wedguard.runtime.signals import SignalSwitch
from wedguard.units import parse_rate

__all__ = ["DEFAULT", "MAX_INTERVAL", "MAX_SLOT_TIMEOUT", "MIN_INTERVAL", "MIN_RATE", "Guard"]

_CHUNKS: Final = ChunkPolicy()

_INF: Final = float("inf")
P = ParamSpec("P")
R = TypeVar("R")


# Past ~500 lines by its documentation: of ~730 lines ~260 are docstrings (the arguments'
# reference) and ~210 protect() with its helpers; the rest delegates to the core.
class Guard(GuardAliases):
    """Lets backup code run beside production: sessions, budgets, windows, stop.

    Args:
        rate: the global byte budget (``"50MB/s"``, a number of bytes/s, or
            ``"off"``): the most the backup may ever use; at least 0.001 per second.
        calendar: a :class:`~wedguard.PeakHourCalendar` (or anything with
            ``at(when) -> Window``). Default: ``PeakHourCalendar.default(tz="UTC")``
            (06:00–22:00 PEAK with a 10 Mbit/s cap); ``None``: no calendar.
        breaker: the circuit breaker :meth:`protect` runs calls under. Default: a
            ``CircuitBreaker("guard")`` (3 failures, 5 minutes); ``None``: none.
        analyzer: the impact analyser. Default: ``ImpactAnalyzer(Thresholds())`` when
            there are sources; ``None``: throttle by rate and calendar alone.
        sources: what the sampler reads. Default: ``[SystemSource()]``.
        sinks: who hears about decisions, sessions and alerts. Default: a logging sink.
        max_concurrent: sessions that may run at once (others wait, FIFO); ``None``
            for no limit.
        stop_file: a path whose existence stops every session (checked at most every
            ``stop_check_interval``, 100 ms by default, one ``lstat`` each time). Its
            directory, and each one above, must be owned by you or root and not
            writable by others unless sticky (sshd's StrictModes), else
            ``ConfigError``; a stop file owned by someone else is ignored, logged and
            alerted (``wedguard/stop-file``). Not empty, no NUL character.
        clock: where time comes from (default: the system clock).
        controller: turns the analyser's verdicts into an allowed rate. Default:
            ``AIMDController()``.
        ops_rate: the operations budget (files, requests per second, at least 0.001);
            default none.
        sample_interval: seconds between samples (default 1 s; 1 ms to 1 day).
        stop_check_interval: seconds between looks at the stop file (default 0.1 s;
            1 ms to 1 day).
        slot_timeout: default seconds a session waits for a slot (None: forever; at
            most 30 days).
        background: run the sampler and event delivery on threads (default: only on
            the system clock).
        signals: install SIGUSR1 (stop) and SIGUSR2 (resume) handlers; see
            :meth:`install_signal_handlers`.
        control_socket: serve the live control plane on this Unix socket path (mode
            0600; at most 107 bytes, what ``bind()`` takes); see
            :class:`wedguard.runtime.control_socket.ControlServer`.
        coordinator: a :class:`wedguard.distributed.RedisCoordinator`: many hosts, one
            budget. The byte (and operations) budget becomes a shared Redis bucket at
            ``rate`` (or the calendar's cap, when lower) for every guard on the same
            prefix, ``max_concurrent`` counts sessions on all of them, the breaker
            (by default) keeps one state for all, and the fleet's stop flag stops this
            guard within a second. This host's own limits (calendar, impact
            controller, session caps) still apply on top. See "Many hosts on Redis".
        name: names this guard's shared objects in the coordinator (guards that
            share a budget share a name): ``<prefix>:bucket:<name>``,
            ``<prefix>:slots:<name>``, ``<prefix>:breaker:<name>``.
        nice: niceness (0..19) added to a thread while it runs a session (``with``
            blocks, ``copyfileobj``, ``protect``; not ``async with``, whose thread is
            the event loop's); 0, the default, leaves threads alone. See
            :mod:`wedguard.runtime.priority`.
        ionice: put a thread running a session in the idle I/O class.
        log_events: keep the logging sink (the ``wedguard.events`` logger) beside the
            ``sinks`` given (default True): ``sinks=[...]`` adds to it, so alerts reach
            the console whatever else hears them. ``False`` removes it.
        max_hold: the longest the guard holds a session back for production's sake
            (an impact HALT, a probe that never answers, the baseline warm-up) before
            ``throttle()`` gives up with :class:`~wedguard.HoldTimeout` (default 30
            minutes; ``None``: wait forever). Stops, holds and BLACKOUT windows are
            not counted: they end by themselves or by an operator.
        baseline_warmup: a latency limit ("+5 % over the baseline") can only be
            judged against a baseline. When the analyser has none for a latency a
            source reports, the first session waits this long (at least 3 samples)
            before its first byte while the guard learns one from production at
            rest. Default: ``"5s"`` when the guard builds its own analyser; none
            for an analyser you pass (give it a baseline, or pass this). ``None``:
            never. A latency left without a baseline is named in the decision's
            reasons ("api.latency_s: no baseline yet, not judged") and logged.
            Samples taken with :meth:`tick` while no session runs add to the
            baseline too.
        cpus: confine the backup to some cores: a thread running a session while it
            runs it, and a ``guard.run``/``guard.popen``/``guard.stream`` command (and
            what it starts) for its life. The default, ``"auto"``, confines each
            command to every core this process may use but the first (where it may
            use two or more; on one core, or off Linux, nothing) and leaves a
            session's thread where it is (one thread cannot keep two cores busy). A
            count (``1``: the last core), CPU numbers or ``"all-but-one"`` confine
            both to those; None (or ``"all"``) confines nothing. On a machine with
            few cores this protects production's tail best: a backup that keeps
            every core busy at once delays production's wake-ups, whatever its
            niceness; one that leaves a core free does not. See
            :func:`wedguard.io.priority.check_cpus` and the PostgreSQL how-to.

    .. versionchanged:: 0.3.0 ``cpus``; by default ``"auto"``.

    Use the guard as a context manager (or call :meth:`close`): events still queued
    reach the sinks before it ends. A guard that was never closed is closed at
    interpreter exit.

    Example::

        >>> import wedguard as wg
        >>> from wedguard.testing import FakeClock
        >>> guard = wg.Guard(rate="10MB/s", calendar=None, sources=[], sinks=[],
        ...                  clock=FakeClock())
        >>> with guard.session("photos") as s:
        ...     waited = [s.throttle(1_000_000) for _ in range(4)]
        >>> waited
        [0.0, 0.0, 0.1, 0.1]
        >>> guard.decision().rate
        10000000.0

    Many hosts, one budget (extra ``redis``)::

        from wedguard.distributed import RedisCoordinator

        coord = RedisCoordinator("redis://backup-redis:6379/0", prefix="wedsync")
        guard = wg.Guard(rate="40MB/s", max_concurrent=2, coordinator=coord)
        # every host: 40 MB/s and 2 sessions for all of them together
        # any host:   coord.stop("failover") stops every guard within a second

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        rate: float | str = RATE,
        calendar: Calendar | _Default | None = DEFAULT,
        breaker: Breaker | _Default | None = DEFAULT,
        analyzer: Analyzer | _Default | None = DEFAULT,
        sources: Iterable[Source] | None = None,
        sinks: Iterable[Sink] | None = None,
        max_concurrent: int | None = MAX_CONCURRENT,
        stop_file: str | os.PathLike[str] | None = None,
        clock: Clock | None = None,
        *,
        controller: Controller | _Default | None = DEFAULT,
        ops_rate: float | str | None = None,
        sample_interval: float | str = SAMPLE_INTERVAL,
        stop_check_interval: float | str = STOP_CHECK_INTERVAL,
        slot_timeout: float | str | None = None,
        background: bool | None = None,
        signals: bool = False,
        control_socket: str | os.PathLike[str] | None = None,
        coordinator: Any = None,
        name: str = "guard",
        nice: int = NICE,
        ionice: bool = IONICE,
        log_events: bool = True,
        max_hold: float | str | None = "30m",
        baseline_warmup: float | str | _Default | None = DEFAULT,
        sched_idle: bool = False,
        shaping: Any = None,
        cpus: int | Iterable[int] | str | None = CPUS,
    ) -> None:
        self._host = GuardCore(
            guard_settings(
                rate=rate, calendar=calendar, breaker=breaker, analyzer=analyzer,
                sources=sources, sinks=sinks, max_concurrent=max_concurrent,
                stop_file=stop_file, clock=clock, controller=controller, ops_rate=ops_rate,
                sample_interval=sample_interval, stop_check_interval=stop_check_interval,
                slot_timeout=slot_timeout, background=background,
                control_socket=control_socket, coordinator=coordinator, name=name,
                nice=nice, ionice=ionice, log_events=log_events, max_hold=max_hold,
                baseline_warmup=baseline_warmup, sched_idle=sched_idle, shaping=shaping,
                cpus=cpus,
            )
        )  # fmt: skip
        self._host.reopen = self._reopen
        bind(self, self._host)
        self._host.sampler.thread_name = f"wedguard-sampler-{id(self):x}"
        self._signals = SignalSwitch(self.stop, self.resume)
        if signals:
            self.install_signal_handlers()
        self._control: ControlServer | None = None
        if control_socket is not None:
            self.serve_control(control_socket)
        _atexit.remember(self)

    # -- public properties ----------------------------------------------------------------

    @property
    def host(self) -> SessionHost:
        """Internal: the guard's core as its sessions see it
        (:class:`~wedguard.interfaces.SessionHost`); host code uses the guard's methods."""
        return self._host

    @property
    def sched_idle(self) -> bool:
        """Whether a thread running a session is put in the ``SCHED_IDLE`` CPU policy."""
        return self._host.settings.sched_idle

    @property
    def cpus(self) -> frozenset[int] | None:
        """The cores a session's thread is confined to (None: not confined)."""
        return self._host.settings.cpus

    @property
    def child_cpus(self) -> frozenset[int] | None:
        """The cores a ``guard.run``/``guard.popen``/``guard.stream`` command, and what
        it starts, is confined to (None: not confined). With the default
        ``cpus="auto"``: every core this process may use but the first.

        .. versionadded:: 0.3.0
        """
        return self._host.settings.child_cpus

    @property
    def shaper(self) -> Any:
        """The :class:`~wedguard.policy.probing.Shaper` (None without ``shaping``)."""
        return self._host.settings.shaper

    @property
    def chunk_size(self) -> int:
        """The chunk size (bytes) the backup should use now: smaller while production
        is near its limits, and at most 0.2 s of the allowed rate. The copy loop
        follows it when the guard shapes (``shaping=``)."""
        d = self.decision()
        shaper = self._host.settings.shaper
        if shaper is not None:
            return int(shaper.chunk_size(d.rate))
        load = float(getattr(self._host.judge.assessment, "load", 0.0) or 0.0)
        return _CHUNKS.size(load=load, rate=d.rate)

    @property
    def clock(self) -> Clock:
        return self._host.clock

    @property
    def calendar(self) -> Calendar | None:
        return self._host.calendar

    @property
    def breaker(self) -> Breaker | None:
        return self._host.breaker

    @property
    def rate(self) -> float:
        """The configured byte budget (bytes/s)."""
        return self._host.rate

    @property
    def max_concurrent(self) -> int | None:
        return self._host.settings.max_concurrent

    @property
    def nice(self) -> int:
        """Niceness added to a thread while it runs a session (0: none)."""
        return self._host.nice

    @property
    def ionice(self) -> bool:
        """Whether a thread running a session is put in the idle I/O class."""
        return self._host.ionice

    @property
    def name(self) -> str:
        """Names this guard's shared objects in its coordinator."""
        return self._host.settings.name

    @property
    def coordinator(self) -> Any:
        """The :class:`~wedguard.distributed.RedisCoordinator` given, or None."""
        return self._host.fleet

    @property
    def stopped(self) -> bool:
        """True while stopped (``stop()``, the stop file, SIGUSR1 or the fleet's stop)."""
        self._host.idle_fleet_check()
        return self._host.stopped

    @property
    def active_sessions(self) -> int:
        """How many sessions hold a slot now."""
        with self._host.lock:
            return len(self._host.slots.active)

    @property
    def waiting_sessions(self) -> int:
        """How many sessions wait for a slot now."""
        with self._host.lock:
            return len(self._host.slots.queue)

    # -- sessions ---------------------------------------------------------------------------

    def session(
        self,
        name: str = "backup",
        deadline: DeadlineSpec = None,
        *,
        expected_bytes: float | str | None = None,
        rate: float | str | None = None,
        ops_rate: float | str | None = None,
        max_duration: float | str | None = None,
        max_bytes: float | str | None = None,
        stop_at: datetime | None = None,
        cutoff: Cutoff | str = Cutoff.HARD,
        on_deadline: Literal["raise", "wait"] = "raise",
        slot_timeout: float | str | _Default | None = DEFAULT,
        cutoff_mode: Cutoff | str | None = None,
        lower_thread: bool = True,
    ) -> Session:
        """A new session; use it with ``with`` or ``async with``.

        Args:
            name: names the session in reports, events and alerts.
            deadline: when the session must be done: an aware datetime, a duration
                (seconds or ``"2h"``) from its start, or ``"window"`` (before the
                calendar next becomes more restrictive).
            expected_bytes: how much the session will move (for deadline pacing).
            rate: a cap for this session under the guard's budget.
            ops_rate: an operations cap for this session.
            max_duration: a cutoff: the longest the session may run (see :class:`Cutoff`).
            max_bytes: a cutoff: the most bytes the session may move.
            stop_at: a cutoff: an aware datetime after which the session ends.
            cutoff: how a cutoff ends the session: HARD, SOFT or CAUTIOUS
                (``cutoff_mode`` is accepted too, as rclone calls it).
            on_deadline: when a BLACKOUT covers the deadline: ``"raise"``
                :class:`DeadlineError` or ``"wait"`` through it.
            slot_timeout: seconds to wait for a concurrency slot (default: the
                guard's ``slot_timeout``); :class:`SlotTimeout` after that.
            lower_thread: give the thread that enters the session the guard's
                ``nice``, ``ionice``, ``sched_idle`` and ``cpus`` while it runs it
                (default True). False for a session held for a child process, whose
                thread only starts and watches it (``guard.run`` does so).

        .. versionchanged:: 0.3.0 ``lower_thread``.
        """
        return Session(
            self,
            name,
            deadline=deadline,
            expected_bytes=expected_bytes,
            rate=rate,
            ops_rate=ops_rate,
            max_duration=max_duration,
            max_bytes=max_bytes,
            stop_at=stop_at,
            cutoff=cutoff,
            on_deadline=on_deadline,
            slot_timeout=self._slot_timeout if slot_timeout is DEFAULT else slot_timeout,
            cutoff_mode=cutoff_mode,
            lower_thread=lower_thread,
        )

    # -- the decision ---------------------------------------------------------------------

    def decision(self) -> Decision:
        """The decision in force now: level, rate, verdict, reasons, stop.

        >>> from wedguard.testing import FakeClock
        >>> g = Guard(rate="5MB/s", calendar=None, sources=[], sinks=[], clock=FakeClock())
        >>> d = g.decision()
        >>> d.rate, d.reasons
        (5000000.0, ('rate limit 5 MB/s',))
        """
        return self._host.current()

    def observe_baseline(self, sample: Mapping[str, float] | None = None) -> None:
        """Teach the analyser what production looks like without a backup.

        Call it while no backup runs (at start-up, or from a scheduler between runs);
        without ``sample`` the guard reads its sources once. Does nothing without an
        analyser that learns a baseline. (The guard also learns one by itself: see
        ``baseline_warmup``.)
        """
        observe = getattr(self._host.settings.analyzer, "observe_baseline", None)
        if observe is None:
            return
        observe(self._host.judge.collect() if sample is None else sample)

    def tick(self) -> Decision:
        """Sample the sources now and recompute the decision (what the sampler does)."""
        return self._host.tick()

    # -- stop, hold, resume, rate -----------------------------------------------------------

    def stop(self, reason: str = "stopped") -> None:
        """Stop every session: ``throttle()`` raises :class:`~wedguard.EmergencyStop`
        (at once, also in waiting sessions) until :meth:`resume`."""
        self._host.set_stop(stop=str(reason) or "stopped")

    def hold(self, reason: str = "on hold") -> None:
        """Pause every session without failing it: ``throttle()`` waits (cause
        ``"stop"``) until :meth:`resume`."""
        self._host.set_stop(held=str(reason) or "on hold")

    def resume(self) -> None:
        """Lift :meth:`stop` and :meth:`hold`. (A stop file still present stops again.)"""
        self._host.set_stop(stop="", held="")

    def release_hold(self) -> None:
        """Lift :meth:`hold` only (a :meth:`stop` stays in force)."""
        self._host.set_stop(held="")

    # what io asks of a guard (wedguard.interfaces.GuardLike) beyond the above
    def current_session(self) -> Session | None:
        """The active session of this guard that the caller is inside, if any."""
        return self._joinable()

    def publish(self, event: Event) -> None:
        """Hand ``event`` to the guard's sinks, as the guard's own events go."""
        self._emit(event)

    def wait_for_change(self, timeout: float) -> None:
        """Wait until the decision may have changed (a new decision, a stop, a resume)
        or ``timeout`` seconds (real time) have passed."""
        with self._cond:
            self._cond.wait(timeout)

    def set_rate(self, rate: float | str) -> None:
        """Change the configured byte budget live (``"off"`` for unlimited).

        The new rate holds at once, also as the rate the impact controller works
        from (it had slowed down or was climbing back: it now starts from the new
        rate, or the calendar's cap when lower, and cuts from there if production
        suffers). A HALT still pauses. ``wedguard throttle RATE`` and the control
        socket's ``rate=`` call this.
        """
        value = parse_rate(rate, field="rate")
        if not value > 0:
            raise ConfigError("rate", rate, "a rate > 0 ('off' for unlimited)")
        self._host.set_rate(value)

    def install_signal_handlers(self) -> None:
        """Opt in: SIGUSR1 stops the guard, SIGUSR2 resumes it (main thread only).

        The handlers hand the work to a short-lived thread, so a signal arriving while
        the main thread holds the guard's lock cannot deadlock. The previous handlers
        are restored by :meth:`uninstall_signal_handlers`.
        """
        self._signals.install()

    def uninstall_signal_handlers(self) -> None:
        """Restore the handlers that were there before :meth:`install_signal_handlers`."""
        self._signals.uninstall()

    # -- events and closing -------------------------------------------------------------------

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Wait (real time) until every queued event reached the sinks; False on timeout.

        Events left with no delivery thread to take them (one could not be started as
        the interpreter shuts down) are delivered by the caller. The protected calls
        made outside a session so far are reported first (one report per function).
        """
        self._host.settle_calls()
        return self._host.events.flush(timeout)

    def close(self, timeout: float | None = 5.0) -> bool:
        """Stop the background threads, restore signal handlers, and deliver what is
        queued: the guard's events reach the sinks, and each sink with a ``flush``
        method is flushed, within ``timeout`` seconds in all (real time; ``None``:
        no limit). Returns False when something was still undelivered then. The
        sources that hold something open are closed (``close()``: a
        :class:`~wedguard.sources.PostgresSource`'s connection).

        Called by ``with Guard(...) as guard:`` on leaving, and at interpreter exit
        for a guard still open. Sessions end first; the guard may be used again.

        .. versionchanged:: 0.2.0 sinks are flushed; sources closed; the bounded wait;
           the result.
        """
        self._host.stop_sampler()
        self._close_control()
        with contextlib.suppress(ValueError):  # not the main thread: nothing installed
            self.uninstall_signal_handlers()
        # closed before the calls are settled: a protected call ending from now on
        # reports itself (none falls between the settle and the flag)
        self._host.closed = True
        done = self._host.shutdown(timeout)
        _atexit.forget(self)
        return done

    @property
    def _closed(self) -> bool:
        """Closed, and not used again since (the core keeps the flag)."""
        return self._host.closed

    def _reopen(self) -> None:
        """Used again after close(): closed again at exit (the core's lock held)."""
        if self._host.closed:
            self._host.closed = False
            _atexit.remember(self)

    def _close_at_exit(self) -> None:
        """Interpreter exit: deliver what is queued, within 5 s."""
        self.close(timeout=5.0)

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Guard({self._host.describe()})"

    # -- decorator and file objects ---------------------------------------------------------

    @overload
    def protect(self, fn: Callable[P, R], /) -> Callable[P, R]: ...

    @overload
    def protect(
        self,
        fn: None = None,
        /,
        *,
        cost: Callable[..., float] | float | None = None,
        ops: int = 1,
        name: str | None = None,
        wait_on_open: bool = False,
        breaker: Breaker | _Default | None = DEFAULT,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    def protect(
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        cost: Callable[..., float] | float | None = None,
        ops: int = 1,
        name: str | None = None,
        wait_on_open: bool = False,
        breaker: Breaker | _Default | None = DEFAULT,
    ) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate an upload function (sync or async) to run under the guard.

        Each call runs as a session named after the function (taking a concurrency
        slot) or, when called inside an active session of this guard, as part of that
        session (no second slot). It takes ``cost(*args, **kwargs)`` bytes and ``ops``
        operations from the budgets, then calls the function under the circuit
        breaker.

        What ``cost`` paces: the *start* of calls, not the bytes on the wire. A call
        waits until the budget has room for its cost and then runs at whatever speed
        the function sends; over many calls the byte rate holds, but one large call
        goes at line speed (and the next waits for it). To pace the wire, hand the
        function a file object wrapped with :meth:`wrap` (or boto3's
        ``Callback=`` a session's ``throttle``) and leave ``cost`` out: the wrapped
        I/O is then charged as it goes, to the call's session. With both, the wrapped
        I/O spends the cost first and is not charged twice.

        A breaker that is open raises :class:`~wedguard.CircuitOpenError` with the
        breaker's reason (``exc.reason``); while it is open :meth:`decision` says so
        in its reasons.

        Args:
            cost: bytes the call moves: a function of the call's arguments or a number.
            ops: operations the call counts (default 1).
            name: the session name (default: the function's qualified name).
            wait_on_open: when the breaker is open, wait ``retry_after`` (through the
                clock; a stop still interrupts) instead of raising
                :class:`~wedguard.CircuitOpenError`.
            breaker: the breaker (default: the guard's; ``None``: none).

        Example::

            @guard.protect(cost=lambda path: os.path.getsize(path))
            def upload(path: str) -> None: ...

            @guard.protect(cost=lambda key, data: len(data), wait_on_open=True)
            async def put(key: str, data: bytes) -> None: ...
        """
        b = self._breaker if breaker is DEFAULT else breaker
        return _protect.protect(
            self, fn, cost=cost, ops=ops, name=name, wait_on_open=wait_on_open, breaker=b
        )

    def _joinable(self) -> Session | None:
        """The active session of this guard the caller is inside, if any."""
        return _protect.joinable(self)

    def wrap(self, fileobj: Any, *, session: Session | None = None, name: str | None = None) -> Any:
        """A file object whose ``read``/``readinto``/``write`` are throttled.

        Works wherever a file object does: ``shutil.copyfileobj``, ``tarfile``,
        ``hashlib`` loops, boto3's ``upload_fileobj``. Everything else (``seek``,
        ``tell``, ``name``...) is passed through. Without ``session`` the wrapper joins
        the session the caller is inside, or runs its own (opened on first I/O, ended
        by ``close()`` or ``with``).

        Inside a call protected with ``@guard.protect(cost=...)`` (a wrapper made
        there, or one handed to the call as an argument) the I/O first spends the
        call's cost, which was paid before the call: the same bytes are never
        charged twice, and only I/O beyond the cost is throttled again.
        """
        from wedguard.io.fileobj import GuardedFile

        if session is None:
            session = self._joinable()
            prepaid = current_prepaid()
            if session is not None and prepaid is not None and prepaid.session is session:
                session = cast("Session", prepaid)  # inside a protected call: paid for
        return GuardedFile(self, fileobj, session=session, name=name)

    def copyfileobj(
        self,
        src: Any,
        dst: Any,
        length: int = 1 << 20,
        *,
        session: Session | None = None,
        name: str = "copy",
    ) -> int:
        """Copy ``src`` to ``dst`` like :func:`shutil.copyfileobj`, throttled.

        Returns the bytes written. Joins the session the caller is inside (no second
        slot), else runs a session named ``name``. Each chunk is throttled before it
        is written and then written in full (again after a short write); a
        destination is never handed a buffer that changes after ``write()`` returned;
        an :class:`~wedguard.EmergencyStop` leaves ``dst`` holding whole chunks only,
        exactly what the session reports. See :func:`wedguard.io.copy.copy_stream`.
        """
        from wedguard.io.copy import check_chunk_size, check_ends, copy_stream

        check_chunk_size(length, "length")  # before a slot is taken
        check_ends(src, dst)
        if session is None:
            session = self._joinable()
        if session is not None:
            return copy_stream(session, src, dst, length)
        with self.session(name) as s:
            return copy_stream(s, src, dst, length)

    # -- child processes, pipes and the control socket (wedguard.io.process, .control) ------

    def run(self, argv: Any, **kwargs: Any) -> GuardedCompletedProcess:
        """Run a command under the guard, as :func:`subprocess.run`; see
        :func:`wedguard.io.process.run_guarded` (returns a ``CompletedProcess`` with a
        ``report``)."""
        from wedguard.io.process import run_guarded

        return run_guarded(self, argv, **kwargs)

    def popen(self, argv: Any, **kwargs: Any) -> GuardedProcess:
        """Start a command under the guard without waiting:
        :class:`wedguard.io.process.GuardedProcess`."""
        from wedguard.io.process import GuardedProcess

        return GuardedProcess(self, argv, **kwargs)

    def pipe(self, src: Any, dst: Any, **kwargs: Any) -> int:
        """Copy a stream through the guard's budget, in the caller's session when it is
        inside one; see :func:`wedguard.io.process.pipe_guarded`."""
        from wedguard.io.process import pipe_guarded

        return pipe_guarded(self, src, dst, **kwargs)

    def stream(self, argv: Any, dst: Any, **kwargs: Any) -> int:
        """Run a command and stream its standard output through the guard into ``dst``
        (a path, written atomically, or a file object); see
        :func:`wedguard.io.stream.stream_command`. The safe form of a ``pg_dump`` pipe::

            guard.stream(["pg_dump", "-Fc", "app"], "/backup/app.dump")
        """
        from wedguard.io.stream import stream_command

        return stream_command(self, argv, dst, **kwargs)

    def serve_control(self, path: str | os.PathLike[str]) -> ControlServer:
        """Serve the control socket at ``path`` (mode 0600) until :meth:`close`;
        see :class:`wedguard.runtime.control_socket.ControlServer`."""
        from wedguard.runtime.control_socket import ControlServer

        self._close_control()
        self._control = ControlServer(self, path)
        return self._control

    def _close_control(self) -> None:
        server, self._control = getattr(self, "_control", None), None
        if server is not None:
            server.close()


# types of the delegating methods (run, popen, serve_control): no import at run time
import typing as _typing  # noqa: E402

if _typing.TYPE_CHECKING:
    from wedguard.io.process import GuardedCompletedProcess, GuardedProcess
    from wedguard.runtime.control_socket import ControlServer
