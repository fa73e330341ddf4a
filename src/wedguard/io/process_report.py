"""What happened to a guarded child: :class:`ProcessReport`, and the
:class:`GuardedCompletedProcess` that ``guard.run`` returns with it.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from wedguard.redact import redact_argv, redact_text
from wedguard.units import format_duration

__all__ = ["GuardedCompletedProcess", "PauseLog", "ProcessReport"]


def _frozen_pauses(value: Mapping[str, float]) -> Mapping[str, float]:
    from types import MappingProxyType

    return MappingProxyType(dict(value))


@attrs.frozen(slots=True)
class ProcessReport:
    """What happened to a guarded child process (also an event, ``kind == "process"``).

    Attributes:
        name: the child's name (the program's base name unless given).
        pid: its process id.
        argv: the command line, its secrets hidden (see
            :func:`wedguard.redact.redact_argv`): the report is logged, stored and sent.
        returncode: its exit status (negative: killed by that signal); None while it runs.
        started_at: when it started (aware datetime).
        duration: seconds from start to exit (or to now while it runs).
        io_bytes: bytes it read and wrote, summed over its descendants, as last read
            (what a short-lived child did after the monitor's last reading is not seen).
        io_counter: ``"bytes"`` (storage I/O) or ``"chars"`` (every read and write, used
            when the storage counters stay at zero, as on some filesystems and containers).
        cpu_seconds: CPU time it used, summed over its descendants.
        paused: seconds spent stopped, by cause: ``"stop"``, ``"calendar"``,
            ``"impact"``, ``"rate"`` (duty cycle on I/O), ``"cpu"`` (CPU cap).
        pauses: how many times it was stopped.
        longest_pause: the longest single pause, in seconds.
        freeze: how it is paused: ``"cgroup"`` (cgroup v2 freezer) or ``"signal"``.
        nice: the niceness it runs at (None when it could not be changed).
        ionice: ``"idle"`` when it runs in the idle I/O class, else None.
        notes: what the OS did not allow and other remarks, one line each.
        signals: the termination signals forwarded to it, by name.
        aborted: why the guard ended it (max pause, panic, timeout), or "".
        on_guard_death: what the watchdog does to it if the guarding process dies:
            ``"resume"``, ``"terminate"`` or ``"off"`` (no watchdog).
        cpus: the cores it is confined to (None: not confined).

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.3.0 ``cpus``.
    """

    name: str
    pid: int
    argv: tuple[str, ...]
    returncode: int | None
    started_at: datetime
    duration: float
    io_bytes: float
    io_counter: str
    cpu_seconds: float
    paused: Mapping[str, float] = attrs.field(converter=_frozen_pauses)
    pauses: int
    longest_pause: float
    freeze: str
    nice: int | None
    ionice: str | None
    notes: tuple[str, ...]
    signals: tuple[str, ...]
    aborted: str
    on_guard_death: str = "off"
    cpus: tuple[int, ...] | None = None

    @property
    def kind(self) -> str:
        return "process"

    @property
    def paused_total(self) -> float:
        return sum(self.paused.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "process",
            "name": self.name,
            "pid": self.pid,
            "argv": list(self.argv),
            "returncode": self.returncode,
            "started_at": self.started_at.isoformat(),
            "duration_s": self.duration,
            "io_bytes": self.io_bytes,
            "io_counter": self.io_counter,
            "cpu_seconds": self.cpu_seconds,
            "paused_s": dict(self.paused),
            "pauses": self.pauses,
            "longest_pause_s": self.longest_pause,
            "freeze": self.freeze,
            "nice": self.nice,
            "ionice": self.ionice,
            "notes": list(self.notes),
            "signals": list(self.signals),
            "aborted": self.aborted,
            "on_guard_death": self.on_guard_death,
            "cpus": None if self.cpus is None else list(self.cpus),
        }

    def __str__(self) -> str:
        rc = "running" if self.returncode is None else f"exit {self.returncode}"
        lines = [
            f"{self.name} (pid {self.pid}): {rc} after {format_duration(self.duration)}, "
            f"{self.io_bytes:.0f} B I/O ({self.io_counter}), {self.cpu_seconds:.2f} s CPU, "
            f"paused {format_duration(self.paused_total)} in {self.pauses} pauses"
        ]
        if self.cpus is not None:
            lines.append(f"  confined to cores {', '.join(map(str, self.cpus))}")
        if self.aborted:
            lines.append(f"  aborted: {self.aborted}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


class GuardedCompletedProcess(subprocess.CompletedProcess[Any]):
    """A :class:`subprocess.CompletedProcess` that also carries the :class:`ProcessReport`.

    ``args`` is the command as given; the repr shows it with its secrets hidden.
    """

    report: ProcessReport

    def __init__(
        self,
        args: Any,
        returncode: int,
        stdout: Any = None,
        stderr: Any = None,
        *,
        report: ProcessReport,
    ) -> None:
        super().__init__(args, returncode, stdout, stderr)
        self.report = report

    def __repr__(self) -> str:
        args = redact_argv(self.args) if isinstance(self.args, (list, tuple)) else self.args
        if isinstance(args, (str, bytes)):
            args = redact_text(args)
        parts = [f"args={args!r}", f"returncode={self.returncode!r}"]
        if self.stdout is not None:
            parts.append(f"stdout={self.stdout!r}")
        if self.stderr is not None:
            parts.append(f"stderr={self.stderr!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


class PauseLog:
    """The books a :class:`ProcessReport` is made from: why the child is stopped,
    seconds stopped by cause, how many pauses, the longest.

    Times are monotonic seconds, passed in.

    Attributes:
        cause: why the child is stopped now, or None while it runs.
        began: when the running pause began (a change of cause does not end it).
        count: how many times the child was stopped.

    Example::

        >>> log = PauseLog(("stop", "rate"))
        >>> log.change("rate", 1.0); log.change("stop", 3.0); log.change(None, 4.0)
        >>> log.paused(5.0), log.count, log.longest(5.0)
        ({'stop': 1.0, 'rate': 2.0}, 1, 3.0)
    """

    __slots__ = ("_longest", "_since", "_time", "began", "cause", "count")

    def __init__(self, causes: Sequence[str]) -> None:
        self.cause: str | None = None
        self.began = 0.0
        self.count = 0
        self._since = 0.0  # when the running cause began
        self._longest = 0.0
        self._time = dict.fromkeys(causes, 0.0)

    def change(self, cause: str | None, now: float) -> None:
        """From ``now`` the child is stopped for ``cause`` (None: it runs)."""
        was = self.cause
        if cause is not None and was is None:
            self._since = self.began = now
            self.count += 1
        if was is not None and cause != was:
            self._time[was] += now - self._since
            self._since = now
        if was is not None and cause is None:
            self._longest = max(self._longest, now - self.began)
        self.cause = cause

    def paused(self, now: float) -> dict[str, float]:
        """Seconds stopped so far by cause, the running pause included."""
        out = dict(self._time)
        if self.cause is not None:
            out[self.cause] += now - self._since
        return out

    def longest(self, now: float) -> float:
        """The longest single pause so far, the running one included."""
        if self.cause is None:
            return self._longest
        return max(self._longest, now - self.began)
