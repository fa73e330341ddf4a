"""Cost of each source's sample(), side by side with the raw calls it is built on.

Run: ``PYTHONPATH=src python benchmarks/sources.py`` (or ``nox -s bench -- sources``).
Prints a Markdown table: microseconds per call (median of several runs) and the ratio
to the closest peer (the bare psutil calls, urllib, prometheus_client's parser). The
rows marked "1 s asleep" time single calls made after a second's sleep, as a 1 Hz
sampler makes them (CPU time of the calling thread, median of five): with the caches
cold they cost many times their warm figure.
Shared, noisy machines: read the ratios, not the absolute figures.
"""

from __future__ import annotations

import http.server
import math
import statistics
import threading
import time
import timeit
import urllib.request
from collections.abc import Callable

import psutil

from wedguard.sources import (
    CallableProbe,
    HttpProbe,
    PressureSource,
    ProcessSource,
    ServiceLatencySource,
    SystemSource,
)
from wedguard.sources.service import histogram_quantile, parse_histogram


def exposition() -> bytes:
    lines = ["# TYPE http_request_duration_seconds histogram"]
    for handler in range(20):
        cum = 0
        for i, le in enumerate([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, math.inf]):
            cum += 10 * (i + 1)
            le_text = "+Inf" if math.isinf(le) else f"{le:g}"
            lines.append(
                f'http_request_duration_seconds_bucket{{handler="/h{handler}",method="GET",le="{le_text}"}} {cum}'
            )
        lines.append(f'http_request_duration_seconds_count{{handler="/h{handler}"}} {cum}')
        lines.append(f'http_request_duration_seconds_sum{{handler="/h{handler}"}} {cum * 0.1}')
    lines.extend(f"other_metric_{i} {i}" for i in range(100))
    return ("\n".join(lines) + "\n").encode()


BODY = exposition()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = BODY if self.path == "/metrics" else b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def per_call_us(fn: Callable[[], object], number: int, repeat: int = 5) -> float:
    fn()  # warm up
    runs = timeit.repeat(fn, number=number, repeat=repeat)
    return statistics.median(runs) / number * 1e6


def cold_us(fns: list[Callable[[], object]], rounds: int = 5) -> list[float]:
    """Each call's median CPU µs after a second asleep (as a 1 Hz sampler calls it)."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            time.sleep(1.0)
            start = time.thread_time()
            fn()
            times[i].append((time.thread_time() - start) * 1e6)
    return [statistics.median(t) for t in times]


def main() -> None:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"

    def raw_psutil() -> None:
        psutil.cpu_percent(None)
        psutil.virtual_memory()
        psutil.disk_io_counters(perdisk=True)
        psutil.net_io_counters()

    proc = psutil.Process()

    def raw_process() -> None:
        with proc.oneshot():
            proc.cpu_times()
            proc.memory_info()
        for c in proc.children(recursive=True):
            c.cpu_times()

    def raw_urllib() -> None:
        with urllib.request.urlopen(base + "/ok", timeout=2) as r:
            r.read()

    def raw_pressure() -> None:
        for res in ("cpu", "io", "memory"):
            try:
                with open(f"/proc/pressure/{res}") as f:
                    f.read()
            except OSError:
                pass

    def noop_in_thread() -> None:
        t = threading.Thread(target=lambda: None)
        t.start()
        t.join()

    def our_parse() -> None:
        b = parse_histogram(BODY.decode(), "http_request_duration_seconds")
        histogram_quantile(0.95, b)

    rows: list[tuple[str, float, str, float | None]] = []
    try:
        from prometheus_client.parser import text_string_to_metric_families

        def prom_parse() -> None:
            for fam in text_string_to_metric_families(BODY.decode()):
                if fam.name == "http_request_duration_seconds":
                    list(fam.samples)

        peer_parse: float | None = per_call_us(prom_parse, 50)
    except ImportError:  # pragma: no cover
        peer_parse = None

    n = 200
    rows.append(
        (
            "SystemSource().sample()",
            per_call_us(SystemSource().sample, n),
            "bare psutil calls",
            per_call_us(raw_psutil, n),
        )
    )
    rows.append(
        (
            "SystemSource(procfs=None).sample()",
            per_call_us(SystemSource(procfs=None).sample, n),
            "bare psutil calls",
            per_call_us(raw_psutil, n),
        )
    )
    cold_ours, cold_psutil, cold_ps_source = cold_us(
        [SystemSource().sample, raw_psutil, SystemSource(procfs=None).sample]
    )
    rows.append(
        ("SystemSource().sample(), 1 s asleep before", cold_ours, "bare psutil calls", cold_psutil)
    )
    rows.append(
        (
            "SystemSource(procfs=None).sample(), 1 s asleep",
            cold_ps_source,
            "bare psutil calls",
            cold_psutil,
        )
    )
    rows.append(
        (
            "ProcessSource().sample()",
            per_call_us(ProcessSource().sample, n),
            "bare psutil.Process calls",
            per_call_us(raw_process, n),
        )
    )
    rows.append(
        (
            "PressureSource().sample()",
            per_call_us(PressureSource().sample, n),
            "reading /proc/pressure/*",
            per_call_us(raw_pressure, n),
        )
    )
    rows.append(
        (
            "CallableProbe(noop).sample()",
            per_call_us(CallableProbe(lambda: None).sample, n),
            "noop in a new thread (start + join)",
            per_call_us(noop_in_thread, n),
        )
    )
    rows.append(
        (
            "HttpProbe(local).sample()",
            per_call_us(HttpProbe(base + "/ok").sample, 50),
            "urllib.request.urlopen",
            per_call_us(raw_urllib, 50),
        )
    )
    rows.append(
        (
            "parse_histogram + p95 (~300 lines)",
            per_call_us(our_parse, 50),
            "prometheus_client parser",
            peer_parse,
        )
    )
    svc = ServiceLatencySource(base + "/metrics")
    rows.append(
        (
            "ServiceLatencySource(local).sample()",
            per_call_us(svc.sample, 50),
            "urllib.request.urlopen",
            per_call_us(raw_urllib, 50),
        )
    )
    srv.shutdown()
    srv.server_close()

    print("| operation | µs per call | peer | peer µs | ratio |")
    print("|---|---:|---|---:|---:|")
    for name, ours, peer, theirs in rows:
        ratio = f"{ours / theirs:.2f}x" if theirs else "n/a"
        theirs_text = f"{theirs:.1f}" if theirs is not None else "n/a"
        print(f"| {name} | {ours:.1f} | {peer} | {theirs_text} | {ratio} |")


if __name__ == "__main__":
    main()
