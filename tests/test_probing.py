"""Causal probing, the two loops and chunk shaping, on a fake clock."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wedguard as wg
from wedguard.levels import Verdict
from wedguard.policy.probing import (
    CausalJudge,
    PauseSchedule,
    Shaper,
    mann_whitney_greater,
)
from wedguard.policy.shaping import ChunkPolicy
from wedguard.testing import FakeClock

schedules = st.builds(
    lambda every, share, max_share: PauseSchedule(
        every=every, pause=every * min(share, max_share), max_share=max_share
    ),
    every=st.floats(1.0, 600.0),
    share=st.floats(0.001, 0.10),
    max_share=st.floats(0.01, 0.10),
)


def paused_stretches(s: PauseSchedule, start: float, end: float) -> list[tuple[float, float]]:
    """The schedule's pauses between start and end, walked through next-change times."""
    out = []
    now = start
    while now < end:
        paused, change = s.state(start=start, now=now)
        assert change > now
        if paused:
            out.append((now, min(change, end)))
        now = change
    return out


@given(s=schedules, span=st.floats(1.0, 20_000.0))
def test_no_pause_exceeds_its_budget(s: PauseSchedule, span: float) -> None:
    stretches = paused_stretches(s, 0.0, span)
    for a, b in stretches:
        assert b - a <= s.pause + 1e-9
    paused = sum(b - a for a, b in stretches)
    # at most max_share of the time, give or take the one pause under way at the end
    assert paused <= s.max_share * span + s.pause + 1e-9
    assert not s.state(start=0.0, now=min(span, s.every) * 0.999)[0]  # none in the first period


@given(now=st.floats(0.0, 1e6), s=schedules)
def test_the_state_agrees_with_the_pause_windows(now: float, s: PauseSchedule) -> None:
    paused, change = s.state(start=0.0, now=now)
    k = math.floor(now / s.every)
    assert paused == (k >= 1 and now < k * s.every + s.pause)
    assert change > now


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"pause": 5.0, "every": 30.0}, "pause"),  # 17 % of the time
        ({"max_share": 0.2}, "max_share"),
        ({"every": 0}, "every"),
        ({"pause": -1.0}, "pause"),
    ],
)
def test_a_schedule_over_its_share_is_refused(kw: dict[str, float], field: str) -> None:
    with pytest.raises(wg.ConfigError) as info:
        PauseSchedule(**kw)
    assert info.value.field == field


@given(
    x=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40),
    y=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40),
)
def test_the_u_test_is_a_probability_and_sees_a_clear_shift(x: list[float], y: list[float]) -> None:
    p = mann_whitney_greater(x, y)
    assert 0.0 <= p <= 1.0
    if len(x) >= 6 and len(y) >= 6:
        high = [v + 1e7 for v in x]  # every value above every one of y
        assert mann_whitney_greater(high, y) < 0.01
        assert mann_whitney_greater(y, high) > 0.99


def test_the_u_test_by_hand() -> None:
    # U = 34 of 36 pairs, two ties of two: z = (34 - 18 - 0.5) / sqrt(3 * (13 - 12/132))
    p = mann_whitney_greater([5, 6, 7, 8, 9, 10], [1, 2, 3, 4, 5, 6])
    z = 15.5 / math.sqrt(3 * (13 - 12 / 132))
    assert p == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)))
    assert mann_whitney_greater([], [1.0]) == 1.0
    assert mann_whitney_greater([2.0, 2.0], [2.0, 2.0]) == 1.0


def run(
    shaper: Shaper,
    *,
    harm: float,
    noise: float,
    seconds: float,
    seed: int,
    base: float = 0.010,
) -> list[Verdict]:
    """Production whose latency is ``base`` x lognormal(noise), x (1 + harm) while the
    backup runs; the shaper samples it every ``interval`` on a fake clock. Returns the
    outer loop's verdicts in order."""
    rng = random.Random(seed)
    clock = FakeClock()
    verdicts: list[Verdict] = []
    seen = None
    while clock.monotonic() < seconds:
        now = clock.monotonic()
        running = not shaper.paused(now)
        latency = base * math.exp(rng.gauss(0.0, noise)) * (1 + harm if running else 1.0)
        shaper.observe({"api.latency_s": latency}, now)
        if shaper.last is not None and shaper.last is not seen:
            seen = shaper.last
            verdicts.append(seen.verdict)
        clock.advance(shaper.interval)
    return verdicts


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32),
    harm=st.floats(0.15, 1.0),
    noise=st.floats(0.0, 0.15),
)
def test_a_harm_that_exists_is_found_within_ten_pause_windows(
    seed: int, harm: float, noise: float
) -> None:
    """+15 % or more with up to 15 % noise (lognormal sigma), sampled every 0.2 s:
    found by the tenth 1 s pause (5 minutes; 300 seeds at +15 %/15 % took at most
    265 s, the median 90 s: three pauses give the 8 paused samples needed)."""
    shaper = Shaper(pauses=PauseSchedule(every=30, pause=1.0), min_samples=8)
    verdicts = run(shaper, harm=harm, noise=noise, seconds=10 * 30 + 1 + 5, seed=seed)
    assert Verdict.THROTTLE in verdicts
    assert shaper.factor < 1.0
    assert shaper.chunk_size() == ChunkPolicy().sensitive


def test_no_harm_no_throttle_beyond_the_false_positive_rate() -> None:
    """Production that does not care about the backup, 10 % noise: of the outer
    loop's assessments over 50 runs of 10 minutes, at most 1 % say THROTTLE."""
    total = throttled = 0
    for seed in range(50):
        shaper = Shaper(pauses=PauseSchedule(every=30, pause=1.0))
        verdicts = run(shaper, harm=0.0, noise=0.10, seconds=600, seed=seed)
        total += len(verdicts)
        throttled += verdicts.count(Verdict.THROTTLE)
    assert total >= 50 * 100
    assert throttled <= 0.01 * total


def test_a_harm_under_the_limit_is_not_acted_on() -> None:
    """+2 % is real but within +5 %: significant, not large enough."""
    throttled = 0
    for seed in range(10):
        shaper = Shaper(pauses=PauseSchedule(every=30, pause=1.0))
        throttled += run(shaper, harm=0.02, noise=0.02, seconds=300, seed=seed).count(
            Verdict.THROTTLE
        )
    assert throttled == 0


def test_the_inner_loop_halves_on_pressure_and_recovers_slowly() -> None:
    shaper = Shaper(pauses=None)
    shaper.observe({"pressure.cpu.some_percent": 10.0}, 0.0)
    assert shaper.factor == 1.0
    assert shaper.chunk_size() == ChunkPolicy().size(load=10 / 30)
    shaper.observe({"pressure.cpu.some_percent": 45.0}, 0.2)  # cap 30 %
    shaper.observe({"pressure.cpu.some_percent": 45.0}, 0.4)
    assert shaper.factor == pytest.approx(0.25)
    assert shaper.chunk_size() == 128 << 10
    assert any("fast signals" in r for r in shaper.reasons(0.4))
    assert shaper.allowed(1_000_000.0) == pytest.approx(250_000.0)
    steps = 0
    while shaper.factor < 1.0:
        shaper.observe({"pressure.cpu.some_percent": 5.0}, 0.6 + 0.2 * steps)
        steps += 1
    assert steps > 10  # recovery is gradual: no sleep-then-burst at the rate either
    assert shaper.allowed(1_000_000.0) == 1_000_000.0


def test_an_unlimited_ceiling_is_shared_from_the_throughput_seen() -> None:
    shaper = Shaper(pauses=None)
    shaper.observe({}, 0.0, moved=0.0)
    shaper.observe({}, 1.0, moved=8e6)  # 8 MB/s while nothing held it back
    shaper.observe({"prod.runq_ratio": 0.5}, 1.2, moved=8.1e6)
    assert shaper.allowed(math.inf) == pytest.approx(4e6)


def test_no_pause_without_a_production_latency_to_measure() -> None:
    shaper = Shaper()
    for i in range(400):
        shaper.observe({"pressure.io.some_percent": 1.0}, i * 0.2)
        assert not shaper.paused(i * 0.2)
    assert shaper.next_change(80.0) == math.inf


def test_the_judge_waits_for_enough_samples_and_says_so() -> None:
    j = CausalJudge("api.latency_s", min_samples=5)
    for v in (1.0, 1.1, 1.2):
        j.add(v, paused=True)
        j.add(v * 2, paused=False)
    a = j.assess()
    assert a.verdict is Verdict.OK
    assert math.isnan(a.effect)
    assert "5 of each needed" in a.reasons[0]
    j.add(math.nan, paused=True)  # ignored
    assert j.assess().paused == 3


@given(
    load=st.floats(0.0, 5.0),
    more=st.floats(0.0, 5.0),
    rate=st.one_of(st.just(math.inf), st.floats(1.0, 1e10)),
)
def test_a_chunk_shrinks_with_load_and_never_outruns_the_rate(
    load: float, more: float, rate: float
) -> None:
    p = ChunkPolicy()
    size = p.size(load=load, rate=rate)
    assert p.floor <= size <= p.quiet
    assert p.size(load=load + more, rate=rate) <= size
    if rate < math.inf:
        assert size <= max(p.floor, rate * p.span) + 1


def test_bad_chunk_policies_are_refused() -> None:
    with pytest.raises(wg.ConfigError) as info:
        ChunkPolicy(quiet=64 << 10, sensitive=128 << 10)
    assert info.value.field == "sensitive"
    with pytest.raises(wg.ConfigError) as info:
        ChunkPolicy(span=0)
    assert info.value.field == "span"
    with pytest.raises(wg.ConfigError) as info:
        Shaper(pauses=PauseSchedule(every=10, pause=0.2), settle=0.5)
    assert info.value.field == "settle"
