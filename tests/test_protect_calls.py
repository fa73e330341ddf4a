"""Protected calls outside a session: their slot handed to the session they ask for, their accounts per period, calls ending after close, and a back-to-back session meeting the stop file."""

import asyncio
import os
import threading
import time

import wedguard
from wedguard import Guard
from wedguard.errors import EmergencyStop
from wedguard.testing import FakeClock, RecordingSink


def test_async_light_call_asking_for_its_session_does_not_block_the_loop():
    guard = Guard(
        rate="100MB/s",
        calendar=None,
        sources=[],
        sinks=[RecordingSink()],
        max_concurrent=1,
        slot_timeout=2.0,
    )

    @guard.protect(cost=1000)
    async def upload():
        await asyncio.sleep(0.05)
        wedguard.current_session()  # what guard.wrap / a nested protected call does
        return "ok"

    async def backup():
        async with guard.session("backup"):
            await asyncio.sleep(0.01)
        return "session ok"

    async def main():
        t = asyncio.create_task(upload())
        await asyncio.sleep(0.01)
        b = asyncio.create_task(backup())
        return await asyncio.gather(t, b)

    t0 = time.monotonic()
    try:
        assert asyncio.run(main()) == ["ok", "session ok"]
    finally:
        guard.close()
    assert time.monotonic() - t0 < 1.0


def test_light_call_keeps_its_slot_when_it_asks_for_its_session():
    sink = RecordingSink()
    guard = Guard(
        rate="100MB/s", calendar=None, sources=[], sinks=[sink], max_concurrent=1, slot_timeout=0.2
    )
    started = threading.Event()

    @guard.protect(cost=1000)
    def upload():
        started.set()
        time.sleep(0.1)
        return wedguard.current_session()

    def other():
        started.wait()
        with guard.session("backup"):
            time.sleep(0.5)

    t = threading.Thread(target=other)
    t.start()
    try:
        assert upload() is not None
    finally:
        t.join()
        guard.close()
    assert sum(r.name.endswith("upload") for r in sink.of_kind("session")) == 1


def test_account_duration_is_first_call_to_last_and_periods_do_not_merge():
    sink, clock = RecordingSink(), FakeClock()
    guard = Guard(
        rate="1MB/s", calendar=None, sources=[], sinks=[sink], clock=clock, background=False
    )

    @guard.protect(cost=1000)
    def upload():
        clock.advance(1.0)

    upload()
    clock.advance(3600)
    upload()
    clock.advance(3600)
    guard.flush()
    reports = sink.of_kind("session")
    assert [(r.ops, r.duration) for r in reports] == [(1, 1.0), (1, 1.0)]


def test_call_ending_after_close_is_reported():
    sink = RecordingSink()
    guard = Guard(rate="100MB/s", calendar=None, sources=[], sinks=[sink])
    go = threading.Event()

    @guard.protect(cost=1000)
    def upload():
        go.wait()

    t = threading.Thread(target=upload)
    t.start()
    time.sleep(0.1)
    guard.close()
    go.set()
    t.join()
    deadline = time.monotonic() + 2
    while not sink.of_kind("session") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(sink.of_kind("session")) == 1


def test_stop_file_stops_a_back_to_back_session_within_the_check_interval(tmp_path):
    os.chmod(tmp_path, 0o700)
    path = tmp_path / "stop"
    guard = Guard(
        rate="100MB/s",
        calendar=None,
        sources=[],
        sinks=[],
        stop_file=str(path),
        sample_interval=2.0,
        stop_check_interval=0.1,
    )
    try:
        with guard.session("one") as s:
            s.throttle(1000)
        time.sleep(0.3)  # the sampler has seen the guard idle
        path.write_text("operator")
        t0 = time.monotonic()
        stopped = None
        try:
            with guard.session("two") as s:
                while time.monotonic() - t0 < 1.5:
                    s.throttle(1000)
                    time.sleep(0.01)
        except EmergencyStop:
            stopped = time.monotonic() - t0
    finally:
        guard.close()
    assert stopped is not None
    assert stopped < 0.5


def _counting_upload(guard: Guard, limit: int) -> tuple[object, dict[str, int]]:
    """A protected function that notes how many of its calls run at once."""
    state = {"running": 0, "most": 0, "calls": 0}
    lock = threading.Lock()

    @guard.protect(cost=100)
    def upload(i: int) -> int:
        with lock:
            state["running"] += 1
            state["calls"] += 1
            state["most"] = max(state["most"], state["running"])
        if i % 7 == 0:
            time.sleep(0.0005)  # some calls overlap, some wait for a slot
        with lock:
            state["running"] -= 1
        return i

    return upload, state


def test_calls_from_many_threads_are_all_reported_and_never_exceed_the_slots():
    sink = RecordingSink()
    guard = Guard(
        rate="10GB/s",
        calendar=None,
        sources=[],
        sinks=[sink],
        max_concurrent=2,
        slot_timeout=30,
    )
    upload, state = _counting_upload(guard, 2)

    def worker(k: int) -> None:
        for i in range(400):
            assert upload(i) == i  # type: ignore[operator]

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert guard.flush()
    guard.close()
    reports = [r for r in sink.of_kind("session") if r.name.endswith("upload")]
    assert state["calls"] == 3200
    assert state["most"] <= 2
    assert sum(r.ops for r in reports) == 3200
    assert sum(r.bytes for r in reports) == 3200 * 100
    assert all(r.ok for r in reports)


def test_calls_running_when_the_guard_closes_are_reported_after_it():
    sink = RecordingSink()
    guard = Guard(rate="10GB/s", calendar=None, sources=[], sinks=[sink], max_concurrent=None)
    upload, state = _counting_upload(guard, 0)
    go = threading.Event()

    def worker() -> None:
        i = 0
        while not go.is_set() or i < 50:
            upload(i)  # type: ignore[operator]
            i += 1

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    guard.close()  # while the calls go on
    go.set()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if (
            sum(r.ops for r in sink.of_kind("session") if r.name.endswith("upload"))
            >= state["calls"]
        ):
            break
        time.sleep(0.01)
    guard.close()
    assert (
        sum(r.ops for r in sink.of_kind("session") if r.name.endswith("upload")) == state["calls"]
    )


def _interrupted_once(monkeypatch):
    """``_Light`` interrupted while it is made (a Ctrl-C there), the first time only."""
    from wedguard.runtime import protect

    real, calls = protect._set_current, []

    def once(value):
        calls.append(value)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(value)

    monkeypatch.setattr(protect, "_set_current", once)


def test_a_ctrl_c_as_a_light_call_starts_leaves_its_slot_free(monkeypatch):
    sink = RecordingSink()
    guard = Guard(
        rate="100MB/s", calendar=None, sources=[], sinks=[sink], max_concurrent=1, slot_timeout=0.2
    )
    ran = []

    @guard.protect(cost=1000)
    def upload():
        ran.append(1)

    _interrupted_once(monkeypatch)
    try:
        try:
            upload()
        except KeyboardInterrupt:
            pass
        else:
            raise AssertionError("the interruption was swallowed")
        assert ran == []
        with guard.session("next"):  # the one slot is free: no SlotTimeout
            pass
        upload()
        assert ran == [1]
    finally:
        guard.close()
    assert sum(r.name.endswith("upload") for r in sink.of_kind("session")) >= 1


def test_a_cancellation_as_an_async_light_call_starts_leaves_its_slot_free(monkeypatch):
    guard = Guard(
        rate="100MB/s", calendar=None, sources=[], sinks=[], max_concurrent=1, slot_timeout=0.2
    )

    @guard.protect(cost=1000)
    async def upload():
        return "done"

    _interrupted_once(monkeypatch)

    async def main():
        try:
            await upload()
        except KeyboardInterrupt:
            pass
        else:
            raise AssertionError("the interruption was swallowed")
        async with guard.session("next"):
            pass
        return await upload()

    try:
        assert asyncio.run(main()) == "done"
    finally:
        guard.close()
