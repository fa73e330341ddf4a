"""The guard on the real clock, briefly: stop file, slots, stop and hold, signals, threads.

Each test runs well under a second; the bounds are generous because the machines that
run the suite are shared.
"""

from __future__ import annotations

import collections
import io
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import wedguard as wg
from guard_helpers import KeyAnalyzer
from wedguard.testing import RecordingSink, ScriptedSource


def real_guard(**kw: object) -> wg.Guard:
    kw.setdefault("calendar", None)
    kw.setdefault("sources", [])
    kw.setdefault("sinks", [])
    kw.setdefault("breaker", None)
    kw.setdefault("rate", "off")
    return wg.Guard(**kw)  # type: ignore[arg-type]


def sampler_threads(guard: wg.Guard) -> list[threading.Thread]:
    name = f"wedguard-sampler-{id(guard):x}"
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


def count_stats(monkeypatch: pytest.MonkeyPatch, path: Path) -> list[float]:
    """Record the time of every ``os.stat`` or ``os.lstat`` of ``path`` from now on."""
    calls: list[float] = []
    for name in ("stat", "lstat"):
        real = getattr(os, name)

        def counted(p: object, *args: object, _real: Any = real, **kwargs: object) -> Any:
            if os.fspath(p) == str(path):  # type: ignore[call-overload]
                calls.append(time.monotonic())
            return _real(p, *args, **kwargs)

        monkeypatch.setattr(os, name, counted)
    return calls


def test_stop_file_stops_a_loop_within_100_ms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop = tmp_path / "wedguard.stop"
    stats = count_stats(monkeypatch, stop)
    guard = real_guard(stop_file=stop)
    result: dict[str, float] = {}
    started = threading.Event()

    def copy_loop() -> None:
        with guard.session("loop") as s:
            started.set()
            try:
                while True:
                    s.throttle(4096)
                    time.sleep(0.0005)
            except wg.EmergencyStop as exc:
                result["at"] = time.monotonic()
                result["chunks"] = s.report().bytes / 4096
                result["reason_ok"] = float("stop file" in exc.reason)

    worker = threading.Thread(target=copy_loop)
    worker.start()
    assert started.wait(5)
    time.sleep(0.3)
    checks_before = len(stats)
    created = time.monotonic()
    stop.touch()
    worker.join(5)
    assert not worker.is_alive()
    assert result["reason_ok"]
    latency = result["at"] - created
    assert latency < 0.25  # 100 ms between checks, plus scheduling on a busy machine
    # one stat per 100 ms, not one per chunk: ~3 checks in 0.3 s for hundreds of chunks
    assert 2 <= checks_before <= 8
    assert result["chunks"] > checks_before * 10
    guard.close()
    assert guard.stopped
    stop.unlink()


def test_nothing_limiting_still_counts_and_stops_and_pauses_at_once() -> None:
    """With no rate, calendar or impact limit, throttle() only counts; a stop, a hold or
    a HALT still takes effect on the very next call."""
    production = {"halt": 0.0}
    source = ScriptedSource(lambda i: production)
    guard = real_guard(sources=[source], analyzer=KeyAnalyzer(), sample_interval=0.05)
    with guard.session("s") as s:
        for _ in range(1000):
            assert s.throttle(1000) == 0.0
        assert s.bytes == 1_000_000
        guard.stop("restore drill")
        with pytest.raises(wg.EmergencyStop, match="restore drill"):
            s.throttle(1000)
        guard.resume()
        assert s.throttle(1000) == 0.0
        guard.hold("deploy")
        waited: list[float] = []
        worker = threading.Thread(target=lambda: waited.append(s.throttle(1000)))
        worker.start()
        time.sleep(0.15)
        assert worker.is_alive()  # held
        guard.resume()
        worker.join(5)
        assert waited
        assert waited[0] >= 0.1
        production["halt"] = 1.0
        deadline = time.monotonic() + 5
        while not guard.decision().paused and time.monotonic() < deadline:
            time.sleep(0.01)
        assert guard.decision().verdict is wg.Verdict.HALT
        worker = threading.Thread(target=lambda: waited.append(s.throttle(1000)))
        worker.start()
        time.sleep(0.15)
        assert worker.is_alive()  # halted: nothing goes
        production["halt"] = 0.0
        worker.join(5)
        assert not worker.is_alive()
    assert s.report().bytes == 1_003_000
    guard.close()


@pytest.mark.parametrize("bad", [True, False, "10", None, [1], float("nan"), -1, float("inf")])
async def test_nothing_limiting_still_refuses_what_is_not_a_size(bad: object) -> None:
    guard = real_guard()
    try:
        with guard.session("s") as s:
            s.throttle(10)  # nothing limits: the shortcut
            with pytest.raises(wg.ConfigError) as info:
                s.throttle(bad)  # type: ignore[arg-type]
            assert info.value.field == "n"
            with pytest.raises(wg.ConfigError):
                await s.throttle_async(bad)  # type: ignore[arg-type]
            assert s.bytes == 10
    finally:
        guard.close()


def test_copy_at_full_speed_counts_every_byte_and_stops_between_chunks() -> None:
    guard = real_guard()
    data = bytes(range(256)) * 4096  # 1 MiB, read through readinto
    with guard.session("s") as s:
        dst = io.BytesIO()
        assert guard.copyfileobj(io.BytesIO(data), dst, 64 * 1024, session=s) == len(data)
        assert dst.getvalue() == data
        assert s.bytes == len(data)

    class StopsAtTheFifthRead:
        reads = 0

        def read(self, size: int) -> bytes:
            self.reads += 1
            if self.reads == 5:
                guard.stop("restore drill")
            return b"x" * size

    dst = io.BytesIO()
    with pytest.raises(wg.EmergencyStop, match="restore drill"):
        guard.copyfileobj(StopsAtTheFifthRead(), dst, 1000)
    assert dst.getvalue() == b"x" * 4000  # the chunk read after the stop is not written
    guard.close()


def test_stop_wakes_a_waiting_session_at_once() -> None:
    guard = real_guard(rate=1000)
    errors: list[BaseException] = []

    def slow() -> None:
        with guard.session("slow") as s:
            s.throttle(200)
            try:
                s.throttle(50_000)  # would wait ~50 s
            except wg.EmergencyStop as exc:
                errors.append(exc)

    worker = threading.Thread(target=slow)
    worker.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    guard.stop("operator")
    worker.join(5)
    assert time.monotonic() - t0 < 0.5
    assert len(errors) == 1
    assert errors[0].reason == "operator"  # type: ignore[attr-defined]


def test_hold_waits_until_resume_and_counts_as_stop() -> None:
    guard = real_guard()
    guard.hold("deploy")
    reports: list[wg.SessionReport] = []

    def work() -> None:
        with guard.session("held") as s:
            s.throttle(10)
        reports.append(s.report())

    worker = threading.Thread(target=work)
    worker.start()
    time.sleep(0.2)
    assert worker.is_alive()
    assert guard.decision().on_hold
    guard.resume()
    worker.join(5)
    (r,) = reports
    assert r.wait_seconds["stop"] >= 0.15
    assert r.pauses == 1
    assert r.pause_log[0].cause == "stop"
    assert r.pause_log[0].reason == "on hold: deploy"


def test_slots_are_fifo() -> None:
    guard = real_guard(max_concurrent=1)
    order: list[str] = []
    holder = guard.session("holder")
    holder.__enter__()

    def wait_for_slot(name: str) -> None:
        with guard.session(name) as s:
            order.append(name)
            s.throttle(1)

    workers = []
    for i, name in enumerate(["first", "second", "third", "fourth"]):
        t = threading.Thread(target=wait_for_slot, args=(name,))
        t.start()
        workers.append(t)
        deadline = time.monotonic() + 5
        while guard.waiting_sessions < i + 1 and time.monotonic() < deadline:
            time.sleep(0.005)
    assert guard.waiting_sessions == 4
    holder.__exit__(None, None, None)
    for t in workers:
        t.join(5)
    assert order == ["first", "second", "third", "fourth"]
    assert guard.active_sessions == 0


def test_slot_wait_is_reported_and_times_out() -> None:
    guard = real_guard(max_concurrent=1)
    with guard.session("a"):
        t0 = time.monotonic()
        with pytest.raises(wg.SlotTimeout), guard.session("b", slot_timeout=0.1):
            pass
        assert 0.08 <= time.monotonic() - t0 < 1.0
    done = threading.Event()

    def later() -> None:
        with guard.session("late") as s:
            s.throttle(1)
        done.set()

    with guard.session("a2"):
        worker = threading.Thread(target=later)
        worker.start()
        time.sleep(0.15)
    worker.join(5)
    assert done.is_set()


def test_a_crashing_thread_frees_its_slot() -> None:
    guard = real_guard(max_concurrent=1)

    def crash() -> None:
        try:
            with guard.session("crash"):
                raise RuntimeError("disk full")
        except RuntimeError:
            pass  # the thread dies; the session's slot must not die with it

    worker = threading.Thread(target=crash)
    worker.start()
    worker.join(5)
    with guard.session("after", slot_timeout=1) as s:
        s.throttle(1)


def test_sampler_runs_only_while_sessions_are_active() -> None:
    source = ScriptedSource([{"x": 1.0}])
    guard = real_guard(sources=[source], analyzer=KeyAnalyzer(), sample_interval=0.05)
    time.sleep(0.1)
    assert source.calls == 0
    assert sampler_threads(guard) == []
    with guard.session("a"), guard.session("b"):
        time.sleep(0.3)
        assert len(sampler_threads(guard)) == 1
    calls = source.calls
    assert calls >= 3
    # sessions back to back reuse the thread, and it samples at once
    with guard.session("c"):
        deadline = time.monotonic() + 2
        while source.calls == calls and time.monotonic() < deadline:
            time.sleep(0.002)
        assert source.calls == calls + 1
    calls = source.calls
    time.sleep(0.3)
    assert source.calls == calls  # no session, no sampling
    assert sampler_threads(guard) == []  # the thread ended after one idle interval


def test_background_halt_pauses_until_production_recovers() -> None:
    halted = threading.Event()

    def script(i: int) -> dict[str, float]:
        return {"halt": 0.0 if halted.is_set() else 1.0}

    guard = real_guard(
        sources=[ScriptedSource(script)],
        analyzer=KeyAnalyzer(),
        controller=None,
        sample_interval=0.02,
    )
    with guard.session("s") as s:
        time.sleep(0.1)
        assert guard.decision().verdict is wg.Verdict.HALT
        timer = threading.Timer(0.2, halted.set)
        timer.start()
        s.throttle(10)
    r = s.report()
    assert 0.1 <= r.wait_seconds["impact"] < 2
    timer.join()


def test_slow_sink_never_blocks_the_backup() -> None:
    class SlowSink:
        def __init__(self) -> None:
            self.events: list[object] = []

        def emit(self, event: object) -> None:
            time.sleep(0.5)
            self.events.append(event)

    slow = SlowSink()
    guard = real_guard(sinks=[slow])
    t0 = time.monotonic()
    with guard.session("s") as s:
        guard.hold("x")
        guard.resume()
        guard.stop("y")
        guard.resume()
        s.throttle(1)
    assert time.monotonic() - t0 < 0.3
    assert guard.flush(timeout=10)
    assert len(slow.events) >= 4


def test_events_reach_sinks_from_the_background(tmp_path: Path) -> None:
    sink = RecordingSink()
    guard = real_guard(sinks=[sink])
    guard.stop("test")
    guard.resume()
    assert guard.flush(timeout=5)
    assert [e.kind for e in sink.events] == ["decision", "alert", "decision", "alert"]


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")
def test_signal_handlers_stop_and_resume() -> None:
    guard = real_guard(signals=True)
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while not guard.stopped and time.monotonic() < deadline:
            time.sleep(0.01)
        assert guard.stopped
        assert guard.decision().stop_reason == "SIGUSR1"
        os.kill(os.getpid(), signal.SIGUSR2)
        deadline = time.monotonic() + 5
        while guard.stopped and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not guard.stopped
    finally:
        guard.close()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


async def test_async_sessions_wait_for_slots_in_order() -> None:
    import asyncio

    guard = real_guard(max_concurrent=1)
    order: list[str] = []

    async def job(name: str, hold: float) -> None:
        async with guard.session(name) as s:
            order.append(name)
            await s.throttle_async(1)
            await asyncio.sleep(hold)

    await asyncio.gather(job("a", 0.05), job("b", 0.0), job("c", 0.0))
    assert order == ["a", "b", "c"]


async def test_async_stop_wakes_a_waiting_task() -> None:
    import asyncio

    guard = real_guard(rate=1000)

    async def slow() -> None:
        async with guard.session("slow") as s:
            await s.throttle_async(200)
            await s.throttle_async(50_000)

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.1)
    t0 = time.monotonic()
    guard.stop("operator")
    with pytest.raises(wg.EmergencyStop):
        await asyncio.wait_for(task, 5)
    assert time.monotonic() - t0 < 0.5


def test_deadline_risk_alert_fires_at_once_on_the_real_clock() -> None:
    """A blackout ahead makes 4 GB in 2 h at 1 MB/s impossible: the alert comes from the
    sampler's first pass, long before the deadline."""
    from datetime import datetime, timedelta, timezone

    from guard_helpers import ListCalendar

    now = datetime.now(timezone.utc)
    cal = ListCalendar(
        (now + timedelta(minutes=30), now + timedelta(hours=3), wg.Level.BLACKOUT, None)
    )
    sink = RecordingSink()
    guard = real_guard(rate="1MB/s", calendar=cal, sinks=[sink])
    t0 = time.monotonic()
    with guard.session("nightly", expected_bytes="4GB", deadline="2h", on_deadline="wait") as s:
        s.throttle(1000)
        deadline = time.monotonic() + 5
        while not sink.of_kind("alert") and time.monotonic() < deadline:
            time.sleep(0.01)
        fired = time.monotonic() - t0
        assert s.needed_rate is not None
        assert s.needed_rate > 1_000_000  # 4 GB over the 30 allowed minutes
    alert = sink.of_kind("alert")[0]
    assert alert.key == "wedguard/deadline/nightly"  # type: ignore[attr-defined]
    assert alert.firing  # type: ignore[attr-defined]
    assert fired < 1.0


def copy_files(s: wg.Session, files: int, chunks: int, pause: float) -> None:
    for _ in range(files):
        s.throttle(1000, ops=1, size=1000 * chunks)
        for _ in range(chunks - 1):
            time.sleep(pause)
            s.throttle(1000)


@pytest.mark.parametrize(
    ("mode", "expected_bytes"),
    [(wg.Cutoff.HARD, None), (wg.Cutoff.SOFT, 10_000), (wg.Cutoff.CAUTIOUS, 0)],
)
def test_cutoff_modes_on_the_real_clock(mode: wg.Cutoff, expected_bytes: int | None) -> None:
    """max_duration 0.15 s; files of 10 kB in ten chunks 20 ms apart at 50 kB/s (0.2 s a
    file): HARD stops inside the first file, SOFT finishes it and starts no second,
    CAUTIOUS does not start a file it cannot finish in time."""
    guard = real_guard(rate="50kB/s")
    t0 = time.monotonic()
    with (
        pytest.raises(wg.CutoffReached) as info,
        guard.session("files", max_duration=0.15, cutoff=mode) as s,
    ):
        copy_files(s, 5, 10, 0.02)
    elapsed = time.monotonic() - t0
    assert info.value.mode is mode
    assert info.value.limit == "max_duration"
    moved = s.report().bytes
    if expected_bytes is None:
        assert 0 < moved < 10_000
        assert elapsed >= 0.15
    else:
        assert moved == expected_bytes
    if mode is wg.Cutoff.CAUTIOUS:
        assert elapsed < 0.1


def test_sessions_in_threads_share_the_global_budget() -> None:
    """Two sessions copying at once get 200 kB/s between them, not each."""
    guard = real_guard(rate="200kB/s")
    stop_at = time.monotonic() + 0.5
    reports: list[wg.SessionReport] = []

    def copy(name: str) -> None:
        with guard.session(name) as s:
            while time.monotonic() < stop_at:
                s.throttle(5000)
        reports.append(s.report())

    workers = [threading.Thread(target=copy, args=(n,)) for n in ("a", "b")]
    for t in workers:
        t.start()
    for t in workers:
        t.join(5)
    total = sum(r.bytes for r in reports)
    # 0.5 s at 200 kB/s plus the 40 kB burst, give or take a chunk per session
    assert 100_000 <= total <= 160_000
    assert all(r.bytes > 20_000 for r in reports)  # neither starved


def test_a_stuck_sink_costs_old_events_not_memory_or_time(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()

    class Stuck:
        def emit(self, event: object) -> None:
            release.wait(5)

    guard = real_guard(sinks=[Stuck()])
    guard._events = collections.deque(maxlen=5)  # a small queue for the test
    t0 = time.monotonic()
    for i in range(20):
        guard.hold(f"h{i}")
        guard.resume()
    assert time.monotonic() - t0 < 1.0
    assert len(guard._events) <= 5
    assert "events dropped" in caplog.text
    release.set()
    assert guard.flush(timeout=5)
