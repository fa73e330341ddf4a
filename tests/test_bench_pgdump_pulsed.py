"""The causal pg_dump benchmark: its verdicts follow from its own figures, and the
harness holds a backup's processes stopped without undoing a pause of the guard's.

``benchmarks/results/pgdump-pulsed.json`` (priorities and the guard),
``pgdump-pinned.json`` (the dump confined to one core), ``pgdump-mechanism.json``
(busy cores, no dump), ``pgdump-confined.json`` (the backend confined at its start,
beside the stand-ins), ``pgdump-self.json`` (the guard's own threads, the guard as
it comes), ``pgdump-auto.json``, ``pgdump-shm.json`` (written to memory) and
``pgdump-idle.json`` (the confined dump at ``SCHED_IDLE``) and ``pgdump-writeback.json``
(the dump kept, written back steadily or fsync'ed at its end) and ``pgdump-lowered.json``
(the defaults' priorities on the confined dump) and ``pgdump-fair.json`` (the guard as
it comes, repeated) and ``pgdump-slice.json`` (short CPU slices, one busy core) and ``pgdump-paced.json`` (the
confined dump paced) and ``pgdump-long.json`` (140 pairs: the A/A's resolution) hold per scenario the pooled ratios and the dump's bytes; the
goal's verdicts and the shares the docs quote are recomputed from them here, so
neither can be edited apart from the other.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from script_helpers import load_script

ROOT = Path(__file__).resolve().parent.parent
RESULTS = [
    ROOT / "benchmarks" / "results" / f"pgdump-{name}.json"
    for name in (
        "pulsed",
        "pinned",
        "mechanism",
        "confined",
        "self",
        "auto",
        "shm",
        "idle",
        "writeback",
        "lowered",
        "fair",
        "slice",
        "paced",
        "long",
    )
]


bench = load_script(ROOT / "benchmarks" / "pgdump_pulsed.py", "bench_pgdump_pulsed")


@pytest.mark.parametrize("results", RESULTS, ids=lambda p: p.stem)
def test_the_verdicts_and_shares_follow_from_the_scenarios(results: Path) -> None:
    r = json.loads(results.read_text())
    scenarios = r["scenarios"]
    assert r["goal"] == bench.goal(scenarios)
    assert {"none", "unguarded"} <= set(scenarios) <= {*bench.SCENARIOS, *bench.MECHANISM}
    unguarded = scenarios["unguarded"]["bytes_per_on_s"]
    alone = r["config"]["dump_alone_bytes_per_s"]
    for name, s in scenarios.items():
        # every scenario has both sides of every pair
        assert s["pairs"] > 0
        assert min(s["requests"]["on"], s["requests"]["off"]) > 0
        for q in ("p50", "p95", "p99"):
            assert s[q]["low"] <= s[q]["ratio"] <= s[q]["high"]
        if name == "none":
            assert (s["bytes"], s["dumps_completed"]) == (0, 0)
            continue
        # bytes per ON second (on_seconds is rounded to 0.1 s)
        assert abs(s["bytes_per_on_s"] * s["on_seconds"] - s["bytes"]) <= 0.01 * s["bytes"]
        assert s["kept"] == s["bytes_per_on_s"] / unguarded
        assert s["vs_alone"] == s["bytes_per_on_s"] / alone
    completed = sum(s["dumps_completed"] for s in scenarios.values())
    assert r["dumps_checked"] == completed > 0
    for name in set(scenarios) & set(bench.MECHANISM):  # a busy core, no dump
        assert scenarios[name]["bytes"] == scenarios[name]["dumps_completed"] == 0
    assert r["dumps_corrupt"] == 0
    assert all(
        v["restored"] and all(v["static_tables_equal"].values()) for v in r["verified"].values()
    )


def test_a_dump_counts_only_the_on_windows_it_ran_through() -> None:
    windows = [(0.0, 2.0, True), (2.0, 4.0, False), (4.0, 6.0, False), (6.0, 8.0, True)]
    assert bench.on_overlap(1.0, 7.0, windows) == 2.0
    assert bench.on_overlap(2.5, 5.0, windows) == 0.0
    assert bench.on_overlap(0.0, 8.0, windows) == 4.0


def test_the_goal_needs_the_whole_interval_under_the_limit() -> None:
    def row(ratio: float, low: float, high: float, kept: float) -> dict[str, object]:
        return {"p95": {"ratio": ratio, "low": low, "high": high}, "kept": kept}

    within = bench.goal(
        {
            "none": row(1.0, 0.97, 1.03, 0.0),
            "unguarded": row(2.0, 1.8, 2.2, 1.0),
            "guarded_run": row(1.03, 0.99, 1.04, 0.5),
            "guarded_backend": row(1.1, 1.0, 1.21, 0.5),
        }
    )
    assert (within["guarded_run_says"], within["guarded_run_strict_says"]) == ("shown", "met")
    assert within["guarded_backend_says"] == "not shown"  # its interval reaches past +20 %
    assert within["aa_half_width"] == 0.03
    unclear = bench.goal({"unguarded": row(1.3, 1.15, 1.5, 1.0), "guarded_run": row(1, 1, 1, 0.2)})
    assert unclear["unguarded_says"] == "does not exceed"
    assert unclear["guarded_run_says"] == "not shown"  # the unguarded dump is not shown above
    assert unclear["guarded_run_strict_says"] == "not met"  # 20 % kept is under 30 %


def _state(pid: int) -> str:
    return str(psutil.Process(pid).status())


def test_the_backup_is_held_stopped_and_a_pause_of_its_own_survives() -> None:
    """The driver and its descendants stop; on SIGCONT the one that was already
    stopped (as a guard pauses its child) stays stopped."""
    code = (
        "import subprocess, sys\n"
        "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])"
        " for _ in range(2)]\n"
        "[k.wait() for k in kids]\n"
    )
    backup = bench.Backup([sys.executable, "-c", code], dict(os.environ))
    try:
        deadline = time.monotonic() + 20
        while len(backup.descendants()) < 2:
            assert time.monotonic() < deadline, "the children did not start"
            time.sleep(0.05)
        paused, running = (c.pid for c in backup.descendants())
        os.kill(paused, signal.SIGSTOP)  # the guard's own pause
        bench.wait_stopped(paused, 2.0)
        backup.stop()
        backup.stop()  # two OFF windows in a row
        bench.wait_stopped(running, 2.0)
        stopped = psutil.STATUS_STOPPED
        assert [_state(p) for p in (backup.proc.pid, paused, running)] == [stopped] * 3
        backup.cont()
        time.sleep(0.1)
        assert _state(paused) == stopped
        assert _state(running) != stopped
        assert _state(backup.proc.pid) != stopped
    finally:
        for c in backup.descendants():
            c.kill()
        os.killpg(backup.proc.pid, signal.SIGKILL)
        backup.proc.wait(10)
