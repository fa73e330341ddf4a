"""TokenBucketThrottler: exact rate, bounded bursts, debt, FIFO, live rate changes.

Almost everything runs on a FakeClock, so hours of throttling take microseconds. The
few tests on the real clock use real threads and only bound how long they may take.
"""

from __future__ import annotations

import asyncio
import doctest
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import wedguard as wg
from wedguard.policy import bucket as throttle_module
from wedguard.testing import FakeClock

TokenBucketThrottler = wg.TokenBucketThrottler


class GateClock(FakeClock):
    """A fake clock whose condition waits really block until notified.

    Fake time moves only through ``advance()``; a waiting thread wakes only when the
    bucket notifies it (``set_rate``, a give-back), so a test can act *during* a wait.
    """

    def wait(self, cond: threading.Condition, timeout: float | None) -> bool:
        return cond.wait(5.0)  # a real bound, so a broken test cannot hang


class StepClock:
    """The cheapest clock: ``monotonic()`` returns ``t``, which the test sets."""

    def __init__(self) -> None:
        self.t = 0.0

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:  # pragma: no cover - never used by the bucket
        raise NotImplementedError

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll (for real) until ``predicate()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.001)


def start(target: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Run ``target`` in a daemon thread; its result or exception lands in the list."""
    out: list[object] = []

    def run() -> None:
        try:
            out.append(target())
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def max_window_excess(grants: Sequence[tuple[float, float]], rate: float) -> float:
    """The largest ``sum(n in [t_i, t_j]) - rate * (t_j - t_i)`` over all windows.

    ``grants`` are (time, units) pairs in time order. The burst bound says this never
    exceeds ``burst + one request``.
    """
    best = -math.inf
    best_start = -math.inf  # max over i of (rate * t_i - units granted before i)
    total = 0.0
    for t, n in grants:
        best_start = max(best_start, rate * t - total)
        total += n
        best = max(best, total - rate * t + best_start)
    return best


# -- construction, properties and bad input ------------------------------------------


def test_module_doctests() -> None:
    """The examples in the docstrings are true."""
    result = doctest.testmod(throttle_module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 5


def test_default_burst_follows_the_rate(clock: FakeClock) -> None:
    """Without burst=, a full bucket holds 0.2 s worth of the rate, at least one unit."""
    assert TokenBucketThrottler("10MB/s", clock=clock).burst == 2_000_000
    assert TokenBucketThrottler(2, clock=clock).burst == 1.0
    bucket = TokenBucketThrottler(1000, clock=clock)
    assert bucket.burst == 200
    bucket.set_rate(5000)
    assert bucket.burst == 1000
    bucket.set_rate(0)
    assert bucket.burst == 1.0


def test_given_burst_stays_when_the_rate_changes(clock: FakeClock) -> None:
    """An explicit burst (here a size text) does not follow the rate."""
    bucket = TokenBucketThrottler(1000, burst="64KiB", clock=clock)
    assert bucket.burst == 65536
    bucket.set_rate(10)
    assert bucket.burst == 65536


def test_properties_and_repr(clock: FakeClock) -> None:
    """rate, burst, available, clock and waiting read back; repr shows the state."""
    bucket = TokenBucketThrottler("100/s", burst=50, clock=clock)
    assert (bucket.rate, bucket.burst, bucket.available) == (100, 50, 50)
    assert bucket.clock is clock
    assert bucket.waiting == 0
    assert repr(bucket) == "TokenBucketThrottler(rate=100, burst=50, available=50)"
    assert isinstance(bucket, wg.Throttler)


def test_new_bucket_starts_full(clock: FakeClock) -> None:
    """A new bucket holds one burst and refills at the rate."""
    bucket = TokenBucketThrottler(10, burst=10, clock=clock)
    assert bucket.try_acquire(10)
    assert not bucket.try_acquire(1)
    clock.advance(0.1)
    assert bucket.try_acquire(1)
    assert not bucket.try_acquire(0.01)


def test_the_bucket_never_holds_more_than_burst(clock: FakeClock) -> None:
    """An idle hour refills one burst, not an hour's worth."""
    bucket = TokenBucketThrottler(10, burst=10, clock=clock)
    clock.advance(3600)
    assert bucket.available == 10
    assert bucket.try_acquire(10)
    assert bucket.available == 0


BAD_N = [-1, -0.5, math.nan, math.inf, -math.inf, True, False, "5", None, 10**400]


@pytest.mark.parametrize("n", BAD_N, ids=repr)
@pytest.mark.parametrize("rate", [100.0, math.inf], ids=["finite", "unlimited"])
async def test_bad_n_raises_config_error_naming_n(n: object, rate: float, clock: FakeClock) -> None:
    """Every entry point rejects a bad n, also while the bucket is unlimited."""
    bucket = TokenBucketThrottler(rate, clock=clock)
    calls: list[Callable[[], object]] = [
        lambda: bucket.try_acquire(n),  # type: ignore[arg-type]
        lambda: bucket.reserve(n),  # type: ignore[arg-type]
        lambda: bucket.acquire(n),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(wg.ConfigError) as info:
            call()
        assert info.value.field == "n"
        assert info.value.value is n
        assert "n: " in str(info.value)
    with pytest.raises(wg.ConfigError, match=r"^n: "):
        await bucket.acquire_async(n)  # type: ignore[arg-type]
    assert bucket.available == (math.inf if rate == math.inf else 20.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rate": -1}, "rate"),
        ({"rate": math.nan}, "rate"),
        ({"rate": "fast"}, "rate"),
        ({"rate": "-5MB/s"}, "rate"),
        ({"rate": True}, "rate"),
        ({"rate": 10, "burst": 0}, "burst"),
        ({"rate": 10, "burst": -3}, "burst"),
        ({"rate": 10, "burst": math.inf}, "burst"),
        ({"rate": 10, "burst": math.nan}, "burst"),
        ({"rate": 10, "burst": "lots"}, "burst"),
        ({"rate": 10, "burst": "0KiB"}, "burst"),
    ],
    ids=repr,
)
def test_bad_construction_raises_config_error(kwargs: dict[str, object], field: str) -> None:
    """A bad rate or burst raises ConfigError naming the field and quoting the value."""
    with pytest.raises(wg.ConfigError) as info:
        TokenBucketThrottler(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert repr(kwargs[field]) in str(info.value)


@pytest.mark.parametrize("timeout", [-1, -0.001, math.nan, True, "1s"], ids=repr)
async def test_bad_timeout_raises_config_error(timeout: object, clock: FakeClock) -> None:
    """A bad timeout raises ConfigError naming it, sync and async, and takes nothing."""
    bucket = TokenBucketThrottler(10, clock=clock)
    with pytest.raises(wg.ConfigError) as info:
        bucket.acquire(1, timeout=timeout)  # type: ignore[arg-type]
    assert info.value.field == "timeout"
    with pytest.raises(wg.ConfigError, match=r"^timeout: "):
        await bucket.acquire_async(1, timeout=timeout)  # type: ignore[arg-type]
    assert bucket.available == 2.0  # nothing taken


@pytest.mark.parametrize("rate", [-1, math.nan, "slow"], ids=repr)
def test_bad_set_rate_changes_nothing(rate: object, clock: FakeClock) -> None:
    """A bad rate for set_rate raises ConfigError and leaves the rate alone."""
    bucket = TokenBucketThrottler(10, clock=clock)
    with pytest.raises(wg.ConfigError, match=r"^rate: "):
        bucket.set_rate(rate)  # type: ignore[arg-type]
    assert bucket.rate == 10


def test_zero_and_int_subclasses_are_fine(clock: FakeClock) -> None:
    """Zero units and subclasses of int are valid requests."""

    class Units(int):
        pass

    bucket = TokenBucketThrottler(10, burst=10, clock=clock)
    assert bucket.try_acquire(0)
    assert bucket.try_acquire(Units(4))
    assert bucket.reserve(Units(6)) == 0.0
    assert bucket.acquire(0) == 0.0
    assert bucket.available == 0


# -- the pure core: reserve, debt ------------------------------------------------------


def test_reserve_is_pure_and_queues(clock: FakeClock) -> None:
    """reserve() never sleeps: it takes the units and says how long to wait."""
    bucket = TokenBucketThrottler(10, burst=10, clock=clock)
    assert [bucket.reserve(5) for _ in range(4)] == [0.0, 0.0, 0.5, 1.0]
    assert clock.monotonic() == 0.0
    assert clock.sleeps == []
    assert bucket.available == -10
    clock.advance(1.0)
    assert bucket.available == 0


def test_request_larger_than_burst_is_served_through_debt(clock: FakeClock) -> None:
    """n > burst: served from a full bucket at once, the debt is repaid afterwards."""
    bucket = TokenBucketThrottler(100, burst=10, clock=clock)
    assert bucket.try_acquire(1000)
    assert bucket.available == -990
    assert not bucket.try_acquire(1)
    assert bucket.acquire(1) == pytest.approx(9.91)  # 990 of debt + 1 unit at 100/s
    # from an empty bucket it waits only for a full bucket, not for all of n
    assert bucket.acquire(1000) == pytest.approx(0.1)
    assert bucket.available == pytest.approx(-990)


def test_try_acquire_larger_than_burst_needs_a_full_bucket(clock: FakeClock) -> None:
    """try_acquire(n > burst) fails until the bucket is full, then succeeds."""
    bucket = TokenBucketThrottler(100, burst=10, clock=clock)
    assert bucket.try_acquire(5)
    assert not bucket.try_acquire(50)
    clock.advance(0.04)
    assert not bucket.try_acquire(50)
    clock.advance(0.02)
    assert bucket.try_acquire(50)


@settings(max_examples=20)
@given(
    rate=st.floats(0.5, 1e9),
    sizes=st.lists(st.floats(0.25, 3.0), min_size=1, max_size=8),
    seed=st.integers(0, 2**32 - 1),
)
def test_long_run_rate_is_exact_even_with_debt(rate: float, sizes: list[float], seed: int) -> None:
    """Blocking acquires of random sizes (many above the burst) hold the rate.

    After the initial full bucket, the clock time is exactly what the units cost:
    ``rate * elapsed == total - burst - debt of the last request``; over a long run
    (1,200 times the burst plus the largest request) the achieved rate is within
    0.1 % of the target.
    """
    clock = FakeClock()
    bucket = TokenBucketThrottler(rate, clock=clock)
    burst = bucket.burst
    rng = random.Random(seed)
    total = 0.0
    n = 0.0
    goal = 1200 * (burst + burst * max(sizes))
    while total < goal:
        n = burst * rng.choice(sizes)  # a quarter of a burst to three bursts
        bucket.acquire(n)
        total += n
    elapsed = clock.monotonic()
    debt = max(0.0, n - burst)
    assert rate * elapsed == pytest.approx(total - burst - debt, rel=1e-9)
    assert total / elapsed == pytest.approx(rate, rel=1e-3)
    assert bucket.available == pytest.approx(-debt, abs=1e-9 * total)


@settings(max_examples=40)
@given(
    rate=st.sampled_from([1.0, 7.0, 1000.0, 1 / 3, 8e6, 123456.789]),
    burst=st.one_of(st.none(), st.floats(0.5, 100.0)),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["acquire", "try", "reserve", "idle"]),
            st.floats(0.0, 3.0),  # size in bursts
            st.floats(0.0, 2.0),  # idle time in seconds' worth of a burst
        ),
        min_size=1,
        max_size=400,
    ),
)
def test_burst_bound_and_rate_over_random_runs(
    rate: float, burst: float | None, ops: list[tuple[str, float, float]]
) -> None:
    """No window holds more than burst + rate * window + one request, whatever the mix.

    Grants are timed when the units may be used: when acquire() returns, when
    try_acquire() says yes, and at the end of reserve()'s wait.
    """
    clock = FakeClock()
    bucket = TokenBucketThrottler(rate, burst if burst is None else burst * rate, clock=clock)
    b = bucket.burst
    grants: list[tuple[float, float]] = []
    for kind, size, idle in ops:
        n = size * b
        if kind == "acquire":
            bucket.acquire(n)
            grants.append((clock.monotonic(), n))
        elif kind == "try":
            if bucket.try_acquire(n):
                grants.append((clock.monotonic(), n))
        elif kind == "reserve":
            wait = bucket.reserve(n)
            clock.advance(wait)
            grants.append((clock.monotonic(), n))
        else:
            clock.advance(idle * b / rate)
    grants.sort()
    biggest = max((n for _, n in grants), default=0.0)
    slack = 1e-9 * (1 + sum(n for _, n in grants))
    assert max_window_excess(grants, rate) <= b + biggest + slack
    # and overall: never more than the burst plus what the clock has earned
    total = sum(n for _, n in grants)
    assert total <= b + rate * clock.monotonic() + max(0.0, biggest - b) + slack


def test_no_drift_over_a_million_tiny_requests() -> None:
    """A million requests of a seventh of a unit lose no fractions.

    Demand always exceeds supply, so after the first full bucket the units granted
    must equal what the clock earned, to within one request.
    """
    clock = StepClock()
    rate = 1000 / 3
    n = 1 / 7
    bucket = TokenBucketThrottler(rate, burst=1, clock=clock)
    step = n / rate * 0.75  # ask a third more often than the rate allows
    granted = 0.0
    try_acquire = bucket.try_acquire
    for i in range(1_000_000):
        clock.t = i * step
        if try_acquire(n):
            granted += n
    earned = 1 + rate * clock.t
    assert earned - n - 1e-6 <= granted <= earned + 1e-6
    assert granted / earned == pytest.approx(1.0, rel=1e-6)


def test_no_drift_with_blocking_acquires(clock: FakeClock) -> None:
    """100,000 blocking acquires of 0.01 units at 3/s take exactly (total-burst)/rate."""
    bucket = TokenBucketThrottler(3, burst=1, clock=clock)
    for _ in range(100_000):
        bucket.acquire(0.01)
    assert clock.monotonic() == pytest.approx((1000 - 1) / 3, rel=1e-12)
    assert bucket.available == pytest.approx(0.0, abs=1e-9)


# -- blocking acquire on the fake clock -------------------------------------------------


def test_acquire_waits_exactly_through_the_clock(clock: FakeClock) -> None:
    """acquire() sleeps on the clock exactly the missing units' worth and says so."""
    bucket = TokenBucketThrottler(100, burst=100, clock=clock)
    assert bucket.acquire(100) == 0.0
    assert bucket.acquire(50) == 0.5
    assert bucket.acquire(25) == 0.25
    assert clock.monotonic() == 0.75
    assert clock.sleeps == [0.5, 0.25]


async def test_acquire_async_waits_exactly_through_the_clock(clock: FakeClock) -> None:
    """acquire_async() waits exactly the missing units' worth of fake time."""
    bucket = TokenBucketThrottler(100, burst=100, clock=clock)
    assert await bucket.acquire_async(100) == 0.0
    assert await bucket.acquire_async(50) == 0.5
    assert clock.monotonic() == 0.5


def test_timed_out_acquire_consumes_nothing(clock: FakeClock) -> None:
    """A wait longer than the timeout raises at once and takes nothing."""
    bucket = TokenBucketThrottler(10, burst=10, clock=clock)
    bucket.acquire(10)
    with pytest.raises(wg.ThrottleTimeout) as info:
        bucket.acquire(5, timeout=0.4)
    assert (info.value.requested, info.value.timeout, info.value.wait) == (5, 0.4, 0.5)
    assert isinstance(info.value, TimeoutError)
    assert clock.monotonic() == 0.0  # it did not sleep first
    assert bucket.available == 0
    assert bucket.acquire(5, timeout=0.5) == 0.5  # exactly in time is in time
    assert bucket.available == 0


async def test_timed_out_acquire_async_consumes_nothing(clock: FakeClock) -> None:
    """The same for acquire_async()."""
    bucket = TokenBucketThrottler(10, burst=10, clock=clock)
    await bucket.acquire_async(10)
    with pytest.raises(wg.ThrottleTimeout):
        await bucket.acquire_async(5, timeout=0.1)
    assert bucket.available == 0
    assert await bucket.acquire_async(5, timeout=1) == 0.5


def test_timeout_while_paused_is_immediate(clock: FakeClock) -> None:
    """At rate 0 a timed wait fails at once (the wait is infinite)."""
    bucket = TokenBucketThrottler(0, burst=5, clock=clock)
    assert bucket.try_acquire(5)  # a paused bucket still has what it holds
    with pytest.raises(wg.ThrottleTimeout) as info:
        bucket.acquire(1, timeout=10)
    assert info.value.wait == math.inf
    assert bucket.reserve(1) == math.inf
    assert bucket.available == -1


def test_zero_timeout_takes_what_is_there(clock: FakeClock) -> None:
    """timeout=0 succeeds only when the units are there now."""
    bucket = TokenBucketThrottler(10, burst=10, clock=clock)
    assert bucket.acquire(10, timeout=0) == 0.0
    with pytest.raises(wg.ThrottleTimeout):
        bucket.acquire(1, timeout=0)


# -- set_rate during a wait --------------------------------------------------------------


def test_rate_zero_wait_really_blocks_until_the_rate_is_raised(clock: FakeClock) -> None:
    """On a FakeClock a paused wait without timeout blocks on the condition."""
    bucket = TokenBucketThrottler(0, burst=5, clock=clock)
    bucket.acquire(5)
    thread, out = start(lambda: bucket.acquire(5))
    wait_until(lambda: bucket.waiting == 1)
    time.sleep(0.02)
    assert thread.is_alive()
    assert out == []
    assert clock.monotonic() == 0.0  # blocked, not spinning on fake time
    bucket.set_rate(10)
    thread.join(5)
    assert not thread.is_alive()
    assert out == [0.5]
    assert bucket.waiting == 0


async def test_rate_zero_async_wait_blocks_until_the_rate_is_raised(clock: FakeClock) -> None:
    """A paused async waiter waits for set_rate(), not for fake time."""
    bucket = TokenBucketThrottler(0, burst=5, clock=clock)
    await bucket.acquire_async(5)
    task = asyncio.ensure_future(bucket.acquire_async(5))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done()
    assert bucket.waiting == 1
    bucket.set_rate(10)
    assert await asyncio.wait_for(task, 5) == 0.5


async def test_set_rate_from_another_thread_wakes_an_async_waiter(clock: FakeClock) -> None:
    """set_rate() from a thread wakes a task waiting on an event loop."""
    bucket = TokenBucketThrottler(0, burst=5, clock=clock)
    await bucket.acquire_async(5)
    task = asyncio.ensure_future(bucket.acquire_async(5))
    while bucket.waiting == 0:
        await asyncio.sleep(0)
    threading.Thread(target=bucket.set_rate, args=("off",)).start()
    assert await asyncio.wait_for(task, 5) == 0.0


def test_raising_the_rate_mid_wait_serves_sooner() -> None:
    """Real clock, real thread: a 100 s wait ends as soon as the rate is raised."""
    bucket = TokenBucketThrottler(1, burst=100)
    bucket.acquire(100)
    thread, out = start(lambda: bucket.acquire(100))
    wait_until(lambda: bucket.waiting == 1)
    bucket.set_rate(1e6)
    thread.join(5)
    assert not thread.is_alive()
    assert isinstance(out[0], float)
    assert out[0] < 5


async def test_raising_the_rate_mid_wait_serves_sooner_async() -> None:
    """Real clock: a 100 s async wait ends as soon as the rate is raised."""
    bucket = TokenBucketThrottler(1, burst=100)
    await bucket.acquire_async(100)
    task = asyncio.ensure_future(bucket.acquire_async(100))
    while bucket.waiting == 0:
        await asyncio.sleep(0)
    bucket.set_rate(1e6)
    assert await asyncio.wait_for(task, 5) < 5


def test_pausing_mid_wait_holds_the_waiter_until_resumed() -> None:
    """Pausing mid-wait holds a real-clock waiter; raising the rate releases it."""
    bucket = TokenBucketThrottler(1000, burst=1)
    bucket.acquire(1)
    bucket.set_rate(0.001)  # a long wait
    thread, out = start(lambda: bucket.acquire(1))
    wait_until(lambda: bucket.waiting == 1)
    bucket.set_rate(0)
    time.sleep(0.02)
    assert thread.is_alive()
    bucket.set_rate(1e6)
    thread.join(5)
    assert not thread.is_alive()
    assert out
    assert isinstance(out[0], float)


def test_lowering_the_rate_mid_wait_times_out_and_consumes_nothing() -> None:
    """A lowered rate that makes a waiter miss its deadline raises and gives the units back."""
    clock = GateClock()
    bucket = TokenBucketThrottler(10, burst=10, clock=clock)
    bucket.acquire(10)
    thread, out = start(lambda: bucket.acquire(10, timeout=3))  # needs 1 s
    wait_until(lambda: bucket.waiting == 1)
    assert bucket.available == -10
    clock.advance(0.5)
    bucket.set_rate(1)  # now 5 s more: past the deadline
    thread.join(5)
    assert isinstance(out[0], wg.ThrottleTimeout)
    assert out[0].requested == 10
    assert out[0].wait == pytest.approx(5.5)
    assert bucket.available == pytest.approx(5.0)  # the 10 units went back
    assert bucket.waiting == 0


def test_a_timed_out_waiter_gives_its_place_to_those_behind() -> None:
    """Places behind a timed-out waiter move up; nobody behind it is delayed."""
    clock = GateClock()
    bucket = TokenBucketThrottler(10, burst=10, clock=clock)
    bucket.acquire(10)
    a, a_out = start(lambda: bucket.acquire(10, timeout=3))  # place 10, 1 s
    wait_until(lambda: bucket.waiting == 1)
    b, b_out = start(lambda: bucket.acquire(10))  # place 20, 2 s
    wait_until(lambda: bucket.waiting == 2)
    bucket.set_rate(2)  # A needs 5 s: times out; B now needs 5 s, not 10
    a.join(5)
    assert isinstance(a_out[0], wg.ThrottleTimeout)
    assert bucket.available == -10  # A's 10 units are back; B holds 10
    clock.advance(4)
    assert not bucket.try_acquire(1)  # B comes first: no jumping the queue
    clock.advance(1)
    bucket.set_rate(2)  # wake B to look at the clock
    b.join(5)
    assert b_out == [5.0]
    assert bucket.available == pytest.approx(0.0)


def test_a_timed_out_waiter_gives_no_credit_to_those_ahead() -> None:
    """A waiter behind that times out does not serve the one ahead early."""
    clock = GateClock()
    bucket = TokenBucketThrottler(10, burst=10, clock=clock)
    bucket.acquire(10)
    a, a_out = start(lambda: bucket.acquire(10))  # place 10, 1 s
    wait_until(lambda: bucket.waiting == 1)
    b, b_out = start(lambda: bucket.acquire(10, timeout=2.5))  # place 20
    wait_until(lambda: bucket.waiting == 2)
    bucket.set_rate(5)  # B needs 4 s: times out; A still needs 2 s
    b.join(5)
    assert isinstance(b_out[0], wg.ThrottleTimeout)
    assert a.is_alive()
    clock.advance(1.9)
    bucket.set_rate(5)
    time.sleep(0.02)
    assert a.is_alive()  # not served early with B's units
    clock.advance(0.1)
    bucket.set_rate(5)
    a.join(5)
    assert a_out == [pytest.approx(2.0)]


async def test_cancelled_async_acquire_gives_its_units_back(clock: FakeClock) -> None:
    """Cancelling a waiting task gives its units back and moves the next one up."""
    bucket = TokenBucketThrottler(0, burst=5, clock=clock)
    await bucket.acquire_async(5)
    first = asyncio.ensure_future(bucket.acquire_async(5))
    second = asyncio.ensure_future(bucket.acquire_async(3))
    while bucket.waiting < 2:
        await asyncio.sleep(0)
    assert bucket.available == -8
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert bucket.available == -3
    assert bucket.waiting == 1
    bucket.set_rate(10)
    assert await asyncio.wait_for(second, 5) == pytest.approx(0.3)  # 3 units, not 8
    assert bucket.waiting == 0


async def test_cancelled_async_acquire_on_the_real_clock_gives_its_units_back() -> None:
    """The same on the real clock."""
    bucket = TokenBucketThrottler(1, burst=1)
    await bucket.acquire_async(1)
    task = asyncio.ensure_future(bucket.acquire_async(50))
    while bucket.waiting == 0:
        await asyncio.sleep(0)
    assert bucket.available < -49
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert -1 < bucket.available <= 1


# -- FIFO ----------------------------------------------------------------------------------


def test_try_acquire_does_not_jump_the_queue() -> None:
    """Units a waiter is waiting for are not available to try_acquire or reserve."""
    clock = GateClock()
    bucket = TokenBucketThrottler(100, burst=100, clock=clock)
    bucket.acquire(100)
    thread, out = start(lambda: bucket.acquire(100))  # a big one, needs 1 s
    wait_until(lambda: bucket.waiting == 1)
    clock.advance(0.5)
    assert not bucket.try_acquire(1)  # 50 units are there, but they are the big one's
    assert bucket.reserve(1) == pytest.approx(0.51)  # queued behind it
    clock.advance(0.5)
    bucket.set_rate(100)
    thread.join(5)
    assert out == [1.0]


async def test_a_big_request_is_not_starved_by_small_ones(clock: FakeClock) -> None:
    """Small requests placed after a big one are served after it."""
    bucket = TokenBucketThrottler(100, burst=10, clock=clock)
    log: list[str] = []
    stop = False

    async def small(i: int) -> None:
        while not stop:
            await bucket.acquire_async(1)
            log.append(f"small{i}")

    async def big() -> None:
        await asyncio.sleep(0)
        log.append("placed")
        await bucket.acquire_async(50)
        log.append("big")

    smalls = [asyncio.ensure_future(small(i)) for i in range(8)]
    await asyncio.wait_for(big(), 5)
    stop = True
    await asyncio.gather(*smalls)
    between = log[log.index("placed") + 1 : log.index("big")]
    assert len(between) <= 2 * 8  # only those already queued (and one round of wake-ups)


def test_places_follow_the_order_of_requests(clock: FakeClock) -> None:
    """A request over the burst waits for a full bucket; the next one for its debt."""
    bucket = TokenBucketThrottler(10, burst=10, clock=clock)
    bucket.acquire(10)
    assert bucket.reserve(20) == 1.0  # over the burst: waits for a full bucket
    assert bucket.reserve(1) == pytest.approx(2.1)  # then the 20's debt, then its own


# -- unlimited --------------------------------------------------------------------------


async def test_unlimited_lets_everything_through(clock: FakeClock) -> None:
    """math.inf, 'off' and 'unlimited' grant everything at once, for every method."""
    for rate in (math.inf, "off", "unlimited"):
        bucket = TokenBucketThrottler(rate, clock=clock)
        assert bucket.rate == math.inf
        assert bucket.burst == math.inf
        assert bucket.available == math.inf
        assert bucket.try_acquire(1e300)
        assert bucket.acquire(1e300, timeout=0) == 0.0
        assert await bucket.acquire_async(1e300) == 0.0
        assert bucket.reserve(1e300) == 0.0
    assert clock.sleeps == []


def test_switching_between_unlimited_and_finite(clock: FakeClock) -> None:
    """Leaving unlimited starts a full bucket at the new rate; entering it lets all through."""
    bucket = TokenBucketThrottler(math.inf, clock=clock)
    bucket.acquire(10**9)
    bucket.set_rate(10)  # starts full at the new rate's burst
    assert bucket.burst == 2
    assert bucket.available == 2
    assert bucket.try_acquire(2)
    assert not bucket.try_acquire(1)
    assert bucket.acquire(1) == 0.1
    bucket.set_rate("off")
    assert bucket.try_acquire(10**12)
    assert bucket.available == math.inf
    bucket.set_rate(100)
    assert bucket.available == 20
    assert bucket.try_acquire(20)
    assert not bucket.try_acquire(1)


def test_going_unlimited_releases_waiters() -> None:
    """set_rate('off') releases every blocked thread."""
    bucket = TokenBucketThrottler(0.001, burst=1)
    bucket.acquire(1)
    threads = [start(lambda: bucket.acquire(5)) for _ in range(4)]
    wait_until(lambda: bucket.waiting == 4)
    bucket.set_rate(math.inf)
    for thread, out in threads:
        thread.join(5)
        assert isinstance(out[0], float)
    assert bucket.waiting == 0
    bucket.set_rate(10)
    assert bucket.available == 1  # full again


# -- real threads, asyncio, both --------------------------------------------------------


def _check_timeline(
    grants: list[tuple[float, float]], t0: float, rate: float, burst: float
) -> None:
    """Units granted by each recorded time never exceed burst + rate * elapsed.

    (Plus the debt of one request larger than the burst.) Each grant is recorded
    after acquire() returned, so never before the bucket granted it: the check is
    sound for a timeline of real threads.
    """
    grants.sort()
    debt = max(0.0, max(n for _, n in grants) - burst)
    total = 0.0
    for t, n in grants:
        total += n
        assert total <= burst + debt + rate * (t - t0) + 1e-6 * total, (t - t0, total)


def test_32_real_threads_never_over_grant() -> None:
    """32 threads on the real clock: the grant timeline never exceeds burst + rate * t."""
    rate, burst = 40_000.0, 400.0
    bucket = TokenBucketThrottler(rate, burst=burst)
    t0 = time.monotonic()
    grants: list[tuple[float, float]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(32)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        for _ in range(25):
            n = rng.randint(1, 60)
            bucket.acquire(n)
            t = time.monotonic()
            with lock:
                grants.append((t, n))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(grants) == 32 * 25
    _check_timeline(grants, t0, rate, burst)
    total = sum(n for _, n in grants)
    assert bucket.available <= burst + rate * (time.monotonic() - t0) - total + 1e-6
    assert bucket.waiting == 0


def test_32_threads_on_a_fake_clock_never_over_grant(clock: FakeClock) -> None:
    """32 threads sleeping on one FakeClock, with debt: no over-grant."""
    rate, burst = 1000.0, 50.0
    bucket = TokenBucketThrottler(rate, burst=burst, clock=clock)
    grants: list[tuple[float, float]] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(40):
            n = rng.choice([1, 7, 30, 120])  # 120 > burst: debt
            bucket.acquire(n)
            with lock:
                grants.append((clock.monotonic(), n))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(grants) == 32 * 40
    _check_timeline(grants, 0.0, rate, burst)
    total = sum(n for _, n in grants)
    # the bucket's own account: never more than what the clock earned, less all taken
    assert bucket.available <= min(burst, burst + rate * clock.monotonic() - total) + 1e-6


def test_try_acquire_from_threads_admits_exactly_the_burst(clock: FakeClock) -> None:
    """A bucket that does not refill admits exactly its content, however many race."""
    bucket = TokenBucketThrottler(0, burst=1000, clock=clock)
    admitted = [0] * 8
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        barrier.wait()
        for _ in range(500):
            if bucket.try_acquire(1):
                admitted[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sum(admitted) == 1000


async def test_sync_and_async_callers_share_one_bucket() -> None:
    """Threads and tasks on the real clock share one bucket without over-grant."""
    rate, burst = 20_000.0, 200.0
    bucket = TokenBucketThrottler(rate, burst=burst)
    t0 = time.monotonic()
    grants: list[tuple[float, float]] = []
    lock = threading.Lock()

    def record(n: float) -> None:
        t = time.monotonic()
        with lock:
            grants.append((t, n))

    def thread_worker() -> None:
        for _ in range(40):
            bucket.acquire(25)
            record(25)

    async def task_worker() -> None:
        for _ in range(40):
            await bucket.acquire_async(25)
            record(25)

    threads = [threading.Thread(target=thread_worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    await asyncio.wait_for(asyncio.gather(*(task_worker() for _ in range(4))), 20)
    for thread in threads:
        await asyncio.to_thread(thread.join, 20)
    assert len(grants) == 8 * 40
    _check_timeline(grants, t0, rate, burst)
    assert bucket.waiting == 0


async def test_sync_and_async_on_a_fake_clock(clock: FakeClock) -> None:
    """Threads and tasks on one FakeClock: the units add up exactly."""
    bucket = TokenBucketThrottler(100, burst=10, clock=clock)

    def thread_worker() -> None:
        for _ in range(50):
            bucket.acquire(2)

    async def task_worker() -> None:
        for _ in range(50):
            await bucket.acquire_async(2)

    threads = [threading.Thread(target=thread_worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    await asyncio.wait_for(asyncio.gather(*(task_worker() for _ in range(3))), 20)
    for thread in threads:
        await asyncio.to_thread(thread.join, 20)
    total = 6 * 50 * 2
    assert total <= 10 + 100 * clock.monotonic() + 1e-9
    assert bucket.available <= min(10, 10 + 100 * clock.monotonic() - total) + 1e-9


# -- a reference model -----------------------------------------------------------------

RATES = [Fraction(0), Fraction(1), Fraction(2), Fraction(4), Fraction(64), Fraction(1024), None]
"""Powers of two (and 0, and None for unlimited): float arithmetic on them is exact."""


class Model:
    """The bucket's semantics in exact arithmetic.

    Credit grows linearly from an anchor and is capped at ``consumed + burst``; a
    request of n takes place ``consumed + min(n, burst)`` and is served when the
    credit reaches it.
    """

    def __init__(self, rate: Fraction | None, burst: Fraction) -> None:
        self.rate = rate
        self.burst = burst
        self.now = Fraction(0)
        self.consumed = Fraction(0)
        self.c0 = burst
        self.t0 = Fraction(0)

    def credit(self) -> Fraction:
        assert self.rate is not None
        c = self.c0 + self.rate * (self.now - self.t0)
        cap = self.consumed + self.burst
        if c >= cap:
            self.c0, self.t0 = cap, self.now
            return cap
        return c

    def available(self) -> Fraction | None:
        return None if self.rate is None else self.credit() - self.consumed

    def try_acquire(self, n: Fraction) -> bool:
        if self.rate is None:
            return True
        if self.credit() - self.consumed >= min(n, self.burst):
            self.consumed += n
            return True
        return False

    def wait_for(self, n: Fraction) -> Fraction | None:
        """Seconds until n could be served (None: never, while paused)."""
        assert self.rate is not None
        short = self.consumed + min(n, self.burst) - self.credit()
        if short <= 0:
            return Fraction(0)
        return None if self.rate == 0 else short / self.rate

    def set_rate(self, rate: Fraction | None) -> None:
        if self.rate is None:
            self.c0 = self.consumed + self.burst
        else:
            self.c0 = min(self.credit(), self.consumed + self.burst)
        self.t0 = self.now
        self.rate = rate


def as_float(x: Fraction | None) -> float:
    return math.inf if x is None else float(x)


sizes = st.integers(0, 2400).map(lambda k: Fraction(k, 4))


class BucketMachine(RuleBasedStateMachine):
    """try_acquire / reserve / acquire / advance / set_rate against the exact model."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.bucket: TokenBucketThrottler | None = None
        self.model: Model | None = None

    @initialize(rate=st.sampled_from(RATES), burst=st.sampled_from([1, 3, 10, 64, 256]))
    def create(self, rate: Fraction | None, burst: int) -> None:
        self.bucket = TokenBucketThrottler(as_float(rate), burst=burst, clock=self.clock)
        self.model = Model(rate, Fraction(burst))

    @rule(k=st.integers(0, 512))
    def advance(self, k: int) -> None:
        assert self.model is not None
        self.clock.advance(k / 64)
        self.model.now += Fraction(k, 64)

    @rule(n=sizes)
    def try_acquire(self, n: Fraction) -> None:
        assert self.bucket is not None
        assert self.model is not None
        assert self.bucket.try_acquire(float(n)) == self.model.try_acquire(n)

    @rule(n=sizes)
    def reserve(self, n: Fraction) -> None:
        assert self.bucket is not None
        assert self.model is not None
        got = self.bucket.reserve(float(n))
        if self.model.rate is None:
            assert got == 0.0
            return
        expected = self.model.wait_for(n)
        self.model.consumed += n
        assert got == as_float(expected)

    @rule(n=sizes, timeout=st.integers(0, 64 * 20).map(lambda k: Fraction(k, 64)))
    def acquire(self, n: Fraction, timeout: Fraction) -> None:
        assert self.bucket is not None
        assert self.model is not None
        model = self.model
        if model.rate is None:
            assert self.bucket.acquire(float(n), timeout=float(timeout)) == 0.0
            return
        expected = model.wait_for(n)
        if expected is None or expected > timeout:
            with pytest.raises(wg.ThrottleTimeout):
                self.bucket.acquire(float(n), timeout=float(timeout))
            return
        assert self.bucket.acquire(float(n), timeout=float(timeout)) == float(expected)
        model.consumed += n
        model.now += expected

    @rule(rate=st.sampled_from(RATES))
    def set_rate(self, rate: Fraction | None) -> None:
        assert self.bucket is not None
        assert self.model is not None
        self.bucket.set_rate(as_float(rate))
        self.model.set_rate(rate)

    @invariant()
    def agrees(self) -> None:
        if self.bucket is None or self.model is None:
            return
        assert self.clock.monotonic() == float(self.model.now)
        assert self.bucket.rate == as_float(self.model.rate)
        assert self.bucket.available == as_float(self.model.available())
        assert self.bucket.waiting == 0


BucketMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40)
test_bucket_against_reference_model = BucketMachine.TestCase


def test_unlimited_with_a_given_burst(clock: FakeClock) -> None:
    """A given burst is kept for when the rate becomes finite again."""
    bucket = TokenBucketThrottler(0, burst=1, clock=clock)
    bucket.set_rate("off")
    assert bucket.burst == math.inf
    assert all(bucket.try_acquire(1) for _ in range(10))
    assert bucket.try_acquire(1e300)
    bucket.set_rate(10)
    assert bucket.burst == 1
    assert bucket.available == 1


class SlowAsyncClock(FakeClock):
    """A clock whose asleep() takes real time, like a host's own clock might."""

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.advance(seconds)


async def test_set_rate_wakes_an_async_waiter_on_any_clock() -> None:
    """Even when the clock's own asleep() cannot be interrupted, set_rate() wakes."""
    clock = SlowAsyncClock()
    bucket = TokenBucketThrottler(1, burst=100, clock=clock)
    await bucket.acquire_async(100)
    task = asyncio.ensure_future(bucket.acquire_async(100))  # 100 s of its sleep
    while bucket.waiting == 0:
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    bucket.set_rate("off")
    assert await asyncio.wait_for(task, 5) == 0.0
