"""The HTML report: one self-contained page with the session's charts, the week and
the windows (inline SVG; no matplotlib, no scripts, no external files)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, tzinfo
from os import PathLike
from pathlib import Path
from typing import Any

from wedguard.errors import ConfigError
from wedguard.history import MetricsStore, RecommendedWindow, WeeklyProfile, windows_to_rules
from wedguard.report.labels import clock_label, display_zone, local_time
from wedguard.report.series import SessionSeries, field, report_dict, session_series
from wedguard.report.svg import line_chart, week_chart
from wedguard.report.week import week_inputs
from wedguard.units import format_duration, format_rate, format_size

__all__ = ["html_report", "write_html_report"]

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
        f"wedguard report: {field(report_dict(report), 'name')}"
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
        parts.extend(_summary(series, report_dict(report), display_zone(calendar, tz)))
        parts.extend(_charts(series))
        parts.extend(_pauses_and_events(series))
    if week is not None:
        profile, week_metric, chosen = week_inputs(
            week, week_metric, windows, duration, count, calendar, tz, at
        )
        parts.extend(_week(profile, week_metric, stat, chosen))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html_report(path: str | PathLike[str], report: Any = None, **options: Any) -> Path:
    """Write :func:`html_report` to ``path`` (UTF-8); returns the path."""
    target = Path(path)
    target.write_text(html_report(report, **options), encoding="utf-8")
    return target


def _summary(series: SessionSeries, data: Mapping[str, Any], zone: tzinfo | None) -> list[str]:
    """The session's summary table: name, start, size, time, rate, waits, outcome."""
    rows = [
        ("session", series.name),
        ("started", local_time(series.started_at, zone) if series.started_at else "—"),
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
    parts = ['<table class="summary">']
    parts.extend(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    parts.append("</table>")
    return parts


def _charts(series: SessionSeries) -> list[str]:
    """The backup's rate and production latency over the session, as SVG charts."""
    parts = ["<h2>Backup rate</h2>"]
    parts.append(
        line_chart(
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
        line_chart(
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
    return parts


def _pauses_and_events(series: SessionSeries) -> list[str]:
    """The session's pauses as a table, and its events as a list."""
    parts = ["<h2>Pauses</h2>"]
    if series.pauses:
        parts.append(
            '<table class="pauses"><tr><th>at</th><th>for</th><th>cause</th><th>reason</th></tr>'
        )
        parts.extend(
            f'<tr data-cause="{html.escape(cause)}"><td>{clock_label(at)}</td>'
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
            f'<li data-event="{m.kind}">{clock_label(m.t)} {html.escape(m.label)}</li>'
            for m in series.marks
        )
        parts.append("</ul>")
    return parts


def _week(
    profile: WeeklyProfile, metric: str, stat: str, chosen: Sequence[RecommendedWindow]
) -> list[str]:
    """The week's heat map, the ranked windows and the calendar rules that encode them."""
    season = f", {profile.season}" if profile.season else ""
    parts = [
        f"<h2>Production load by hour of the week ({html.escape(profile.tz)}, "
        f"{profile.weeks} weeks{html.escape(season)})</h2>",
        week_chart(profile, metric, stat, chosen),
    ]
    if chosen:
        parts.append('<h2>Recommended backup windows</h2><ol class="windows">')
        parts.extend(
            f'<li data-rank="{w.rank}">{html.escape(str(w))} — {html.escape(w.reason)}</li>'
            for w in chosen
        )
        parts.append("</ol><p>Calendar rules:</p>")
        parts.append(f'<pre class="rules">{html.escape(windows_to_rules(chosen))}</pre>')
    return parts
