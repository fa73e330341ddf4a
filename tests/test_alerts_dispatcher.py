"""The dispatcher's machinery: queue, worker, delivery lanes, retries, spool."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wedguard as wg
from wedguard.runtime.alerts import Alert, AlertDispatcher, Notification, Severity
from wedguard.sinks.delivery import AsyncDelivery, DeliveryError, backoff_delay
from wedguard.sinks.spool import Spool
from wedguard.testing import FakeClock, RecordingSink

HIGH, CRITICAL, LOW, MEDIUM = Severity.HIGH, Severity.CRITICAL, Severity.LOW, Severity.MEDIUM


class FlakySink:
    """A sink with send(): fails while ``failing`` is set, blocks while ``hold`` is clear."""

    def __init__(self, name: str = "flaky", fail_times: int = 0) -> None:
        self.name = name
        self.fail_times = fail_times
        self.failing = False
        self.hold = threading.Event()
        self.hold.set()
        self.attempts = 0
        self.got: list[Notification] = []
        self.lock = threading.Lock()

    def send(self, event: Notification) -> None:
        self.hold.wait(10)
        with self.lock:
            self.attempts += 1
            if self.failing or self.fail_times > 0:
                self.fail_times -= 1
                raise DeliveryError("receiver down")
            self.got.append(event)

    def emit(self, event: Notification) -> None:  # pragma: no cover - send is preferred
        raise AssertionError("send() should be used")

    def keys(self) -> list[str]:
        return [a.key for n in self.got for a in n.alerts]


def test_flush_sends_a_burst_as_one_notification_per_sink() -> None:
    s1, s2 = RecordingSink(), RecordingSink()
    with AlertDispatcher(routes={HIGH: [s1, s2]}, group_wait=30) as d:
        for i in range(50):
            d.fire(Alert(f"k{i}", HIGH, "API +12 %", labels={"session": "photos"}))
        assert d.flush(timeout=5)
    for s in (s1, s2):
        (note,) = s.events
        assert isinstance(note, Notification)
        assert len(note.alerts) == 50


def test_routes_by_severity() -> None:
    low, high = RecordingSink(), RecordingSink()
    with AlertDispatcher(routes={LOW: [low], "HIGH": high}, group_wait=0) as d:
        d.fire(Alert("a", LOW, "x"))
        d.fire(Alert("b", CRITICAL, "y"))
        d.fire(Alert("c", MEDIUM, "z"))
        assert d.flush(5)
    assert sorted(a.key for n in low.events for a in n.alerts) == ["a", "c"]  # type: ignore[attr-defined]
    assert [a.key for n in high.events for a in n.alerts] == ["b"]  # type: ignore[attr-defined]


def test_resolve_and_acknowledge_through_the_queue() -> None:
    sink = RecordingSink()
    with AlertDispatcher(routes={HIGH: [sink]}, group_wait=0) as d:
        d.fire(Alert("a", HIGH, "x"))
        d.acknowledge("a")
        assert d.flush(5)
        d.resolve("a")
        assert d.flush(5)
        assert d.alerts == []
    first, second = sink.events
    assert first.acknowledged == ("a",)  # type: ignore[attr-defined]
    assert second.status == "resolved"  # type: ignore[attr-defined]


def test_dispatcher_is_a_sink() -> None:
    sink, other = RecordingSink(), RecordingSink()

    class Decision:
        kind = "decision"

        def to_dict(self) -> dict[str, object]:
            return {"kind": "decision", "verdict": "OK"}

    with AlertDispatcher(routes={HIGH: [sink]}, group_wait=0, forward=[other]) as d:
        assert isinstance(d, wg.Sink)
        d.emit(Alert("a", HIGH, "x"))
        d.emit(Decision())
        assert d.flush(5)
        d.emit(Alert("a", HIGH, "x").resolved(wg.SystemClock().now()))
        assert d.flush(5)
    assert [n.status for n in sink.events] == ["firing", "resolved"]  # type: ignore[attr-defined]
    assert [e.kind for e in other.events] == ["decision"]


def test_failures_are_retried_in_order_and_nothing_is_lost() -> None:
    sink = FlakySink(fail_times=3)
    with AlertDispatcher(routes={HIGH: [sink]}, group_wait=0, backoff=0.001, backoff_max=0.01) as d:
        for i in range(5):
            d.fire(Alert("same", HIGH, f"v{i}"))
            assert d.flush(5)
    assert [n.alerts[0].summary for n in sink.got] == [f"v{i}" for i in range(5)]
    assert sink.attempts == 8
    assert d.stats()["sinks"]["flaky"]["retries"] == 3


def test_a_hanging_sink_holds_only_itself_and_flush_times_out() -> None:
    slow, fast = FlakySink("slow"), RecordingSink()
    slow.hold.clear()
    d = AlertDispatcher(routes={HIGH: [slow, fast]}, group_wait=0)
    try:
        d.fire(Alert("a", HIGH, "x"))
        assert not d.flush(timeout=0.2)
        assert len(fast.events) == 1
    finally:
        slow.hold.set()
        assert d.flush(5)
        d.close()
    assert slow.keys() == ["a"]


def test_fire_never_blocks_while_sinks_fail() -> None:
    sink = FlakySink()
    sink.hold.clear()  # every delivery hangs
    d = AlertDispatcher(routes={HIGH: [sink]}, group_wait=0)
    try:
        worst = 0.0
        for i in range(200):
            t0 = time.perf_counter()
            d.fire(Alert(f"k{i}", HIGH, "x"))
            worst = max(worst, time.perf_counter() - t0)
        # every delivery hangs until the end of the test, so a fire() that waited for a
        # sink would take the whole test; a second leaves room for a busy machine
        # (typically a few microseconds; 68 ms seen once on a shared one)
        assert worst < 1.0
    finally:
        sink.hold.set()
        d.close(5)


def test_overflow_drops_the_lowest_severity_first(caplog: pytest.LogCaptureFixture) -> None:
    sink = RecordingSink()
    d = AlertDispatcher(routes={LOW: [sink]}, group_wait=0, queue_size=4)
    try:
        with d._core_lock:  # stall the worker so the queue fills
            d.fire(Alert("first", LOW, "x"))
            deadline = time.monotonic() + 5
            while d._inbox_len and time.monotonic() < deadline:
                time.sleep(0.001)
            assert d.fire(Alert("low1", LOW, "x"))
            assert d.fire(Alert("crit", CRITICAL, "x"))
            assert d.fire(Alert("med", MEDIUM, "x"))
            assert d.fire(Alert("high", HIGH, "x"))
            assert d.fire(Alert("crit2", CRITICAL, "x"))  # evicts low1
            assert not d.fire(Alert("low2", LOW, "x"))  # nothing lower to evict
            assert d.dropped == 2
        assert d.flush(5)
    finally:
        d.close()
    delivered = {a.key for n in sink.events for a in n.alerts}  # type: ignore[attr-defined]
    assert delivered == {"first", "crit", "med", "high", "crit2"}
    assert "queue full" in caplog.text


def test_spool_survives_an_outage_and_a_restart(tmp_path: Path) -> None:
    spool = tmp_path / "alerts.spool"
    down = FlakySink("pager")
    down.failing = True
    d1 = AlertDispatcher(routes={HIGH: [down]}, group_wait=30, spool=spool, backoff=0.01)
    d1.fire(Alert("photos/slow", HIGH, "API +9 %", labels={"session": "photos"}))
    d1.fire(Alert("db/slow", HIGH, "DB +25 %", labels={"session": "db"}))
    assert not d1.flush(timeout=0.3)
    assert not d1.close(timeout=0.1)
    assert stat.S_IMODE(os.stat(spool).st_mode) == 0o600
    assert len(Spool(spool, fsync=False).pending()) == 2

    up = FlakySink("pager")
    with AlertDispatcher(routes={HIGH: [up]}, spool=spool) as d2:
        assert d2.flush(5)
    assert sorted(up.keys()) == ["db/slow", "photos/slow"]
    assert Spool(spool, fsync=False).pending() == []
    assert stat.S_IMODE(os.stat(spool).st_mode) == 0o600


def test_spool_keeps_records_for_sinks_that_are_gone(tmp_path: Path) -> None:
    spool = tmp_path / "s"
    s = Spool(spool)
    note = Notification("HIGH{}", "HIGH", (Alert("a", HIGH, "x"),))
    s.add(note.id, "old-sink", note.to_dict())
    s.close()
    with AlertDispatcher(routes={HIGH: [FlakySink("new")]}, spool=spool) as d:
        assert d.flush(5)
    assert [i for i, _s, _e in Spool(spool).pending()] == [note.id]


def test_spool_skips_a_torn_record(tmp_path: Path) -> None:
    path = tmp_path / "s"
    s = Spool(path)
    s.add("1", "x", {"a": 1})
    s.close()
    with open(path, "a") as f:
        f.write('{"op":"add","id":"2","si')
    assert Spool(path).pending() == [("1", "x", {"a": 1})]


def test_after_close_nothing_is_accepted() -> None:
    d = AlertDispatcher(routes={HIGH: [RecordingSink()]})
    assert d.close()
    assert d.close()
    assert not d.fire(Alert("a", HIGH, "x"))


def test_repr_and_stats_are_safe() -> None:
    d = AlertDispatcher(routes={HIGH: [FlakySink("pager")]})
    try:
        assert "pager" in repr(d)
        assert d.stats()["dropped"] == 0
    finally:
        d.close()


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"routes": [1]}, "routes"),
        ({"routes": {HIGH: [object()]}}, "routes[HIGH]"),
        ({"routes": {HIGH: []}, "queue_size": 0}, "queue_size"),
        ({"routes": {"PANIC": []}}, "routes"),
        ({"routes": {HIGH: []}, "group_wait": "later"}, "group_wait"),
        ({"routes": {HIGH: []}, "spool": 3.5}, "spool"),
    ],
)
def test_bad_configuration(kw: dict[str, object], field: str) -> None:
    with pytest.raises(wg.ConfigError) as err:
        AlertDispatcher(**kw)  # type: ignore[arg-type]
    assert err.value.field == field


# -- the delivery lane on its own, on a fake clock ------------------------------------


def _run_lane(lane: AsyncDelivery[int], items: list[int]) -> None:
    for i in items:
        lane.put(i)
    assert lane.flush(5)
    lane.close()


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    assert [backoff_delay(n, base=1, cap=8, rng=lambda: 1.0) for n in range(1, 6)] == [
        1,
        2,
        4,
        8,
        8,
    ]
    assert backoff_delay(3, base=1, cap=8, rng=lambda: 0.0) == 2
    clock = FakeClock()
    fails = [4]

    def send(_item: int) -> None:
        if fails[0]:
            fails[0] -= 1
            raise OSError("down")

    lane = AsyncDelivery(send, name="t", backoff=1, backoff_max=4, clock=clock, rng=lambda: 1.0)
    _run_lane(lane, [1])
    assert clock.sleeps == [1, 2, 4, 4]


def test_retry_after_is_honoured() -> None:
    clock = FakeClock()
    calls: list[float] = []

    def send(_item: int) -> None:
        calls.append(clock.monotonic())
        if len(calls) == 1:
            raise DeliveryError("HTTP 429", retry_after=30)

    lane = AsyncDelivery(send, name="t", backoff=1, clock=clock, rng=lambda: 0.0)
    _run_lane(lane, [1])
    assert calls == [0, 30]


def test_permanent_errors_and_max_attempts_give_up() -> None:
    clock = FakeClock()
    done: list[tuple[int, bool]] = []

    def send(item: int) -> None:
        raise DeliveryError("HTTP 404", permanent=item == 1)

    lane = AsyncDelivery(
        send, name="t", max_attempts=3, clock=clock, on_done=lambda i, ok: done.append((i, ok))
    )
    _run_lane(lane, [1, 2])
    assert done == [(1, False), (2, False)]
    assert lane.failed == 2
    assert len(clock.sleeps) == 2  # item 2: three attempts, two waits


def test_lane_config_errors() -> None:
    for kw, field in [
        ({"queue_size": 0}, "queue_size"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"backoff": -1}, "backoff"),
        ({"backoff": 2, "backoff_max": 1}, "backoff_max"),
    ]:
        with pytest.raises(wg.ConfigError) as err:
            AsyncDelivery(lambda _i: None, name="t", **kw)  # type: ignore[arg-type]
        assert err.value.field == field


def test_spool_compacts_once_everything_is_delivered(tmp_path: Path) -> None:
    path = tmp_path / "s"
    s = Spool(path, fsync=False, compact_bytes=2000)
    for i in range(40):
        s.add(str(i), "x", {"n": i})
        s.done(str(i), "x")
    s.add("last", "x", {"n": -1})
    s.close()
    assert path.stat().st_size < 2000
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Spool(path).pending() == [("last", "x", {"n": -1})]


def test_new_items_do_not_cut_a_retry_wait_short() -> None:
    """Puts notify the worker; a worker in a backoff wait must keep waiting."""
    attempts: list[float] = []
    gate = threading.Event()

    def send(_item: int) -> None:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            gate.set()
            raise DeliveryError("down", retry_after=0.3)

    lane = AsyncDelivery(send, name="t", rng=lambda: 0.0)
    lane.put(1)
    assert gate.wait(5)
    for i in range(2, 12):
        lane.put(i)
        time.sleep(0.01)
    assert lane.flush(5)
    lane.close()
    assert attempts[1] - attempts[0] >= 0.3


def _eventually(predicate: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.005)
    return False


def test_dispatcher_timers_follow_its_clock(clock: FakeClock) -> None:
    """group_wait and repeat_interval are on the dispatcher's clock, without flush."""
    sink = RecordingSink()
    with AlertDispatcher(
        routes={HIGH: [sink]}, group_wait=30, repeat_interval=3600, clock=clock
    ) as d:
        d.fire(Alert("a", HIGH, "x"))
        assert _eventually(lambda: d.alerts)
        time.sleep(0.05)
        assert sink.events == []
        clock.advance(30)
        d.wake()
        assert _eventually(lambda: len(sink.events) == 1)
        clock.advance(3600)
        assert _eventually(lambda: len(sink.events) == 2)
        assert sink.events[1].repeat  # type: ignore[attr-defined]
        d.fire(Alert("low", LOW, "unrouted"))
        assert _eventually(lambda: d.unrouted == 1)


def test_flush_is_false_when_a_notification_is_given_up() -> None:
    class Gone:
        name = "gone"

        def send(self, event: Notification) -> None:
            raise DeliveryError("HTTP 404", permanent=True)

        def emit(self, event: Notification) -> None:  # pragma: no cover
            pass

    with AlertDispatcher(routes={HIGH: [Gone()]}, group_wait=0) as d:
        d.fire(Alert("a", HIGH, "x"))
        assert not d.flush(5)
        assert d.failed == 1
        assert d.flush(5)  # nothing pending, nothing new given up


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(list(Severity)), min_size=1, max_size=40))
def test_overflow_property_lowest_severity_goes_first(severities: list[Severity]) -> None:
    """With the worker stalled and room for 5, every dropped alert is at most as
    severe as every alert kept, and the counts add up."""
    sink = RecordingSink()
    d = AlertDispatcher(routes={LOW: [sink]}, group_wait=0, queue_size=5)
    try:
        with d._core_lock:
            d.fire(Alert("stall", LOW, "x"))
            assert _eventually(lambda: d._inbox_len == 0)
            kept = {}
            for i, sev in enumerate(severities):
                d.fire(Alert(f"a{i}", sev, "x"))
                kept[f"a{i}"] = sev
        assert d.flush(5)
    finally:
        d.close()
    delivered = {a.key for n in sink.events for a in n.alerts} - {"stall"}  # type: ignore[attr-defined]
    dropped = set(kept) - delivered
    assert len(dropped) == d.dropped == max(0, len(severities) - 5)
    if dropped and delivered:
        assert max(kept[k] for k in dropped) <= min(kept[k] for k in delivered)


CRASHING_CHILD = """
import os, sys, time
from wedguard.runtime.alerts import Alert, AlertDispatcher, Severity
from wedguard.testing import RecordingSink
spool = sys.argv[1]
d = AlertDispatcher(routes={Severity.HIGH: [RecordingSink()]}, group_wait=3600, spool=spool)
d.fire(Alert("backup/halt", Severity.HIGH, "backup halted: API p95 +40 %",
             labels={"session": "photos"}))
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    with open(spool) as f:
        if "backup/halt" in f.read():
            break
    time.sleep(0.01)
os._exit(0)  # a hard crash: no close, no flush, the hour of group_wait never ends
"""


def test_an_alert_waiting_for_its_group_survives_a_hard_crash(tmp_path: Path) -> None:
    import subprocess
    import sys

    spool = tmp_path / "alerts.spool"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.run(
        [sys.executable, "-c", CRASHING_CHILD, str(spool)], env=env, timeout=60, check=False
    )
    assert child.returncode == 0
    assert any(sink == "@unsent" for _id, sink, _data in Spool(spool, fsync=False).pending())

    sink = RecordingSink()
    with AlertDispatcher(routes={HIGH: [sink]}, group_wait=0.05, spool=spool) as d:
        deadline = time.monotonic() + 5
        while not sink.events and time.monotonic() < deadline:
            time.sleep(0.01)
        assert d.flush(5)
    [note] = sink.events
    assert isinstance(note, Notification)
    [alert] = note.alerts
    assert (alert.key, alert.summary, dict(alert.labels)) == (
        "backup/halt",
        "backup halted: API p95 +40 %",
        {"session": "photos"},
    )
    assert Spool(spool, fsync=False).pending() == []  # told: nothing left to restore


def test_the_spool_forgets_an_alert_once_it_is_told_or_resolved(tmp_path: Path) -> None:
    spool = tmp_path / "alerts.spool"
    sink = RecordingSink()

    def unsent() -> list[str]:
        """Replay the live spool file (opening a Spool on it would compact it)."""
        import json

        waiting: set[str] = set()
        for line in spool.read_text().splitlines():
            rec = json.loads(line)
            if rec["sink"] == "@unsent":
                (waiting.add if rec["op"] == "add" else waiting.discard)(rec["id"])
        return sorted(waiting)

    d = AlertDispatcher(routes={HIGH: [sink]}, group_wait=3600, spool=spool)
    try:
        d.fire(Alert("a", HIGH, "one", labels={"session": "x"}))
        d.fire(Alert("b", HIGH, "two", labels={"session": "y"}))
        deadline = time.monotonic() + 5
        while (not spool.exists() or len(unsent()) < 2) and time.monotonic() < deadline:
            d.wake()
            time.sleep(0.01)
        assert unsent() == ["alert:a", "alert:b"]
        d.resolve("b")  # resolved: no longer firing, nothing to fire again
        assert d.flush(5)  # "a" is told
        assert unsent() == []
    finally:
        d.close()
    told = {(a.key, a.firing) for n in sink.events for a in n.alerts}  # type: ignore[attr-defined]
    assert told == {("a", True), ("b", False)}
