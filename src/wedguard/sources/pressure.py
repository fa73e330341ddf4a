"""PressureSource: Linux pressure-stall information (PSI).

PSI is the kernel's own measure of tasks waiting for CPU, I/O or memory: a direct
signal that production is being squeezed. A production service's own cgroup's
``cpu.pressure`` and ``io.pressure`` react within a fraction of a second when a backup
starts, where the system-wide figures may not, so watch the service's cgroup when you
can.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence

from wedguard import _checks
from wedguard.errors import ConfigError
from wedguard.sources._util import counter_delta, own_cgroup

__all__ = ["PressureSource", "parse_pressure"]

_RESOURCES = ("cpu", "io", "memory")


def parse_pressure(text: str) -> dict[str, dict[str, float]]:
    """Parse a PSI file: ``{"some": {"avg10": ..., "total": ...}, "full": {...}}``.

    >>> parse_pressure("some avg10=1.50 avg60=0.20 avg300=0.00 total=12345\\n")
    {'some': {'avg10': 1.5, 'avg60': 0.2, 'avg300': 0.0, 'total': 12345.0}}
    """
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind not in ("some", "full"):
            continue
        values: dict[str, float] = {}
        for item in rest.split():
            key, _, value = item.partition("=")
            try:
                values[key] = float(value)
            except ValueError:
                continue
        if "avg10" in values:
            out[kind] = values
    return out


class PressureSource:
    """System-wide and per-cgroup pressure stall information.

    For each resource (``cpu``, ``io``, ``memory``) and each of ``some`` and ``full``
    this reports, in percent of wall time spent stalled:

    * ``pressure.<res>.<some|full>_avg10``: the kernel's 10-second average;
    * ``pressure.<res>.<some|full>_percent``: the share over the last sampling
      interval, from the ``total`` stall counter (much quicker than avg10).

    With ``cgroup`` set, the same figures from that cgroup's ``<res>.pressure`` files
    are reported as ``pressure.cgroup.<res>....``.

    Where PSI is unavailable (not Linux, an old kernel, ``psi=0``, no such cgroup) the
    metrics are reported as failed (``"<name>.error": 1.0``), never as zero;
    :attr:`available` says what was readable at the last sample. With
    ``unreadable="unavailable"`` a file that has never been readable is reported as
    ``"<name>.unavailable": 1.0`` instead: the guard says once that it cannot read the
    signal and does not judge it (the default guard's own source does this, so a
    kernel without PSI is not read as harm); a file that was readable and fails later
    is still an error. The ``*_percent`` figures appear from the second sample on.

    Args:
        cgroup: a cgroup v2 directory to watch as well: an absolute path, a path
            relative to ``cgroup_root`` (``"system.slice/postgresql.service"``), or
            ``"self"`` for this process's own cgroup.
        resources: which of ``"cpu"``, ``"io"``, ``"memory"``.
        system: report the system-wide figures (default True).
        proc_root: where the system files are (default ``/proc/pressure``).
        cgroup_root: where the cgroup v2 hierarchy is mounted.
        prefix: the metric name prefix (default ``"pressure"``).
        unreadable: how a file that was never readable is reported: ``"error"`` (the
            default) or ``"unavailable"``.

    Example::

        >>> src = PressureSource(proc_root="/nonexistent")
        >>> src.sample()["pressure.cpu.some_avg10.error"]
        1.0

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.3.0 ``unreadable``.
    """

    __slots__ = (
        "_files",
        "_monotonic",
        "_prev",
        "_seen",
        "available",
        "prefix",
        "resources",
        "unreadable",
    )

    def __init__(
        self,
        cgroup: str | os.PathLike[str] | None = None,
        *,
        resources: Sequence[str] = _RESOURCES,
        system: bool = True,
        proc_root: str | os.PathLike[str] = "/proc/pressure",
        cgroup_root: str | os.PathLike[str] = "/sys/fs/cgroup",
        prefix: str = "pressure",
        monotonic: Callable[[], float] = time.monotonic,
        unreadable: str = "error",
    ) -> None:
        if unreadable not in ("error", "unavailable"):
            raise ConfigError("unreadable", unreadable, "'error' or 'unavailable'")
        self.unreadable = unreadable
        self._seen: set[str] = set()
        what = "a non-empty subset of ('cpu', 'io', 'memory')"
        resources = _checks.items(resources, "resources", what)
        if not all(r in _RESOURCES for r in resources) or not resources:
            raise ConfigError("resources", resources, what)
        if not isinstance(prefix, str) or not prefix:
            raise ConfigError("prefix", prefix, "a metric name prefix")
        if not system and cgroup is None:
            raise ConfigError("system", system, "True, or a cgroup to watch")
        self.resources = tuple(resources)
        self.prefix = prefix
        self._monotonic = monotonic
        files: list[tuple[str, str]] = []  # (metric stem, path)
        if not callable(monotonic):
            raise ConfigError("monotonic", monotonic, "a callable returning seconds")
        if system:
            root = _checks.path(proc_root, "proc_root", "a directory")
            files.extend((f"{prefix}.{res}", os.path.join(root, res)) for res in self.resources)
        if cgroup is not None:
            path = _checks.path(cgroup, "cgroup", "a cgroup path or 'self'")
            if path == "self":
                own = own_cgroup()
                path = own.lstrip("/") if own is not None else "\0unavailable"
            if not os.path.isabs(path):
                path = os.path.join(_checks.path(cgroup_root, "cgroup_root", "a directory"), path)
            files.extend(
                (f"{prefix}.cgroup.{res}", os.path.join(path, f"{res}.pressure"))
                for res in self.resources
            )
        self._files = tuple(files)
        self._prev: dict[str, tuple[float, float]] = {}
        self.available: dict[str, bool] = {}

    def sample(self) -> Mapping[str, float]:
        """The pressure figures; unreadable ones as ``<name>.error``."""
        out: dict[str, float] = {}
        now = self._monotonic()
        for stem, path in self._files:
            try:
                with open(path, encoding="ascii") as f:
                    parsed = parse_pressure(f.read())
            except (OSError, ValueError):
                parsed = {}
            if not parsed:
                self.available[stem] = False
                how = "error" if stem in self._seen or self.unreadable == "error" else "unavailable"
                for kind in ("some", "full"):
                    out[f"{stem}.{kind}_avg10.{how}"] = 1.0
                    out[f"{stem}.{kind}_percent.{how}"] = 1.0
                self._prev.pop(f"{stem}.some", None)
                self._prev.pop(f"{stem}.full", None)
                continue
            self.available[stem] = True
            self._seen.add(stem)
            for kind, values in parsed.items():
                name = f"{stem}.{kind}"
                out[f"{name}_avg10"] = values["avg10"]
                total = values.get("total")
                if total is None:
                    continue
                prev = self._prev.get(name)
                self._prev[name] = (now, total)
                if prev is not None and now > prev[0]:
                    stalled_us = counter_delta(prev[1], total)
                    pct = stalled_us / ((now - prev[0]) * 1e6) * 100.0
                    out[f"{name}_percent"] = min(max(pct, 0.0), 100.0)
        return out

    def __repr__(self) -> str:
        return f"PressureSource(files={[p for _, p in self._files]})"
