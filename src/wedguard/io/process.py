"""Guarding a child process: ``guard.run(argv)`` and ``guard.pipe(src, dst)``.

Many backups are commands (``pg_dump``, ``rsync``, ``tar``, ``restic``), not Python
loops. :func:`run_guarded` (``guard.run``) starts one under the guard:

* it runs **niced** (``nice=10``) and in the **idle I/O class** where the OS allows;
  without the privilege the child runs as it would have and the report and
  :meth:`GuardedProcess.decision` say so;
* it is **paused** while the guard's decision is paused (BLACKOUT, HALT, ``stop``,
  ``hold``): its own cgroup v2 is frozen when one can be created, otherwise its whole
  process group gets ``SIGSTOP``/``SIGCONT``;
* it is **duty-cycled** to the allowed byte rate, in the manner of ``cpulimit`` but on
  I/O: the bytes it reads and writes (its I/O counters, summed over its descendants)
  are charged to a budget and the child is stopped while it is in debt. The rate is the
  guard's decision (configured rate, calendar cap, impact controller) read live, capped
  by ``io_rate``. At PEAK its CPU time is capped the same way (``cpu_share``);
* it is **never left stopped**: it is resumed in ``finally``, at interpreter exit and
  when the guarding process receives a termination signal (SIGTERM, SIGINT, SIGHUP,
  SIGQUIT), which is then forwarded to the child's process group. What no code in the
  guarding process can cover (a ``SIGKILL``, the OOM killer) a small watchdog process
  covers: it sees the guard's end of a pipe close and resumes the child, or ends it
  (``on_guard_death``; by default it ends a child that holds a slot shared by many
  hosts, since that slot's lease lapses with the guard);
* after ``max_pause`` (30 minutes) in one pause it alerts the guard's sinks and, with
  ``on_max_pause="abort"``, ends the child: a paused ``pg_dump`` holds its snapshot and
  locks, which hurts production more than the backup does.

``input``, ``stdout``, ``stderr``, ``capture_output``, ``text``, ``cwd``, ``env``,
``timeout`` and ``check`` behave as in :func:`subprocess.run`; the exit code and the
output pass through unchanged.

Example::

    >>> import sys
    >>> import wedguard as wg
    >>> guard = wg.Guard(rate="50MB/s", calendar=None, sources=[], sinks=[])
    >>> done = guard.run([sys.executable, "-c", "print('hello')"], capture_output=True)
    >>> done.returncode, done.stdout
    (0, b'hello\\n')
    >>> done.report.returncode, done.report.aborted
    (0, '')

:func:`pipe_guarded` (``guard.pipe``) is the cooperative alternative for streaming
backups: it copies a stream through a guard session, so
``pg_dump | wedguard pipe --rate 10MB/s | aws s3 cp - s3://...`` is throttled by the
guard's budget and calendar.

The parts live in their own modules, and every name is importable from here:

* :mod:`wedguard.io.child`: :class:`GuardedProcess`, the child and its monitor thread;
* :mod:`wedguard.io.duty_cycle`: :class:`DutyCycle` and the pacing of a child (pure);
* :mod:`wedguard.io.freezing`: how a child is paused (cgroup v2 freezer or signals);
* :mod:`wedguard.io.watchdog`: what covers a child when the guarding process dies;
* :mod:`wedguard.io.children`: the live children, resumed at exit and on signals;
* :mod:`wedguard.io.proctree`: a child's descendants and their counters;
* :mod:`wedguard.io.process_report`: :class:`ProcessReport` and the completed process.

What these ask of the guard is :class:`wedguard.interfaces.GuardLike`: the io layer
does not import the runtime.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from wedguard.errors import ConfigError
from wedguard.io.child import GuardedProcess, check_seconds
from wedguard.io.children import TERMINATION_SIGNALS, guarded_children, thaw_all
from wedguard.io.copy import check_ends, copy_stream
from wedguard.io.duty_cycle import DutyCycle
from wedguard.io.freezing import CGROUP_ROOT
from wedguard.io.process_report import GuardedCompletedProcess, ProcessReport
from wedguard.io.proctree import children_of, descendant_pids
from wedguard.io.watchdog import WATCHDOG_MODES
from wedguard.units import format_duration, parse_size

if TYPE_CHECKING:
    from wedguard.interfaces import GuardLike

__all__ = [
    "CGROUP_ROOT",
    "TERMINATION_SIGNALS",
    "WATCHDOG_MODES",
    "DutyCycle",
    "GuardedCompletedProcess",
    "GuardedProcess",
    "ProcessReport",
    "children_of",
    "descendant_pids",
    "guarded_children",
    "pipe_guarded",
    "run_guarded",
    "thaw_all",
]


def run_guarded(
    guard: GuardLike,
    argv: Sequence[str | os.PathLike[str]],
    *,
    input: Any = None,
    capture_output: bool = False,
    timeout: float | None = None,
    check: bool = False,
    **kwargs: Any,
) -> GuardedCompletedProcess:
    """Run ``argv`` under ``guard`` and wait for it, as :func:`subprocess.run` does.

    Keyword arguments are those of :class:`GuardedProcess` (``name``, ``nice``,
    ``io_rate``, ``cpu_share``, ``max_pause``, ``on_max_pause``, ``on_guard_death``...)
    and of
    :class:`subprocess.Popen` (``stdout``, ``stderr``, ``cwd``, ``env``, ``text``...).

    Returns:
        a :class:`GuardedCompletedProcess`: ``returncode``, ``stdout``, ``stderr`` as
        :func:`subprocess.run` gives them, and ``report`` (a :class:`ProcessReport`).

    Raises:
        subprocess.TimeoutExpired: ``timeout`` passed (paused time counts); the child
            was killed.
        subprocess.CalledProcessError: ``check=True`` and the exit status is not 0.
        ConfigError: bad arguments, before anything starts.

    Example::

        >>> import sys, wedguard as wg
        >>> guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[])
        >>> guard.run([sys.executable, "-c", "raise SystemExit(3)"]).returncode
        3
    """
    if timeout is not None:
        timeout = check_seconds("timeout", timeout)
    if input is not None:
        if kwargs.get("stdin") is not None:
            raise ConfigError("stdin", kwargs["stdin"], "not set together with input")
        kwargs["stdin"] = subprocess.PIPE
    if capture_output:
        if kwargs.get("stdout") is not None or kwargs.get("stderr") is not None:
            raise ConfigError(
                "capture_output", capture_output, "not set together with stdout or stderr"
            )
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    child = GuardedProcess(guard, argv, **kwargs)
    with child:
        try:
            stdout, stderr = child.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            child.kill(f"timeout after {format_duration(timeout or 0)}")
            out, err = child.popen.communicate()
            exc.stdout, exc.stderr = out, err
            child.close()
            raise
        except BaseException:
            child.kill()
            raise
        retcode = child.popen.wait()
    report = child.report()
    done = GuardedCompletedProcess(child.popen.args, retcode, stdout, stderr, report=report)
    if check:
        done.check_returncode()
    return done


# -- pipes --------------------------------------------------------------------------------


# -- pipes --------------------------------------------------------------------------------


def pipe_guarded(
    guard: GuardLike,
    src: Any,
    dst: Any,
    *,
    name: str = "pipe",
    chunk_size: int | str = 64 * 1024,
    flush: bool = True,
) -> int:
    """Copy the stream ``src`` to ``dst`` through a guard session; return the bytes written.

    Reads what is available (``read1``/``readinto1`` when the stream has them, so a
    slow producer is forwarded as it produces), throttles each chunk before writing it,
    writes it in full (again after a short write) and flushes ``dst`` after each chunk
    (``flush=False`` to leave that to ``dst``). Inside a session of this guard (``with
    guard.session(...)``) the pipe runs in that session, without a second slot;
    otherwise in a session named ``name``. Nothing is dropped or reordered; an
    :class:`~wedguard.EmergencyStop` leaves ``dst`` holding whole chunks only. The loop
    is :func:`wedguard.io.copy.copy_stream`, shared with ``guard.copyfileobj``.

    Example::

        >>> import io, wedguard as wg
        >>> from wedguard.testing import FakeClock
        >>> guard = wg.Guard(rate="1MB/s", calendar=None, sources=[], sinks=[],
        ...                  clock=FakeClock())
        >>> out = io.BytesIO()
        >>> guard.pipe(io.BytesIO(b"x" * 3_000_000), out)
        3000000
        >>> round(guard.clock.monotonic(), 1)   # 3 MB at 1 MB/s after a 0.2 s burst
        2.8
    """
    size = chunk_size if isinstance(chunk_size, int) else parse_size(chunk_size, field="chunk_size")
    if isinstance(size, bool) or size <= 0:
        raise ConfigError("chunk_size", chunk_size, "a size in bytes > 0")
    check_ends(src, dst)
    outer = guard.current_session()
    if outer is not None:
        return copy_stream(outer, src, dst, size, available=True, flush=flush)
    with guard.session(name) as s:
        return copy_stream(s, src, dst, size, available=True, flush=flush)
