"""The guard's wiring to a coordinator, on a fake clock with an in-memory coordinator.

No Redis here: the coordinator's parts are small local stand-ins with the same
interface, so the state machine below can run hundreds of steps in a second. The
tests against a real redis-server are in test_distributed_guard.py.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import wedguard as wg
from guard_helpers import T0, HalvingController, KeyAnalyzer, ListCalendar
from wedguard.levels import Level
from wedguard.testing import FakeClock, RecordingSink

RATE = 1_000_000.0


class FakeLink:
    def __init__(self) -> None:
        self.online = True
        self.listeners: list[Any] = []

    def add_listener(self, callback: Any) -> None:
        self.listeners.append(callback)

    def set(self, online: bool) -> None:
        if online != self.online:
            self.online = online
            for callback in self.listeners:
                callback(online, None if online else OSError("connection refused"))


class FakeFlag:
    def __init__(self) -> None:
        self.reason: str | None = None
        self.reads = 0

    def is_set(self) -> bool:
        self.reads += 1
        return self.reason is not None


class FakeSlots:
    def __init__(self, limit: int, key: str) -> None:
        self.limit = limit
        self.key = key
        self.in_use = 0

    def acquire(self, timeout: float | None = None, *, abort: Any = None) -> bool:
        if abort is not None and abort():
            return False
        if self.in_use >= self.limit:
            raise wg.SlotTimeout(self.key, timeout or 0.0, self.limit, key=self.key)
        self.in_use += 1
        return True

    def release(self) -> None:
        assert self.in_use > 0
        self.in_use -= 1


class FakeCoordinator:
    """RedisCoordinator's interface, in memory."""

    prefix = "fleet"
    fallback_share = 0.25

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.link = FakeLink()
        self.stop_flag = FakeFlag()
        self.buckets: dict[str, wg.TokenBucketThrottler] = {}
        self.slot_sets: dict[str, FakeSlots] = {}
        self.storages: list[str] = []

    def bucket(
        self, rate: float, burst: float | None = None, *, name: str = "default"
    ) -> wg.TokenBucketThrottler:
        if name not in self.buckets:
            self.buckets[name] = wg.TokenBucketThrottler(rate, burst, clock=self.clock)
        return self.buckets[name]

    def slots(self, limit: int, lease: float = 30.0, *, name: str = "default") -> FakeSlots:
        if name not in self.slot_sets:
            self.slot_sets[name] = FakeSlots(limit, f"fleet:slots:{name}")
        return self.slot_sets[name]

    def breaker_storage(self, name: str = "default") -> wg.MemoryBreakerStorage:
        self.storages.append(name)
        return wg.MemoryBreakerStorage()


def make(clock: FakeClock, coord: FakeCoordinator, **kw: Any) -> wg.Guard:
    kw.setdefault("calendar", None)
    kw.setdefault("sources", [])
    kw.setdefault("sinks", [])
    kw.setdefault("rate", RATE)
    return wg.Guard(clock=clock, coordinator=coord, **kw)


def test_the_guard_asks_the_coordinator_for_its_named_parts(clock: FakeClock) -> None:
    coord = FakeCoordinator(clock)
    guard = make(clock, coord, ops_rate=10, max_concurrent=3, name="photos")
    assert set(coord.buckets) == {"photos", "photos:ops"}
    assert coord.buckets["photos"].rate == RATE
    assert coord.buckets["photos:ops"].rate == 10
    assert coord.slot_sets["photos"].limit == 3
    assert coord.storages == ["photos"]  # the default breaker's state is shared
    assert guard.breaker is not None


def test_every_chunk_is_taken_from_the_shared_bucket(clock: FakeClock) -> None:
    coord = FakeCoordinator(clock)
    guard = make(clock, coord)
    shared = coord.buckets["guard"]
    shared.reserve(5 * RATE)  # another host took 5 s worth
    with guard.session() as s:
        waited = s.throttle(1000)
    # 5 s worth less the full burst (0.2 s), plus this chunk; the local bucket: no wait
    assert waited == pytest.approx(4.801)


def test_a_session_holds_a_shared_slot_and_frees_it(clock: FakeClock) -> None:
    coord = FakeCoordinator(clock)
    guard = make(clock, coord, max_concurrent=1)
    slots = coord.slot_sets["guard"]
    with guard.session():
        assert slots.in_use == 1
    assert slots.in_use == 0
    slots.in_use = 1  # another host holds the only slot
    with pytest.raises(wg.SlotTimeout) as info, guard.session("late", slot_timeout=1):
        pass
    assert info.value.key == "fleet:slots:guard"
    assert info.value.session == "late"
    assert slots.in_use == 1
    assert guard.active_sessions == 0


def test_a_failed_local_entry_gives_the_shared_slot_back(clock: FakeClock) -> None:
    coord = FakeCoordinator(clock)
    guard = make(clock, coord, max_concurrent=1)
    slots = coord.slot_sets["guard"]
    slots.limit = 2  # the fleet has room, this host has not
    with guard.session("a"):
        with pytest.raises(wg.SlotTimeout), guard.session("b", slot_timeout=1):
            pass
        assert slots.in_use == 1


def test_the_stop_flag_is_read_at_the_stop_check_interval_not_per_chunk(
    clock: FakeClock,
) -> None:
    coord = FakeCoordinator(clock)
    guard = make(clock, coord, rate="off", stop_check_interval=0.1)
    flag = coord.stop_flag
    with guard.session() as s:
        s.throttle(10)  # the first call checks at once
        reads = flag.reads
        for _ in range(1000):
            s.throttle(10)
        assert flag.reads == reads  # no time passed: no reading
        clock.advance(0.1)
        s.throttle(10)
        assert flag.reads == reads + 1
        flag.reason = "failover"
        clock.advance(0.1)
        with pytest.raises(wg.EmergencyStop, match="fleet stop: failover"):
            s.throttle(10)


class FleetMachine(RuleBasedStateMachine):
    """The guard against a model of what the fleet should see.

    The model: the shared bucket's rate is min(rate, the calendar's cap); the impact
    controller changes only the local rate; the guard is stopped exactly while the
    fleet's flag or a local stop is up; one alert fires per Redis outage and is
    resolved when Redis is back; the decision says when the fallback is in use.
    """

    @initialize()
    def start(self) -> None:
        self.clock = FakeClock()
        self.coord = FakeCoordinator(self.clock)
        # alternating hours: PEAK capped at 250 kB/s, then OPEN without a cap
        spans = [
            (T0 + timedelta(hours=h), T0 + timedelta(hours=h + 1), Level.PEAK, 250_000.0)
            for h in range(0, 200, 2)
        ]
        self.calendar = ListCalendar(*spans)
        self.sample: dict[str, float] = {}
        self.sink = RecordingSink()
        self.guard = make(
            self.clock,
            self.coord,
            calendar=self.calendar,
            sources=[_Live(self.sample)],
            analyzer=KeyAnalyzer(),
            controller=HalvingController(),
            sinks=[self.sink],
            stop_check_interval=0.1,
            sample_interval=1.0,
        )
        self.session = self.guard.session("fleet")
        self.session.__enter__()
        self.local_stop = False
        self.sync()

    def teardown(self) -> None:
        if hasattr(self, "session"):
            self.session.__exit__(None, None, None)

    def sync(self) -> None:
        """Let one stop check and one sample happen."""
        self.clock.advance(1.0)
        self.guard.decision()

    @rule(hours=st.floats(0, 3))
    def time_passes(self, hours: float) -> None:
        self.clock.advance(hours * 3600)
        self.sync()

    @rule(throttle=st.booleans())
    def production(self, throttle: bool) -> None:
        self.sample["throttle"] = 1.0 if throttle else 0.0
        self.guard.tick()
        self.sync()

    @rule(reason=st.sampled_from(["failover", "maintenance"]))
    def fleet_stop(self, reason: str) -> None:
        self.coord.stop_flag.reason = reason
        self.sync()

    @rule()
    def fleet_resume(self) -> None:
        self.coord.stop_flag.reason = None
        self.sync()

    @rule(stop=st.booleans())
    def local(self, stop: bool) -> None:
        self.local_stop = stop
        if stop:
            self.guard.stop("local")
        else:
            self.guard.resume()
        self.sync()

    @rule(online=st.booleans())
    def redis(self, online: bool) -> None:
        self.coord.link.set(online)
        self.sync()

    @rule(n=st.integers(0, 50_000))
    def chunk(self, n: int) -> None:
        if self.guard.stopped:
            with pytest.raises(wg.EmergencyStop):
                self.session.throttle(n)
        else:
            self.session.throttle(n)

    @invariant()
    def shared_rate_is_the_fleets_ceiling(self) -> None:
        if not hasattr(self, "guard"):
            return
        cap = self.calendar.at(self.clock.now()).rate
        expected = RATE if cap is None else min(RATE, cap)
        assert self.coord.buckets["guard"].rate == expected
        d = self.guard.decision()
        if not d.paused:
            assert d.rate <= expected

    @invariant()
    def stopped_exactly_while_a_stop_is_up(self) -> None:
        if not hasattr(self, "guard"):
            return
        fleet = self.coord.stop_flag.reason
        assert self.guard.stopped == (fleet is not None or self.local_stop)
        if fleet is not None and not self.local_stop:
            assert self.guard.decision().stop_reason == f"fleet stop: {fleet}"

    @invariant()
    def one_alert_per_outage(self) -> None:
        if not hasattr(self, "guard"):
            return
        alerts = [e for e in self.sink.of_kind("alert") if e.key == "wedguard/redis"]
        states = [a.resolved_at is None for a in alerts]
        assert all(a != b for a, b in itertools.pairwise(states))
        if states:
            assert states[0]  # the first is a firing
        offline = not self.coord.link.online
        assert (bool(states) and states[-1]) == offline
        reasons = self.guard.decision().reasons
        assert any(r.startswith("fleet: Redis unreachable") for r in reasons) == offline


class _Live:
    """A source reading a dict the test changes."""

    def __init__(self, sample: dict[str, float]) -> None:
        self.sample_ = sample

    def sample(self) -> dict[str, float]:
        return dict(self.sample_)


TestFleetMachine = FleetMachine.TestCase
