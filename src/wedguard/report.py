"""Pictures of what a backup did, and of the week it runs in.

* :func:`plot_session`: a session over time: the backup's rate against the rate it was
  allowed, production latency against its baseline and limit, calendar windows shaded
  by level, and breaker, stop and HALT events marked.
* :func:`plot_week`: the hour-of-week heat map of production load with the
  recommended backup windows outlined.
* :func:`html_report`: the same content as one self-contained HTML page with inline
  SVG: no matplotlib, no scripts, no external files.

The plots need matplotlib (``pip install wedguard[plot]``), imported only when a plot
is drawn; they use :class:`matplotlib.figure.Figure` directly, never pyplot's global
state, so they are safe in servers and threads. Everything they draw comes from
:func:`session_series` and :func:`week_grid`, which the HTML report uses too.

Example::

    >>> from wedguard.report import html_report, session_series
    >>> report = {"name": "photos", "bytes": 3e6, "duration_s": 3.0,
    ...           "timeline": [{"t": 0, "bytes": 0, "rate": 1e6, "level": "OPEN", "verdict": "OK"},
    ...                        {"t": 1, "bytes": 1e6, "rate": 1e6, "level": "OPEN", "verdict": "OK"},
    ...                        {"t": 3, "bytes": 3e6, "rate": 2e6, "level": "PEAK", "verdict": "OK"}]}
    >>> series = session_series(report)
    >>> series.rate_t, series.rate
    ((1.0, 3.0), (1000000.0, 1000000.0))
    >>> page = html_report(report)
    >>> page.startswith("<!DOCTYPE html>") and 'data-series="backup rate"' in page
    True

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone, tzinfo
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from wedguard.errors import ConfigError, WedguardError
from wedguard.history import (
    DAY_NAMES,
    MetricsStore,
    RecommendedWindow,
    WeeklyProfile,
    default_metric,
    recommend_windows,
    windows_to_rules,
)
from wedguard.history.convert import aware_instant
from wedguard.levels import Level, Verdict
from wedguard.units import format_duration, format_rate, format_size

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "Mark",
    "PlotUnavailable",
    "SessionSeries",
    "Span",
    "history_latency",
    "html_report",
    "plot_session",
    "plot_week",
    "session_series",
    "week_grid",
    "write_html_report",
]

# Limits over the baseline from the design's defaults, by metric.
_DEFAULT_LIMITS = {"api.latency_s": 1.05, "db.latency_s": 1.20}

LEVEL_COLORS = {Level.PEAK: "#f5a623", Level.BLACKOUT: "#7f7f7f"}
MARK_COLORS = {"breaker": "#d0021b", "stop": "#000000", "halt": "#9013fe"}


class PlotUnavailable(WedguardError, ImportError):
    """matplotlib is not installed: ``pip install wedguard[plot]``."""


def _matplotlib() -> type[Figure]:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable(
            "plots need matplotlib: pip install 'wedguard[plot]' "
            "(html_report() needs nothing extra)"
        ) from None
    return Figure


# ------------------------------------------------------------------ the data


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


def _get(obj: Any, *names: str) -> Any:
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


def _point(raw: Any) -> tuple[float, float, float, Level | None, Verdict | None] | None:
    if isinstance(raw, (tuple, list)):
        items = list(raw) + [None] * (5 - len(raw))
        t, size, rate, level, verdict = items[:5]
    else:
        t = _get(raw, "t")
        size = _get(raw, "bytes")
        rate = _get(raw, "rate", "allowed_rate", "allowed")
        level = _get(raw, "level")
        verdict = _get(raw, "verdict")
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


def _report_dict(report: Any) -> Mapping[str, Any]:
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
                data = _report_dict(event)
        kind = str(data.get("kind", ""))
        t = _relative(_get(data, "t", "at", "time", "started_at"), started)
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
    data = _report_dict(report)
    started = aware_instant(_get(data, "started_at", "start"))
    duration = _float(_get(data, "duration_s", "wall_time", "duration")) or 0.0
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
    data = _report_dict(report)
    name = str(_get(data, "name", "session") or "session")
    started = aware_instant(_get(data, "started_at", "start"))
    raw_timeline = data.get("timeline")
    if raw_timeline is None and not isinstance(report, Mapping):
        raw_timeline = getattr(report, "timeline", None)
    points = sorted(p for p in (_point(raw) for raw in (raw_timeline or ())) if p is not None)
    duration = _float(_get(data, "duration_s", "wall_time", "duration"))
    if duration is None:
        duration = points[-1][0] if points else 0.0
    total = _float(_get(data, "bytes")) or (points[-1][1] if points else 0.0)

    rate_t, rate = _sustained(points, float(duration) / 200)

    if baseline is not None and (_float(baseline) is None or not baseline > 0):
        raise ConfigError("baseline", baseline, "a positive number")
    if limit is not None and (_float(limit) is None or not limit > 0):
        raise ConfigError("limit", limit, "a positive number")
    if limit is None and baseline is not None and metric in _DEFAULT_LIMITS:
        limit = baseline * _DEFAULT_LIMITS[metric]

    if calendar is not None:
        if not callable(getattr(calendar, "at", None)):
            raise ConfigError("calendar", calendar, "a calendar with at(when) -> window")
        if started is None:
            raise ConfigError("report", name, "a report with started_at, to place the calendar")
        spans = _merge(_calendar_spans(calendar, started, duration))
    else:
        ends = [p[0] for p in points[1:]] + [max(duration, points[-1][0])] if points else []
        level_spans = [
            (p[0], end, p[3]) for p, end in zip(points, ends, strict=True) if p[3] is not None
        ]
        spans = _merge(level_spans)

    marks: list[Mark] = []
    halted = False
    for t, _b, _r, _level, verdict in points:
        if verdict is Verdict.HALT and not halted:
            marks.append(Mark(t, "halt", "HALT"))
        halted = verdict is Verdict.HALT
    for pause in data.get("pause_log") or ():
        cause = str(_get(pause, "cause") or "")
        at = _relative(_get(pause, "started_at"), started)
        if at is None or cause not in ("stop", "impact"):
            continue
        kind = "stop" if cause == "stop" else "halt"
        reason = _get(pause, "reason") or ""
        word = "stop" if kind == "stop" else "HALT"
        label = f"{word}: {reason}" if reason else word
        if not any(m.kind == kind and abs(m.t - at) < 1e-6 for m in marks):
            marks.append(Mark(at, kind, label))
    marks.extend(_event_marks(events, started))
    marks.sort(key=lambda m: m.t)

    pauses = []
    for pause in data.get("pause_log") or ():
        at = _relative(_get(pause, "started_at"), started)
        length = _float(_get(pause, "duration_s", "duration"))
        if at is not None:
            pauses.append(
                (
                    at,
                    length or 0.0,
                    str(_get(pause, "cause") or ""),
                    str(_get(pause, "reason") or ""),
                )
            )
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
        pauses=tuple(pauses),
    )


def week_grid(
    profile: WeeklyProfile, metric: str, stat: str = "median"
) -> list[list[float | None]]:
    """The profile as 7 rows (Monday first) of 24 hourly values (``None``: no data).

    ``stat`` is ``"median"``, ``"p95"``, ``"mean"`` or ``"max"``.
    """
    if stat not in ("median", "p95", "mean", "max"):
        raise ConfigError("stat", stat, "'median', 'p95', 'mean' or 'max'")
    if metric not in profile.hours:
        raise ConfigError("metric", metric, f"one of the profile's metrics {profile.metrics}")
    cells = profile.hours[metric]
    return [
        [None if c is None else float(getattr(c, stat)) for c in cells[day * 24 : day * 24 + 24]]
        for day in range(7)
    ]


def _week_inputs(
    source: MetricsStore | WeeklyProfile,
    metric: str | None,
    windows: Sequence[RecommendedWindow] | None,
    duration: str | float,
    count: int,
    calendar: Any,
    tz: str | tzinfo | None,
    at: datetime | None,
) -> tuple[WeeklyProfile, str, list[RecommendedWindow]]:
    if isinstance(source, MetricsStore):
        if metric is None:
            metric = default_metric(source.metrics())
        if tz is None:
            cal_tz = getattr(calendar, "tz", None)
            tz = cal_tz if isinstance(cal_tz, (str, tzinfo)) else "UTC"
        when = at if at is not None else datetime.now(timezone.utc)
        profile = source.weekly_profile(metric, tz=tz, at=when)
    elif isinstance(source, WeeklyProfile):
        profile = source
        if metric is None:
            metric = default_metric(m for m in profile.metrics if any(profile.hours[m]))
    else:
        raise ConfigError("source", source, "a MetricsStore or a WeeklyProfile")
    if windows is None:
        windows = recommend_windows(
            profile, duration, count=count, calendar=calendar, metric=metric, at=at
        )
    return profile, metric, list(windows)


def _week_pieces(window: RecommendedWindow) -> list[tuple[int, float, float]]:
    """(weekday, start hour, end hour) pieces of a window, split at midnight."""
    return [(day, lo / 60, hi / 60) for day, lo, hi in window.day_pieces()]


# ------------------------------------------------------------------ matplotlib


def _ms_label(seconds: float, _pos: object = None) -> str:
    """A latency tick in milliseconds: ``0.0125`` -> ``"12.5"``."""
    return f"{seconds * 1e3:.4g}"


def _local(when: datetime, tz: tzinfo | None = None) -> str:
    """An instant as a person reads it: local time (the calendar's zone when known, else
    the machine's), to the second, with the zone's name."""
    return f"{when.astimezone(tz):%Y-%m-%d %H:%M:%S %Z}".strip()


def _zone(calendar: Any, tz: str | tzinfo | None) -> tzinfo | None:
    """The zone a page shows times in: ``tz``, else the calendar's, else the machine's."""
    if isinstance(tz, str):
        from zoneinfo import ZoneInfo

        try:
            return ZoneInfo(tz)
        except (KeyError, ValueError):
            raise ConfigError("tz", tz, "an IANA time zone such as 'Europe/London'") from None
    if tz is not None:
        return tz
    zone = getattr(calendar, "tz", None)
    return zone if isinstance(zone, tzinfo) else None


def _clock_label(seconds: float, _pos: object = None) -> str:
    sign = "-" if seconds < 0 else ""
    whole = round(abs(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours}:{minutes:02d}:{secs:02d}"


_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)


def _time_step(duration: float) -> float:
    """A round tick step giving at most about eight ticks over ``duration`` seconds."""
    for step in _TIME_STEPS:
        if duration / step <= 8:
            return float(step)
    return float(math.ceil(duration / 8 / 21600) * 21600)


def _shade(ax: Axes, series: SessionSeries, legend: bool) -> None:
    seen: set[Level] = set()
    for span in series.spans:
        ax.axvspan(
            span.start,
            span.end,
            color=LEVEL_COLORS[span.level],
            alpha=0.18 if span.level is Level.PEAK else 0.3,
            linewidth=0,
            gid=f"level-{span.level.name}",
            label=span.level.name if legend and span.level not in seen else "_nolegend_",
        )
        seen.add(span.level)


def _short(label: str, width: int = 40) -> str:
    """A mark's label cut to ``width`` characters, so a long reason cannot squash the axes
    (the HTML report and ``SessionSeries.marks`` keep the whole text)."""
    return label if len(label) <= width else label[: width - 1] + "…"


def _marks(ax: Axes, series: SessionSeries, annotate: bool) -> None:
    for mark in series.marks:
        ax.axvline(
            mark.t,
            color=MARK_COLORS.get(mark.kind, "#000000"),
            linestyle="--" if mark.kind == "breaker" else ":",
            linewidth=1.2,
            gid=f"event-{mark.kind}",
            label="_nolegend_",
        )
        if annotate:
            ax.annotate(
                _short(mark.label),
                xy=(mark.t, 1.0),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="top",
                ha="right",
                fontsize=7,
                color=MARK_COLORS.get(mark.kind, "#000000"),
            )


def plot_session(
    report: Any,
    *,
    latency: Any = None,
    metric: str = "api.latency_s",
    baseline: float | None = None,
    limit: float | None = None,
    calendar: Any = None,
    events: Iterable[Any] = (),
    title: str | None = None,
    figsize: tuple[float, float] = (10.0, 6.0),
) -> Figure:
    """A session over time, as a matplotlib :class:`~matplotlib.figure.Figure`.

    Top: the backup's rate and the rate it was allowed (MB/s). Bottom: production
    latency with its baseline and limit. Both: calendar windows shaded by level
    (PEAK, BLACKOUT) and breaker, stop and HALT events as vertical lines. The x axis
    is time since the session started.

    Arguments are those of :func:`session_series`. Lines carry labels
    (``"backup rate"``, ``"allowed rate"``, ``"latency"``, ``"baseline"``,
    ``"limit"``), shaded spans the gid ``"level-PEAK"``/``"level-BLACKOUT"`` and
    event lines ``"event-breaker"``/``"event-stop"``/``"event-halt"``, so a test (or a
    host) can find them.

    Raises:
        PlotUnavailable: matplotlib is not installed.

    Example::

        fig = plot_session(session.report(), latency=store, baseline=0.120)
        fig.savefig("photos.png")
    """
    figure_cls = _matplotlib()
    series = session_series(
        report,
        latency=latency,
        metric=metric,
        baseline=baseline,
        limit=limit,
        calendar=calendar,
        events=events,
    )
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    fig = figure_cls(figsize=figsize, layout="constrained")
    ax_rate, ax_lat = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    _shade(ax_rate, series, legend=True)
    _shade(ax_lat, series, legend=False)
    ax_rate.plot(
        series.rate_t,
        [r / 1e6 for r in series.rate],
        drawstyle="steps-pre",
        color="#4a90e2",
        linewidth=1.5,
        label="backup rate",
        gid="backup-rate",
    )
    allowed = [a / 1e6 if math.isfinite(a) else math.nan for a in series.allowed]
    ax_rate.plot(
        series.allowed_t,
        allowed,
        drawstyle="steps-post",
        color="#2c3e50",
        linestyle="--",
        linewidth=1.2,
        label="allowed rate",
        gid="allowed-rate",
    )
    ax_rate.set_ylabel("rate (MB/s)")
    ax_rate.set_ylim(0, series.rate_top / 1e6)
    _marks(ax_rate, series, annotate=True)
    ax_rate.legend(loc="upper left", fontsize=8)

    ax_lat.plot(
        series.latency_t,
        series.latency,
        color="#d35400",
        linewidth=1.2,
        marker="." if len(series.latency) < 60 else None,
        label="latency",
        gid="latency",
    )
    if series.baseline is not None:
        ax_lat.axhline(
            series.baseline, color="#27ae60", linestyle="-", label="baseline", gid="baseline"
        )
    if series.limit is not None:
        ax_lat.axhline(series.limit, color="#c0392b", linestyle="--", label="limit", gid="limit")
    _marks(ax_lat, series, annotate=False)
    ax_lat.set_ylabel(f"{series.metric} (ms)")
    ax_lat.yaxis.set_major_formatter(FuncFormatter(_ms_label))
    ax_lat.set_ylim(bottom=0)
    if not series.latency:
        ax_lat.text(
            0.5, 0.5, "no latency samples", transform=ax_lat.transAxes, ha="center", va="center"
        )
    ax_lat.legend(loc="upper left", fontsize=8)
    ax_lat.xaxis.set_major_locator(MultipleLocator(_time_step(series.duration)))
    ax_lat.xaxis.set_major_formatter(FuncFormatter(_clock_label))
    ax_lat.set_xlabel("time since start (h:mm:ss)")
    ax_lat.set_xlim(0, max(series.duration, 1e-9))
    when = f" — {_local(series.started_at)}" if series.started_at else ""
    fig.suptitle(
        title
        or f"{series.name}{when}: {format_size(series.total_bytes)} in "
        f"{format_duration(series.duration)}"
    )
    return fig


def plot_week(
    source: MetricsStore | WeeklyProfile,
    *,
    metric: str | None = None,
    stat: str = "median",
    windows: Sequence[RecommendedWindow] | None = None,
    duration: str | float = "2h",
    count: int = 3,
    calendar: Any = None,
    tz: str | tzinfo | None = None,
    at: datetime | None = None,
    title: str | None = None,
    figsize: tuple[float, float] = (11.0, 4.0),
) -> Figure:
    """The hour-of-week heat map of production load, recommended windows outlined.

    Args:
        source: a :class:`~wedguard.history.MetricsStore` (its weekly profile for the
            season of ``at``) or a :class:`~wedguard.history.WeeklyProfile`.
        metric: the load metric (by default as :func:`~wedguard.history.recommend_windows`
            chooses it).
        stat: which statistic colours the cells: median, p95, mean or max.
        windows: the windows to outline; by default :func:`recommend_windows` with
            ``duration``, ``count`` and ``calendar``. ``()`` outlines none.
        duration: see :func:`~wedguard.history.recommend_windows`.
        count: see :func:`~wedguard.history.recommend_windows`.
        calendar: see :func:`~wedguard.history.recommend_windows`.
        tz: the time zone of the hours (for a store; default the calendar's, else UTC).
        at: the season's instant (default now).
        title: the figure's title.
        figsize: the figure's size in inches.

    The image is a 7 x 24 array (Monday first, ``nan`` where there is no data); each
    window is one :class:`~matplotlib.patches.Rectangle` per day it touches, with gid
    ``"window-<rank>"``.

    Raises:
        PlotUnavailable: matplotlib is not installed.

    Example::

        fig = plot_week(store, duration="2h", count=3, calendar=calendar)
        fig.savefig("week.png")
    """
    figure_cls = _matplotlib()
    profile, metric, chosen = _week_inputs(
        source, metric, windows, duration, count, calendar, tz, at
    )
    grid = week_grid(profile, metric, stat)
    from matplotlib.patches import Rectangle

    fig = figure_cls(figsize=figsize, layout="constrained")
    ax = fig.subplots()
    data = [[math.nan if v is None else v for v in row] for row in grid]
    image = ax.imshow(data, aspect="auto", cmap="YlOrRd", interpolation="nearest")
    fig.colorbar(image, ax=ax, label=f"{metric} ({stat})")
    ax.set_yticks(range(7), DAY_NAMES)
    ax.set_xticks(range(0, 24, 2), [f"{h:02d}" for h in range(0, 24, 2)])
    ax.set_xlabel(f"hour ({profile.tz})")
    for window in chosen:
        for day, lo, hi in _week_pieces(window):
            ax.add_patch(
                Rectangle(
                    (lo - 0.5, day - 0.5),
                    hi - lo,
                    1.0,
                    fill=False,
                    edgecolor="#1f4e9c",
                    linewidth=2.5,
                    gid=f"window-{window.rank}",
                )
            )
        day, lo, _hi = _week_pieces(window)[0]
        ax.text(lo - 0.35, day, str(window.rank), color="#1f4e9c", fontsize=9, va="center")
    season = f", {profile.season}" if profile.season else ""
    ax.set_title(
        title
        or f"typical {metric} by hour of the week ({profile.weeks} weeks{season}); "
        "recommended backup windows outlined"
    )
    return fig


# ------------------------------------------------------------------------ HTML

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; }
th { color: #555; font-weight: normal; }
svg { display: block; margin: 0.5em 0; } svg text { font-size: 11px; fill: #333; }
.level-PEAK { fill: #f5a623; fill-opacity: 0.18; } .level-BLACKOUT { fill: #7f7f7f; fill-opacity: 0.3; }
.mark-breaker { stroke: #d0021b; stroke-dasharray: 5 3; } .mark-stop { stroke: #000; stroke-dasharray: 2 2; }
.mark-halt { stroke: #9013fe; stroke-dasharray: 2 2; }
.window { fill: none; stroke: #1f4e9c; stroke-width: 2.5; }
pre { background: #f6f6f6; padding: 0.6em; }
ul.legend { list-style: none; padding: 0; margin: 0 0 1em 64px; font-size: 12px; }
ul.legend li { display: inline-block; margin-right: 1.4em; }
.swatch { display: inline-block; width: 22px; height: 0; vertical-align: middle; margin-right: 5px; }
.swatch.block { height: 12px; border: 1px solid #ccc; }
span.level-PEAK { background: rgba(245, 166, 35, 0.3); } span.level-BLACKOUT { background: rgba(127, 127, 127, 0.4); }
table.pauses td, table.pauses th { border-bottom: 1px solid #eee; }
p.note { color: #666; }
"""


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _nice_step(top: float, ticks: int = 5) -> float:
    """A round tick step (1, 2, 2.5 or 5 times a power of ten) giving about ``ticks``
    ticks up to ``top``::

        >>> _nice_step(40.3), _nice_step(1.15), _nice_step(0.0123)
        (10.0, 0.25, 0.0025)
    """
    if not top > 0 or not math.isfinite(top):
        return 1.0
    raw = top / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= factor * power * 1.0000001:
            return factor * power
    return 10.0 * power


def _svg_legend(
    series: Sequence[tuple[str, Sequence[float], Sequence[float], str, bool, str]],
    hlines: Sequence[tuple[str, float, str]],
    spans: Sequence[Span],
    marks: Sequence[Mark],
) -> str:
    """The chart's key: one entry for every line, shade and kind of event it draws."""
    items = [
        f'<li data-key="{html.escape(name)}"><span class="swatch" style="border-top: 2px '
        f'{"dashed" if dashed else "solid"} {color}"></span>{html.escape(name)}</li>'
        for name, _x, _y, color, dashed, _s in series
    ]
    items.extend(
        f'<li data-key="{html.escape(name)}"><span class="swatch" style="border-top: 2px '
        f'{"dashed" if name == "limit" else "solid"} {color}"></span>{html.escape(name)}</li>'
        for name, _v, color in hlines
    )
    items.extend(
        f'<li data-key="{level.name}"><span class="swatch block level-{level.name}"></span>'
        f"{level.name} window</li>"
        for level in sorted({span.level for span in spans})
    )
    items.extend(
        f'<li data-key="{kind}"><span class="swatch" style="border-left: 2px dashed '
        f'{MARK_COLORS.get(kind, "#000")}; height: 12px"></span>{_MARK_WORDS.get(kind, kind)}</li>'
        for kind in sorted({mark.kind for mark in marks})
    )
    return f'<ul class="legend">{"".join(items)}</ul>'


_MARK_WORDS = {"breaker": "breaker change", "stop": "emergency stop", "halt": "HALT (impact)"}


def _svg_line_chart(
    *,
    title: str,
    unit: str,
    x_max: float,
    series: list[tuple[str, Sequence[float], Sequence[float], str, bool, str]],
    hlines: list[tuple[str, float, str]],
    spans: Sequence[Span],
    marks: Sequence[Mark],
    scale: float = 1.0,
    y_top: float | None = None,
) -> str:
    """A line chart as SVG with its legend; each series a
    ``<polyline data-series=... data-x data-y>`` (raw values, before ``scale``).

    A series is (name, xs, ys, colour, dashed, steps); steps is ``"pre"`` (a value
    holds over the interval before its x, as a rate measured over that interval),
    ``"post"`` (it holds until the next x, as a setting) or ``""`` (straight lines).
    ``y_top`` (raw units) is the top of the axis; lines above it are clipped.
    Ticks are round numbers of ``unit`` and of time since the start.
    """
    width, height, left, right, top, bottom = 1000, 260, 64, 20, 24, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    if y_top is None:
        finite = [v for _, _, ys, _, _, _ in series for v in ys if math.isfinite(v)]
        finite += [v for _, v, _ in hlines]
        y_top = max(finite, default=1.0) * 1.1 or 1.0
    y_max = y_top * scale
    x_max = x_max or 1.0
    clip = f"clip-{abs(hash((title, x_max, y_max))) % 10**8}"

    def px(x: float) -> float:
        return left + plot_w * x / x_max

    def py(y: float) -> float:
        return top + plot_h * (1 - y / y_max)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="{html.escape(title)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
        f"<title>{html.escape(title)}</title>",
        f'<defs><clipPath id="{clip}"><rect x="{left}" y="{top}" width="{plot_w}" '
        f'height="{plot_h}"/></clipPath></defs>',
        f'<text x="{left}" y="14">{html.escape(title)} ({html.escape(unit)})</text>',
    ]
    out.extend(
        f'<rect class="level level-{span.level.name}" data-level="{span.level.name}" '
        f'data-start="{_fmt(span.start)}" data-end="{_fmt(span.end)}" '
        f'x="{px(span.start):.1f}" y="{top}" width="{max(px(span.end) - px(span.start), 0.5):.1f}" '
        f'height="{plot_h}"><title>{span.level.name} {_clock_label(span.start)}–'
        f"{_clock_label(span.end)}</title></rect>"
        for span in spans
    )
    step = _nice_step(y_max)
    for i in range(int(y_max / step + 1e-9) + 1):
        y = i * step
        out.append(
            f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{py(y):.1f}" '
            f'y2="{py(y):.1f}" stroke="#eee"/>'
            f'<text class="ytick" x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">'
            f"{y:.4g}</text>"
        )
    out.append(
        f'<rect class="frame" x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" '
        'fill="none" stroke="#999" shape-rendering="crispEdges"/>'
    )
    x_step = _time_step(x_max)
    for i in range(int(x_max / x_step + 1e-9) + 1):
        x = i * x_step
        out.append(
            f'<text class="xtick" x="{px(x):.1f}" y="{height - 14}" text-anchor="middle">'
            f"{_clock_label(x)}</text>"
        )
    out.append(
        f'<text x="{left + plot_w}" y="{height - 1}" text-anchor="end">'
        "time since the start (h:mm:ss)</text>"
    )
    for name, value, color in hlines:
        out.append(
            f'<line class="hline" data-series="{html.escape(name)}" data-y="{_fmt(value)}" '
            f'x1="{left}" x2="{left + plot_w}" y1="{py(value * scale):.1f}" y2="{py(value * scale):.1f}" '
            f'stroke="{color}" stroke-width="2" '
            f'stroke-dasharray="{"6 3" if name == "limit" else "none"}" '
            f'clip-path="url(#{clip})">'
            f"<title>{html.escape(name)} {value * scale:.4g} {html.escape(unit)}</title></line>"
        )
    for name, xs, ys, color, dashed, steps in series:
        pts = [(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
        coords: list[str] = []
        prev: tuple[float, float] | None = None
        for x, y in pts:
            if steps == "pre" and prev is not None:
                coords.append(f"{px(prev[0]):.1f},{py(y * scale):.1f}")
            elif steps == "post" and prev is not None:
                coords.append(f"{px(x):.1f},{py(prev[1] * scale):.1f}")
            coords.append(f"{px(x):.1f},{py(y * scale):.1f}")
            prev = (x, y)
        dash = ' stroke-dasharray="6 3"' if dashed else ""
        out.append(
            f'<polyline class="series" data-series="{html.escape(name)}" '
            f'data-x="{" ".join(_fmt(x) for x, _ in pts)}" '
            f'data-y="{" ".join(_fmt(y) for _, y in pts)}" points="{" ".join(coords)}" '
            f'fill="none" stroke="{color}" stroke-width="2"{dash} clip-path="url(#{clip})"/>'
        )
    out.extend(
        f'<line class="mark mark-{mark.kind}" data-event="{mark.kind}" data-t="{_fmt(mark.t)}" '
        f'x1="{px(mark.t):.1f}" x2="{px(mark.t):.1f}" y1="{top}" y2="{top + plot_h}">'
        f"<title>{html.escape(mark.label)} at {_clock_label(mark.t)}</title></line>"
        for mark in marks
    )
    out.append("</svg>")
    out.append(_svg_legend(series, hlines, spans, marks))
    return "\n".join(out)


def _heat_color(value: float, lo: float, hi: float) -> str:
    frac = 0.0 if hi <= lo else (value - lo) / (hi - lo)
    frac = min(max(frac, 0.0), 1.0)
    # light yellow -> orange -> dark red
    r = 255 - int(60 * frac)
    g = 250 - int(220 * frac)
    b = 200 - int(180 * frac)
    return f"#{r:02x}{g:02x}{max(b, 0):02x}"


def _svg_week(
    profile: WeeklyProfile, metric: str, stat: str, windows: Sequence[RecommendedWindow]
) -> str:
    grid = week_grid(profile, metric, stat)
    cell_w, cell_h, left, top = 36, 26, 44, 24
    width, height = left + 24 * cell_w + 10, top + 7 * cell_h + 10
    values = [v for row in grid for v in row if v is not None]
    lo, hi = min(values, default=0.0), max(values, default=1.0)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="week" data-metric="{html.escape(metric)}" '
        f'data-stat="{stat}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
        f"<title>typical {html.escape(metric)} by hour of the week</title>",
    ]
    out.extend(
        f'<text x="{left + hour * cell_w + 4}" y="{top - 8}">{hour:02d}</text>'
        for hour in range(0, 24, 2)
    )
    for day, row in enumerate(grid):
        out.append(f'<text x="4" y="{top + day * cell_h + 17}">{DAY_NAMES[day]}</text>')
        for hour, value in enumerate(row):
            fill = "#eeeeee" if value is None else _heat_color(value, lo, hi)
            shown = "" if value is None else _fmt(value)
            label = "no data" if value is None else f"{value:.4g}"
            out.append(
                f'<rect class="cell" data-weekday="{day}" data-hour="{hour}" data-value="{shown}" '
                f'x="{left + hour * cell_w}" y="{top + day * cell_h}" width="{cell_w - 1}" '
                f'height="{cell_h - 1}" fill="{fill}"><title>{DAY_NAMES[day]} {hour:02d}:00 '
                f"{label}</title></rect>"
            )
    for window in windows:
        for day, a, b in _week_pieces(window):
            out.append(
                f'<rect class="window" data-rank="{window.rank}" data-start="{window.start}" '
                f'data-end="{window.end}" x="{left + a * cell_w:.1f}" y="{top + day * cell_h}" '
                f'width="{(b - a) * cell_w - 1:.1f}" height="{cell_h - 1}">'
                f"<title>#{window.rank} {html.escape(str(window))}</title></rect>"
            )
    out.append("</svg>")
    return "\n".join(out)


def html_report(
    report: Any = None,
    *,
    latency: Any = None,
    metric: str = "api.latency_s",
    baseline: float | None = None,
    limit: float | None = None,
    calendar: Any = None,
    events: Iterable[Any] = (),
    week: MetricsStore | WeeklyProfile | None = None,
    week_metric: str | None = None,
    stat: str = "median",
    windows: Sequence[RecommendedWindow] | None = None,
    duration: str | float = "2h",
    count: int = 3,
    tz: str | tzinfo | None = None,
    at: datetime | None = None,
    title: str | None = None,
) -> str:
    """One self-contained HTML page: the session's charts, the week, the windows.

    Needs no matplotlib: charts are inline SVG, styles inline, no scripts and no
    external files, so the page can be mailed or archived as it is. The session part
    (when ``report`` is given) shows the same series as :func:`plot_session`; the week
    part (when ``week`` is given) the heat map of :func:`plot_week`, the ranked windows
    and the calendar rules that encode them.

    Series are ``<polyline data-series="backup rate" data-x=".." data-y="..">`` (also
    ``"allowed rate"``, ``"latency"``), baseline and limit ``<line data-series=..>``,
    shaded windows ``<rect data-level="PEAK">``, events ``<line data-event="halt">``,
    heat-map cells ``<rect data-weekday data-hour data-value>``, windows
    ``<rect class="window" data-rank>``; the raw values are in the ``data-*``
    attributes.

    Example::

        page = html_report(session.report(), latency=store, baseline=0.120, week=store)
        Path("report.html").write_text(page, encoding="utf-8")
    """
    if report is None and week is None:
        raise ConfigError("report", report, "a session report, a week (store or profile), or both")
    heading = title or (
        f"wedguard report: {_get(_report_dict(report), 'name')}"
        if report is not None
        else "wedguard report"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(str(heading))}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(str(heading))}</h1>",
    ]
    if report is not None:
        series = session_series(
            report,
            latency=latency,
            metric=metric,
            baseline=baseline,
            limit=limit,
            calendar=calendar,
            events=events,
        )
        data = _report_dict(report)
        zone = _zone(calendar, tz)
        rows = [
            ("session", series.name),
            ("started", _local(series.started_at, zone) if series.started_at else "—"),
            ("bytes", format_size(series.total_bytes)),
            ("wall time", format_duration(series.duration)),
            (
                "mean rate",
                format_rate(series.total_bytes / series.duration) if series.duration > 0 else "—",
            ),
        ]
        waits = data.get("wait_seconds")
        if isinstance(waits, Mapping):
            waited = ", ".join(f"{k} {format_duration(float(v))}" for k, v in waits.items() if v)
            rows.append(("waited", waited or "no waits"))
        if data.get("outcome"):
            rows.append(("outcome", str(data["outcome"])))
        parts.append('<table class="summary">')
        parts.extend(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
        )
        parts.append("</table>")
        parts.append("<h2>Backup rate</h2>")
        parts.append(
            _svg_line_chart(
                title="backup rate and allowed rate",
                unit="MB/s",
                x_max=series.duration,
                series=[
                    ("backup rate", series.rate_t, series.rate, "#4a90e2", False, "pre"),
                    ("allowed rate", series.allowed_t, series.allowed, "#2c3e50", True, "post"),
                ],
                hlines=[],
                spans=series.spans,
                marks=series.marks,
                scale=1e-6,
                y_top=series.rate_top,
            )
        )
        parts.append("<h2>Production latency</h2>")
        hlines = []
        if series.baseline is not None:
            hlines.append(("baseline", series.baseline, "#27ae60"))
        if series.limit is not None:
            hlines.append(("limit", series.limit, "#c0392b"))
        if not series.latency:
            parts.append(
                f'<p class="note">No {html.escape(series.metric)} samples for this session: '
                "pass <code>latency=</code> (a history store or (time, value) pairs).</p>"
            )
        parts.append(
            _svg_line_chart(
                title=f"production {series.metric}",
                unit="ms",
                x_max=series.duration,
                series=[("latency", series.latency_t, series.latency, "#d35400", False, "")],
                hlines=hlines,
                spans=series.spans,
                marks=series.marks,
                scale=1e3,
            )
        )
        parts.append("<h2>Pauses</h2>")
        if series.pauses:
            parts.append(
                '<table class="pauses"><tr><th>at</th><th>for</th><th>cause</th>'
                "<th>reason</th></tr>"
            )
            parts.extend(
                f'<tr data-cause="{html.escape(cause)}"><td>{_clock_label(at)}</td>'
                f"<td>{format_duration(length)}</td><td>{html.escape(cause)}</td>"
                f"<td>{html.escape(reason)}</td></tr>"
                for at, length, cause, reason in series.pauses
            )
            parts.append("</table>")
        else:
            parts.append('<p class="note">The session never paused.</p>')
        if series.marks:
            parts.append('<ul class="events">')
            parts.extend(
                f'<li data-event="{m.kind}">{_clock_label(m.t)} {html.escape(m.label)}</li>'
                for m in series.marks
            )
            parts.append("</ul>")
    if week is not None:
        profile, week_metric, chosen = _week_inputs(
            week, week_metric, windows, duration, count, calendar, tz, at
        )
        season = f", {profile.season}" if profile.season else ""
        parts.append(
            f"<h2>Production load by hour of the week ({html.escape(profile.tz)}, "
            f"{profile.weeks} weeks{html.escape(season)})</h2>"
        )
        parts.append(_svg_week(profile, week_metric, stat, chosen))
        if chosen:
            parts.append('<h2>Recommended backup windows</h2><ol class="windows">')
            parts.extend(
                f'<li data-rank="{w.rank}">{html.escape(str(w))} — {html.escape(w.reason)}</li>'
                for w in chosen
            )
            parts.append("</ol><p>Calendar rules:</p>")
            parts.append(f'<pre class="rules">{html.escape(windows_to_rules(chosen))}</pre>')
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html_report(path: str | PathLike[str], report: Any = None, **options: Any) -> Path:
    """Write :func:`html_report` to ``path`` (UTF-8); returns the path."""
    target = Path(path)
    target.write_text(html_report(report, **options), encoding="utf-8")
    return target
