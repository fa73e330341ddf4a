"""A guard's arguments, checked and completed with wedguard's defaults.

:func:`guard_settings` takes what :class:`~wedguard.Guard` was given and returns one
frozen :class:`GuardSettings`, or raises :class:`~wedguard.ConfigError` naming the
argument and its value, at construction time. The defaults are built here: the
calendar (06:00-22:00 PEAK), the system source, the impact analyser, the AIMD
controller, the breaker and the logging sink. A default whose module fails to import
raises: a broken installation never leaves a guard silently without a policy.
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import attrs

from wedguard import _checks, _fs
from wedguard.clock import Clock, SystemClock, check_clock
from wedguard.errors import ConfigError
from wedguard.interfaces import Analyzer, Breaker, Calendar, Controller, Sink, Source
from wedguard.io.priority import check_cpus, check_nice, check_sched_idle
from wedguard.runtime.defaults import (
    CPUS,
    MAX_INTERVAL,
    MAX_SLOT_TIMEOUT,
    MIN_INTERVAL,
    MIN_RATE,
)
from wedguard.units import parse_duration, parse_rate

__all__ = [
    "DEFAULT",
    "MAX_INTERVAL",
    "MAX_SLOT_TIMEOUT",
    "MIN_INTERVAL",
    "MIN_RATE",
    "GuardSettings",
    "guard_settings",
]

_INF: Final = math.inf


class _Default(enum.Enum):
    DEFAULT = "DEFAULT"


DEFAULT: Final = _Default.DEFAULT
"""Sentinel: "use wedguard's default" for a Guard argument (None means "none")."""


@attrs.frozen(slots=True, kw_only=True)
class GuardSettings:
    """A guard's arguments once checked; see :class:`~wedguard.Guard` for each.

    Durations are seconds; ``max_hold`` is ``math.inf`` for no limit; ``warmup_n``
    is how many samples the baseline warm-up takes (0: none); ``stop_file`` is a
    plain string.
    """

    clock: Clock
    rate: float
    ops_rate: float
    calendar: Calendar | None
    sources: tuple[Source, ...]
    analyzer: Analyzer | None
    controller: Controller | None
    breaker: Breaker | None
    sinks: tuple[Sink, ...]
    name: str
    nice: int
    ionice: bool
    sched_idle: bool
    cpus: frozenset[int] | None
    child_cpus: frozenset[int] | None
    shaper: Any
    coordinator: Any
    max_concurrent: int | None
    stop_file: str | None
    interval: float
    stop_interval: float
    slot_timeout: float | None
    max_hold: float
    warmup_n: int
    background: bool


def _clock_and_rates(clock: Any, rate: Any, ops_rate: Any) -> tuple[Clock, float, float]:
    the_clock = check_clock(clock)
    for method in ("monotonic", "now", "sleep"):
        if not callable(getattr(the_clock, method, None)):
            raise ConfigError("clock", clock, "a Clock (monotonic, now, sleep)")
    value = parse_rate(rate, field="rate")
    if not value >= MIN_RATE:
        raise ConfigError("rate", rate, f"a rate >= {MIN_RATE:g}/s ('off' for unlimited)")
    ops = _INF if ops_rate is None else parse_rate(ops_rate, field="ops_rate")
    if not ops >= MIN_RATE:
        raise ConfigError("ops_rate", ops_rate, f"operations per second >= {MIN_RATE:g}, or None")
    return the_clock, value, ops


def _policies(
    clock: Clock, calendar: Any, sources: Any, analyzer: Any, controller: Any
) -> tuple[Calendar | None, tuple[Source, ...], Analyzer | None, Controller | None]:
    if calendar is DEFAULT:
        from wedguard.policy.calendar import PeakHourCalendar

        calendar = PeakHourCalendar.default(tz="UTC")
    elif calendar is not None and not callable(getattr(calendar, "at", None)):
        raise ConfigError("calendar", calendar, "a calendar with at(when) -> Window")
    if sources is None:
        from wedguard.sources import PressureSource, SystemSource  # psutil: when built

        # the host's CPU and I/O pressure: fast signals readable without setup; a kernel
        # without PSI is said once and not judged
        pressure = PressureSource(resources=("cpu", "io"), unreadable="unavailable")
        sources = [SystemSource(), pressure]
    srcs = tuple(_checks.items(sources, "sources", "a list of sources, or None"))
    for src in srcs:
        if not callable(getattr(src, "sample", None)):
            raise ConfigError("sources", src, "objects with sample() -> Mapping[str, float]")
    if analyzer is DEFAULT:
        from wedguard.policy.impact import ImpactAnalyzer, Thresholds

        analyzer = ImpactAnalyzer(Thresholds.with_fast_signals(), clock=clock) if srcs else None
    elif analyzer is not None and not callable(getattr(analyzer, "assess", None)):
        raise ConfigError("analyzer", analyzer, "an analyser with assess(sample, level)")
    if controller is DEFAULT:
        from wedguard.policy.controllers import AIMDController

        controller = AIMDController()
    elif controller is not None and not callable(getattr(controller, "update", None)):
        raise ConfigError("controller", controller, "a controller with update(...)")
    return calendar, srcs, analyzer, controller


def _identity(name: Any, nice: Any, ionice: Any, coordinator: Any) -> tuple[str, int, bool]:
    if not isinstance(name, str) or not name:
        raise ConfigError("name", name, "a non-empty string")
    niceness = check_nice(nice)
    if not isinstance(ionice, bool):
        raise ConfigError("ionice", ionice, "True or False")
    if coordinator is not None and not all(
        hasattr(coordinator, attr) for attr in ("bucket", "slots", "stop_flag", "link")
    ):
        raise ConfigError(
            "coordinator", coordinator, "a RedisCoordinator (bucket, slots, stop_flag, link)"
        )
    return name, niceness, ionice


def _breaker(breaker: Any, clock: Clock, coordinator: Any, name: str) -> Breaker | None:
    if breaker is not DEFAULT:
        if breaker is not None and not callable(getattr(breaker, "allow", None)):
            raise ConfigError("breaker", breaker, "a circuit breaker with allow()")
        return breaker  # type: ignore[no-any-return]
    from wedguard.policy.breaker import CircuitBreaker

    if coordinator is not None:  # one breaker state for the fleet
        storage = coordinator.breaker_storage(name)
        return CircuitBreaker(
            name="guard", clock=getattr(coordinator, "clock", clock), storage=storage
        )
    return CircuitBreaker(name="guard", clock=clock)


def _sinks(sinks: Any, log_events: Any) -> tuple[Sink, ...]:
    """The sinks given plus the logging sink (first), unless one is there already or
    ``log_events`` is False."""
    from wedguard.sinks.logging import LoggingSink

    given = [] if sinks is None else list(_checks.items(sinks, "sinks", "a list of sinks, or None"))
    for sink in given:
        if not callable(getattr(sink, "emit", None)):
            raise ConfigError("sinks", sink, "objects with emit(event)")
    if not isinstance(log_events, bool):
        raise ConfigError("log_events", log_events, "True or False")
    if not log_events or any(isinstance(s, LoggingSink) for s in given):
        return tuple(given)
    return (LoggingSink(), *given)


def _places(
    max_concurrent: Any, stop_file: Any, control_socket: Any
) -> tuple[int | None, str | None]:
    if max_concurrent is not None and (
        isinstance(max_concurrent, bool)
        or not isinstance(max_concurrent, int)
        or max_concurrent < 1
    ):
        raise ConfigError("max_concurrent", max_concurrent, "a whole number >= 1, or None")
    if stop_file is not None:
        _checks.path(stop_file, "stop_file", "a path, or None")
    if control_socket is not None:
        _checks.socket_path(control_socket, "control_socket")
    # a plain string: the sampler stats it every 100 ms
    path = None if stop_file is None else os.fspath(Path(stop_file))
    if path is not None:
        # nobody else's hand on the switch: a stop file where others can change it is
        # refused now; someone else's file found later is ignored and reported
        _fs.check_stop_location(path, field="stop_file")
    return max_concurrent, path


def _durations(
    sample_interval: Any,
    stop_check_interval: Any,
    slot_timeout: Any,
    max_hold: Any,
    baseline_warmup: Any,
    own_analyzer: bool,
) -> tuple[float, float, float | None, float, int]:
    interval = parse_duration(sample_interval, field="sample_interval")
    _checks.bounded(
        interval, "sample_interval", sample_interval, MIN_INTERVAL, MAX_INTERVAL, "seconds"
    )
    stop_interval = parse_duration(stop_check_interval, field="stop_check_interval")
    _checks.bounded(
        stop_interval, "stop_check_interval", stop_check_interval, MIN_INTERVAL,
        MAX_INTERVAL, "seconds",
    )  # fmt: skip
    slot = None if slot_timeout is None else parse_duration(slot_timeout, field="slot_timeout")
    if slot is not None:
        _checks.bounded(slot, "slot_timeout", slot_timeout, 0.0, MAX_SLOT_TIMEOUT, "seconds")
    hold = _INF if max_hold is None else parse_duration(max_hold, field="max_hold")
    if not hold > 0:
        raise ConfigError("max_hold", max_hold, "a duration > 0, or None")
    if baseline_warmup is DEFAULT:  # the guard's own analyser learns by itself
        baseline_warmup = "5s" if own_analyzer else None
    warmup = (
        0.0 if baseline_warmup is None else parse_duration(baseline_warmup, field="baseline_warmup")
    )
    if not 0 <= warmup < _INF:
        raise ConfigError("baseline_warmup", baseline_warmup, "a duration >= 0, or None")
    warmup_n = 0 if warmup == 0 else max(3, math.ceil(warmup / interval))
    return interval, stop_interval, slot, hold, warmup_n


def _shaper(value: object) -> Any:
    """The ``shaping`` argument as a Shaper, or None."""
    if value is None or value is False:
        return None
    if value is True:
        from wedguard.policy.probing import Shaper

        return Shaper()
    if not all(callable(getattr(value, a, None)) for a in ("observe", "paused", "allowed")):
        raise ConfigError("shaping", value, "a Shaper, True or None")
    return value


def guard_settings(
    *,
    rate: Any,
    calendar: Any,
    breaker: Any,
    analyzer: Any,
    sources: Iterable[Source] | None,
    sinks: Iterable[Sink] | None,
    max_concurrent: Any,
    stop_file: Any,
    clock: Any,
    controller: Any,
    ops_rate: Any,
    sample_interval: Any,
    stop_check_interval: Any,
    slot_timeout: Any,
    background: bool | None,
    control_socket: Any,
    coordinator: Any,
    name: Any,
    nice: Any,
    ionice: Any,
    log_events: Any,
    max_hold: Any,
    baseline_warmup: Any,
    sched_idle: Any = False,
    shaping: Any = None,
    cpus: Any = CPUS,
) -> GuardSettings:
    """Check a guard's arguments (in the order of the signature) and fill in defaults."""
    the_clock, the_rate, the_ops = _clock_and_rates(clock, rate, ops_rate)
    own_analyzer = analyzer is DEFAULT
    cal, srcs, the_analyzer, the_controller = _policies(
        the_clock, calendar, sources, analyzer, controller
    )
    the_name, the_nice, the_ionice = _identity(name, nice, ionice, coordinator)
    the_breaker = _breaker(breaker, the_clock, coordinator, the_name)
    the_sinks = _sinks(sinks, log_events)
    limit, path = _places(max_concurrent, stop_file, control_socket)
    interval, stop_interval, slot, hold, warmup_n = _durations(
        sample_interval, stop_check_interval, slot_timeout, max_hold, baseline_warmup,
        own_analyzer,
    )  # fmt: skip
    shaper = _shaper(shaping)
    cores = None if cpus == _checks.AUTO else check_cpus(cpus, expected=_checks.GUARD_CPUS)
    if shaper is not None:
        if the_analyzer is None or not srcs:
            raise ConfigError("shaping", shaping, "sources and an analyser (the defaults)")
        interval = min(interval, float(shaper.interval))
    return GuardSettings(
        clock=the_clock,
        rate=the_rate,
        ops_rate=the_ops,
        calendar=cal,
        sources=srcs,
        analyzer=the_analyzer,
        controller=the_controller,
        breaker=the_breaker,
        sinks=the_sinks,
        name=the_name,
        nice=the_nice,
        ionice=the_ionice,
        sched_idle=check_sched_idle(sched_idle),
        cpus=cores,
        child_cpus=check_cpus(_checks.ALL_BUT_ONE) if cpus == _checks.AUTO else cores,
        shaper=shaper,
        coordinator=coordinator,
        max_concurrent=limit,
        stop_file=path,
        interval=interval,
        stop_interval=stop_interval,
        slot_timeout=slot,
        max_hold=hold,
        warmup_n=warmup_n,
        background=isinstance(the_clock, SystemClock) if background is None else bool(background),
    )
