"""The decision engine (wedguard.policy.decision): limits compose, the most restrictive
wins, a BLACKOUT or a stop never lets work go, and the reasons name what binds."""

from __future__ import annotations

import math
import sys
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wedguard as wg
from guard_helpers import T0, ListCalendar, Win, at
from wedguard.levels import Level, Verdict
from wedguard.policy.decision import (
    Go,
    Inputs,
    Limit,
    Limits,
    Stop,
    Wait,
    blockers,
    decide,
    limits,
    next_action,
)
from wedguard.testing import FakeClock

rates = st.one_of(st.floats(0.001, 1e10), st.just(math.inf))
caps = st.one_of(st.none(), st.just(0.0), st.floats(1.0, 1e10))
reasons = st.one_of(st.just(""), st.sampled_from(["failover", "maintenance", "SIGUSR1"]))


@st.composite
def windows(draw: st.DrawFn) -> Win | None:
    if draw(st.booleans()):
        return None
    level = draw(st.sampled_from(list(Level)))
    cap = 0.0 if level is Level.BLACKOUT else draw(caps)
    start = T0 + timedelta(seconds=draw(st.integers(0, 86400)))
    end = start + timedelta(seconds=draw(st.integers(1, 86400)))
    return Win(level, cap, start, end, draw(st.sampled_from(["", "peak hours"])))


@st.composite
def inputs(draw: st.DrawFn) -> Inputs:
    window = draw(windows())
    return Inputs(
        rate=draw(rates.filter(lambda r: r > 0)),
        ops_rate=draw(rates),
        window=window,
        verdict=draw(st.sampled_from(list(Verdict))),
        impact_reasons=tuple(draw(st.lists(st.sampled_from(["api +9 %", "cpu 80 %"]), max_size=2))),
        allowed=draw(st.one_of(st.just(0.0), rates)),
        allowed_free=draw(st.booleans()),
        manual_stop=draw(reasons),
        file_stop=draw(reasons),
        fleet_stop=draw(reasons),
        held=draw(reasons),
        learning=draw(st.sampled_from(["", "learning the baseline"])),
        circuit=draw(st.sampled_from(["", "circuit 'guard' is open"])),
        fleet_budget=draw(st.one_of(st.none(), st.floats(1.0, 1e9))),
        at=T0 if window is None else window.start,
    )


@given(inputs())
def test_the_most_restrictive_limit_wins(i: Inputs) -> None:
    """Unless something pauses all work, the rate is the lowest of the configured rate,
    the calendar's cap and the controller's rate: nothing else, whatever their order."""
    d = decide(i)
    cap = math.inf if i.window is None or i.window.rate is None else i.window.rate
    expected = min(i.rate, cap, i.rate if i.allowed_free else i.allowed)
    if d.paused:
        assert d.rate == 0.0
    else:
        assert d.rate == expected
        assert d.rate == limits(i).rate


@given(inputs())
def test_a_blackout_or_a_stop_never_lets_work_go(i: Inputs) -> None:
    d = decide(i)
    action = next_action(d, now=0.0, expires=60.0)
    stop = i.manual_stop or i.file_stop or i.fleet_stop
    if stop:
        assert action == Stop(stop)
    elif i.held or (i.window is not None and i.window.level is Level.BLACKOUT):
        assert isinstance(action, Wait)
        assert action.cause == ("stop" if i.held else "calendar")
        assert action.seconds == 60.0
        assert action.reason == d.reasons[0]
    if stop or i.held or (i.window is not None and i.window.level is Level.BLACKOUT):
        assert d.paused
        assert d.rate == 0.0
        assert d.ops_rate == 0.0
    if isinstance(action, Go):
        assert not blockers(i)
        assert d.rate > 0


@given(inputs())
def test_the_reasons_name_every_binding_limit_and_every_blocker(i: Inputs) -> None:
    d = decide(i)
    for limit in limits(i).binding:
        assert limit.reason in d.reasons
    stops = blockers(i)
    # the blockers come first, in order; then the limits, the binding one first
    assert d.reasons[: len(stops)] == tuple(b.reason for b in stops)
    first_limit = d.reasons[len(stops)]
    assert first_limit in {lim.reason for lim in limits(i).binding}
    if i.circuit:
        assert i.circuit in d.reasons


@given(inputs())
def test_the_engine_is_a_pure_function(i: Inputs) -> None:
    assert decide(i) == decide(i)


@given(st.lists(st.tuples(rates, st.text(min_size=1, max_size=5)), min_size=1, max_size=6))
def test_limits_compose_in_any_order(items: list[tuple[float, str]]) -> None:
    parts = [Limit(cap, reason) for cap, reason in items]
    joined = Limits()
    for part in parts:
        joined &= part
    backwards = Limits()
    for part in reversed(parts):
        backwards = part & backwards
    assert joined.rate == backwards.rate == min(cap for cap, _ in items)
    assert sorted(joined.reasons()) == sorted(backwards.reasons())
    assert joined.reasons()[0] in {lim.reason for lim in joined.binding}


@given(minutes=st.integers(1, 600), start=st.integers(0, 600))
def test_a_blackout_waits_exactly_until_its_end_on_a_fake_clock(minutes: int, start: int) -> None:
    """Inside a BLACKOUT the guard's core says Wait(cause "calendar") for as long as the
    window lasts; once the fake clock has advanced that long, it says Go."""
    clock = FakeClock()
    begin, end = at(minutes=start), at(minutes=start + minutes)
    cal = ListCalendar((begin, end, Level.BLACKOUT, 0.0))
    guard = wg.Guard(rate="1MB/s", calendar=cal, sources=[], sinks=[], clock=clock)
    clock.advance((begin - T0).total_seconds())
    guard.decision()
    action = guard.host.action(clock.monotonic())
    assert isinstance(action, Wait)
    assert action.cause == "calendar"
    assert action.seconds == pytest.approx(minutes * 60)
    clock.advance(action.seconds)
    assert guard.decision().level is Level.OPEN
    assert guard.host.action(clock.monotonic()) == Go()


def test_the_guard_decides_through_the_engine() -> None:
    """guard.decision() is what the engine makes of the guard's inputs."""
    clock = FakeClock()
    cal = ListCalendar((at(hours=1), at(hours=2), Level.PEAK, 250_000.0))
    guard = wg.Guard(rate="1MB/s", calendar=cal, sources=[], sinks=[], clock=clock)
    clock.advance(3600 + 60)
    d = guard.decision()
    assert d.rate == 250_000.0
    assert d == decide(guard.host.inputs(clock.now()))  # type: ignore[attr-defined]
    guard.hold("maintenance")
    assert next_action(guard.decision(), now=0.0, expires=1.0) == Wait(
        1.0, "stop", "on hold: maintenance"
    )


def test_a_broken_policy_module_fails_the_guard_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    """A default whose module cannot be imported raises: the guard is never built
    silently without its impact analyser."""
    monkeypatch.setitem(sys.modules, "wedguard.policy.impact", None)
    with pytest.raises(ImportError):
        wg.Guard(sources=[object.__new__(_Quiet)], clock=FakeClock(), sinks=[])


class _Quiet:
    def sample(self) -> dict[str, float]:
        return {}


def test_the_session_host_offers_every_member_of_its_protocol() -> None:
    from wedguard.interfaces import SessionHost

    guard = wg.Guard(calendar=None, sources=[], sinks=[], clock=FakeClock())
    members = [n for n in vars(SessionHost) if not n.startswith("_")]
    assert len(members) > 20
    for name in members:
        assert hasattr(guard.host, name), name
