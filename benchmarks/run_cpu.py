"""What the `wedguard run` command costs while it paces a command, at several rates.

Run by hand (never by pytest)::

    PYTHONPATH=src python benchmarks/run_cpu.py [--seconds 10] [--out benchmarks/results/run_cpu.json]

``benchmarks/pacing.py`` measures the pacing alone (a bare ``guard.popen`` in the
benchmark's own process). This script measures the whole command a user types::

    wedguard run --config wedguard.toml -- <a command writing as fast as it can>

with the configuration's default sources (the system source, sampled every second),
its control socket and status file, its watchdog, and the calendar switched off so that
the rate asked for is the rate in force. For each rate it measures, over the same
seconds of the command's life (after a warm-up, so the interpreter's start is not
counted):

* the CPU of the ``wedguard`` process and of its own helpers (the watchdog), not of the
  command it runs, as a share of one core (goal: at most 5 % at 5 MB/s);
* the rate the command achieved against the rate it was allowed (its ``wchar``).

The CPU of the start (the interpreter, imports, the guard's construction) is reported
apart, in CPU seconds. Results go to the JSON file (``--out``) and a table on stdout;
the processes page quotes them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

import wedguard as wg

HERE = Path(__file__).resolve().parent
MARK = "wedguard-run-cpu-child"
CHILD = rf"""
import os, sys, time
assert sys.argv[1] == {MARK!r}
block = b"x" * 65536
fd = os.open(os.devnull, os.O_WRONLY)
while True:
    os.write(fd, block)
    time.sleep(0.0005)
"""
CONFIG = """\
[guard]
rate = "{rate}"

[calendar]
preset = "none"
"""


def wchar(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


def cpu_of(procs: list[psutil.Process]) -> float:
    """CPU seconds (user + system) of ``procs``, those still there."""
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def guard_side(cli: psutil.Process) -> tuple[list[psutil.Process], psutil.Process | None]:
    """The ``wedguard`` process with its helpers, and the command it runs."""
    others = cli.children(recursive=True)
    command = None
    for p in others:
        try:
            if MARK in p.cmdline():
                command = p
        except psutil.NoSuchProcess:
            continue
    mine: set[int] = set()
    if command is not None:
        mine = {command.pid, *(c.pid for c in command.children(recursive=True))}
    return [cli, *(p for p in others if p.pid not in mine)], command


def measure(rate_text: str, seconds: float, warmup: float, work: Path) -> dict[str, Any]:
    rate = wg.parse_rate(rate_text)
    config = work / "wedguard.toml"
    config.write_text(CONFIG.format(rate=rate_text))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEDGUARD_")}
    env["WEDGUARD_RUN_DIR"] = str(work / "run")
    argv = [sys.executable, "-m", "wedguard", "run", "--config", str(config), "--",
            sys.executable, "-c", CHILD, MARK]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cli = psutil.Process(proc.pid)
    try:
        command = None
        while command is None and time.perf_counter() - started < 30:
            time.sleep(0.05)
            _helpers, command = guard_side(cli)
        if command is None:
            raise RuntimeError("the command did not start under wedguard run")
        time.sleep(warmup)
        helpers, _ = guard_side(cli)
        start_cpu = cpu_of(helpers)
        c0, w0, t0 = start_cpu, wchar(command.pid), time.perf_counter()
        time.sleep(seconds)
        c1, w1, t1 = cpu_of(helpers), wchar(command.pid), time.perf_counter()
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for p in psutil.process_iter(["cmdline"]):
            if MARK in (p.info["cmdline"] or []):
                p.kill()
    span = t1 - t0
    return {
        "rate_text": rate_text,
        "rate": rate,
        "cpu_share_of_a_core": (c1 - c0) / span,
        "start_cpu_s": start_cpu,
        "warmup_s": warmup,
        "achieved_over_allowed": (w1 - w0) / span / rate,
        "helpers": len(helpers) - 1,
        "seconds": span,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--rates", default="1MB/s,5MB/s,20MB/s")
    parser.add_argument("--out", default=str(HERE / "results" / "run_cpu.json"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="wg-run-cpu-") as tmp:
        for text in args.rates.split(","):
            row = measure(text, args.seconds, args.warmup, Path(tmp))
            rows.append(row)
            print(
                f"{text:>9}: wedguard run CPU {row['cpu_share_of_a_core'] * 100:5.2f} % of a "
                f"core ({row['helpers']} helper(s)), start {row['start_cpu_s']:.2f} CPU s, "
                f"achieved {row['achieved_over_allowed']:.3f}x allowed",
                flush=True,
            )
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "rows": rows,
        "by_rate": {row["rate_text"]: row for row in rows},
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
