"""RedisStopFlag and RedisCoordinator against a real redis-server."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest

from conftest_redis import RedisServer, key, own_redis_server, redis_server
from wedguard import ConfigError
from wedguard.testing import FakeClock, RecordingSink

pytest.importorskip("redis")

from wedguard.distributed import (
    RedisCoordinator,
    RedisLink,
    RedisSlots,
    RedisStopFlag,
    RedisTokenBucket,
)

__all__ = ["key", "own_redis_server", "redis_server"]  # fixtures used below


def test_stop_flag_is_seen_by_every_host(redis_server: RedisServer, key: str) -> None:
    here = RedisStopFlag(redis_server.client(), key, max_age=0)
    there = RedisStopFlag(redis_server.client(), key, max_age=0)
    assert not there.is_set()
    assert there.reason is None
    assert here.set("database failover")
    assert there.is_set()
    assert there.reason == "database failover"
    assert there.clear()
    assert not here.is_set()


def test_stop_flag_readings_are_cached_for_max_age(redis_server: RedisServer, key: str) -> None:
    clock = FakeClock()
    reader = RedisStopFlag(redis_server.client(), key, max_age=0.5, clock=clock)
    writer = RedisStopFlag(redis_server.client(), key)
    assert not reader.is_set()
    writer.set("now")
    assert not reader.is_set()  # the reading is younger than max_age
    clock.advance(0.5)
    assert reader.is_set()  # so a stop reaches every host within max_age


def test_stop_flag_keeps_its_last_reading_while_redis_is_down(
    own_redis_server: RedisServer,
) -> None:
    flag = RedisStopFlag(own_redis_server.url, "stop", max_age=0)
    assert flag.set("maintenance")
    own_redis_server.stop()
    assert flag.is_set()  # last reading
    assert flag.reason == "maintenance"
    assert not flag.clear()  # could not reach Redis
    assert flag.is_set()


def test_stop_flag_bad_input(redis_server: RedisServer) -> None:
    with pytest.raises(ConfigError, match="key"):
        RedisStopFlag(redis_server.client(), "")
    with pytest.raises(ConfigError, match="max_age"):
        RedisStopFlag(redis_server.client(), "k", max_age=-1)


def test_coordinator_bundles_everything_under_one_prefix(redis_server: RedisServer) -> None:
    client = redis_server.client()
    coord = RedisCoordinator(redis_server.url, prefix="fleet1", fallback_share=0.25)
    bucket = coord.bucket("1MB/s")
    assert isinstance(bucket, RedisTokenBucket)
    assert coord.bucket("1MB/s") is bucket
    assert bucket.key == "fleet1:bucket:default"
    assert bucket.fallback.rate == 250_000
    assert bucket.try_acquire(1000)
    slots = coord.slots(2)
    assert isinstance(slots, RedisSlots)
    assert coord.slots(2) is slots
    with slots:
        assert client.zcard("fleet1:slots:default:holders") == 1  # type: ignore[attr-defined]
    assert coord.stop("maintenance")
    assert client.exists("fleet1:stop")  # type: ignore[attr-defined]
    assert coord.stop_flag.is_set()
    assert coord.resume()
    assert not coord.stop_flag.refresh()
    assert bucket.link is slots.link is coord.stop_flag.link is coord.link
    coord.close()


def test_coordinator_alerts_once_for_all_its_parts(own_redis_server: RedisServer) -> None:
    sink = RecordingSink()
    coord = RedisCoordinator(own_redis_server.url, sinks=[sink], probe_interval=0.1)
    bucket = coord.bucket(1000)
    slots = coord.slots(2)
    assert bucket.try_acquire(1)
    own_redis_server.stop()
    assert bucket.try_acquire(1)
    assert slots.try_acquire()
    assert not coord.stop_flag.is_set()
    assert not coord.online
    assert len(sink.of_kind("alert")) == 1
    own_redis_server.start()
    deadline = time.monotonic() + 3
    while not coord.online and time.monotonic() < deadline:
        bucket.try_acquire(1)
        time.sleep(0.05)
    assert coord.online
    assert len(sink.of_kind("alert")) == 2
    slots.release()
    coord.close()


def test_coordinator_bad_input(redis_server: RedisServer) -> None:
    for kwargs, field in [
        ({"prefix": ""}, "prefix"),
        ({"fallback_share": 0}, "fallback_share"),
        ({"fallback_slots": -1}, "fallback_slots"),
        ({"timeout": -1}, "timeout"),
    ]:
        with pytest.raises(ConfigError) as info:
            RedisCoordinator(redis_server.url, **kwargs)  # type: ignore[arg-type]
        assert info.value.field == field
    with pytest.raises(ConfigError, match="rate"):
        RedisCoordinator(redis_server.url).bucket("fast")


def test_link_listener_errors_are_isolated() -> None:
    link = RedisLink("redis://127.0.0.1:1/0", timeout=0.1)
    seen: list[bool] = []

    def bad(online: bool, error: BaseException | None) -> None:
        raise RuntimeError("listener bug")

    link.add_listener(bad)
    link.add_listener(lambda online, error: seen.append(online))
    assert link.call(lambda c: c.ping(), lambda: "fallback") == "fallback"
    assert seen == [False]
    assert link.last_error is not None
    assert "offline" in repr(link)


def test_bounded_client_caps_timeouts_and_retries(redis_server: RedisServer) -> None:
    import redis

    from wedguard.distributed import bounded_client

    slow = redis.Redis(port=redis_server.port, socket_timeout=30)
    fast = bounded_client(slow, 0.2)
    kwargs = fast.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.2
    assert kwargs["socket_connect_timeout"] == 0.2
    assert fast.ping()
    other: Any = object()
    assert bounded_client(other, 0.2) is other
    pool = redis.BlockingConnectionPool(port=redis_server.port, max_connections=2, timeout=20)
    blocking = bounded_client(redis.Redis(connection_pool=pool), 0.2)
    assert isinstance(blocking.connection_pool, redis.BlockingConnectionPool)
    assert blocking.connection_pool.timeout == 0.2
    assert blocking.ping()


def test_import_wedguard_does_not_import_redis() -> None:
    code = (
        "import sys, wedguard; print('redis' in sys.modules, 'wedguard.distributed' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_clients_that_decode_responses_work_too(redis_server: RedisServer, key: str) -> None:
    import redis

    client = redis.Redis(port=redis_server.port, decode_responses=True, socket_timeout=1)
    bucket = RedisTokenBucket(client, key + ":bucket", 1, burst=10)
    assert bucket.try_acquire(10)
    assert not bucket.try_acquire(10)
    assert 0 < bucket.reserve(1) <= 1.0  # one unit at 1/s: at most a second to wait
    slots = RedisSlots(client, key + ":slots", 1)
    with slots:
        assert slots.in_use == 1
    flag = RedisStopFlag(client, key + ":stop", max_age=0)
    flag.set("why")
    assert flag.reason == "why"
    from wedguard import CircuitBreaker
    from wedguard.distributed import RedisBreakerStorage

    breaker = CircuitBreaker("d", storage=RedisBreakerStorage(client, key + ":b", max_age=0))
    breaker.trip("t")
    assert breaker.state.name == "OPEN"


def test_missing_server_skips_unless_required(monkeypatch: pytest.MonkeyPatch) -> None:
    import conftest_redis

    monkeypatch.setattr(conftest_redis, "REQUIRE", False)
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        conftest_redis._missing("redis-server is not installed")
    monkeypatch.setattr(conftest_redis, "REQUIRE", True)
    with pytest.raises(pytest.fail.Exception, match="WEDGUARD_REQUIRE_REDIS=1"):
        conftest_redis._missing("redis-server is not installed")


async def test_async_acquire_falls_back_while_offline() -> None:
    bucket = RedisTokenBucket("redis://127.0.0.1:1/0", "k", 100, burst=10, timeout=0.1)
    assert await bucket.acquire_async(10) == 0.0  # the fallback bucket: 10/s, burst 1
    assert not bucket.online


def test_shared_checks_say_what_was_expected(redis_server: RedisServer) -> None:
    """The share and seconds checks give the same field and expectation everywhere."""
    from wedguard.distributed import RedisBreakerStorage

    cases: list[tuple[Any, str, str]] = [
        (
            lambda: RedisCoordinator(redis_server.url, fallback_share=True),
            "fallback_share",
            "a share of the rate, 0 < share <= 1",
        ),
        (
            lambda: RedisTokenBucket(redis_server.url, "k", 10, fallback_share=1.01),
            "fallback_share",
            "a share of the rate, 0 < share <= 1",
        ),
        (
            lambda: RedisTokenBucket(redis_server.url, "k", 10, recheck=float("inf")),
            "recheck",
            "a finite number of seconds > 0",
        ),
        (
            lambda: RedisTokenBucket(redis_server.url, "k", 10, recheck=True),
            "recheck",
            "a finite number of seconds > 0",
        ),
        (
            lambda: RedisBreakerStorage(redis_server.url, "k", max_age=float("nan")),
            "max_age",
            "a finite number of seconds >= 0",
        ),
        (
            lambda: RedisBreakerStorage(redis_server.url, "k", max_age="1"),
            "max_age",
            "a finite number of seconds >= 0",
        ),
    ]
    for make, field, expected in cases:
        with pytest.raises(ConfigError) as info:
            make()
        assert (info.value.field, info.value.expected) == (field, expected)
    assert RedisCoordinator(redis_server.url, fallback_share=1).fallback_share == 1.0
    assert RedisTokenBucket(redis_server.url, "k", 10, fallback_share=1).fallback_share == 1.0
