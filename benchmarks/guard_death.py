"""Fault campaign: SIGKILL the guarding process while it paces a child, many times.

Run by hand (never by pytest)::

    PYTHONPATH=src python benchmarks/guard_death.py [--kills 200] [--jobs 6]

Each run starts a guarding interpreter that paces a real child (a Python program
writing a ~100-byte counter line every millisecond) at 20 kB/s, so the child is
stopped (SIGSTOP) and resumed (SIGCONT) every few tens of milliseconds; after a random
0.1-0.8 s the guarding process is SIGKILLed, and the child's state is read from
``/proc/<pid>/stat``:

* ``resume`` (the default): the child must be running again (never in state ``T``)
  and writing, and its watchdog must have exited;
* ``terminate``: the child must be gone;
* ``off`` (no watchdog, a few runs as the control): how often the child is left in
  state ``T``, as it was before the watchdog was on by default.

It also measures what the watchdog costs: the time to start it, its memory and the
CPU it uses while it waits. Results go to ``benchmarks/guard_death.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"

COUNTER = r"""
import sys, time
pad = "x" * 90
i = 0
while True:
    sys.stdout.write(f"{i:08d} {pad}\n"); sys.stdout.flush()
    i += 1
    time.sleep(0.001)
"""

GUARD = r"""
import subprocess, sys
import wedguard as wg
counter, out, mode = sys.argv[1:4]
guard = wg.Guard(rate="20kB/s", calendar=None, sources=[], sinks=[])
with open(out, "wb") as f:
    child = guard.popen([sys.executable, counter], stdout=f, stderr=subprocess.DEVNULL,
                        on_guard_death=mode, interval=0.02, kill_grace=2)
    dog = child._watchdog.helper.pid if child._watchdog is not None else 0
    print(child.pid, dog, flush=True)
    child.wait()
"""


def state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return ""
    return stat[stat.rindex(b")") + 2 :].split()[0].decode()


def gone(pid: int) -> bool:
    return state(pid) in ("", "Z", "X")


def wait_for(pred: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def end_group(pid: int) -> None:
    for sig in (signal.SIGCONT, signal.SIGKILL):
        with contextlib.suppress(OSError):
            os.killpg(pid, sig)
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def one_kill(work: Path, i: int, mode: str, delay: float) -> dict[str, Any]:
    out = work / f"out-{i}.txt"
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    guard = subprocess.Popen(
        [sys.executable, str(work / "guard.py"), str(work / "counter.py"), str(out), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert guard.stdout is not None
    with guard.stdout:
        child, dog = (int(x) for x in guard.stdout.readline().split())
    try:
        time.sleep(delay)
        at_kill = state(child)
        guard.kill()
        guard.wait()
        result: dict[str, Any] = {"mode": mode, "delay_s": round(delay, 3), "at_kill": at_kill}
        if mode == "terminate":
            result["ended"] = wait_for(lambda: gone(child), 10.0)
            result["left_stopped"] = state(child) in ("T", "t")
        else:
            resumed = wait_for(
                lambda: state(child) not in ("T", "t"), 2.0 if mode == "off" else 5.0
            )
            before = out.stat().st_size
            result["left_stopped"] = not resumed
            result["writes_on"] = resumed and wait_for(
                lambda: out.stat().st_size > before + 2000, 5.0
            )
        if dog:
            result["watchdog_exited"] = wait_for(lambda: gone(dog), 10.0)
        return result
    finally:
        end_group(child)
        if dog:
            end_group(dog)
        with contextlib.suppress(OSError):
            out.unlink()


def watchdog_cost() -> dict[str, float]:
    sys.path.insert(0, str(SRC))
    from wedguard.io.process import _Watchdog

    starts, rss, uss, cpu, startup = [], [], [], [], []
    for _ in range(10):
        t0 = time.perf_counter()
        dog = _Watchdog("resume", 5.0)
        starts.append(time.perf_counter() - t0)
        time.sleep(0.5)  # started and asleep in select
        p = psutil.Process(dog.helper.pid)
        c0 = p.cpu_times()
        startup.append(c0.user + c0.system)
        time.sleep(2.0)
        c1 = p.cpu_times()
        info = p.memory_full_info()
        rss.append(info.rss)
        uss.append(info.uss)
        cpu.append((c1.user + c1.system - c0.user - c0.system) / 2.0)
        dog.close()
    return {
        "start_ms_median": sorted(starts)[len(starts) // 2] * 1000,
        "startup_cpu_ms_median": sorted(startup)[len(startup) // 2] * 1000,
        "rss_mb_median": sorted(rss)[len(rss) // 2] / 1e6,
        "uss_mb_median": sorted(uss)[len(uss) // 2] / 1e6,
        "idle_cpu_share_max": max(cpu),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=200, help="SIGKILLs with the watchdog")
    parser.add_argument("--control", type=int, default=20, help="SIGKILLs without it")
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=20261206)
    parser.add_argument("--out", default=str(HERE / "guard_death.json"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    plan = [
        ("resume" if i % 2 == 0 else "terminate", rng.uniform(0.1, 0.8)) for i in range(args.kills)
    ]
    plan += [("off", rng.uniform(0.1, 0.8)) for _ in range(args.control)]
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "counter.py").write_text(COUNTER)
        (work / "guard.py").write_text(GUARD)
        with ThreadPoolExecutor(args.jobs) as pool:
            runs = list(pool.map(lambda ix: one_kill(work, ix[0], *ix[1]), enumerate(plan)))
    elapsed = time.monotonic() - t0
    summary: dict[str, Any] = {}
    for mode in ("resume", "terminate", "off"):
        mine = [r for r in runs if r["mode"] == mode]
        summary[mode] = {
            "sigkills": len(mine),
            "stopped_at_kill": sum(r["at_kill"] == "T" for r in mine),
            "left_stopped": sum(r["left_stopped"] for r in mine),
            "not_writing_after": sum(not r.get("writes_on", True) for r in mine),
            "not_ended": sum(not r.get("ended", True) for r in mine),
            "watchdog_left": sum(not r.get("watchdog_exited", True) for r in mine),
        }
    cost = watchdog_cost()
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "seed": args.seed,
        "elapsed_s": round(elapsed, 1),
        "summary": summary,
        "watchdog_cost": cost,
        "runs": runs,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for mode, s in summary.items():
        print(
            f"{mode:9}: {s['sigkills']} SIGKILLs ({s['stopped_at_kill']} while the child was "
            f"stopped): left stopped {s['left_stopped']}, not writing after "
            f"{s['not_writing_after']}, not ended {s['not_ended']}, "
            f"watchdogs left {s['watchdog_left']}"
        )
    print(
        f"watchdog: start {cost['start_ms_median']:.1f} ms "
        f"({cost['startup_cpu_ms_median']:.0f} ms CPU), RSS {cost['rss_mb_median']:.1f} MB "
        f"(USS {cost['uss_mb_median']:.1f} MB), CPU while waiting "
        f"{cost['idle_cpu_share_max'] * 100:.3f} % of a core; {elapsed:.0f} s in all"
    )
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
