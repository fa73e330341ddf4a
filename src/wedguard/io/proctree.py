"""A child's process tree: its descendants, and their I/O and CPU counters summed.

:func:`descendant_pids` reads only the tree's own ``/proc`` files where Linux has them;
:class:`TreeMeter` keeps the running totals a guarded child is paced by.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from typing import Final

import psutil

__all__ = ["TreeMeter", "children_of", "descendant_pids"]

_INF: Final = math.inf


def _has_children_files() -> bool:
    try:
        return os.path.exists(f"/proc/self/task/{threading.get_native_id()}/children")
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return False


_CHILDREN_FILES: Final = _has_children_files()
"""Linux's ``/proc/<pid>/task/<tid>/children``: a process's children without reading
every process on the machine (which psutil does, a few milliseconds with 100 processes
and tens with a thousand)."""


def descendant_pids(pid: int) -> list[int]:
    """The pids of the live descendants of ``pid``, parents before their children
    (empty when it is gone). Reads only the tree's own ``/proc`` files where Linux has
    them, else asks psutil."""
    if not _CHILDREN_FILES:
        return [c.pid for c in children_of(pid)]
    out: list[int] = []
    todo = [pid]
    seen = {pid}
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children", "rb") as f:
                    data = f.read()
            except OSError:
                continue
            for word in data.split():
                child = int(word)
                if child not in seen:
                    seen.add(child)
                    out.append(child)
                    todo.append(child)
    return out


def children_of(pid: int) -> list[psutil.Process]:
    """The live descendants of ``pid`` (empty when it is gone)."""
    if _CHILDREN_FILES:
        procs = []
        for child in descendant_pids(pid):
            with contextlib.suppress(psutil.Error, OSError):
                procs.append(psutil.Process(child))
        return procs
    try:
        return psutil.Process(pid).children(recursive=True)
    except (psutil.Error, OSError):
        return []


class TreeMeter:
    """The I/O and CPU a process and its descendants used, read from their counters.

    Attributes:
        io_used: bytes read and written so far (by the counter named in ``counter``).
        counter: ``"chars"`` (every read and write) until the storage counters move,
            then ``"bytes"`` (storage I/O; some filesystems and containers leave them
            at zero).
        cpu_used: CPU seconds, user and system, children included.
    """

    __slots__ = ("_bases", "_last_cpu", "_last_tree", "_procs", "counter", "cpu_used", "io_used")

    def __init__(self) -> None:
        self.io_used = 0.0
        self.cpu_used = 0.0
        self.counter = "chars"
        self._procs: dict[int, psutil.Process] = {}
        self._last_tree = 0.0
        self._last_cpu = -_INF
        self._bases: dict[str, float] = {}

    def forget_tree(self) -> None:
        """Read the tree again at the next :meth:`measure` (the child has just exited)."""
        self._last_tree = -_INF

    def _tree(self, pid: int, now: float) -> list[psutil.Process]:
        if now - self._last_tree >= 0.5 or pid not in self._procs:
            self._last_tree = now
            procs = self._procs
            try:
                root = procs.get(pid) or psutil.Process(pid)
                fresh = {pid: root}
                for child in descendant_pids(pid):
                    known = procs.get(child)
                    if known is None:
                        with contextlib.suppress(psutil.Error, OSError):
                            known = psutil.Process(child)
                    if known is not None:
                        fresh[child] = known
                self._procs = fresh
            except (psutil.Error, OSError):
                pass
        return list(self._procs.values())

    def measure(self, pid: int, now: float, *, cpu_capped: bool) -> None:
        """Read the counters of ``pid``'s tree at ``now`` (monotonic seconds); CPU
        times at every call while ``cpu_capped``, else twice a second."""
        rb = wb = rc = wc = 0
        cpu = 0.0
        want_cpu = cpu_capped or now - self._last_cpu >= 0.5
        if want_cpu:
            self._last_cpu = now
        for p in self._tree(pid, now):
            try:
                io = p.io_counters()
                if want_cpu:
                    t = p.cpu_times()
                    cpu += t.user + t.system + t.children_user + t.children_system
            except (psutil.Error, OSError, AttributeError):
                continue
            rb += io.read_bytes
            wb += io.write_bytes
            rc += getattr(io, "read_chars", 0)
            wc += getattr(io, "write_chars", 0)
        self._account(float(rb + wb), float(rc + wc))
        if want_cpu:
            self.cpu_used = max(self.cpu_used, cpu)

    def _account(self, storage: float, chars: float) -> None:
        b = self._bases
        if self.counter == "chars" and storage > 0:
            # the storage counters move: account by them from here on; what the
            # character counters already counted stands for that much of them, the
            # rest is counted now (a short child's last reading would lose it all)
            self.counter = "bytes"
            b["bytes"] = min(storage, self.io_used)
        if self.counter == "bytes":
            grown = storage - b.get("bytes", storage)
            b["bytes"] = max(b.get("bytes", storage), storage)
        else:
            grown = chars - b.get("chars", 0.0)
            b["chars"] = max(b.get("chars", 0.0), chars)
        self.io_used += max(0.0, grown)
