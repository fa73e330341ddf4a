"""Session and week pictures: the figures' data, and the self-contained HTML report."""

from __future__ import annotations

import builtins
import itertools
import math
import re
import sys
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import matplotlib
import matplotlib.figure
import pytest

from wedguard import ConfigError, Level
from wedguard.history import MetricsStore, recommend_windows
from wedguard.report import (
    Mark,
    PlotUnavailable,
    Span,
    html_report,
    plot_session,
    plot_week,
    session_series,
    week_grid,
    write_html_report,
)

matplotlib.use("Agg")

T0 = datetime(2026, 1, 5, 5, 0, tzinfo=timezone.utc)  # a Monday


def make_report() -> dict[str, Any]:
    """An hour-long session: OPEN, then PEAK (with a HALT inside), OPEN, a BLACKOUT.

    Every 30 s interval moves 90 % of the allowed rate.
    """
    timeline = []
    done = 0.0
    for i in range(121):
        level = "PEAK" if 40 <= i < 80 else "BLACKOUT" if 100 <= i < 110 else "OPEN"
        verdict = "HALT" if 60 <= i < 65 else "OK"
        rate = {"OPEN": 2e6, "PEAK": 1e6, "BLACKOUT": 0.0}[level]
        if verdict == "HALT":
            rate = 0.0
        timeline.append(
            {"t": i * 30.0, "bytes": done, "rate": rate, "level": level, "verdict": verdict}
        )
        done += rate * 30 * 0.9
    return {
        "kind": "session",
        "name": "photos",
        "bytes": done,
        "started_at": T0.isoformat(),
        "duration_s": 3600.0,
        "wait_seconds": {"rate": 10.0, "calendar": 300.0, "impact": 150.0},
        "outcome": "done",
        "timeline": timeline,
        "pause_log": [
            {
                "cause": "stop",
                "started_at": (T0 + timedelta(seconds=3300)).isoformat(),
                "duration_s": 5.0,
                "reason": "operator",
            }
        ],
    }


BREAKER = {
    "kind": "breaker",
    "old": "CLOSED",
    "new": "OPEN",
    "reason": "3 failures",
    "at": (T0 + timedelta(seconds=2500)).isoformat(),
}
LATENCY = [(T0 + timedelta(seconds=10 * i), 0.1 + 0.001 * (i % 5)) for i in range(360)]


# ------------------------------------------------------------------ the series


def test_series_from_the_report() -> None:
    series = session_series(make_report(), latency=LATENCY, baseline=0.1, events=[BREAKER])
    assert series.name == "photos"
    assert series.started_at == T0
    assert len(series.rate) == 120
    assert series.rate[0] == pytest.approx(1.8e6)  # 90 % of the 2 MB/s allowed
    assert series.rate[50] == pytest.approx(0.9e6)
    assert series.rate[61] == 0.0  # halted
    assert series.allowed[:2] == (2e6, 2e6)
    assert series.spans == (Span(1200.0, 2400.0, Level.PEAK), Span(3000.0, 3300.0, Level.BLACKOUT))
    assert [(m.t, m.kind) for m in series.marks] == [
        (1800.0, "halt"),
        (2500.0, "breaker"),
        (3300.0, "stop"),
    ]
    assert series.marks[1].label == "breaker closed→open: 3 failures"
    assert series.marks[2].label == "stop: operator"
    assert series.limit == pytest.approx(0.105)  # +5 % for API latency by default
    assert series.latency_t[:2] == (0.0, 10.0)


def test_series_from_a_real_guard_report() -> None:
    """The guard's SessionReport (object and dict form) feeds the same series."""
    from wedguard import Guard
    from wedguard.testing import FakeClock

    clock = FakeClock(T0)
    guard = Guard(rate="1MB/s", calendar=None, sources=[], sinks=[], clock=clock)
    with guard.session("db") as s:
        for _ in range(20):
            s.throttle(250_000)
    report = s.report()
    from_object = session_series(report)
    assert from_object == session_series(report.to_dict())
    assert from_object.started_at == T0
    assert from_object.total_bytes == 5e6
    assert sum(r * dt for r, dt in zip(from_object.rate, _intervals(from_object), strict=True)) == (
        pytest.approx(report.timeline[-1].bytes - report.timeline[0].bytes)
    )
    assert all(math.isinf(a) or a == 1e6 for a in from_object.allowed)


def _intervals(series: Any) -> list[float]:
    times = [series.allowed_t[0], *series.rate_t]
    return [b - a for a, b in itertools.pairwise(times)]


def test_series_latency_from_a_store() -> None:
    store = MetricsStore(":memory:", retention="30d")
    store.record({"api.latency_s": 0.5}, at=T0 - timedelta(minutes=5))  # before: not shown
    store.record({"api.latency_s": 0.2}, at=T0 + timedelta(minutes=10))
    store.record({"api.latency_s": 0.3}, at=T0 + timedelta(minutes=20))
    series = session_series(make_report(), latency=store)
    assert series.latency_t == (600.0, 1200.0)
    assert series.latency == (0.2, 0.3)
    store.close()


def test_series_calendar_windows_from_a_calendar() -> None:
    from wedguard import PeakHourCalendar

    calendar = PeakHourCalendar.parse("Mon 05:30-05:45 blackout\nMon 05:45-22:00 peak", tz="UTC")
    series = session_series(make_report(), calendar=calendar)
    assert series.spans == (
        Span(1800.0, 2700.0, Level.BLACKOUT),
        Span(2700.0, 3600.0, Level.PEAK),
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"baseline": -1.0}, "baseline"),
        ({"limit": 0}, "limit"),
        ({"calendar": "peak"}, "calendar"),
        ({"latency": "fast"}, "latency"),
        ({"latency": [(1.0,)]}, "latency"),
    ],
)
def test_series_bad_arguments(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        session_series(make_report(), **kwargs)
    assert info.value.field == field


def test_series_needs_a_report() -> None:
    with pytest.raises(ConfigError):
        session_series(42)


# --------------------------------------------------------------- plot_session


def test_plot_session_draws_the_series() -> None:
    fig = plot_session(make_report(), latency=LATENCY, baseline=0.1, events=[BREAKER])
    assert isinstance(fig, matplotlib.figure.Figure)
    ax_rate, ax_lat = fig.axes[:2]
    lines = {line.get_label(): line for line in ax_rate.get_lines()}
    backup = lines["backup rate"]
    assert list(backup.get_xdata())[:2] == [30.0, 60.0]
    assert list(backup.get_ydata())[:2] == pytest.approx([1.8, 1.8])  # MB/s
    assert list(lines["allowed rate"].get_ydata())[40] == pytest.approx(1.0)  # PEAK cap
    lat_lines = {line.get_label(): line for line in ax_lat.get_lines()}
    assert list(lat_lines["latency"].get_ydata()) == [v for _, v in LATENCY]
    assert list(lat_lines["baseline"].get_ydata()) == [0.1, 0.1]
    assert list(lat_lines["limit"].get_ydata()) == pytest.approx([0.105, 0.105])


def test_plot_session_shades_windows_and_marks_events() -> None:
    fig = plot_session(make_report(), events=[BREAKER])
    ax_rate = fig.axes[0]
    spans = sorted(
        (p.get_gid(), p.get_x(), p.get_x() + p.get_width())
        for p in ax_rate.patches
        if (p.get_gid() or "").startswith("level-")
    )
    assert spans == [("level-BLACKOUT", 3000.0, 3300.0), ("level-PEAK", 1200.0, 2400.0)]
    marks = sorted(
        (line.get_gid(), line.get_xdata()[0])
        for line in ax_rate.get_lines()
        if (line.get_gid() or "").startswith("event-")
    )
    assert marks == [("event-breaker", 2500.0), ("event-halt", 1800.0), ("event-stop", 3300.0)]
    assert "photos" in fig.texts[0].get_text() or "photos" in fig._suptitle.get_text()  # type: ignore[attr-defined]


def test_plot_session_renders(tmp_path: Path) -> None:
    fig = plot_session(make_report(), latency=LATENCY, baseline=0.1, events=[BREAKER])
    fig.savefig(tmp_path / "session.png")
    assert (tmp_path / "session.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_session_without_latency_says_so() -> None:
    fig = plot_session(make_report())
    texts = [t.get_text() for t in fig.axes[1].texts]
    assert "no latency samples" in texts


# ------------------------------------------------------------------ plot_week


@pytest.fixture
def week_store() -> MetricsStore:
    """Three weeks: busier by the hour, quiet on Sunday 02:00-05:00."""
    store = MetricsStore(":memory:", retention="60d")

    def load(at: datetime) -> float:
        return 5.0 if at.weekday() == 6 and 2 <= at.hour < 5 else 30.0 + 2 * at.hour

    start = datetime(2026, 1, 5, tzinfo=timezone.utc)
    store.record_many(
        (
            start + timedelta(minutes=20 * i),
            {"cpu.percent": load(start + timedelta(minutes=20 * i))},
        )
        for i in range(21 * 72)
    )
    yield store  # type: ignore[misc]
    store.close()


def test_week_grid(week_store: MetricsStore) -> None:
    profile = week_store.weekly_profile("cpu.percent", at=T0)
    grid = week_grid(profile, "cpu.percent")
    assert len(grid) == 7
    assert all(len(row) == 24 for row in grid)
    assert grid[6][3] == 5.0
    assert grid[0][10] == 50.0
    with pytest.raises(ConfigError):
        week_grid(profile, "cpu.percent", stat="mode")
    with pytest.raises(ConfigError):
        week_grid(profile, "disk.busy_percent")


def test_plot_week_heat_map_and_windows(week_store: MetricsStore) -> None:
    fig = plot_week(week_store, duration="3h", count=2, at=T0)
    ax = fig.axes[0]
    (image,) = ax.get_images()
    data = image.get_array()
    assert data.shape == (7, 24)
    assert data[6, 2] == 5.0
    assert data[2, 12] == 54.0
    outlines = sorted(
        (p.get_gid(), p.get_x(), p.get_y(), p.get_width())
        for p in ax.patches
        if (p.get_gid() or "").startswith("window-")
    )
    assert outlines[0] == ("window-1", 1.5, 5.5, 3.0)  # Sunday 02:00-05:00
    assert {o[0] for o in outlines} == {"window-1", "window-2"}


def test_plot_week_given_windows_across_midnight(week_store: MetricsStore) -> None:
    profile = week_store.weekly_profile("cpu.percent", at=T0)
    windows = recommend_windows(profile, "4h", count=1, at=T0)
    assert str(windows[0]) == "Sun 01:00-05:00"
    from wedguard.history import RecommendedWindow, WeekTime

    late = RecommendedWindow(
        WeekTime(6, datetime.min.time().replace(hour=23)),
        WeekTime(0, datetime.min.time().replace(hour=1)),
        7200.0,
        1.0,
        1.0,
        "cpu.percent",
        "test",
        1,
    )
    fig = plot_week(profile, windows=[late])
    pieces = sorted(
        (p.get_x(), p.get_y(), p.get_width())
        for p in fig.axes[0].patches
        if p.get_gid() == "window-1"
    )
    assert pieces == [(-0.5, -0.5, 1.0), (22.5, 5.5, 1.0)]
    assert not [p for p in plot_week(profile, windows=()).axes[0].patches if p.get_gid()]


def test_plot_week_rejects_other_sources() -> None:
    with pytest.raises(ConfigError):
        plot_week("history.db")  # type: ignore[arg-type]


def test_plots_need_matplotlib_only_when_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without matplotlib: importing works, the HTML report works, plots say what to install."""
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    for name in [m for m in sys.modules if m.startswith("matplotlib")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(PlotUnavailable, match=r"wedguard\[plot\]"):
        plot_session(make_report())
    with pytest.raises(ImportError):
        plot_week(MetricsStore(":memory:"))
    assert "<svg" in html_report(make_report())


# ------------------------------------------------------------------------ HTML


class Page(HTMLParser):
    """Collects the elements of a page, and checks it is balanced and self-contained."""

    VOID: ClassVar[frozenset[str]] = frozenset({"meta", "br", "img", "link", "input", "hr"})

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack, tag
        assert self.stack[-1] == tag, (self.stack[-3:], tag)
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, **wanted: str) -> list[dict[str, str | None]]:
        return [
            a
            for t, a in self.elements
            if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in wanted.items())
        ]


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    parser.close()
    assert parser.stack == []
    return parser


def floats(text: str | None) -> list[float]:
    return [float(x) for x in (text or "").split()]


def test_html_report_carries_the_session_series(week_store: MetricsStore) -> None:
    page = html_report(
        make_report(), latency=LATENCY, baseline=0.1, events=[BREAKER], week=week_store, at=T0
    )
    assert page.startswith("<!DOCTYPE html>")
    doc = parse(page)
    (backup,) = doc.find("polyline", data_series="backup rate")
    assert floats(backup["data-x"])[:2] == [30.0, 60.0]
    assert floats(backup["data-y"])[:2] == pytest.approx([1.8e6, 1.8e6])
    assert len(floats(backup["points"].replace(",", " "))) > 0  # type: ignore[union-attr]
    (allowed,) = doc.find("polyline", data_series="allowed rate")
    assert floats(allowed["data-y"])[40] == 1e6
    # both are drawn as steps: a corner between every two points
    for line in (backup, allowed):
        corners = (line["points"] or "").split()
        assert len(corners) == 2 * len(floats(line["data-x"])) - 1
    (latency,) = doc.find("polyline", data_series="latency")
    assert floats(latency["data-y"]) == pytest.approx([v for _, v in LATENCY])
    assert [a["data-y"] for a in doc.find("line", data_series="baseline")] == ["0.1"]
    assert [a["data-y"] for a in doc.find("line", data_series="limit")] == ["0.105"]
    levels = {
        (a["data-level"], a["data-start"], a["data-end"])
        for a in doc.find("rect", **{"class": "level level-PEAK"})
    }
    assert levels == {("PEAK", "1200", "2400")}
    assert len(doc.find("rect", data_level="BLACKOUT")) == 2  # one per chart
    events = sorted(
        (a["data-event"], a["data-t"])
        for t, a in doc.elements
        if t == "line" and a.get("data-event")
    )
    assert events == sorted([("breaker", "2500"), ("halt", "1800"), ("stop", "3300")] * 2)


def test_html_report_carries_the_week(week_store: MetricsStore) -> None:
    doc = parse(html_report(week=week_store, at=T0, duration="3h", count=2))
    cells = doc.find("rect", **{"class": "cell"})
    assert len(cells) == 168
    sunday_3 = doc.find("rect", data_weekday="6", data_hour="3")[0]
    assert sunday_3["data-value"] == "5"
    windows = doc.find("rect", **{"class": "window"})
    assert windows[0]["data-rank"] == "1"
    assert windows[0]["data-start"] == "Sun 02:00"
    assert "Sun 02:00-05:00 open" in "".join(doc.text)
    assert doc.find("svg", **{"class": "week"})


def test_html_report_is_self_contained() -> None:
    page = html_report(make_report(), latency=LATENCY)
    doc = parse(page)
    assert not [a for t, a in doc.elements if t == "script"]
    assert not [a for t, a in doc.elements if t == "link"]
    assert not [a for _, a in doc.elements if (a.get("src") or a.get("href"))]
    assert doc.find("meta", charset="utf-8")


def test_html_report_escapes_names() -> None:
    report = make_report()
    report["name"] = "<script>alert(1)</script>"
    page = html_report(report)
    assert "<script>" not in page
    assert "&lt;script&gt;" in page


def test_html_report_needs_something() -> None:
    with pytest.raises(ConfigError):
        html_report()


def test_write_html_report(tmp_path: Path) -> None:
    path = write_html_report(tmp_path / "r.html", make_report())
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_marks_and_spans_are_values() -> None:
    assert Mark(1.0, "halt", "HALT") == Mark(1.0, "halt", "HALT")
    assert Span(0.0, 1.0, Level.PEAK).level is Level.PEAK


def test_real_breaker_events_from_the_store_are_marked() -> None:
    """Breaker transitions, recorded in history, come back as marks on the session."""
    from wedguard import CircuitBreaker
    from wedguard.history import HistorySink
    from wedguard.testing import FakeClock

    clock = FakeClock(T0)
    history = HistorySink(":memory:", clock=clock)
    breaker = CircuitBreaker("upload", failure_threshold=1, clock=clock)
    breaker.add_listener(history.emit)
    clock.advance(600)
    breaker.record_failure(RuntimeError("timeout"))
    store = history.store
    assert store is not None
    stored = store.events("breaker")
    assert [e.data["new"] for e in stored] == ["OPEN"]
    series = session_series(make_report(), events=stored)
    breaker_marks = [m for m in series.marks if m.kind == "breaker"]
    assert [m.t for m in breaker_marks] == [600.0]
    assert breaker_marks[0].label.startswith("breaker closed→open")


@pytest.mark.parametrize(
    "report",
    [
        {"name": "empty", "bytes": 0},
        {
            "name": "one",
            "bytes": 5,
            "timeline": [{"t": 0, "bytes": 0, "rate": "inf", "level": "OPEN"}],
        },
        {"name": "tuples", "bytes": 5, "timeline": [(0, 0, 10.0, 0, 0), (1, 5, 10.0, 1, 2)]},
    ],
)
def test_small_reports_still_draw(report: dict[str, Any], tmp_path: Path) -> None:
    """No timeline, one point, or tuples: the figure and the page are still made."""
    plot_session(report).savefig(tmp_path / "s.png")
    parse(html_report(report))


def test_tuple_timelines_are_read() -> None:
    series = session_series(
        {"name": "t", "bytes": 5, "timeline": [(0, 0, 10.0, 0, 0), (1, 5, 10.0, 1, 2)]}
    )
    assert series.rate == (5.0,)
    assert series.spans == ()  # the PEAK point is the last: it lasts no time
    assert [m.kind for m in series.marks] == ["halt"]


def test_an_empty_week_still_draws(tmp_path: Path) -> None:
    store = MetricsStore(":memory:")
    plot_week(store).savefig(tmp_path / "w.png")
    doc = parse(html_report(week=store))
    assert all(c["data-value"] == "" for c in doc.find("rect", **{"class": "cell"}))
    assert not doc.find("rect", **{"class": "window"})
    store.close()


def test_a_real_guard_session_across_peak_hours() -> None:
    """A guard session running into 06:00 peak hours: the PEAK span and the lower cap show."""
    from wedguard import Guard, PeakHourCalendar
    from wedguard.testing import FakeClock

    clock = FakeClock(datetime(2026, 1, 5, 5, 58, tzinfo=timezone.utc))
    calendar = PeakHourCalendar.parse("Mon-Sun 06:00-22:00 peak 1MB/s", tz="UTC")
    guard = Guard(rate="2MB/s", calendar=calendar, sources=[], sinks=[], clock=clock)
    with guard.session("photos") as s:
        for _ in range(300):
            s.throttle(1_000_000)
    fig = plot_session(s.report())
    ax_rate = fig.axes[0]
    (peak,) = [p for p in ax_rate.patches if p.get_gid() == "level-PEAK"]
    assert 120.0 <= peak.get_x() <= 125.0  # 06:00 is two minutes in
    allowed = next(line for line in ax_rate.get_lines() if line.get_label() == "allowed rate")
    caps = set(allowed.get_ydata())
    assert caps == {2.0, 1.0}  # MB/s before and during peak hours


def test_importing_the_report_module_does_not_import_matplotlib() -> None:
    import subprocess

    code = "import sys, wedguard, wedguard.report; print('matplotlib' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


def test_a_long_reason_is_cut_on_the_plot_but_kept_in_the_series() -> None:
    """A mark's annotation on the figure is at most 40 characters, so a long reason cannot
    squash the axes; the series keeps the whole text for the HTML report."""
    reason = "calendar: BLACKOUT until 2026-06-13T13:00:00+00:00 (rule 'wedding ceremony')"
    event = {**BREAKER, "reason": reason}
    series = session_series(make_report(), events=[event])
    assert any(reason in mark.label for mark in series.marks)
    fig = plot_session(make_report(), events=[event])
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    breaker_texts = [t for t in texts if t.startswith("breaker")]
    assert breaker_texts, "the breaker event is annotated"
    assert all(len(t) <= 40 for t in breaker_texts)
    assert breaker_texts[0].endswith("…")


# ------------------------------------------------------------- read by a person


def _first_chunk_report() -> dict[str, Any]:
    """60 s at 1 MB/s whose first 1 MiB chunk took 14 ms (73 MB/s for one point)."""
    timeline = [{"t": 0.0, "bytes": 0, "rate": 1e6, "level": "OPEN", "verdict": "OK"}]
    timeline.append({"t": 0.014, "bytes": 2**20, "rate": 1e6, "level": "OPEN", "verdict": "OK"})
    timeline += [
        {"t": float(i), "bytes": 2**20 * i, "rate": 1e6, "level": "OPEN", "verdict": "OK"}
        for i in range(2, 61)
    ]
    return {"name": "slow", "started_at": T0.isoformat(), "duration_s": 60.0,
            "bytes": 60 * 2**20, "timeline": timeline}  # fmt: skip


def test_one_fast_chunk_does_not_set_the_rate_axis() -> None:
    """The first 14 ms interval joins the next ones, and the axis follows the
    sustained rate: 1.05 MB/s plus headroom, not 73 MB/s."""
    series = session_series(_first_chunk_report())
    assert max(series.rate) < 2.2e6
    assert 1.05e6 < series.rate_top < 1.5e6
    fig = plot_session(_first_chunk_report())
    assert fig.axes[0].get_ylim()[1] == pytest.approx(series.rate_top / 1e6)


@pytest.mark.parametrize("report", [make_report(), _first_chunk_report()])
def test_joined_rate_intervals_keep_every_byte(report: dict[str, Any]) -> None:
    series = session_series(report)
    moved = sum(r * dt for r, dt in zip(series.rate, _intervals(series), strict=True))
    timeline = report["timeline"]
    assert moved == pytest.approx(timeline[-1]["bytes"] - timeline[0]["bytes"])


def test_rate_axis_keeps_a_nearby_cap_in_view() -> None:
    """An allowed rate within four times the sustained rate stays on the chart; one far
    above it (a cap that never bound) does not squash the backup's line."""
    series = session_series(make_report())
    assert series.rate_top == pytest.approx(2e6 * 1.15)
    far = make_report()
    for point in far["timeline"]:
        point["rate"] = 500e6
    assert session_series(far).rate_top < 3e6


def test_html_page_has_legends_units_round_ticks_and_pauses() -> None:
    page = html_report(make_report(), latency=LATENCY, baseline=0.1, events=[BREAKER], tz="UTC")
    keys = set(re.findall(r'<li data-key="([^"]+)"', page))
    assert keys >= {"backup rate", "allowed rate", "latency", "baseline", "limit", "PEAK",
                    "BLACKOUT", "breaker", "halt", "stop"}  # fmt: skip
    assert "backup rate and allowed rate (MB/s)" in page
    assert "production api.latency_s (ms)" in page
    xticks = re.findall(r'class="xtick"[^>]*>([^<]+)<', page)
    hour = [f"0:{m:02d}:00" for m in range(0, 60, 10)] + ["1:00:00"]
    assert xticks == hour * 2  # both charts
    yticks = [float(v) for v in re.findall(r'class="ytick"[^>]*>([^<]+)<', page)]
    assert all(round(v / 0.5) * 0.5 == pytest.approx(v) for v in yticks[:5])
    assert "2026-01-05 05:00:00 UTC" in page
    assert T0.isoformat() not in page
    assert re.search(r'<tr data-cause="stop"><td>0:55:00</td><td>5s</td><td>stop</td>'
                     r"<td>operator</td></tr>", page)  # fmt: skip


def test_html_page_times_in_the_zone_asked_for() -> None:
    page = html_report(make_report(), tz="Europe/London")
    assert "2026-01-05 05:00:00 GMT" in page
    with pytest.raises(ConfigError, match="tz"):
        html_report(make_report(), tz="Mars/Olympus")


def test_html_report_of_the_wrong_object_says_so_briefly() -> None:
    """A whole record passed instead of its data: a short error, not the record."""

    class Record:
        data: ClassVar[dict[str, str]] = {"x": "y" * 50_000}

        def __repr__(self) -> str:
            return f"Record({self.data!r})"

    with pytest.raises(ConfigError) as info:
        html_report(Record())
    assert len(str(info.value)) < 400
    assert "Record" in str(info.value)


def test_latency_of_a_stored_session_from_the_history() -> None:
    from wedguard.report import history_latency

    store = MetricsStore(":memory:", retention="30d")
    for minutes, value in ((-20, 0.1), (-10, 0.1), (-5, 0.12), (10, 0.2), (20, 0.3)):
        store.record({"db.latency_s": value}, at=T0 + timedelta(minutes=minutes))
    found = history_latency(store, make_report())
    assert found["metric"] == "db.latency_s"
    assert [v for _, v in found["latency"]] == [0.2, 0.3]
    assert found["baseline"] == 0.1  # the median before the session
    series = session_series(make_report(), **found)
    assert series.latency == (0.2, 0.3)
    assert series.limit == pytest.approx(0.12)  # +20 % for database latency
    assert history_latency(MetricsStore(":memory:"), make_report()) == {}
    store.close()
