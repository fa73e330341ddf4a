"""RedisBreakerStorage: one circuit breaker state for every host, by compare-and-set."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from conftest_redis import RedisServer, key, own_redis_server, redis_server
from wedguard import (
    BreakerRecord,
    BreakerState,
    BreakerStorage,
    CircuitBreaker,
    ConfigError,
    MemoryBreakerStorage,
)
from wedguard.testing import FakeClock

pytest.importorskip("redis")

from wedguard.distributed import RedisBreakerStorage, RedisCoordinator

__all__ = ["key", "own_redis_server", "redis_server"]  # fixtures used below


def storage(server: RedisServer, key: str, **kwargs: Any) -> RedisBreakerStorage:
    kwargs.setdefault("max_age", 0)
    return RedisBreakerStorage(server.client(), key, **kwargs)


def test_it_is_a_breaker_storage(redis_server: RedisServer, key: str) -> None:
    s = storage(redis_server, key)
    assert isinstance(s, BreakerStorage)
    assert s.load() == BreakerRecord()  # never written: closed, version 0


def test_compare_and_set_is_atomic_on_the_version(redis_server: RedisServer, key: str) -> None:
    a = storage(redis_server, key)
    b = storage(redis_server, key)
    first = BreakerRecord(state=BreakerState.CLOSED, version=1, failures=1, reason="one")
    assert a.compare_and_set(0, first)
    assert not b.compare_and_set(0, BreakerRecord(version=1, failures=7))  # lost the race
    seen = b.load()
    assert (seen.version, seen.failures, seen.reason) == (1, 1, "one")


def test_a_failed_compare_and_set_refreshes_a_cached_reading(
    redis_server: RedisServer, key: str
) -> None:
    cached = storage(redis_server, key, max_age=60)
    other = storage(redis_server, key)
    assert cached.load().version == 0
    assert other.compare_and_set(0, BreakerRecord(version=1, failures=2))
    assert cached.load().version == 0  # still the cached reading...
    assert not cached.compare_and_set(0, BreakerRecord(version=1))
    assert cached.load().version == 1  # ...refreshed by the failed compare-and-set


def test_breakers_on_two_hosts_open_together(redis_server: RedisServer, key: str) -> None:
    a = CircuitBreaker("upload", failure_threshold=2, storage=storage(redis_server, key))
    b = CircuitBreaker("upload", failure_threshold=2, storage=storage(redis_server, key))
    a.record_failure(TimeoutError("slow"))
    assert b.state is BreakerState.CLOSED
    b.record_failure(TimeoutError("slow"))  # the second failure, counted on another host
    assert a.state is BreakerState.OPEN
    assert not a.allow()
    assert "2 consecutive failures" in b.record.reason
    b.reset()
    assert a.state is BreakerState.CLOSED


class SkewedClock:
    """A host whose monotonic clock reads 1000 s ahead of another's."""

    def monotonic(self) -> float:
        return time.monotonic() + 1000.0

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def test_recovery_runs_on_the_servers_clock(redis_server: RedisServer, key: str) -> None:
    """Hosts with unrelated monotonic clocks agree on when the breaker may retry."""
    skewed = SkewedClock()
    a = CircuitBreaker(
        "db", recovery_timeout=0.3, clock=skewed, storage=storage(redis_server, key, clock=skewed)
    )
    b = CircuitBreaker("db", recovery_timeout=0.3, storage=storage(redis_server, key))
    a.trip("by hand")
    assert b.state is BreakerState.OPEN
    assert 0.1 < b.retry_after <= 0.3
    assert not b.allow()
    time.sleep(0.35)
    assert b.allow()  # the one trial call, taken on host b
    assert a.state is BreakerState.HALF_OPEN
    assert not a.allow()  # half_open_max_calls=1: the trial place is taken
    b.record_success()
    assert a.state is BreakerState.CLOSED


def test_coordinator_gives_breaker_storage(redis_server: RedisServer) -> None:
    coord = RedisCoordinator(redis_server.url, prefix="fleet-b")
    s = coord.breaker_storage("upload")
    assert coord.breaker_storage("upload") is s
    assert s.key == "fleet-b:breaker:upload"
    breaker = CircuitBreaker("upload", storage=s)
    breaker.trip("maintenance")
    assert redis_server.client().hget("fleet-b:breaker:upload", "state") == b"open"  # type: ignore[attr-defined]
    coord.close()


def test_works_locally_while_redis_is_down(own_redis_server: RedisServer) -> None:
    s = RedisBreakerStorage(own_redis_server.url, "b", max_age=0, probe_interval=0.1)
    breaker = CircuitBreaker("db", failure_threshold=2, storage=s)
    breaker.record_failure()
    own_redis_server.stop()
    t0 = time.monotonic()
    breaker.record_failure()  # never raises; counted on the local copy
    assert time.monotonic() - t0 < 1.0
    assert breaker.state is BreakerState.OPEN
    assert not s.link.online
    own_redis_server.start()  # an empty Redis: the shared record wins again
    time.sleep(0.15)
    assert breaker.state is BreakerState.CLOSED
    assert s.link.online


def test_bad_input(redis_server: RedisServer) -> None:
    with pytest.raises(ConfigError, match="key"):
        RedisBreakerStorage(redis_server.client(), "")
    with pytest.raises(ConfigError, match="max_age"):
        RedisBreakerStorage(redis_server.client(), "k", max_age=-1)


class SharedBreakerModel(RuleBasedStateMachine):
    """Two breakers sharing a Redis record behave as one local breaker."""

    server: RedisServer
    counter = 0

    @initialize(threshold=st.integers(1, 4))
    def start(self, threshold: int) -> None:
        type(self).counter += 1
        self.client = self.server.client()
        name = f"breaker-model:{type(self).counter}"
        clock = FakeClock()
        self.hosts = [
            CircuitBreaker(
                "x",
                failure_threshold=threshold,
                clock=clock,
                storage=RedisBreakerStorage(self.client, name, max_age=0, clock=clock),
            )
            for _ in range(2)
        ]
        self.model = CircuitBreaker(
            "x", failure_threshold=threshold, clock=clock, storage=MemoryBreakerStorage()
        )

    @rule(host=st.integers(0, 1))
    def failure(self, host: int) -> None:
        self.hosts[host].record_failure()
        self.model.record_failure()

    @rule(host=st.integers(0, 1))
    def success(self, host: int) -> None:
        self.hosts[host].record_success()
        self.model.record_success()

    @rule(host=st.integers(0, 1))
    def trip(self, host: int) -> None:
        self.hosts[host].trip("t")
        self.model.trip("t")

    @rule(host=st.integers(0, 1))
    def reset(self, host: int) -> None:
        self.hosts[host].reset()
        self.model.reset()

    @invariant()
    def same_state(self) -> None:
        if hasattr(self, "model"):
            expected = self.model.record
            for host in self.hosts:
                got = host.record
                assert (got.state, got.failures, got.generation) == (
                    expected.state,
                    expected.failures,
                    expected.generation,
                )

    def teardown(self) -> None:
        if hasattr(self, "client"):
            self.client.close()


def test_shared_breakers_agree_with_one_local_breaker(redis_server: RedisServer) -> None:
    SharedBreakerModel.server = redis_server
    run = SharedBreakerModel.TestCase
    run.settings = settings(max_examples=25, stateful_step_count=15, deadline=None)
    run().runTest()
