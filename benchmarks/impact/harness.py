"""Shared pieces of the impact benchmark: process hygiene, the data set, statistics.

Every process of the experiment (production, load generator, backup) imports this
module, so they all reset their scheduling priority the same way and agree on where
the data set and the shared state live. The statistics are plain functions (no numpy),
so they are unit-tested like the library (``tests/test_bench_impact.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import mmap
import os
import platform
import random
from collections.abc import Sequence
from pathlib import Path

DATA_DIR = Path(os.environ.get("WEDGUARD_IMPACT_DATA", "/var/tmp/wedguard-impact"))
"""Where the data set and the backup's output live (a real disk, not tmpfs)."""

SHM_ROOT = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path("/tmp")
"""tmpfs: where the load generator's and the backup's shared state live."""

BLOCK = 4096
"""The alignment O_DIRECT needs and the size of production's random reads."""

HISTOGRAM = "http_request_duration_seconds"
"""The histogram production exposes on /metrics."""

# bucket bounds (seconds) of production's latency histogram: 0.2 ms .. ~4 s, x1.12 apart,
# fine enough that the interpolated p95 moves by well under the 5 % being measured
BUCKETS: tuple[float, ...] = tuple(round(0.0002 * 1.12**i, 7) for i in range(88))

# -- process hygiene ----------------------------------------------------------------------

_IOPRIO_WHO_PROCESS = 1
_IOPRIO_CLASS_SHIFT = 13
IOPRIO_CLASS_BE = 2
IOPRIO_CLASS_IDLE = 3
_SYS_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "i686": 289, "armv7l": 314}
_SYS_IOPRIO_GET = {"x86_64": 252, "aarch64": 31, "i686": 290, "armv7l": 315}


def _ioprio_syscall(table: dict[str, int], *args: int) -> int:
    nr = table.get(platform.machine())
    if nr is None:
        return -1
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.syscall(nr, *args))


def set_io_class(io_class: int, level: int = 4) -> bool:
    """Set this process's I/O scheduling class (``IOPRIO_CLASS_BE`` or ``_IDLE``)."""
    value = (io_class << _IOPRIO_CLASS_SHIFT) | (level if io_class == IOPRIO_CLASS_BE else 0)
    return _ioprio_syscall(_SYS_IOPRIO_SET, _IOPRIO_WHO_PROCESS, 0, value) == 0


def get_io_class() -> int:
    """This process's I/O class (0: none set, 1 realtime, 2 best effort, 3 idle; -1 unknown)."""
    v = _ioprio_syscall(_SYS_IOPRIO_GET, _IOPRIO_WHO_PROCESS, 0)
    return -1 if v < 0 else v >> _IOPRIO_CLASS_SHIFT


def reset_priority() -> dict[str, int]:
    """Undo an inherited nice value, I/O class and CPU policy: nice 0, best-effort I/O
    level 4, ``SCHED_OTHER``.

    A benchmark started from ``nice``, ``ionice`` or ``chrt --idle`` (or by a CI runner
    that lowers its priority) would otherwise measure priorities nobody asked for.
    Returns what the process ended with, for the record.
    """
    with contextlib.suppress(OSError, AttributeError):  # recorded below
        if os.sched_getscheduler(0) != os.SCHED_OTHER:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    with contextlib.suppress(OSError):  # unprivileged with a higher nice: recorded below
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    set_io_class(IOPRIO_CLASS_BE, 4)
    return {
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "io_class": get_io_class(),
        "policy": sched_policy(0),
    }


def autogroup() -> tuple[str, int]:
    """This process's autogroup and its nice value (``("", 0)`` where there is none).

    With ``/proc/sys/kernel/sched_autogroup_enabled`` at 1 the CPU is shared between
    autogroups (one per session, ``setsid``) first, and only then between the threads
    inside each: a nice value lowers a process against the others of its session only.
    Every process of this benchmark starts its own session, so each is its own
    autogroup, as a backup started by cron or systemd would be.
    """
    try:
        name, _, nice = Path("/proc/self/autogroup").read_text().split()
    except (OSError, ValueError):
        return ("", 0)
    return (name, int(nice))


def autogroup_enabled() -> bool:
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False


def set_autogroup_nice(nice: int) -> bool:
    """Set the nice value of this process's autogroup (its whole session); False where
    the kernel has no autogroups or refuses."""
    try:
        Path("/proc/self/autogroup").write_text(str(nice))
    except OSError:
        return False
    return autogroup()[1] == nice


SCHED_IDLE = getattr(os, "SCHED_IDLE", 5)
"""Linux's idle CPU policy: the thread runs only when no normal thread wants the CPU."""


def sched_policy(tid: int) -> int:
    """The CPU scheduling policy of thread ``tid`` (0: the caller); -1 when unknown."""
    try:
        return os.sched_getscheduler(tid)
    except (OSError, AttributeError):
        return -1


def threads_of(pid: int = 0) -> list[int]:
    """The native ids of the threads of process ``pid`` (0: this one), from /proc."""
    task = Path(f"/proc/{pid or os.getpid()}/task")
    try:
        return sorted(int(t.name) for t in task.iterdir())
    except OSError:
        return []


def thread_policies(pid: int = 0) -> dict[int, int]:
    """``{native thread id: CPU policy}`` for every thread of process ``pid``."""
    return {tid: sched_policy(tid) for tid in threads_of(pid)}


def make_sched_idle() -> dict[int, int]:
    """Put every thread of this process in ``SCHED_IDLE`` (and so the threads it starts
    later, which inherit their creator's policy).

    ``os.sched_setscheduler(0, ...)`` sets the calling thread only; the others are set
    by their native id. Unlike nice 19, a ``SCHED_IDLE`` thread is preempted at once by
    any waking normal thread and keeps no sleeper's credit, and it is not weighed
    per autogroup. Returns the policies afterwards, per thread.
    """
    param = os.sched_param(0)
    os.sched_setscheduler(0, SCHED_IDLE, param)
    for tid in threads_of():
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setscheduler(tid, SCHED_IDLE, param)
    return thread_policies()


def make_low_priority() -> dict[str, int]:
    """nice 19 and the idle I/O class (scenario c)."""
    os.setpriority(os.PRIO_PROCESS, 0, 19)
    set_io_class(IOPRIO_CLASS_IDLE)
    return {"nice": os.getpriority(os.PRIO_PROCESS, 0), "io_class": get_io_class()}


# -- uncached reads ------------------------------------------------------------------------


def open_uncached(path: str | os.PathLike[str]) -> tuple[int, bool]:
    """Open ``path`` for reading with O_DIRECT when the file system allows it.

    Returns ``(fd, direct)``; when ``direct`` is False the caller drops the pages it
    read with :func:`drop_pages`.
    """
    flag = getattr(os, "O_DIRECT", 0)
    if flag:
        try:
            fd = os.open(path, os.O_RDONLY | flag)
        except OSError:
            pass
        else:
            probe = mmap.mmap(-1, BLOCK)
            try:
                os.preadv(fd, [probe], 0)
                return fd, True
            except OSError:
                os.close(fd)
            finally:
                probe.close()
    return os.open(path, os.O_RDONLY), False


def drop_pages(fd: int, offset: int = 0, length: int = 0) -> None:
    """Ask the kernel to forget the cached pages of ``fd`` (no-op where unsupported)."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None:
        advise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def ensure_data(path: Path, size: int) -> Path:
    """Create the data set (once): ``size`` bytes that compress about 2:1 with zlib."""
    if path.exists() and path.stat().st_size >= size:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    rng = random.Random(12)
    words = [
        bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz ") for _ in range(8)) for _ in range(512)
    ]
    chunk = 1 << 20
    with open(tmp, "wb") as f:
        written = 0
        while written < size:
            half = os.urandom(chunk // 2)
            text = b"".join(rng.choices(words, k=chunk // 16))[: chunk // 2]
            f.write(half + text)
            written += chunk
        f.flush()
        os.fsync(f.fileno())
        drop_pages(f.fileno())
    tmp.replace(path)
    return path


# -- statistics ----------------------------------------------------------------------------


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of already sorted values (linear interpolation, type 7)."""
    n = len(sorted_values)
    if n == 0:
        return math.nan
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q={q!r}: a quantile in [0, 1]")
    pos = q * (n - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def percentiles(values: Sequence[float], qs: Sequence[float] = (0.5, 0.95, 0.99)) -> list[float]:
    """Several quantiles of unsorted ``values``."""
    s = sorted(values)
    return [quantile(s, q) for q in qs]


def bootstrap_ratios(
    pairs: Sequence[tuple[Sequence[float], Sequence[float]]],
    qs: Sequence[float] = (0.5, 0.95, 0.99),
    *,
    resamples: int = 300,
    seed: int = 0,
    level: float = 0.95,
) -> dict[float, tuple[float, float, float]]:
    """Pooled ratios of quantiles, treated over baseline, with bootstrap intervals.

    ``pairs`` holds, per repeat, (treated latencies, baseline latencies of the same
    repeat). The point estimate for each quantile ``q`` is the geometric mean over
    repeats of ``quantile(treated) / quantile(baseline)``; the interval is a percentile
    bootstrap that resamples the requests of every run with replacement (stratified:
    each repeat keeps its own baseline), so it carries the sampling noise of every run.
    It does not carry the drift of a shared machine between runs: the A/A spread does.

    Returns ``{q: (ratio, low, high)}``.
    """
    nan3 = (math.nan, math.nan, math.nan)
    pairs = [(t, b) for t, b in pairs if t and b]
    if not pairs:
        return dict.fromkeys(qs, nan3)

    def pooled(runs: Sequence[tuple[list[float], list[float]]]) -> list[float]:
        logs = [0.0] * len(qs)
        for treated, base in runs:  # each sorted
            for i, q in enumerate(qs):
                t, b = quantile(treated, q), quantile(base, q)
                logs[i] += math.log(t / b) if t > 0 and b > 0 else math.nan
        return [math.exp(x / len(runs)) for x in logs]

    points = pooled([(sorted(t), sorted(b)) for t, b in pairs])
    rng = random.Random(seed)
    boots: list[list[float]] = [[] for _ in qs]
    for _ in range(resamples):
        drawn = [
            (sorted(rng.choices(t, k=len(t))), sorted(rng.choices(b, k=len(b)))) for t, b in pairs
        ]
        for i, v in enumerate(pooled(drawn)):
            if not math.isnan(v):
                boots[i].append(v)
    tail = (1.0 - level) / 2
    out: dict[float, tuple[float, float, float]] = {}
    for i, q in enumerate(qs):
        bs = sorted(boots[i])
        if bs:
            out[q] = (points[i], quantile(bs, tail), quantile(bs, 1.0 - tail))
        else:
            out[q] = (points[i], math.nan, math.nan)
    return out


def bootstrap_ratio(
    pairs: Sequence[tuple[Sequence[float], Sequence[float]]],
    q: float,
    *,
    resamples: int = 300,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """:func:`bootstrap_ratios` for one quantile: ``(ratio, low, high)``."""
    return bootstrap_ratios(pairs, (q,), resamples=resamples, seed=seed, level=level)[q]


def spread(values: Sequence[float]) -> tuple[float, float]:
    """The smallest and largest of ``values`` (NaN ignored): the spread over repeats."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return (math.nan, math.nan)
    return (min(finite), max(finite))


def window_quantiles(
    records: Sequence[tuple[float, float]], start: float, step: float, q: float
) -> list[tuple[float, float]]:
    """``q`` quantile of latency per ``step`` seconds of scheduled time, from ``start``.

    ``records`` are (scheduled time, latency); returns (bin middle - start, quantile)
    for every non-empty bin, in time order.
    """
    bins: dict[int, list[float]] = {}
    for sched, lat in records:
        if sched >= start:
            bins.setdefault(int((sched - start) // step), []).append(lat)
    return [((k + 0.5) * step, quantile(sorted(v), q)) for k, v in sorted(bins.items()) if v]


def dominated(
    point: tuple[float, float], curve: Sequence[tuple[float, float]], tolerance: float = 0.0
) -> bool:
    """Whether (share kept, inflation) ``point`` is no better than the curve somewhere.

    The curve (points of (share, inflation), any order) dominates the point when some
    curve point keeps at least as much throughput with at most as much inflation
    (``tolerance`` is added to the point's inflation to allow for noise).

    >>> dominated((0.3, 1.5), [(0.4, 1.2), (0.9, 2.0)])
    True
    >>> dominated((0.3, 1.1), [(0.4, 1.2), (0.9, 2.0)])
    False
    """
    return any(s >= point[0] and infl <= point[1] + tolerance for s, infl in curve)


# two-sided 95 % quantiles of Student's t by degrees of freedom (1.96 beyond the table)
_T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26,
        10: 2.23, 12: 2.18, 15: 2.13, 20: 2.09, 30: 2.04, 60: 2.00}  # fmt: skip


def t95(df: int) -> float:
    """The two-sided 95 % quantile of Student's t with ``df`` degrees of freedom (≥ 1).

    >>> t95(2), t95(11), t95(1000)
    (4.3, 2.23, 1.96)
    """
    if df < 1:
        raise ValueError(f"df={df!r}: at least 1")
    if df > 60:
        return 1.96
    return _T95[max(k for k in _T95 if k <= df)]


def repeat_interval(ratios: Sequence[float], target: float = 0.02) -> dict[str, float]:
    """How well repeats pin down a ratio: the interval over repeats, not within runs.

    ``ratios`` are one scenario's per-repeat ratios (e.g. the A/A ratio of (a2) over
    (a) of each repeat). The logarithms are treated as a sample: ``mean`` is their
    geometric mean, ``half`` the half-width of the 95 % t interval around it as a
    fraction (0.02: ±2 %), ``sd`` the standard deviation of the logs, and ``needed``
    the number of repeats at which that spread would give a half-width of ``target``.
    With fewer than two finite ratios the spread is unknown (NaN).

    >>> r = repeat_interval([1.0, 1.0, 1.0])
    >>> r["mean"], r["half"], r["needed"]
    (1.0, 0.0, 2.0)
    """
    logs = [math.log(x) for x in ratios if x > 0 and not math.isnan(x)]
    n = len(logs)
    nan = math.nan
    if n == 0:
        return {"n": 0.0, "mean": nan, "half": nan, "sd": nan, "needed": nan}
    mean = sum(logs) / n
    if n < 2:
        return {"n": 1.0, "mean": math.exp(mean), "half": nan, "sd": nan, "needed": nan}
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / (n - 1))
    half = math.exp(t95(n - 1) * sd / math.sqrt(n)) - 1.0
    goal = math.log1p(target)
    needed = 2
    while needed < 100_000 and t95(needed - 1) * sd / math.sqrt(needed) > goal:
        needed += 1
    return {"n": float(n), "mean": math.exp(mean), "half": half, "sd": sd, "needed": float(needed)}


def io_scheduler(path: str | os.PathLike[str]) -> str:
    """The block I/O scheduler of the device holding ``path`` (``""`` when unknown).

    It decides whether the idle I/O class means anything: ``none`` ignores I/O
    priorities, ``mq-deadline`` and ``bfq`` honour them.
    """
    st = os.stat(path)
    dev = Path(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
    for queue in (dev / "queue", dev.resolve().parent / "queue"):
        try:
            text = (queue / "scheduler").read_text()
        except OSError:
            continue
        chosen = [w[1:-1] for w in text.split() if w.startswith("[")]
        return chosen[0] if chosen else text.strip()
    return ""
