"""ProcessSource: the backup's own CPU and memory, children included."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

import psutil

from wedguard.errors import ConfigError

__all__ = ["ProcessSource"]


class ProcessSource:
    """The backup's own footprint: ``backup.cpu.percent`` and ``backup.rss_bytes``.

    CPU is the time the process (and, with ``include_children``, all its descendants:
    ``pg_dump``, ``tar``, ``rsync``...) spent on the CPU since the previous sample, as
    a share of the whole machine (100 % = every core busy). RSS is summed over the same
    processes. A child that starts between samples is counted from its start; the CPU
    a child spends after the last sample before it exits is not seen.

    When the process is gone the metrics are reported as failed
    (``backup.cpu.percent.error``, ``backup.rss_bytes.error``).

    Args:
        pid: the process to watch (default: this one).
        include_children: sum over descendants too (default True).
        prefix: the metric prefix (default ``"backup"``).
        monotonic: the time source for rates (default :func:`time.monotonic`).

    Example::

        >>> src = ProcessSource()
        >>> src.sample()["backup.rss_bytes"] > 0
        True

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "_cpus",
        "_monotonic",
        "_procs",
        "_root",
        "_t",
        "include_children",
        "pid",
        "prefix",
    )

    def __init__(
        self,
        pid: int | None = None,
        include_children: bool = True,
        *,
        prefix: str = "backup",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if pid is None:
            pid = os.getpid()
        if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < 2**31:
            raise ConfigError("pid", pid, "a process id > 0 or None")
        if not isinstance(prefix, str) or not prefix:
            raise ConfigError("prefix", prefix, "a metric prefix such as 'backup'")
        if not callable(monotonic):
            raise ConfigError("monotonic", monotonic, "a callable returning seconds")
        self.pid = pid
        self.include_children = bool(include_children)
        self.prefix = prefix
        self._monotonic = monotonic
        self._cpus = float(psutil.cpu_count() or 1)
        try:
            self._root: psutil.Process | None = psutil.Process(pid)
        except psutil.Error:
            self._root = None
        self._procs: dict[int, tuple[psutil.Process, float]] = {}
        self._t = self._monotonic()
        if self._root is not None:
            self._scan(first=True)

    def _scan(self, first: bool = False) -> tuple[float, float] | None:
        """(cpu seconds since last scan, rss bytes), or None when the root is gone."""
        root = self._root
        if root is None:
            return None
        try:
            procs = [root]
            if self.include_children:
                procs.extend(root.children(recursive=True))
        except psutil.Error:
            return None
        cpu = 0.0
        rss = 0.0
        seen: dict[int, tuple[psutil.Process, float]] = {}
        for p in procs:
            key = p.pid
            known = self._procs.get(key)
            if known is not None and known[0] == p:
                p = known[0]  # keep the object: psutil checks it is the same process
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    used = t.user + t.system
                    mem = p.memory_info().rss
            except psutil.Error:
                if p is root:
                    return None
                continue
            rss += mem
            if known is not None:
                cpu += max(used - known[1], 0.0)
            elif not first:
                cpu += used  # started since the last scan
            seen[key] = (p, used)
        self._procs = seen
        return cpu, rss

    def sample(self) -> Mapping[str, float]:
        """``{"backup.cpu.percent": ..., "backup.rss_bytes": ...}`` or their errors."""
        cpu_key = f"{self.prefix}.cpu.percent"
        rss_key = f"{self.prefix}.rss_bytes"
        try:
            now = self._monotonic()
            got = self._scan()
            if got is None:
                return {cpu_key + ".error": 1.0, rss_key + ".error": 1.0}
            cpu_s, rss = got
            dt = now - self._t
            self._t = now
            out = {rss_key: rss}
            if dt > 0:
                out[cpu_key] = min(cpu_s / (dt * self._cpus) * 100.0, 100.0)
            return out
        except Exception:  # sample() never raises
            return {cpu_key + ".error": 1.0, rss_key + ".error": 1.0}

    def __repr__(self) -> str:
        return f"ProcessSource(pid={self.pid}, include_children={self.include_children})"
