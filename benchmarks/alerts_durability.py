"""What a durable ``fire()`` costs, and what SIGKILL does to alerts with and without it.

Run: ``PYTHONPATH=src python benchmarks/alerts_durability.py [KILLS]`` (default 200).
It writes ``benchmarks/alerts_durability.json`` and prints a table.

1. Cost: ``fire(alert)`` (a queue append) against ``fire(alert, durable=True)`` (the
   alert is written to the spool and fsync'ed before the call returns), on a spool in
   the system's temporary directory. Median and 99th percentile per call.
2. SIGKILL: ``KILLS`` child processes each open a dispatcher on their own spool, fire
   alerts one after another and print each key once ``fire`` has returned; the parent
   SIGKILLs the child the moment it has read 1 to 5 keys. A dispatcher restarted on the
   child's spool then delivers what it finds; an alert whose key was printed and that
   is not delivered is lost. Done once with ``durable=True`` and once without.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wedguard.runtime.alerts import Alert, AlertDispatcher, Notification, Severity
from wedguard.testing import RecordingSink

CHILD = """
import sys
from wedguard.runtime.alerts import Alert, AlertDispatcher, Severity
from wedguard.testing import RecordingSink
spool, name, durable = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
d = AlertDispatcher(routes={Severity.HIGH: [RecordingSink()]}, group_wait=3600, spool=spool)
for i in range(1000):
    d.fire(Alert(f"{name}/{i}", Severity.HIGH, "halted"), durable=durable)
    print(i, flush=True)
sys.stdin.read()
"""

PARALLEL = 10


def cost(n: int, durable: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        d = AlertDispatcher(
            routes={Severity.HIGH: [RecordingSink()]},
            group_wait=3600,
            spool=Path(tmp) / "alerts.spool",
            queue_size=2 * n + 10,
        )
        times = []
        for i in range(n):
            alert = Alert(f"k{i}", Severity.HIGH, "x")
            t0 = time.perf_counter_ns()
            d.fire(alert, durable=durable)
            times.append(time.perf_counter_ns() - t0)
        d.close(0)
    times.sort()
    return {
        "calls": n,
        "median_us": statistics.median(times) / 1000,
        "p99_us": times[int(len(times) * 0.99)] / 1000,
    }


def kills(count: int, durable: bool) -> dict[str, int]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    fired = lost = 0
    with tempfile.TemporaryDirectory() as tmp:
        acknowledged: dict[Path, list[str]] = {}
        for start in range(0, count, PARALLEL):
            batch = []
            for n in range(start, min(count, start + PARALLEL)):
                spool = Path(tmp) / f"c{n}.spool"
                proc = subprocess.Popen(
                    [sys.executable, "-c", CHILD, str(spool), f"c{n}", "1" if durable else "0"],
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                batch.append((proc, spool, n))
            for proc, spool, n in batch:
                assert proc.stdout is not None
                assert proc.stdin is not None
                keys = [f"c{n}/{proc.stdout.readline().split()[0]}" for _ in range(1 + n % 5)]
                proc.send_signal(signal.SIGKILL)
                acknowledged[spool] = keys
            for proc, _spool, _n in batch:
                proc.wait(30)
                assert proc.stdin is not None
                assert proc.stdout is not None
                proc.stdin.close()
                proc.stdout.close()
        for spool, keys in acknowledged.items():
            sink = RecordingSink()
            with AlertDispatcher(routes={Severity.HIGH: [sink]}, spool=spool) as d:
                d.flush(10)
            told = {a.key for n in sink.events if isinstance(n, Notification) for a in n.alerts}
            fired += len(keys)
            lost += sum(1 for k in keys if k not in told)
    return {"kills": count, "alerts_fired": fired, "alerts_lost": lost}


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    results = {
        "machine": f"{os.cpu_count()} cores, {platform.system()}, CPython {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "fire": cost(20_000, durable=False),
        "fire_durable": cost(500, durable=True),
        "sigkill_durable": kills(count, durable=True),
        "sigkill_plain": kills(count, durable=False),
    }
    out = Path(__file__).with_name("alerts_durability.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
