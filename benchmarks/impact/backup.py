"""The backup (its own process): read the data set, compress, write, fsync.

It reads the data set sequentially in 1 MiB chunks (``--chunk``), uncached (O_DIRECT
where the file system allows it, else the pages are dropped), compresses each chunk
with zlib and writes it out, with an fsync every 16 MiB after which the written pages are dropped
too, so it keeps hitting the disk. It wraps around at the end of the data set.

How it is paced is the scenario:

* ``unguarded``: as fast as it goes;
* ``nice``: nice 19 and the idle I/O class;
* ``static``: a fixed byte rate, slept for after each chunk as rsync's ``--bwlimit``;
* ``sleep``: the static schedule's wake-ups with no reading, compressing or writing
  at all (a backup that only sleeps: the cost of its mere presence);
* ``guard``: ``s.throttle(len(chunk))`` in a :class:`wedguard.Guard` session whose
  sampler reads production's own p95 (:class:`~wedguard.sources.ServiceLatencySource`
  on ``/metrics``) into the impact analyser and the rate controller; ``--blackout``
  adds a calendar whose BLACKOUT covers part of the run, ``--nice``/``--ionice`` the
  guard's own lowering of the session thread's priority.

``--parts`` (default ``read,compress,write``) keeps only some of the backup's work, to
take its harm apart: without ``read`` it compresses one chunk read at the start, again
and again; without ``compress`` it writes that chunk's compressed form; without
``write`` it writes nothing.

``--autogroup-nice`` sets the nice value of the backup's autogroup (its session), the
one that counts against production in another session when autogroups are on.
``--sched-idle`` puts every thread of the backup (the guard's sampler included, which
inherits it) in ``SCHED_IDLE``, whatever the mode. The policies its threads ended with
are recorded, so the report can show that they were really applied.

It starts at ``--start-at`` and stops at ``--stop-at`` (``time.monotonic()``), and
writes its timeline (bytes read and the guard's allowed rate, every 0.25 s) as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import mmap
import os
import signal
import sys
import threading
import time
import traceback
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import FrameType
from typing import Any

import harness

CHUNK = 1 << 20
FSYNC_EVERY = 16 << 20
TICK = 0.25


class Stopped(Exception):
    """SIGTERM from the harness."""


class RunCalendar:
    """A calendar with one BLACKOUT between two wall-clock instants, OPEN around it.

    It answers with real :class:`wedguard.Window` values (with their bounds), so the
    guard refreshes its decision exactly when the blackout starts and ends. The windows
    around the blackout end a day away rather than at ``datetime.max``: a guard that
    waits "until the window ends" on a thread condition cannot wait past
    ``threading.TIMEOUT_MAX`` (an OverflowError, seen in this benchmark).
    """

    def __init__(self, start: datetime, end: datetime) -> None:
        from wedguard import Level, Window

        self._w = Window
        self._lv = Level
        self.start = start
        self.end = end
        self._lo = start - timedelta(days=1)
        self._hi = end + timedelta(days=1)

    def at(self, when: datetime) -> Any:
        if when < self.start:
            return self._w(self._lv.OPEN, None, None, self._lo, self.start, "before the blackout")
        if when < self.end:
            return self._w(self._lv.BLACKOUT, 0.0, 0.0, self.start, self.end, "benchmark blackout")
        return self._w(self._lv.OPEN, None, None, self.end, self._hi, "after the blackout")


def make_guard(args: argparse.Namespace) -> Any:
    import wedguard as wg
    from wedguard.sources import ServiceLatencySource

    baseline = wg.Baseline.from_json(args.baseline.read_text()) if args.baseline else None
    limit = args.api_limit
    tkw: dict[str, Any] = {} if limit is None else {"api_latency": limit}
    # shaping judges the fast signals too (the host's pressure), as Guard() does
    thresholds = wg.Thresholds.with_fast_signals(**tkw) if args.shaping else wg.Thresholds(**tkw)
    akw: dict[str, Any] = {}
    if args.window is not None:
        akw["window"] = args.window
        akw["min_samples"] = min(3, args.window)
    if args.confidence is not None:
        akw["confidence"] = args.confidence
    analyzer = wg.ImpactAnalyzer(thresholds, baseline=baseline, **akw)
    ckw: dict[str, Any] = {}
    if args.min_dwell is not None:
        ckw["min_dwell"] = args.min_dwell
    if args.controller == "ledbat":
        controller: Any = wg.LedbatController(**ckw)
    else:
        controller = wg.AIMDController(**ckw)
    calendar = None
    if args.blackout:
        a, b = (float(x) for x in args.blackout.split(","))
        wall0 = datetime.now(timezone.utc) + timedelta(seconds=args.start_at - time.monotonic())
        calendar = RunCalendar(wall0 + timedelta(seconds=a), wall0 + timedelta(seconds=b))
    source = ServiceLatencySource(
        f"http://127.0.0.1:{args.port}/metrics", histogram=harness.HISTOGRAM, timeout=1.0
    )
    sources: list[Any] = [source]
    if args.shaping:
        from wedguard.sources import PressureSource

        sources.append(PressureSource(resources=("cpu", "io"), unreadable="unavailable"))
    return wg.Guard(
        rate=args.ceiling,
        calendar=calendar,
        breaker=None,
        analyzer=analyzer,
        sources=sources,
        shaping=True if args.shaping else None,
        sched_idle=args.guard_sched_idle,
        sinks=[],
        controller=controller,
        sample_interval=args.sample_interval,
        nice=args.nice,
        ionice=args.ionice,
        cpus=args.guard_cpus,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "--mode", choices=["unguarded", "nice", "static", "sleep", "guard"], required=True
    )
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="the backup's output file")
    p.add_argument("--timeline", type=Path, required=True)
    p.add_argument("--start-at", type=float, required=True)
    p.add_argument("--stop-at", type=float, required=True)
    p.add_argument("--limit", type=float, default=0.0, help="static: bytes/s")
    p.add_argument("--level", type=int, default=1, help="zlib level")
    p.add_argument("--chunk", type=int, default=CHUNK, help="bytes per read (4 KiB multiple)")
    p.add_argument("--sched-idle", action="store_true", help="every thread in SCHED_IDLE")
    p.add_argument(
        "--autogroup-nice", type=int, default=None, help="the nice value of its autogroup"
    )
    # guard
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--baseline", type=Path, default=None)
    p.add_argument("--ceiling", type=float, default=math.inf, help="the guard's rate budget")
    p.add_argument("--sample-interval", type=float, default=1.0)
    p.add_argument("--api-limit", type=float, default=None)
    p.add_argument("--window", type=int, default=None)
    p.add_argument("--confidence", type=float, default=None)
    p.add_argument("--min-dwell", type=float, default=None)
    p.add_argument("--controller", choices=["aimd", "ledbat"], default="aimd")
    p.add_argument("--blackout", default="", help="START,END seconds after --start-at")
    p.add_argument("--nice", type=int, default=0, help="guard: Guard(nice=...)")
    p.add_argument("--ionice", action="store_true", help="guard: Guard(ionice=True)")
    p.add_argument(
        "--shaping", action="store_true", help="guard: Guard(shaping=True), chunks it sizes"
    )
    p.add_argument("--guard-sched-idle", action="store_true", help="guard: Guard(sched_idle=True)")
    p.add_argument("--guard-cpus", type=int, default=None, help="guard: Guard(cpus=N)")
    p.add_argument("--cpus", type=int, default=None, help="the whole backup on N cores")
    p.add_argument("--parts", default="read,compress,write", help="the work kept, of these")
    args = p.parse_args(argv)
    parts = set(args.parts.split(","))
    if not parts or parts - {"read", "compress", "write"}:
        p.error(f"--parts {args.parts}: some of read, compress, write")
    if args.chunk <= 0 or args.chunk % harness.BLOCK:
        p.error(f"--chunk {args.chunk}: a positive multiple of {harness.BLOCK}")
    chunk = args.chunk
    if args.mode == "sleep" and not args.limit > 0:
        p.error("--mode sleep needs --limit: the byte rate whose wake-ups it keeps")

    prio: dict[str, Any] = dict(harness.reset_priority())
    if args.mode == "nice":
        prio.update(harness.make_low_priority())
    if args.sched_idle:
        harness.make_sched_idle()
        prio["policy"] = harness.sched_policy(0)
    if args.autogroup_nice is not None:
        harness.set_autogroup_nice(args.autogroup_nice)
    if args.cpus is not None:
        from wedguard.io.priority import check_cpus

        os.sched_setaffinity(0, check_cpus(args.cpus))
        prio["cpus"] = sorted(os.sched_getaffinity(0))
    prio["autogroup"], prio["autogroup_nice"] = harness.autogroup()

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise Stopped

    signal.signal(signal.SIGTERM, on_term)

    guard = make_guard(args) if args.mode == "guard" else None
    fd, direct = harness.open_uncached(args.data)
    size = os.fstat(fd).st_size // chunk * chunk
    buf = mmap.mmap(-1, chunk)
    out = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    done = [0]  # bytes read, updated by the loop, read by the recorder
    timeline: list[list[float]] = []
    halt = threading.Event()

    def record() -> None:
        nxt = args.start_at
        while not halt.is_set():
            now = time.monotonic()
            if now >= nxt:
                row = [now, float(done[0])]
                if guard is not None:
                    d = guard.decision()
                    row += [d.rate, float(d.verdict), float(d.level)]
                timeline.append(row)
                nxt += TICK
            halt.wait(max(0.0, min(nxt - time.monotonic(), TICK)))

    recorder = threading.Thread(target=record, daemon=True)
    os.preadv(fd, [buf], 0)  # the chunk a backup without reads works on
    blob = zlib.compress(buf, args.level)  # and what it writes without compressing
    reads, compresses, writes = ("read" in parts), ("compress" in parts), ("write" in parts)
    pos = 0
    slept = 0  # mode sleep: the bytes it pretends to have read
    unsynced = 0
    written = 0  # bytes written out
    waited = 0.0
    error = ""
    policies: dict[int, int] = {}
    try:
        delay = args.start_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        recorder.start()
        t0 = time.monotonic()
        session = guard.session("impact") if guard is not None else None
        if session is not None:
            session.__enter__()
        try:
            policies = harness.thread_policies()  # every thread is running by now
            while time.monotonic() < args.stop_at:
                n = chunk
                if session is not None:
                    if args.shaping:  # the guard's chunk size, in whole blocks
                        n = max(harness.BLOCK, min(chunk, session.chunk_size))
                        n -= n % harness.BLOCK
                    waited += session.throttle(n)
                    if time.monotonic() >= args.stop_at:
                        break
                if args.mode == "sleep":
                    slept += chunk
                    ahead = t0 + slept / args.limit - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
                    continue
                view = buf if n == chunk else memoryview(buf)[:n]
                if reads:
                    os.preadv(fd, [view], pos)
                    if not direct:
                        harness.drop_pages(fd, pos, n)
                pos = (pos + n) % size
                data = zlib.compress(view, args.level) if compresses else blob
                if writes:
                    os.write(out, data)
                    unsynced += len(data)
                    written += len(data)
                if unsynced >= FSYNC_EVERY:
                    os.fsync(out)
                    harness.drop_pages(out)
                    unsynced = 0
                done[0] += n
                if args.mode == "static" and args.limit > 0:
                    ahead = t0 + done[0] / args.limit - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
        finally:
            if session is not None:
                session.__exit__(None, None, None)
    except Stopped:
        pass
    except BaseException as exc:  # recorded, so the report can say why a run stopped
        error = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        raise
    finally:
        halt.set()
        end = time.monotonic()
        result = {
            "mode": args.mode,
            "direct": direct,
            "bytes": done[0],
            "end": end,
            "waited": waited,
            "timeline": timeline,
            "error": error,
            "chunk": chunk,
            "parts": sorted(parts),
            "written": written,
            "threads": len(policies),
            "policies": sorted(set(policies.values())),
            **prio,
        }
        tmp = args.timeline.with_suffix(".tmp")
        tmp.write_text(json.dumps(result))
        tmp.replace(args.timeline)
        os.close(out)
        os.close(fd)
        os.unlink(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
