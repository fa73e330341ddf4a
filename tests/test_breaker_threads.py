"""The breaker under real threads and concurrent tasks.

No lock is held while the protected function runs (callers run side by side), and the
half-open trial limit is exact however many threads arrive at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Callable

import pytest

import wedguard as wg
from wedguard.testing import FakeClock

THREADS = 64
WAIT = 10.0  # seconds; only reached if something is broken


class Boom(Exception):
    pass


def run_threads(n: int, target: Callable[[], None]) -> None:
    errors: list[BaseException] = []

    def runner() -> None:
        try:
            target()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=runner) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


def half_open(clock: FakeClock, limit: int) -> wg.CircuitBreaker:
    b = wg.CircuitBreaker("h", clock=clock, recovery_timeout=1, half_open_max_calls=limit)
    b.trip()
    clock.advance(1)
    return b


@pytest.mark.parametrize("limit", [1, 3])
def test_allow_admits_exactly_the_trial_limit(clock: FakeClock, limit: int) -> None:
    b = half_open(clock, limit)
    barrier = threading.Barrier(THREADS)
    answers: list[bool] = []
    lock = threading.Lock()

    def caller() -> None:
        barrier.wait(WAIT)
        answer = b.allow()
        with lock:
            answers.append(answer)

    run_threads(THREADS, caller)
    assert answers.count(True) == limit
    assert b.record.trials == limit
    assert b.state is wg.BreakerState.HALF_OPEN


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_guarded_calls_never_exceed_the_trial_limit(clock: FakeClock, limit: int) -> None:
    """64 threads call a guarded function on a half-open breaker at once; the trials
    hold until every thread has been admitted or refused."""
    b = half_open(clock, limit)
    cond = threading.Condition()
    inside = 0
    most_inside = 0
    admitted = 0
    refused = 0
    barrier = threading.Barrier(THREADS)

    @b
    def trial() -> None:
        nonlocal inside, most_inside, admitted
        with cond:
            inside += 1
            admitted += 1
            most_inside = max(most_inside, inside)
            cond.notify_all()
            assert cond.wait_for(lambda: admitted + refused == THREADS, WAIT)
            inside -= 1

    def caller() -> None:
        nonlocal refused
        barrier.wait(WAIT)
        try:
            trial()
        except wg.CircuitOpenError:
            with cond:
                refused += 1
                cond.notify_all()

    run_threads(THREADS, caller)
    assert admitted == limit
    assert most_inside == limit
    assert refused == THREADS - limit
    assert b.state is wg.BreakerState.CLOSED  # the trials succeeded


def _two_inside(guarded_call: Callable[[Callable[[], None]], None]) -> None:
    barrier = threading.Barrier(2)

    def body() -> None:
        # both callers must be inside at the same time, or this raises
        barrier.wait(WAIT)

    run_threads(2, lambda: guarded_call(body))


def test_no_lock_is_held_while_a_decorated_call_runs(clock: FakeClock) -> None:
    b = wg.CircuitBreaker(clock=clock)
    _two_inside(lambda body: b(body)())


def test_no_lock_is_held_while_call_runs(clock: FakeClock) -> None:
    b = wg.CircuitBreaker(clock=clock)
    _two_inside(b.call)


def test_no_lock_is_held_inside_with(clock: FakeClock) -> None:
    b = wg.CircuitBreaker(clock=clock)

    def through_with(body: Callable[[], None]) -> None:
        with b:
            body()

    _two_inside(through_with)


def test_no_lock_is_held_while_failures_are_counted_or_trials_run(clock: FakeClock) -> None:
    """Also on the slow paths: with failures counted, and during two half-open trials."""
    b = wg.CircuitBreaker(clock=clock, failure_threshold=5)
    b.record_failure()
    _two_inside(b.call)
    b = half_open(clock, 2)
    _two_inside(b.call)


async def test_async_callers_run_concurrently(clock: FakeClock) -> None:
    b = wg.CircuitBreaker(clock=clock)
    both = asyncio.Event()
    arrived = 0

    @b
    async def body() -> None:
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            both.set()
        await asyncio.wait_for(both.wait(), WAIT)

    await asyncio.gather(body(), body())
    assert arrived == 2


async def test_async_context_managers_in_tasks_settle_their_own_calls(clock: FakeClock) -> None:
    """Interleaved `async with` blocks in two tasks each settle their own call: a call
    admitted while closed that fails late does not decide the other task's trial."""
    b = wg.CircuitBreaker(clock=clock, recovery_timeout=1)
    finish_old = asyncio.Event()
    finish_trial = asyncio.Event()
    trial_entered = asyncio.Event()

    async def old_call() -> None:
        async with b:  # admitted while CLOSED
            await finish_old.wait()
            raise Boom

    async def trial_call() -> None:
        async with b:  # admitted as the half-open trial
            trial_entered.set()
            await finish_trial.wait()

    old = asyncio.create_task(old_call())
    await asyncio.sleep(0)
    b.trip()
    clock.advance(1)
    trial = asyncio.create_task(trial_call())
    await trial_entered.wait()
    assert b.record.trials == 1
    finish_old.set()
    with pytest.raises(Boom):
        await old
    assert b.state is wg.BreakerState.HALF_OPEN  # the stale failure did not count
    assert b.record.trials == 1  # and the trial's place is still taken
    finish_trial.set()
    await trial
    assert b.state is wg.BreakerState.CLOSED


def test_threads_using_with_settle_their_own_calls(clock: FakeClock) -> None:
    """The same with threads: each thread's `with` block settles its own call."""
    b = wg.CircuitBreaker(clock=clock, recovery_timeout=1)
    old_inside = threading.Event()
    finish_old = threading.Event()
    errors: list[BaseException] = []

    def old_call() -> None:
        try:
            with b:
                old_inside.set()
                finish_old.wait(WAIT)
                raise Boom
        except Boom as exc:
            errors.append(exc)

    thread = threading.Thread(target=old_call)
    thread.start()
    assert old_inside.wait(WAIT)
    b.trip()
    clock.advance(1)
    with b:  # the trial, in this thread
        finish_old.set()
        thread.join(WAIT)
        assert len(errors) == 1
        assert b.state is wg.BreakerState.HALF_OPEN
    assert b.state is wg.BreakerState.CLOSED


def test_concurrent_failures_open_once(clock: FakeClock) -> None:
    b = wg.CircuitBreaker(clock=clock, failure_threshold=3)
    events: list[wg.BreakerEvent] = []
    b.add_listener(events.append)
    barrier = threading.Barrier(THREADS)

    @b
    def failing() -> None:
        raise Boom

    def caller() -> None:
        barrier.wait(WAIT)
        for _ in range(5):
            with contextlib.suppress(Boom, wg.CircuitOpenError):
                failing()

    run_threads(THREADS, caller)
    assert b.state is wg.BreakerState.OPEN
    assert [(e.old, e.new) for e in events] == [(wg.BreakerState.CLOSED, wg.BreakerState.OPEN)]


def test_listener_events_arrive_in_order_under_threads(clock: FakeClock) -> None:
    b = wg.CircuitBreaker(clock=clock, failure_threshold=1, recovery_timeout=0)
    events: list[wg.BreakerEvent] = []
    b.add_listener(events.append)
    barrier = threading.Barrier(8)

    def caller() -> None:
        barrier.wait(WAIT)
        for i in range(200):
            with contextlib.suppress(Boom, wg.CircuitOpenError):
                b.call(ok) if i % 3 else b.call(fail)

    run_threads(8, caller)
    for before, after in itertools.pairwise(events):
        assert before.new is after.old  # one continuous story
    assert events


def fail() -> None:
    raise Boom


def ok() -> None:
    pass
