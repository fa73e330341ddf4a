"""The session ledger (``wedguard.policy.ledger``): cutoffs, deadline pacing, accounts.

Pure on clock readings, so the properties are checked over many made-up sessions:
a cutoff is never exceeded, pacing finishes by the deadline when the rate allows, and
the report's sums are the sums of what was counted.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wedguard as wg
from wedguard.levels import Level, Verdict
from wedguard.policy.ledger import (
    CAUSES,
    Cutoff,
    CutoffReached,
    Ledger,
    Reservation,
)

T0 = datetime(2026, 1, 5, 22, 0, tzinfo=timezone.utc)

sizes = st.floats(min_value=0, max_value=1e6, allow_nan=False)
modes = st.sampled_from(list(Cutoff))


def started(**kw: object) -> Ledger:
    ledger = Ledger.build("job", **kw)  # type: ignore[arg-type]
    ledger.start(100.0, T0)
    return ledger


def send(ledger: Ledger, chunks: list[float], units: list[float] | None = None) -> int:
    """Send ``chunks`` (each its own unit, of ``units[i]`` bytes when given) until a
    cutoff ends the session; returns how many went."""
    for i, n in enumerate(chunks):
        size = None if units is None else units[i]
        try:
            ledger.check(n, 1, size, 100.0 + i)
        except CutoffReached:
            return i
        ledger.count(n, 1)
    return len(chunks)


@given(limit=st.integers(min_value=1, max_value=10**7), chunks=st.lists(sizes, max_size=60))
def test_a_hard_byte_cutoff_is_never_exceeded(limit: int, chunks: list[float]) -> None:
    ledger = started(max_bytes=limit)
    sent = send(ledger, chunks)
    assert ledger.bytes <= limit
    if sent < len(chunks):  # it stopped only where the next chunk would cross
        assert ledger.bytes + chunks[sent] > limit


@given(limit=st.integers(min_value=1, max_value=10**7), chunks=st.lists(sizes, max_size=60))
def test_a_cautious_cutoff_starts_no_unit_that_would_cross(limit: int, chunks: list[float]) -> None:
    ledger = started(max_bytes=limit, cutoff="cautious")
    send(ledger, chunks, units=chunks)  # each unit's whole size declared
    assert ledger.bytes <= limit


@given(limit=st.integers(min_value=1, max_value=10**7), chunks=st.lists(sizes, max_size=60))
def test_a_soft_cutoff_starts_no_unit_once_reached(limit: int, chunks: list[float]) -> None:
    ledger = started(max_bytes=limit, cutoff="soft")
    sent = send(ledger, chunks)
    assert ledger.bytes - (chunks[sent - 1] if sent else 0.0) < limit  # only the last crossed


@given(
    seconds=st.floats(min_value=0.5, max_value=100),
    mode=modes,
    now=st.floats(min_value=0, max_value=200),
)
def test_no_unit_starts_after_a_time_cutoff(seconds: float, mode: Cutoff, now: float) -> None:
    ledger = started(max_duration=seconds, cutoff=mode)
    at = 100.0 + now
    if at >= 100.0 + seconds:
        with pytest.raises(CutoffReached) as info:
            ledger.check(1, 1, None, at)
        assert info.value.limit == "max_duration"
        assert info.value.mode is mode


def test_stop_at_ends_before_a_longer_max_duration() -> None:
    ledger = Ledger.build("job", max_duration="2h", stop_at=T0 + timedelta(minutes=30))
    ledger.start(0.0, T0)
    assert ledger.limit_name == "stop_at"
    assert ledger.limit_at == pytest.approx(1800)
    assert ledger.hard_limit == ledger.limit_at  # HARD: also while it waits
    ledger.check(1, 0, None, 1799.0)
    with pytest.raises(CutoffReached, match="stop_at"):
        ledger.check(1, 0, None, 1800.0)


def test_a_cautious_time_cutoff_looks_ahead_at_the_rate() -> None:
    ledger = Ledger.build("job", max_duration=10, cutoff="cautious")
    ledger.start(0.0, T0)
    assert ledger.clear_until == -math.inf  # never on the fast lane: it must look ahead
    ledger.check(50, 1, None, 5.0, rate=10)  # done at 10 s: may start
    with pytest.raises(CutoffReached):
        ledger.check(60, 1, None, 5.0, rate=10)  # would end at 11 s


@given(
    expected=st.floats(min_value=1, max_value=1e9),
    seconds=st.floats(min_value=1, max_value=1e5),
    headroom=st.floats(min_value=1, max_value=10),
    steps=st.integers(min_value=1, max_value=500),
)
@settings(max_examples=200)
def test_deadline_pacing_finishes_by_the_deadline_when_the_rate_allows(
    expected: float, seconds: float, headroom: float, steps: int
) -> None:
    """Sending at the paced rate (never above what the guard allows) finishes in time."""
    ledger = Ledger("job", expected_bytes=expected)
    ledger.start(0.0, T0, T0 + timedelta(seconds=seconds))
    allowed = expected / seconds * headroom  # the guard allows at least the rate needed
    step = 0
    while (ledger.remaining or 0) > expected * 1e-12 and step < steps:
        left = seconds * (steps - step) / steps  # the time until the deadline
        rate = ledger.pace(left)
        assert rate <= allowed * (1 + 1e-6)
        ledger.count(min(ledger.remaining or 0, rate * seconds / steps), 0)
        step += 1
    assert ledger.remaining == pytest.approx(0, abs=expected * 1e-9)  # done by the deadline


def test_pace_and_pace_wait() -> None:
    ledger = Ledger("job", expected_bytes=1000)
    ledger.start(0.0, T0)
    assert ledger.pace(10) == 100
    assert ledger.pace(0) == math.inf
    assert ledger.pace_wait(0.0, 100, rate=100) == 1.0  # 100 bytes at 100 B/s: due at 1 s
    ledger.count(1000, 0)
    assert ledger.pace(10) == 0.0
    assert Ledger("x").pace(10) == 0.0  # nothing declared: nothing to pace


events = st.lists(
    st.one_of(
        st.tuples(st.just("count"), sizes, st.integers(0, 3)),
        st.tuples(st.just("wait"), st.sampled_from(CAUSES), st.floats(0, 1e4)),
    ),
    max_size=80,
)


@given(events=events)
def test_the_reports_sums_are_what_was_counted(events: list[tuple[str, object, object]]) -> None:
    ledger = Ledger("job")
    ledger.start(0.0, T0)
    total = 0.0
    ops = 0
    waits = dict.fromkeys(CAUSES, 0.0)
    for kind, a, b in events:
        if kind == "count":
            assert isinstance(a, float)
            assert isinstance(b, int)
            ledger.count(a, b)
            total += a
            ops += b
        else:
            assert isinstance(a, str)
            assert isinstance(b, float)
            ledger.waited(a, b)
            waits[a] += b
    ledger.end(50.0, None)
    report = ledger.report(50.0, started=True, decision=None)
    assert report.bytes == pytest.approx(total)
    assert report.ops == ops
    assert dict(report.wait_seconds) == pytest.approx(waits)
    assert report.waited == pytest.approx(sum(waits.values()))
    assert report.mean_rate == pytest.approx(total / 50.0)
    assert report.finished_at == T0 + timedelta(seconds=50)


@given(steps=st.lists(st.tuples(st.sampled_from(("", *CAUSES)), st.floats(0, 100)), max_size=40))
def test_pauses_add_up_to_the_time_spent_paused(steps: list[tuple[str, float]]) -> None:
    ledger = Ledger("job")
    ledger.start(0.0, T0)
    r = Reservation(1, 0, None)
    now = 0.0
    paused = 0.0
    for cause, seconds in steps:
        ledger.note(r, cause, now)
        if cause in ("calendar", "impact", "stop"):
            paused += seconds
        now += seconds
    ledger.note(r, "", now)
    assert sum(p.duration for p in ledger.pauses) == pytest.approx(paused)
    assert all(p.cause in ("calendar", "impact", "stop") for p in ledger.pauses)


def test_the_timeline_keeps_its_ends_when_it_grows_long() -> None:
    ledger = Ledger("job")
    ledger.start(0.0, T0)
    for i in range(25_000):
        ledger.count(1, 0)
        ledger.point(float(i), 1.0, Level.OPEN, Verdict.OK)
    assert len(ledger.timeline) <= 20_000
    assert ledger.timeline[0].t == 0.0
    assert ledger.timeline[-1].t == 24_999.0


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"max_bytes": 0}, "max_bytes"),
        ({"max_duration": "-1s"}, "max_duration"),
        ({"stop_at": T0.replace(tzinfo=None)}, "stop_at"),
        ({"stop_at": "tonight"}, "stop_at"),
        ({"cutoff": "gentle"}, "cutoff"),
        ({"expected_bytes": "lots"}, "expected_bytes"),
    ],
)
def test_bad_arguments_name_their_field(kw: dict[str, object], field: str) -> None:
    with pytest.raises(wg.ConfigError) as info:
        Ledger.build("job", **kw)  # type: ignore[arg-type]
    assert info.value.field == field


def test_the_old_names_warn_and_still_work() -> None:
    from wedguard.policy import ledger
    from wedguard.runtime import session

    for module in (wg, ledger, session):
        with pytest.warns(DeprecationWarning, match="CutoffMode"):
            assert module.CutoffMode is Cutoff
    report = Ledger.build("x").report
    assert report is not None
