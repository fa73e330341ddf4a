"""Fleet mode off the guard's lock: the shared budget leased in blocks, against a real
redis-server.

Each "host" is a Guard with a RedisCoordinator of its own (its own connection) on a
shared key prefix. The tests run on the real clock, a second or two each, and assert
bounds a user would check: no session waits behind Redis, a bounded number of round
trips whatever the chunk rate, one budget for all hosts, a fallback when Redis goes.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import wedguard as wg
from conftest_redis import RedisServer, key, own_redis_server, redis_server
from wedguard.testing import FakeClock

redis = pytest.importorskip("redis")

from wedguard.distributed import (  # noqa: E402 - after the importorskip
    LeasedBucket,
    RedisCoordinator,
    RedisTokenBucket,
)

__all__ = ["key", "own_redis_server", "redis_server"]  # fixtures used below


class Counting(redis.Redis):  # type: ignore[misc]
    """A client that counts the commands it sends (each is one round trip)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return super().execute_command(*args, **kwargs)


@pytest.fixture
def coords(redis_server: RedisServer, key: str) -> Iterator[Callable[..., RedisCoordinator]]:
    made: list[RedisCoordinator] = []

    def make(client: Any = None, **kw: Any) -> RedisCoordinator:
        kw.setdefault("prefix", key)
        coord = RedisCoordinator(redis_server.url if client is None else client, **kw)
        made.append(coord)
        return coord

    yield make
    for coord in made:
        coord.close()


def host(coord: RedisCoordinator, **kw: Any) -> wg.Guard:
    kw.setdefault("rate", "1MB/s")
    kw.setdefault("calendar", None)
    kw.setdefault("sources", [])
    kw.setdefault("sinks", [])
    kw.setdefault("max_concurrent", None)
    return wg.Guard(coordinator=coord, **kw)


def test_a_guard_in_fleet_mode_leases_its_shared_budget(
    coords: Callable[..., RedisCoordinator],
) -> None:
    guard = host(coords(), ops_rate=20)
    assert isinstance(guard._fleet_bytes, LeasedBucket)
    assert isinstance(guard._fleet_ops, LeasedBucket)
    assert isinstance(guard._fleet_bytes.bucket, RedisTokenBucket)
    assert "block=" in repr(guard._fleet_bytes)


def test_no_session_waits_behind_a_slow_redis(own_redis_server: RedisServer) -> None:
    """Redis paused (CLIENT PAUSE) while one session fetches a block: another session
    and decision() on the same host go on at once."""
    coord = RedisCoordinator(own_redis_server.url, prefix="slow", timeout=3.0)
    guard = host(coord, rate="100MB/s")
    admin: Any = own_redis_server.client()
    out: list[Any] = []
    try:
        with guard.session("big") as a, guard.session("small") as b:
            a.throttle(1000)
            b.throttle(1000)

            def big() -> None:
                t0 = time.monotonic()
                a.throttle(50_000_000)  # beyond the leased credit: a block from Redis
                out.append(time.monotonic() - t0)

            admin.execute_command("CLIENT", "PAUSE", "800", "ALL")
            t = threading.Thread(target=big, daemon=True)
            t.start()
            time.sleep(0.15)  # the big session is now in its Redis call
            t0 = time.monotonic()
            d = guard.decision()
            b.throttle(0)  # needs no fleet credit
            took = time.monotonic() - t0
            t.join(timeout=10)
    finally:
        coord.close()
    assert not d.paused
    assert took < 0.3, f"held {took:.2f} s behind the Redis call"
    assert out
    assert out[0] >= 0.5  # the big session did wait for the paused Redis


def test_round_trips_stay_bounded_at_a_high_chunk_rate(
    redis_server: RedisServer, key: str, coords: Callable[..., RedisCoordinator]
) -> None:
    client = Counting(port=redis_server.port, socket_timeout=0.5, socket_connect_timeout=0.5)
    guard = host(coords(client), rate="20MB/s")
    with guard.session() as s:
        s.throttle(1000)
        calls0, t0 = client.calls, time.monotonic()
        chunks = 0
        while time.monotonic() - t0 < 1.5:
            s.throttle(1000)
            chunks += 1
        elapsed = time.monotonic() - t0
        calls = client.calls - calls0
    assert chunks > 20 * elapsed * 10  # many more chunks than round trips...
    assert calls <= 10 * elapsed + 2, f"{calls} round trips in {elapsed:.2f} s"
    assert s.bytes >= 0.5 * 20e6 * elapsed  # ...and the budget is still used


def test_several_hosts_share_one_leased_budget(coords: Callable[..., RedisCoordinator]) -> None:
    """Four guards at 4 MB/s each on one prefix move 4 MB/s together, each its part."""
    guards = [host(coords(), rate="4MB/s") for _ in range(4)]
    moved: list[float] = [0.0] * 4
    start = threading.Barrier(4)

    def copy(i: int) -> None:
        with guards[i].session(f"h{i}") as s:
            start.wait()
            end = time.monotonic() + 2.0
            while time.monotonic() < end:
                s.throttle(20_000)
        moved[i] = s.bytes

    t0 = time.monotonic()
    threads = [threading.Thread(target=copy, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    elapsed = time.monotonic() - t0
    total = sum(moved)
    burst = 0.2 * 4e6  # the shared bucket starts full
    # each host may run ahead of its blocks by a chunk and hold a first block
    assert total <= 4e6 * elapsed + burst + 4 * (20_000 + 0.05 * 4e6)
    assert total >= 0.8 * 4e6 * 2.0
    assert min(moved) >= 0.3 * max(moved), moved


def test_a_rate_set_on_one_host_reaches_the_others(
    coords: Callable[..., RedisCoordinator], redis_server: RedisServer, key: str
) -> None:
    a = coords().lease("10MB/s")
    b = coords().lease("10MB/s")
    assert b.refresh(1000)
    a.set_rate("1MB/s")  # no round trip: written by the next refresh
    assert a.rate == 1e6
    client: Any = redis_server.client()
    assert float(client.hget(f"{key}:bucket:default", "rate")) == 10e6
    assert a.refresh()
    assert float(client.hget(f"{key}:bucket:default", "rate")) == 1e6
    deadline = time.monotonic() + 2
    while b.rate != 1e6 and time.monotonic() < deadline:
        b.reserve(100_000)
        b.refresh(100_000)
        time.sleep(0.05)
    assert b.rate == 1e6


def test_credit_goes_back_when_the_last_session_ends(
    coords: Callable[..., RedisCoordinator],
) -> None:
    coord = coords()
    guard = host(coord, rate="10MB/s")
    lease = guard._fleet_bytes
    with guard.session() as s:
        s.throttle(1000)
        assert lease.credit > 0  # a block is held
    assert lease.credit == pytest.approx(0, abs=1)
    # the shared bucket has its units back: about a full burst (2 MB) to take at once
    assert coord.bucket("10MB/s", name="guard").available >= 1.9e6


def test_redis_away_mid_lease_and_back(own_redis_server: RedisServer) -> None:
    """Redis killed while a host holds a lease: the copy goes on at the fallback
    budget; Redis back: leasing again, from the restarted (empty) Redis."""
    coord = RedisCoordinator(
        own_redis_server.url, prefix="away", fallback_share=0.5, timeout=0.1, probe_interval=0.1
    )
    guard = host(coord, rate="1MB/s")
    lease = guard._fleet_bytes
    progress: list[tuple[float, float]] = []
    stop = threading.Event()
    out: list[Any] = []

    def copy() -> None:
        try:
            with guard.session("copy") as s:
                while not stop.is_set():
                    s.throttle(10_000)
                    progress.append((time.monotonic(), s.bytes))
            out.append(s.bytes)
        except BaseException as exc:  # pragma: no cover - the test fails on it
            out.append(exc)

    t = threading.Thread(target=copy, daemon=True)
    t.start()
    try:
        time.sleep(0.4)
        assert lease.credit != 0  # mid-lease
        own_redis_server.stop()
        killed = time.monotonic()
        time.sleep(0.8)
        assert not lease.online
        restarted = time.monotonic()
        own_redis_server.start()
        trips = lease.round_trips
        deadline = time.monotonic() + 4
        while (not lease.online or lease.round_trips == trips) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lease.online
        assert lease.round_trips > trips
        time.sleep(0.3)
    finally:
        stop.set()
        t.join(timeout=5)
        coord.close()
    assert isinstance(out[0], float), out
    times = [p[0] for p in progress]
    assert max(b - a for a, b in itertools.pairwise(times)) < 1.0
    during = [p for p in progress if killed + 0.2 <= p[0] <= restarted]
    assert during, "no progress while Redis was away"
    moved = during[-1][1] - during[0][1]
    span = during[-1][0] - during[0][0]
    assert moved <= 0.5e6 * span + 0.1e6 + 2 * 10_000  # the fallback: 50 % of 1 MB/s
    assert own_redis_server.client().exists("away:bucket:guard")  # type: ignore[attr-defined]


def test_leased_bucket_bad_input(redis_server: RedisServer, key: str) -> None:
    with pytest.raises(wg.ConfigError) as info:
        LeasedBucket(object())  # type: ignore[arg-type]
    assert info.value.field == "bucket"
    bucket = RedisTokenBucket(redis_server.url, key, "1MB/s")
    with pytest.raises(wg.ConfigError) as info:
        LeasedBucket(bucket, period=0)
    assert info.value.field == "period"
    with pytest.raises(wg.ConfigError) as info:
        LeasedBucket(bucket, idle=-1)
    assert info.value.field == "idle"
    bucket.link.close()


class Watching(Counting):
    """A client that notes each command sent by a thread holding the guard's lock."""

    guard: wg.Guard | None = None
    under_lock = 0

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self.guard is not None and self.guard._cond._is_owned():  # type: ignore[attr-defined]
            self.under_lock += 1
        return super().execute_command(*args, **kwargs)


def test_no_redis_call_under_the_guards_lock(
    redis_server: RedisServer, key: str, coords: Callable[..., RedisCoordinator]
) -> None:
    """Chunks, decisions and a live rate change: Redis never hears from a thread that
    holds the guard's lock, and the new rate still reaches Redis."""
    client = Watching(port=redis_server.port, socket_timeout=0.5, socket_connect_timeout=0.5)
    guard = host(coords(client), rate="5MB/s")
    client.guard = guard
    admin: Any = redis_server.client()
    with guard.session() as s:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.5:
            s.throttle(10_000)
            guard.decision()
        guard.set_rate("2MB/s")  # the shared bucket's rate changes under the lock
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.3:
            s.throttle(10_000)
    assert client.calls > 0
    assert client.under_lock == 0
    assert float(admin.hget(f"{key}:bucket:guard", "rate")) == 2e6


async def test_async_sessions_take_leased_credit(
    redis_server: RedisServer, key: str, coords: Callable[..., RedisCoordinator]
) -> None:
    client = Counting(port=redis_server.port, socket_timeout=0.5, socket_connect_timeout=0.5)
    guard = host(coords(client), rate="20MB/s")
    async with guard.session() as s:
        await s.throttle_async(1000)
        calls0, t0 = client.calls, time.monotonic()
        for _ in range(5000):
            await s.throttle_async(1000)
        elapsed = time.monotonic() - t0
    assert s.bytes == 5001 * 1000
    assert client.calls - calls0 <= 10 * elapsed + 2


class LeaseAccount(RuleBasedStateMachine):
    """The lease's account against the shared bucket, step by step: whatever the
    takes, refreshes, rate changes and give-backs, Redis has counted exactly the
    units of the blocks the lease holds, and a refresh covers the caller."""

    server: RedisServer
    counter = 0

    @initialize(rate=st.sampled_from([1e5, 1e6, 1e7]))
    def start(self, rate: float) -> None:
        type(self).counter += 1
        self.client: Any = self.server.client()
        self.clock = FakeClock()
        self.key = f"lease-model:{type(self).counter}"
        bucket = RedisTokenBucket(self.server.url, self.key, rate, clock=self.clock)
        self.lease = LeasedBucket(bucket)
        self.taken = 0.0

    @rule(n=st.integers(0, 200_000), wait=st.booleans())
    def take(self, n: int, wait: bool) -> None:
        if wait:
            assert self.lease.reserve(n) >= 0
            self.taken += n
        elif self.lease.try_acquire(n):
            self.taken += n

    @rule(hint=st.integers(0, 200_000))
    def refresh(self, hint: int) -> None:
        if self.lease.refresh(hint) and self.lease.rate < math.inf:
            assert self.lease.credit >= hint - 1e-6

    @rule(seconds=st.floats(0, 2))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(rate=st.sampled_from([1e5, 1e6, 1e7]))
    def set_rate(self, rate: float) -> None:
        self.lease.set_rate(rate)
        assert self.lease.rate == rate

    @rule()
    def settle(self) -> None:
        self.lease.settle()
        assert self.lease.credit <= 1e-6

    @invariant()
    def redis_counts_the_blocks(self) -> None:
        if not hasattr(self, "lease"):
            return
        lease = self.lease
        consumed = self.client.hget(self.key, "consumed")
        held = lease._granted + lease._pending_units
        assert float(consumed or 0) == pytest.approx(held, abs=1e-3)
        assert lease._taken == pytest.approx(self.taken)

    def teardown(self) -> None:
        if hasattr(self, "lease"):
            self.lease.bucket.link.close()
            self.client.close()


def test_the_lease_account_matches_redis(redis_server: RedisServer) -> None:
    LeaseAccount.server = redis_server
    run = LeaseAccount.TestCase
    run.settings = settings(max_examples=25, stateful_step_count=15, deadline=None)
    run().runTest()
