"""What a session reports: :class:`SessionReport` and its parts, plain values.

The :class:`~wedguard.policy.ledger.Ledger` makes them; the guard sends the final
report to its sinks when a session ends.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

import attrs

from wedguard.levels import Level, Verdict
from wedguard.units import format_duration, format_rate, format_size

__all__ = ["CAUSES", "PEAK_WINDOW", "Pause", "SessionReport", "TimelinePoint", "peak_rate"]

CAUSES: Final = ("rate", "calendar", "impact", "slots", "stop")
"""The causes a session's waiting time is attributed to."""


@attrs.frozen(slots=True)
class TimelinePoint:
    """One point of a session's timeline, for plotting.

    Attributes:
        t: seconds since the session started.
        bytes: bytes throttled so far.
        rate: the rate allowed at that moment (bytes/s; ``inf`` unlimited; 0 paused).
        level: the calendar level.
        verdict: the impact verdict.
    """

    t: float
    bytes: float
    rate: float
    level: Level
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "bytes": self.bytes,
            "rate": "inf" if math.isinf(self.rate) else self.rate,
            "level": self.level.name,
            "verdict": self.verdict.name,
        }


@attrs.frozen(slots=True)
class Pause:
    """One stretch of time a session spent paused.

    Attributes:
        cause: ``"calendar"`` (blackout), ``"impact"`` (halt) or ``"stop"`` (hold).
        started_at: when it began (aware datetime).
        duration: how long it lasted, in seconds.
        reason: the decision's first reason at the time.
    """

    cause: str
    started_at: datetime
    duration: float
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "cause": self.cause,
            "started_at": self.started_at.isoformat(),
            "duration_s": self.duration,
            "reason": self.reason,
        }


def _freeze_waits(value: Mapping[str, float]) -> Mapping[str, float]:
    waits = dict.fromkeys(CAUSES, 0.0)
    waits.update(value)
    return MappingProxyType(waits)


@attrs.frozen(slots=True)
class SessionReport:
    """What a session did: bytes, time, time waited and why, rates, timeline.

    Also an event (``kind == "session"``): the guard sends the final report to its
    sinks when the session ends.

    Attributes:
        name: the session's name.
        bytes: bytes throttled (and so, by the host, written).
        ops: operations counted (files, requests).
        started_at: when the session started (aware datetime).
        finished_at: when it ended; None while it runs.
        duration: wall time in seconds (so far, while it runs).
        wait_seconds: seconds waited by cause: ``rate``, ``calendar``, ``impact``,
            ``slots``, ``stop``.
        pauses: how many times the session was paused (blackout, halt, hold).
        pause_log: those pauses, in order.
        peak_rate: the highest mean rate over any stretch of at least 5 s (bytes/s;
            the mean rate for shorter sessions).
        mean_rate: bytes / duration.
        ok: True unless the session ended with an error (a cutoff counts as ok).
        outcome: ``"running"``, ``"done"``, ``"cutoff"``, ``"stopped"`` or ``"error"``.
        error: the error's text, if any.
        expected_bytes: as declared, if any.
        deadline: the deadline (aware datetime), if any.
        needed_rate: the rate needed to meet the deadline, at the last sample.
        timeline: (t, bytes, allowed rate, level, verdict) points for plotting.

    Example::

        >>> from wedguard import Guard
        >>> from wedguard.testing import FakeClock
        >>> guard = Guard(rate="1MB/s", calendar=None, sources=[], sinks=[],
        ...               clock=FakeClock())
        >>> with guard.session("demo") as s:
        ...     for _ in range(10):
        ...         _ = s.throttle(500_000)
        >>> r = s.report()
        >>> r.bytes, r.duration, r.wait_seconds["rate"]
        (5000000.0, 4.5, 4.5)

    .. versionadded:: 0.1.0
    """

    name: str
    bytes: float
    ops: int
    started_at: datetime
    finished_at: datetime | None
    duration: float
    wait_seconds: Mapping[str, float] = attrs.field(converter=_freeze_waits)
    pauses: int
    pause_log: tuple[Pause, ...]
    peak_rate: float
    mean_rate: float
    ok: bool
    outcome: str
    error: str = ""
    expected_bytes: float | None = None
    deadline: datetime | None = None
    needed_rate: float | None = None
    timeline: tuple[TimelinePoint, ...] = ()

    @property
    def kind(self) -> str:
        return "session"

    @property
    def wall_time(self) -> float:
        """The session's wall time in seconds: deprecated, use :attr:`duration`.

        .. deprecated:: 0.2.0
           ``wall_time`` and ``duration`` were two names for one figure.
        """
        warnings.warn(
            "SessionReport.wall_time is deprecated: use SessionReport.duration",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.duration

    @property
    def waited(self) -> float:
        """Total seconds waited, all causes together."""
        return sum(self.wait_seconds.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (rates ``"inf"`` when unlimited)."""

        def num(v: float | None) -> float | str | None:
            return "inf" if v is not None and math.isinf(v) else v

        return {
            "kind": "session",
            "name": self.name,
            "bytes": self.bytes,
            "ops": self.ops,
            "started_at": self.started_at.isoformat(),
            "finished_at": None if self.finished_at is None else self.finished_at.isoformat(),
            "duration_s": self.duration,
            "wait_seconds": dict(self.wait_seconds),
            "pauses": self.pauses,
            "pause_log": [p.to_dict() for p in self.pause_log],
            "peak_rate": num(self.peak_rate),
            "mean_rate": num(self.mean_rate),
            "ok": self.ok,
            "outcome": self.outcome,
            "error": self.error,
            "expected_bytes": self.expected_bytes,
            "deadline": None if self.deadline is None else self.deadline.isoformat(),
            "needed_rate": num(self.needed_rate),
            "timeline": [p.to_dict() for p in self.timeline],
        }

    def __str__(self) -> str:
        waits = ", ".join(
            f"{k} {format_duration(v)}" for k, v in self.wait_seconds.items() if v > 0
        )
        return (
            f"{self.name}: {format_size(self.bytes)} in {format_duration(self.duration)} "
            f"(mean {format_rate(self.mean_rate)}, peak {format_rate(self.peak_rate)}); "
            f"waited {format_duration(self.waited)}"
            + (f" ({waits})" if waits else "")
            + f"; {self.outcome}"
        )


PEAK_WINDOW: Final = 5.0
"""Seconds: the peak rate is the highest mean rate over any stretch at least this long.

Bytes are counted a call at a time, so over shorter stretches a single large chunk
would read as a burst the bucket never allowed."""


def peak_rate(timeline: list[TimelinePoint], window: float) -> float:
    """The highest mean rate over stretches of at least ``window`` seconds."""
    peak = 0.0
    i = 0
    for j in range(1, len(timeline)):
        tj = timeline[j].t
        # the latest anchor still at least a window before point j
        while i + 1 < j and tj - timeline[i + 1].t >= window:
            i += 1
        dt = tj - timeline[i].t
        if dt >= window:
            peak = max(peak, (timeline[j].bytes - timeline[i].bytes) / dt)
    return peak
