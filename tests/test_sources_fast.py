"""Fast signals: run-queue wait from schedstat, PSI counters, and what cannot be read."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wedguard as wg
from wedguard.runtime.watch import ProbeWatch
from wedguard.sources.pressure import PressureSource
from wedguard.sources.runqueue import RunQueueSource, parse_schedstat

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc on Linux")


class Ticks:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def fake_proc(root: Path, pid: int, comm: str, threads: dict[int, tuple[int, int]]) -> None:
    d = root / str(pid)
    (d / "task").mkdir(parents=True, exist_ok=True)
    (d / "comm").write_text(comm + "\n")
    for tid, (run, wait) in threads.items():
        (d / "task" / str(tid)).mkdir(exist_ok=True)
        (d / "task" / str(tid) / "schedstat").write_text(f"{run} {wait} 7\n")


def test_run_queue_wait_per_second_from_fake_files(tmp_path: Path) -> None:
    t = Ticks()
    fake_proc(tmp_path, 100, "postgres", {100: (1_000, 2_000), 101: (5_000, 0)})
    fake_proc(tmp_path, 200, "postgres", {200: (0, 0)})
    fake_proc(tmp_path, 300, "backup", {300: (0, 0)})
    src = RunQueueSource(names=["postgres"], proc_root=tmp_path, monotonic=t)
    assert src.sample() == {}  # nothing to compare with yet
    t.t = 0.5
    # 0.5 s later: 30 ms more waiting in all, 70 ms more running; the backup's own
    # threads are not counted
    fake_proc(tmp_path, 100, "postgres", {100: (20_001_000, 22_002_000), 101: (50_005_000, 0)})
    fake_proc(tmp_path, 200, "postgres", {200: (0, 8_000_000)})
    fake_proc(tmp_path, 300, "backup", {300: (0, 900_000_000)})
    out = src.sample()
    assert out["prod.runq_ratio"] == pytest.approx(0.030 / 0.5)
    assert out["prod.runq_share"] == pytest.approx(0.030 / (0.030 + 0.070))


def test_a_process_that_is_gone_is_a_failed_reading(tmp_path: Path) -> None:
    t = Ticks()
    fake_proc(tmp_path, 100, "api", {100: (1, 1)})
    src = RunQueueSource(pids=[100], proc_root=tmp_path, monotonic=t)
    src.sample()
    (tmp_path / "100" / "task" / "100" / "schedstat").unlink()
    t.t = 1.0
    assert src.sample() == {"prod.runq_ratio.error": 1.0, "prod.runq_share.error": 1.0}
    # and an analyser given the fast caps does not read that as OK
    a = wg.ImpactAnalyzer(wg.Thresholds.with_fast_signals())
    assert a.assess({"prod.runq_ratio.error": 1.0}).verdict is wg.Verdict.THROTTLE


@linux
def test_real_proc_sees_a_thread_wait_for_the_cpu() -> None:
    """Two more busy threads than CPUs wait for each other, and the source sees the
    waiting (real /proc, this process's own threads)."""
    src = RunQueueSource(pids=[os.getpid()])
    src.sample()
    stop = time.monotonic() + 0.6

    def spin() -> None:
        while time.monotonic() < stop:
            pass

    threads = [threading.Thread(target=spin) for _ in range((os.cpu_count() or 1) + 2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    out = src.sample()
    assert out["prod.runq_ratio"] > 0.0
    assert 0.0 < out["prod.runq_share"] < 1.0


@given(st.text(max_size=40))
def test_schedstat_parsing_never_misreads(text: str) -> None:
    try:
        run, wait = parse_schedstat(text)
    except ValueError:
        return
    fields = text.split()
    assert (run, wait) == (int(fields[0]), int(fields[1]))
    assert run >= 0
    assert wait >= 0


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({}, "pids"),
        ({"pids": [0]}, "pids"),
        ({"names": ["a/b"]}, "names"),
        ({"pids": [1], "prefix": ""}, "prefix"),
    ],
)
def test_bad_run_queue_sources_are_refused(kw: dict[str, object], field: str) -> None:
    with pytest.raises(wg.ConfigError) as info:
        RunQueueSource(**kw)  # type: ignore[arg-type]
    assert info.value.field == field


def test_psi_counter_deltas_from_fake_files(tmp_path: Path) -> None:
    t = Ticks()
    cpu = tmp_path / "cpu"
    cpu.write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=1000000\n")
    src = PressureSource(resources=("cpu",), proc_root=tmp_path, monotonic=t)
    src.sample()
    t.t = 0.25
    # 50 ms stalled in 250 ms: 20 %, long before avg10 moves
    cpu.write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=1050000\n")
    assert src.sample()["pressure.cpu.some_percent"] == pytest.approx(20.0)


def test_psi_never_readable_is_unavailable_then_an_error_once_seen(tmp_path: Path) -> None:
    t = Ticks()
    src = PressureSource(
        resources=("io",), proc_root=tmp_path, monotonic=t, unreadable="unavailable"
    )
    out = src.sample()
    assert out["pressure.io.some_percent.unavailable"] == 1.0
    assert not any(k.endswith(".error") for k in out)
    # the analyser with the fast caps does not judge it: no harm read into it
    a = wg.ImpactAnalyzer(wg.Thresholds.with_fast_signals())
    assert a.assess(out).verdict is wg.Verdict.OK
    (tmp_path / "io").write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n")
    assert "pressure.io.some_avg10" in src.sample()
    (tmp_path / "io").unlink()
    assert src.sample()["pressure.io.some_percent.error"] == 1.0  # lost after being read
    with pytest.raises(wg.ConfigError) as info:
        PressureSource(unreadable="quiet")
    assert info.value.field == "unreadable"


@linux
@pytest.mark.skipif(not os.path.exists("/proc/pressure/cpu"), reason="a kernel without PSI")
def test_host_psi_is_read_on_this_kernel() -> None:
    src = PressureSource(resources=("cpu", "io"), unreadable="unavailable")
    src.sample()
    time.sleep(0.05)
    out = src.sample()
    for metric in ("pressure.cpu.some_percent", "pressure.io.some_percent"):
        assert 0.0 <= out[metric] <= 100.0


def test_an_unreadable_signal_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    w = ProbeWatch(repeat=1.0)
    lines = []
    for i in range(5):
        lines += w.update({"pressure.cpu.some_percent.unavailable": 1.0}, now=float(i * 10))
    assert lines == [
        (
            logging.WARNING,
            "signal pressure.cpu.some_percent cannot be read on this system; "
            "the guard does not judge it",
        )
    ]
