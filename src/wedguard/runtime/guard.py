"""The guard: where the policies meet the host's copy loops.

:class:`Guard` composes the pure policy objects (calendar, token buckets, circuit
breaker, impact analyser and rate controller) with the parts that block, sleep and
start threads: sessions, concurrency slots, the emergency stop, the background sampler
and event delivery.

The background sampler (every ``sample_interval``, 1 s by default) runs while at
least one session is active: sources → analyser → controller → a new immutable
:class:`~wedguard.Decision`. The hot path (``s.throttle(n)``) only reads the current
decision, compares the clock with the decision's expiry (the calendar window's end)
and asks the token bucket; it never samples and never does I/O.

On a clock other than :class:`~wedguard.SystemClock` (such as
:class:`wedguard.testing.FakeClock`) there is no thread: the guard samples inline, at
most once per ``sample_interval`` of that clock's time, on the slow path of
``throttle()``, and delivers events to sinks synchronously. Tests are deterministic and
an hour passes in a microsecond. Pass ``background=True`` or ``False`` to choose.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import importlib
import logging
import math
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, Final, Literal, ParamSpec, Protocol, TypeVar, cast, overload

from wedguard import _checks, _fs
from wedguard.clock import Clock, SystemClock, check_clock, clock_await, clock_wait
from wedguard.decision import Decision
from wedguard.errors import ConfigError, EmergencyStop
from wedguard.interfaces import Event, Sink, Source
from wedguard.io.priority import check_nice, check_sched_idle
from wedguard.levels import Level, Verdict
from wedguard.policy.alerting import Alert, Severity
from wedguard.policy.bucket import TokenBucketThrottler
from wedguard.policy.probing import Shaper
from wedguard.policy.shaping import ChunkPolicy, signals_used
from wedguard.runtime import at_exit as _atexit
from wedguard.runtime import protect as _protect
from wedguard.runtime.defaults import (
    IONICE,
    MAX_CONCURRENT,
    MAX_INTERVAL,
    MAX_SLOT_TIMEOUT,
    MIN_INTERVAL,
    MIN_RATE,
    NICE,
    RATE,
    SAMPLE_INTERVAL,
    STOP_CHECK_INTERVAL,
)
from wedguard.runtime.prepaid import current as current_prepaid
from wedguard.runtime.session import (
    Cutoff,
    DeadlineSpec,
    Session,
    SlotTimeout,
    _release_slot,
)
from wedguard.runtime.watch import ProbeWatch
from wedguard.units import format_rate, parse_duration, parse_rate

__all__ = ["DEFAULT", "Guard"]

log = logging.getLogger("wedguard.guard")

_INF: Final = math.inf
P = ParamSpec("P")
R = TypeVar("R")


# -- the interfaces the guard composes (satisfied by wedguard's policy objects) -------


class WindowLike(Protocol):
    @property
    def level(self) -> Level: ...
    @property
    def rate(self) -> float | None: ...
    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...
    @property
    def reason(self) -> str: ...


class CalendarLike(Protocol):
    """What the guard asks of a calendar (:class:`wedguard.PeakHourCalendar`)."""

    def at(self, when: datetime) -> Any: ...


class AssessmentLike(Protocol):
    @property
    def verdict(self) -> Verdict: ...
    @property
    def reasons(self) -> tuple[str, ...]: ...


class AnalyzerLike(Protocol):
    """What the guard asks of an impact analyser (:class:`wedguard.ImpactAnalyzer`)."""

    def assess(self, sample: Mapping[str, float], level: Level = ...) -> Any: ...


class ControllerLike(Protocol):
    """What the guard asks of a rate controller (``update`` returns the allowed rate)."""

    def update(self, assessment: Any, *, ceiling: float, now: float) -> float: ...

    def reset(self) -> None: ...


class BreakerLike(Protocol):
    """What the guard asks of a circuit breaker (:class:`wedguard.CircuitBreaker`)."""

    @property
    def name(self) -> str: ...
    @property
    def retry_after(self) -> float: ...
    def allow(self) -> bool: ...
    def record_success(self) -> None: ...
    def record_failure(self, exc: BaseException | None = None) -> None: ...


class _Default(enum.Enum):
    DEFAULT = "DEFAULT"


DEFAULT: Final = _Default.DEFAULT
"""Sentinel: "use wedguard's default" for a Guard argument (None means "none")."""


class _VerdictController:
    """A minimal controller used when wedguard's own controllers are not available:
    OK climbs back to the ceiling (x1.25 per sample), THROTTLE halves, HALT stops."""

    def __init__(self) -> None:
        self._rate = _INF

    def update(self, assessment: Any, *, ceiling: float, now: float) -> float:
        verdict = Verdict(assessment.verdict)
        if verdict is Verdict.HALT:
            return 0.0
        current = min(self._rate, ceiling)
        if verdict is Verdict.THROTTLE:
            self._rate = current / 2 if current < _INF else _INF
        else:
            self._rate = ceiling if current >= ceiling else min(ceiling, current * 1.25)
        return min(self._rate, ceiling)

    def reset(self) -> None:
        self._rate = _INF


class _LogSink:
    """Logs events when no sink is given and ``wedguard.sinks`` is not available."""

    def emit(self, event: Event) -> None:
        level = logging.WARNING if event.kind == "alert" else logging.INFO
        log.log(level, "%s: %s", event.kind, event.to_dict())


def _optional(name: str) -> Any:
    """The module ``name`` if this installation has it (policies land one by one)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _default_calendar() -> CalendarLike | None:
    module = _optional("wedguard.policy.calendar")
    if module is None:
        return None
    return cast("CalendarLike", module.PeakHourCalendar.default(tz="UTC"))


def _default_sources() -> list[Source]:
    module = _optional("wedguard.sources")
    if module is None:
        return []
    # the host's CPU and I/O pressure: fast signals readable without setup; a kernel
    # without PSI is said once and not judged
    pressure = module.PressureSource(resources=("cpu", "io"), unreadable="unavailable")
    return [cast("Source", module.SystemSource()), cast("Source", pressure)]


def _default_analyzer(clock: Clock) -> AnalyzerLike | None:
    impact = _optional("wedguard.policy.impact")
    if impact is None:
        return None
    thresholds = impact.Thresholds.with_fast_signals()
    return cast("AnalyzerLike", impact.ImpactAnalyzer(thresholds, clock=clock))


def _default_controller() -> ControllerLike:
    control = _optional("wedguard.policy.controllers")
    if control is None:
        return _VerdictController()
    return cast("ControllerLike", control.AIMDController())


def _default_breaker(clock: Clock, storage: Any = None) -> BreakerLike | None:
    breaker = _optional("wedguard.policy.breaker")
    if breaker is None:
        return None
    if storage is not None:  # one breaker state for the fleet
        return cast(
            "BreakerLike", breaker.CircuitBreaker(name="guard", clock=clock, storage=storage)
        )
    return cast("BreakerLike", breaker.CircuitBreaker(name="guard", clock=clock))


def _default_sinks() -> list[Sink]:
    module = _optional("wedguard.sinks")
    if module is None:
        return [_LogSink()]
    return [cast("Sink", module.LoggingSink())]


_CHUNKS: Final = ChunkPolicy()


def _shaper(value: object) -> Any:
    """The ``shaping`` argument as a Shaper, or None."""
    if value is None or value is False:
        return None
    if value is True:
        return Shaper()
    if not all(callable(getattr(value, a, None)) for a in ("observe", "paused", "allowed")):
        raise ConfigError("shaping", value, "a Shaper, True or None")
    return value


def _with_logging(sinks: list[Sink], keep: bool) -> list[Sink]:
    """The sinks given plus the default logging sink (first), unless one is there
    already or ``keep`` is False."""
    module = _optional("wedguard.sinks")
    kinds: tuple[type, ...] = (_LogSink,) if module is None else (_LogSink, module.LoggingSink)
    if not keep or any(isinstance(s, kinds) for s in sinks):
        return sinks
    return _default_sinks() + sinks


class _Slot:
    """A held concurrency slot; released once."""

    __slots__ = ("__weakref__", "name", "released", "session", "shared")

    def __init__(self, session: Session, shared: bool = False) -> None:
        self.session: weakref.ref[Session] = weakref.ref(session)
        self.name = session.name
        self.released = False
        self.shared = shared  # also holds one of the fleet's shared slots


class Guard:
    """Lets backup code run beside production: sessions, budgets, windows, stop.

    Args:
        rate: the global byte budget (``"50MB/s"``, a number of bytes/s, or
            ``"off"``): the most the backup may ever use; at least 0.001 per second.
        calendar: a :class:`~wedguard.PeakHourCalendar` (or anything with
            ``at(when) -> Window``). Default: ``PeakHourCalendar.default(tz="UTC")``
            (06:00–22:00 PEAK with a 10 Mbit/s cap); ``None``: no calendar.
        breaker: the circuit breaker :meth:`protect` runs calls under. Default: a
            ``CircuitBreaker("guard")`` (3 failures, 5 minutes); ``None``: none.
        analyzer: the impact analyser. Default:
            ``ImpactAnalyzer(Thresholds.with_fast_signals())`` when there are sources;
            ``None``: throttle by rate and calendar alone.
        sources: what the sampler reads. Default: ``[SystemSource(), PressureSource(...)]``
            (the host's CPU and I/O pressure, judged against
            :data:`~wedguard.policy.impact.FAST_SIGNALS`).
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
            :mod:`wedguard.io.priority`.
        ionice: put a thread running a session in the idle I/O class.
        sched_idle: put a thread running a session in the ``SCHED_IDLE`` CPU policy
            (a waking production thread preempts it at once); restored after, where
            the system allows. Default False.
        shaping: a :class:`~wedguard.policy.probing.Shaper` (``True``: one with its
            defaults): the fast inner loop on the fast signals, short scheduled pauses
            that measure production without the backup, the outer loop on
            production's latency, and chunk sizes the copy loop follows. The sampler
            then samples every ``Shaper.interval`` (0.2 s) at least. Default None.
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
        calendar: CalendarLike | _Default | None = DEFAULT,
        breaker: BreakerLike | _Default | None = DEFAULT,
        analyzer: AnalyzerLike | _Default | None = DEFAULT,
        sources: Iterable[Source] | None = None,
        sinks: Iterable[Sink] | None = None,
        max_concurrent: int | None = MAX_CONCURRENT,
        stop_file: str | os.PathLike[str] | None = None,
        clock: Clock | None = None,
        *,
        controller: ControllerLike | _Default | None = DEFAULT,
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
    ) -> None:
        self._clock: Clock = check_clock(clock)
        for method in ("monotonic", "now", "sleep"):
            if not callable(getattr(self._clock, method, None)):
                raise ConfigError("clock", clock, "a Clock (monotonic, now, sleep)")
        self._now = self._clock.monotonic
        self._rate = parse_rate(rate, field="rate")
        if not self._rate >= MIN_RATE:
            raise ConfigError("rate", rate, f"a rate >= {MIN_RATE:g}/s ('off' for unlimited)")
        self._ops_rate = _INF if ops_rate is None else parse_rate(ops_rate, field="ops_rate")
        if not self._ops_rate >= MIN_RATE:
            raise ConfigError(
                "ops_rate", ops_rate, f"operations per second >= {MIN_RATE:g}, or None"
            )
        if calendar is DEFAULT:
            calendar = _default_calendar()
        elif calendar is not None and not callable(getattr(calendar, "at", None)):
            raise ConfigError("calendar", calendar, "a calendar with at(when) -> Window")
        self._calendar: CalendarLike | None = calendar
        self._sources: tuple[Source, ...] = tuple(
            _default_sources()
            if sources is None
            else _checks.items(sources, "sources", "a list of sources, or None")
        )
        for src in self._sources:
            if not callable(getattr(src, "sample", None)):
                raise ConfigError("sources", src, "objects with sample() -> Mapping[str, float]")
        own_analyzer = analyzer is DEFAULT
        if analyzer is DEFAULT:
            analyzer = _default_analyzer(self._clock) if self._sources else None
        elif analyzer is not None and not callable(getattr(analyzer, "assess", None)):
            raise ConfigError("analyzer", analyzer, "an analyser with assess(sample, level)")
        self._analyzer: AnalyzerLike | None = analyzer
        if controller is DEFAULT:
            controller = _default_controller()
        elif controller is not None and not callable(getattr(controller, "update", None)):
            raise ConfigError("controller", controller, "a controller with update(...)")
        self._controller: ControllerLike | None = controller
        if not isinstance(name, str) or not name:
            raise ConfigError("name", name, "a non-empty string")
        self._name = name
        self._nice = check_nice(nice)
        if not isinstance(ionice, bool):
            raise ConfigError("ionice", ionice, "True or False")
        self._ionice = ionice
        if coordinator is not None and not all(
            hasattr(coordinator, attr) for attr in ("bucket", "slots", "stop_flag", "link")
        ):
            raise ConfigError(
                "coordinator", coordinator, "a RedisCoordinator (bucket, slots, stop_flag, link)"
            )
        self._fleet: Any = coordinator
        if breaker is DEFAULT and coordinator is not None:
            breaker = _default_breaker(
                getattr(coordinator, "clock", self._clock), coordinator.breaker_storage(name)
            )
        elif breaker is DEFAULT:
            breaker = _default_breaker(self._clock)
        elif breaker is not None and not callable(getattr(breaker, "allow", None)):
            raise ConfigError("breaker", breaker, "a circuit breaker with allow()")
        self._breaker: BreakerLike | None = breaker
        given = (
            [] if sinks is None else list(_checks.items(sinks, "sinks", "a list of sinks, or None"))
        )
        for sink in given:
            if not callable(getattr(sink, "emit", None)):
                raise ConfigError("sinks", sink, "objects with emit(event)")
        if not isinstance(log_events, bool):
            raise ConfigError("log_events", log_events, "True or False")
        self._sinks: tuple[Sink, ...] = tuple(_with_logging(given, log_events))
        if max_concurrent is not None and (
            isinstance(max_concurrent, bool)
            or not isinstance(max_concurrent, int)
            or max_concurrent < 1
        ):
            raise ConfigError("max_concurrent", max_concurrent, "a whole number >= 1, or None")
        self._max_concurrent = max_concurrent
        if stop_file is not None:
            _checks.path(stop_file, "stop_file", "a path, or None")
        if control_socket is not None:
            _checks.socket_path(control_socket, "control_socket")
        # a plain string: the sampler stats it every 100 ms
        self._stop_file = None if stop_file is None else os.fspath(Path(stop_file))
        # nobody else's hand on the switch: a stop file where others can change it is
        # refused now; someone else's file found later is ignored and reported
        self._stop_watch = None if self._stop_file is None else _fs.StopFile(self._stop_file)
        self._stop_problem = ""
        if self._stop_file is not None:
            _fs.check_stop_location(self._stop_file, field="stop_file")
        self._interval = parse_duration(sample_interval, field="sample_interval")
        _checks.bounded(
            self._interval, "sample_interval", sample_interval, MIN_INTERVAL, MAX_INTERVAL,
            "seconds",
        )  # fmt: skip
        self._stop_interval = parse_duration(stop_check_interval, field="stop_check_interval")
        _checks.bounded(
            self._stop_interval, "stop_check_interval", stop_check_interval, MIN_INTERVAL,
            MAX_INTERVAL, "seconds",
        )  # fmt: skip
        self._slot_timeout = (
            None if slot_timeout is None else parse_duration(slot_timeout, field="slot_timeout")
        )
        if self._slot_timeout is not None:
            _checks.bounded(
                self._slot_timeout, "slot_timeout", slot_timeout, 0.0, MAX_SLOT_TIMEOUT, "seconds"
            )
        self._max_hold = _INF if max_hold is None else parse_duration(max_hold, field="max_hold")
        if not self._max_hold > 0:
            raise ConfigError("max_hold", max_hold, "a duration > 0, or None")
        if baseline_warmup is DEFAULT:  # the guard's own analyser learns by itself
            baseline_warmup = "5s" if own_analyzer else None
        warmup = (
            0.0
            if baseline_warmup is None
            else parse_duration(baseline_warmup, field="baseline_warmup")
        )
        if not 0 <= warmup < _INF:
            raise ConfigError("baseline_warmup", baseline_warmup, "a duration >= 0, or None")
        self._warmup_n = 0 if warmup == 0 else max(3, math.ceil(warmup / self._interval))
        if background is None:
            background = isinstance(self._clock, SystemClock)
        self._background = bool(background)

        # -- shaping (SCHED_IDLE, fast loop, causal pauses, chunk size) -----------------
        self._sched_idle = check_sched_idle(sched_idle)
        self._shaper: Any = _shaper(shaping)
        if self._shaper is not None:
            if analyzer is None or not self._sources:
                raise ConfigError("shaping", shaping, "sources and an analyser (the defaults)")
            self._interval = min(self._interval, float(self._shaper.interval))
        self._signals: tuple[str, ...] = ()
        # -- end shaping -----------------------------------------------------------------

        # state shared with the sessions' hot path
        self._cond = threading.Condition(threading.RLock())
        self._bytes = TokenBucketThrottler(self._rate, clock=self._clock)
        self._ops: TokenBucketThrottler | None = None
        if self._ops_rate < _INF:
            self._ops = TokenBucketThrottler(
                self._ops_rate, burst=max(1.0, self._ops_rate * 0.2), clock=self._clock
            )
        # many hosts: the fleet's shared buckets and slots (None without a coordinator)
        self._fleet_bytes: Any = None
        self._fleet_ops: Any = None
        self._fleet_slots: Any = None
        self._fleet_rate = self._rate  # the rate this guard last gave the shared bucket
        self._fleet_stop = ""
        self._fleet_offline = False
        self._fleet_changes: collections.deque[bool] = collections.deque()
        # the shared buckets taken in leased blocks: Redis off the lock (see _fleet_refresh)
        self._fleet_leases: tuple[Any, ...] = ()
        if coordinator is not None:
            # a coordinator that leases (RedisCoordinator) is asked for leases, else buckets
            shared = getattr(coordinator, "lease", None) or coordinator.bucket
            self._fleet_bytes = shared(self._rate, name=name)
            if self._ops_rate < _INF:
                self._fleet_ops = shared(
                    self._ops_rate, max(1.0, self._ops_rate * 0.2), name=f"{name}:ops"
                )
            self._fleet_leases = tuple(
                b for b in (self._fleet_bytes, self._fleet_ops) if hasattr(b, "refresh")
            )
            if max_concurrent is not None:
                self._fleet_slots = coordinator.slots(max_concurrent, name=name)
            self._fleet_offline = not coordinator.link.online
            changes = self._fleet_changes

            def on_link(online: bool, error: BaseException | None) -> None:
                # no lock here: taken in by the stop check (within stop_check_interval)
                changes.append(online)

            coordinator.link.add_listener(on_link)
        self._checks_stops = self._stop_file is not None or coordinator is not None
        self._go = True
        self._expires = -_INF
        # the hot path's shortcut: going, no byte limit, nothing to recheck before the
        # window ends (never), so s.throttle(n) only counts
        self._free = False
        self._window_end_m = _INF
        self._stopped = False
        self._manual_stop = ""
        self._file_stop = ""
        self._held = ""
        self._assessment: Any = None
        self._verdict = Verdict.OK
        self._impact_reasons: tuple[str, ...] = ()
        self._allowed = _INF
        self._allowed_free = True
        self._moved = 0.0  # bytes the sessions had moved at the last sample
        self._moved_at: float | None = None
        self._next_sample = -_INF
        self._next_stop_check = -_INF
        self._async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        # slots and sessions
        self._queue: collections.deque[object] = collections.deque()
        self._active: dict[_Slot, None] = {}
        self._sampler: threading.Thread | None = None
        self._sampler_wake = threading.Event()
        self._closing = False
        # alerts currently firing, by key
        self._firing: dict[str, Alert] = {}
        # event delivery
        self._events: collections.deque[Event] = collections.deque(maxlen=10_000)
        self._ev_cond = threading.Condition()
        self._deliverer: threading.Thread | None = None
        self._delivering = False
        self._dropped = 0
        self._signals_installed: dict[int, Any] = {}
        # what the guard says on its own: the baseline warm-up, limits
        # it cannot judge, failing probes, the breaker, how long it has held back
        self._learning = ""  # why the backup waits for the baseline ("" when not)
        self._learn_left = 0  # samples still to learn (-1: the first sample decides)
        self._learn_metrics = ""
        self._maybe_learn = bool(self._warmup_n) and callable(
            getattr(self._analyzer, "baseline_needed", None)
        )
        self._unjudged: tuple[str, ...] = ()
        self._probes = ProbeWatch()
        self._held_since: float | None = None
        self._circuit = ""  # the breaker's state line while it is not closed
        self._circuit_due = _INF  # when an open breaker may try again (monotonic)
        self._closed = False

        self._window: Any = None  # the calendar window in force (cached until it ends)
        self._decision = self._make_decision(self._now(), self._clock.now())
        self._apply(self._decision, self._now(), emit=False)
        if self._breaker is not None and callable(getattr(self._breaker, "add_listener", None)):
            self._breaker.add_listener(self._on_breaker)  # type: ignore[attr-defined]
        if signals:
            self.install_signal_handlers()
        self._control: ControlServer | None = None
        if control_socket is not None:
            self.serve_control(control_socket)
        _atexit.remember(self)

    # -- public properties ----------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def calendar(self) -> CalendarLike | None:
        return self._calendar

    @property
    def breaker(self) -> BreakerLike | None:
        return self._breaker

    @property
    def rate(self) -> float:
        """The configured byte budget (bytes/s)."""
        return self._rate

    @property
    def max_concurrent(self) -> int | None:
        return self._max_concurrent

    @property
    def nice(self) -> int:
        """Niceness added to a thread while it runs a session (0: none)."""
        return self._nice

    @property
    def ionice(self) -> bool:
        """Whether a thread running a session is put in the idle I/O class."""
        return self._ionice

    @property
    def sched_idle(self) -> bool:
        """Whether a thread running a session is put in the ``SCHED_IDLE`` CPU policy."""
        return self._sched_idle

    @property
    def shaper(self) -> Any:
        """The :class:`~wedguard.policy.probing.Shaper` (None without ``shaping``)."""
        return self._shaper

    @property
    def chunk_size(self) -> int:
        """The chunk size (bytes) the backup should use now: smaller while production
        is near its limits, and at most 0.2 s of the allowed rate. The copy loop
        follows it when the guard shapes (``shaping=``)."""
        d = self.decision()
        if self._shaper is not None:
            return int(self._shaper.chunk_size(d.rate))
        load = float(getattr(self._assessment, "load", 0.0) or 0.0)
        return _CHUNKS.size(load=load, rate=d.rate)

    @property
    def shaping(self) -> Any:
        """The :class:`~wedguard.policy.probing.Shaper` the guard runs, or None."""
        return self._shaper

    @property
    def name(self) -> str:
        """Names this guard's shared objects in its coordinator."""
        return self._name

    @property
    def coordinator(self) -> Any:
        """The :class:`~wedguard.distributed.RedisCoordinator` given, or None."""
        return self._fleet

    @property
    def stopped(self) -> bool:
        """True while stopped (``stop()``, the stop file, SIGUSR1 or the fleet's stop)."""
        self._fleet_idle_check()
        return self._stopped

    @property
    def active_sessions(self) -> int:
        """How many sessions hold a slot now."""
        with self._cond:
            return len(self._active)

    @property
    def waiting_sessions(self) -> int:
        """How many sessions wait for a slot now."""
        with self._cond:
            return len(self._queue)

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
        )

    def _slot_free(self, ticket: object) -> bool:
        return self._queue[0] is ticket and (
            self._max_concurrent is None or len(self._active) < self._max_concurrent
        )

    def _enter(self, session: Session, timeout: float | None) -> None:
        if session._started:
            raise ConfigError("session", session.name, "a session that was not entered before")
        shared = False
        if self._fleet is not None:
            shared, timeout = self._fleet_slot(session, timeout)
        try:
            self._enter_local(session, timeout, shared)
        except BaseException:
            if shared:
                self._fleet_slots.release()
            raise

    def _enter_local(self, session: Session, timeout: float | None, shared: bool) -> None:
        ticket = object()
        with self._cond:
            start = now = self._now()
            self._queue.append(ticket)
            try:
                while not self._slot_free(ticket):
                    if self._stopped:
                        raise EmergencyStop(self._decision.stop_reason)
                    left = _INF if timeout is None else start + timeout - now
                    if left <= 0:
                        raise SlotTimeout(session.name, timeout or 0.0, self._max_concurrent or 0)
                    clock_wait(self._clock, self._cond, None if left == _INF else left)
                    now = self._now()
            finally:
                self._queue.remove(ticket)
                self._notify()
            session._waits["slots"] += now - start
            self._take_slot(session, now, shared)

    def _fleet_slot(self, session: Session, timeout: float | None) -> tuple[bool, float | None]:
        """Take one of the fleet's shared slots (no lock held): (held, timeout left).

        Waits in the fleet's FIFO queue; a stop (this guard's or the fleet's) ends the
        wait with :class:`~wedguard.EmergencyStop`.
        """
        self._check_fleet()
        if self._stopped:
            raise EmergencyStop(self._decision.stop_reason)
        self._fleet_refresh()  # a first block (and this guard's rate) before any chunk
        slots = self._fleet_slots
        if slots is None:
            return False, timeout
        start = self._now()
        try:
            held = bool(slots.acquire(timeout, abort=self._fleet_abort))
        except SlotTimeout as exc:
            raise SlotTimeout(
                session.name, timeout or 0.0, self._max_concurrent or 0, key=slots.key
            ) from exc
        if not held:
            raise EmergencyStop(self._decision.stop_reason)
        return self._fleet_slot_taken(session, start, timeout)

    async def _afleet_slot(
        self, session: Session, timeout: float | None
    ) -> tuple[bool, float | None]:
        """The asyncio form of :meth:`_fleet_slot`."""
        await asyncio.to_thread(self._check_fleet)
        if self._stopped:
            raise EmergencyStop(self._decision.stop_reason)
        if self._fleet_due():
            await asyncio.to_thread(self._fleet_refresh)
        slots = self._fleet_slots
        if slots is None:
            return False, timeout
        start = self._now()
        try:
            held = bool(await slots.acquire_async(timeout, abort=self._fleet_abort))
        except SlotTimeout as exc:
            raise SlotTimeout(
                session.name, timeout or 0.0, self._max_concurrent or 0, key=slots.key
            ) from exc
        if not held:
            raise EmergencyStop(self._decision.stop_reason)
        return self._fleet_slot_taken(session, start, timeout)

    def _fleet_slot_taken(
        self, session: Session, start: float, timeout: float | None
    ) -> tuple[bool, float | None]:
        waited = max(0.0, self._now() - start)
        session._waits["slots"] += waited
        return True, None if timeout is None else max(0.0, timeout - waited)

    def _fleet_abort(self) -> bool:
        """Whether a wait for a shared slot must end: this guard or the fleet stopped."""
        if self._fleet.stop_flag.is_set() and not self._fleet_stop:
            self._check_fleet()
        return self._stopped

    async def _aenter(self, session: Session, timeout: float | None) -> None:
        if session._started:
            raise ConfigError("session", session.name, "a session that was not entered before")
        shared = False
        if self._fleet is not None:
            shared, timeout = await self._afleet_slot(session, timeout)
        try:
            await self._aenter_local(session, timeout, shared)
        except BaseException:
            if shared:
                await asyncio.shield(asyncio.to_thread(self._fleet_slots.release))
            raise

    async def _aenter_local(self, session: Session, timeout: float | None, shared: bool) -> None:
        ticket = object()
        loop = asyncio.get_running_loop()
        with self._cond:
            start = now = self._now()
            self._queue.append(ticket)
        try:
            while True:
                with self._cond:
                    now = self._now()
                    if self._slot_free(ticket):
                        break
                    if self._stopped:
                        raise EmergencyStop(self._decision.stop_reason)
                    left = _INF if timeout is None else start + timeout - now
                    if left <= 0:
                        raise SlotTimeout(session.name, timeout or 0.0, self._max_concurrent or 0)
                    fut: asyncio.Future[None] = loop.create_future()
                    entry = (loop, fut)
                    self._async_waiters.add(entry)
                try:
                    await self._await(fut, left)
                finally:
                    with self._cond:
                        self._async_waiters.discard(entry)
        finally:
            with self._cond:
                self._queue.remove(ticket)
                self._notify()
        with self._cond:
            session._waits["slots"] += now - start
            self._take_slot(session, now, shared)

    def _take_slot(self, session: Session, now: float, shared: bool = False) -> None:
        """The slot is ours (lock held): start the session and, if first, the sampler."""
        slot = _Slot(session, shared)
        first = not self._active
        self._active[slot] = None
        session._slot = slot
        weakref.finalize(session, _release_slot, weakref.ref(self), slot)
        if first:
            self._next_sample = now
            self._next_stop_check = now
            self._free = False
            self._expires = -_INF
            self._held_since = None
            if self._closed:  # used again after close(): closed again at exit
                self._closed = False
                _atexit.remember(self)
            if self._maybe_learn and self._analyzer is not None:
                # the backup waits for the first sample: it may have to learn a baseline
                self._learning = "learning the baseline: waiting for the first sample"
                self._learn_left = -1
            if self._stop_file is not None:
                self._check_stop_file()
            if self._background:
                self._start_sampler()
        session._begin(now)

    def _exit(self, session: Session, exc: BaseException | None) -> None:
        with self._cond:
            if session._closed:
                return
            session._finish(exc)
            slot = session._slot
            key = f"deadline/{session.name}"
            if key in self._firing:
                self._resolve(key)
        self._release(slot)  # without the lock: a shared slot is freed in Redis
        self._fleet_settle()
        self._emit(session.report())

    def _release(self, slot: _Slot | None) -> None:
        if slot is None:
            return
        with self._cond:
            if slot.released:
                return
            slot.released = True
            self._active.pop(slot, None)
            if not self._active and self._learning:
                self._learning = ""
                self._refresh_locked(self._now(), sampled=True)
            self._notify()
        if slot.shared:
            # no Redis fault reaches here (a lost Redis frees the slot by its lease);
            # slots closed with their coordinator hold nothing any more
            with contextlib.suppress(RuntimeError):
                self._fleet_slots.release()

    # -- waiting ----------------------------------------------------------------------------

    def _notify(self) -> None:
        """Wake every waiter, threads and asyncio tasks (lock held)."""
        self._cond.notify_all()
        for loop, fut in list(self._async_waiters):
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(_wake, fut)

    def _wait(self, timeout: float) -> None:
        """Wait on the guard's condition (held) through the clock."""
        clock_wait(self._clock, self._cond, None if timeout == _INF else timeout)

    async def _await(self, fut: asyncio.Future[None], timeout: float) -> None:
        await clock_await(self._clock, fut, timeout)

    def _pause_cause(self) -> str:
        """Why no work may proceed now (lock held)."""
        d = self._decision
        if d.on_hold:
            return "stop"
        if d.level is Level.BLACKOUT or self._calendar_cap() <= 0:
            return "calendar"
        return "impact"

    def _calendar_cap(self) -> float:
        w = self._window
        if w is None or w.rate is None:
            return _INF
        return float(w.rate)

    # -- the decision ---------------------------------------------------------------------

    def decision(self) -> Decision:
        """The decision in force now: level, rate, verdict, reasons, stop.

        >>> from wedguard.testing import FakeClock
        >>> g = Guard(rate="5MB/s", calendar=None, sources=[], sinks=[], clock=FakeClock())
        >>> d = g.decision()
        >>> d.rate, d.reasons
        (5000000.0, ('rate limit 5 MB/s',))
        """
        self._fleet_idle_check()
        if self._circuit and self._now() >= self._circuit_due and self._breaker is not None:
            # an open breaker moves to HALF_OPEN when looked at (its listener tells us)
            with contextlib.suppress(Exception):
                getattr(self._breaker, "state", None)
        with self._cond:
            now = self._now()
            if now >= self._expires:
                self._refresh_locked(now)
            return self._decision

    def _fleet_idle_check(self) -> None:
        """With no sampler running (no session), read the fleet's stop flag here."""
        if self._fleet is not None and self._sampler is None:
            self._check_fleet()

    def observe_baseline(self, sample: Mapping[str, float] | None = None) -> None:
        """Teach the analyser what production looks like without a backup.

        Call it while no backup runs (at start-up, or from a scheduler between runs);
        without ``sample`` the guard reads its sources once. Does nothing without an
        analyser that learns a baseline. (The guard also learns one by itself: see
        ``baseline_warmup``.)
        """
        observe = getattr(self._analyzer, "observe_baseline", None)
        if observe is None:
            return
        observe(self._collect() if sample is None else sample)

    def tick(self) -> Decision:
        """Sample the sources now and recompute the decision (what the sampler does)."""
        sample = self._collect()
        with self._cond:
            now = self._now()
            self._assess_locked(sample, now)
            self._next_sample = now + self._interval
            self._refresh_locked(now, sampled=True)
            return self._decision

    def _refresh_locked(self, now: float, *, sampled: bool = False) -> None:
        """Recompute the decision (lock held). Inline mode samples here when due."""
        if not self._background and self._active:
            if self._checks_stops and now >= self._next_stop_check:
                self._next_stop_check = now + self._stop_interval
                if self._stop_file is not None:
                    self._check_stop_file()
                if self._fleet is not None:
                    self._check_fleet()
            if not sampled and now >= self._next_sample:
                self._next_sample = now + self._interval
                if self._sources and self._analyzer is not None:
                    self._assess_locked(self._collect(), now)
                self._track_sessions(now)
        self._apply(self._make_decision(now, self._clock.now()), now)

    def _collect(self) -> dict[str, float]:
        """Read every source (no lock held in background mode); a failure is a metric."""
        sample: dict[str, float] = {}
        for src in self._sources:
            try:
                sample.update(src.sample())
            except Exception:
                log.exception("source %r failed", src)
                sample[f"{type(src).__name__}.error"] = 1.0
        return sample

    def _assess_locked(self, sample: Mapping[str, float], now: float) -> None:
        for level_no, line in self._probes.update(sample, now):
            log.log(level_no, "%s", line)
        if self._shaper is not None:  # shaping: the fast loop and the pauses' samples
            self._shaper.observe(sample, now, moved=sum(s._bytes for s in self._sessions()))
        if self._analyzer is None:
            return
        rules = getattr(getattr(self._analyzer, "thresholds", None), "rules", None)
        if rules is not None:  # which signals judge the backup (decision().signals)
            self._signals = signals_used(rules(self._decision.level), sample)
        if self._learn(sample):
            return
        level = self._decision.level
        try:
            assessment = self._analyzer.assess(sample, level=level)
        except Exception:
            log.exception("analyzer %r failed; keeping the last assessment", self._analyzer)
            return
        self._assessment = assessment
        self._verdict = Verdict(assessment.verdict)
        self._impact_reasons = tuple(str(r) for r in getattr(assessment, "reasons", ()))
        unjudged = tuple(str(r) for r in getattr(assessment, "unjudged", ()))
        for line in set(unjudged) - set(self._unjudged):
            log.warning(
                "%s (learn one: Guard(baseline_warmup=...) or guard.observe_baseline())", line
            )
        self._unjudged = unjudged
        ceiling = min(self._rate, self._calendar_cap())
        allowed = _INF
        observe = getattr(self._controller, "observe", None)
        if observe is not None:
            moved = sum(s._bytes for s in self._sessions())
            if self._moved_at is not None and now > self._moved_at and moved > self._moved:
                observe((moved - self._moved) / (now - self._moved_at))
            self._moved_at, self._moved = now, moved
        if self._controller is not None:
            try:
                allowed = float(self._controller.update(assessment, ceiling=ceiling, now=now))
            except Exception:
                log.exception("controller %r failed", self._controller)
                allowed = 0.0 if self._verdict is Verdict.HALT else ceiling
        elif self._verdict is Verdict.HALT:
            allowed = 0.0
        self._allowed = allowed
        self._allowed_free = allowed >= ceiling

    def _learn(self, sample: Mapping[str, float]) -> bool:
        """The baseline warm-up (lock held): True when ``sample`` was learnt from.

        With no session running every sample is production at rest and adds to the
        baseline. A session's first sample decides whether there is a latency
        without a baseline; if so the backup waits ``baseline_warmup`` while the
        guard learns one, before the session's first byte.
        """
        analyzer = self._analyzer
        observe = getattr(analyzer, "observe_baseline", None)
        if observe is None or not self._warmup_n:
            return False
        if not self._active:
            observe(sample)
            return False
        if not self._learning:
            return False
        if self._learn_left < 0:
            need = analyzer.baseline_needed(sample)  # type: ignore[union-attr]
            if not need:
                self._learning = ""
                # nothing to learn; look again next time only if a probe failed
                self._maybe_learn = any(k.endswith(".error") for k in sample)
                return False
            self._learn_left = self._warmup_n
            self._learn_metrics = ", ".join(need)
        observe(sample)
        self._learn_left -= 1
        done = self._warmup_n - self._learn_left
        if self._learn_left <= 0:
            self._learning = ""
            self._maybe_learn = False
            log.info("baseline learnt for %s from %d samples", self._learn_metrics, done)
        else:
            self._learning = (
                f"learning the baseline of {self._learn_metrics}: {done} of "
                f"{self._warmup_n} samples of production at rest (the backup waits)"
            )
        return True

    def _make_decision(self, now: float, now_dt: datetime) -> Decision:
        """Compose the policies' answers into a Decision (lock held; no I/O).

        The calendar window in force is kept until it ends, so the calendar is asked
        once per window, not once per decision.
        """
        window = None
        if self._calendar is not None:
            window = self._window
            if (
                window is None
                or now_dt < window.start
                or (window.end is not None and now_dt >= window.end)
            ):
                window = self._calendar.at(now_dt)
        self._window = window
        level = Level.OPEN if window is None else Level(window.level)
        cap = _INF if window is None or window.rate is None else float(window.rate)
        ceiling = min(self._rate, cap)
        allowed = ceiling if self._allowed_free else min(ceiling, self._allowed)
        verdict = self._verdict
        stop_reason = self._manual_stop or self._file_stop or self._fleet_stop
        self._stopped = bool(stop_reason)
        reasons: list[str] = []
        if self._stopped:
            reasons.append(f"emergency stop: {stop_reason}")
        if self._held:
            reasons.append(f"on hold: {self._held}")
        if self._learning:
            reasons.append(self._learning)
        end = None if window is None else window.end
        until = "" if end is None else f" until {end.isoformat()}"
        why = "" if window is None or not window.reason else f" ({window.reason})"
        if level is Level.BLACKOUT:
            reasons.append(f"calendar: BLACKOUT{until}{why}")
        if verdict is Verdict.HALT or allowed <= 0:
            detail = "; ".join(self._impact_reasons)
            reasons.append(f"impact: {verdict.name}" + (f" ({detail})" if detail else ""))
        limits: list[tuple[float, int, str]] = [
            (self._rate, 2, f"rate limit {format_rate(self._rate)}")
        ]
        if cap < _INF:
            limits.append((cap, 0, f"calendar: {level.name} cap {format_rate(cap)}{until}{why}"))
        if allowed < ceiling and allowed > 0:
            detail = "; ".join(self._impact_reasons)
            text = f"impact: {verdict.name}, controller allows {format_rate(allowed)}"
            limits.append((allowed, 1, text + (f" ({detail})" if detail else "")))
        limits.sort()
        reasons.extend(text for _, _, text in limits)
        probing = False
        if self._shaper is not None:  # shaping: the loops' share, the causal pauses
            allowed = min(allowed, float(self._shaper.allowed(ceiling)))
            probing = bool(self._active) and bool(self._shaper.paused(now))
            reasons.extend(self._shaper.reasons(now))
        if self._circuit:
            reasons.append(self._circuit)
        if not self._learning:
            reasons.extend(self._unjudged)
        if self._fleet_offline:
            share = float(getattr(self._fleet, "fallback_share", 1.0))
            reasons.append(
                "fleet: Redis unreachable, this host runs on its fallback budget "
                f"{format_rate(self._fleet_rate * share)}"
            )
        rate = min(ceiling, allowed)
        paused = (
            probing
            or self._stopped
            or bool(self._held)
            or bool(self._learning)
            or level is Level.BLACKOUT
            or rate <= 0
        )
        if verdict is Verdict.HALT:
            paused = True
        needed = [s._needed for s in self._sessions() if s._needed is not None]
        return Decision(
            level=level,
            rate=0.0 if paused else rate,
            verdict=verdict,
            reasons=tuple(reasons),
            stopped=self._stopped,
            stop_reason=stop_reason or self._held,
            on_hold=bool(self._held),
            ops_rate=0.0 if paused else self._ops_rate,
            window_start=None if window is None else window.start,
            window_end=end,
            cpu_share=None if window is None else getattr(window, "cpu_share", None),
            needed_rate=max(needed) if needed else None,
            at=now_dt,
            signals=self._signals,
        )

    def _apply(self, d: Decision, now: float, *, emit: bool = True) -> None:
        """Install a new decision (lock held): buckets, expiry, wake-ups, events."""
        old = self._decision
        self._free = False
        self._decision = d
        go = not d.paused
        # While paused the buckets keep their rate (the hot path does not reach them,
        # and waiting sessions count no credit), so work resumes with a full burst.
        if go and self._bytes.rate != d.rate:
            self._bytes.set_rate(d.rate)
        if go and self._ops is not None and self._ops.rate != d.ops_rate:
            self._ops.set_rate(d.ops_rate)
        self._go = go
        end = d.window_end
        if end is not None and d.at is not None:
            self._window_end_m = now + (end - d.at).total_seconds()
        else:
            self._window_end_m = _INF
        expires = self._window_end_m
        if not self._background and self._active:
            # inline sampling; a blackout ends only with its window (or a stop, which
            # wakes the waiters), so it is slept through in one piece
            if d.level is not Level.BLACKOUT:
                expires = min(expires, self._next_sample)
            if self._checks_stops:
                expires = min(expires, self._next_stop_check)
        if self._shaper is not None and self._active:  # a causal pause begins or ends
            expires = min(expires, float(self._shaper.next_change(now)))
        self._expires = expires if expires > now else now + 1e-6
        self._free = go and d.rate == _INF and expires == _INF
        if self._fleet_bytes is not None:
            self._set_fleet_rate()
        holding = (
            not go
            and not d.stopped
            and not d.on_hold
            and d.level is not Level.BLACKOUT
            and self._calendar_cap() > 0
        )
        if not holding:
            self._held_since = None
        elif self._held_since is None and self._active:
            self._held_since = now
        if d.same_as(old):
            return
        self._notify()
        if not emit:
            return
        self._emit(d)
        at = d.at
        if d.verdict is Verdict.HALT and old.verdict is not Verdict.HALT:
            detail = "; ".join(self._impact_reasons) or "production is overloaded"
            self._fire("halt", Severity.CRITICAL, f"backup halted: {detail}", at)
        elif d.verdict is not Verdict.HALT and "halt" in self._firing:
            self._resolve("halt")
        if d.stopped and not old.stopped:
            self._fire("stop", Severity.HIGH, f"backup stopped: {d.stop_reason}", at)
        elif not d.stopped and "stop" in self._firing:
            self._resolve("stop")

    def _sessions(self) -> list[Session]:
        out = []
        for slot in self._active:
            s = slot.session()
            if s is not None:
                out.append(s)
        return out

    # -- stop, hold, resume -----------------------------------------------------------------

    def stop(self, reason: str = "stopped") -> None:
        """Stop every session: ``throttle()`` raises :class:`~wedguard.EmergencyStop`
        (at once, also in waiting sessions) until :meth:`resume`."""
        with self._cond:
            self._manual_stop = str(reason) or "stopped"
            self._refresh_locked(self._now(), sampled=True)

    def hold(self, reason: str = "on hold") -> None:
        """Pause every session without failing it: ``throttle()`` waits (cause
        ``"stop"``) until :meth:`resume`."""
        with self._cond:
            self._held = str(reason) or "on hold"
            self._refresh_locked(self._now(), sampled=True)

    def resume(self) -> None:
        """Lift :meth:`stop` and :meth:`hold`. (A stop file still present stops again.)"""
        with self._cond:
            self._manual_stop = ""
            self._held = ""
            self._refresh_locked(self._now(), sampled=True)

    def _fleet_due(self, n: float = 0.0, ops: int = 0) -> bool:
        """Whether a leased shared bucket wants a Redis call now (cheap; no lock)."""
        return any(
            lease.due(n if lease is self._fleet_bytes else float(ops))
            for lease in self._fleet_leases
        )

    def _fleet_refresh(self, n: float = 0.0, ops: int = 0) -> None:
        """The Redis calls of the leased shared buckets, when due (never with the lock).

        ``n``, ``ops``: what the caller is about to take; it waits for a block in
        flight only when its leased credit does not cover that.
        """
        for lease in self._fleet_leases:
            lease.refresh(n if lease is self._fleet_bytes else float(ops))

    def _fleet_settle(self) -> None:
        """The last session ended: give leased credit back to the fleet (no lock)."""
        if self._fleet_leases and not self._active:
            for lease in self._fleet_leases:
                lease.settle()

    def _set_fleet_rate(self) -> None:
        """Give the shared bucket the fleet's ceiling (lock held; on a change only).

        A leased shared bucket takes the rate locally; the session's thread or the
        sampler writes it to Redis right after, without the lock.

        The fleet's ceiling is ``rate`` or, when lower, the calendar window's cap: the
        calendar is the fleet's ("all backups together at most 10 Mbit/s in peak
        hours"). The impact controller's rate and the session caps are this host's
        own and stay in the local buckets.
        """
        cap = self._calendar_cap()
        target = min(self._rate, cap) if cap > 0 else self._rate
        if target != self._fleet_rate:
            self._fleet_rate = target
            self._fleet_bytes.set_rate(target)

    def _check_fleet(self) -> None:
        """Read the fleet's stop flag and take in Redis going away or coming back.

        The flag answers from a reading at most its ``max_age`` old (0.5 s), so this
        costs at most one Redis round trip per half second, whatever the interval.
        Called without the lock in background mode (the sampler), with it inline.
        """
        fleet = self._fleet
        flag = fleet.stop_flag
        stop = ""
        if flag.is_set():
            stop = f"fleet stop: {flag.reason or 'stopped'}"
        changes: list[bool] = []
        while self._fleet_changes:
            changes.append(self._fleet_changes.popleft())
        with self._cond:
            changed = stop != self._fleet_stop
            self._fleet_stop = stop
            for online in changes:
                if not online and "redis" not in self._firing:
                    share = float(getattr(fleet, "fallback_share", 1.0))
                    prefix = getattr(fleet, "prefix", "redis")
                    self._fire(
                        "redis",
                        Severity.HIGH,
                        f"Redis {prefix!r} is unreachable: this host runs on its fallback "
                        f"budget {format_rate(self._fleet_rate * share)} "
                        f"({share:.0%} of the fleet's rate)",
                        self._clock.now(),
                        labels={"redis": str(prefix)},
                    )
                elif online and "redis" in self._firing:
                    self._resolve("redis")
            offline = not fleet.link.online
            changed = changed or offline != self._fleet_offline
            self._fleet_offline = offline
            if changed:
                self._refresh_locked(self._now(), sampled=True)

    def _stop_file_present(self) -> bool:
        """One lstat of the stop file (no lock needed): True when it is there and ours
        (or root's), in a directory nobody else controls."""
        assert self._stop_watch is not None
        present = self._stop_watch.present()
        if self._stop_watch.problem != self._stop_problem:
            self._note_stop_problem(self._stop_watch.problem)
        return present

    def _note_stop_problem(self, problem: str) -> None:
        """A stop file that does not count appeared (or went): log it and alert."""
        with self._cond:
            if problem == self._stop_problem:
                return
            self._stop_problem = problem
            if problem:
                log.warning("%s: ignored", problem)
                self._fire(
                    "stop-file",
                    Severity.HIGH,
                    f"{problem}: ignored, the backup goes on",
                    self._clock.now(),
                    labels={"stop_file": str(self._stop_file)},
                )
            else:
                self._resolve("stop-file")

    def _check_stop_file(self, present: bool | None = None) -> None:
        """Take in the stop file's presence (one stat unless ``present`` is known): a
        change stops or resumes (lock held)."""
        if present is None:
            present = self._stop_file_present()
        if present and not self._file_stop:
            self._file_stop = f"stop file {self._stop_file} exists"
            self._refresh_locked(self._now(), sampled=True)
        elif not present and self._file_stop:
            self._file_stop = ""
            self._refresh_locked(self._now(), sampled=True)

    def install_signal_handlers(self) -> None:
        """Opt in: SIGUSR1 stops the guard, SIGUSR2 resumes it (main thread only).

        The handlers hand the work to a short-lived thread, so a signal arriving while
        the main thread holds the guard's lock cannot deadlock. The previous handlers
        are restored by :meth:`uninstall_signal_handlers`.
        """
        usr1 = getattr(signal, "SIGUSR1", None)
        usr2 = getattr(signal, "SIGUSR2", None)
        if usr1 is None or usr2 is None:  # pragma: no cover - not POSIX
            raise ConfigError("signals", True, "a POSIX platform with SIGUSR1/SIGUSR2")

        def on_usr1(signum: int, frame: FrameType | None) -> None:
            threading.Thread(target=self.stop, args=("SIGUSR1",), daemon=True).start()

        def on_usr2(signum: int, frame: FrameType | None) -> None:
            threading.Thread(target=self.resume, daemon=True).start()

        if self._signals_installed:
            return  # already ours
        if threading.current_thread() is not threading.main_thread():
            raise ConfigError("signals", True, "installing handlers from the main thread")
        self._signals_installed[usr1] = signal.signal(usr1, on_usr1)
        self._signals_installed[usr2] = signal.signal(usr2, on_usr2)

    def uninstall_signal_handlers(self) -> None:
        """Restore the handlers that were there before :meth:`install_signal_handlers`."""
        for signum, previous in self._signals_installed.items():
            signal.signal(signum, previous)
        self._signals_installed.clear()

    # -- the background sampler ----------------------------------------------------------

    def _start_sampler(self) -> None:
        """Sample now: wake the sampler thread, or start one (lock held).

        The thread outlives the last session by one ``sample_interval`` (idle, sampling
        nothing), so back-to-back sessions, such as one per protected call, reuse it.
        """
        self._sampler_wake.set()
        if self._sampler is None:
            self._closing = False
            self._sampler = threading.Thread(
                target=self._sampler_loop, name=f"wedguard-sampler-{id(self):x}", daemon=True
            )
            self._sampler.start()

    def _stop_sampler(self) -> None:
        """Let the sampler thread end now (lock held)."""
        self._closing = True
        self._sampler_wake.set()

    def _sampler_loop(self) -> None:
        wake = self._sampler_wake
        next_sample = next_check = -_INF
        idle_since: float | None = None
        while True:
            try:
                with self._cond:
                    now = self._now()
                    if self._closing:
                        self._sampler = None
                        return
                    if not self._active:
                        if idle_since is None:
                            idle_since = now
                        elif now - idle_since >= self._interval:
                            self._sampler = None
                            return
                    elif idle_since is not None or wake.is_set():
                        idle_since = None  # a session (re)started: sample at once
                        next_sample = next_check = now
                    wake.clear()
                if idle_since is not None:
                    wake.wait(max(0.0, idle_since + self._interval - now))
                    continue
                if self._checks_stops and now >= next_check:
                    next_check = now + self._stop_interval
                    # the stat without the lock; the lock only for a change
                    if self._stop_file is not None:
                        present = self._stop_file_present()
                        if present != bool(self._file_stop):
                            with self._cond:
                                self._check_stop_file(present)
                    if self._fleet is not None:
                        self._check_fleet()  # a Redis read: not under the lock
                        self._fleet_refresh()  # idle credit back, a rate set here out
                if now >= next_sample:
                    next_sample = now + self._interval
                    sample = self._collect() if self._analyzer is not None else {}
                    with self._cond:
                        if self._active:
                            now = self._now()
                            if self._sources and self._analyzer is not None:
                                self._assess_locked(sample, now)
                            self._track_sessions(now)
                            self._refresh_locked(now, sampled=True)
            except Exception:  # pragma: no cover - never let the sampler die
                log.exception("sampler step failed")
            due = next_sample if not self._checks_stops else min(next_sample, next_check)
            wake.wait(max(0.0, due - self._now()))

    # -- deadlines ---------------------------------------------------------------------------

    def _track_sessions(self, now: float) -> None:
        """Timeline points and deadline pacing for every active session (lock held)."""
        d = self._decision
        now_dt = self._clock.now()
        for s in self._sessions():
            s._point(now, d)
            if s._deadline is None or s._expected is None:
                continue
            rate = d.rate
            if s._bucket is not None:
                rate = min(rate, s._bucket.rate)
            needed, capacity, remaining = self._pace(s, now_dt, rate)
            s._needed = needed
            key = f"deadline/{s.name}"
            if remaining > 0 and capacity < remaining:
                if key not in self._firing:
                    can = format_rate(capacity / max(1e-9, (s._deadline - now_dt).total_seconds()))
                    self._fire(
                        key,
                        Severity.HIGH,
                        f"session {s.name!r} will miss its deadline {s._deadline.isoformat()}: "
                        f"needs {format_rate(needed)} over the allowed time, "
                        f"the guard allows about {can} on average",
                        now_dt,
                        labels={"session": s.name},
                    )
            elif key in self._firing:
                self._resolve(key)

    def _pace(
        self, s: Session, now_dt: datetime, current_rate: float
    ) -> tuple[float, float, float]:
        """(needed rate, bytes the calendar lets through before the deadline, remaining)."""
        assert s._deadline is not None
        assert s._expected is not None
        remaining = max(0.0, s._expected - s._bytes)
        deadline = s._deadline
        if remaining <= 0:
            return 0.0, _INF, 0.0
        if now_dt >= deadline:
            return _INF, 0.0, remaining
        session_cap = _INF if s._bucket is None else s._bucket.rate
        allowed_seconds = 0.0
        capacity = 0.0
        t = now_dt
        first = True
        for _ in range(10_000):
            if self._calendar is None:
                end, level, cap = deadline, Level.OPEN, _INF
            else:
                w = self._calendar.at(t)
                end = deadline if w.end is None else min(w.end, deadline)
                level = Level(w.level)
                cap = _INF if w.rate is None else float(w.rate)
            span = (end - t).total_seconds()
            if level is not Level.BLACKOUT:
                allowed_seconds += span
                rate = current_rate if first else min(self._rate, cap, session_cap)
                capacity += rate * span if rate < _INF else _INF
            first = False
            if end >= deadline or end <= t:
                break
            t = end
        needed = remaining / allowed_seconds if allowed_seconds > 0 else _INF
        return needed, capacity, remaining

    def _window_deadline(self, now_dt: datetime) -> datetime | None:
        """When the calendar next becomes more restrictive than now ("window" deadline)."""
        if self._calendar is None:
            return None
        w = self._calendar.at(now_dt)
        level = Level(w.level)
        t = w.end
        for _ in range(1000):
            if t is None:
                return None
            nxt = self._calendar.at(t)
            if Level(nxt.level) > level:
                return cast("datetime", t)
            t = nxt.end
        return None

    def _blackout_end(self, now_dt: datetime) -> datetime | None:
        """When the BLACKOUT in force now ends (adjacent blackouts merged)."""
        if self._calendar is None:
            return now_dt
        t = now_dt
        for _ in range(1000):
            w = self._calendar.at(t)
            if Level(w.level) is not Level.BLACKOUT:
                return t
            if w.end is None:
                return None
            t = w.end
        return None

    # -- events and alerts --------------------------------------------------------------

    def _fire(
        self,
        key: str,
        severity: Severity,
        summary: str,
        at: datetime | None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        alert = Alert(
            f"wedguard/{key}",
            severity,
            summary,
            labels={"component": "guard", **(labels or {})},
            started_at=at,
        )
        self._firing[key] = alert
        self._emit(alert)

    def _resolve(self, key: str) -> None:
        alert = self._firing.pop(key, None)
        if alert is not None:
            self._emit(alert.resolved(self._clock.now()))

    def _on_breaker(self, event: Any) -> None:
        """Breaker listener: forward the transition, alert while it is open."""
        self._emit(event)
        new = str(getattr(event.new, "name", event.new)).upper()
        name = str(getattr(event, "breaker", getattr(self._breaker, "name", "breaker")))
        key = f"breaker/{name}"
        why = getattr(event, "reason", "") or ""
        retry = 0.0
        if new == "OPEN":
            with contextlib.suppress(Exception):
                retry = float(getattr(self._breaker, "retry_after", 0.0))
        with self._cond:
            if new == "OPEN":
                self._circuit = (
                    f"circuit {name!r} is open ({why or 'failures'}): protected calls fail "
                    "until it tries again"
                )
                self._circuit_due = self._now() + retry
            elif new == "HALF_OPEN":
                self._circuit = f"circuit {name!r} is half-open: a trial call decides"
                self._circuit_due = _INF
            else:
                self._circuit = ""
                self._circuit_due = _INF
            self._refresh_locked(self._now(), sampled=True)
            if new == "OPEN" and key not in self._firing:
                reason = getattr(event, "reason", "") or "failures"
                self._fire(key, Severity.HIGH, f"circuit {name!r} opened: {reason}", event.at)
            elif new == "CLOSED" and key in self._firing:
                self._resolve(key)

    def _emit(self, event: Event) -> None:
        """Hand an event to the sinks: synchronously inline, else through a queue."""
        if not self._sinks:
            return
        if not self._background:
            self._deliver(event)
            return
        with self._ev_cond:
            if len(self._events) == self._events.maxlen:
                self._dropped += 1
                if self._dropped == 1 or self._dropped % 1000 == 0:
                    log.warning(
                        "sinks fall behind: %d events dropped (the oldest first)", self._dropped
                    )
            self._events.append(event)
            if self._deliverer is None:
                deliverer = threading.Thread(
                    target=self._delivery_loop, name="wedguard-events", daemon=True
                )
                try:
                    deliverer.start()
                except RuntimeError:  # the interpreter is shutting down: flush() delivers
                    pass
                else:
                    self._deliverer = deliverer
            self._ev_cond.notify_all()

    def _deliver(self, event: Event) -> None:
        for sink in self._sinks:
            try:
                sink.emit(event)
            except Exception:
                log.exception("sink %r failed on a %s event", sink, event.kind)

    def _delivery_loop(self) -> None:
        while True:
            with self._ev_cond:
                if not self._events:
                    self._ev_cond.wait(2.0)
                if not self._events:
                    self._deliverer = None
                    self._ev_cond.notify_all()
                    return
                event = self._events.popleft()
                self._delivering = True
            try:
                self._deliver(event)
            finally:
                with self._ev_cond:
                    self._delivering = False
                    self._ev_cond.notify_all()

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Wait (real time) until every queued event reached the sinks; False on timeout.

        Events left with no delivery thread to take them (one could not be started as
        the interpreter shuts down) are delivered by the caller.
        """
        with self._ev_cond:
            alive = self._deliverer is not None and self._deliverer.is_alive()
            if alive or self._delivering:
                return self._ev_cond.wait_for(
                    lambda: not self._events and not self._delivering, timeout
                )
            pending = list(self._events)
            self._events.clear()
        for event in pending:
            self._deliver(event)
        return True

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
        breaker: BreakerLike | _Default | None = DEFAULT,
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
        breaker: BreakerLike | _Default | None = DEFAULT,
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
        with self._cond:
            self._stop_sampler()
            sampler = self._sampler
        if sampler is not None and sampler is not threading.current_thread():
            sampler.join(timeout=1.0)
        self._close_control()
        with contextlib.suppress(ValueError):  # not the main thread: nothing installed
            self.uninstall_signal_handlers()
        done = self._flush_all(timeout)
        for src in self._sources:
            close = getattr(src, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()
        self._closed = True
        _atexit.forget(self)
        return done

    def _flush_all(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        done = self.flush(left())
        for sink in self._sinks:
            flush = getattr(sink, "flush", None)
            if not callable(flush):
                continue
            try:
                if flush(timeout=left()) is False:
                    done = False
            except TypeError:  # a flush() without a timeout
                flush()
            except Exception:
                log.exception("sink %r failed to flush", sink)
                done = False
        if not done:
            log.warning("events were still undelivered when the guard closed")
        return done

    def _close_at_exit(self) -> None:
        """Interpreter exit: deliver what is queued, within 5 s."""
        self.close(timeout=5.0)

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        d = self._decision
        return (
            f"Guard(rate={format_rate(self._rate)}, level={d.level.name}, "
            f"verdict={d.verdict.name}, allowed={format_rate(d.rate)}, "
            f"sessions={len(self._active)}/{self._max_concurrent or 'unlimited'}"
            + (", stopped" if self._stopped else "")
            + ")"
        )

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
        with self._cond:
            self._rate = value
            # an operator's rate holds at once: the controller starts from it
            now = self._now()
            ceiling = min(value, self._calendar_cap())
            start = getattr(self._controller, "start_from", None)
            if callable(start):
                start(ceiling, now)
            elif self._controller is not None:
                self._controller.reset()
            self._allowed, self._allowed_free = ceiling, True
            self._refresh_locked(now, sampled=True)

    def release_hold(self) -> None:
        """Lift :meth:`hold` only (a :meth:`stop` stays in force)."""
        with self._cond:
            self._held = ""
            self._refresh_locked(self._now(), sampled=True)

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


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


# types of the delegating methods (run, popen, serve_control): no import at run time
import typing as _typing  # noqa: E402

if _typing.TYPE_CHECKING:
    from wedguard.io.process import GuardedCompletedProcess, GuardedProcess
    from wedguard.runtime.control_socket import ControlServer
