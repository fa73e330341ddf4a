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
guard's budget and calendar (:func:`pipe_main` is that filter's entry point).

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

import contextlib
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from wedguard.errors import ConfigError, EmergencyStop, WedguardError
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
    import argparse  # for pipe_main

    from wedguard.interfaces import GuardLike
    from wedguard.runtime.guard import Guard  # pipe_main's

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
    "pipe_main",
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


def pipe_main(
    argv: Sequence[str] | None = None,
    *,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
) -> int:
    """``wedguard pipe``: copy stdin to stdout through a guard; the exit status.

    ``pg_dump app | wedguard pipe --rate 10MB/s | aws s3 cp - s3://bucket/app.dump``

    Options: ``--rate`` (default ``off``), ``--config FILE`` (a ``wedguard.toml``;
    ``--rate`` then overrides its rate), ``--calendar``/``--no-calendar`` (the default
    06:00-22:00 PEAK calendar; off by default without ``--config``), ``--name``,
    ``--chunk-size``, ``--control-socket PATH``.

    Exit status: 0 done, 1 an I/O error (such as a closed downstream), 2 usage or
    configuration error, 3 stopped.
    """
    import argparse

    parser = argparse.ArgumentParser(
        prog="wedguard pipe", description="Copy stdin to stdout, throttled by a guard."
    )
    parser.add_argument("--rate", default=None, help="byte rate, e.g. 10MB/s (default: off)")
    parser.add_argument("--config", default=None, help="a wedguard.toml to build the guard from")
    parser.add_argument(
        "--calendar",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="apply the default peak-hours calendar (06:00-22:00 UTC, 10 Mbit/s)",
    )
    parser.add_argument("--name", default="pipe", help="session name in reports")
    parser.add_argument("--chunk-size", default="64KiB", help="read size (default 64KiB)")
    parser.add_argument("--control-socket", default=None, help="serve the control socket here")
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else 2
    src = stdin if stdin is not None else sys.stdin.buffer
    dst = stdout if stdout is not None else sys.stdout.buffer
    guard: Any = None
    try:
        guard = _pipe_guard(args)
        pipe_guarded(guard, src, dst, name=args.name, chunk_size=args.chunk_size)
    except ConfigError as exc:
        print(f"wedguard pipe: {exc}", file=sys.stderr)
        return 2
    except EmergencyStop as exc:
        print(f"wedguard pipe: {exc}", file=sys.stderr)
        return 3
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), dst.fileno())
        return 1
    except (OSError, WedguardError) as exc:
        print(f"wedguard pipe: {exc}", file=sys.stderr)
        return 1
    finally:
        if guard is not None:
            guard.close()
    return 0


def _pipe_guard(args: argparse.Namespace) -> Guard:
    from wedguard.runtime.guard import DEFAULT, Guard

    if args.config is not None:
        import importlib

        try:
            config: Any = importlib.import_module("wedguard.config")
        except ImportError as exc:  # pragma: no cover - the config module lands separately
            raise ConfigError("--config", args.config, "a wedguard with wedguard.config") from exc
        guard: Guard = config.load(args.config)
        if args.rate is not None:
            guard.set_rate(args.rate)
        if args.control_socket is not None:
            guard.serve_control(args.control_socket)
        return guard
    return Guard(
        rate=args.rate if args.rate is not None else "off",
        calendar=DEFAULT if args.calendar else None,
        sources=[],
        control_socket=args.control_socket,
    )
