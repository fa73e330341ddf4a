"""DutyCycle, the pure part of pacing a child: properties and a state machine."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from wedguard import ConfigError
from wedguard.io.process import DutyCycle

rates = st.floats(min_value=1.0, max_value=1e9, allow_nan=False)
steps = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=2.0, allow_nan=False),
        st.floats(min_value=0.0, max_value=1e9, allow_nan=False),
    ),
    max_size=60,
)


@given(rate=rates, burst_s=st.floats(min_value=0.001, max_value=2.0), script=steps)
def test_usage_never_runs_ahead_of_the_rate_by_more_than_the_wait(
    rate: float, burst_s: float, script: list[tuple[float, float]]
) -> None:
    """Whatever the child does, used <= rate * elapsed + rate * wait: the debt the
    duty cycle reports is exactly what it must still pay back."""
    d = DutyCycle(rate, burst_seconds=burst_s)
    t, used = 0.0, 0.0
    d.update(t, used)
    for dt, grown in script:
        t += dt
        used += grown
        wait = d.update(t, used)
        assert wait >= 0
        assert d.tokens <= d.burst * (1 + 1e-9)
        assert used <= rate * t + rate * wait + 1e-6 * max(1.0, used)


@given(rate=rates, script=steps)
def test_honouring_the_wait_always_lets_the_child_run_again(
    rate: float, script: list[tuple[float, float]]
) -> None:
    d = DutyCycle(rate)
    t, used = 0.0, 0.0
    d.update(t, used)
    for dt, grown in script:
        t += dt
        used += grown
        wait = d.update(t, used)
        if wait > 0:
            t += wait * (1 + 1e-6) + 1e-6
            assert d.update(t, used) == 0.0


@given(rate=rates, seconds=st.integers(min_value=1, max_value=50))
def test_a_greedy_child_gets_the_whole_rate(rate: float, seconds: int) -> None:
    """A child that always uses what it may is not held below the rate."""
    d = DutyCycle(rate, burst_seconds=0.1)
    t, used = 0.0, 0.0
    d.update(t, used)
    tick = 0.05
    for _ in range(int(seconds / tick)):
        t += tick
        used += rate * tick  # it runs flat out within its credit
        d.update(t, used)
    assert used >= rate * t * 0.999


def test_unlimited_and_zero_rates() -> None:
    d = DutyCycle("off")
    d.update(0.0, 0.0)
    assert d.update(1.0, 1e12) == 0.0
    d.set_rate(0.0)
    d.update(2.0, 1e12)
    assert d.update(3.0, 1e12 + 1) == math.inf
    d.set_rate("1kB/s")
    assert d.rate == 1000.0


def test_counter_going_backwards_is_not_credit() -> None:
    """A descendant's counters vanish when it exits: that is never read as negative use."""
    d = DutyCycle(1000.0, burst_seconds=1.0)
    d.update(0.0, 0.0)
    d.update(1.0, 5000.0)  # 1000 credit, 5000 used: 4000 in debt
    assert d.update(1.0, 100.0) == pytest.approx(4.0)
    assert d.update(2.0, 5000.0) == pytest.approx(3.0)  # back up to 5000: no double count


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rate": "fast"}, "rate"),
        ({"rate": -1}, "rate"),
        ({"burst_seconds": 0}, "burst_seconds"),
        ({"burst_seconds": math.inf}, "burst_seconds"),
        ({"burst_seconds": True}, "burst_seconds"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        DutyCycle(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


class DutyCycleMachine(RuleBasedStateMachine):
    """DutyCycle against a reference model in exact fractions."""

    @initialize(rate=st.integers(min_value=1, max_value=10**6))
    def start(self, rate: int) -> None:
        self.dc = DutyCycle(float(rate), burst_seconds=0.25)
        self.rate = Fraction(rate)
        self.tokens = Fraction(0)
        self.t = Fraction(0)
        self.used = Fraction(0)
        self.high = Fraction(0)
        self.wait = 0.0
        self.dc.update(0.0, 0.0)

    @rule(
        dt=st.integers(min_value=0, max_value=2000),
        grown=st.integers(min_value=-1000, max_value=10**6),
    )
    def step(self, dt: int, grown: int) -> None:
        dt_f = Fraction(dt, 1000)
        self.t += dt_f
        self.used = max(Fraction(0), self.used + grown)
        charged = max(Fraction(0), self.used - self.high)
        self.high = max(self.high, self.used)
        burst = self.rate / 4
        self.tokens = min(burst, self.tokens + self.rate * dt_f) - charged
        self.wait = self.dc.update(float(self.t), float(self.used))

    @rule(rate=st.integers(min_value=1, max_value=10**6))
    def set_rate(self, rate: int) -> None:
        self.dc.set_rate(float(rate))
        self.rate = Fraction(rate)
        self.tokens = min(self.tokens, self.rate / 4)
        self.wait = self.dc.update(float(self.t), float(self.used))  # no time, no use

    @invariant()
    def same_as_the_model(self) -> None:
        scale = max(1.0, float(self.high))
        assert self.dc.tokens == pytest.approx(float(self.tokens), abs=1e-6 * scale)
        expected = max(0.0, float(-self.tokens / self.rate))
        assert self.wait == pytest.approx(expected, abs=1e-6 * scale / float(self.rate))


TestDutyCycleMachine = DutyCycleMachine.TestCase
