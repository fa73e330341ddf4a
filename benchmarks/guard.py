"""The guard's costs: the hot path, copy throughput, the sampler, memory.

Run: ``python benchmarks/guard.py`` (about 5 minutes; no arguments needed), or
``python benchmarks/guard.py copy`` (or ``hot``, ``sampler``) for one section. The
figures go to ``benchmarks/results/guard.json`` (each section replaces its own entry),
from which the tables in ``benchmarks/README.md`` are written.

1. Nanoseconds per ``s.throttle(n)`` when nothing limits (best of several rounds), next
   to a bare loop, wedguard's own ``TokenBucketThrottler.try_acquire`` and the peer
   token buckets ``token_bucket.Limiter.consume`` and ``pyrate_limiter``'s
   ``try_acquire``.
2. Copy throughput of 1 GiB in 1 MiB chunks, ``guard.copyfileobj`` at an unlimited
   rate (its own session each call, which starts the sampler thread), at a rate that
   never binds, inside a session already open, and into a destination of a kind the
   guard does not know (it may keep what it is given, so every chunk is read into a
   new ``bytes``, as shutil does), against bare
   ``shutil.copyfileobj`` given the same objects, and against ``shutil.copyfileobj``
   a second time: that A/A row shows how far two identical runs differ here, the
   resolution of the whole table. Three copies: (a) a 1 GiB file to a new file, both on
   tmpfs (real file objects, what a backup does); (b) the file to ``/dev/null``; (c)
   ``/dev/zero`` to ``/dev/null`` through a source offering only ``read()``, the worst
   case: it moves memory at about 30 GiB/s, 35 µs per chunk, so every microsecond the
   guard adds per chunk shows as about 3 %. Interleaved rounds in a shuffled order: the
   mean of each one's best five wall times, and the median over the rounds of each
   round's ratio of CPU times (the copying thread's, steadier on a shared machine);
   ``CPU µs/chunk`` is the median CPU time added per chunk.
3. CPU used by the background sampler at 1 Hz with the default ``SystemSource``, while a
   session is open and idle (share of one core), with and without a stop file checked
   every 100 ms: the median of three measurements (a machine whose other tenants are
   idle makes each wake-up dearer, so single readings vary by 2-5x), and the same
   sample's cost in a warm loop.
4. Peak RSS of the process.

Peer libraries are imported lazily; a missing one is reported and skipped. The
machines are shared and noisy: read the ratios, not the absolute figures.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import wedguard as wg

CALLS = 200_000
ROUNDS = 7
CHUNK = 1 << 20
TOTAL = 1 << 30
COPY_ROUNDS = 30
FILE_ROUNDS = 20
SAMPLER_SECONDS = 8.0
SAMPLER_REPEATS = 3
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "guard.json")
_results: dict[str, Any] = {}


def _peer(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        print(f"  ({name} is not installed; skipped)")
        return None


def _best_ns(fn: Callable[[], None], calls: int = CALLS, rounds: int = ROUNDS) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn()
        best = min(best, (time.perf_counter_ns() - start) / calls)
    return best


def quiet_guard(**kw: Any) -> wg.Guard:
    kw.setdefault("calendar", None)
    kw.setdefault("sources", [])
    kw.setdefault("sinks", [])
    kw.setdefault("breaker", None)
    return wg.Guard(**kw)


def hot_path() -> None:
    print("1. ns per call when nothing limits (n = 64 KiB), best of", ROUNDS, "rounds")
    n = 65536
    loop = range(CALLS)
    rows: list[tuple[str, float]] = []

    def bare() -> None:
        f = int.__add__
        for _ in loop:
            f(n, 0)

    rows.append(("bare loop with one call", _best_ns(bare)))

    bucket = wg.TokenBucketThrottler(1e15)

    def wg_bucket() -> None:
        f = bucket.try_acquire
        for _ in loop:
            f(n)

    rows.append(("wedguard TokenBucketThrottler.try_acquire", _best_ns(wg_bucket)))

    for label, rate in (("unlimited rate", "off"), ("rate that never binds", 1e15)):
        guard = quiet_guard(rate=rate)
        with guard.session("bench") as s:

            def session_throttle(s: wg.Session = s) -> None:
                f = s.throttle
                for _ in loop:
                    f(n)

            rows.append((f"wedguard s.throttle(n), {label}", _best_ns(session_throttle)))
        guard.close()

    tb = _peer("token_bucket")
    if tb is not None:
        limiter = tb.Limiter(10**15, 10**15, tb.MemoryStorage())

        def peer_tb() -> None:
            f = limiter.consume
            for _ in loop:
                f(b"k", n)

        rows.append(("token_bucket Limiter.consume", _best_ns(peer_tb)))

    prl = _peer("pyrate_limiter")
    if prl is not None:
        try:
            limiter2 = prl.Limiter(prl.Rate(10**12, prl.Duration.SECOND))

            def peer_prl() -> None:
                f = limiter2.try_acquire
                for _ in range(CALLS // 10):
                    f("k")

            rows.append(("pyrate_limiter Limiter.try_acquire", _best_ns(peer_prl, CALLS // 10, 3)))
        except Exception as exc:  # API differences between versions
            print(f"  (pyrate_limiter skipped: {exc})")

    base = rows[0][1]
    print(f"  {'what':46} {'ns/call':>8} {'minus bare':>11}")
    for label, ns in rows:
        print(f"  {label:46} {ns:8.0f} {ns - base:11.0f}")
    _results["hot"] = {label: round(ns, 1) for label, ns in rows}


class Opaque:
    """A destination of a kind the guard does not know: it forwards to a real file.

    ``write`` is the file's own bound method, so the only difference from the file
    itself is what the copy loop must assume: the object may keep what it is given.
    """

    def __init__(self, f: Any) -> None:
        self.write = f.write


class Zeros:
    """``total`` bytes read from ``/dev/zero`` (a real kernel copy per chunk, no disk).

    It offers ``read`` only, so shutil and the guard do the same work per chunk.
    """

    def __init__(self, total: int) -> None:
        self.left = total
        self.raw = open("/dev/zero", "rb", buffering=0)  # noqa: SIM115

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            self.raw.close()
            return b""
        data: bytes = self.raw.read(min(n, self.left))
        self.left -= len(data)
        return data


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _scratch_dir() -> str:
    """tmpfs when there is room (steady: no disk), else the temporary directory."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and shutil.disk_usage(shm).free > 3 * TOTAL:
        return shm
    return tempfile.gettempdir()


def _race(
    title: str,
    runs: list[tuple[str, Callable[[], None]]],
    rounds: int,
    before: Callable[[], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Interleaved rounds in a shuffled order, timed in wall time and in the copying
    thread's CPU time (user + system).

    ``before`` runs untimed before each run. Per run: the mean of its best five wall
    times, and its speed against the first run (``shutil.copyfileobj``) as the median
    over the rounds of that round's ratio of CPU times. Both runs of a round meet the
    same moment of a shared machine, so the ratio within a round is far steadier than
    either time; CPU time leaves out the waits other tenants cause.
    """
    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    order = list(runs)
    shuffler = random.Random(1)
    for _ in range(rounds):
        # a new order each round: neither a place in the round nor the run before
        # (what it left in the page cache and the allocator) favours anyone
        shuffler.shuffle(order)
        for label, run in order:
            if before is not None:
                before()
            start, start_cpu = time.perf_counter(), time.thread_time()
            run()
            cpu.setdefault(label, []).append(time.thread_time() - start_cpu)
            wall.setdefault(label, []).append(time.perf_counter() - start)
    first = runs[0][0]
    chunks = TOTAL / CHUNK
    found: dict[str, dict[str, float]] = {}
    for label, _ in runs:
        best = sum(sorted(wall[label])[:5]) / 5
        ratios = [a / b for a, b in zip(cpu[first], cpu[label], strict=True)]
        found[label] = {
            "wall_s": best,
            "cpu_ratio": statistics.median(ratios),
            "cpu_us_per_chunk": statistics.median(
                (b - a) / chunks * 1e6 for a, b in zip(cpu[first], cpu[label], strict=True)
            ),
        }
    base = found[first]["wall_s"]
    print(f"  {title}")
    print(f"    {'what':64} {'GiB/s':>6} {'vs shutil':>9} {'CPU vs':>7} {'CPU µs/chunk':>12}")
    for label, row in found.items():
        print(
            f"    {label:64} {TOTAL / row['wall_s'] / 2**30:6.2f} {base / row['wall_s']:9.1%}"
            f" {row['cpu_ratio']:7.1%} {row['cpu_us_per_chunk']:+12.2f}"
        )
    return found


def _copy_table(title: str, rounds: int, found: dict[str, dict[str, float]]) -> dict[str, Any]:
    base = next(iter(found.values()))["wall_s"]
    return {
        "title": title,
        "rounds": rounds,
        "rows": [
            {
                "what": label,
                "gib_per_s": round(TOTAL / row["wall_s"] / 2**30, 2),
                "vs_shutil": round(base / row["wall_s"], 4),
                "cpu_vs_shutil": round(row["cpu_ratio"], 4),
                "cpu_us_per_chunk": round(row["cpu_us_per_chunk"], 2),
            }
            for label, row in found.items()
        ],
    }


def copy_throughput() -> None:
    print(
        f"2. copy {TOTAL >> 20} MiB in {CHUNK >> 10} KiB chunks, shutil.copyfileobj against "
        "guard.copyfileobj (mean of the best 5 rounds)"
    )
    unlimited = quiet_guard(rate="off")
    finite = quiet_guard(rate=1e15)
    held = quiet_guard(rate="off")
    scratch = _scratch_dir()
    src_path = os.path.join(scratch, f"wedguard-bench-src-{os.getpid()}")
    dst_path = os.path.join(scratch, f"wedguard-bench-dst-{os.getpid()}")
    block = os.urandom(CHUNK)
    with open(src_path, "wb") as f:
        for _ in range(TOTAL // CHUNK):
            f.write(block)

    def files(copy: Callable[[Any, Any], object], dst: str) -> Callable[[], None]:
        def run() -> None:
            with open(src_path, "rb") as a, open(dst, "wb") as b:
                copy(a, b)

        return run

    try:
        with held.session("open") as open_session:
            copies: list[tuple[str, Callable[[Any, Any], object]]] = [
                ("shutil.copyfileobj", lambda a, b: shutil.copyfileobj(a, b, CHUNK)),
                (
                    "shutil.copyfileobj again (A/A: the noise)",
                    lambda a, b: shutil.copyfileobj(a, b, CHUNK),
                ),
                ("guard.copyfileobj, unlimited", lambda a, b: unlimited.copyfileobj(a, b, CHUNK)),
                (
                    "guard.copyfileobj, a rate that never binds",
                    lambda a, b: finite.copyfileobj(a, b, CHUNK),
                ),
                (
                    "guard.copyfileobj, unlimited, in a session",
                    lambda a, b: held.copyfileobj(a, b, CHUNK, session=open_session),
                ),
                (
                    "guard.copyfileobj, unlimited, a destination that may keep chunks",
                    lambda a, b: unlimited.copyfileobj(a, Opaque(b), CHUNK),
                ),
            ]
            tables = []
            title = f"a) a file to a new file, both on {scratch} (what a backup does)"
            found = _race(
                title,
                [(label, files(copy, dst_path)) for label, copy in copies],
                FILE_ROUNDS,
                # the old copy's pages are freed here, not inside the next timed run
                before=lambda: _remove(dst_path),
            )
            tables.append(_copy_table(title, FILE_ROUNDS, found))
            title = "b) a file to /dev/null"
            found = _race(
                title, [(label, files(copy, os.devnull)) for label, copy in copies], FILE_ROUNDS
            )
            tables.append(_copy_table(title, FILE_ROUNDS, found))
            with open(os.devnull, "wb", buffering=0) as sink:
                title = (
                    "c) /dev/zero to /dev/null through read() only: memory speed, the worst case"
                )
                found = _race(
                    title,
                    [
                        (label, lambda copy=copy: copy(Zeros(TOTAL), sink))  # type: ignore[misc]
                        for label, copy in copies
                    ],
                    COPY_ROUNDS,
                )
                tables.append(_copy_table(title, COPY_ROUNDS, found))
            _results["copy"] = {"total_bytes": TOTAL, "chunk_bytes": CHUNK, "tables": tables}
    finally:
        _remove(src_path)
        _remove(dst_path)
        for guard in (unlimited, finite, held):
            guard.close()


def sampler_cpu() -> None:
    print(
        f"3. sampler CPU at 1 Hz, a session open and idle: median of {SAMPLER_REPEATS} "
        f"measurements of {SAMPLER_SECONDS:g} s"
    )
    src = _peer("wedguard.sources")
    if src is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        for label, stop_file in (
            ("SystemSource, no stop file", None),
            ("SystemSource + stop file every 100 ms", os.path.join(tmp, "stop")),
        ):
            shares = []
            for _ in range(SAMPLER_REPEATS):
                guard = wg.Guard(
                    calendar=None, sources=[src.SystemSource()], sinks=[], stop_file=stop_file
                )
                with guard.session("idle"):
                    time.sleep(0.5)  # let the first sample settle
                    cpu0, wall0 = time.process_time(), time.perf_counter()
                    time.sleep(SAMPLER_SECONDS)
                    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
                guard.close()
                shares.append(cpu / wall)
            each = " ".join(f"{x:.2%}" for x in shares)
            print(f"  {label:40} {statistics.median(shares):7.3%} of a core  ({each})")
            _results.setdefault("sampler", {})[label] = {
                "median_share": round(statistics.median(shares), 5),
                "shares": [round(x, 5) for x in shares],
            }
        # the same work in a warm loop: what a sample costs without a second's sleep
        guard = wg.Guard(calendar=None, sources=[src.SystemSource()], sinks=[])
        with guard.session("warm"):
            guard.tick()
            n = 2000
            cpu0 = time.process_time()
            for _ in range(n):
                guard.tick()
            warm = (time.process_time() - cpu0) / n
        guard.close()
        print(f"  one sample (sources, analyser, decision) in a warm loop: {warm * 1e6:.0f} µs")
        _results.setdefault("sampler", {})["warm_sample_us"] = round(warm * 1e6, 1)


def _write_results() -> None:
    """Merge this run's sections into the results file (other sections are kept)."""
    stored: dict[str, Any] = {}
    with contextlib.suppress(FileNotFoundError, ValueError), open(RESULTS, encoding="utf-8") as f:
        stored = json.load(f)
    machine = {
        "python": sys.version.split()[0],
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    for section, figures in _results.items():
        stored[section] = {"machine": machine, **figures}
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w", encoding="utf-8") as f:
        json.dump(stored, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"results: {RESULTS}")


def main(argv: list[str]) -> None:
    sections = set(argv) or {"hot", "copy", "sampler"}
    print(f"wedguard guard benchmark, Python {sys.version.split()[0]}, {os.cpu_count()} cores")
    if "hot" in sections:
        hot_path()
    if "copy" in sections:
        copy_throughput()
    if "sampler" in sections:
        sampler_cpu()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"4. peak RSS {peak / 1024:.1f} MiB")
    if sections == {"hot", "copy", "sampler"}:
        _results["peak_rss_mib"] = {"value": round(peak / 1024, 1)}
    _write_results()


if __name__ == "__main__":
    main(sys.argv[1:])
