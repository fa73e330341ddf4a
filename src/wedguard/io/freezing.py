"""How a guarded child is paused: its own cgroup v2 frozen, or SIGSTOP/SIGCONT.

:class:`_CgroupFreezer` gives the child a cgroup of its own under the guarding
process's and writes its ``cgroup.freeze``; where that is not allowed,
:class:`_SignalFreezer` stops the child's process group and any descendant that left it.
Both resume what they stopped when closed.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Final

from wedguard.io.proctree import children_of, descendant_pids

__all__ = ["CGROUP_ROOT"]

CGROUP_ROOT: Final = Path("/sys/fs/cgroup")


class _SignalFreezer:
    """SIGSTOP/SIGCONT of the child's process group and of descendants outside it."""

    kind = "signal"

    def __init__(self, pid: int) -> None:
        self._pid = pid
        # descendants outside the group that were stopped: resumed even if they have
        # been reparented since (they are then no longer descendants)
        self._outside: set[int] = set()

    def _send(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pid, sig)
        outside = set(self._outside)
        for child in descendant_pids(self._pid):
            with contextlib.suppress(OSError):
                if os.getpgid(child) != self._pid:
                    outside.add(child)
        for child in outside:
            with contextlib.suppress(OSError):
                os.kill(child, sig)
        self._outside = outside if sig == signal.SIGSTOP else set()

    def freeze(self) -> None:
        self._send(signal.SIGSTOP)

    def thaw(self) -> None:
        self._send(signal.SIGCONT)

    def close(self) -> None:
        self.thaw()


class _CgroupFreezer:
    """The child in a cgroup v2 of its own: ``cgroup.freeze`` 1/0."""

    kind = "cgroup"

    def __init__(self, path: Path, pid: int) -> None:
        self.path = path
        self._pid = pid
        self._signals = _SignalFreezer(pid)
        self._signalled = False

    @classmethod
    def create(cls, pid: int, root: Path = CGROUP_ROOT) -> _CgroupFreezer:
        """Give ``pid`` (and its descendants) a cgroup under ours; OSError if not allowed."""
        if not (root / "cgroup.controllers").exists():
            raise OSError(f"no cgroup v2 hierarchy at {root}")
        own = ""
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                own = line[3:].strip()
        parent = root / own.lstrip("/")
        if not os.access(parent, os.W_OK):
            raise OSError(f"{parent} is not writable")
        path = parent / f"wedguard-{os.getpid()}-{pid}"
        path.mkdir(exist_ok=True)
        try:
            if not (path / "cgroup.freeze").exists():
                raise OSError(f"{path} has no cgroup.freeze (a kernel before 5.2?)")
            for p in [pid, *(c.pid for c in children_of(pid))]:
                (path / "cgroup.procs").write_text(f"{p}\n")
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            raise
        return cls(path, pid)

    def freeze(self) -> None:
        try:
            (self.path / "cgroup.freeze").write_text("1")
        except OSError:
            # the cgroup went away or refuses: stop the child the old way
            self._signalled = True
            self._signals.freeze()

    def thaw(self) -> None:
        with contextlib.suppress(OSError):
            (self.path / "cgroup.freeze").write_text("0")
        if self._signalled:
            self._signalled = False
            self._signals.thaw()

    def close(self) -> None:
        self.thaw()
        with contextlib.suppress(OSError):
            self.path.rmdir()
