"""Guard(coordinator=RedisCoordinator(...)): many hosts, one budget, against a real redis-server.

Each "host" is a Guard with a RedisCoordinator of its own (its own connection) on a
shared key prefix, run in threads. The tests run on the real clock, a second or two
each, and never assert timings tighter than the budgets they check.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import wedguard as wg
from conftest_redis import RedisServer, key, own_redis_server, redis_server
from guard_helpers import T0, HalvingController, KeyAnalyzer, ListCalendar, at
from wedguard.errors import ThrottleTimeout
from wedguard.levels import Level
from wedguard.testing import FakeClock, RecordingSink, ScriptedSource

pytest.importorskip("redis")

import itertools

from wedguard.distributed import RedisCoordinator
from wedguard.distributed import SlotTimeout as RedisSlotTimeout

__all__ = ["key", "own_redis_server", "redis_server"]  # fixtures used below


@pytest.fixture
def coords(redis_server: RedisServer, key: str) -> Iterator[Callable[..., RedisCoordinator]]:
    """Make coordinators ("hosts") on one fresh prefix; all closed at the end."""
    made: list[RedisCoordinator] = []

    def make(**kw: Any) -> RedisCoordinator:
        kw.setdefault("prefix", key)
        coord = RedisCoordinator(redis_server.url, **kw)
        made.append(coord)
        return coord

    yield make
    for coord in made:
        coord.close()


def host(coord: RedisCoordinator, **kw: Any) -> wg.Guard:
    """A guard on the real clock with nothing but rate limits unless told."""
    kw.setdefault("rate", "1MB/s")
    kw.setdefault("calendar", None)
    kw.setdefault("sources", [])
    kw.setdefault("sinks", [])
    return wg.Guard(coordinator=coord, **kw)


def copy_for(guard: wg.Guard, seconds: float, chunk: int, out: list[Any], name: str) -> None:
    """Throttle chunks for ``seconds`` in one session; append bytes (or the error)."""
    try:
        with guard.session(name) as s:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                s.throttle(chunk)
        out.append(s.bytes)
    except BaseException as exc:
        out.append(exc)


def run_threads(*targets: Callable[[], None]) -> None:
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
        assert not t.is_alive()


# -- the budget ---------------------------------------------------------------------------


def test_two_hosts_share_one_byte_budget(coords: Callable[..., RedisCoordinator]) -> None:
    """Two guards at 1 MB/s each on one prefix move 1 MB/s together, not 2."""
    a, b = host(coords()), host(coords())
    out: list[Any] = []
    t0 = time.monotonic()
    run_threads(
        lambda: copy_for(a, 1.2, 20_000, out, "a"),
        lambda: copy_for(b, 1.2, 20_000, out, "b"),
    )
    elapsed = time.monotonic() - t0
    assert all(isinstance(x, float) for x in out), out
    total = sum(out)
    burst = 0.2 * 1e6  # the shared bucket's burst: 0.2 s of the rate
    assert total <= 1e6 * elapsed + burst + 2 * 20_000
    assert total >= 0.7e6 * 1.2  # and each host did get its turn
    assert min(out) > 0.15 * total


def test_the_shared_bucket_is_keyed_by_prefix_and_guard_name(
    coords: Callable[..., RedisCoordinator], redis_server: RedisServer, key: str
) -> None:
    client: Any = redis_server.client()
    guard = host(coords(), rate="2MB/s", ops_rate=50, name="photos")
    with guard.session() as s:
        s.throttle(1000, ops=1)
    assert float(client.hget(f"{key}:bucket:photos", "rate")) == 2e6
    assert float(client.hget(f"{key}:bucket:photos:ops", "rate")) == 50
    assert guard.name == "photos"
    assert guard.coordinator is not None


def test_the_ops_budget_is_shared_too(coords: Callable[..., RedisCoordinator]) -> None:
    """Two hosts at 20 ops/s each: 20 ops/s together (burst 4)."""
    a = host(coords(), rate="off", ops_rate=20)
    b = host(coords(), rate="off", ops_rate=20)
    counts: list[int] = []

    def ops(guard: wg.Guard) -> None:
        with guard.session() as s:
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                s.throttle(0, ops=1)
        counts.append(s.ops)

    t0 = time.monotonic()
    run_threads(lambda: ops(a), lambda: ops(b))
    elapsed = time.monotonic() - t0
    assert sum(counts) <= 20 * elapsed + 4 + 2


def test_local_limits_apply_on_top_of_the_shared_budget(
    coords: Callable[..., RedisCoordinator],
) -> None:
    """A session cap of 200 kB/s holds although the fleet allows 10 MB/s."""
    guard = host(coords(), rate="10MB/s")
    t0 = time.monotonic()
    with guard.session("capped", rate="200kB/s") as s:
        while time.monotonic() - t0 < 0.6:
            s.throttle(10_000)
    elapsed = time.monotonic() - t0
    assert s.bytes <= 200_000 * elapsed + 200_000 + 10_000


def test_the_controllers_rate_stays_local(
    coords: Callable[..., RedisCoordinator], redis_server: RedisServer, key: str
) -> None:
    """THROTTLE halves this host's rate; the fleet's shared rate is not touched."""
    client: Any = redis_server.client()
    clock = FakeClock()
    source = ScriptedSource([{"throttle": 1.0}])
    guard = host(
        coords(),
        rate="4MB/s",
        sources=[source],
        analyzer=KeyAnalyzer(),
        controller=HalvingController(),
        clock=clock,
    )
    with guard.session() as s:
        s.throttle(1000)
        d = guard.tick()
        s.throttle(1000)
    assert d.rate == 2e6
    assert float(client.hget(f"{key}:bucket:guard", "rate")) == 4e6


def test_the_calendars_cap_is_the_fleets_ceiling(
    coords: Callable[..., RedisCoordinator], redis_server: RedisServer, key: str
) -> None:
    """During a PEAK window capped at 1 MB/s all hosts together get 1 MB/s."""
    client: Any = redis_server.client()
    clock = FakeClock()
    cal = ListCalendar((T0, at(hours=1), Level.PEAK, 1e6))
    guard = host(coords(), rate="5MB/s", calendar=cal, clock=clock)
    with guard.session() as s:
        s.throttle(1000)
        assert float(client.hget(f"{key}:bucket:guard", "rate")) == 1e6
        clock.advance(3600)
        s.throttle(1000)
        assert float(client.hget(f"{key}:bucket:guard", "rate")) == 5e6


# -- slots ----------------------------------------------------------------------------------


def test_max_concurrent_holds_across_hosts(coords: Callable[..., RedisCoordinator]) -> None:
    """Two hosts, max_concurrent=2, four sessions: never more than 2 at once anywhere."""
    a = host(coords(), rate="off", max_concurrent=2)
    b = host(coords(), rate="off", max_concurrent=2)
    lock = threading.Lock()
    running = [0]
    peak = [0]
    done: list[str] = []

    def job(guard: wg.Guard, name: str) -> None:
        with guard.session(name):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.25)
            with lock:
                running[0] -= 1
        done.append(name)

    run_threads(
        lambda: job(a, "a1"), lambda: job(a, "a2"), lambda: job(b, "b1"), lambda: job(b, "b2")
    )
    assert sorted(done) == ["a1", "a2", "b1", "b2"]
    assert peak[0] == 2


def test_a_full_fleet_times_out_with_the_guards_slot_timeout(
    coords: Callable[..., RedisCoordinator], key: str
) -> None:
    a = host(coords(), rate="off", max_concurrent=1)
    b = host(coords(), rate="off", max_concurrent=1)
    with a.session("a"):
        t0 = time.monotonic()
        with pytest.raises(wg.SlotTimeout) as info, b.session("b", slot_timeout=0.2):
            pass
        assert time.monotonic() - t0 < 1.0
    assert info.value.session == "b"
    assert info.value.key == f"{key}:slots:guard"
    assert isinstance(info.value.__cause__, RedisSlotTimeout)
    assert b.active_sessions == 0
    with b.session("b again"):  # the slot a held is free again
        assert b.active_sessions == 1


def test_one_slot_timeout_type() -> None:
    """`except wedguard.SlotTimeout` catches the guard's and the shared slots' timeouts."""
    assert issubclass(RedisSlotTimeout, wg.SlotTimeout)
    assert issubclass(wg.SlotTimeout, ThrottleTimeout)
    assert issubclass(wg.SlotTimeout, TimeoutError)
    err = RedisSlotTimeout("fleet:slots:guard", 1.5, 2)
    assert (err.key, err.timeout, err.limit, err.session) == ("fleet:slots:guard", 1.5, 2, err.key)
    local = wg.SlotTimeout("photos", 2.0, 1)
    assert local.key is None
    assert "photos" in str(local)


async def test_async_sessions_take_a_shared_slot(coords: Callable[..., RedisCoordinator]) -> None:
    coord = coords()
    guard = host(coord, rate="1MB/s", max_concurrent=1)
    other = host(coords(), rate="1MB/s", max_concurrent=1)
    async with guard.session("async") as s:
        await s.throttle_async(1000)
        assert coord.slots(1, name="guard").in_use == 1
        with pytest.raises(wg.SlotTimeout):
            async with other.session("blocked", slot_timeout=0.1):
                pass
    assert coord.slots(1, name="guard").in_use == 0
    await asyncio.sleep(0)


# -- stop and breaker ----------------------------------------------------------------------


def test_a_fleet_stop_stops_every_host_within_a_second(
    coords: Callable[..., RedisCoordinator],
) -> None:
    ca, cb = coords(), coords()
    a, b = host(ca, rate="100MB/s"), host(cb, rate="100MB/s")
    out: list[Any] = []
    stopped_at: list[float] = []

    def loop(guard: wg.Guard, name: str) -> None:
        try:
            with guard.session(name) as s:
                while True:
                    s.throttle(1000)
                    time.sleep(0.001)
        except wg.EmergencyStop as exc:
            stopped_at.append(time.monotonic())
            out.append(exc)

    threads = [
        threading.Thread(target=loop, args=(a, "a"), daemon=True),
        threading.Thread(target=loop, args=(b, "b"), daemon=True),
    ]
    for t in threads:
        t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    assert ca.stop("database failover")
    for t in threads:
        t.join(timeout=3)
    assert len(out) == 2
    assert max(stopped_at) - t0 < 1.0
    assert all("database failover" in e.reason for e in out)
    assert a.stopped
    assert b.stopped
    # a guard.resume() does not lift the fleet's stop; the coordinator's does
    b.resume()
    with pytest.raises(wg.EmergencyStop), b.session("still stopped") as s:
        s.throttle(1)
    assert cb.resume()
    time.sleep(0.6)  # readings of the flag are at most 0.5 s old
    with b.session("again") as s:
        s.throttle(1)
    assert not b.stopped


def test_a_fleet_stop_ends_a_wait_for_a_shared_slot(
    coords: Callable[..., RedisCoordinator],
) -> None:
    ca, cb = coords(), coords()
    a, b = host(ca, rate="off", max_concurrent=1), host(cb, rate="off", max_concurrent=1)
    out: list[Any] = []

    def wait_for_slot() -> None:
        try:
            with b.session("waiting"):
                out.append("entered")
        except wg.EmergencyStop as exc:
            out.append(exc)

    with a.session("holder"):
        t = threading.Thread(target=wait_for_slot, daemon=True)
        t.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        ca.stop("maintenance")
        t.join(timeout=3)
        assert time.monotonic() - t0 < 1.0
    assert len(out) == 1
    assert isinstance(out[0], wg.EmergencyStop)
    assert cb.slots(1, name="guard").in_use == 0  # the waiter holds nothing


def test_the_default_breaker_is_shared(coords: Callable[..., RedisCoordinator]) -> None:
    """Three failures on one host open the breaker on the other."""
    a, b = host(coords(), rate="off"), host(coords(), rate="off")
    assert a.breaker is not None
    assert b.breaker is not None

    @a.protect
    def fail() -> None:
        raise OSError("upload failed")

    @b.protect
    def work() -> str:
        return "done"

    for _ in range(3):
        with pytest.raises(OSError):
            fail()
    time.sleep(0.3)  # the storage answers from a reading at most 0.25 s old
    with pytest.raises(wg.CircuitOpenError):
        work()


def test_guard_coordinator_bad_input(coords: Callable[..., RedisCoordinator]) -> None:
    with pytest.raises(wg.ConfigError) as info:
        wg.Guard(coordinator=object(), calendar=None, sources=[], sinks=[])
    assert info.value.field == "coordinator"
    with pytest.raises(wg.ConfigError) as info:
        host(coords(), name="")
    assert info.value.field == "name"


# -- faults ---------------------------------------------------------------------------------


def test_redis_lost_and_back_during_a_guarded_copy(own_redis_server: RedisServer) -> None:
    """Redis killed mid-copy: the copy goes on at the fallback budget within a second,
    one alert fires, nothing raises; Redis restarted: back on the shared budget."""
    sink = RecordingSink()
    coord = RedisCoordinator(
        own_redis_server.url, prefix="fleet", fallback_share=0.25, timeout=0.1, probe_interval=0.2
    )
    guard = host(coord, rate="2MB/s", sinks=[sink], max_concurrent=2)
    progress: list[tuple[float, float]] = []
    reasons: list[tuple[str, ...]] = []
    out: list[Any] = []
    stop = threading.Event()

    def copy() -> None:
        try:
            with guard.session("photos") as s:
                while not stop.is_set():
                    s.throttle(10_000)
                    progress.append((time.monotonic(), s.bytes))
            out.append(s.bytes)
        except BaseException as exc:  # pragma: no cover - the test fails on it
            out.append(exc)

    t = threading.Thread(target=copy, daemon=True)
    t.start()
    time.sleep(0.5)
    killed = time.monotonic()
    own_redis_server.stop()
    time.sleep(1.2)
    reasons.append(guard.decision().reasons)
    restarted = time.monotonic()
    own_redis_server.start()
    deadline = time.monotonic() + 4
    while not coord.online and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.4)
    stop.set()
    t.join(timeout=5)
    assert not t.is_alive()
    assert len(out) == 1
    assert isinstance(out[0], float), out
    assert coord.online

    # never blocked past the link's timeout: no gap of a second between chunks
    times = [p[0] for p in progress]
    assert max(b - a for a, b in itertools.pairwise(times)) < 1.0
    # on the fallback budget (25 % of 2 MB/s, burst 0.2 s of it) while Redis was away
    during = [p for p in progress if killed + 0.3 <= p[0] <= restarted]
    assert during, "the copy made no progress while Redis was away"
    moved = during[-1][1] - during[0][1]
    span = during[-1][0] - during[0][0]
    assert moved <= 0.5e6 * span + 0.1e6 + 2 * 10_000
    assert moved >= 0.25e6 * span
    assert any("fleet: Redis unreachable" in r for r in reasons[0])
    # one alert when it went away, one resolve when it came back
    alerts = [e for e in sink.of_kind("alert") if e.key == "wedguard/redis"]
    assert len(alerts) == 2
    assert alerts[0].resolved_at is None
    assert alerts[1].resolved_at is not None
    assert "fallback budget 500 kB/s" in alerts[0].summary
    # back on the shared bucket: the restarted (empty) Redis has it again
    assert own_redis_server.client().exists("fleet:bucket:guard")  # type: ignore[attr-defined]
    coord.close()


def test_redis_sigkilled_at_random_moments_never_fails_or_holds_the_copy(
    own_redis_server: RedisServer,
) -> None:
    """redis-server SIGKILLed at random points of a guarded copy (and of its own
    restart), five times: the copy never raises, never stalls for a second, and the
    guard is back on Redis after each restart."""
    rng = random.Random(20261206)
    coord = RedisCoordinator(
        own_redis_server.url, prefix="chaos", fallback_share=0.5, timeout=0.1, probe_interval=0.1
    )
    guard = host(coord, rate="2MB/s", max_concurrent=2)
    progress: list[float] = []
    out: list[Any] = []
    stop = threading.Event()

    def copy() -> None:
        try:
            with guard.session("photos") as s:
                while not stop.is_set():
                    s.throttle(rng.choice((1_000, 10_000, 50_000)))
                    progress.append(time.monotonic())
            out.append(s.bytes)
        except BaseException as exc:  # pragma: no cover - the test fails on it
            out.append(exc)

    t = threading.Thread(target=copy, daemon=True)
    t.start()
    try:
        for _ in range(5):
            time.sleep(rng.uniform(0.05, 0.6))  # a random point of the copy
            own_redis_server.stop()  # SIGKILL
            time.sleep(rng.uniform(0.05, 0.5))
            own_redis_server.start()
            deadline = time.monotonic() + 4
            while not coord.online and time.monotonic() < deadline:
                time.sleep(0.02)
            assert coord.online
            assert t.is_alive()
    finally:
        stop.set()
        t.join(timeout=5)
        coord.close()
    assert len(out) == 1
    assert isinstance(out[0], float), out
    assert max(b - a for a, b in itertools.pairwise(progress)) < 1.0


def test_a_guard_starts_while_redis_is_down(own_redis_server: RedisServer) -> None:
    """No Redis at all: sessions run on the fallback slots and budget, and alert."""
    own_redis_server.stop()
    sink = RecordingSink()
    coord = RedisCoordinator(own_redis_server.url, prefix="down", timeout=0.1, fallback_slots=1)
    guard = host(coord, rate="1MB/s", sinks=[sink], max_concurrent=2)
    t0 = time.monotonic()
    with guard.session("alone") as s:
        for _ in range(5):
            s.throttle(10_000)
    assert time.monotonic() - t0 < 1.0
    assert not coord.online
    assert [e.key for e in sink.of_kind("alert")] == ["wedguard/redis"]
    coord.close()


def test_a_slow_redis_never_holds_the_copy_loop(own_redis_server: RedisServer) -> None:
    """Redis frozen (SIGSTOP) mid-copy: calls time out, the copy goes on locally,
    one alert; thawed: back on the shared budget."""
    sink = RecordingSink()
    coord = RedisCoordinator(
        own_redis_server.url, prefix="slow", timeout=0.1, probe_interval=0.2, fallback_share=0.5
    )
    guard = host(coord, rate="1MB/s", sinks=[sink])
    assert own_redis_server.proc is not None
    pid = own_redis_server.proc.pid
    progress: list[float] = []
    out: list[Any] = []
    stop = threading.Event()

    def copy() -> None:
        try:
            with guard.session("db") as s:
                while not stop.is_set():
                    s.throttle(5_000)
                    progress.append(time.monotonic())
            out.append(s.bytes)
        except BaseException as exc:  # pragma: no cover - the test fails on it
            out.append(exc)

    t = threading.Thread(target=copy, daemon=True)
    t.start()
    time.sleep(0.3)
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(1.0)
        assert not coord.online
    finally:
        os.kill(pid, signal.SIGCONT)
    deadline = time.monotonic() + 4
    while not coord.online and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    stop.set()
    t.join(timeout=5)
    assert len(out) == 1
    assert isinstance(out[0], float), out
    assert coord.online
    assert max(b - a for a, b in itertools.pairwise(progress)) < 1.0
    alerts = [e for e in sink.of_kind("alert") if e.key == "wedguard/redis"]
    assert [a.resolved_at is None for a in alerts] == [True, False]
    coord.close()


def test_an_idle_guard_reports_the_fleets_stop(coords: Callable[..., RedisCoordinator]) -> None:
    """No session runs (no sampler): stopped and decision() still read the flag."""
    ca, cb = coords(), coords()
    idle = host(cb)
    assert not idle.stopped
    ca.stop("rolling upgrade")
    time.sleep(0.6)  # readings of the flag are at most 0.5 s old
    assert idle.stopped
    assert idle.decision().stop_reason == "fleet stop: rolling upgrade"
    ca.resume()
    time.sleep(0.6)
    assert not idle.stopped
