"""Guard and Session on a fake clock: rates, windows, impact, stop, deadlines, cutoffs."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import math
from datetime import datetime, timedelta

import pytest

import wedguard as wg
from guard_helpers import (
    T0,
    Assessment,
    HalvingController,
    KeyAnalyzer,
    ListCalendar,
    SimpleBreaker,
    at,
)
from wedguard.levels import Level, Verdict
from wedguard.testing import FakeClock, RecordingSink, ScriptedSource

MB = 1_000_000


def make_guard(clock: FakeClock, **kw: object) -> wg.Guard:
    kw.setdefault("calendar", None)
    kw.setdefault("sources", [])
    kw.setdefault("sinks", [])
    kw.setdefault("breaker", None)
    return wg.Guard(clock=clock, **kw)  # type: ignore[arg-type]


def copy_units(
    s: wg.Session, units: int, chunks: int, chunk: int = 100, size: int | None = None
) -> None:
    """``units`` units (files) of ``chunks`` chunks each; the first chunk starts the unit."""
    for _ in range(units):
        s.throttle(chunk, ops=1, size=size)
        for _ in range(chunks - 1):
            s.throttle(chunk)


def copy_chunks(s: wg.Session, count: int, chunk: int = 100) -> None:
    for _ in range(count):
        s.throttle(chunk)


def alerts(sink: RecordingSink, key: str) -> list[wg.Alert]:
    return [e for e in sink.of_kind("alert") if e.key == key]  # type: ignore[attr-defined]


# -- construction ------------------------------------------------------------------------


def test_guard_alone_is_useful() -> None:
    """Guard() with no arguments composes the defaults and runs a session."""
    guard = wg.Guard()
    try:
        d = guard.decision()
        assert isinstance(d, wg.Decision)
        assert d.rate <= wg.parse_rate("50MB/s")
        with guard.session("defaults") as s:
            s.throttle(1000)
        assert s.report().bytes == 1000
        assert guard.max_concurrent == 2
    finally:
        guard.close()


@pytest.mark.parametrize(
    ("kwargs", "field", "value"),
    [
        ({"rate": "fast"}, "rate", "fast"),
        ({"rate": 0}, "rate", "0"),
        ({"max_concurrent": 0}, "max_concurrent", "0"),
        ({"max_concurrent": True}, "max_concurrent", "True"),
        ({"sample_interval": 0}, "sample_interval", "0"),
        ({"stop_check_interval": "soon"}, "stop_check_interval", "soon"),
        ({"sources": [object()]}, "sources", "object"),
        ({"sinks": [42]}, "sinks", "42"),
        ({"calendar": "weekdays"}, "calendar", "weekdays"),
        ({"analyzer": 3}, "analyzer", "3"),
        ({"breaker": "b"}, "breaker", "b"),
        ({"ops_rate": -1}, "ops_rate", "-1"),
        ({"stop_file": 12}, "stop_file", "12"),
    ],
)
def test_guard_rejects_bad_input(
    clock: FakeClock, kwargs: dict[str, object], field: str, value: str
) -> None:
    with pytest.raises(wg.ConfigError) as info:
        make_guard(clock, **kwargs)
    assert info.value.field == field
    assert value in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"deadline": datetime(2026, 1, 5, 1)}, "deadline"),  # naive
        ({"deadline": -5}, "deadline"),
        ({"deadline": [1]}, "deadline"),
        ({"expected_bytes": "lots"}, "expected_bytes"),
        ({"rate": "0"}, "rate"),
        ({"ops_rate": "x"}, "ops_rate"),
        ({"max_duration": 0}, "max_duration"),
        ({"max_bytes": 0}, "max_bytes"),
        ({"stop_at": "tonight"}, "stop_at"),
        ({"cutoff": "gentle"}, "cutoff"),
        ({"on_deadline": "ignore"}, "on_deadline"),
    ],
)
def test_session_rejects_bad_input(clock: FakeClock, kwargs: dict[str, object], field: str) -> None:
    guard = make_guard(clock)
    name = kwargs.pop("name", "s")
    with pytest.raises(wg.ConfigError) as info:
        guard.session(name, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_window_deadline_needs_a_calendar(clock: FakeClock) -> None:
    with pytest.raises(wg.ConfigError, match="deadline"):
        make_guard(clock).session("s", deadline="window")


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf, True])
def test_throttle_rejects_bad_amounts(clock: FakeClock, bad: object) -> None:
    guard = make_guard(clock)
    with guard.session("s") as s, pytest.raises(wg.ConfigError, match="n"):
        s.throttle(bad)  # type: ignore[arg-type]


def test_throttle_outside_the_with_block_is_an_error(clock: FakeClock) -> None:
    guard = make_guard(clock)
    s = guard.session("s")
    with pytest.raises(wg.WedguardError, match="not active"):
        s.throttle(10)
    with s:
        s.throttle(10)
    with pytest.raises(wg.WedguardError, match="not active"):
        s.throttle(10)


# -- the rate ------------------------------------------------------------------------------


def test_nothing_limits_means_no_wait(clock: FakeClock) -> None:
    guard = make_guard(clock, rate="off")
    with guard.session("s") as s:
        for _ in range(1000):
            assert s.throttle(64 * 1024) == 0.0
    assert clock.monotonic() == 0.0
    assert s.report().bytes == 1000 * 64 * 1024


def test_rate_paces_the_session_exactly(clock: FakeClock) -> None:
    """10 MB at 1 MB/s with a 0.2 MB burst takes 9.8 s of fake time (the burst is free)."""
    guard = make_guard(clock, rate="1MB/s")
    with guard.session("s") as s:
        for _ in range(100):
            s.throttle(100_000)
    assert clock.monotonic() == pytest.approx(9.8)
    r = s.report()
    assert r.wait_seconds["rate"] == pytest.approx(9.8)
    assert r.mean_rate == pytest.approx(10 * MB / 9.8)
    assert r.bytes == 10 * MB


def test_session_cap_applies_under_the_global_rate(clock: FakeClock) -> None:
    guard = make_guard(clock, rate="10MB/s")
    with guard.session("capped", rate="1MB/s") as s:
        for _ in range(50):
            s.throttle(100_000)
    # 5 MB at 1 MB/s: the session's own bucket (0.2 MB burst) binds
    assert clock.monotonic() == pytest.approx(4.8)


def test_ops_budget_counts_operations(clock: FakeClock) -> None:
    guard = make_guard(clock, rate="off", ops_rate=10)
    with guard.session("files") as s:
        for _ in range(32):
            s.throttle(10, ops=1)
    # 10 ops/s with a burst of 2: 30 ops of debt at 10/s
    assert clock.monotonic() == pytest.approx(3.0)
    assert s.report().ops == 32


def test_session_ops_cap(clock: FakeClock) -> None:
    guard = make_guard(clock, rate="off")
    with guard.session("files", ops_rate=5) as s:
        for _ in range(11):
            s.throttle(0, ops=1)
    assert clock.monotonic() == pytest.approx(1.2)  # a burst of 5, then 6 more at 5/s


# -- calendar ------------------------------------------------------------------------------


def peak_blackout_open() -> ListCalendar:
    return ListCalendar(
        (at(0), at(1), Level.PEAK, 1 * MB),
        (at(1), at(3), Level.BLACKOUT, None),
    )


def test_crossing_peak_blackout_open_waits_exactly_until_the_window_opens(
    clock: FakeClock, sink: RecordingSink
) -> None:
    clock.set(at(0, 59, 55))
    guard = make_guard(clock, rate="50MB/s", calendar=peak_blackout_open(), sinks=[sink])
    assert guard.decision().rate == 1 * MB
    times = []
    with guard.session("photos") as s:
        for _ in range(60):
            s.throttle(200_000)
            times.append(clock.now())
    # the calls before 01:00 ran at the PEAK cap; the first one after it waited for 03:00
    before = [t for t in times if t < at(1)]
    after = [t for t in times if t >= at(1)]
    assert before
    assert after
    assert after[0] >= at(3)
    assert after[0] - at(3) < timedelta(milliseconds=10)  # only its own bytes at 50 MB/s
    r = s.report()
    assert r.wait_seconds["calendar"] == pytest.approx(7200, abs=1e-3)
    assert r.pauses == 1
    assert r.pause_log[0].cause == "calendar"
    assert r.pause_log[0].started_at == at(1)
    levels = [e.level for e in sink.of_kind("decision")]  # type: ignore[attr-defined]
    assert levels == [Level.BLACKOUT, Level.OPEN]  # the changes, not the initial state


def test_blackout_from_the_start_waits_until_it_ends(clock: FakeClock) -> None:
    clock.set(at(1, 30))
    guard = make_guard(clock, calendar=peak_blackout_open())
    with guard.session("s") as s:
        waited = s.throttle(1000)
    assert waited == pytest.approx(5400)
    assert clock.now() == at(3)


def test_decision_explains_the_calendar_cap(clock: FakeClock) -> None:
    guard = make_guard(clock, rate="50MB/s", calendar=peak_blackout_open())
    d = guard.decision()
    assert d.level is Level.PEAK
    assert d.rate == 1 * MB
    assert d.window_end == at(1)
    assert d.reasons[0].startswith("calendar: PEAK cap 1 MB/s")
    assert "rate limit 50 MB/s" in d.reasons
    clock.set(at(2))
    d = guard.decision()
    assert d.paused
    assert d.rate == 0.0
    assert d.reasons[0].startswith("calendar: BLACKOUT until")


# -- impact --------------------------------------------------------------------------------


def test_halt_pauses_and_resumes(clock: FakeClock, sink: RecordingSink) -> None:
    source = ScriptedSource([{"halt": 1.0}] * 3 + [{"halt": 0.0}])
    guard = make_guard(
        clock,
        rate="10MB/s",
        sources=[source],
        analyzer=KeyAnalyzer(),
        controller=None,
        sinks=[sink],
    )
    with guard.session("db") as s:
        s.throttle(1000)
    r = s.report()
    assert r.wait_seconds["impact"] == pytest.approx(3.0)
    assert r.pauses == 1
    assert r.pause_log[0].cause == "impact"
    assert "HALT" in r.pause_log[0].reason
    verdicts = [e.verdict for e in sink.of_kind("decision")]  # type: ignore[attr-defined]
    assert Verdict.HALT in verdicts
    assert verdicts[-1] is Verdict.OK
    halt = alerts(sink, "wedguard/halt")
    assert [a.firing for a in halt] == [True, False]
    assert halt[0].severity is wg.Severity.CRITICAL
    assert "api.latency_s" in halt[0].summary


def test_throttle_verdict_lowers_the_rate_through_the_controller(clock: FakeClock) -> None:
    source = ScriptedSource([{"throttle": 1.0}])
    ctrl = HalvingController()
    guard = make_guard(
        clock, rate="2MB/s", sources=[source], analyzer=KeyAnalyzer(), controller=ctrl
    )
    with guard.session("s") as s:
        s.throttle(1)
        d = guard.decision()
        assert d.verdict is Verdict.THROTTLE
        assert d.rate == 1 * MB
        assert d.reasons[0].startswith("impact: THROTTLE, controller allows 1 MB/s")
        assert "db.latency_s" in d.reasons[0]
    assert ctrl.calls >= 1


def test_analyzer_sees_the_calendar_level(clock: FakeClock) -> None:
    analyzer = KeyAnalyzer()
    guard = make_guard(
        clock,
        calendar=peak_blackout_open(),
        sources=[ScriptedSource([{"x": 1.0}])],
        analyzer=analyzer,
    )
    with guard.session("s") as s:
        s.throttle(10)
    assert analyzer.levels[0] is Level.PEAK


def test_failing_source_and_sink_never_break_the_backup(clock: FakeClock) -> None:
    class Broken:
        def sample(self) -> dict[str, float]:
            raise OSError("probe down")

        def emit(self, event: object) -> None:
            raise RuntimeError("sink down")

    seen: list[dict[str, float]] = []

    class Spy(KeyAnalyzer):
        def assess(self, sample, level=Level.OPEN):  # type: ignore[no-untyped-def]
            seen.append(dict(sample))
            return super().assess(sample, level)

    guard = make_guard(clock, sources=[Broken()], analyzer=Spy(), sinks=[Broken()])
    with guard.session("s") as s:
        s.throttle(10)
    guard.stop("x")  # an event to the broken sink
    assert seen[0] == {"Broken.error": 1.0}


# -- stop and hold -------------------------------------------------------------------------


def test_stop_raises_inside_throttle_and_resume_lifts_it(
    clock: FakeClock, sink: RecordingSink
) -> None:
    guard = make_guard(clock, sinks=[sink])
    with guard.session("s") as s:
        s.throttle(10)
        guard.stop("database migration")
        assert guard.decision().stopped
        with pytest.raises(wg.EmergencyStop) as info:
            s.throttle(10)
        assert info.value.reason == "database migration"
        guard.resume()
        s.throttle(10)
    assert s.report().bytes == 20  # the refused chunk was not counted
    stops = alerts(sink, "wedguard/stop")
    assert [a.firing for a in stops] == [True, False]
    reasons = [e.reasons for e in sink.of_kind("decision") if e.stopped]  # type: ignore[attr-defined]
    assert reasons
    assert reasons[0][0] == "emergency stop: database migration"


def test_a_stopped_session_reports_it(clock: FakeClock) -> None:
    guard = make_guard(clock)
    guard.stop("maintenance")
    with pytest.raises(wg.EmergencyStop), guard.session("s") as s:
        s.throttle(1)
    r = s.report()
    assert r.outcome == "stopped"
    assert not r.ok
    assert "maintenance" in r.error


def test_stop_file_stops_on_fake_time(clock: FakeClock, tmp_path) -> None:  # type: ignore[no-untyped-def]
    stop = tmp_path / "wedguard.stop"
    guard = make_guard(clock, stop_file=stop, rate="1MB/s")
    with guard.session("s") as s:
        s.throttle(100_000)
        stop.write_text("")
        with pytest.raises(wg.EmergencyStop, match="stop file"):
            copy_chunks(s, 10, 100_000)
        assert clock.monotonic() <= 0.2
        stop.unlink()
        clock.advance(0.2)
        s.throttle(10)


# -- deadlines -----------------------------------------------------------------------------


def test_deadline_inside_a_blackout_raises(clock: FakeClock) -> None:
    clock.set(at(0, 59))
    guard = make_guard(clock, calendar=peak_blackout_open())
    with guard.session("s", deadline=at(2)) as s:
        s.throttle(10)
        clock.set(at(1, 0, 1))
        with pytest.raises(wg.DeadlineError) as info:
            s.throttle(10)
    assert info.value.deadline == at(2)
    assert "BLACKOUT" in info.value.reason
    assert clock.now() == at(1, 0, 1)  # it did not sleep first


def test_deadline_after_the_blackout_waits(clock: FakeClock) -> None:
    clock.set(at(1, 30))
    guard = make_guard(clock, calendar=peak_blackout_open())
    with guard.session("s", deadline=at(4)) as s:
        s.throttle(10)
    assert clock.now() == at(3)


def test_on_deadline_wait_sleeps_through(clock: FakeClock) -> None:
    clock.set(at(1, 30))
    guard = make_guard(clock, calendar=peak_blackout_open())
    with guard.session("s", deadline=at(2), on_deadline="wait") as s:
        s.throttle(10)
    assert clock.now() == at(3)


def test_deadline_risk_alert_fires_at_once_when_the_calendar_makes_it_unreachable(
    clock: FakeClock, sink: RecordingSink
) -> None:
    """5000 MB in 2 h at 1 MB/s fits in 7200 s, but not with a 1 h blackout ahead."""
    cal = ListCalendar((at(0, 30), at(1, 30), Level.BLACKOUT, None))
    guard = make_guard(clock, rate="1MB/s", calendar=cal, sinks=[sink])
    with guard.session("photos", expected_bytes="5000MB", deadline="2h", on_deadline="wait") as s:
        s.throttle(1000)
        assert clock.monotonic() < 1.0  # long before any cutoff
        risk = alerts(sink, "wedguard/deadline/photos")
        assert len(risk) == 1
        assert risk[0].firing
        assert risk[0].labels["session"] == "photos"
        # remaining / allowed seconds (the blackout hour does not count)
        assert s.needed_rate == pytest.approx((5000 * MB - 1000) / 3600, rel=1e-3)
        assert guard.decision().needed_rate == pytest.approx(s.needed_rate)
    risk = alerts(sink, "wedguard/deadline/photos")
    assert [a.firing for a in risk] == [True, False]  # resolved when the session ended


def test_no_deadline_alert_when_reachable(clock: FakeClock, sink: RecordingSink) -> None:
    guard = make_guard(clock, rate="1MB/s", sinks=[sink])
    with guard.session("photos", expected_bytes="5000MB", deadline="2h") as s:
        s.throttle(1000)
        assert s.needed_rate == pytest.approx((5000 * MB - 1000) / 7200, rel=1e-3)
    assert alerts(sink, "wedguard/deadline/photos") == []
    report = s.report()
    assert report.deadline == T0 + timedelta(hours=2)
    assert report.expected_bytes == 5000 * MB


def test_deadline_alert_fires_when_impact_lowers_the_rate(
    clock: FakeClock, sink: RecordingSink
) -> None:
    source = ScriptedSource(lambda i: {"throttle": 1.0 if i >= 2 else 0.0})
    guard = make_guard(
        clock,
        rate="1MB/s",
        sinks=[sink],
        sources=[source],
        analyzer=KeyAnalyzer(),
        controller=HalvingController(),
    )
    with guard.session("db", expected_bytes="5000MB", deadline="2h") as s:
        for _ in range(30):
            s.throttle(100_000)
            if alerts(sink, "wedguard/deadline/db"):
                break
    fired = alerts(sink, "wedguard/deadline/db")
    assert fired
    assert fired[0].firing
    assert clock.monotonic() < 5.0


def test_window_deadline_is_the_next_stricter_window(clock: FakeClock) -> None:
    clock.set(at(0, 10))
    cal = ListCalendar((at(0, 0), at(1), Level.OPEN, None), (at(1), at(3), Level.PEAK, MB))
    guard = make_guard(clock, calendar=cal)
    with guard.session("s", deadline="window") as s:
        assert s.deadline == at(1)


# -- cutoffs -------------------------------------------------------------------------------


def test_hard_max_bytes_stops_at_the_limit(clock: FakeClock) -> None:
    guard = make_guard(clock)
    with pytest.raises(wg.CutoffReached) as info, guard.session("s", max_bytes=250) as s:
        copy_chunks(s, 10)
    assert info.value.limit == "max_bytes"
    assert info.value.mode is wg.Cutoff.HARD
    r = s.report()
    assert r.bytes == 200
    assert r.outcome == "cutoff"
    assert r.ok


def test_soft_max_bytes_finishes_the_unit(clock: FakeClock) -> None:
    guard = make_guard(clock)
    s = guard.session("s", max_bytes=250, cutoff="soft")
    with pytest.raises(wg.CutoffReached), s:
        copy_units(s, 5, 3)
    assert s.report().bytes == 300  # the first unit crossed the limit and was finished


def test_cautious_max_bytes_does_not_start_a_unit_that_would_cross(clock: FakeClock) -> None:
    guard = make_guard(clock)
    s = guard.session("s", max_bytes=250, cutoff=wg.Cutoff.CAUTIOUS)
    with pytest.raises(wg.CutoffReached), s:
        copy_units(s, 5, 2, size=200)
    assert s.report().bytes == 200


def test_cutoff_modes_on_time(clock: FakeClock) -> None:
    guard = make_guard(clock, rate="1000B/s")
    # HARD: the first call after max_duration raises, even inside a unit
    with pytest.raises(wg.CutoffReached) as info, guard.session("h", max_duration=2) as s:
        copy_units(s, 100, 2)
    assert info.value.limit == "max_duration"
    assert s.report().duration <= 2.2
    # SOFT: the unit that was running when the limit passed is finished
    clock2 = FakeClock()
    guard = make_guard(clock2, rate="1000B/s")
    with pytest.raises(wg.CutoffReached), guard.session("s", max_duration=1, cutoff="soft") as s:
        copy_units(s, 100, 10)
    assert s.report().bytes % 1000 == 0
    # CAUTIOUS: a unit that cannot finish before stop_at is not started
    clock3 = FakeClock()
    guard = make_guard(clock3, rate="1000B/s")
    stop_at = clock3.now() + timedelta(seconds=3)
    with (
        pytest.raises(wg.CutoffReached) as info,
        guard.session("c", stop_at=stop_at, cutoff="cautious") as s,
    ):
        copy_units(s, 100, 10, size=1000)
    assert info.value.limit == "stop_at"
    assert clock3.now() <= stop_at


# -- slots ---------------------------------------------------------------------------------


def test_slot_timeout(clock: FakeClock) -> None:
    guard = make_guard(clock, max_concurrent=1)
    with guard.session("a"):
        with pytest.raises(wg.SlotTimeout) as info, guard.session("b", slot_timeout=5):
            pass
        assert info.value.timeout == 5
        assert clock.monotonic() == pytest.approx(5)
    assert guard.active_sessions == 0
    assert guard.waiting_sessions == 0


def test_a_session_that_dies_frees_its_slot(clock: FakeClock) -> None:
    guard = make_guard(clock, max_concurrent=1)
    with pytest.raises(ZeroDivisionError), guard.session("crash"):
        1 / 0  # noqa: B018
    assert guard.active_sessions == 0
    s = guard.session("abandoned")
    s.__enter__()
    assert guard.active_sessions == 1
    del s
    gc.collect()
    assert guard.active_sessions == 0
    with guard.session("next") as s2:
        s2.throttle(1)


def test_sessions_cannot_be_entered_twice(clock: FakeClock) -> None:
    guard = make_guard(clock)
    s = guard.session("once")
    with s:
        pass
    with pytest.raises(wg.ConfigError):
        s.__enter__()


# -- reports and events --------------------------------------------------------------------


def test_report_is_complete_and_serialisable(clock: FakeClock, sink: RecordingSink) -> None:
    guard = make_guard(clock, rate="1MB/s", sinks=[sink])
    with guard.session("photos") as s:
        for _ in range(40):
            s.throttle(100_000)
        live = s.report()
        assert live.outcome == "running"
        assert live.finished_at is None
    r = s.report()
    assert r.outcome == "done"
    assert r.finished_at == T0 + timedelta(seconds=3.8)
    assert r.duration == pytest.approx(3.8)
    with pytest.warns(DeprecationWarning, match="wall_time"):  # the deprecated name
        assert r.wall_time == r.duration
    assert set(r.wait_seconds) == {"rate", "calendar", "impact", "slots", "stop"}
    assert r.waited == pytest.approx(3.8)
    assert r.peak_rate >= r.mean_rate
    assert r.peak_rate == pytest.approx(1 * MB, rel=0.2)
    assert len(r.timeline) >= 4
    assert r.timeline[0].t == 0
    assert r.timeline[-1].bytes == 4 * MB
    assert all(p.level is Level.OPEN for p in r.timeline)
    data = json.loads(json.dumps(r.to_dict()))
    assert data["kind"] == "session"
    assert data["duration_s"] == pytest.approx(3.8)
    assert data["wait_seconds"]["rate"] == pytest.approx(3.8)
    assert data["finished_at"] == r.finished_at.isoformat()
    assert data["ok"] is True
    (event,) = sink.of_kind("session")
    assert event.to_dict()["bytes"] == 4 * MB
    assert "photos" in str(r)


def test_decision_events_on_every_change_only(clock: FakeClock, sink: RecordingSink) -> None:
    guard = make_guard(clock, sinks=[sink], calendar=peak_blackout_open())
    with guard.session("s") as s:
        for _ in range(5):
            s.throttle(1)
    assert sink.of_kind("decision") == []  # nothing changed yet
    guard.hold("deploy")
    guard.resume()
    ds = sink.of_kind("decision")
    assert [d.on_hold for d in ds] == [True, False]  # type: ignore[attr-defined]
    assert isinstance(ds[0], wg.Decision)
    assert ds[0].reasons[0] == "on hold: deploy"  # type: ignore[attr-defined]
    assert json.loads(json.dumps(ds[0].to_dict()))["kind"] == "decision"


def test_decision_is_immutable(clock: FakeClock) -> None:
    d = make_guard(clock).decision()
    with pytest.raises(AttributeError):
        d.rate = 5  # type: ignore[misc]


# -- protect -------------------------------------------------------------------------------


def test_protect_takes_budget_by_cost(clock: FakeClock, sink: RecordingSink) -> None:
    guard = make_guard(clock, rate="1MB/s", sinks=[sink])
    calls: list[str] = []

    @guard.protect(cost=lambda path, size: size)
    def upload(path: str, size: int) -> str:
        calls.append(path)
        return path.upper()

    assert upload("a", 200_000) == "A"
    assert upload("b", 1_000_000) == "B"
    assert upload("c", 1_000_000) == "C"
    assert calls == ["a", "b", "c"]
    # 0.2 MB burst; then a 1 MB cost waits for its first 0.2 MB and leaves a debt that
    # the next call repays: 0.2 s + 1.0 s
    assert clock.monotonic() == pytest.approx(1.2)
    guard.flush()
    reports = sink.of_kind("session")
    # the two calls that waited for the budget ran as sessions of their own; the first
    # went at once and is reported in its function's account
    assert [r.name for r in reports] == [upload.__wrapped__.__qualname__] * 3  # type: ignore[attr-defined]
    assert [(r.ops, r.bytes) for r in reports] == [(1, 1e6), (1, 1e6), (1, 2e5)]  # type: ignore[attr-defined]
    assert upload.__name__ == "upload"


def test_protect_runs_under_the_breaker(clock: FakeClock, sink: RecordingSink) -> None:
    breaker = SimpleBreaker(clock, threshold=2, recovery=30)
    guard = make_guard(clock, breaker=breaker, sinks=[sink])
    fail = [True]

    @guard.protect
    def upload() -> str:
        if fail[0]:
            raise ConnectionError("s3 down")
        return "ok"

    for _ in range(2):
        with pytest.raises(ConnectionError):
            upload()
    with pytest.raises(wg.CircuitOpenError) as info:
        upload()
    assert info.value.breaker == "uploads"
    assert info.value.retry_after == pytest.approx(30)
    opened = alerts(sink, "wedguard/breaker/uploads")
    assert opened
    assert opened[0].firing
    assert sink.of_kind("breaker")
    fail[0] = False

    @guard.protect(wait_on_open=True)
    def patient() -> str:
        return "ok"

    breaker.failures = 0
    breaker.opened_at = None
    breaker.record_failure()
    breaker.record_failure()
    t = clock.monotonic()
    assert patient() == "ok"
    assert clock.monotonic() - t == pytest.approx(30)
    assert [a.firing for a in alerts(sink, "wedguard/breaker/uploads")][-1] is False


def test_protect_rejects_bad_costs(clock: FakeClock) -> None:
    guard = make_guard(clock)
    with pytest.raises(wg.ConfigError, match="cost"):
        guard.protect(cost=-1)
    with pytest.raises(wg.ConfigError, match="ops"):
        guard.protect(ops=-1)

    @guard.protect(cost=lambda: "big")
    def f() -> None:
        pass

    with pytest.raises(wg.ConfigError, match="cost"):
        f()


async def test_protect_async(clock: FakeClock) -> None:
    breaker = SimpleBreaker(clock, threshold=1, recovery=10)
    guard = make_guard(clock, rate="1MB/s", breaker=breaker)

    @guard.protect(cost=lambda data: len(data))
    async def put(data: bytes) -> int:
        await asyncio.sleep(0)
        return len(data)

    assert await put(b"x" * 200_000) == 200_000
    assert await put(b"x" * 500_000) == 500_000
    assert await put(b"x" * 100_000) == 100_000
    assert clock.monotonic() == pytest.approx(0.2 + 0.4)  # burst, then debt repaid

    @guard.protect
    async def broken() -> None:
        raise TimeoutError

    with pytest.raises(TimeoutError):
        await broken()
    with pytest.raises(wg.CircuitOpenError):
        await put(b"x")


# -- asyncio -------------------------------------------------------------------------------


async def test_async_session_waits_on_the_clock(clock: FakeClock) -> None:
    guard = make_guard(clock, rate="1MB/s", calendar=peak_blackout_open())
    clock.set(at(0, 59, 59))
    async with guard.session("a") as s:
        for _ in range(20):
            await s.throttle_async(100_000)
    r = s.report()
    assert r.bytes == 2 * MB
    assert r.wait_seconds["calendar"] == pytest.approx(7200, abs=1e-3)
    assert clock.now() >= at(3)


async def test_async_stop(clock: FakeClock) -> None:
    guard = make_guard(clock)
    async with guard.session("a") as s:
        await s.throttle_async(1)
        guard.stop("now")
        with pytest.raises(wg.EmergencyStop):
            await s.throttle_async(1)


async def test_async_slot_timeout(clock: FakeClock) -> None:
    guard = make_guard(clock, max_concurrent=1)
    async with guard.session("a"):
        with pytest.raises(wg.SlotTimeout):
            async with guard.session("b", slot_timeout=2):
                pass
    assert guard.waiting_sessions == 0


def test_decision_assessment_helper_matches() -> None:
    a = Assessment(Verdict.OK)
    assert a.reasons == ()


def test_observe_baseline_feeds_the_analyzer(clock: FakeClock) -> None:
    seen: list[dict[str, float]] = []

    class Learning(KeyAnalyzer):
        def observe_baseline(self, sample: dict[str, float]) -> None:
            seen.append(dict(sample))

    guard = make_guard(
        clock, sources=[ScriptedSource([{"api.latency_s": 0.1}])], analyzer=Learning()
    )
    guard.observe_baseline()
    guard.observe_baseline({"api.latency_s": 0.2})
    assert seen == [{"api.latency_s": 0.1}, {"api.latency_s": 0.2}]
    make_guard(clock).observe_baseline()  # no analyser: nothing to teach


def test_with_wedguards_own_policies(clock: FakeClock) -> None:
    """The real calendar, breaker, analyser and controller compose."""
    cal = wg.PeakHourCalendar.parse(
        "Mon-Sun 06:00-22:00 peak 8Mbit/s\n2026-01-06 blackout", tz="UTC"
    )
    breaker = wg.CircuitBreaker("s3", clock=clock)
    analyzer = wg.ImpactAnalyzer(wg.Thresholds(), clock=clock)
    guard = make_guard(
        clock,
        rate="50MB/s",
        calendar=cal,
        breaker=breaker,
        analyzer=analyzer,
        controller=wg.AIMDController(),
        sources=[ScriptedSource([{"cpu.percent": 10.0}])],
    )
    clock.set(at(12))
    assert guard.decision().level is Level.PEAK
    assert guard.decision().rate == 1_000_000
    with guard.session("day") as s:
        s.throttle(1_000_000)
        s.throttle(1_000_000)
        assert s.report().wait_seconds["rate"] > 0
        clock.set(at(24, 0, 30))
        s.throttle(10)  # Tuesday is a blackout day: sleep until Wednesday
        assert clock.now() >= at(48)
    assert s.report().wait_seconds["calendar"] == pytest.approx(24 * 3600 - 30, abs=1)

    @guard.protect
    def flaky() -> None:
        raise OSError("s3 down")

    for _ in range(3):
        with pytest.raises(OSError, match="s3 down"):
            flaky()
    with pytest.raises(wg.CircuitOpenError) as info:
        flaky()
    assert info.value.breaker == "s3"


def test_protect_and_wrap_join_the_session_they_run_in(clock: FakeClock) -> None:
    """Inside a session, a protected call or a wrapped file takes no second slot."""
    guard = make_guard(clock, max_concurrent=1, rate="1MB/s")

    @guard.protect(cost=lambda data: len(data))
    def upload(data: bytes) -> int:
        return len(data)

    with guard.session("outer", slot_timeout=1) as s:
        assert wg.current_session() is s
        assert upload(b"x" * 100) == 100
        out = io.BytesIO()
        guard.copyfileobj(io.BytesIO(b"y" * 50), out)
        with guard.wrap(io.BytesIO(b"z" * 25)) as f:
            f.read()
            assert f.session is s
        assert s.report().bytes == 175
        assert s.report().ops == 1
    assert wg.current_session() is None
    assert upload(b"x") == 1  # outside: a session of its own


def test_signal_handlers_need_the_main_thread(clock: FakeClock) -> None:
    import threading

    errors: list[BaseException] = []

    def install() -> None:
        try:
            make_guard(clock, signals=True)
        except wg.ConfigError as exc:
            errors.append(exc)

    t = threading.Thread(target=install)
    t.start()
    t.join()
    assert len(errors) == 1
    assert "signals" in str(errors[0])


def test_a_hard_time_cutoff_ends_a_session_waiting_in_a_blackout(clock: FakeClock) -> None:
    clock.set(at(1, 30))
    guard = make_guard(clock, calendar=peak_blackout_open())
    with pytest.raises(wg.CutoffReached) as info, guard.session("s", max_duration="10m") as s:
        s.throttle(10)
    assert info.value.limit == "max_duration"
    assert clock.now() == at(1, 40)  # not at the end of the blackout
    # SOFT finishes the unit it is in, after the blackout, and starts no new one
    clock2 = FakeClock(at(0, 59, 59))
    guard = make_guard(clock2, calendar=peak_blackout_open())
    with guard.session("soft", max_duration="10m", cutoff="soft") as s:
        s.throttle(10, ops=1)
        clock2.advance(2)
        s.throttle(10)  # the same unit: sleeps through the blackout, then goes on
        assert clock2.now() == at(3)
        with pytest.raises(wg.CutoffReached):
            s.throttle(10, ops=1)


def test_cutoff_mode_is_accepted_by_its_rclone_name(clock: FakeClock) -> None:
    guard = make_guard(clock)
    s = guard.session("s", max_bytes=150, cutoff_mode="soft")
    with pytest.raises(wg.CutoffReached) as info, s:
        copy_chunks(s, 5)
    with pytest.warns(DeprecationWarning, match="CutoffMode"):  # the deprecated name
        assert info.value.mode is wg.CutoffMode.SOFT
    assert s.report().bytes == 200
    with pytest.raises(wg.ConfigError) as bad:
        guard.session("s", cutoff_mode="brutal")
    assert bad.value.field == "cutoff_mode"


def test_an_uncapped_guard_cuts_from_the_rate_it_achieved(clock: FakeClock) -> None:
    """With no rate and no calendar cap, the first THROTTLE cuts from the rate the backup
    was actually moving (about 10 MB/s here), not from the controller's 1 unit/s floor."""
    source = ScriptedSource([{"throttle": 0.0}] * 5 + [{"throttle": 1.0}])
    guard = make_guard(
        clock, rate="off", sources=[source], analyzer=KeyAnalyzer(), controller=wg.AIMDController()
    )
    with guard.session("s") as s:
        for _ in range(100):  # 1 MB every 0.1 s for 10 s
            s.throttle(MB)
            clock.advance(0.1)
        d = guard.decision()
    assert d.verdict is Verdict.THROTTLE
    assert 2 * MB <= d.rate <= 10 * MB


def test_controllers_start_from_the_observed_rate_when_uncapped() -> None:
    """observe() gives an uncapped controller its starting point; without it the first cut
    starts from the floor (the documented fallback)."""
    throttle = wg.Assessment(Verdict.THROTTLE, ("db.latency_s +25 % over baseline",), load=2.0)
    ok = wg.Assessment(Verdict.OK, ())
    for make in (wg.AIMDController, wg.LedbatController):
        told, untold = make(), make()
        for ctrl in (told, untold):
            assert ctrl.update(ok, ceiling=math.inf, now=0.0) == math.inf
        told.observe(8 * MB)
        assert told.update(throttle, ceiling=math.inf, now=100.0) >= 4 * MB
        assert untold.update(throttle, ceiling=math.inf, now=100.0) <= 1.0
        told.observe(-1.0)  # nonsense is ignored
        told.reset()
        told.update(ok, ceiling=math.inf, now=200.0)
        assert told.update(throttle, ceiling=math.inf, now=300.0) <= 1.0


def test_close_closes_the_sources_that_hold_something_open() -> None:
    """guard.close() closes its sources' connections and files (those with close());
    a source that fails to close does not stop the others."""

    class Holding(ScriptedSource):
        def __init__(self, fail: bool = False) -> None:
            super().__init__([{"cpu.percent": 1.0}])
            self.closed = 0
            self.fail = fail

        def close(self) -> None:
            self.closed += 1
            if self.fail:
                raise OSError("already gone")

    failing, holding = Holding(fail=True), Holding()
    guard = wg.Guard(
        rate="1MB/s", calendar=None, sources=[failing, holding, ScriptedSource([{}])], sinks=[]
    )
    guard.close()
    assert failing.closed == 1
    assert holding.closed == 1
