"""Pacing a child cheaply: few stops a second at any rate, the tree read from its own
/proc files, and stopped descendants resumed even after they were reparented."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

import wedguard as wg
from wedguard.io.freezing import _SignalFreezer
from wedguard.io.process import children_of, descendant_pids

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups and signals")

# about 1 MB/s on its own: 1000-byte lines every 0.5 ms, flushed
WRITER = r"""
import sys, time
pad = "x" * 990
i = 0
while True:
    sys.stdout.write(f"{i:08d} {pad}\n"); sys.stdout.flush()
    i += 1
    time.sleep(0.0005)
"""

# a child that starts a grandchild in a session of its own, prints its pid, and waits
FAMILY = r"""
import subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                              start_new_session=True)
print(grandchild.pid, flush=True)
time.sleep(60)
"""


def wait_for(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def state(pid: int) -> str:
    try:
        return psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return ""


def test_a_paced_child_is_stopped_a_few_times_a_second(tmp_path: Path, reap: list[int]) -> None:
    """At 200 kB/s a child that would write 1 MB/s is stopped at most a few times a
    second (each stop and resume costs the guard signals and readings), and the rate
    it achieves is the rate it was allowed."""
    rate = 200_000.0
    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[])
    out = tmp_path / "out.txt"
    with (
        out.open("wb") as f,
        guard.popen([sys.executable, "-c", WRITER], stdout=f, io_rate=rate) as c,
    ):
        reap.append(c.pid)
        wait_for(lambda: c.report().pauses >= 2)
        time.sleep(0.3)
        p0, s0, t0 = c.report().pauses, out.stat().st_size, time.monotonic()
        time.sleep(4.0)
        p1, s1, t1 = c.report().pauses, out.stat().st_size, time.monotonic()
        c.abort("done")
        c.wait(10)
    stops_per_s = (p1 - p0) / (t1 - t0)
    achieved = (s1 - s0) / (t1 - t0)
    assert 0.5 <= stops_per_s <= 6.0, stops_per_s
    assert rate * 0.85 <= achieved <= rate * 1.15, f"{achieved:.0f} B/s against {rate:.0f}"


def test_descendant_pids_match_psutil(reap: list[int]) -> None:
    child = subprocess.Popen([sys.executable, "-c", FAMILY], stdout=subprocess.PIPE)
    reap.append(child.pid)
    assert child.stdout is not None
    with child.stdout:
        grandchild = int(child.stdout.readline())
    reap.append(grandchild)
    mine = descendant_pids(os.getpid())
    assert mine.index(child.pid) < mine.index(grandchild)  # parents first
    assert set(descendant_pids(child.pid)) == {grandchild}
    assert {p.pid for p in children_of(child.pid)} == {grandchild}
    assert descendant_pids(grandchild) == []
    child.kill()
    child.wait()
    assert descendant_pids(child.pid) == []  # gone (a zombie has no children)


def test_a_stopped_descendant_is_resumed_after_it_was_reparented(reap: list[int]) -> None:
    """The signal freezer stops a descendant that left the child's group; if the
    child then dies, the descendant is no longer in its tree, and is resumed all
    the same."""
    child = subprocess.Popen(
        [sys.executable, "-c", FAMILY], stdout=subprocess.PIPE, start_new_session=True
    )
    reap.append(child.pid)
    assert child.stdout is not None
    with child.stdout:
        grandchild = int(child.stdout.readline())
    reap.append(grandchild)
    freezer = _SignalFreezer(child.pid)
    freezer.freeze()
    wait_for(lambda: state(grandchild) == psutil.STATUS_STOPPED)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    wait_for(lambda: psutil.Process(grandchild).ppid() != child.pid)
    freezer.thaw()
    wait_for(lambda: state(grandchild) not in (psutil.STATUS_STOPPED, ""))
