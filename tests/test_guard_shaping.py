"""A guard that protects by default: fast signals, SCHED_IDLE, chunk shaping, and the
two loops with causal pauses, wired into a real Guard."""

from __future__ import annotations

import io
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

import wedguard as wg
from wedguard.io.priority import Applied
from wedguard.policy.probing import PauseSchedule, Shaper
from wedguard.sources.pressure import PressureSource
from wedguard.testing import FakeClock

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


class Fixed:
    """A source answering what it is told."""

    def __init__(self, **values: float) -> None:
        self.values = {k.replace("__", "."): v for k, v in values.items()}

    def sample(self) -> Mapping[str, float]:
        return dict(self.values)


def fixed(values: dict[str, float]) -> Fixed:
    src = Fixed()
    src.values = dict(values)
    return src


class Chunks(io.RawIOBase):
    """A destination that records each write's length and time."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sizes: list[int] = []
        self.times: list[float] = []

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.sizes.append(len(b))
        self.times.append(self.clock.monotonic())
        return len(b)

    def longest_silence(self) -> float:
        return max(b - a for a, b in zip(self.times, self.times[1:], strict=False))


@linux
@pytest.mark.skipif(not os.path.exists("/proc/pressure/cpu"), reason="a kernel without PSI")
def test_guard_alone_judges_the_host_pressure_and_says_so() -> None:
    guard = wg.Guard()
    try:
        with guard.session("defaults") as s:
            s.throttle(10)
            guard.tick()
            time.sleep(0.05)
            d = guard.tick()
        assert "pressure.cpu.some_percent" in d.signals
        assert "pressure.io.some_percent" in d.signals
        assert d.to_dict()["signals"] == list(d.signals)
    finally:
        guard.close()


def test_production_latency_leads_the_signals() -> None:
    src = fixed({"pressure.cpu.some_percent": 2.0, "api.latency_s": 0.01, "prod.runq_ratio": 0.0})
    guard = wg.Guard(
        calendar=None, sources=[src], sinks=[], clock=FakeClock(), baseline_warmup=None
    )
    d = guard.tick()
    assert d.signals == ("api.latency_s", "pressure.cpu.some_percent", "prod.runq_ratio")


def test_a_fast_signal_over_its_cap_throttles_a_default_guard() -> None:
    clock = FakeClock()
    src = fixed({"pressure.cpu.some_percent": 5.0})
    guard = wg.Guard(rate="10MB/s", calendar=None, sources=[src], sinks=[], clock=clock)
    with guard.session("backup") as s:
        s.throttle(1)
        assert guard.tick().verdict is wg.Verdict.OK
        src.values["pressure.cpu.some_percent"] = 80.0  # cap 30 %
        for _ in range(5):
            clock.advance(1.0)
            d = guard.tick()
    assert d.verdict is wg.Verdict.THROTTLE
    assert d.rate < 10e6
    assert any("pressure.cpu.some_percent" in r for r in d.reasons)


def test_psi_that_cannot_be_read_is_said_once_and_not_read_as_harm(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    clock = FakeClock()
    src = PressureSource(
        resources=("cpu",), proc_root=tmp_path, unreadable="unavailable", monotonic=clock.monotonic
    )
    guard = wg.Guard(rate="10MB/s", calendar=None, sources=[src], sinks=[], clock=clock)
    with guard.session("backup") as s:
        for _ in range(5):
            s.throttle(1)
            d = guard.tick()
            clock.advance(1.0)
    assert d.verdict is wg.Verdict.OK
    said = [r for r in caplog.records if "cannot be read" in r.getMessage()]
    assert [r.getMessage() for r in said].count(
        "signal pressure.cpu.some_percent cannot be read on this system; "
        "the guard does not judge it"
    ) == 1


@linux
def test_a_session_thread_runs_in_sched_idle_and_is_restored() -> None:
    guard = wg.Guard(
        rate="off", calendar=None, sources=[], sinks=[], clock=FakeClock(), sched_idle=True
    )
    seen: list[tuple[int, int, int, Applied | None]] = []

    def body() -> None:
        before = os.sched_getscheduler(0)
        with guard.session("backup") as s:
            inside = os.sched_getscheduler(0)
        seen.append((before, inside, os.sched_getscheduler(0), s.priority))

    t = threading.Thread(target=body)
    t.start()
    t.join(10)
    ((before, inside, after, applied),) = seen
    assert inside == os.SCHED_IDLE
    assert applied is not None
    assert applied.sched_idle
    assert after == before or "SCHED_IDLE" in str(applied.note)
    with pytest.raises(wg.ConfigError) as info:
        wg.Guard(calendar=None, sources=[], sinks=[], sched_idle="yes")  # type: ignore[arg-type]
    assert info.value.field == "sched_idle"


def test_the_copy_loop_follows_the_chunk_size_and_paces_with_small_waits() -> None:
    """100 kB/s, 3 MB to copy: with shaping each chunk is 0.2 s of the rate (20 kB)
    and production never sees the backup silent for more than ~0.2 s then bursting;
    without it, 1 MiB chunks mean ten seconds of silence, then a MiB at once."""
    data = bytes(3_000_000)

    def copy(shaping: object) -> Chunks:
        clock = FakeClock()
        src = fixed({"pressure.cpu.some_percent": 1.0})
        guard = wg.Guard(
            rate="100kB/s", calendar=None, sources=[src], sinks=[], clock=clock, shaping=shaping
        )
        dst = Chunks(clock)
        with guard.session("backup") as s:
            s.copyfileobj(io.BytesIO(data), dst)
        return dst

    shaped = copy(Shaper(pauses=None))
    assert sum(shaped.sizes) == len(data)
    assert max(shaped.sizes) <= 20_000
    assert shaped.longest_silence() <= 0.2 + 1e-6
    plain = copy(None)
    assert max(plain.sizes) == 1 << 20
    assert plain.longest_silence() > 5.0


def test_under_pressure_chunks_shrink_and_the_share_drops() -> None:
    clock = FakeClock()
    src = fixed({"pressure.io.some_percent": 0.0})
    shaper = Shaper(pauses=None)
    guard = wg.Guard(
        rate="off", calendar=None, sources=[src], sinks=[], clock=clock, shaping=shaper
    )
    with guard.session("backup") as s:
        s.throttle(1)
        guard.tick()
        assert s.chunk_size == 1 << 20
        src.values["pressure.io.some_percent"] = 50.0  # cap 20 %
        clock.advance(0.2)
        d = guard.tick()
        assert s.chunk_size <= 128 << 10
    assert any(r.startswith("fast signals: share 50 %") for r in d.reasons)
    with pytest.raises(wg.ConfigError) as info:
        wg.Guard(calendar=None, sources=[], sinks=[], shaping=True)
    assert info.value.field == "shaping"


class SyntheticProduction:
    """A production service whose latency doubles while the backup moves bytes.

    The backup calls ``moved()`` after each chunk; a sample reads the latency of a
    request now: 10 ms, or 20 ms when the backup moved bytes in the last 30 ms.
    """

    def __init__(self) -> None:
        self.last_move = -math.inf

    def moved(self) -> None:
        self.last_move = time.monotonic()

    def sample(self) -> Mapping[str, float]:
        running = time.monotonic() - self.last_move < 0.03
        return {"api.latency_s": 0.020 if running else 0.010}


def test_the_whole_loop_on_the_real_clock_finds_and_cuts_a_real_harm() -> None:
    """A guard with shaping, a production that slows while the backup runs: the
    scheduled pauses measure production without the backup, the outer loop sees
    +100 % against them and cuts the backup's share; no pause lasts beyond its
    budget."""
    prod = SyntheticProduction()
    shaper = Shaper(
        pauses=PauseSchedule(every=2.0, pause=0.2),
        interval=0.05,
        settle=0.06,
        outer_interval=0.5,
        min_samples=4,
    )
    analyzer = wg.ImpactAnalyzer(
        wg.Thresholds(
            api_latency=None, db_latency=None, backup_cpu=None, backup_memory=None,
            backup_network=None,
        )
    )  # fmt: skip
    guard = wg.Guard(
        rate="20MB/s", calendar=None, sources=[prod], sinks=[], analyzer=analyzer,
        shaping=shaper,
    )  # fmt: skip
    gaps: list[float] = []
    probing_seen = False
    try:
        with guard.session("backup") as s:
            deadline = time.monotonic() + 30.0
            last = time.monotonic()
            while time.monotonic() < deadline:
                s.throttle(16 << 10)
                prod.moved()
                now = time.monotonic()
                gaps.append(now - last)
                last = now
                if any(r.startswith("probing:") for r in guard.decision().reasons):
                    probing_seen = True
                if shaper.last is not None and shaper.last.verdict is wg.Verdict.THROTTLE:
                    break
            d = guard.decision()
    finally:
        guard.close()
    assert shaper.last is not None
    assert shaper.last.verdict is wg.Verdict.THROTTLE, shaper.last.reasons
    assert shaper.last.effect > 0.5  # +100 % by construction
    assert shaper.factor < 1.0
    assert d.rate < 20e6
    assert any(r.startswith("causal:") for r in d.reasons)
    # the pauses happened, and none held the backup much past its 0.2 s (a loaded
    # machine may add a scheduling delay, not another pause)
    assert probing_seen or max(gaps) >= 0.15
    assert max(gaps) < 0.2 + 1.0
