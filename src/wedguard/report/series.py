"""What a session report shows over time, as plain data: the backup's rate, the rate it
was allowed, production latency, calendar windows and events.

Everything the plots and the HTML page draw comes from :func:`session_series`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from wedguard.errors import ConfigError
from wedguard.history import MetricsStore
from wedguard.history.convert import aware_instant
from wedguard.levels import Level, Verdict

__all__ = [
    "Mark",
    "SessionSeries",
    "Span",
    "field",
    "history_latency",
    "report_dict",
    "session_series",
]

_DEFAULT_LIMITS = {"api.latency_s": 1.05, "db.latency_s": 1.20}


@attrs.frozen(slots=True)
class Span:
    """A stretch of the session, in seconds since it started, at one calendar level."""

    start: float
    end: float
    level: Level


@attrs.frozen(slots=True)
class Mark:
    """An event on the session's time axis: ``kind`` is breaker, stop or halt."""

    t: float
    kind: str
    label: str


@attrs.frozen(slots=True)
class SessionSeries:
    """Everything :func:`plot_session` draws, in seconds since the session started.

    Attributes:
        name: the session's name.
        started_at: when it started, when known.
        duration: its wall time in seconds.
        total_bytes: bytes done.
        rate_t: the end of each timeline interval; ``rate`` the backup's mean rate
            (bytes/s) over that interval.
        allowed_t: timeline instants; ``allowed`` the rate allowed then (bytes/s,
            ``inf`` when unlimited).
        latency_t, latency: production latency samples (seconds since start, value).
        metric: the latency metric's name.
        baseline: production latency's baseline, if known; ``limit`` the most it may
            reach while the backup runs.
        spans: calendar windows that were not OPEN.
        marks: breaker, stop and HALT events.
        rate_top: the top of the rate axis (bytes/s): set by the sustained rate and the
            limits that bound it, never by one fast chunk.
        pauses: the session's pauses as ``(seconds since start, duration, cause,
            reason)``.
    """

    name: str
    started_at: datetime | None
    duration: float
    total_bytes: float
    rate_t: tuple[float, ...]
    rate: tuple[float, ...]
    allowed_t: tuple[float, ...]
    allowed: tuple[float, ...]
    latency_t: tuple[float, ...]
    latency: tuple[float, ...]
    metric: str
    baseline: float | None
    limit: float | None
    spans: tuple[Span, ...]
    marks: tuple[Mark, ...]
    rate_top: float = 1.0
    pauses: tuple[tuple[float, float, str, str], ...] = ()


_Point = tuple[float, float, float, Level | None, Verdict | None]
"""A timeline point: ``(t, bytes, allowed rate, level, verdict)``."""


def field(obj: Any, *names: str) -> Any:
    """The first of ``names`` that ``obj`` (a mapping, or an object's attributes) holds
    and is not ``None``; else ``None``."""
    for name in names:
        if isinstance(obj, Mapping):
            if obj.get(name) is not None:
                return obj[name]
        else:
            value = getattr(obj, name, None)
            if value is not None:
                return value
    return None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)  # "inf" included
        except ValueError:
            return None
    return None


def _enum(kind: type[Level] | type[Verdict], value: Any) -> Any:
    if isinstance(value, kind):
        return value
    if isinstance(value, str) and value.upper() in kind.__members__:
        return kind[value.upper()]
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return kind(value)
        except ValueError:
            return None
    return None


def _point(raw: Any) -> _Point | None:
    if isinstance(raw, (tuple, list)):
        items = list(raw) + [None] * (5 - len(raw))
        t, size, rate, level, verdict = items[:5]
    else:
        t = field(raw, "t")
        size = field(raw, "bytes")
        rate = field(raw, "rate", "allowed_rate", "allowed")
        level = field(raw, "level")
        verdict = field(raw, "verdict")
    tf, bf = _float(t), _float(size)
    if tf is None or bf is None:
        return None
    rf = _float(rate)
    return (
        tf,
        bf,
        math.nan if rf is None else rf,
        _enum(Level, level),
        _enum(Verdict, verdict),
    )


def report_dict(report: Any) -> Mapping[str, Any]:
    """A session report as a mapping: itself, or its ``to_dict()``."""
    if isinstance(report, Mapping):
        return report
    to_dict = getattr(report, "to_dict", None)
    if callable(to_dict):
        data = to_dict()
        if isinstance(data, Mapping):
            return data
    raise ConfigError("report", report, "a session report (with to_dict()) or its dict form")


def _relative(at: Any, started: datetime | None) -> float | None:
    number = _float(at)
    if number is not None:
        return number
    when = aware_instant(at)
    if when is None or started is None:
        return None
    return (when - started).total_seconds()


def _latency_points(
    latency: Any, metric: str, started: datetime | None, duration: float
) -> list[tuple[float, float]]:
    if latency is None:
        return []
    if isinstance(latency, MetricsStore):
        if started is None:
            return []
        latency = latency.series(
            metric, since=started, until=started + timedelta(seconds=duration + 1e-6)
        )
    if isinstance(latency, (str, bytes)) or not isinstance(latency, Iterable):
        raise ConfigError("latency", latency, "a MetricsStore or (time, value) pairs")
    points = []
    for item in latency:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ConfigError("latency", item, "(time, value) pairs")
        t = _relative(item[0], started)
        value = _float(item[1])
        if t is not None and value is not None and math.isfinite(value):
            points.append((t, value))
    points.sort()
    return points


def _calendar_spans(
    calendar: Any, started: datetime, duration: float
) -> list[tuple[float, float, Level]]:
    spans: list[tuple[float, float, Level]] = []
    end = started + timedelta(seconds=duration)
    t = started
    while t < end:
        window = calendar.at(t)
        level = _enum(Level, getattr(window, "level", Level.OPEN)) or Level.OPEN
        nxt = getattr(window, "end", None)
        stop = nxt if isinstance(nxt, datetime) and nxt > t else end
        stop = min(stop, end)
        spans.append(((t - started).total_seconds(), (stop - started).total_seconds(), level))
        t = stop
    return spans


def _merge(spans: Iterable[tuple[float, float, Level]]) -> tuple[Span, ...]:
    merged: list[Span] = []
    for start, end, level in spans:
        if level is Level.OPEN or end <= start:
            continue
        if merged and merged[-1].level is level and merged[-1].end >= start:
            merged[-1] = Span(merged[-1].start, max(end, merged[-1].end), level)
        else:
            merged.append(Span(start, end, level))
    return tuple(merged)


def _event_marks(events: Iterable[Any], started: datetime | None) -> list[Mark]:
    marks = []
    for event in events:
        data = event if isinstance(event, Mapping) else None
        if data is None:
            stored = getattr(event, "data", None)  # a StoredEvent
            if isinstance(stored, Mapping):
                data = {**stored, "at": getattr(event, "at", None)}
            else:
                data = report_dict(event)
        kind = str(data.get("kind", ""))
        t = _relative(field(data, "t", "at", "time", "started_at"), started)
        if t is None:
            continue
        if kind == "breaker":
            new = str(data.get("new", "")).upper()
            old = str(data.get("old", "")).upper()
            label = f"breaker {old.lower()}→{new.lower()}".strip()
            if data.get("reason"):
                label += f": {data['reason']}"
            marks.append(Mark(t, "breaker", label))
        elif kind == "stop" or (kind == "decision" and data.get("stopped")):
            reason = data.get("stop_reason") or data.get("reason") or ""
            marks.append(Mark(t, "stop", f"stop: {reason}" if reason else "stop"))
        elif kind == "decision" and str(data.get("verdict", "")).upper() == "HALT":
            reasons = data.get("reasons") or []
            marks.append(Mark(t, "halt", f"HALT: {reasons[0]}" if reasons else "HALT"))
        elif kind in ("halt", "emergency_stop"):
            marks.append(
                Mark(t, "halt" if kind == "halt" else "stop", str(data.get("reason", kind)))
            )
    return marks


def _sustained(
    points: Sequence[tuple[float, float, float, Any, Any]], min_span: float
) -> tuple[list[float], list[float]]:
    """The backup's rate over intervals of at least ``min_span`` seconds.

    A timeline point lands after every chunk the guard let through, so its first
    interval can be one chunk in a few milliseconds (1 MiB in 14 ms reads as 73 MB/s
    under a 1 MB/s limit). Neighbouring intervals are joined until each lasts
    ``min_span``; a short tail joins the interval before it. The bytes are kept: the
    rates times their intervals add up to the bytes of the timeline.
    """
    rate_t: list[float] = []
    rate: list[float] = []
    starts: list[tuple[float, float]] = []
    if not points:
        return rate_t, rate
    t0, b0 = points[0][0], points[0][1]
    for t1, b1, *_ in points[1:]:
        if t1 > t0 and t1 - t0 >= min_span:
            starts.append((t0, b0))
            rate_t.append(t1)
            rate.append((b1 - b0) / (t1 - t0))
            t0, b0 = t1, b1
    t_end, b_end = points[-1][0], points[-1][1]
    if t_end > t0:
        if starts and t_end - t0 < min_span:
            t0, b0 = starts[-1]
            rate_t.pop()
            rate.pop()
        rate_t.append(t_end)
        rate.append((b_end - b0) / (t_end - t0))
    return rate_t, rate


def _rate_top(
    rate_t: Sequence[float], rate: Sequence[float], start: float, allowed: Sequence[float]
) -> float:
    """The top of the rate axis: the 95th percentile of the rate weighted by time, or a
    finite allowed rate within four times of it, plus 15 % headroom."""
    weighted = []
    prev = start
    for t, r in zip(rate_t, rate, strict=True):
        weighted.append((r, t - prev))
        prev = t
    weighted.sort()
    total = sum(w for _, w in weighted)
    level = 0.0
    seen = 0.0
    for r, w in weighted:
        seen += w
        level = r
        if total > 0 and seen >= 0.95 * total:
            break
    caps = [a for a in allowed if math.isfinite(a) and a > 0]
    if caps:
        cap = max(caps)
        level = max(level, cap) if level <= 0 or cap <= 4 * level else level
    return level * 1.15 if level > 0 else 1.0


def history_latency(
    store: MetricsStore,
    report: Any,
    *,
    metrics: Sequence[str] = ("api.latency_s", "db.latency_s"),
    before: float = 1800.0,
) -> dict[str, Any]:
    """Production latency for a stored session, as keyword arguments for
    :func:`plot_session` and :func:`html_report`.

    The first of ``metrics`` that ``store`` holds samples of during the session is
    used (``{}`` when none has any). Its ``baseline`` is the median of the samples in
    the ``before`` seconds before the session started, when there are at least three
    (production without this backup; another backup may have run then, so read it as
    an estimate).

    Example::

        record = store.sessions(name="photos")[-1]
        page = html_report(record.data, **history_latency(store, record.data))
    """
    data = report_dict(report)
    started = aware_instant(field(data, "started_at", "start"))
    duration = _float(field(data, "duration_s", "wall_time", "duration")) or 0.0
    if started is None:
        return {}
    until = started + timedelta(seconds=duration + 1e-6)
    for metric in metrics:
        during = store.series(metric, since=started, until=until)
        if not during:
            continue
        found: dict[str, Any] = {"latency": during, "metric": metric}
        earlier = sorted(
            v
            for _, v in store.series(
                metric, since=started - timedelta(seconds=before), until=started
            )
        )
        if len(earlier) >= 3 and earlier[len(earlier) // 2] > 0:
            found["baseline"] = earlier[len(earlier) // 2]
        return found
    return {}


def session_series(
    report: Any,
    *,
    latency: Any = None,
    metric: str = "api.latency_s",
    baseline: float | None = None,
    limit: float | None = None,
    calendar: Any = None,
    events: Iterable[Any] = (),
) -> SessionSeries:
    """The data :func:`plot_session` and :func:`html_report` draw, from a report.

    Args:
        report: a ``SessionReport`` (or anything with ``to_dict()``, or its dict
            form) whose ``timeline`` holds ``(t, bytes, allowed rate, level,
            verdict)`` points, ``bytes`` counted from the start.
        latency: production latency: a :class:`~wedguard.history.MetricsStore` (its
            ``metric`` samples during the session) or ``(time, value)`` pairs, time
            as seconds since the start or an aware datetime.
        metric: the latency metric's name.
        baseline: production latency without a backup.
        limit: the most latency may reach; by default the design's limit over the
            baseline (+5 % for ``api.latency_s``, +20 % for ``db.latency_s``).
        calendar: a calendar (``at(when)``); its windows are shaded. Without one the
            levels recorded in the timeline are used.
        events: events to mark (breaker transitions, stops, HALT decisions), as
            objects with ``to_dict()``, stored events or dicts with a time.
    """
    data = report_dict(report)
    name = str(field(data, "name", "session") or "session")
    started = aware_instant(field(data, "started_at", "start"))
    points = _timeline(report, data)
    duration = _float(field(data, "duration_s", "wall_time", "duration"))
    if duration is None:
        duration = points[-1][0] if points else 0.0
    total = _float(field(data, "bytes")) or (points[-1][1] if points else 0.0)
    rate_t, rate = _sustained(points, float(duration) / 200)
    limit = _limit(metric, baseline, limit)
    spans = _spans(calendar, points, name, started, duration)
    marks = _marks(points, data, events, started)
    allowed = tuple(p[2] for p in points)
    lat = _latency_points(latency, metric, started, duration)
    return SessionSeries(
        name=name,
        started_at=started,
        duration=float(duration),
        total_bytes=float(total),
        rate_t=tuple(rate_t),
        rate=tuple(rate),
        allowed_t=tuple(p[0] for p in points),
        allowed=allowed,
        latency_t=tuple(t for t, _ in lat),
        latency=tuple(v for _, v in lat),
        metric=metric,
        baseline=None if baseline is None else float(baseline),
        limit=None if limit is None else float(limit),
        spans=spans,
        marks=tuple(marks),
        rate_top=_rate_top(rate_t, rate, points[0][0] if points else 0.0, allowed),
        pauses=_pauses(data, started),
    )


def _timeline(report: Any, data: Mapping[str, Any]) -> list[_Point]:
    """The report's timeline points, checked and in time order."""
    raw_timeline = data.get("timeline")
    if raw_timeline is None and not isinstance(report, Mapping):
        raw_timeline = getattr(report, "timeline", None)
    return sorted(p for p in (_point(raw) for raw in (raw_timeline or ())) if p is not None)


def _limit(metric: str, baseline: float | None, limit: float | None) -> float | None:
    """The checked latency limit: ``limit``, else the design's limit over ``baseline``."""
    if baseline is not None and (_float(baseline) is None or not baseline > 0):
        raise ConfigError("baseline", baseline, "a positive number")
    if limit is not None and (_float(limit) is None or not limit > 0):
        raise ConfigError("limit", limit, "a positive number")
    if limit is None and baseline is not None and metric in _DEFAULT_LIMITS:
        limit = baseline * _DEFAULT_LIMITS[metric]
    return limit


def _spans(
    calendar: Any,
    points: Sequence[_Point],
    name: str,
    started: datetime | None,
    duration: float,
) -> tuple[Span, ...]:
    """The stretches not OPEN: from the calendar when given, else the timeline's levels."""
    if calendar is not None:
        if not callable(getattr(calendar, "at", None)):
            raise ConfigError("calendar", calendar, "a calendar with at(when) -> window")
        if started is None:
            raise ConfigError("report", name, "a report with started_at, to place the calendar")
        return _merge(_calendar_spans(calendar, started, duration))
    ends = [p[0] for p in points[1:]] + [max(duration, points[-1][0])] if points else []
    level_spans = [
        (p[0], end, p[3]) for p, end in zip(points, ends, strict=True) if p[3] is not None
    ]
    return _merge(level_spans)


def _marks(
    points: Sequence[_Point],
    data: Mapping[str, Any],
    events: Iterable[Any],
    started: datetime | None,
) -> list[Mark]:
    """HALT verdicts of the timeline, stops and HALTs of the pause log, and ``events``,
    in time order."""
    marks: list[Mark] = []
    halted = False
    for t, _b, _r, _level, verdict in points:
        if verdict is Verdict.HALT and not halted:
            marks.append(Mark(t, "halt", "HALT"))
        halted = verdict is Verdict.HALT
    for pause in data.get("pause_log") or ():
        cause = str(field(pause, "cause") or "")
        at = _relative(field(pause, "started_at"), started)
        if at is None or cause not in ("stop", "impact"):
            continue
        kind = "stop" if cause == "stop" else "halt"
        reason = field(pause, "reason") or ""
        word = "stop" if kind == "stop" else "HALT"
        label = f"{word}: {reason}" if reason else word
        if not any(m.kind == kind and abs(m.t - at) < 1e-6 for m in marks):
            marks.append(Mark(at, kind, label))
    marks.extend(_event_marks(events, started))
    marks.sort(key=lambda m: m.t)
    return marks


def _pauses(
    data: Mapping[str, Any], started: datetime | None
) -> tuple[tuple[float, float, str, str], ...]:
    """The pause log as ``(seconds since start, duration, cause, reason)``."""
    pauses = []
    for pause in data.get("pause_log") or ():
        at = _relative(field(pause, "started_at"), started)
        length = _float(field(pause, "duration_s", "duration"))
        if at is not None:
            pauses.append(
                (
                    at,
                    length or 0.0,
                    str(field(pause, "cause") or ""),
                    str(field(pause, "reason") or ""),
                )
            )
    return tuple(pauses)
