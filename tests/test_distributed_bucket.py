"""RedisTokenBucket against a real redis-server: the throttler's semantics, shared."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from conftest_redis import RedisServer, key, own_redis_server, redis_server
from wedguard import ConfigError, ThrottleTimeout, TokenBucketThrottler
from wedguard.interfaces import Throttler
from wedguard.testing import FakeClock, RecordingSink

pytest.importorskip("redis")

from wedguard.distributed import RedisLink, RedisTokenBucket

__all__ = ["key", "own_redis_server", "redis_server"]  # fixtures used below


@pytest.fixture
def client(redis_server: RedisServer) -> Any:
    c = redis_server.client()
    yield c
    c.close()


def test_it_is_a_throttler(client: Any, key: str) -> None:
    bucket = RedisTokenBucket(client, key, "1MB/s")
    assert isinstance(bucket, Throttler)
    assert bucket.rate == 1_000_000
    assert bucket.burst == 200_000  # 0.2 s of the rate by default


def test_full_bucket_then_empty(client: Any, key: str) -> None:
    bucket = RedisTokenBucket(client, key, 10, burst=200)
    assert bucket.try_acquire(150)
    assert not bucket.try_acquire(150)  # only ~50 left of the 200 burst
    assert 0 < bucket.available < 60


def test_state_is_shared_between_clients(redis_server: RedisServer, key: str) -> None:
    """Two processes' worth of clients draw on one budget."""
    a = RedisTokenBucket(redis_server.client(), key, 1, burst=100)
    b = RedisTokenBucket(redis_server.client(), key, 1, burst=100)
    assert a.try_acquire(80)
    assert not b.try_acquire(80)
    assert b.try_acquire(15)
    assert b.available < 6


def test_reserve_says_how_long_to_wait(client: Any, key: str) -> None:
    bucket = RedisTokenBucket(client, key, 10, burst=10)
    assert bucket.reserve(10) == 0.0
    wait = bucket.reserve(5)
    assert 0.3 < wait <= 0.5  # 5 units at 10/s, less what refilled in between


def test_request_larger_than_burst_goes_into_debt(client: Any, key: str) -> None:
    bucket = RedisTokenBucket(client, key, 1, burst=10)
    assert bucket.try_acquire(50)  # served from a full bucket, never deadlocks
    assert bucket.available < -39
    assert not bucket.try_acquire(1)


def test_time_is_the_servers_not_the_clients(client: Any, key: str) -> None:
    """A client clock racing ahead earns no credit: the script reads TIME."""
    clock = FakeClock()
    bucket = RedisTokenBucket(client, key, 1, burst=1, clock=clock)
    assert bucket.try_acquire(1)
    clock.advance(3600)
    assert not bucket.try_acquire(1)
    assert bucket.available < 0.1


def test_set_rate_reaches_every_sharer(redis_server: RedisServer, key: str) -> None:
    a = RedisTokenBucket(redis_server.client(), key, 100, burst=10)
    b = RedisTokenBucket(redis_server.client(), key, 100, burst=10)
    assert b.try_acquire(10)
    a.set_rate(0)
    assert b.reserve(1) == math.inf  # paused for everyone
    assert b.rate == 0
    a.set_rate("off")
    assert b.try_acquire(10**12)
    assert b.available == math.inf
    assert b.rate == math.inf


def test_latest_configured_sharer_wins(redis_server: RedisServer, key: str) -> None:
    a = RedisTokenBucket(redis_server.client(), key, 100)
    assert a.try_acquire(1)
    b = RedisTokenBucket(redis_server.client(), key, 400)
    assert b.try_acquire(1)  # b's first contact writes its rate
    assert a.available > 0  # a learns the new rate from its next reply
    assert a.rate == 400
    assert a.burst == 80
    assert a.fallback.rate == pytest.approx(40)  # 0.1 of the new global rate


def test_acquire_waits_for_its_turn(client: Any, key: str) -> None:
    bucket = RedisTokenBucket(client, key, 200, burst=100)
    assert bucket.acquire(100) == 0.0
    waited = bucket.acquire(50)  # 0.25 s at 200/s, less what refilled in between
    assert 0.1 < waited < 1.0


def test_acquire_timeout_consumes_nothing(client: Any, key: str) -> None:
    bucket = RedisTokenBucket(client, key, 10, burst=10)
    assert bucket.try_acquire(10)
    with pytest.raises(ThrottleTimeout) as info:
        bucket.acquire(10, timeout=0.1)
    assert info.value.wait > 0.5
    assert bucket.available > -0.5  # the place was not kept


def test_fifo_try_acquire_does_not_jump_the_queue(client: Any, key: str) -> None:
    bucket = RedisTokenBucket(client, key, 10, burst=100)
    assert bucket.try_acquire(100)
    assert bucket.reserve(50) > 4  # someone waits for 50
    time.sleep(0.05)  # some credit comes in, but it is promised
    assert not bucket.try_acquire(1)


def test_set_rate_wakes_a_paused_waiter(client: Any, key: str) -> None:
    bucket = RedisTokenBucket(client, key, 0, burst=10, recheck=5.0)
    assert bucket.try_acquire(10)
    result: list[float] = []
    worker = threading.Thread(target=lambda: result.append(bucket.acquire(5)), daemon=True)
    worker.start()
    deadline = time.monotonic() + 2
    while bucket.waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    bucket.set_rate(1_000_000)
    worker.join(3)
    assert result
    assert result[0] < 1.0  # woken at once, not after the 5 s recheck


def test_remote_rate_change_reaches_a_waiter(redis_server: RedisServer, key: str) -> None:
    waiter = RedisTokenBucket(redis_server.client(), key, 0, burst=10, recheck=0.05)
    other = RedisTokenBucket(redis_server.client(), key, 0, burst=10)
    assert waiter.try_acquire(10)
    result: list[float] = []
    worker = threading.Thread(target=lambda: result.append(waiter.acquire(5)), daemon=True)
    worker.start()
    time.sleep(0.1)
    other.set_rate(1_000_000)
    worker.join(3)
    assert result
    assert result[0] < 1.0


async def test_acquire_async(client: Any, key: str) -> None:
    bucket = RedisTokenBucket(client, key, 200, burst=100)
    assert await bucket.acquire_async(100) == 0.0
    waited = await bucket.acquire_async(50)
    assert 0.1 < waited < 1.0
    with pytest.raises(ThrottleTimeout):
        await bucket.acquire_async(1000, timeout=0.01)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"key": ""}, "key"),
        ({"rate": "ten parsecs"}, "rate"),
        ({"rate": -1}, "rate"),
        ({"burst": 0}, "burst"),
        ({"burst": math.inf}, "burst"),
        ({"fallback_share": 0}, "fallback_share"),
        ({"fallback_share": 1.5}, "fallback_share"),
        ({"recheck": 0}, "recheck"),
        ({"timeout": 0}, "timeout"),
        ({"probe_interval": -1}, "probe_interval"),
    ],
)
def test_bad_input_names_the_field(client: Any, kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"client": client, "key": "k", "rate": 10}
    args.update(kwargs)
    with pytest.raises(ConfigError) as info:
        RedisTokenBucket(**args)
    assert info.value.field == field
    assert field in str(info.value)


def test_bad_client_and_n() -> None:
    with pytest.raises(ConfigError, match="client"):
        RedisTokenBucket(None, "k", 10)
    with pytest.raises(ConfigError, match="url"):
        RedisTokenBucket("not a url", "k", 10)
    bucket = RedisTokenBucket("redis://127.0.0.1:1/0", "k", 10)
    for bad in (-1, True, False, "5", None, math.nan, math.inf):
        with pytest.raises(ConfigError) as info:
            bucket.try_acquire(bad)  # type: ignore[arg-type]
        assert info.value.field == "n"
    with pytest.raises(ConfigError, match="timeout"):
        bucket.acquire(1, timeout=-1)


# Amounts in 1/64 units: the two buckets then compute exactly, so they must agree to
# the bit; rounding at the boundary is covered by the explicit test above.
UNITS = st.integers(0, 2000 * 64).map(lambda k: k / 64)


class AgainstTheLocalBucket(RuleBasedStateMachine):
    """At rate 0 (or unlimited) time does not matter, so the Redis bucket must agree
    exactly with the local TokenBucketThrottler, step by step."""

    server: RedisServer
    counter = 0

    @initialize(burst=st.sampled_from([1.0, 10.0, 64.0, 1000.0]))
    def start(self, burst: float) -> None:
        type(self).counter += 1
        self.client = self.server.client()
        name = f"model:{type(self).counter}"
        self.remote = RedisTokenBucket(self.client, name, 0, burst=burst)
        self.local = TokenBucketThrottler(0, burst=burst, clock=FakeClock())

    @rule(n=UNITS)
    def try_acquire(self, n: float) -> None:
        assert self.remote.try_acquire(n) == self.local.try_acquire(n)

    @rule(n=UNITS)
    def reserve(self, n: float) -> None:
        assert self.remote.reserve(n) == self.local.reserve(n)

    @rule(rate=st.sampled_from([0.0, math.inf]))
    def set_rate(self, rate: float) -> None:
        self.remote.set_rate(rate)
        self.local.set_rate(rate)

    @invariant()
    def same_available(self) -> None:
        if hasattr(self, "remote"):
            assert self.remote.available == pytest.approx(self.local.available, abs=1e-6)

    def teardown(self) -> None:
        if hasattr(self, "client"):
            self.client.close()


def test_agrees_with_the_local_bucket(redis_server: RedisServer) -> None:
    AgainstTheLocalBucket.server = redis_server
    run = AgainstTheLocalBucket.TestCase
    run.settings = settings(max_examples=30, stateful_step_count=15, deadline=None)
    run().runTest()


def test_a_full_bucket_after_unlimited_is_full_despite_rounding(client: Any) -> None:
    """Leaving unlimited refills the bucket; the cumulative counters' rounding error
    must not turn a full bucket into a refusal (found by the state machine above)."""
    remote = RedisTokenBucket(client, "rounding", 0, burst=1.0)
    local = TokenBucketThrottler(0, burst=1.0, clock=FakeClock())
    for bucket in (remote, local):
        bucket.reserve(0.8413)
        bucket.set_rate(math.inf)
        bucket.set_rate(0)
    assert remote.try_acquire(1.0) is local.try_acquire(1.0) is True


# -- faults: a real redis-server stopped and started again during the run ---------------


def test_falls_back_within_a_second_and_returns(own_redis_server: RedisServer) -> None:
    sink = RecordingSink()
    bucket = RedisTokenBucket(
        own_redis_server.url, "budget", 1000, fallback_share=0.5, probe_interval=0.2, sinks=[sink]
    )
    assert bucket.try_acquire(200)
    assert bucket.online
    own_redis_server.stop()

    t0 = time.monotonic()
    first = bucket.try_acquire(10)  # the fallback bucket (500/s, burst 100) answers
    assert time.monotonic() - t0 < 1.0
    assert first
    assert not bucket.online
    for _ in range(20):  # many calls while down: one alert only, never an exception
        bucket.try_acquire(1)
        bucket.reserve(0)
    assert bucket.available <= 100
    bucket.reserve(1000)  # the fallback bucket is now 2 s in debt
    t0 = time.monotonic()
    with pytest.raises(ThrottleTimeout):
        bucket.acquire(1, timeout=0.2)  # never blocks past the caller's timeout
    assert time.monotonic() - t0 < 0.5
    alerts = sink.of_kind("alert")
    assert len(alerts) == 1
    assert alerts[0].firing  # type: ignore[attr-defined]

    own_redis_server.start()
    deadline = time.monotonic() + 3
    while not bucket.online and time.monotonic() < deadline:
        bucket.try_acquire(1)
        time.sleep(0.05)
    assert bucket.online
    # Redis lost its state with the restart: the bucket is created again, full.
    assert bucket.available > 100
    alerts = sink.of_kind("alert")
    assert len(alerts) == 2
    assert not alerts[1].firing  # type: ignore[attr-defined]


def test_unreachable_from_the_start_never_crashes() -> None:
    link = RedisLink("redis://127.0.0.1:1/0", timeout=0.1, probe_interval=60)
    bucket = RedisTokenBucket(link, "k", 100, fallback_share=0.2)
    assert bucket.try_acquire(4)  # fallback: 20/s, burst 4
    assert not bucket.try_acquire(4)
    assert bucket.acquire(0) == 0.0
    bucket.set_rate(1000)
    assert bucket.fallback.rate == 200
    assert not link.online
    assert "offline" in repr(bucket)


def test_slow_redis_counts_as_unreachable(own_redis_server: RedisServer) -> None:
    """A server that stops answering (SIGSTOP) costs a caller at most the timeout."""
    import os
    import signal

    bucket = RedisTokenBucket(own_redis_server.url, "budget", 1000, timeout=0.2)
    assert bucket.try_acquire(1)
    assert own_redis_server.proc is not None
    pid = own_redis_server.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        assert bucket.try_acquire(1)
        assert time.monotonic() - t0 < 0.6
        assert not bucket.online
    finally:
        os.kill(pid, signal.SIGCONT)


def test_concurrent_sharers_never_overdraw(redis_server: RedisServer, key: str) -> None:
    """Atomic scripts: 4 threads with their own clients race for 100 units, exactly
    100 are granted."""
    granted: list[int] = []

    def run() -> None:
        bucket = RedisTokenBucket(redis_server.client(), key, 0, burst=100)
        granted.append(sum(bucket.try_acquire(1) for _ in range(60)))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sum(granted) == 100


def evalsha_calls(client: Any) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def test_an_unlimited_budget_costs_no_round_trip_per_call(
    redis_server: RedisServer, key: str
) -> None:
    """While the shared rate is unlimited, calls skip Redis for `recheck` seconds;
    a limit set on another host still arrives within `recheck`."""
    observer = redis_server.client()
    bucket = RedisTokenBucket(redis_server.client(), key, "off", recheck=0.2)
    assert bucket.try_acquire(1)
    before = evalsha_calls(observer)
    for _ in range(100):
        assert bucket.try_acquire(10**9)
        assert bucket.acquire(10**9) == 0.0
        assert bucket.reserve(10**9) == 0.0
    assert evalsha_calls(observer) - before <= 1
    other = RedisTokenBucket(redis_server.client(), key, 10, burst=10)
    assert other.try_acquire(10)  # the limit is set (first contact) and the bucket drained
    time.sleep(0.25)
    assert not bucket.try_acquire(5)
    assert bucket.rate == 10


def test_a_rate_set_while_a_call_is_in_flight_is_not_undone_by_its_reply(
    redis_server: RedisServer, key: str
) -> None:
    """A live rate change that lands while a Redis call is in flight (another thread's
    chunk, a lease refresh) is kept: the reply, which read the old rate, does not put
    the old rate back, and the next call writes the new one for every sharer."""
    import redis

    class SetsRateMidCall(redis.Redis):  # type: ignore[misc]
        bucket: Any = None
        armed = False

        def execute_command(self, *args: Any, **kwargs: Any) -> Any:
            if self.armed:  # the call's arguments are built: the old rate goes out
                self.armed = False
                self.bucket._set_rate_local("2MB/s")  # as LeasedBucket.set_rate does
            return super().execute_command(*args, **kwargs)

    client = SetsRateMidCall(port=redis_server.port)
    admin = redis_server.client()
    try:
        bucket = RedisTokenBucket(client, key, "5MB/s")
        client.bucket = bucket
        assert bucket.try_acquire(1)  # the rate written once
        assert float(admin.hget(key, "rate")) == 5e6
        client.armed = True
        bucket.try_acquire(1)  # its reply says 5 MB/s
        assert bucket.rate == 2e6
        bucket.try_acquire(1)  # the next call writes it
        assert float(admin.hget(key, "rate")) == 2e6
        assert bucket.rate == 2e6
    finally:
        client.close()
        admin.close()
