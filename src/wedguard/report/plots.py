"""The matplotlib pictures: a session over time, and the week with its windows.

matplotlib is imported only when a plot is drawn; the plots use
:class:`matplotlib.figure.Figure` directly, never pyplot's global state, so they are
safe in servers and threads.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

from wedguard.errors import WedguardError
from wedguard.history import DAY_NAMES, MetricsStore, RecommendedWindow, WeeklyProfile
from wedguard.levels import Level
from wedguard.report.labels import LEVEL_COLORS, MARK_COLORS, clock_label, local_time, time_step
from wedguard.report.series import SessionSeries, session_series
from wedguard.report.week import week_grid, week_inputs, week_pieces
from wedguard.units import format_duration, format_size

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["PlotUnavailable", "plot_session", "plot_week"]


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


def _ms_label(seconds: float, _pos: object = None) -> str:
    """A latency tick in milliseconds: ``0.0125`` -> ``"12.5"``."""
    return f"{seconds * 1e3:.4g}"


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
    fig = figure_cls(figsize=figsize, layout="constrained")
    ax_rate, ax_lat = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    _draw_rate(ax_rate, series)
    _draw_latency(ax_lat, series)
    when = f" — {local_time(series.started_at)}" if series.started_at else ""
    fig.suptitle(
        title
        or f"{series.name}{when}: {format_size(series.total_bytes)} in "
        f"{format_duration(series.duration)}"
    )
    return fig


def _draw_rate(ax_rate: Axes, series: SessionSeries) -> None:
    """The top panel: the backup's rate and the rate it was allowed, in MB/s."""
    _shade(ax_rate, series, legend=True)
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


def _draw_latency(ax_lat: Axes, series: SessionSeries) -> None:
    """The bottom panel: production latency (ms) with its baseline and limit, and the
    time axis both panels share."""
    from matplotlib.ticker import FuncFormatter, MultipleLocator  # drawn: matplotlib is there

    _shade(ax_lat, series, legend=False)
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
    ax_lat.xaxis.set_major_locator(MultipleLocator(time_step(series.duration)))
    ax_lat.xaxis.set_major_formatter(FuncFormatter(clock_label))
    ax_lat.set_xlabel("time since start (h:mm:ss)")
    ax_lat.set_xlim(0, max(series.duration, 1e-9))


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
    profile, metric, chosen = week_inputs(
        source, metric, windows, duration, count, calendar, tz, at
    )
    grid = week_grid(profile, metric, stat)
    fig = figure_cls(figsize=figsize, layout="constrained")
    ax = fig.subplots()
    data = [[math.nan if v is None else v for v in row] for row in grid]
    image = ax.imshow(data, aspect="auto", cmap="YlOrRd", interpolation="nearest")
    fig.colorbar(image, ax=ax, label=f"{metric} ({stat})")
    ax.set_yticks(range(7), DAY_NAMES)
    ax.set_xticks(range(0, 24, 2), [f"{h:02d}" for h in range(0, 24, 2)])
    ax.set_xlabel(f"hour ({profile.tz})")
    for window in chosen:
        _outline(ax, window)
    season = f", {profile.season}" if profile.season else ""
    ax.set_title(
        title
        or f"typical {metric} by hour of the week ({profile.weeks} weeks{season}); "
        "recommended backup windows outlined"
    )
    return fig


def _outline(ax: Axes, window: RecommendedWindow) -> None:
    """One rectangle per day the window touches (gid ``window-<rank>``), and its rank."""
    from matplotlib.patches import Rectangle  # drawn: matplotlib is there

    for day, lo, hi in week_pieces(window):
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
    day, lo, _hi = week_pieces(window)[0]
    ax.text(lo - 0.35, day, str(window.rank), color="#1f4e9c", fontsize=9, va="center")
