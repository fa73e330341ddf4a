"""The public API contract of docs/contract.md, called exactly as it is written there.

Each test names the contract line (or small group of lines) it proves, and calls the API
with the same names, argument names and positions, attributes, return types and
exceptions as the contract. A failure here means the library has drifted from what its
users were promised.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import math
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import conftest_redis
import wedguard as wg
from conftest_redis import RedisServer
from wedguard.testing import FakeClock, RecordingSink, ScriptedSource

LONDON = ZoneInfo("Europe/London")
UTC = timezone.utc

CONTRACT_RULES = """
    Mon-Sun 06:00-22:00 peak 10Mbit/s
    May-Oct Sat 08:00-24:00 blackout
    2026-06-13 blackout
"""


def _names_field_and_value(err: wg.ConfigError, field: str, value: object) -> None:
    """The message of ``err`` names ``field`` and quotes ``value``."""
    text = str(err)
    assert field in text, text
    assert (repr(value) in text) or (str(value) in text), text


# ---------------------------------------------------------------------------- units


def test_parse_rate_si_iec_bits_and_unlimited() -> None:
    """parse_rate: SI (MB = 10**6) and IEC (MiB = 2**20) bytes, bits, off/unlimited -> inf."""
    assert wg.parse_rate("10MB/s") == 10 * 10**6
    assert isinstance(wg.parse_rate("10MB/s"), float)
    assert wg.parse_rate("10MiB/s") == 10 * 2**20
    assert wg.parse_rate("10Mbit/s") == 10 * 10**6 / 8
    assert wg.parse_rate("10Mbps") == 10 * 10**6 / 8
    assert wg.parse_rate("off") == math.inf
    assert wg.parse_rate("unlimited") == math.inf


def test_parse_size_and_duration() -> None:
    """parse_size("512KiB") -> bytes; parse_duration("1h30m") -> seconds."""
    assert wg.parse_size("512KiB") == 512 * 1024
    assert wg.parse_duration("1h30m") == 5400.0


@pytest.mark.parametrize(
    ("parser", "text"),
    [(wg.parse_rate, "10 parsecs"), (wg.parse_size, "big"), (wg.parse_duration, "soon")],
)
def test_parsers_reject_bad_text_with_config_error(parser: Any, text: str) -> None:
    """Bad text given to a parser is a ConfigError quoting the value."""
    with pytest.raises(wg.ConfigError) as info:
        parser(text)
    assert text in str(info.value)


# ---------------------------------------------------------------------------- clocks


def test_system_clock_is_a_clock() -> None:
    """wg.SystemClock() has monotonic() -> float, now() -> aware datetime, sleep(s)."""
    clock: wg.Clock = wg.SystemClock()
    assert isinstance(clock.monotonic(), float)
    now = clock.now()
    assert now.tzinfo is not None
    assert now.utcoffset() is not None
    clock.sleep(0)


def test_fake_clock_start_advance_and_sleep() -> None:
    """FakeClock(start=None); advance(s); sleep(s) advances time at once."""
    clock = FakeClock(start=None)
    t0, n0 = clock.monotonic(), clock.now()
    assert n0.tzinfo is not None
    clock.advance(2.5)
    assert clock.monotonic() == t0 + 2.5
    clock.sleep(10)
    assert clock.monotonic() == t0 + 12.5
    assert clock.now() - n0 == timedelta(seconds=12.5)
    start = datetime(2026, 6, 10, 12, 0, tzinfo=LONDON)
    assert FakeClock(start=start).now() == start


# ---------------------------------------------------------------------------- errors


def test_error_hierarchy() -> None:
    """All four public errors subclass wg.WedguardError."""
    for cls in (wg.ConfigError, wg.ThrottleTimeout, wg.CircuitOpenError, wg.EmergencyStop):
        assert issubclass(cls, wg.WedguardError)


def test_throttle_timeout_consumes_nothing(clock: FakeClock) -> None:
    """acquire(timeout=...) that cannot be served raises ThrottleTimeout and takes nothing."""
    t = wg.TokenBucketThrottler(100, burst=100, clock=clock)
    assert t.acquire(100) == 0.0
    with pytest.raises(wg.ThrottleTimeout):
        t.acquire(50, timeout=0.1)  # needs 0.5 s
    clock.advance(0.5)
    assert t.available == pytest.approx(50)
    assert t.try_acquire(50)


def test_circuit_open_error_attributes(clock: FakeClock) -> None:
    """CircuitOpenError carries .retry_after (seconds) and .breaker (the name)."""
    b = wg.CircuitBreaker(name="uploads", recovery_timeout=300.0, clock=clock)
    b.trip(reason="maintenance")
    clock.advance(100)
    with pytest.raises(wg.CircuitOpenError) as info:
        b.call(lambda: None)
    assert info.value.breaker == "uploads"
    assert info.value.retry_after == pytest.approx(200.0)


def test_emergency_stop_is_raised_inside_the_work(clock: FakeClock) -> None:
    """guard.stop(reason): the next s.throttle() raises EmergencyStop carrying the reason."""
    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[], clock=clock)
    with guard.session("photos") as s:
        s.throttle(10)
        guard.stop("disk failing")
        with pytest.raises(wg.EmergencyStop) as info:
            s.throttle(10)
    assert "disk failing" in str(info.value)


# ---------------------------------------------------------------------------- throttler


def test_throttler_constructor_and_properties(clock: FakeClock) -> None:
    """TokenBucketThrottler(rate, burst=None, *, clock=None): .rate .burst .available."""
    t = wg.TokenBucketThrottler(1000, burst=None, clock=clock)
    assert t.rate == 1000
    assert t.burst > 0
    assert t.available == t.burst
    t2 = wg.TokenBucketThrottler(1000, 500, clock=clock)
    assert t2.burst == 500
    assert wg.TokenBucketThrottler(math.inf, clock=clock).try_acquire(10**12)


def test_throttler_try_acquire_never_waits(clock: FakeClock) -> None:
    """try_acquire(n=1) -> bool and never waits."""
    t = wg.TokenBucketThrottler(10, burst=2, clock=clock)
    assert t.try_acquire() is True
    assert t.try_acquire(n=1) is True
    assert t.try_acquire(n=1) is False
    assert clock.monotonic() == 0.0
    assert clock.sleeps == []


def test_throttler_acquire_returns_seconds_waited(clock: FakeClock) -> None:
    """acquire(n=1, *, timeout=None) -> float seconds waited, sleeping through the clock."""
    t = wg.TokenBucketThrottler(100, burst=100, clock=clock)
    assert t.acquire(n=100, timeout=None) == 0.0
    waited = t.acquire(n=50)
    assert isinstance(waited, float)
    assert waited == pytest.approx(0.5)
    assert clock.monotonic() == pytest.approx(0.5)


async def test_throttler_acquire_async(clock: FakeClock) -> None:
    """await acquire_async(n=1, *, timeout=None) -> float seconds waited."""
    t = wg.TokenBucketThrottler(100, burst=100, clock=clock)
    assert await t.acquire_async(n=100, timeout=None) == 0.0
    assert await t.acquire_async(25) == pytest.approx(0.25)
    with pytest.raises(wg.ThrottleTimeout):
        await t.acquire_async(50, timeout=0.1)  # needs 0.5 s


def test_throttler_reserve_is_pure(clock: FakeClock) -> None:
    """reserve(n=1): takes n now and returns the wait, without sleeping."""
    t = wg.TokenBucketThrottler(10, burst=10, clock=clock)
    assert t.reserve(n=10) == 0.0
    assert t.reserve(5) == pytest.approx(0.5)
    assert t.reserve(5) == pytest.approx(1.0)
    assert clock.sleeps == []
    assert clock.monotonic() == 0.0


def test_throttler_set_rate_zero_pauses_and_raising_wakes() -> None:
    """set_rate(0) pauses; a waiter wakes when the rate is raised again."""
    t = wg.TokenBucketThrottler(1000, burst=1)
    t.acquire(1)
    t.set_rate(0)
    assert t.try_acquire(1) is False
    out: list[float] = []
    thread = threading.Thread(target=lambda: out.append(t.acquire(1)), daemon=True)
    thread.start()
    thread.join(0.05)
    assert thread.is_alive()  # paused: the waiter waits
    t.set_rate(1e6)
    thread.join(5)
    assert not thread.is_alive()
    assert len(out) == 1
    assert t.rate == 1e6


def test_throttler_request_larger_than_burst_goes_into_debt(clock: FakeClock) -> None:
    """n larger than burst is served (never deadlocks); the debt is paid by later callers."""
    t = wg.TokenBucketThrottler(100, burst=10, clock=clock)
    assert t.acquire(10) == 0.0
    assert t.acquire(1000) == pytest.approx(0.1)  # a full bucket, then into debt
    assert t.available == pytest.approx(-990)
    assert t.acquire(10) == pytest.approx(10.0)  # the debt is paid first
    assert clock.monotonic() == pytest.approx((10 + 1000 + 10 - 10) / 100)


def test_throttler_many_small_requests_do_not_drift(clock: FakeClock) -> None:
    """10 000 requests of 1 at 1000/s take exactly 10 s of clock time (no drift)."""
    t = wg.TokenBucketThrottler(1000, burst=1, clock=clock)
    for _ in range(10_000):
        t.acquire(1)
    assert clock.monotonic() == pytest.approx(9.999, abs=1e-6)


@given(
    rate=st.floats(min_value=1, max_value=1e6),
    sizes=st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=40),
)
def test_throttler_long_run_rate_holds(rate: float, sizes: list[int]) -> None:
    """Property: any sequence of acquires, then one more unit, takes total / rate exactly."""
    clock = FakeClock()
    t = wg.TokenBucketThrottler(rate, burst=1, clock=clock)
    waited = sum(t.acquire(n) for n in sizes) + t.acquire(1)
    expected = sum(sizes) / rate
    assert clock.monotonic() == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert waited == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_throttler_is_thread_safe(clock: FakeClock) -> None:
    """Many threads racing try_acquire never get more than the bucket holds."""
    t = wg.TokenBucketThrottler(1, burst=500, clock=clock)
    granted: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = [t.try_acquire(1) for _ in range(200)]
        with lock:
            granted.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sum(granted) == 500


# ---------------------------------------------------------------------------- breaker


def _contract_breaker(clock: FakeClock, **kw: Any) -> wg.CircuitBreaker:
    args: dict[str, Any] = {
        "failure_threshold": 3,
        "recovery_timeout": 300.0,
        "half_open_max_calls": 1,
        "success_threshold": 1,
        "exclude": (),
        "clock": clock,
    }
    args.update(kw)
    return wg.CircuitBreaker(name="default", **args)


def test_breaker_pure_core_cycle(clock: FakeClock) -> None:
    """CLOSED -(3 failures)-> OPEN -(300 s)-> HALF_OPEN -(1 success)-> CLOSED; allow() gates."""
    b = _contract_breaker(clock)
    assert b.state is wg.BreakerState.CLOSED
    for _ in range(2):
        assert b.allow()
        b.record_failure(exc=None)
    assert b.state is wg.BreakerState.CLOSED
    b.record_failure(TimeoutError("slow"))
    assert b.state is wg.BreakerState.OPEN
    assert b.allow() is False
    assert b.retry_after == pytest.approx(300.0)
    clock.advance(300)
    assert b.state is wg.BreakerState.HALF_OPEN
    assert b.allow() is True
    assert b.allow() is False  # half_open_max_calls=1
    b.record_success()
    assert b.state is wg.BreakerState.CLOSED


def test_breaker_default_arguments() -> None:
    """wg.CircuitBreaker() defaults: name "default", 3 failures, 300 s."""
    b = wg.CircuitBreaker()
    assert b.name == "default"
    assert b.failure_threshold == 3
    assert b.recovery_timeout == 300.0
    assert b.half_open_max_calls == 1
    assert b.success_threshold == 1


def test_breaker_call_decorator_and_context_manager(clock: FakeClock) -> None:
    """b.call(fn, *args, **kwargs); @b; with b: — each counts failures and passes results."""
    b = _contract_breaker(clock)
    assert b.call(lambda x, y=0: x + y, 1, y=2) == 3

    @b
    def boom() -> None:
        raise OSError("down")

    with pytest.raises(OSError):
        boom()
    with pytest.raises(OSError), b:
        raise OSError("down")
    with pytest.raises(OSError):
        b.call(boom)
    assert b.state is wg.BreakerState.OPEN
    with pytest.raises(wg.CircuitOpenError):
        boom()
    with pytest.raises(wg.CircuitOpenError), b:
        pass


async def test_breaker_decorates_async_functions(clock: FakeClock) -> None:
    """@b works on async functions: failures count, an open breaker raises before the call."""
    b = _contract_breaker(clock, failure_threshold=1)
    calls = 0

    @b
    async def upload() -> int:
        nonlocal calls
        calls += 1
        raise ConnectionError("no")

    with pytest.raises(ConnectionError):
        await upload()
    with pytest.raises(wg.CircuitOpenError):
        await upload()
    assert calls == 1


def test_breaker_exclude(clock: FakeClock) -> None:
    """exclude=(types...) : those exceptions are not failures."""
    b = _contract_breaker(clock, failure_threshold=1, exclude=(KeyError,))
    with pytest.raises(KeyError):
        b.call(lambda: {}["x"])
    assert b.state is wg.BreakerState.CLOSED


def test_breaker_trip_reset_and_listener_events(clock: FakeClock) -> None:
    """trip(reason=""), reset(), add_listener(callback): events with .old .new .reason .at."""
    b = _contract_breaker(clock)
    events: list[Any] = []
    b.add_listener(events.append)
    b.trip(reason="maintenance")
    assert b.state is wg.BreakerState.OPEN
    b.reset()
    assert b.state is wg.BreakerState.CLOSED
    first, second = events
    assert (first.old, first.new) == (wg.BreakerState.CLOSED, wg.BreakerState.OPEN)
    assert "maintenance" in first.reason
    assert first.at == clock.now()
    assert first.at.tzinfo is not None
    assert (second.old, second.new) == (wg.BreakerState.OPEN, wg.BreakerState.CLOSED)


def test_breaker_listener_that_raises_is_isolated(clock: FakeClock) -> None:
    """A listener that raises does not break the breaker."""
    b = _contract_breaker(clock)

    def bad(event: Any) -> None:
        raise RuntimeError("listener bug")

    b.add_listener(bad)
    b.trip()
    assert b.state is wg.BreakerState.OPEN


# ---------------------------------------------------------------------------- calendar


def test_level_and_verdict_ordering() -> None:
    """wg.Level OPEN < PEAK < BLACKOUT; wg.Verdict OK < THROTTLE < HALT."""
    assert wg.Level.OPEN < wg.Level.PEAK < wg.Level.BLACKOUT
    assert max(wg.Level) is wg.Level.BLACKOUT
    assert wg.Verdict.OK < wg.Verdict.THROTTLE < wg.Verdict.HALT


@pytest.fixture
def cal() -> wg.PeakHourCalendar:
    return wg.PeakHourCalendar.parse(CONTRACT_RULES, tz="Europe/London")


def test_calendar_parse_contract_example(cal: wg.PeakHourCalendar) -> None:
    """The three-line example: weekday peak at 10 Mbit/s, summer Saturdays and 13 June blackout."""
    wed_noon = cal.at(datetime(2026, 6, 10, 12, 0, tzinfo=LONDON))
    assert isinstance(wed_noon, wg.Window)
    assert wed_noon.level is wg.Level.PEAK
    assert wed_noon.rate == pytest.approx(10 * 10**6 / 8)
    assert wed_noon.start == datetime(2026, 6, 10, 6, 0, tzinfo=LONDON)
    assert wed_noon.end == datetime(2026, 6, 10, 22, 0, tzinfo=LONDON)
    assert isinstance(wed_noon.reason, str)
    assert wed_noon.reason
    night = cal.at(datetime(2026, 6, 10, 23, 0, tzinfo=LONDON))
    assert night.level is wg.Level.OPEN
    assert night.rate is None
    assert cal.at(datetime(2026, 6, 6, 10, 0, tzinfo=LONDON)).level is wg.Level.BLACKOUT
    assert cal.at(datetime(2026, 6, 6, 7, 0, tzinfo=LONDON)).level is wg.Level.PEAK
    assert cal.at(datetime(2026, 11, 7, 10, 0, tzinfo=LONDON)).level is wg.Level.PEAK
    assert cal.at(datetime(2026, 6, 13, 3, 0, tzinfo=LONDON)).level is wg.Level.BLACKOUT
    # the same instant given in another zone
    assert cal.at(datetime(2026, 6, 10, 11, 0, tzinfo=UTC)).level is wg.Level.PEAK


def test_calendar_naive_datetime_is_config_error(cal: wg.PeakHourCalendar) -> None:
    """cal.at(naive datetime) raises ConfigError."""
    with pytest.raises(wg.ConfigError):
        cal.at(datetime(2026, 6, 10, 12, 0))
    with pytest.raises(wg.ConfigError):
        cal.next_change(datetime(2026, 6, 10, 12, 0))


def test_calendar_next_change_and_windows(cal: wg.PeakHourCalendar) -> None:
    """next_change(when) -> datetime | None; windows(start, end) tiles the span in order."""
    nxt = cal.next_change(datetime(2026, 6, 10, 12, 0, tzinfo=LONDON))
    assert nxt == datetime(2026, 6, 10, 22, 0, tzinfo=LONDON)
    start = datetime(2026, 6, 10, 0, 0, tzinfo=LONDON)
    end = datetime(2026, 6, 14, 0, 0, tzinfo=LONDON)
    ws = list(cal.windows(start, end))
    assert all(isinstance(w, wg.Window) for w in ws)
    assert ws[0].start <= start
    assert ws[-1].end >= end
    for a, b in itertools.pairwise(ws):
        assert a.end == b.start
        assert a.start < a.end
    levels = [w.level for w in ws]
    assert wg.Level.BLACKOUT in levels
    assert wg.Level.OPEN in levels
    assert (
        wg.PeakHourCalendar.parse("", tz="UTC").next_change(datetime(2026, 1, 1, tzinfo=UTC))
        is None
    )


def test_calendar_default() -> None:
    """PeakHourCalendar.default(tz="UTC"): 06:00-22:00 every day is PEAK."""
    d = wg.PeakHourCalendar.default(tz="UTC")
    for day in range(5, 12):  # Mon..Sun
        assert d.at(datetime(2026, 1, day, 6, 0, tzinfo=UTC)).level is wg.Level.PEAK
        assert d.at(datetime(2026, 1, day, 21, 59, tzinfo=UTC)).level is wg.Level.PEAK
        assert d.at(datetime(2026, 1, day, 22, 0, tzinfo=UTC)).level is wg.Level.OPEN
        assert d.at(datetime(2026, 1, day, 5, 59, tzinfo=UTC)).level is wg.Level.OPEN


def test_calendar_from_rclone() -> None:
    """from_rclone("08:00,512k 12:00,10M 23:00,off", tz=...): rclone's KiB/MiB, off = no cap."""
    r = wg.PeakHourCalendar.from_rclone("08:00,512k 12:00,10M 23:00,off", tz="UTC")
    assert r.at(datetime(2026, 1, 5, 9, 0, tzinfo=UTC)).rate == 512 * 1024
    assert r.at(datetime(2026, 1, 5, 13, 0, tzinfo=UTC)).rate == 10 * 2**20
    assert r.at(datetime(2026, 1, 5, 23, 30, tzinfo=UTC)).rate is None
    assert r.at(datetime(2026, 1, 5, 7, 0, tzinfo=UTC)).rate is None  # yesterday's 23:00 entry


def test_calendar_overlaps_most_restrictive_then_lowest_rate() -> None:
    """Overlapping rules: the most restrictive level wins, then the lowest rate cap."""
    c = wg.PeakHourCalendar.parse(
        """
        Mon-Sun 06:00-22:00 peak 10Mbit/s
        Mon-Sun 08:00-10:00 peak 5Mbit/s
        Mon-Sun 09:00-09:30 blackout
        """,
        tz="UTC",
    )
    assert c.at(datetime(2026, 1, 5, 8, 30, tzinfo=UTC)).rate == pytest.approx(5e6 / 8)
    assert c.at(datetime(2026, 1, 5, 9, 15, tzinfo=UTC)).level is wg.Level.BLACKOUT
    assert c.at(datetime(2026, 1, 5, 11, 0, tzinfo=UTC)).rate == pytest.approx(10e6 / 8)


def test_calendar_crosses_midnight() -> None:
    """A window may cross midnight."""
    c = wg.PeakHourCalendar.parse("Mon-Sun 22:00-06:00 blackout", tz="UTC")
    assert c.at(datetime(2026, 1, 6, 2, 0, tzinfo=UTC)).level is wg.Level.BLACKOUT
    assert c.at(datetime(2026, 1, 5, 23, 0, tzinfo=UTC)).level is wg.Level.BLACKOUT
    assert c.at(datetime(2026, 1, 6, 12, 0, tzinfo=UTC)).level is wg.Level.OPEN


def test_calendar_dst_gap_and_ambiguous_start() -> None:
    """Spring-forward gap: starts at the first instant after it; ambiguous: first occurrence."""
    c = wg.PeakHourCalendar.parse("2026-03-29 01:30-03:00 blackout", tz="Europe/London")
    # 01:00 GMT jumps to 02:00 BST (01:00 UTC): the window starts then
    assert c.at(datetime(2026, 3, 29, 0, 59, tzinfo=UTC)).level is wg.Level.OPEN
    w = c.at(datetime(2026, 3, 29, 1, 0, tzinfo=UTC))
    assert w.level is wg.Level.BLACKOUT
    assert w.start.timestamp() == datetime(2026, 3, 29, 1, 0, tzinfo=UTC).timestamp()
    # 01:30 happens twice on 2026-10-25: first at 00:30 UTC (BST)
    c2 = wg.PeakHourCalendar.parse("2026-10-25 01:30-04:00 blackout", tz="Europe/London")
    assert c2.at(datetime(2026, 10, 25, 0, 29, tzinfo=UTC)).level is wg.Level.OPEN
    w2 = c2.at(datetime(2026, 10, 25, 0, 30, tzinfo=UTC))
    assert w2.level is wg.Level.BLACKOUT
    # (an ambiguous local time never compares == across zones: compare instants)
    assert w2.start.timestamp() == datetime(2026, 10, 25, 0, 30, tzinfo=UTC).timestamp()


def test_calendar_bad_rules_are_config_errors() -> None:
    """A bad rule line or zone is a ConfigError naming what is wrong."""
    with pytest.raises(wg.ConfigError) as info:
        wg.PeakHourCalendar.parse("Mon-Sun 25:00-26:00 peak", tz="UTC")
    assert "25:00" in str(info.value)
    with pytest.raises(wg.ConfigError) as info2:
        wg.PeakHourCalendar.parse("Mon-Sun 06:00-22:00 peak", tz="Mars/Olympus")
    _names_field_and_value(info2.value, "tz", "Mars/Olympus")


# ---------------------------------------------------------------------------- impact


def test_thresholds_defaults_are_the_table() -> None:
    """wg.Thresholds() defaults = the table in docs/contract.md."""
    th = wg.Thresholds()
    assert th.api_latency == pytest.approx(0.05)
    assert th.db_latency == pytest.approx(0.20)
    assert th.backup_cpu == pytest.approx(30)
    assert th.backup_memory == pytest.approx(500e6)
    assert th.backup_network == pytest.approx(10e6 / 8)


def test_impact_analyzer_baseline_and_assess(clock: FakeClock) -> None:
    """observe_baseline(sample); assess(sample, level=PEAK) -> Assessment with .verdict .reasons."""
    a = wg.ImpactAnalyzer(wg.Thresholds(), clock=clock)
    for _ in range(10):
        a.observe_baseline({"api.latency_s": 0.100, "db.latency_s": 0.010})
    ok = a.assess({"api.latency_s": 0.101, "db.latency_s": 0.010}, level=wg.Level.PEAK)
    assert isinstance(ok, wg.Assessment)
    assert ok.verdict is wg.Verdict.OK
    result = ok
    for _ in range(5):
        result = a.assess({"api.latency_s": 0.150, "db.latency_s": 0.010}, level=wg.Level.PEAK)
    assert result.verdict >= wg.Verdict.THROTTLE
    assert any("api.latency_s" in r for r in result.reasons)


def test_impact_backup_cpu_cap_at_peak_only(clock: FakeClock) -> None:
    """The 30 % backup CPU cap holds during peak hours, not at OPEN."""
    a = wg.ImpactAnalyzer(wg.Thresholds(), clock=clock)
    assert (
        a.assess({"backup.cpu.percent": 45.0}, level=wg.Level.PEAK).verdict is wg.Verdict.THROTTLE
    )
    b = wg.ImpactAnalyzer(wg.Thresholds(), clock=clock)
    assert b.assess({"backup.cpu.percent": 45.0}, level=wg.Level.OPEN).verdict is wg.Verdict.OK


def test_impact_halts_when_far_over(clock: FakeClock) -> None:
    """Far past the critical limit on consecutive assessments the verdict is HALT."""
    a = wg.ImpactAnalyzer(wg.Thresholds(), clock=clock)
    verdicts = [
        a.assess({"backup.cpu.percent": 99.0}, level=wg.Level.PEAK).verdict for _ in range(10)
    ]
    assert verdicts[-1] is wg.Verdict.HALT


def test_impact_missing_is_never_ok_unprovided_is_not_assessed(clock: FakeClock) -> None:
    """A probe failure is never read as OK; a metric no source provides is not assessed."""
    a = wg.ImpactAnalyzer(wg.Thresholds(), clock=clock)
    assert a.assess({}, level=wg.Level.PEAK).verdict is wg.Verdict.OK
    a.observe_baseline({"api.latency_s": 0.1})
    failed = a.assess({"api.latency_s.error": 1.0}, level=wg.Level.PEAK)
    assert failed.verdict is not wg.Verdict.OK
    assert any("api.latency_s" in r for r in failed.reasons)


# ---------------------------------------------------------------------------- guard


def _at(clock_start: datetime) -> FakeClock:
    return FakeClock(start=clock_start)


def test_guard_without_sources_throttles_by_rate_and_calendar_alone() -> None:
    """Guard(sources=[]): no analyser, the rate and the calendar alone decide."""
    clock = _at(datetime(2026, 1, 5, 12, 0, tzinfo=UTC))  # Monday noon: PEAK by default
    guard = wg.Guard(sources=[], sinks=[], clock=clock)
    d = guard.decision()
    assert d.level is wg.Level.PEAK
    assert d.verdict is wg.Verdict.OK
    assert d.rate == pytest.approx(10e6 / 8)  # the default calendar's 10 Mbit/s cap
    with guard.session("photos") as s:
        for _ in range(5):
            s.throttle(1_250_000)
    assert clock.monotonic() == pytest.approx(4.0, rel=0.05)

    night = _at(datetime(2026, 1, 5, 23, 0, tzinfo=UTC))
    g2 = wg.Guard(rate="1MB/s", sources=[], sinks=[], clock=night)
    assert g2.decision().level is wg.Level.OPEN
    assert g2.decision().rate == pytest.approx(1e6)
    with g2.session("photos") as s:
        for _ in range(4):
            s.throttle(1_000_000)
    assert night.monotonic() == pytest.approx(3.0, rel=0.05)


def test_guard_full_constructor_and_session(cal: wg.PeakHourCalendar, sink: RecordingSink) -> None:
    """The contract's Guard(...) call; session("photos"): throttle, write, report()."""
    clock = _at(datetime(2026, 6, 10, 23, 0, tzinfo=LONDON))  # a Wednesday night: OPEN
    b = wg.CircuitBreaker(name="default", clock=clock)
    a = wg.ImpactAnalyzer(wg.Thresholds(), clock=clock)
    source = ScriptedSource([{"api.latency_s": 0.1}])
    guard = wg.Guard(
        rate="50MB/s",
        calendar=cal,
        breaker=b,
        analyzer=a,
        sources=[source],
        sinks=[sink],
        max_concurrent=2,
        stop_file=None,
        clock=clock,
    )
    chunks = [bytes([i]) * 5_000_000 for i in range(20)]
    dst = io.BytesIO()
    with guard.session("photos") as s:
        for chunk in chunks:
            s.throttle(len(chunk))
            dst.write(chunk)
        report = s.report()
    assert dst.getvalue() == b"".join(chunks)
    assert isinstance(report, wg.SessionReport)
    assert report.bytes == 100_000_000
    assert report.duration == pytest.approx(1.9, rel=0.1)
    assert sum(report.wait_seconds.values()) > 0
    assert report.wait_seconds["rate"] > 0
    d = guard.decision()
    assert isinstance(d, wg.Decision)
    assert d.level is wg.Level.OPEN
    assert d.rate == pytest.approx(50e6)
    assert d.verdict is wg.Verdict.OK
    assert isinstance(d.reasons, tuple)
    guard.close()


def test_guard_decision_in_blackout_and_peak(cal: wg.PeakHourCalendar) -> None:
    """guard.decision() -> Decision: .level .rate .verdict .reasons follow the calendar."""
    clock = _at(datetime(2026, 6, 10, 12, 0, tzinfo=LONDON))
    guard = wg.Guard(rate="50MB/s", calendar=cal, sources=[], sinks=[], clock=clock)
    d = guard.decision()
    assert d.level is wg.Level.PEAK
    assert d.rate == pytest.approx(10e6 / 8)
    assert d.reasons
    clock.set(datetime(2026, 6, 13, 12, 0, tzinfo=LONDON))
    d2 = guard.decision()
    assert d2.level is wg.Level.BLACKOUT
    assert d2.rate == 0.0


async def test_guard_async_session(clock: FakeClock) -> None:
    """async with guard.session(...) works and reports what was throttled."""
    guard = wg.Guard(rate="1MB/s", calendar=None, sources=[], sinks=[], clock=clock)
    async with guard.session("db") as s:
        for _ in range(3):
            s.throttle(1_000_000)
        await s.throttle_async(1_000_000)
    r = s.report()
    assert r.bytes == 4_000_000
    assert r.duration == pytest.approx(3.0, rel=0.05)


def test_guard_protect_sync(tmp_path: Path, clock: FakeClock, sink: RecordingSink) -> None:
    """@guard.protect(cost=lambda path: os.path.getsize(path)) charges the file's size."""
    guard = wg.Guard(rate=1000, calendar=None, sources=[], sinks=[sink], clock=clock)
    paths = []
    for i in range(3):
        p = tmp_path / f"f{i}"
        p.write_bytes(b"x" * 1000)
        paths.append(str(p))
    uploaded: list[str] = []

    @guard.protect(cost=lambda path: os.path.getsize(path))
    def upload(path: str) -> str:
        uploaded.append(path)
        return path

    assert [upload(p) for p in paths] == paths
    assert uploaded == paths
    assert clock.monotonic() >= 1.9  # 3000 bytes at 1000 B/s, less the burst
    guard.close()


async def test_guard_protect_async(tmp_path: Path, clock: FakeClock) -> None:
    """@guard.protect(cost=...) on an async function, under the guard's breaker."""
    b = wg.CircuitBreaker(name="uploads", failure_threshold=1, clock=clock)
    guard = wg.Guard(rate=1000, calendar=None, breaker=b, sources=[], sinks=[], clock=clock)
    p = tmp_path / "f"
    p.write_bytes(b"y" * 3000)

    @guard.protect(cost=lambda path: os.path.getsize(path))
    async def upload(path: str) -> int:
        await asyncio.sleep(0)
        return len(path)

    assert await upload(str(p)) == len(str(p))
    assert await upload(str(p)) == len(str(p))
    assert clock.monotonic() >= 3.0

    @guard.protect(cost=1)
    async def fails() -> None:
        raise ConnectionError("remote down")

    with pytest.raises(ConnectionError):
        await fails()
    with pytest.raises(wg.CircuitOpenError):
        await fails()


def test_guard_copyfileobj_and_wrap_keep_data(clock: FakeClock) -> None:
    """guard.copyfileobj(src, dst) and guard.wrap(fileobj) delay but never change data."""
    guard = wg.Guard(rate="1MB/s", calendar=None, sources=[], sinks=[], clock=clock)
    data = os.urandom(3_000_000)
    dst = io.BytesIO()
    guard.copyfileobj(io.BytesIO(data), dst)
    assert dst.getvalue() == data
    t_copy = clock.monotonic()
    assert t_copy >= 1.5
    wrapped = guard.wrap(io.BytesIO(data))
    out = bytearray()
    while True:
        block = wrapped.read(65536)
        if not block:
            break
        out += block
    assert bytes(out) == data
    assert clock.monotonic() - t_copy >= 2.5


def test_guard_stop_and_resume(clock: FakeClock) -> None:
    """guard.stop(reason) stops every session (EmergencyStop); guard.resume() lets work go on."""
    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[], clock=clock)
    guard.stop("failover")
    assert guard.decision().stopped
    with guard.session("a") as s, pytest.raises(wg.EmergencyStop):
        s.throttle(1)
    guard.resume()
    assert not guard.decision().stopped
    with guard.session("a") as s:
        s.throttle(1)
    assert s.report().bytes == 1


def test_guard_stop_file(tmp_path: Path, clock: FakeClock) -> None:
    """stop_file: its existence stops sessions."""
    stop = tmp_path / "wedguard.stop"
    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[], stop_file=stop, clock=clock)
    with guard.session("a") as s:
        s.throttle(1)
        stop.touch()
        clock.advance(1.0)
        with pytest.raises(wg.EmergencyStop):
            s.throttle(1)


def test_guard_max_concurrent_slots(clock: FakeClock) -> None:
    """max_concurrent=2: a third session waits for a slot (here: times out at once)."""
    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[], max_concurrent=2, clock=clock)
    with guard.session("a"), guard.session("b"), pytest.raises(wg.ThrottleTimeout):
        guard.session("c", slot_timeout=0).__enter__()
    with guard.session("c") as s:
        s.throttle(1)


def test_guard_run_child_process() -> None:
    """guard.run(argv) -> subprocess.CompletedProcess of a child run under the guard."""
    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[])
    try:
        done = guard.run([sys.executable, "-c", "print('hello')"], stdout=subprocess.PIPE)
    finally:
        guard.close()
    assert isinstance(done, subprocess.CompletedProcess)
    assert done.returncode == 0
    assert done.stdout.strip() == b"hello"


def test_guard_bad_input_is_config_error_at_construction() -> None:
    """Guard(rate=..., max_concurrent=...) with bad values: ConfigError naming field and value."""
    with pytest.raises(wg.ConfigError) as info:
        wg.Guard(rate="fast", sources=[], sinks=[])
    _names_field_and_value(info.value, "rate", "fast")
    with pytest.raises(wg.ConfigError) as info2:
        wg.Guard(max_concurrent=0, sources=[], sinks=[])
    _names_field_and_value(info2.value, "max_concurrent", 0)


# ---------------------------------------------------------------------------- sources


class _Http:
    """A tiny HTTP server on 127.0.0.1 recording POSTs and answering GETs."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                owner.bodies.append(body)
                owner.headers.append(dict(self.headers.items()))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http() -> Iterator[_Http]:
    server = _Http()
    yield server
    server.close()


def test_sources_import_and_sample(http: _Http) -> None:
    """from wedguard.sources import SystemSource, ProcessSource, HttpProbe, CallableProbe: sample()."""
    from wedguard.sources import CallableProbe, HttpProbe, ProcessSource, SystemSource

    for src in (
        SystemSource(),
        ProcessSource(),
        HttpProbe(http.url(), timeout=2.0),
        CallableProbe(lambda: None),
    ):
        sample = src.sample()
        assert isinstance(sample, dict) or hasattr(sample, "items")
        assert all(isinstance(k, str) and isinstance(v, float) for k, v in sample.items())
        assert isinstance(src, wg.Source)
    assert "api.latency_s" in HttpProbe(http.url()).sample()
    assert "db.latency_s" in CallableProbe(lambda: None).sample()


def test_sources_never_raise() -> None:
    """A failing probe reports the failure in its sample instead of raising."""
    from wedguard.sources import CallableProbe, HttpProbe

    def broken() -> None:
        raise RuntimeError("db down")

    assert CallableProbe(broken).sample().get("db.latency_s.error") == 1.0
    closed = _Http()
    url = closed.url()
    closed.close()
    assert HttpProbe(url, timeout=0.5).sample().get("api.latency_s.error") == 1.0


# ---------------------------------------------------------------------------- sinks


def test_sinks_import_and_local_emit(tmp_path: Path) -> None:
    """from wedguard.sinks import LoggingSink, JsonlSink, PrometheusSink...: emit(event) -> None."""
    from prometheus_client import CollectorRegistry, generate_latest

    from wedguard.sinks import JsonlSink, LoggingSink, PrometheusSink

    alert = wg.Alert("disk", wg.Severity.HIGH, "disk almost full")
    decision = wg.Decision(level=wg.Level.PEAK, rate=1000.0, verdict=wg.Verdict.OK)
    jsonl = JsonlSink(tmp_path / "events.jsonl")
    registry = CollectorRegistry()
    prom = PrometheusSink(registry=registry)
    for s in (LoggingSink(), jsonl, prom):
        assert isinstance(s, wg.Sink)
        assert s.emit(alert) is None
        assert s.emit(decision) is None
    jsonl.close()
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["kind"] for line in lines] == ["alert", "decision"]
    assert b"wedguard_" in generate_latest(registry)


def test_webhook_sink_signs_and_verify_signature(http: _Http) -> None:
    """WebhookSink(url, secret=...) signs each body; verify_signature(body, headers, secret)."""
    from wedguard.sinks import WebhookSink, verify_signature

    secret = "whsec_" + "c2VjcmV0LWNvbnRyYWN0LWtleQ=="
    hook = WebhookSink(http.url("/hook/T0PSECRET"), secret=secret, timeout=2.0)
    hook.emit(wg.Alert("k", wg.Severity.HIGH, "API slower"))
    assert hook.flush(timeout=5)
    hook.close()
    (body,) = http.bodies
    (headers,) = http.headers
    assert verify_signature(body, headers, secret) is True
    assert verify_signature(body=body, headers=headers, secret=secret) is True
    assert verify_signature(body + b" ", headers, secret) is False
    assert verify_signature(body, headers, "whsec_" + "b3RoZXI=") is False
    assert "T0PSECRET" not in repr(hook)
    assert secret not in repr(hook)


def test_slack_and_smtp_sinks_keep_secrets_out_of_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    """SlackSink and SmtpSink(... contract signature ...): no secret in their repr."""
    from wedguard.sinks import SlackSink, SmtpSink

    slack = SlackSink("https://hooks.slack.com/services/T000/B000/XXSECRETXX")
    assert "XXSECRETXX" not in repr(slack)
    slack.close()
    monkeypatch.setenv("WG_CONTRACT_SMTP_PW", "hunter2-secret")
    smtp = SmtpSink(
        host="localhost",
        port=25,
        sender="backup@example.org",
        recipients=["ops@example.org"],
        starttls=True,
        ssl=False,
        username="backup",
        password_env="WG_CONTRACT_SMTP_PW",
        timeout=10.0,
    )
    assert "hunter2-secret" not in repr(smtp)
    smtp.close()


def test_smtp_sink_delivers_to_a_local_server() -> None:
    """SmtpSink sends an alert e-mail to an SMTP server on 127.0.0.1."""
    from aiosmtpd.controller import Controller

    from wedguard.sinks import SmtpSink

    received: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope)
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        smtp = SmtpSink(
            host="127.0.0.1",
            port=port,
            sender="backup@example.org",
            recipients=["ops@example.org"],
            starttls=False,
            ssl=False,
            timeout=5.0,
        )
        smtp.emit(wg.Alert("disk", wg.Severity.CRITICAL, "disk full"))
        assert smtp.flush(timeout=10)
        smtp.close()
    finally:
        controller.stop()
    (envelope,) = received
    assert envelope.rcpt_tos == ["ops@example.org"]
    assert b"disk full" in envelope.content


# ---------------------------------------------------------------------------- alerts


def test_severity_ordering_and_alert_value() -> None:
    """wg.Severity LOW < MEDIUM < HIGH < CRITICAL; wg.Alert(key, severity, summary, ...)."""
    s = wg.Severity
    assert s.LOW < s.MEDIUM < s.HIGH < s.CRITICAL
    alert = wg.Alert("api/slow", wg.Severity.HIGH, "API +12 %", details="more")
    assert (alert.key, alert.severity, alert.summary) == ("api/slow", s.HIGH, "API +12 %")
    with pytest.raises(AttributeError):
        alert.summary = "changed"  # type: ignore[misc]


def test_alert_dispatcher_contract(clock: FakeClock, sink: RecordingSink) -> None:
    """AlertDispatcher(routes=..., group_wait=30, repeat_interval=4*3600, clock=...);
    fire/resolve/acknowledge; flush(timeout=None) sends what group_wait holds."""
    d = wg.AlertDispatcher(
        routes={wg.Severity.HIGH: [sink]}, group_wait=30, repeat_interval=4 * 3600, clock=clock
    )
    try:
        d.fire(wg.Alert("api/slow", wg.Severity.HIGH, "API slower"))
        assert d.flush(timeout=None) is True
        assert len(sink.events) == 1
        assert d.acknowledge("api/slow") is True
        assert d.resolve("api/slow") is True
        assert d.flush(timeout=5) is True
        assert len(sink.events) == 2
        assert [a.key for a in d.alerts] == []
    finally:
        d.close()


# ---------------------------------------------------------------------------- history


def test_metrics_store_record_aggregate_prune() -> None:
    """MetricsStore(path, retention="7d"): record(sample, at=), aggregate(...), prune() -> int."""
    from wedguard.history import MetricsStore

    clock = FakeClock(start=datetime(2026, 1, 20, 12, 0, tzinfo=UTC))
    store = MetricsStore(":memory:", retention="7d", clock=clock)
    base = datetime(2026, 1, 20, 8, 0, tzinfo=UTC)
    for i in range(4):
        store.record({"api.latency_s": 0.1 * (i + 1)}, at=base + timedelta(minutes=15 * i))
    store.record({"api.latency_s": 9.0}, at=datetime(2026, 1, 10, 8, 0, tzinfo=UTC))
    buckets = store.aggregate(
        "api.latency_s", bucket="1h", since=base, until=base + timedelta(hours=2)
    )
    assert len(buckets) == 1
    assert buckets[0].count == 4
    assert buckets[0].mean == pytest.approx(0.25)
    assert store.prune() == 1
    assert store.prune() == 0
    store.close()


def test_metrics_store_on_disk(tmp_path: Path) -> None:
    """MetricsStore(path) on a file keeps its data across reopen."""
    from wedguard.history import MetricsStore

    path = tmp_path / "metrics.db"
    now = datetime.now(UTC)
    store = MetricsStore(str(path), retention="7d")
    store.record({"cpu.percent": 12.0}, at=now)
    store.close()
    again = MetricsStore(str(path), retention="7d")
    assert again.count("cpu.percent") == 1
    again.close()


def test_recommend_windows() -> None:
    """recommend_windows(store, duration="2h", count=3, calendar=None): ranked, quietest first."""
    from wedguard.history import MetricsStore, recommend_windows

    clock = FakeClock(start=datetime(2026, 1, 19, 0, 0, tzinfo=UTC))
    store = MetricsStore(":memory:", retention="7d", clock=clock)
    start = datetime(2026, 1, 12, 0, 0, tzinfo=UTC)  # a Monday
    rows = []
    for h in range(7 * 24):
        at = start + timedelta(hours=h)
        quiet = at.weekday() == 6 and 2 <= at.hour < 5  # Sunday 02:00-05:00
        rows.append((at, {"cpu.percent": 5.0 if quiet else 60.0 + (h % 7)}))
    store.record_many(rows)
    windows = recommend_windows(store, duration="2h", count=3, calendar=None)
    assert len(windows) == 3
    best = windows[0]
    for w in windows:
        assert hasattr(w, "start")
        assert hasattr(w, "end")
        assert isinstance(w.reason, str)
    assert [w.expected_load for w in windows] == sorted(w.expected_load for w in windows)
    assert best.start.weekday == 6
    assert best.start.time.hour in (2, 3)  # a 2 h window inside Sunday 02:00-05:00
    # with a calendar, no window is recommended inside a blackout
    cal = wg.PeakHourCalendar.parse("Sun 00:00-06:00 blackout", tz="UTC")
    avoiding = recommend_windows(store, duration="2h", count=3, calendar=cal)
    assert len(avoiding) == 3
    assert all(w.start.weekday != 6 or w.start.time.hour >= 6 for w in avoiding)
    assert best.expected_load == pytest.approx(5.0)
    store.close()


# ---------------------------------------------------------------------------- report


def test_plot_session_and_week(clock: FakeClock) -> None:
    """plot_session(report) -> matplotlib Figure (from the report's timeline); plot_week(store)."""
    from matplotlib.figure import Figure

    from wedguard.history import MetricsStore
    from wedguard.report import plot_session, plot_week

    guard = wg.Guard(rate="1MB/s", calendar=None, sources=[], sinks=[], clock=clock)
    with guard.session("photos") as s:
        for _ in range(5):
            s.throttle(500_000)
    report = s.report()
    assert report.timeline
    fig = plot_session(report)
    assert isinstance(fig, Figure)
    store = MetricsStore(":memory:", clock=clock)
    store.record_many(
        [(clock.now() - timedelta(hours=h), {"cpu.percent": float(h % 24)}) for h in range(1, 48)]
    )
    assert isinstance(plot_week(store), Figure)
    store.close()


# ---------------------------------------------------------------------------- many hosts


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The real redis-server of tests/conftest_redis.py, one for this module."""
    yield from conftest_redis._server(tmp_path_factory)


@pytest.fixture
def key(request: pytest.FixtureRequest) -> str:
    """A Redis key of this test's own."""
    return f"test:contract:{request.node.name}"


def test_redis_token_bucket_shares_one_budget(redis_server: RedisServer, key: str) -> None:
    """RedisTokenBucket(client, key, rate, burst=None): the throttler interface, shared."""
    from wedguard.distributed import RedisTokenBucket

    client = redis_server.client()
    a = RedisTokenBucket(client, key, 1, burst=10)
    b = RedisTokenBucket(redis_server.client(), key, 1, burst=10)
    taken = sum(bucket.try_acquire(1) for _ in range(8) for bucket in (a, b))
    assert taken == 10
    assert isinstance(RedisTokenBucket(client, key + ":x", 1000).acquire(1), float)


def test_redis_slots_contract(redis_server: RedisServer, key: str) -> None:
    """RedisSlots(client, key, limit, lease=30.0): try_acquire, acquire(timeout), release, with."""
    from wedguard.distributed import RedisSlots

    one = RedisSlots(redis_server.client(), key, 1, lease=30.0)
    two = RedisSlots(redis_server.client(), key, 1, lease=30.0)
    assert one.try_acquire() is True
    assert two.try_acquire() is False
    with pytest.raises(wg.ThrottleTimeout):
        two.acquire(timeout=0.1)
    one.release()
    with two:
        assert one.try_acquire() is False
    assert one.try_acquire() is True
    one.release()


# ---------------------------------------------------------------------------- rules everywhere


@pytest.mark.parametrize(
    ("build", "field", "value"),
    [
        (lambda: wg.TokenBucketThrottler(-5), "rate", -5),
        (lambda: wg.TokenBucketThrottler(10, burst=-1), "burst", -1),
        (lambda: wg.CircuitBreaker(failure_threshold=0), "failure_threshold", 0),
        (lambda: wg.CircuitBreaker(recovery_timeout=-1.0), "recovery_timeout", -1.0),
        (lambda: wg.Thresholds(api_latency=-0.5), "api_latency", -0.5),
        (lambda: wg.Guard(rate=-1, sources=[], sinks=[]), "rate", -1),
        (lambda: wg.Guard(stop_file=42, sources=[], sinks=[]), "stop_file", 42),
        (
            lambda: wg.AlertDispatcher(routes={wg.Severity.HIGH: [RecordingSink()]}, group_wait=-1),
            "group_wait",
            -1,
        ),
        (lambda: FakeClock(start=datetime(2026, 1, 1)), "start", datetime(2026, 1, 1)),
    ],
)
def test_bad_input_is_config_error_naming_field_and_value(
    build: Any, field: str, value: object
) -> None:
    """Bad input to a constructor: ConfigError at construction, naming the field and value."""
    with pytest.raises(wg.ConfigError) as info:
        build()
    _names_field_and_value(info.value, field, value)


def test_history_and_distributed_bad_input() -> None:
    """MetricsStore, recommend_windows, RedisSlots: bad values are ConfigErrors naming them."""
    from wedguard.distributed import RedisSlots
    from wedguard.history import MetricsStore, recommend_windows

    with pytest.raises(wg.ConfigError) as info:
        MetricsStore(":memory:", retention="forever")
    _names_field_and_value(info.value, "retention", "forever")
    store = MetricsStore(":memory:")
    with pytest.raises(wg.ConfigError) as info2:
        recommend_windows(store, duration="2h", count=0)
    _names_field_and_value(info2.value, "count", 0)
    store.close()
    with pytest.raises(wg.ConfigError) as info3:
        RedisSlots("redis://127.0.0.1:1/0", "k", 0)
    _names_field_and_value(info3.value, "limit", 0)


def test_imports_stay_light() -> None:
    """import wedguard (and .sources/.sinks/.history/.report) pulls in no optional extra."""
    code = (
        "import sys, wedguard, wedguard.sources, wedguard.sinks, wedguard.history, "
        "wedguard.report\n"
        "bad = [m for m in ('redis', 'prometheus_client', 'matplotlib', 'opentelemetry', "
        "'aiosmtpd') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(wg.__file__).parent.parent)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == ""


@pytest.mark.parametrize(
    "build",
    [
        lambda: wg.TokenBucketThrottler(10, clock=42),
        lambda: wg.CircuitBreaker(clock=42),
        lambda: wg.ImpactAnalyzer(wg.Thresholds(), clock=42),
        lambda: wg.Guard(sources=[], sinks=[], clock=42),
        lambda: wg.AlertDispatcher(routes={wg.Severity.HIGH: [RecordingSink()]}, clock=42),
        lambda: __import__("wedguard.history").history.MetricsStore(":memory:", clock=42),
    ],
)
def test_a_clock_that_is_not_a_clock_is_config_error(build: Any) -> None:
    """clock=<not a Clock> is a ConfigError naming "clock" at construction, not a crash later."""
    with pytest.raises(wg.ConfigError) as info:
        build()
    _names_field_and_value(info.value, "clock", 42)


# ---------------------------------------------------------------------------- behaviour promised in prose


def test_guard_waits_through_a_blackout(cal: wg.PeakHourCalendar) -> None:
    """s.throttle waits for windows: in a blackout it sleeps (on the clock) until it ends."""
    clock = _at(datetime(2026, 6, 13, 23, 0, tzinfo=LONDON))  # the blackout day, 23:00
    guard = wg.Guard(rate="50MB/s", calendar=cal, sources=[], sinks=[], clock=clock)
    with guard.session("photos") as s:
        waited = s.throttle(1000)
    assert waited == pytest.approx(3600.0)
    assert clock.now() == datetime(2026, 6, 14, 0, 0, tzinfo=LONDON)
    assert s.report().wait_seconds["calendar"] == pytest.approx(3600.0)


def test_guard_waits_for_impact_and_recovers() -> None:
    """s.throttle waits for impact: production slows, the backup slows; it recovers, all data goes."""
    clock = _at(datetime(2026, 6, 10, 23, 0, tzinfo=LONDON))
    a = wg.ImpactAnalyzer(wg.Thresholds(), clock=clock)
    for _ in range(30):
        a.observe_baseline({"api.latency_s": 0.100})
    source = ScriptedSource(lambda i: {"api.latency_s": 0.130 if 3 <= i < 15 else 0.100})
    guard = wg.Guard(
        rate="10MB/s", calendar=None, analyzer=a, sources=[source], sinks=[], clock=clock
    )
    verdicts = []
    with guard.session("photos") as s:
        for _ in range(40):
            s.throttle(5_000_000)
            verdicts.append(guard.decision().verdict)
    report = s.report()
    assert wg.Verdict.THROTTLE in verdicts or wg.Verdict.HALT in verdicts
    assert verdicts[-1] is wg.Verdict.OK
    assert report.wait_seconds["impact"] > 0
    assert report.bytes == 200_000_000
    assert report.duration > 20.0  # slower than the 19.9 s the rate alone allows


def test_probe_never_blocks_past_its_timeout() -> None:
    """A hung probe returns a failure sample after its timeout, not never."""
    from wedguard.sources import CallableProbe

    release = threading.Event()
    try:
        sample = CallableProbe(lambda: release.wait(30), timeout=0.1).sample()
    finally:
        release.set()
    assert sample == {"db.latency_s.error": 1.0}


def test_breaker_does_not_serialise_calls() -> None:
    """The breaker holds no lock while the protected function runs (pybreaker #55)."""
    b = wg.CircuitBreaker(name="parallel")
    inside, release = threading.Event(), threading.Event()

    def slow() -> int:
        inside.set()
        release.wait(10)
        return 1

    thread = threading.Thread(target=lambda: b.call(slow))
    thread.start()
    try:
        assert inside.wait(5)
        assert b.call(lambda: 2) == 2  # would block until release if serialised
    finally:
        release.set()
        thread.join(5)


def test_throttlers_satisfy_the_throttler_protocol(redis_server: RedisServer, key: str) -> None:
    """TokenBucketThrottler and RedisTokenBucket both offer the throttler interface."""
    from wedguard.distributed import RedisTokenBucket

    shared = RedisTokenBucket(redis_server.client(), key, 100, burst=100)
    for t in (wg.TokenBucketThrottler(100, burst=100), shared):
        assert isinstance(t, wg.Throttler)
        assert t.rate == 100
        assert t.burst == 100
        assert t.try_acquire(n=60) is True
        assert t.try_acquire(n=60) is False
        assert t.available == pytest.approx(40, abs=1)
        t.set_rate(1000)
        assert t.rate == 1000


@settings(max_examples=25, deadline=None)
@given(
    data=st.binary(min_size=0, max_size=20_000),
    length=st.integers(min_value=1, max_value=5000),
    reads=st.lists(st.integers(min_value=1, max_value=4000), min_size=1, max_size=8),
)
def test_guard_never_drops_truncates_or_reorders(
    data: bytes, length: int, reads: list[int]
) -> None:
    """Property: whatever the chunking, copyfileobj and wrap deliver exactly the bytes given."""
    clock = FakeClock()
    guard = wg.Guard(rate="10KB/s", calendar=None, sources=[], sinks=[], clock=clock)
    dst = io.BytesIO()
    assert guard.copyfileobj(io.BytesIO(data), dst, length) == len(data)
    assert dst.getvalue() == data
    wrapped = guard.wrap(io.BytesIO(data))
    out = bytearray()
    i = 0
    while True:
        size = reads[i % len(reads)]
        i += 1
        block = wrapped.read(size)
        if not block:
            break
        out += block
    assert bytes(out) == data


def test_secrets_stay_out_of_logs_when_delivery_fails(caplog: pytest.LogCaptureFixture) -> None:
    """A webhook that cannot be reached: no URL secret or signing key in any log record."""
    import logging

    from wedguard.sinks import WebhookSink

    caplog.set_level(logging.DEBUG)
    closed = _Http()
    url = closed.url("/hooks/T0PSECRETPATH")
    closed.close()
    hook = WebhookSink(url, secret="whsec_c2lnbmluZy1rZXk=", timeout=0.2, backoff=0.01)
    hook.emit(wg.Alert("k", wg.Severity.HIGH, "x"))
    assert hook.flush(timeout=0.5) is False
    hook.close(timeout=0.1)
    text = caplog.text + repr(hook) + str(hook)
    assert "T0PSECRETPATH" not in text
    assert "c2lnbmluZy1rZXk" not in text


async def test_redis_slots_async_with(redis_server: RedisServer, key: str) -> None:
    """`async with slots:` takes and frees a shared slot too."""
    from wedguard.distributed import RedisSlots

    slots = RedisSlots(redis_server.client(), key, 1, lease=30.0)
    other = RedisSlots(redis_server.client(), key, 1, lease=30.0)
    async with slots:
        assert other.try_acquire() is False
    assert other.try_acquire() is True
    other.release()
