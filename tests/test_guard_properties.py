"""Properties of the guard on a fake clock, and a state machine against a reference model."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import wedguard as wg
from guard_helpers import ListCalendar, at
from wedguard.levels import Level
from wedguard.testing import FakeClock


def make_guard(clock: FakeClock, **kw: object) -> wg.Guard:
    kw.setdefault("calendar", None)
    kw.setdefault("sources", [])
    kw.setdefault("sinks", [])
    kw.setdefault("breaker", None)
    return wg.Guard(clock=clock, **kw)  # type: ignore[arg-type]


@settings(max_examples=60)
@given(
    rate=st.floats(1_000, 1e8),
    chunks=st.lists(st.integers(0, 5_000_000), min_size=1, max_size=40),
)
def test_the_rate_holds_and_every_byte_is_counted(rate: float, chunks: list[int]) -> None:
    """Elapsed time is what a token bucket promises: the burst is free, the rest goes at
    the rate, and the last request's own debt is not waited for."""
    clock = FakeClock()
    guard = make_guard(clock, rate=rate)
    burst = max(rate * 0.2, 1.0)
    with guard.session("p") as s:
        for n in chunks:
            s.throttle(n)
    total = sum(chunks)
    elapsed = clock.monotonic()
    assert s.report().bytes == total
    last = next((n for n in reversed(chunks) if n), 0)  # a zero-byte call waits for nothing
    lower = (total - burst - last) / rate
    upper = max(0.0, total - burst) / rate
    assert lower - 1e-6 <= elapsed <= upper + 1e-6
    assert s.report().wait_seconds["rate"] == pytest.approx(elapsed, abs=1e-6)


@settings(max_examples=40)
@given(
    start_minute=st.integers(0, 179),
    chunks=st.lists(st.integers(1, 400_000), min_size=1, max_size=30),
)
def test_no_byte_is_ever_let_through_in_a_blackout(start_minute: int, chunks: list[int]) -> None:
    cal = ListCalendar(
        (at(0), at(1), Level.PEAK, 1_000_000),
        (at(1), at(2), Level.BLACKOUT, None),
    )
    clock = FakeClock(at(0) + timedelta(minutes=start_minute))
    guard = make_guard(clock, rate="5MB/s", calendar=cal)
    with guard.session("b") as s:
        for n in chunks:
            s.throttle(n)
            assert cal.at(clock.now()).level is not Level.BLACKOUT
    r = s.report()
    # the time spent waiting for the calendar is never more than the blackout itself
    assert r.wait_seconds["calendar"] <= 3600 + 1e-6


class GuardModel(RuleBasedStateMachine):
    """stop / hold / resume / time passing across windows, against a tiny model:
    a throttle call raises iff stopped; the decision is paused iff stopped, held or in
    a blackout; the reported bytes are the bytes of the calls that returned."""

    def __init__(self) -> None:
        super().__init__()
        self.cal = ListCalendar(
            (at(1), at(2), Level.PEAK, 2_000_000),
            (at(3), at(4), Level.BLACKOUT, None),
        )
        self.clock = FakeClock()
        self.guard = make_guard(self.clock, rate="off", calendar=self.cal)
        self.session = self.guard.session("model")
        self.session.__enter__()
        self.stopped = False
        self.held = False
        self.bytes = 0

    def teardown(self) -> None:
        self.session.__exit__(None, None, None)

    @rule()
    def stop(self) -> None:
        self.guard.stop("model")
        self.stopped = True

    @rule()
    def hold(self) -> None:
        self.guard.hold("model")
        self.held = True

    @rule()
    def resume(self) -> None:
        self.guard.resume()
        self.stopped = self.held = False

    @rule(minutes=st.integers(0, 120))
    def time_passes(self, minutes: int) -> None:
        self.clock.advance(minutes * 60)

    @precondition(lambda self: not self.held or self.stopped)
    @rule(n=st.integers(0, 100_000))
    def throttle(self, n: int) -> None:
        if self.stopped:
            with pytest.raises(wg.EmergencyStop):
                self.session.throttle(n)
            return
        before = self.clock.now()
        self.session.throttle(n)
        self.bytes += n
        level = self.cal.at(self.clock.now()).level
        assert level is not Level.BLACKOUT
        if self.cal.at(before).level is Level.BLACKOUT:
            assert self.clock.now() == at(4)  # slept exactly to the end of the blackout

    @invariant()
    def decision_matches_the_model(self) -> None:
        d = self.guard.decision()
        level = self.cal.at(self.clock.now()).level
        assert d.level is level
        assert d.stopped == self.stopped
        assert d.on_hold == self.held
        assert d.paused == (self.stopped or self.held or level is Level.BLACKOUT)
        if not d.paused:
            assert d.rate == (2_000_000 if level is Level.PEAK else float("inf"))
        assert self.session.report().bytes == self.bytes


TestGuardModel = GuardModel.TestCase
TestGuardModel.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)


@settings(max_examples=30)
@given(chunks=st.lists(st.integers(100_000, 200_000), min_size=60, max_size=100))
def test_peak_rate_reads_the_rate_not_the_chunks(chunks: list[int]) -> None:
    """Over stretches of at least 5 s, bytes moved stay within the rate plus one burst
    and one chunk: the reported peak never shows a burst the bucket did not allow."""
    clock = FakeClock()
    guard = make_guard(clock, rate="1MB/s")
    with guard.session("peak") as s:
        for n in chunks:
            s.throttle(n)
    r = s.report()
    assert r.mean_rate <= r.peak_rate
    assert r.peak_rate <= 1_000_000 + (200_000 + max(chunks)) / 5 + 1e-6
    assert [p.t for p in r.timeline] == sorted(p.t for p in r.timeline)
