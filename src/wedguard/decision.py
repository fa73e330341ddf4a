"""What the guard decided: one immutable :class:`Decision` at a time.

The guard's background sampler turns the calendar, the impact analyser, the rate
controller and the emergency stop into a new :class:`Decision` whenever anything
changes; the pure engine that makes it is :mod:`wedguard.policy.decision`. The hot path (``s.throttle(n)``) only reads the current one; ``guard.decision()``
returns it to answer "why am I slow?".

A :class:`Decision` is also an event (``kind == "decision"``): the guard sends it to the
sinks on every change of level, rate, verdict or stop, with the reasons.

>>> from wedguard.levels import Level, Verdict
>>> d = Decision(level=Level.PEAK, rate=1_250_000.0, verdict=Verdict.OK,
...              reasons=("peak hours: cap 1.25 MB/s",))
>>> d.paused, d.to_dict()["level"]
(False, 'PEAK')
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import attrs

from wedguard.levels import Level, Verdict

__all__ = ["Decision"]


def _tuple_of_str(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value)


def _num(value: float | None) -> float | str | None:
    """JSON has no infinity: unlimited rates are written as the string ``"inf"``."""
    if value is None:
        return None
    return "inf" if math.isinf(value) else value


@attrs.frozen(slots=True)
class Decision:
    """How the backup may run right now, and why.

    Attributes:
        level: what the calendar allows now (``OPEN < PEAK < BLACKOUT``).
        rate: the allowed rate in bytes per second for the whole guard
            (``math.inf`` when nothing limits it, ``0.0`` while paused): the minimum of
            the configured rate, the calendar's cap and the controller's rate.
        verdict: what the impact analyser concluded (``OK < THROTTLE < HALT``).
        reasons: one line per constraint that shaped this decision, the binding one
            first.
        stopped: True after ``guard.stop()`` (or the stop file, or SIGUSR1):
            ``throttle()`` raises :class:`~wedguard.EmergencyStop`.
        stop_reason: why the guard was stopped or put on hold.
        on_hold: True after ``guard.hold()``: sessions wait (cause ``"stop"``) instead of
            raising, until ``guard.resume()``.
        ops_rate: the allowed operations per second (files, requests).
        window_start: when the calendar window in force began (None without a
            calendar).
        window_end: when the calendar window in force ends (None without a calendar
            or when it never ends).
        cpu_share: the calendar window's CPU share for the backup, if it sets one.
        needed_rate: the highest rate any running session with ``expected_bytes`` and
            a deadline needs to finish in time (None when no session has a deadline).
        at: when the decision was made (aware datetime), if known.
        signals: the metrics the impact analyser judged at its last sample,
            production's own latency first (it leads), then the fast signals (PSI,
            run-queue wait), then the backup's own figures.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.3.0 ``signals``.
    """

    level: Level = attrs.field(converter=Level)
    rate: float
    verdict: Verdict = attrs.field(converter=Verdict)
    reasons: tuple[str, ...] = attrs.field(default=(), converter=_tuple_of_str)
    stopped: bool = False
    stop_reason: str = ""
    on_hold: bool = False
    ops_rate: float = math.inf
    window_start: datetime | None = None
    window_end: datetime | None = None
    cpu_share: float | None = None
    needed_rate: float | None = None
    at: datetime | None = None
    signals: tuple[str, ...] = attrs.field(default=(), converter=_tuple_of_str)

    @property
    def kind(self) -> str:
        return "decision"

    @property
    def paused(self) -> bool:
        """True when no backup work may proceed now (stop, hold, blackout, halt, rate 0)."""
        return (
            self.stopped
            or self.on_hold
            or self.level is Level.BLACKOUT
            or self.verdict is Verdict.HALT
            or self.rate <= 0
        )

    def same_as(self, other: Decision | None) -> bool:
        """True when ``other`` says the same thing (ignoring ``at`` and ``needed_rate``)."""
        return (
            other is not None
            and self.level is other.level
            and self.rate == other.rate
            and self.ops_rate == other.ops_rate
            and self.verdict is other.verdict
            and self.stopped == other.stopped
            and self.on_hold == other.on_hold
            and self.reasons == other.reasons
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (``"inf"`` for unlimited rates)."""
        return {
            "kind": "decision",
            "at": None if self.at is None else self.at.isoformat(),
            "level": self.level.name,
            "rate": _num(self.rate),
            "ops_rate": _num(self.ops_rate),
            "verdict": self.verdict.name,
            "reasons": list(self.reasons),
            "stopped": self.stopped,
            "stop_reason": self.stop_reason,
            "on_hold": self.on_hold,
            "paused": self.paused,
            "window_start": None if self.window_start is None else self.window_start.isoformat(),
            "window_end": None if self.window_end is None else self.window_end.isoformat(),
            "cpu_share": self.cpu_share,
            "needed_rate": _num(self.needed_rate),
            "signals": list(self.signals),
        }

    def __str__(self) -> str:
        from wedguard.units import format_rate

        head = f"{self.level.name}/{self.verdict.name} at {format_rate(self.rate)}"
        if self.stopped:
            head += " (stopped)"
        elif self.on_hold:
            head += " (on hold)"
        return head + "".join(f"\n  - {r}" for r in self.reasons)
