"""Pictures of what a backup did, and of the week it runs in.

* :func:`plot_session`: a session over time: the backup's rate against the rate it was
  allowed, production latency against its baseline and limit, calendar windows shaded
  by level, and breaker, stop and HALT events marked.
* :func:`plot_week`: the hour-of-week heat map of production load with the
  recommended backup windows outlined.
* :func:`html_report`: the same content as one self-contained HTML page with inline
  SVG: no matplotlib, no scripts, no external files.

The package: :mod:`~wedguard.report.series` and :mod:`~wedguard.report.week` (the
data), :mod:`~wedguard.report.plots` (matplotlib), :mod:`~wedguard.report.svg` and
:mod:`~wedguard.report.page` (the HTML page), :mod:`~wedguard.report.labels` (colours,
ticks, times). Every name is importable from ``wedguard.report`` itself.

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

from wedguard.report.page import html_report, write_html_report
from wedguard.report.plots import PlotUnavailable, plot_session, plot_week
from wedguard.report.series import Mark, SessionSeries, Span, history_latency, session_series
from wedguard.report.week import week_grid

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
