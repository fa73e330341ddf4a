"""Duty cycles on cumulative counters: how long a guarded child must stay stopped.

The pure part of pacing a child process (:class:`~wedguard.io.child.GuardedProcess`):
its bytes read and written, and its CPU seconds, are charged to token buckets
(:class:`DutyCycle`), and the child is stopped while one is in debt or while the
guard's decision pauses (:class:`ChildPacer`). Readings and times are passed in;
nothing sleeps.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

from wedguard.errors import ConfigError
from wedguard.levels import Level, Verdict
from wedguard.units import format_rate, parse_rate

if TYPE_CHECKING:
    from wedguard.decision import Decision

__all__ = ["ChildPacer", "DutyCycle", "guard_pause_cause"]

_INF: Final = math.inf
DUTY_PERIOD: Final = 0.2
"""Seconds' worth of budget a child stopped for its rate (or CPU share) gets before it
runs again: it then runs and stops a few times a second (see ``ChildPacer``)."""
MAX_STOPPED_TICK: Final = 0.5
"""The longest the monitor sleeps while the child is stopped for its budget."""


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


def guard_pause_cause(d: Decision) -> str | None:
    """Why the guard's decision ``d`` pauses a child (``"stop"``, ``"calendar"``,
    ``"impact"``), or None when it may run."""
    if d.stopped or d.on_hold:
        return "stop"
    if d.level is Level.BLACKOUT:
        return "calendar"
    if d.verdict is Verdict.HALT or d.rate <= 0:
        return "impact" if d.verdict is not Verdict.OK else "calendar"
    return None


class ChildPacer:
    """What a guarded child should do now, from the guard's decision and its counters.

    Two :class:`DutyCycle` buckets: the child's I/O against the decision's rate (capped
    by ``io_cap``), its CPU seconds against its share of the machine (the calendar
    window's ``cpu_share``, else ``cpu_share`` at PEAK and above). :meth:`step` answers
    why the child must be stopped (or None) and when to look again. Pure.

    Args:
        io_cap: the child's own byte-rate cap (``math.inf``: the guard's rate only).
        cpu_share: its share of the machine at PEAK (None: no cap).
        ncpu: the machine's CPUs.
        interval: seconds between readings while something limits the child.
    """

    __slots__ = ("_cpu_share", "_interval", "_io_cap", "_last", "_speed", "cpu", "io", "ncpu")

    def __init__(self, io_cap: float, cpu_share: float | None, ncpu: int, interval: float) -> None:
        self.io = DutyCycle(_INF, burst_seconds=DUTY_PERIOD * 1.25)
        self.cpu = DutyCycle(_INF, burst_seconds=DUTY_PERIOD * 1.25)
        self.ncpu = ncpu
        self._io_cap = io_cap
        self._cpu_share = cpu_share
        self._interval = interval
        self._speed = 0.0  # the child's I/O speed while running, to stop it near its budget
        self._last = 0.0

    def step(
        self,
        d: Decision,
        now: float,
        io_used: float,
        cpu_used: float,
        *,
        grown: float,
        stopped: str | None,
        released: bool = False,
    ) -> tuple[str | None, float]:
        """Why the child must be stopped now (None: it may run) and the seconds until
        the next reading.

        ``io_used`` and ``cpu_used`` are the child's counters at ``now``; ``grown`` is
        how much ``io_used`` grew since the last step; ``stopped`` why the child is
        stopped now (None while it runs). A ``released`` child (being ended, or resumed
        for good) is never stopped again.
        """
        if stopped is None and now > self._last:
            speed = grown / (now - self._last)
            self._speed = speed if self._speed <= 0 else 0.7 * self._speed + 0.3 * speed
        self._last = now
        rate = min(d.rate, self._io_cap)
        if rate != self.io.rate:
            self.io.set_rate(rate if rate > 0 else _INF)
        wait_io = self._resume_credit(self.io, stopped == "rate", self.io.update(now, io_used))
        share = d.cpu_share
        if share is None and d.level >= Level.PEAK:
            share = self._cpu_share
        cpu_rate = _INF if share is None else share * self.ncpu
        if cpu_rate != self.cpu.rate:
            self.cpu.set_rate(cpu_rate)
        wait_cpu = self._resume_credit(self.cpu, stopped == "cpu", self.cpu.update(now, cpu_used))
        cause = guard_pause_cause(d)
        wait = 0.0
        if cause is None and wait_cpu > 0:
            cause, wait = "cpu", wait_cpu
        if cause is None and wait_io > 0:
            cause, wait = "rate", wait_io
        if released:
            cause = None
        return cause, self._tick(cause, wait, rate, cpu_rate)

    def _tick(self, cause: str | None, wait: float, rate: float, cpu_rate: float) -> float:
        """Seconds until the next reading."""
        limiting = cause is not None or rate < _INF or cpu_rate < _INF
        tick = self._interval if limiting else self._interval * 5
        if cause in ("rate", "cpu"):
            # stopped for a known time: nothing to read until then (a new decision
            # wakes the monitor sooner)
            return min(max(wait, 0.002), MAX_STOPPED_TICK)
        if cause is None and rate < _INF:
            # run until the credit is likely spent, then look again
            spend = self.io.tokens / self._speed if self._speed > 0 else self._interval / 5
            return min(max(spend, 0.002), tick)
        return tick

    @staticmethod
    def _resume_credit(cycle: DutyCycle, held: bool, wait: float) -> float:
        """Hysteresis: a child stopped for its budget (``held``) stays stopped until it
        has ``DUTY_PERIOD`` seconds' worth of credit, so that it runs and stops a few
        times a second instead of at every reading (each stop and resume costs the
        guarding process signals and readings; the long-run rate is the same)."""
        if wait > 0 or not held or not 0 < cycle.rate < _INF:
            return wait
        missing = cycle.rate * DUTY_PERIOD - cycle.tokens
        return missing / cycle.rate if missing > 1e-9 * cycle.rate else 0.0
