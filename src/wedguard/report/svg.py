"""Charts as inline SVG for the HTML report: line charts over a session, the week's heat map.

Raw values ride along in ``data-*`` attributes, so a test (or a reader's script) can
check what a chart shows without parsing coordinates.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import attrs

from wedguard.history import DAY_NAMES, RecommendedWindow, WeeklyProfile
from wedguard.report.labels import MARK_COLORS, MARK_WORDS, clock_label, time_step
from wedguard.report.series import Mark, Span
from wedguard.report.week import week_grid, week_pieces

__all__ = ["fmt", "line_chart", "week_chart"]


def fmt(value: float) -> str:
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


def _legend(
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
        f'{MARK_COLORS.get(kind, "#000")}; height: 12px"></span>{MARK_WORDS.get(kind, kind)}</li>'
        for kind in sorted({mark.kind for mark in marks})
    )
    return f'<ul class="legend">{"".join(items)}</ul>'


def line_chart(
    *,
    title: str,
    unit: str,
    x_max: float,
    series: list[_Line],
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
    if y_top is None:
        finite = [v for _, _, ys, _, _, _ in series for v in ys if math.isfinite(v)]
        finite += [v for _, v, _ in hlines]
        y_top = max(finite, default=1.0) * 1.1 or 1.0
    plane = _Plane(x_max=x_max or 1.0, y_max=y_top * scale)
    clip = f"clip-{abs(hash((title, plane.x_max, plane.y_max))) % 10**8}"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="{html.escape(title)}" '
        f'width="{plane.width}" height="{plane.height}" viewBox="0 0 {plane.width} {plane.height}" role="img">',
        f"<title>{html.escape(title)}</title>",
        f'<defs><clipPath id="{clip}"><rect x="{plane.left}" y="{plane.top}" width="{plane.plot_w}" '
        f'height="{plane.plot_h}"/></clipPath></defs>',
        f'<text x="{plane.left}" y="14">{html.escape(title)} ({html.escape(unit)})</text>',
    ]
    out.extend(_span_rect(plane, span) for span in spans)
    out.extend(_axes(plane))
    out.extend(_hline(plane, line, unit, scale, clip) for line in hlines)
    out.extend(_polyline(plane, line, scale, clip) for line in series)
    out.extend(
        f'<line class="mark mark-{mark.kind}" data-event="{mark.kind}" data-t="{fmt(mark.t)}" '
        f'x1="{plane.px(mark.t):.1f}" x2="{plane.px(mark.t):.1f}" y1="{plane.top}" '
        f'y2="{plane.top + plane.plot_h}">'
        f"<title>{html.escape(mark.label)} at {clock_label(mark.t)}</title></line>"
        for mark in marks
    )
    out.append("</svg>")
    out.append(_legend(series, hlines, spans, marks))
    return "\n".join(out)


_Line = tuple[str, Sequence[float], Sequence[float], str, bool, str]
"""A chart's series: (name, xs, ys, colour, dashed, steps)."""


@attrs.frozen
class _Plane:
    """A chart's drawing area: raw x (seconds) and scaled y to SVG pixels."""

    x_max: float
    y_max: float
    width: int = 1000
    height: int = 260
    left: int = 64
    top: int = 24
    plot_w: int = 1000 - 64 - 20
    plot_h: int = 260 - 24 - 34

    def px(self, x: float) -> float:
        return self.left + self.plot_w * x / self.x_max

    def py(self, y: float) -> float:
        return self.top + self.plot_h * (1 - y / self.y_max)


def _span_rect(plane: _Plane, span: Span) -> str:
    """A shaded calendar window."""
    px = plane.px
    return (
        f'<rect class="level level-{span.level.name}" data-level="{span.level.name}" '
        f'data-start="{fmt(span.start)}" data-end="{fmt(span.end)}" '
        f'x="{px(span.start):.1f}" y="{plane.top}" width="{max(px(span.end) - px(span.start), 0.5):.1f}" '
        f'height="{plane.plot_h}"><title>{span.level.name} {clock_label(span.start)}–'
        f"{clock_label(span.end)}</title></rect>"
    )


def _axes(plane: _Plane) -> list[str]:
    """The y grid with its ticks, the frame, and the time ticks with their label."""
    left, top, plot_w, plot_h, py = plane.left, plane.top, plane.plot_w, plane.plot_h, plane.py
    out = []
    step = _nice_step(plane.y_max)
    for i in range(int(plane.y_max / step + 1e-9) + 1):
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
    x_step = time_step(plane.x_max)
    for i in range(int(plane.x_max / x_step + 1e-9) + 1):
        x = i * x_step
        out.append(
            f'<text class="xtick" x="{plane.px(x):.1f}" y="{plane.height - 14}" text-anchor="middle">'
            f"{clock_label(x)}</text>"
        )
    out.append(
        f'<text x="{left + plot_w}" y="{plane.height - 1}" text-anchor="end">'
        "time since the start (h:mm:ss)</text>"
    )
    return out


def _hline(plane: _Plane, line: tuple[str, float, str], unit: str, scale: float, clip: str) -> str:
    """A horizontal line across the chart (a baseline, a limit)."""
    name, value, color = line
    y = plane.py(value * scale)
    return (
        f'<line class="hline" data-series="{html.escape(name)}" data-y="{fmt(value)}" '
        f'x1="{plane.left}" x2="{plane.left + plane.plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
        f'stroke="{color}" stroke-width="2" '
        f'stroke-dasharray="{"6 3" if name == "limit" else "none"}" '
        f'clip-path="url(#{clip})">'
        f"<title>{html.escape(name)} {value * scale:.4g} {html.escape(unit)}</title></line>"
    )


def _polyline(plane: _Plane, line: _Line, scale: float, clip: str) -> str:
    """A series as a polyline, its raw values in ``data-x`` and ``data-y``."""
    name, xs, ys, color, dashed, steps = line
    px, py = plane.px, plane.py
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
    return (
        f'<polyline class="series" data-series="{html.escape(name)}" '
        f'data-x="{" ".join(fmt(x) for x, _ in pts)}" '
        f'data-y="{" ".join(fmt(y) for _, y in pts)}" points="{" ".join(coords)}" '
        f'fill="none" stroke="{color}" stroke-width="2"{dash} clip-path="url(#{clip})"/>'
    )


def _heat_color(value: float, lo: float, hi: float) -> str:
    frac = 0.0 if hi <= lo else (value - lo) / (hi - lo)
    frac = min(max(frac, 0.0), 1.0)
    # light yellow -> orange -> dark red
    r = 255 - int(60 * frac)
    g = 250 - int(220 * frac)
    b = 200 - int(180 * frac)
    return f"#{r:02x}{g:02x}{max(b, 0):02x}"


def week_chart(
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
            shown = "" if value is None else fmt(value)
            label = "no data" if value is None else f"{value:.4g}"
            out.append(
                f'<rect class="cell" data-weekday="{day}" data-hour="{hour}" data-value="{shown}" '
                f'x="{left + hour * cell_w}" y="{top + day * cell_h}" width="{cell_w - 1}" '
                f'height="{cell_h - 1}" fill="{fill}"><title>{DAY_NAMES[day]} {hour:02d}:00 '
                f"{label}</title></rect>"
            )
    for window in windows:
        for day, a, b in week_pieces(window):
            out.append(
                f'<rect class="window" data-rank="{window.rank}" data-start="{window.start}" '
                f'data-end="{window.end}" x="{left + a * cell_w:.1f}" y="{top + day * cell_h}" '
                f'width="{(b - a) * cell_w - 1:.1f}" height="{cell_h - 1}">'
                f"<title>#{window.rank} {html.escape(str(window))}</title></rect>"
            )
    out.append("</svg>")
    return "\n".join(out)
