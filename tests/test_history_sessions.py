"""Session history: every report stored, the growth trend, the overrun alert."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wedguard import Alert, ConfigError, Severity
from wedguard.history import (
    GrowthTrend,
    HistorySink,
    MetricsStore,
    SessionRecord,
    StoreCorruptError,
)
from wedguard.testing import FakeClock, RecordingSink, ScriptedSource

NIGHT0 = datetime(2026, 1, 5, 5, 0, tzinfo=timezone.utc)  # Monday, after the backup


class Report:
    """A session report as the guard hands it over: attributes and to_dict()."""

    kind = "session"

    def __init__(self, name: str, size: float, wall: float, ended: datetime) -> None:
        self.name, self.bytes, self.wall_time, self.ended_at = name, size, wall, ended

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "bytes": self.bytes,
            "wall_time": self.wall_time,
            "ended_at": self.ended_at.isoformat(),
            "waits": {"calendar": 12.5},
            "timeline": [{"t": 0.0, "bytes": 0, "allowed_rate": 1e6, "level": "OPEN"}],
        }


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NIGHT0)


@pytest.fixture
def store(clock: FakeClock) -> MetricsStore:
    s = MetricsStore(":memory:", clock=clock)
    yield s  # type: ignore[misc]
    s.close()


def nightly(store: MetricsStore, days: int, size: Any, wall: Any, name: str = "photos") -> None:
    for day in range(days):
        store.record_session(Report(name, size(day), wall(day), NIGHT0 + timedelta(days=day)))


def test_every_report_is_stored_in_full(store: MetricsStore) -> None:
    stored = store.record_session(Report("photos", 5e9, 3600.0, NIGHT0))
    assert isinstance(stored, SessionRecord)
    assert (stored.at, stored.name, stored.bytes, stored.duration) == (
        NIGHT0,
        "photos",
        5e9,
        3600.0,
    )
    store.record_session(
        {"name": "db", "bytes": 10, "duration": 2.0}, at=NIGHT0 + timedelta(hours=1)
    )
    (first, second) = store.sessions()
    assert first.data["waits"] == {"calendar": 12.5}
    assert first.data["timeline"][0]["allowed_rate"] == 1e6
    assert second.name == "db"
    assert [s.name for s in store.sessions("db")] == ["db"]


def test_report_time_defaults_to_now(store: MetricsStore, clock: FakeClock) -> None:
    clock.advance(60)
    stored = store.record_session({"name": "x", "bytes": 1, "wall_time": 1})
    assert stored.at == NIGHT0 + timedelta(seconds=60)


@pytest.mark.parametrize(
    "report",
    [
        {"bytes": 1, "wall_time": 1},
        {"name": "x", "wall_time": 1},
        {"name": "x", "bytes": "lots", "wall_time": 1},
        {"name": "x", "bytes": 1},
        42,
    ],
)
def test_bad_reports(store: MetricsStore, report: object) -> None:
    with pytest.raises(ConfigError):
        store.record_session(report)
    assert store.sessions() == []


def test_sessions_have_their_own_retention(clock: FakeClock) -> None:
    store = MetricsStore(":memory:", retention="1d", session_retention="30d", clock=clock)
    store.record_session({"name": "x", "bytes": 1, "wall_time": 1}, at=NIGHT0 - timedelta(days=10))
    store.record_session({"name": "x", "bytes": 1, "wall_time": 1}, at=NIGHT0 - timedelta(days=40))
    assert store.prune() == 1
    assert len(store.sessions()) == 1
    store.close()


def test_linear_growth_is_measured_exactly(store: MetricsStore) -> None:
    nightly(store, 10, lambda d: 2e9 + d * 5e7, lambda d: 7200 + d * 60)
    trend = store.session_trend("photos")
    assert isinstance(trend, GrowthTrend)
    assert trend.count == 10
    assert trend.bytes_per_day == pytest.approx(5e7)
    assert trend.seconds_per_day == pytest.approx(60)
    assert trend.first == NIGHT0
    assert trend.last == NIGHT0 + timedelta(days=9)
    assert trend.bytes_at_last == pytest.approx(2e9 + 9 * 5e7)
    assert trend.predicted_duration(trend.last + timedelta(days=10)) == pytest.approx(
        7200 + 19 * 60
    )
    assert trend.predicted_bytes(trend.last) == pytest.approx(trend.bytes_at_last)


@given(
    slope=st.floats(min_value=-1e3, max_value=1e3),
    intercept=st.floats(min_value=0, max_value=1e5),
    days=st.lists(st.integers(min_value=0, max_value=60), min_size=2, max_size=20, unique=True),
)
def test_trend_recovers_any_line(slope: float, intercept: float, days: list[int]) -> None:
    """Least squares on points on a line gives back that line."""
    with MetricsStore(":memory:", clock=FakeClock(NIGHT0 + timedelta(days=61))) as store:
        for d in days:
            store.record_session(
                {"name": "n", "bytes": intercept + slope * d, "wall_time": 100 + 2 * slope * d},
                at=NIGHT0 + timedelta(days=d),
            )
        trend = store.session_trend()
    assert trend is not None
    assert trend.bytes_per_day == pytest.approx(slope, abs=1e-6)
    assert trend.seconds_per_day == pytest.approx(2 * slope, abs=1e-6)
    assert trend.predicted_bytes(NIGHT0) == pytest.approx(intercept, abs=1e-5)


def test_noisy_growth_is_fitted_by_least_squares(store: MetricsStore) -> None:
    walls = [100.0, 130.0, 110.0, 150.0, 160.0]
    nightly(store, 5, lambda d: 1.0, lambda d: walls[d])
    trend = store.session_trend()
    assert trend is not None
    # slope = cov(x, y) / var(x) for x = 0..4
    assert trend.seconds_per_day == pytest.approx(14.0)


def test_too_little_history_has_no_trend(store: MetricsStore) -> None:
    assert store.session_trend() is None
    store.record_session({"name": "x", "bytes": 1, "wall_time": 1}, at=NIGHT0)
    assert store.session_trend() is None
    store.record_session({"name": "x", "bytes": 2, "wall_time": 2}, at=NIGHT0)
    assert store.session_trend() is None  # two reports at one instant give no slope


def test_overrun_alert_in_about_twelve_days(store: MetricsStore) -> None:
    """Wall time grows 100 s a night; a 3 h window is full in twelve nights."""
    nightly(store, 10, lambda d: 4e10 + d * 1e9, lambda d: 8700 + 100 * d)
    alert = store.overrun_alert("photos", "02:00-05:00", at=NIGHT0 + timedelta(days=9))
    assert isinstance(alert, Alert)
    assert "at this growth the nightly backup" in alert.summary
    assert "overruns its 02:00–05:00 window in about 12 days" in alert.summary
    assert alert.severity is Severity.MEDIUM
    assert alert.key == "history/overrun/photos"
    assert alert.labels["session"] == "photos"
    assert "+1000.0 MB/day" in alert.details
    assert alert.started_at == NIGHT0 + timedelta(days=9)


def test_overrun_severity_rises_as_it_nears(store: MetricsStore) -> None:
    nightly(store, 10, lambda d: 1.0, lambda d: 8700 + 100 * d)
    near = store.overrun_alert("photos", at=NIGHT0 + timedelta(days=19))
    assert near is not None
    assert near.severity is Severity.HIGH
    assert "in about 2 days" in near.summary
    past = store.overrun_alert("photos", at=NIGHT0 + timedelta(days=30))
    assert past is not None
    assert past.summary == "the nightly backup 'photos' already overruns its 02:00–05:00 window"
    far = store.overrun_alert("photos", at=NIGHT0 + timedelta(days=9), horizon="5d")
    assert far is None


def test_no_alert_without_growth_or_history(store: MetricsStore) -> None:
    assert store.overrun_alert("photos") is None
    nightly(store, 10, lambda d: 1.0, lambda d: 9000 - d)
    assert store.overrun_alert("photos", at=NIGHT0 + timedelta(days=9)) is None


def test_windows_crossing_midnight_and_durations(store: MetricsStore) -> None:
    nightly(store, 10, lambda d: 1.0, lambda d: 3 * 3600 + 100 * d)
    alert = store.overrun_alert("photos", "23:00-03:00", at=NIGHT0 + timedelta(days=9))
    assert alert is not None
    assert alert.summary.endswith("overruns its 23:00–03:00 window in about 27 days")
    by_length = store.overrun_alert("photos", "4h", at=NIGHT0 + timedelta(days=9), horizon="200d")
    assert by_length is not None
    assert "in about 27 days" in by_length.summary


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"window": "25:00-03:00"}, "window"),
        ({"window": "whenever"}, "window"),
        ({"horizon": 0}, "horizon"),
        ({"at": datetime(2026, 1, 1)}, "at"),
    ],
)
def test_overrun_bad_arguments(store: MetricsStore, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        store.overrun_alert("photos", **kwargs)
    assert info.value.field == field


# ------------------------------------------------------------- with the guard


def test_a_guard_session_report_is_stored(clock: FakeClock) -> None:
    """The guard's own SessionReport, sent to a HistorySink, lands in the store."""
    from wedguard import Guard

    history = HistorySink(":memory:", clock=clock)
    guard = Guard(rate="1MB/s", calendar=None, sources=[], sinks=[history], clock=clock)
    with guard.session("photos") as s:
        for _ in range(10):
            s.throttle(500_000)
    (stored,) = history.store.sessions()  # type: ignore[union-attr]
    report = s.report()
    assert (stored.name, stored.bytes) == ("photos", 5e6)
    assert stored.duration == pytest.approx(report.duration)
    assert stored.at == report.finished_at
    assert len(stored.data["timeline"]) == len(report.timeline)


def test_history_that_cannot_open_never_fails_the_backup(tmp_path: Path, clock: FakeClock) -> None:
    """A corrupt history file: the backup runs, one alert says so, and only one."""
    from wedguard import Guard

    path = tmp_path / "history.db"
    path.write_bytes(b"\x00garbage" * 512)
    alerts = RecordingSink()
    history = HistorySink(path, alerts=alerts, clock=clock)
    assert not history.available
    assert isinstance(history.failure, StoreCorruptError)
    guard = Guard(rate="1MB/s", calendar=None, sources=[], sinks=[history], clock=clock)
    for _ in range(2):
        with guard.session("photos") as s:
            s.throttle(1000)
    history.record({"cpu.percent": 1.0})
    (alert,) = alerts.events
    assert isinstance(alert, Alert)
    assert alert.key == "history/unavailable"
    assert "not a readable SQLite database" in alert.details


def test_history_that_fails_later_alerts_once(clock: FakeClock) -> None:
    alerts: list[Alert] = []
    store = MetricsStore(":memory:", clock=clock)
    history = HistorySink(store, alerts=alerts.append)
    history.emit(Alert("k", Severity.LOW, "first"))
    assert len(store.events()) == 1
    store.close()  # the store goes away under the sink
    history.emit(Alert("k", Severity.LOW, "second"))
    history.emit({"kind": "session", "name": "x", "bytes": 1, "duration_s": 1})
    assert not history.available
    assert [a.key for a in alerts] == ["history/unavailable"]


def test_malformed_events_are_dropped_not_fatal(clock: FakeClock) -> None:
    history = HistorySink(":memory:", clock=clock)
    history.emit({"kind": "session", "bytes": 1})  # no name
    history.emit({"no kind": 1})
    assert history.available
    assert history.store.sessions() == []  # type: ignore[union-attr]


def test_an_alert_sink_that_raises_is_contained(tmp_path: Path) -> None:
    def explode(alert: Alert) -> None:
        raise RuntimeError("pager down")

    history = HistorySink(tmp_path / "no" / "such" / "dir.db", alerts=explode)
    assert not history.available


def test_recorded_source_tees_samples_into_history(clock: FakeClock) -> None:
    history = HistorySink(":memory:", clock=clock)
    src = history.source(ScriptedSource([{"cpu.percent": 12.0}, {"cpu.percent": 14.0}]))
    assert src.sample() == {"cpu.percent": 12.0}
    clock.advance(60)
    assert src.sample() == {"cpu.percent": 14.0}
    assert history.store.series("cpu.percent") == [  # type: ignore[union-attr]
        (NIGHT0, 12.0),
        (NIGHT0 + timedelta(seconds=60), 14.0),
    ]
    with pytest.raises(ConfigError):
        history.source(object())
    with pytest.raises(ConfigError):
        HistorySink(":memory:", alerts=42)
    with pytest.raises(ConfigError):
        HistorySink(":memory:", retention="a while")


def test_series_limits_and_ranges(store: MetricsStore) -> None:
    for i in range(5):
        store.record({"m": float(i)}, at=NIGHT0 + timedelta(minutes=i))
    assert [v for _, v in store.series("m", limit=2)] == [0.0, 1.0]
    assert [v for _, v in store.series("m", since=NIGHT0 + timedelta(minutes=3))] == [3.0, 4.0]
    with pytest.raises(ConfigError):
        store.series("m", limit=0)


def test_a_guard_feeds_history_end_to_end(clock: FakeClock) -> None:
    """Sources teed through HistorySink: samples and the report land; the plot data reads them."""
    from wedguard import Guard
    from wedguard.report import session_series

    history = HistorySink(":memory:", clock=clock)
    source = history.source(ScriptedSource(lambda i: {"api.latency_s": 0.1 + 0.001 * (i % 3)}))
    guard = Guard(rate="1MB/s", calendar=None, sources=[source], sinks=[history], clock=clock)
    with guard.session("photos") as s:
        for _ in range(60):
            s.throttle(100_000)
    store = history.store
    assert store is not None
    assert store.count("api.latency_s") >= 3
    (stored,) = store.sessions("photos")
    assert stored.bytes == 6e6
    series = session_series(s.report(), latency=store)
    assert len(series.latency) == store.count("api.latency_s")
    assert series.latency[:3] == pytest.approx((0.1, 0.101, 0.102))
