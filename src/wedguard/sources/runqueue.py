"""RunQueueSource: how long production's threads wait for a CPU.

``/proc/<pid>/task/<tid>/schedstat`` holds three numbers per thread: nanoseconds on the
CPU, nanoseconds *waiting on a run queue* (runnable, but another task had the CPU)
and the number of time slices. The second one is the fastest direct measure of CPU
harm there is: when a backup takes the CPU a production thread wants, that thread's
wait grows within milliseconds, readable at any rate without privileges or setup
beyond naming production's processes.

The source reports, per sample, the run-queue wait summed over every thread of the
matched processes, per second of wall time:

* ``prod.runq_ratio``: seconds waited per second (0.05 = 50 ms of waiting each second);
* ``prod.runq_share``: the share of the time production wanted a CPU that it spent
  waiting (wait / (wait + run)), 0..1; a busy production and an idle one compare.

Both appear from the second sample on. A process matched by name is looked up again
on every sample, so a restarted service is followed. When nothing matches, or the
files cannot be read, the metrics are reported as failed (``prod.runq_ratio.error``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping

from wedguard import _checks
from wedguard.errors import ConfigError
from wedguard.sources._util import counter_delta

__all__ = ["RunQueueSource", "parse_schedstat"]


def parse_schedstat(text: str) -> tuple[int, int]:
    """``(ns on the CPU, ns waiting on a run queue)`` from a schedstat line.

    >>> parse_schedstat("123456 7890 12\\n")
    (123456, 7890)

    Raises:
        ValueError: the text is not three whole numbers.
    """
    fields = text.split()
    if len(fields) != 3:
        raise ValueError(f"schedstat: expected 3 fields, got {text!r}")
    run, wait, _slices = (int(f) for f in fields)
    if run < 0 or wait < 0:
        raise ValueError(f"schedstat: negative counters in {text!r}")
    return run, wait


class RunQueueSource:
    """Run-queue wait of production's processes, from ``/proc/<pid>/task/*/schedstat``.

    Args:
        pids: process ids to watch.
        names: process names to watch (``comm``, as ``ps -o comm`` shows it, or the
            first word of the command line's program name): every process so named.
        prefix: the metric prefix (default ``"prod"``).
        proc_root: where ``/proc`` is (a directory of fake files in tests).
        monotonic: the time source for rates.

    Example::

        >>> src = RunQueueSource(pids=[os.getpid()])
        >>> sorted(src.sample())      # nothing to compare with yet
        []
        >>> "prod.runq_ratio" in src.sample()
        True

    .. versionadded:: 0.3.0
    """

    __slots__ = ("_monotonic", "_prev", "_root", "names", "pids", "prefix")

    def __init__(
        self,
        pids: Iterable[int] = (),
        names: Iterable[str] = (),
        *,
        prefix: str = "prod",
        proc_root: str | os.PathLike[str] = "/proc",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        pid_list = _checks.items(pids, "pids", "process ids")
        for pid in pid_list:
            if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
                raise ConfigError("pids", pid, "process ids (whole numbers > 0)")
        name_list = _checks.items(names, "names", "process names")
        for name in name_list:
            if not isinstance(name, str) or not name or "/" in name:
                raise ConfigError("names", name, "process names (no '/')")
        if not pid_list and not name_list:
            raise ConfigError("pids", pids, "at least one pid or name to watch")
        if not isinstance(prefix, str) or not prefix:
            raise ConfigError("prefix", prefix, "a metric name prefix")
        if not callable(monotonic):
            raise ConfigError("monotonic", monotonic, "a callable returning seconds")
        self.pids: tuple[int, ...] = tuple(pid_list)
        self.names: tuple[str, ...] = tuple(name_list)
        self.prefix = prefix
        self._root = _checks.path(proc_root, "proc_root", "a directory")
        self._monotonic = monotonic
        self._prev: tuple[float, dict[int, tuple[int, int]]] | None = None

    def _matching(self) -> list[int]:
        found = list(self.pids)
        if not self.names:
            return found
        wanted = set(self.names)
        try:
            entries = os.listdir(self._root)
        except OSError:
            return found
        for entry in entries:
            if not entry.isdigit() or int(entry) in found:
                continue
            try:
                with open(os.path.join(self._root, entry, "comm"), encoding="utf-8") as f:
                    comm = f.read().strip()
            except (OSError, UnicodeDecodeError):
                continue
            if comm in wanted:
                found.append(int(entry))
        return found

    def _read(self, pid: int) -> dict[int, tuple[int, int]]:
        """``{tid: (run, wait)}`` for every thread of ``pid`` (empty when gone)."""
        base = os.path.join(self._root, str(pid))
        try:
            tids = [t for t in os.listdir(os.path.join(base, "task")) if t.isdigit()]
        except OSError:
            tids = []
        paths = [(int(t), os.path.join(base, "task", t, "schedstat")) for t in tids]
        if not paths:  # no task directory: the process's own line
            paths = [(pid, os.path.join(base, "schedstat"))]
        out: dict[int, tuple[int, int]] = {}
        for tid, path in paths:
            try:
                with open(path, encoding="ascii") as f:
                    out[tid] = parse_schedstat(f.read())
            except (OSError, ValueError):
                continue  # a thread that ended between listdir and open
        return out

    def sample(self) -> Mapping[str, float]:
        """``<prefix>.runq_ratio`` and ``<prefix>.runq_share`` since the last sample."""
        now = self._monotonic()
        threads: dict[int, tuple[int, int]] = {}
        for pid in self._matching():
            threads.update(self._read(pid))
        ratio, share = f"{self.prefix}.runq_ratio", f"{self.prefix}.runq_share"
        if not threads:
            self._prev = None
            return {f"{ratio}.error": 1.0, f"{share}.error": 1.0}
        prev, self._prev = self._prev, (now, threads)
        if prev is None or now <= prev[0]:
            return {}
        run = wait = 0.0
        for tid, (r, w) in threads.items():
            before = prev[1].get(tid)
            if before is None:  # a new thread: counted from its next sample
                continue
            run += counter_delta(before[0], r)
            wait += counter_delta(before[1], w)
        span_ns = (now - prev[0]) * 1e9
        return {
            ratio: wait / span_ns,
            share: wait / (wait + run) if wait + run > 0 else 0.0,
        }

    def __repr__(self) -> str:
        return f"RunQueueSource(pids={list(self.pids)}, names={list(self.names)})"
