"""Clocks and the testing helpers: SystemClock, FakeClock, clock_wait, clock_asleep,
RecordingSink and ScriptedSource."""

from __future__ import annotations

import asyncio
import doctest
import math
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wedguard as wg
from wedguard import clock as clock_module
from wedguard import testing as testing_module
from wedguard.clock import SystemClock, clock_asleep, clock_wait
from wedguard.testing import FakeClock, RecordingSink, ScriptedSource

START = datetime(2026, 1, 5, tzinfo=timezone.utc)


def test_doctests() -> None:
    for module in (clock_module, testing_module):
        result = doctest.testmod(module)
        assert result.failed == 0
        assert result.attempted > 0


# -- SystemClock ------------------------------------------------------------------------


def test_system_clock_is_a_clock() -> None:
    clock = wg.SystemClock()
    assert isinstance(clock, wg.Clock)
    assert repr(clock) == "SystemClock()"
    a = clock.monotonic()
    b = clock.monotonic()
    assert b >= a
    now = clock.now()
    assert now.tzinfo is not None
    assert now.utcoffset() == timedelta(0)
    assert abs((now - datetime.now(timezone.utc)).total_seconds()) < 60
    clock.sleep(0)


def test_system_clock_wait_times_out_and_wakes() -> None:
    clock = wg.SystemClock()
    cond = threading.Condition()
    with cond:
        assert clock.wait(cond, 0) is False
    woken: list[bool] = []

    def waiter() -> None:
        with cond:
            woken.append(clock.wait(cond, 10))

    thread = threading.Thread(target=waiter)
    with cond:
        thread.start()
    for _ in range(500):  # until the waiter sits in wait(), then notify
        with cond:
            if cond._waiters:  # type: ignore[attr-defined]
                cond.notify_all()
                break
        time.sleep(0.002)
    thread.join(5)
    assert woken == [True]


async def test_system_clock_asleep() -> None:
    await wg.SystemClock().sleep_async(0)


# -- FakeClock --------------------------------------------------------------------------


def test_fake_clock_starts_where_told() -> None:
    clock = FakeClock()
    assert clock.monotonic() == 0.0
    assert clock.now() == START
    assert clock.now().weekday() == 0  # a Monday
    assert isinstance(clock, wg.Clock)
    other = FakeClock(datetime(2026, 6, 1, 12, tzinfo=timezone.utc), monotonic=100)
    assert other.monotonic() == 100.0
    assert other.now() == datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
    assert repr(other) == "FakeClock(now=2026-06-01T12:00:00+00:00, monotonic=100)"


def test_fake_clock_rejects_a_naive_start() -> None:
    with pytest.raises(wg.ConfigError) as info:
        FakeClock(datetime(2026, 1, 1))
    assert info.value.field == "start"


def test_advance_moves_both_clocks(clock: FakeClock) -> None:
    clock.advance(90)
    clock.advance(0)
    assert clock.monotonic() == 90
    assert clock.now() == START + timedelta(seconds=90)
    assert clock.sleeps == []


@pytest.mark.parametrize("seconds", [-1, -1e-9, math.nan])
def test_advance_and_sleep_reject_negatives(clock: FakeClock, seconds: float) -> None:
    with pytest.raises(wg.ConfigError) as info:
        clock.advance(seconds)
    assert info.value.field == "seconds"
    with pytest.raises(wg.ConfigError, match=r"^seconds: "):
        clock.sleep(seconds)
    assert clock.monotonic() == 0.0


def test_set_moves_to_an_instant(clock: FakeClock) -> None:
    later = START + timedelta(hours=5)
    clock.set(later)
    assert clock.now() == later
    assert clock.monotonic() == 5 * 3600
    clock.set(later)  # the same instant is fine
    # another time zone, same instant rules
    clock.set(datetime(2026, 1, 5, 7, tzinfo=timezone(timedelta(hours=1))))
    assert clock.monotonic() == 6 * 3600


def test_set_rejects_the_past_and_naive(clock: FakeClock) -> None:
    clock.advance(60)
    with pytest.raises(wg.ConfigError) as info:
        clock.set(START)
    assert info.value.field == "when"
    with pytest.raises(wg.ConfigError, match=r"^when: "):
        clock.set(datetime(2026, 2, 1))
    assert clock.monotonic() == 60


@given(steps=st.lists(st.floats(0, 1e6), max_size=30))
def test_fake_time_only_moves_forward(steps: list[float]) -> None:
    clock = FakeClock()
    last = clock.monotonic()
    for i, step in enumerate(steps):
        (clock.sleep if i % 2 else clock.advance)(step)
        assert clock.monotonic() >= last
        last = clock.monotonic()
    assert clock.monotonic() == pytest.approx(math.fsum(steps), rel=1e-9)


def test_sleep_advances_at_once_and_records(clock: FakeClock) -> None:
    t = time.monotonic()
    clock.sleep(3600)
    clock.sleep(0.5)
    assert time.monotonic() - t < 30  # an hour of fake time did not pass for real
    assert clock.monotonic() == 3600.5
    assert clock.sleeps == [3600, 0.5]


def test_sleep_from_several_threads(clock: FakeClock) -> None:
    """Eight threads sleeping an hour each: all return at once, time adds up."""
    barrier = threading.Barrier(8)

    def sleeper() -> None:
        barrier.wait()
        for _ in range(10):
            clock.sleep(360)

    threads = [threading.Thread(target=sleeper) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    assert len(clock.sleeps) == 80
    assert clock.monotonic() == pytest.approx(8 * 3600)


async def test_asleep_from_several_tasks(clock: FakeClock) -> None:
    async def sleeper(seconds: float) -> float:
        await clock.sleep_async(seconds)
        return clock.monotonic()

    results = await asyncio.wait_for(asyncio.gather(*(sleeper(600) for _ in range(6))), 5)
    assert clock.monotonic() == 3600
    assert sorted(results) == results
    assert results[0] >= 600


async def test_asleep_yields_to_the_loop(clock: FakeClock) -> None:
    ran: list[int] = []

    async def other() -> None:
        ran.append(1)

    task = asyncio.ensure_future(other())
    await clock.sleep_async(0)
    assert ran == [1]
    await task


def test_fake_wait_with_timeout_advances_and_reports_timeout(clock: FakeClock) -> None:
    cond = threading.Condition()
    with cond:
        assert clock.wait(cond, 2.5) is False
    assert clock.monotonic() == 2.5


def test_fake_wait_without_timeout_blocks_until_notified(clock: FakeClock) -> None:
    cond = threading.Condition()
    out: list[bool] = []

    def waiter() -> None:
        with cond:
            out.append(clock.wait(cond, None))

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    time.sleep(0.02)
    assert thread.is_alive()
    assert clock.monotonic() == 0.0
    with cond:
        cond.notify_all()
    thread.join(5)
    assert out == [True]


# -- clock_wait and clock_asleep on a clock with only the three protocol methods ---------


class MinimalClock:
    """Only monotonic/now/sleep, recording whether the lock was free while sleeping."""

    def __init__(self, lock: Any) -> None:
        self.t = 0.0
        self.lock = lock
        self.lock_free_while_sleeping: list[bool] = []

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return START + timedelta(seconds=self.t)

    def sleep(self, seconds: float) -> None:
        self.lock_free_while_sleeping.append(not self.lock.locked())
        self.t += seconds


def test_clock_wait_falls_back_to_sleep_with_the_lock_released() -> None:
    lock = threading.Lock()
    cond = threading.Condition(lock)
    clock = MinimalClock(lock)
    assert isinstance(clock, wg.Clock)
    with cond:
        assert clock_wait(clock, cond, 1.5) is False
        assert lock.locked()  # held again on return
    assert clock.t == 1.5
    assert clock.lock_free_while_sleeping == [True]


def test_clock_wait_without_timeout_waits_for_a_notification() -> None:
    lock = threading.Lock()
    cond = threading.Condition(lock)
    clock = MinimalClock(lock)
    out: list[bool] = []

    def waiter() -> None:
        with cond:
            out.append(clock_wait(clock, cond, None))

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    time.sleep(0.02)
    assert thread.is_alive()
    with cond:
        cond.notify_all()
    thread.join(5)
    assert out == [True]


def test_clock_wait_uses_the_clocks_own_wait(clock: FakeClock) -> None:
    cond = threading.Condition()
    with cond:
        assert clock_wait(clock, cond, 4.0) is False
    assert clock.monotonic() == 4.0


async def test_clock_asleep_uses_the_clocks_own_asleep(clock: FakeClock) -> None:
    await clock_asleep(clock, 30)
    assert clock.monotonic() == 30


async def test_clock_asleep_falls_back_to_asyncio_sleep() -> None:
    clock = MinimalClock(threading.Lock())
    await clock_asleep(clock, 0)
    assert clock.t == 0.0  # asyncio slept, the clock was not asked to


# -- RecordingSink and ScriptedSource ----------------------------------------------------


class Ping:
    def __init__(self, kind: str, i: int) -> None:
        self.kind = kind
        self.i = i

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "i": self.i}


def test_recording_sink_keeps_everything_in_order(sink: RecordingSink) -> None:
    assert isinstance(sink, wg.Sink)
    events = [Ping("a", 0), Ping("b", 1), Ping("a", 2)]
    for event in events:
        sink.emit(event)
    assert sink.events == events
    assert [e.to_dict()["i"] for e in sink.of_kind("a")] == [0, 2]
    assert sink.of_kind("zzz") == []
    sink.clear()
    assert sink.events == []


def test_recording_sink_from_threads(sink: RecordingSink) -> None:
    def emit(k: int) -> None:
        for i in range(500):
            sink.emit(Ping(f"t{k}", i))

    threads = [threading.Thread(target=emit, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(sink.events) == 4000
    for k in range(8):
        assert [e.to_dict()["i"] for e in sink.of_kind(f"t{k}")] == list(range(500))


def test_scripted_source_plays_back_then_repeats() -> None:
    src = ScriptedSource([{"cpu.percent": 10.0}, {"cpu.percent": 90.0}])
    assert isinstance(src, wg.Source)
    assert [src.sample()["cpu.percent"] for _ in range(4)] == [10.0, 90.0, 90.0, 90.0]
    assert src.calls == 4


def test_scripted_source_hands_out_copies() -> None:
    script = [{"cpu.percent": 10.0}]
    src = ScriptedSource(script)
    sample = src.sample()
    sample["cpu.percent"] = 99.0  # type: ignore[index]
    assert src.sample() == {"cpu.percent": 10.0}
    assert script == [{"cpu.percent": 10.0}]


def test_scripted_source_from_a_callable() -> None:
    src = ScriptedSource(lambda i: {"api.latency_s": 0.1 * i})
    assert [src.sample()["api.latency_s"] for _ in range(3)] == pytest.approx([0.0, 0.1, 0.2])
    assert src.calls == 3


def test_scripted_source_needs_a_sample() -> None:
    with pytest.raises(wg.ConfigError) as info:
        ScriptedSource([])
    assert info.value.field == "script"


def test_scripted_source_counts_calls_from_threads() -> None:
    src = ScriptedSource(lambda i: {"i": float(i)})
    seen: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(200):
            value = src.sample()["i"]
            with lock:
                seen.append(value)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(seen) == [float(i) for i in range(800)]
    assert src.calls == 800


def test_system_clock_waits_past_the_platform_limit_without_overflow() -> None:
    """A wait until a window that never ends (year 9999) is longer than the platform can
    wait; it must still wait (and wake on notify) rather than raise OverflowError."""
    clock = SystemClock()
    cond = threading.Condition()
    far = (datetime.max.replace(tzinfo=timezone.utc) - datetime.now(timezone.utc)).total_seconds()
    assert far > threading.TIMEOUT_MAX

    def notify_soon() -> None:
        time.sleep(0.05)
        with cond:
            cond.notify_all()

    waker = threading.Thread(target=notify_soon)
    with cond:
        waker.start()
        assert clock.wait(cond, far) is True
    waker.join()


async def test_clock_await_is_woken_by_the_future_on_any_clock() -> None:
    """A clock without asleep() sleeps in real time, but a completed future ends the wait
    at once; on FakeClock the timeout passes in fake time; math.inf waits for the future."""
    from wedguard.clock import clock_await

    class PlainClock:
        monotonic = staticmethod(time.monotonic)
        sleep = staticmethod(time.sleep)

        def now(self) -> datetime:
            return datetime.now(timezone.utc)

    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    loop.call_later(0.01, fut.set_result, None)
    t0 = time.monotonic()
    await clock_await(PlainClock(), fut, 30.0)
    assert fut.done()
    assert time.monotonic() - t0 < 5.0

    fake = FakeClock()
    pending: asyncio.Future[None] = loop.create_future()
    await clock_await(fake, pending, 2.5)
    assert not pending.done()
    assert fake.monotonic() == 2.5

    later: asyncio.Future[None] = loop.create_future()
    loop.call_soon(later.set_result, None)
    await clock_await(fake, later, math.inf)
    assert later.done()
    assert fake.monotonic() == 2.5
