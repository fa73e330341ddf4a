"""Rate controllers: from successive assessments to an allowed rate.

A controller is told each :class:`~wedguard.Assessment`, the current ceiling (the
configured rate or the calendar's cap) and the time, and answers with the rate the
backup may use now, in the caller's units per second:

* ``HALT`` -> ``0.0``;
* otherwise a rate in ``[floor, ceiling]`` (the floor is a trickle, so the backup always
  progresses unless halted, as Windows BITS does; a ceiling below the floor wins).

Two controllers ship:

* :class:`AIMDController`: additive increase while OK, multiplicative decrease on
  THROTTLE (by default proportional to how far over the limit production is, never by
  more than ``decrease``), with a minimum dwell time between changes.
* :class:`LedbatController`: delay-based, in the spirit of LEDBAT (RFC 6817): it steers
  the assessment's ``load`` (measured impact / allowed impact) towards a ``target``
  below 1, with a ``gain``, and optionally subtracts a base-load history.

An infinite ceiling (``math.inf``: "no cap") is handled the same way by both: while
production is fine and nothing has throttled yet the controller returns ``math.inf``;
the first time it must slow down it starts from ``initial`` (or ``max_rate``, or the
floor) and works from there.

Both are pure: no clock of their own, time is the ``now`` argument.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import math
from collections import deque
from typing import Protocol, runtime_checkable

from wedguard.errors import ConfigError
from wedguard.levels import Verdict
from wedguard.policy.impact import Assessment
from wedguard.units import parse_rate

__all__ = ["AIMDController", "LedbatController", "RateController"]


@runtime_checkable
class RateController(Protocol):
    """Maps successive assessments to an allowed rate.

    ``update`` returns units per second within ``[floor, ceiling]`` (``0.0`` on HALT);
    ``ceiling`` may be ``math.inf``. ``reset`` forgets everything learnt.
    """

    def update(self, assessment: Assessment, *, ceiling: float, now: float) -> float: ...

    def reset(self) -> None: ...


def _rate(field: str, value: object, *, allow_zero: bool = True) -> float:
    if isinstance(value, str):
        r = parse_rate(value, field=field)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(field, value, "a rate (units per second) such as 1000 or '1MB/s'")
    else:
        r = float(value)
    if not (r >= 0 if allow_zero else r > 0) or math.isnan(r):
        raise ConfigError(field, value, "a rate >= 0" if allow_zero else "a rate > 0")
    return r


def _opt_rate(field: str, value: object) -> float | None:
    if value is None:
        return None
    r = _rate(field, value, allow_zero=False)
    if math.isinf(r):
        raise ConfigError(field, value, "a finite rate > 0 or None")
    return r


def _fraction(field: str, value: object, lo: float, hi: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo < value < hi:
        raise ConfigError(field, value, what)
    return float(value)


def _seconds(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ConfigError(field, value, "a duration in seconds >= 0")
    return float(value)


def _check_update(ceiling: float, now: float) -> None:
    if isinstance(ceiling, bool) or not isinstance(ceiling, (int, float)) or not ceiling >= 0:
        raise ConfigError("ceiling", ceiling, "a rate >= 0 or math.inf")
    if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
        raise ConfigError("now", now, "a finite monotonic time in seconds")


class _Base:
    __slots__ = (
        "_halted",
        "_last_change",
        "_observed",
        "_rate",
        "floor",
        "initial",
        "max_rate",
        "min_dwell",
    )

    floor: float
    initial: float | None
    max_rate: float | None
    min_dwell: float
    _rate: float | None
    _last_change: float
    _halted: bool
    _observed: float | None
    decrease: float  # a slot of each controller

    def _setup(self, floor: object, initial: object, max_rate: object, min_dwell: object) -> None:
        self.floor = _rate("floor", floor)
        if math.isinf(self.floor):
            raise ConfigError("floor", floor, "a finite rate >= 0")
        self.initial = _opt_rate("initial", initial)
        self.max_rate = _opt_rate("max_rate", max_rate)
        if self.max_rate is not None and self.max_rate < self.floor:
            raise ConfigError("max_rate", max_rate, f"a rate >= floor ({self.floor:g})")
        self.min_dwell = _seconds("min_dwell", min_dwell)
        self.reset()

    def reset(self) -> None:
        """Forget the current rate: the next update starts afresh."""
        self._rate = None
        self._last_change = -math.inf
        self._halted = False
        self._observed = None

    def start_from(self, rate: float, now: float) -> None:
        """Take ``rate`` as the current rate at ``now``, as an operator set it.

        The next update works from it (an OK verdict keeps it, a THROTTLE cuts from
        it) instead of climbing back from wherever the controller was; a HALT in
        progress resumes at it. The dwell time starts again at ``now``.

        >>> c = AIMDController(increase=100, min_dwell=20)
        >>> from wedguard import Assessment, Verdict
        >>> c.update(Assessment(Verdict.THROTTLE), ceiling=1000, now=0)
        500.0
        >>> c.start_from(1000, now=1)
        >>> c.update(Assessment(Verdict.OK), ceiling=1000, now=2)
        1000.0

        .. versionadded:: 0.2.0
        """
        _check_update(rate, now)
        self._rate = float(rate)
        self._last_change = now

    def observe(self, rate: float) -> None:
        """Tell the controller the rate the backup actually achieved (units/s).

        With no finite ceiling (``Guard(rate="off")``), the first cut starts from this
        rate instead of from the floor. The guard calls it at every sample.
        """
        if isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 < rate < math.inf:
            self._observed = float(rate)

    @property
    def rate(self) -> float | None:
        """The rate last returned (None before the first update)."""
        return self._rate

    def _cap(self, ceiling: float) -> float:
        return ceiling if self.max_rate is None else min(ceiling, self.max_rate)

    def _start(self, cap: float) -> float:
        """The rate to work from when there is none, or it is infinite."""
        for r in (self.initial, self.max_rate):
            if r is not None:
                return min(r, cap)
        if math.isfinite(cap):
            return cap
        # uncapped: cut from what the backup achieved, not from the floor
        return max(self.floor, self._observed or 1.0)

    def _clamp(self, rate: float, cap: float) -> float:
        return min(max(rate, self.floor), cap)

    def _halt(self, now: float) -> float:
        """A HALT verdict: 0.0 now, and the rate to come back from when it ends.

        The first HALT in a row cuts the rate by ``decrease`` (or starts from
        ``initial``, else the floor, when there was no finite rate).
        """
        if not self._halted:
            r = self._rate
            self._rate = (
                max(self.floor, r * self.decrease)
                if r is not None and math.isfinite(r)
                else (self.initial if self.initial is not None else self.floor)
            )
        self._halted = True
        self._last_change = now
        return 0.0


class AIMDController(_Base):
    """Additive increase, multiplicative decrease, with a minimum dwell time.

    Args:
        floor: the trickle the backup keeps unless halted (units/s, or rate text).
        increase: units/s added after each dwell period of OK assessments. ``None``
            (default): 5 % of the ceiling (or of the rate in use when uncapped).
        decrease: the largest cut: on THROTTLE the rate is multiplied by at least
            this factor (default 0.5).
        min_dwell: seconds the rate holds after a change before it may change again
            (default 20: the analyser's 20-sample window at 1 Hz must see the effect).
        proportional: cut in proportion to the excess, like DCTCP: by
            ``margin / load`` when the assessment's ``load`` is known and above 1,
            never by more than ``decrease``. Without a load, the first cut near the
            rate at which production last complained is to ``margin`` of it, a second
            cut in a row by ``decrease``. ``False`` always cuts by ``decrease``.
        margin: the fraction of the estimated safe rate to aim for on a cut (0.95).
        ok_needed: consecutive OK assessments needed before an increase (hysteresis).
        initial: the first rate (default: the ceiling).
        max_rate: a cap of its own, below every ceiling.

    Example::

        >>> from wedguard import Assessment, Verdict
        >>> c = AIMDController(floor=10, increase=100, decrease=0.5, min_dwell=5)
        >>> c.update(Assessment(Verdict.OK), ceiling=1000, now=0)
        1000.0
        >>> c.update(Assessment(Verdict.THROTTLE), ceiling=1000, now=1)
        500.0
        >>> c.update(Assessment(Verdict.OK), ceiling=1000, now=3)    # dwelling
        500.0
        >>> c.update(Assessment(Verdict.OK), ceiling=1000, now=6)
        600.0
        >>> c.update(Assessment(Verdict.HALT), ceiling=1000, now=7)
        0.0
    """

    __slots__ = (
        "_cuts_in_row",
        "_known_bad",
        "_last_decrease",
        "_ok_run",
        "decrease",
        "increase",
        "margin",
        "ok_needed",
        "proportional",
    )

    def __init__(
        self,
        floor: float | str = 1.0,
        increase: float | str | None = None,
        decrease: float = 0.5,
        min_dwell: float = 20.0,
        *,
        proportional: bool = True,
        margin: float = 0.95,
        ok_needed: int = 1,
        initial: float | str | None = None,
        max_rate: float | str | None = None,
    ) -> None:
        self.increase = None if increase is None else _opt_rate("increase", increase)
        self.decrease = _fraction("decrease", decrease, 0.0, 1.0, "a factor in (0, 1)")
        self.margin = _fraction("margin", margin, 0.0, 1.0, "a fraction in (0, 1)")
        if isinstance(ok_needed, bool) or not isinstance(ok_needed, int) or ok_needed < 1:
            raise ConfigError("ok_needed", ok_needed, "an integer >= 1")
        self.ok_needed = ok_needed
        self.proportional = bool(proportional)
        self._setup(floor, initial, max_rate, min_dwell)

    def reset(self) -> None:
        super().reset()
        self._ok_run = 0
        self._last_decrease = -math.inf
        self._known_bad: float | None = None
        self._cuts_in_row = 0

    def update(self, assessment: Assessment, *, ceiling: float, now: float) -> float:
        """The allowed rate after ``assessment``, at monotonic time ``now``."""
        _check_update(ceiling, now)
        verdict = assessment.verdict
        if verdict >= Verdict.HALT:
            # production is in trouble: come back from a fraction of the old rate
            self._ok_run = 0
            return self._halt(now)
        cap = self._cap(ceiling)
        if cap <= self.floor:
            return float(cap)
        rate = self._rate
        if rate is None:
            rate = self.initial if self.initial is not None else cap
            self._last_change = now
        self._halted = False
        if verdict == Verdict.THROTTLE:
            self._ok_run = 0
            if now - self._last_decrease >= self.min_dwell:
                if math.isinf(rate):
                    rate = self._start(cap)
                factor = self.decrease
                load = getattr(assessment, "load", math.nan)  # a host's own assessment may lack it
                known = self._known_bad
                if self.proportional and load > 1 and math.isfinite(load):
                    factor = max(self.decrease, min(self.margin, self.margin / load))
                elif (
                    self.proportional
                    and known is not None
                    and self._cuts_in_row == 0
                    and rate >= 0.8 * known
                ):
                    # no measure of the excess, but the same limit as last time: step
                    # just below it; a second cut in a row is a full one
                    factor = self.margin
                self._cuts_in_row += 1
                self._known_bad = rate
                rate = rate * factor
                self._last_change = self._last_decrease = now
        else:
            self._ok_run += 1
            if (
                math.isfinite(rate)
                and self._ok_run >= self.ok_needed
                and now - self._last_change >= self.min_dwell
            ):
                step = self.increase
                if step is None:
                    ref = self._known_bad if self._known_bad is not None else cap
                    step = 0.05 * (ref if math.isfinite(ref) else rate)
                if rate < cap:
                    rate = rate + step
                    self._last_change = now
                    self._cuts_in_row = 0
        rate = self._clamp(rate, cap)
        self._rate = rate
        return float(rate)

    def __repr__(self) -> str:
        return (
            f"AIMDController(floor={self.floor:g}, increase={self.increase}, "
            f"decrease={self.decrease:g}, min_dwell={self.min_dwell:g}, rate={self._rate})"
        )


class LedbatController(_Base):
    """A delay-based controller in the spirit of LEDBAT (RFC 6817).

    LEDBAT measures the queuing delay (current delay minus the base delay), compares it
    with a target and grows or shrinks its window in proportion to the distance from
    the target. Here the "delay" is the assessment's ``load``: the measured impact as a
    fraction of the allowed impact (1.0 = exactly at the limit). Each update, once
    ``min_dwell`` has passed, multiplies the rate by
    ``1 + gain * (target - (load - base)) / target``, bounded to
    ``[decrease, 1 + max_increase]``. So the rate settles where the load equals
    ``target``: just under the limit, without the sawtooth of AIMD.

    THROTTLE always shrinks the rate (at least by ``1 - gain * 0.1``); HALT returns 0.

    Args:
        target: the load to aim for (0.9: 90 % of the allowed impact).
        gain: how strongly the rate reacts to the distance from the target.
        floor: the trickle kept unless halted.
        min_dwell: seconds between changes (default 20, as for AIMD).
        max_increase: the largest relative increase per change (0.25 = +25 %).
        decrease: the smallest factor per change (0.5 = at most halved).
        base_history: how many ``base_interval`` periods of minimum load to keep as
            the "base load" subtracted before comparing with the target (RFC 6817's
            base-delay history). ``0`` (the default) trusts the analyser's baseline.
        base_interval: seconds per base-history period.
        initial: the first rate (default: the ceiling).
        max_rate: a cap of its own.

    Example::

        >>> from wedguard import Assessment, Verdict
        >>> c = LedbatController(target=0.9, gain=0.5, min_dwell=0)
        >>> c.update(Assessment(Verdict.OK, load=0.45), ceiling=1000, now=0)
        1000.0
        >>> c.update(Assessment(Verdict.THROTTLE, load=1.8), ceiling=1000, now=1)
        500.0
        >>> c.update(Assessment(Verdict.OK, load=0.9), ceiling=1000, now=2)
        500.0
    """

    __slots__ = (
        "_bases",
        "_cur_base",
        "_cur_base_start",
        "base_history",
        "base_interval",
        "decrease",
        "gain",
        "max_increase",
        "target",
    )

    def __init__(
        self,
        target: float = 0.9,
        gain: float = 0.5,
        floor: float | str = 1.0,
        min_dwell: float = 20.0,
        *,
        max_increase: float = 0.25,
        decrease: float = 0.5,
        base_history: int = 0,
        base_interval: float = 60.0,
        initial: float | str | None = None,
        max_rate: float | str | None = None,
    ) -> None:
        self.target = _fraction("target", target, 0.0, math.inf, "a target load > 0")
        self.gain = _fraction("gain", gain, 0.0, 10.0, "a gain in (0, 10)")
        self.max_increase = _fraction(
            "max_increase", max_increase, 0.0, 10.0, "a fraction in (0, 10)"
        )
        self.decrease = _fraction("decrease", decrease, 0.0, 1.0, "a factor in (0, 1)")
        if isinstance(base_history, bool) or not isinstance(base_history, int) or base_history < 0:
            raise ConfigError("base_history", base_history, "an integer >= 0")
        self.base_history = base_history
        self.base_interval = _fraction("base_interval", base_interval, 0.0, math.inf, "seconds > 0")
        self._setup(floor, initial, max_rate, min_dwell)

    def reset(self) -> None:
        super().reset()
        self._bases: deque[float] = deque(maxlen=max(self.base_history, 1))
        self._cur_base = math.inf
        self._cur_base_start = -math.inf

    @property
    def base(self) -> float:
        """The base load subtracted before comparing with the target (0 when off)."""
        if not self.base_history:
            return 0.0
        b = min([*self._bases, self._cur_base])
        return max(b, 0.0) if math.isfinite(b) else 0.0

    def _track_base(self, load: float, now: float) -> None:
        if not self.base_history or not math.isfinite(load):
            return
        if now - self._cur_base_start >= self.base_interval:
            if math.isfinite(self._cur_base):
                self._bases.append(self._cur_base)
            self._cur_base = load
            self._cur_base_start = now
        else:
            self._cur_base = min(self._cur_base, load)

    def update(self, assessment: Assessment, *, ceiling: float, now: float) -> float:
        """The allowed rate after ``assessment``, at monotonic time ``now``."""
        _check_update(ceiling, now)
        verdict = assessment.verdict
        if verdict >= Verdict.HALT:
            return self._halt(now)
        cap = self._cap(ceiling)
        if cap <= self.floor:
            return float(cap)
        load = getattr(assessment, "load", math.nan)  # a host's own assessment may lack it
        if math.isnan(load):
            load = 0.0
        self._track_base(load, now)
        queuing = load - self.base
        off_target = (self.target - queuing) / self.target
        if verdict == Verdict.THROTTLE:
            off_target = min(off_target, -0.1)
        rate = self._rate
        fresh = rate is None
        if rate is None:
            rate = self.initial if self.initial is not None else cap
            self._last_change = now
        self._halted = False
        if (now - self._last_change >= self.min_dwell) and not (fresh and off_target >= 0):
            if math.isinf(rate):
                if off_target < 0:
                    rate = self._start(cap)
                    self._last_change = now
            elif rate < cap or off_target < 0:
                if rate <= 0 < off_target:  # a zero floor: restart from a sliver of the cap
                    rate = 0.01 * cap if math.isfinite(cap) else 1.0
                factor = 1.0 + self.gain * off_target
                factor = min(max(factor, self.decrease), 1.0 + self.max_increase)
                if factor != 1.0:
                    rate = rate * factor
                    self._last_change = now
        rate = self._clamp(rate, cap)
        self._rate = rate
        return float(rate)

    def __repr__(self) -> str:
        return (
            f"LedbatController(target={self.target:g}, gain={self.gain:g}, floor={self.floor:g}, "
            f"min_dwell={self.min_dwell:g}, rate={self._rate})"
        )
