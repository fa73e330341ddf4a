"""SystemSource: the machine's CPU, memory, disk and network (/proc on Linux, else psutil)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import psutil

from wedguard import _checks
from wedguard.errors import ConfigError
from wedguard.sources._util import counter_delta, own_cgroup

__all__ = ["SystemSource"]

_SKIP_DISKS = ("loop", "ram", "zram", "fd", "sr")
_MIN_INTERVAL = 0.01  # seconds: shorter intervals repeat the last rates


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return None


class _Cgroup:
    """A cgroup v2 directory's CPU quota and memory limit."""

    __slots__ = ("cores", "mem_limit", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self.cores: float | None = None
        self.mem_limit: float | None = None
        cpu_max = _read(os.path.join(path, "cpu.max"))
        if cpu_max:
            quota, _, period = cpu_max.partition(" ")
            if quota != "max":
                try:
                    self.cores = float(quota) / float(period or 100000)
                except (ValueError, ZeroDivisionError):
                    self.cores = None
        mem_max = _read(os.path.join(path, "memory.max"))
        if mem_max and mem_max != "max":
            try:
                self.mem_limit = float(mem_max)
            except ValueError:
                self.mem_limit = None

    @property
    def limited(self) -> bool:
        return self.cores is not None or self.mem_limit is not None

    def cpu_usage_s(self) -> float | None:
        stat = _read(os.path.join(self.path, "cpu.stat"))
        if stat is None:
            return None
        for line in stat.splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                try:
                    return float(value) / 1e6
                except ValueError:
                    return None
        return None

    def memory_current(self) -> float | None:
        text = _read(os.path.join(self.path, "memory.current"))
        try:
            return float(text) if text is not None else None
        except ValueError:
            return None


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class _ProcFiles:
    """Linux's machine-wide counters read straight from /proc.

    The files stay open and each reading is one ``pread`` at offset 0 (procfs builds
    the text afresh on every read), parsed from bytes: no file objects, no named
    tuples. That is what psutil reads too, at a third of its cost when the caches are
    cold (a 1 Hz sampler's every reading) and a tenth when warm.
    """

    __slots__ = ("__weakref__", "_fds")

    def __init__(self, root: str, names: tuple[str, ...]) -> None:
        fds: dict[str, int] = {}
        try:
            for name in names:
                fds[name] = os.open(os.path.join(root, name), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            _close_fds(list(fds.values()))
            raise
        self._fds = fds
        weakref.finalize(self, _close_fds, list(fds.values()))

    def read(self, name: str, size: int = 16384) -> bytes:
        """The file's text; ``size`` bounds it when only its head is needed."""
        fd = self._fds[name]
        while True:
            data = os.pread(fd, size, 0)
            if len(data) < size or size >= 1 << 24:
                return data
            size *= 4

    def cpu(self) -> tuple[float, float]:
        """(all jiffies but guests', idle + iowait jiffies) from /proc/stat's first line."""
        head = self.read("stat", 1024)
        f = head[: head.index(b"\n")].split()
        if f[0] != b"cpu" or len(f) < 6:
            raise ValueError(f"unexpected /proc/stat line {head[:80]!r}")
        v = [int(x) for x in f[1:9]]  # user nice system idle iowait irq softirq steal
        return float(sum(v)), float(v[3] + v[4])  # user and nice already include guests

    def memory(self) -> tuple[float, float]:
        """(total bytes, available bytes) from /proc/meminfo."""
        total = avail = -1
        for line in self.read("meminfo", 1024).splitlines():
            if line.startswith(b"MemTotal:"):
                total = int(line.split()[1]) * 1024
            elif line.startswith(b"MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                break
        if total <= 0 or avail < 0:
            raise ValueError("/proc/meminfo has no MemTotal or MemAvailable")
        return float(total), float(avail)

    def disks(self, keep: Callable[[str], bool]) -> dict[str, tuple[float, float, float]]:
        """Bytes read, bytes written and busy milliseconds of each disk ``keep`` accepts."""
        out = {}
        for line in self.read("diskstats").splitlines():
            f = line.split()
            if len(f) < 10:
                continue
            name = f[2].decode("ascii", "replace")
            if keep(name):  # sectors are 512 bytes in diskstats, whatever the device's
                busy = float(f[12]) if len(f) > 12 else -1.0
                out[name] = (float(int(f[5]) * 512), float(int(f[9]) * 512), busy)
        return out

    def network(self) -> tuple[float, float]:
        """(bytes sent, bytes received) over all interfaces, from /proc/net/dev."""
        sent = recv = 0
        for line in self.read("net/dev").splitlines()[2:]:
            _, colon, rest = line.partition(b":")
            f = rest.split()
            if colon and len(f) >= 9:
                recv += int(f[0])
                sent += int(f[8])
        return float(sent), float(recv)


def _detect_cgroup(root: str) -> str | None:
    if not os.path.exists(os.path.join(root, "cgroup.controllers")):
        return None  # not a cgroup v2 (unified) hierarchy
    own = own_cgroup()
    if own is None:
        return None
    return os.path.normpath(os.path.join(root, own.lstrip("/")))


class SystemSource:
    """The machine's load: CPU, memory, disk and network.

    Each sample reports

    * ``cpu.percent``: CPU busy since the previous sample (since construction for the
      first one, never psutil's meaningless first 0.0), as a share of the machine;
    * ``mem.used_bytes``, ``mem.percent``;
    * ``disk.read_bytes_per_s``, ``disk.write_bytes_per_s`` (whole disks, not
      partitions) and ``disk.busy_percent`` (the busiest disk's utilisation);
    * ``net.sent_bytes_per_s``, ``net.recv_bytes_per_s``.

    Counters become rates over the interval since the previous sample, with 32-bit
    wrap and counter resets handled. Inside a container with cgroup v2 limits
    (``cpu.max``, ``memory.max``), ``cpu.percent`` and ``mem.*`` are reported against
    the cgroup's quota and limit instead of the host's (``cpu.quota_cores`` and
    ``mem.limit_bytes`` say which).

    On Linux the figures are read straight from ``/proc`` (``stat``, ``meminfo``,
    ``diskstats``, ``net/dev``, kept open and re-read with one ``pread`` each); elsewhere,
    or with ``procfs=None``, through psutil. Either way they are psutil's figures; the
    direct reading costs a background sampler about a third as much CPU (see
    ``benchmarks/sources.py``). ``sample()`` never raises: a part that cannot be read
    is reported as ``<metric>.error``.

    Args:
        cgroup: ``None`` (default) detects this process's own cgroup v2 and uses it
            when it has limits; a path uses that cgroup directory; ``False`` ignores
            cgroups.
        disks: report disk figures (default True).
        network: report network figures (default True).
        cgroup_root: where the cgroup v2 hierarchy is mounted.
        monotonic: the time source for rates (default :func:`time.monotonic`).
        procfs: where Linux's procfs is mounted (default ``"/proc"``); ``None`` reads
            through psutil. Where procfs cannot be opened, psutil is used.

    Example::

        >>> src = SystemSource()
        >>> 0.0 <= src.sample()["mem.percent"] <= 100.0
        True

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "_cgroup",
        "_disk_names",
        "_last",
        "_monotonic",
        "_prev",
        "_proc",
        "disks",
        "network",
    )

    def __init__(
        self,
        *,
        cgroup: str | os.PathLike[str] | bool | None = None,
        disks: bool = True,
        network: bool = True,
        cgroup_root: str | os.PathLike[str] = "/sys/fs/cgroup",
        monotonic: Callable[[], float] = time.monotonic,
        procfs: str | os.PathLike[str] | None = "/proc",
    ) -> None:
        if cgroup is True:
            raise ConfigError("cgroup", cgroup, "None (detect), False, or a cgroup directory")
        if not callable(monotonic):
            raise ConfigError("monotonic", monotonic, "a callable returning seconds")
        self._monotonic = monotonic
        self.disks = bool(disks)
        self.network = bool(network)
        group: _Cgroup | None = None
        if cgroup is None:
            path = _detect_cgroup(_checks.path(cgroup_root, "cgroup_root", "a directory"))
            if path is not None:
                group = _Cgroup(path)
                if not group.limited:
                    group = None
        elif cgroup is not False:
            path = _checks.path(cgroup, "cgroup", "None (detect), False, or a cgroup directory")
            if not os.path.isdir(path):
                raise ConfigError("cgroup", cgroup, "an existing cgroup v2 directory")
            group = _Cgroup(path)
        self._cgroup = group
        self._proc: _ProcFiles | None = None
        if procfs is not None and sys.platform.startswith("linux"):
            names: tuple[str, ...] = ("stat", "meminfo")
            names += ("diskstats",) if self.disks else ()
            names += ("net/dev",) if self.network else ()
            try:
                self._proc = _ProcFiles(_checks.path(procfs, "procfs", "a directory"), names)
            except OSError:
                self._proc = None  # no procfs here (a sandbox, a chroot): psutil
        self._disk_names: dict[str, bool] = {}
        self._last: dict[str, float] = {}
        self._prev = self._counters()

    @property
    def cgroup(self) -> str | None:
        """The cgroup directory whose limits the figures are reported against."""
        return self._cgroup.path if self._cgroup is not None else None

    def _whole_disk(self, name: str) -> bool:
        known = self._disk_names.get(name)
        if known is None:
            known = not name.startswith(_SKIP_DISKS) and (
                not os.path.isdir("/sys/block") or os.path.exists(f"/sys/block/{name}")
            )
            self._disk_names[name] = known
        return known

    def _counters(self) -> dict[str, Any]:
        c: dict[str, Any] = {"t": self._monotonic()}
        proc = self._proc
        try:
            group = self._cgroup
            usage = group.cpu_usage_s() if group is not None and group.cores else None
            if usage is not None:
                c["cg_cpu"] = usage
            elif proc is not None:
                c["cpu"] = proc.cpu()
            else:
                t = psutil.cpu_times()
                idle = t.idle + getattr(t, "iowait", 0.0)
                c["cpu"] = (sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0), idle)
        except Exception:
            pass
        if self.disks:
            with contextlib.suppress(Exception):
                c["disk"] = proc.disks(self._whole_disk) if proc is not None else self._ps_disks()
        if self.network:
            try:
                if proc is not None:
                    c["net"] = proc.network()
                else:
                    n = psutil.net_io_counters()
                    if n is not None:
                        c["net"] = (float(n.bytes_sent), float(n.bytes_recv))
            except Exception:
                pass
        return c

    def _ps_disks(self) -> dict[str, tuple[float, float, float]]:
        per = psutil.disk_io_counters(perdisk=True) or {}
        return {
            name: (float(d.read_bytes), float(d.write_bytes), float(getattr(d, "busy_time", -1)))
            for name, d in per.items()
            if self._whole_disk(name)
        }

    def sample(self) -> Mapping[str, float]:
        """One reading of the machine; see the class docstring for the metrics."""
        out: dict[str, float] = {}
        try:
            self._memory(out)
            cur = self._counters()
            prev = self._prev
            dt = cur["t"] - prev["t"]
            if dt < _MIN_INTERVAL:
                out.update(self._last)  # too soon to measure a rate: repeat the last
            else:
                rates = self._rates(prev, cur, dt)
                self._prev = cur
                self._last = rates
                out.update(rates)
        except Exception:  # sample() never raises
            out.setdefault("cpu.percent.error", 1.0)
        return out

    def _memory(self, out: dict[str, float]) -> None:
        group = self._cgroup
        if group is not None and group.mem_limit:
            current = group.memory_current()
            if current is not None:
                out["mem.used_bytes"] = current
                out["mem.limit_bytes"] = group.mem_limit
                out["mem.percent"] = current / group.mem_limit * 100.0
                return
        try:
            if self._proc is not None:
                total, avail = self._proc.memory()
                out["mem.used_bytes"] = total - avail
                out["mem.percent"] = (total - avail) / total * 100.0
            else:
                vm = psutil.virtual_memory()
                out["mem.used_bytes"] = float(vm.total - vm.available)
                out["mem.percent"] = float(vm.percent)
        except Exception:
            out["mem.percent.error"] = 1.0
            out["mem.used_bytes.error"] = 1.0

    def _rates(self, prev: dict[str, Any], cur: dict[str, Any], dt: float) -> dict[str, float]:
        out: dict[str, float] = {}
        group = self._cgroup
        if "cg_cpu" in cur and "cg_cpu" in prev and group is not None and group.cores:
            used = counter_delta(prev["cg_cpu"], cur["cg_cpu"])
            out["cpu.percent"] = min(used / (dt * group.cores) * 100.0, 100.0)
            out["cpu.quota_cores"] = group.cores
        elif "cpu" in cur and "cpu" in prev:
            total = cur["cpu"][0] - prev["cpu"][0]
            idle = cur["cpu"][1] - prev["cpu"][1]
            if total > 0:
                out["cpu.percent"] = min(max((total - idle) / total * 100.0, 0.0), 100.0)
            else:  # the CPU clock has not ticked yet: measure from the old reading
                cur["cpu"] = prev["cpu"]
                last = self._last.get("cpu.percent")
                if last is not None:
                    out["cpu.percent"] = last
        else:
            out["cpu.percent.error"] = 1.0
        if self.disks:
            if "disk" in cur and "disk" in prev:
                rd = wr = 0.0
                busy = 0.0
                has_busy = False
                for name, (r, w, b) in cur["disk"].items():
                    old = prev["disk"].get(name)
                    if old is None:
                        continue
                    rd += counter_delta(old[0], r)
                    wr += counter_delta(old[1], w)
                    if b >= 0 and old[2] >= 0:
                        has_busy = True
                        busy = max(busy, counter_delta(old[2], b) / (dt * 1000.0) * 100.0)
                out["disk.read_bytes_per_s"] = rd / dt
                out["disk.write_bytes_per_s"] = wr / dt
                if has_busy:
                    out["disk.busy_percent"] = min(busy, 100.0)
            else:
                out["disk.read_bytes_per_s.error"] = 1.0
                out["disk.write_bytes_per_s.error"] = 1.0
        if self.network:
            if "net" in cur and "net" in prev:
                out["net.sent_bytes_per_s"] = counter_delta(prev["net"][0], cur["net"][0]) / dt
                out["net.recv_bytes_per_s"] = counter_delta(prev["net"][1], cur["net"][1]) / dt
            else:
                out["net.sent_bytes_per_s.error"] = 1.0
                out["net.recv_bytes_per_s.error"] = 1.0
        return out

    def __repr__(self) -> str:
        via = "procfs" if self._proc is not None else "psutil"
        return (
            f"SystemSource(cgroup={self.cgroup!r}, disks={self.disks}, "
            f"network={self.network}, via={via!r})"
        )
