"""``wedguard demo``: a guarded copy through a compressed day, in about 30 seconds.

The demo needs only the package. It

1. makes a sample data set in a temporary directory;
2. starts a small local "production" HTTP service on 127.0.0.1 whose response time
   grows with the backup's throughput while production is busy (and a little even when
   it is idle), and probes it with :class:`~wedguard.sources.HttpProbe`;
3. runs a guarded copy through a compressed day: a clock whose calendar time runs a
   few thousand times faster than real time (rates stay in real seconds), with a
   peak-hour calendar and a blackout, while production load is switched on and off;
4. prints each decision as it changes, then the session report, and writes the report
   picture (PNG, when matplotlib is installed).

The compressed day (20 hours from 04:00)::

    04:00-06:00  OPEN       the full budget (4 MB/s)
    06:00-10:00  PEAK       capped at 1 MB/s
    10:00-13:00  BLACKOUT   "wedding ceremony": the copy pauses
    13:00-17:00  PEAK       capped at 1 MB/s
    17:00-24:00  OPEN       production busy 18:00-21:00: the impact controller cuts
                            the rate (and halts it when latency runs away)

Example::

    $ wedguard demo --seconds 10

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

from wedguard import report as report_module
from wedguard.clock import SystemClock
from wedguard.errors import EmergencyStop, WedguardError
from wedguard.interfaces import Event
from wedguard.jobs import CopyJob, Progress, StatusFile, default_stop_file, status_dir
from wedguard.policy.calendar import PeakHourCalendar
from wedguard.policy.controllers import AIMDController
from wedguard.policy.impact import ImpactAnalyzer, Thresholds
from wedguard.runtime.guard import Guard
from wedguard.runtime.session import SessionReport
from wedguard.sources import HttpProbe
from wedguard.units import format_rate, format_size

__all__ = ["DEMO_RULES", "CompressedClock", "ProductionService", "run_demo"]

#: The demo's calendar (a wedding Saturday, compressed).
DEMO_RULES = """
06:00-10:00 peak 1MB/s name="morning peak"
10:00-13:00 blackout name="wedding ceremony"
13:00-17:00 peak 1MB/s name="afternoon peak"
"""
_DAY_START = datetime(2026, 6, 13, 4, 0, tzinfo=timezone.utc)  # a Saturday in June
_DAY_HOURS = 20.0
_BUSY = (18.0, 21.0)  # production busy, in calendar hours
_OPEN_RATE = 4e6
_BASE_LATENCY = 0.008
_LATENCY_LIMIT = 0.5  # production may be at most 50 % slower than its baseline


class CompressedClock(SystemClock):
    """Real monotonic time (rates, waits) with calendar time running ``speed`` times
    faster from ``start``: a day of timetable in a few seconds.

    >>> from datetime import datetime, timezone
    >>> clock = CompressedClock(datetime(2026, 6, 13, 4, tzinfo=timezone.utc), speed=2400)
    >>> clock.now() >= clock.start   # calendar time; clock.monotonic() stays real
    True
    """

    __slots__ = ("_m0", "speed", "start")

    def __init__(self, start: datetime, speed: float) -> None:
        self.start = start
        self.speed = speed
        self._m0 = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self._m0) * self.speed)

    def hours(self) -> float:
        """Calendar hours since 00:00 of the start day."""
        t = self.now()
        return (t - t.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds() / 3600

    def __repr__(self) -> str:
        return f"CompressedClock(speed={self.speed:g})"


class ProductionService:
    """A tiny HTTP service on 127.0.0.1 standing in for production.

    Its response time is ``base * (1 + sensitivity * backup_rate / 1 MB/s)`` where the
    sensitivity is small while production is idle and large while it is busy, so a
    backup that keeps its rate hurts production exactly when production is busy.

    >>> import urllib.request
    >>> with ProductionService(lambda: 0.0) as service:
    ...     urllib.request.urlopen(service.url, timeout=5).read()
    b'ok\\n'
    """

    def __init__(self, backup_bytes: Callable[[], float], base: float = _BASE_LATENCY) -> None:
        self.backup_bytes = backup_bytes
        self.base = base
        self.busy = False
        self._samples: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                time.sleep(service.latency())
                body = b"ok\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/health"

    def backup_rate(self) -> float:
        """The backup's throughput over the last half second (bytes/s)."""
        now = time.monotonic()
        done = float(self.backup_bytes())
        with self._lock:
            self._samples.append((now, done))
            while len(self._samples) > 2 and now - self._samples[0][0] > 0.5:
                self._samples.pop(0)
            t0, b0 = self._samples[0]
        return (done - b0) / (now - t0) if now > t0 else 0.0

    def latency(self) -> float:
        sensitivity = 1.0 if self.busy else 0.02
        return self.base * (1.0 + sensitivity * self.backup_rate() / 1e6)

    def __enter__(self) -> ProductionService:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Narrator:
    """A sink that prints each new decision as one line."""

    def __init__(self, stream: IO[str], clock: CompressedClock, t0: float) -> None:
        self.stream = stream
        self.clock = clock
        self.t0 = t0
        self.lock = threading.Lock()
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last: tuple[Any, ...] = ()

    def say(self, text: str) -> None:
        elapsed = time.monotonic() - self.t0
        clear = "\r\x1b[K" if self.tty else ""  # over the progress line, if any
        with self.lock:
            self.stream.write(f"{clear}{elapsed:5.1f}s  {self.clock.now():%H:%M}  {text}\n")
            self.stream.flush()

    def emit(self, event: Event) -> None:
        if event.kind == "decision":
            d: Any = event
            key = (d.level, d.verdict, round(d.rate, -3), d.paused)
            if key == self._last:
                return
            self._last = key
            rate = "paused" if d.paused else format_rate(d.rate)
            why = d.reasons[0] if d.reasons else ""
            self.say(f"{d.level.name:<8} {d.verdict.name:<8} {rate:>11}  {why}")
        elif event.kind == "alert":
            a: Any = event
            state = "ALERT" if getattr(a, "firing", True) else "resolved"
            self.say(f"{state}: {a.summary}")


def _make_data(root: Path, total: int) -> list[Path]:
    """Files of a few sizes adding up to about ``total`` bytes (random, incompressible)."""
    sizes = [256 * 1024, 512 * 1024, 1024 * 1024, 2 * 1024 * 1024]
    files = []
    made = 0
    i = 0
    block = os.urandom(1 << 20)
    while made < total:
        size = sizes[i % len(sizes)]
        sub = root / ("photos" if i % 3 else "contracts") / f"album-{i // 10:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"IMG_{i:04d}.jpg"
        with open(path, "wb") as f:
            left = size
            while left > 0:
                n = min(left, len(block))
                f.write(block[:n])
                left -= n
        files.append(path)
        made += size
        i += 1
    return files


class _LatencyRecorder:
    """A source that passes the probe's samples through and keeps the latency readings
    (for the report picture)."""

    def __init__(self, probe: Any, metric: str = "api.latency_s") -> None:
        self.probe = probe
        self.metric = metric
        self.readings: list[tuple[float, float]] = []

    def sample(self) -> Any:
        sample = self.probe.sample()
        if self.metric in sample:
            self.readings.append((time.monotonic(), float(sample[self.metric])))
        return sample


def _picture(
    report: SessionReport, out_dir: Path, latency: list[tuple[float, float]], baseline: float
) -> Path:
    """The report picture (PNG) when matplotlib is installed, else an HTML page.

    A session's times (its timeline and its pause log) are real seconds from its start,
    the picture's axis: the compressed clock only moves the calendar."""
    options: dict[str, Any] = {
        "latency": latency,
        "baseline": baseline,
        "limit": baseline * (1 + _LATENCY_LIMIT),
        "title": "wedguard demo: a compressed day",
    }
    data = report.to_dict()
    try:
        figure = report_module.plot_session(data, **options)
    except report_module.PlotUnavailable:
        return report_module.write_html_report(out_dir / "wedguard-demo.html", data, **options)
    path = out_dir / "wedguard-demo.png"
    figure.savefig(path)
    return path


def run_demo(
    seconds: float = 30.0, out: str | os.PathLike[str] | None = None, stream: IO[str] | None = None
) -> int:
    """Run the demo for about ``seconds``; returns the exit code (0 done, 3 stopped)."""
    stream = sys.stdout if stream is None else stream
    speed = _DAY_HOURS * 3600 / seconds
    # about what the day lets through, so the copy ends in the evening's open hours
    total = int(_OPEN_RATE * seconds * 0.40)
    work = Path(tempfile.mkdtemp(prefix="wedguard-demo-"))
    out_dir = Path(out) if out is not None else work
    out_dir.mkdir(parents=True, exist_ok=True)
    src, dst = work / "production-data", work / "backup"
    try:
        files = _make_data(src, total)
        size = sum(f.stat().st_size for f in files)
        stream.write(
            f"wedguard demo: copying {len(files)} files ({format_size(size)}) from {src}\n"
            f"  through a compressed day (1 s = {speed / 60:.0f} min) beside a local "
            f"production service;\n  rate budget {format_rate(_OPEN_RATE)}, peak hours capped "
            "at 1 MB/s, a blackout for the ceremony,\n  production busy 18:00-21:00.\n\n"
        )
        copied = [0.0]
        with ProductionService(lambda: copied[0]) as service:
            probe = _LatencyRecorder(HttpProbe(service.url, timeout=1.0, burst=2))
            thresholds = Thresholds(api_latency=_LATENCY_LIMIT, db_latency=None, backup_cpu=None,
                                    backup_memory=None, backup_network=None)  # fmt: skip
            analyzer = ImpactAnalyzer(thresholds, window=6, short_window=3, min_samples=2)
            for _ in range(5):
                analyzer.observe_baseline(probe.sample())
            quiet = sorted(v for _, v in probe.readings)
            baseline = quiet[len(quiet) // 2] if quiet else _BASE_LATENCY
            clock = CompressedClock(_DAY_START, speed)
            narrator = _Narrator(stream, clock, time.monotonic())
            guard = Guard(
                rate=_OPEN_RATE,
                calendar=PeakHourCalendar.parse(DEMO_RULES, tz="UTC"),
                analyzer=analyzer,
                controller=AIMDController(floor="64KB/s", min_dwell=0.4, increase="400KB/s"),
                sources=[probe],
                sinks=[narrator],
                stop_file=str(default_stop_file()),
                clock=clock,
                sample_interval=0.2,
                background=True,
            )
            with contextlib.suppress(OSError, WedguardError):  # for wedguard status/throttle
                guard.serve_control(status_dir(create=True) / f"{os.getpid()}.sock")
            narrator.emit(guard.decision())
            result = _drive(guard, service, clock, files, src, dst, narrator, copied, seconds)
            guard.close()
        report, outcome, started = result
        stream.write("\n" + _describe_report(report) + "\n")
        latency = [(at - started, v) for at, v in probe.readings if at >= started]
        picture = _picture(report, out_dir, latency, baseline)
        stream.write(f"report: {picture}\n")
        return outcome
    finally:
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(dst, ignore_errors=True)
        if out is not None or not any(work.iterdir()):
            shutil.rmtree(work, ignore_errors=True)


def _drive(
    guard: Guard,
    service: ProductionService,
    clock: CompressedClock,
    files: list[Path],
    src: Path,
    dst: Path,
    narrator: _Narrator,
    copied: list[float],
    seconds: float,
) -> tuple[SessionReport, int, float]:
    """Copy under the guard while a thread switches production load on and off."""
    halt = threading.Event()

    def timetable() -> None:
        busy_from, busy_to = _BUSY
        while not halt.wait(0.05):
            hours = clock.hours()
            busy = busy_from <= hours < busy_to
            if busy != service.busy:
                service.busy = busy
                narrator.say("production load " + ("ON: customers are busy" if busy else "OFF"))

    outcome = 0
    switcher = threading.Thread(target=timetable, name="wedguard-demo-load", daemon=True)
    started = time.monotonic()
    session = guard.session("demo-copy")
    job = CopyJob(session, guard, chunk=128 * 1024)
    service.backup_bytes = lambda: float(session.bytes)
    progress: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if narrator.tty and sys.stderr.isatty():
        progress = Progress(sys.stderr, guard, lambda: job.bytes, interval=0.25)
    switcher.start()
    try:
        # the session ends with a stop, so its report says "stopped"
        with session, StatusFile(guard, "demo", session), progress:
            for s, d in job.plan(src, dst):
                job.copy_file(s, d)
    except EmergencyStop as exc:
        narrator.say(f"stopped: {exc.reason}")
        outcome = 3
    finally:
        halt.set()
        switcher.join(1.0)
    copied[0] = float(job.bytes)
    done = "copy finished" if outcome == 0 else "copy stopped"
    narrator.say(f"{done}: {job.copied} files, {format_size(job.bytes)}")
    return session.report(), outcome, started


def _describe_report(report: SessionReport) -> str:
    lines = ["session report", "  " + str(report)]
    lines.extend(f"  paused {p.duration:.1f}s ({p.cause}): {p.reason}" for p in report.pause_log)
    waits = {k: v for k, v in report.wait_seconds.items() if v > 0}
    if waits:
        lines.append("  time waited: " + ", ".join(f"{k} {v:.1f}s" for k, v in waits.items()))
    return "\n".join(lines)
