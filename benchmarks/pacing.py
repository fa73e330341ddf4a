"""What pacing a child costs the guarding process, at several rates.

Run by hand (never by pytest)::

    PYTHONPATH=src python benchmarks/pacing.py [--seconds 8] [--out benchmarks/pacing.json]

A child writes 64 KiB blocks to /dev/null with a short sleep between them (about
80-120 MB/s on its own, like a fast dump), so the guard must hold it back at every rate
below. The guard paces it with
``guard.popen(..., io_rate=RATE)``; for each rate the script measures, over the same
seconds of the child's life:

* the CPU the guarding process uses (every thread: the monitor, the sampler), as a
  share of one core (goal: at most 5 %);
* how many times per second the child is stopped (SIGSTOP or cgroup freeze);
* the rate the child achieved against the rate it was allowed (its ``wchar``);
* the worst one-second window of the child's I/O against the allowed rate, so a
  cheaper pacing that is too bursty would show.

Results go to the JSON file (``--out``) and a table on stdout. To measure older code,
put its ``wedguard/io/process.py`` first on ``PYTHONPATH`` and pass ``--label``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

import wedguard as wg

HERE = Path(__file__).resolve().parent

CHILD = r"""
import os, time
block = b"x" * 65536
fd = os.open(os.devnull, os.O_WRONLY)
while True:
    os.write(fd, block)
    time.sleep(0.0005)
"""


def wchar(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


def pace(rate: float, seconds: float, freeze: str) -> dict[str, Any]:
    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[])
    me = psutil.Process()
    child = guard.popen([sys.executable, "-c", CHILD], io_rate=rate, freeze=freeze)
    try:
        # past the start: the child's first burst (before the first reading) puts it
        # in debt for a while; measure once it has been stopped and resumed a few times
        end = time.monotonic() + 30
        while child.report().pauses < 3 and time.monotonic() < end:
            time.sleep(0.1)
        time.sleep(0.5)
        pauses0 = child.report().pauses
        c0, w0, t0 = me.cpu_times(), wchar(child.pid), time.perf_counter()
        windows = []
        last_w, last_t = w0, t0
        while time.perf_counter() - t0 < seconds:
            time.sleep(1.0)
            w, t = wchar(child.pid), time.perf_counter()
            windows.append((w - last_w) / (t - last_t))
            last_w, last_t = w, t
        c1, w1, t1 = me.cpu_times(), wchar(child.pid), time.perf_counter()
        pauses1 = child.report().pauses
        report = child.report()
    finally:
        child.abort("benchmark done")
        child.wait(10)
        child.close()
        guard.close()
    span = t1 - t0
    cpu = (c1.user + c1.system - c0.user - c0.system) / span
    return {
        "rate": rate,
        "freeze": report.freeze,
        "cpu_share_of_a_core": cpu,
        "stops_per_s": (pauses1 - pauses0) / span,
        "achieved_over_allowed": (w1 - w0) / span / rate,
        "worst_1s_window_over_allowed": max(windows) / rate,
        "seconds": span,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rates", default="1MB/s,5MB/s,20MB/s,50MB/s")
    parser.add_argument("--freeze", default="auto", choices=("auto", "signal", "cgroup"))
    parser.add_argument("--out", default=str(HERE / "pacing.json"))
    parser.add_argument("--label", default="", help="what code was measured, for the file")
    args = parser.parse_args()
    rows = []
    for text in args.rates.split(","):
        rate = wg.parse_rate(text)
        row = pace(rate, args.seconds, args.freeze)
        row["rate_text"] = text
        rows.append(row)
        print(
            f"{text:>9}: guard CPU {row['cpu_share_of_a_core'] * 100:5.2f} % of a core, "
            f"{row['stops_per_s']:6.1f} stops/s ({row['freeze']}), achieved "
            f"{row['achieved_over_allowed']:.3f}x allowed, worst 1 s window "
            f"{row['worst_1s_window_over_allowed']:.2f}x",
            flush=True,
        )
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "label": args.label,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
