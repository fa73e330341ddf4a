"""``wedguard pipe``: copy stdin to stdout through a guard.

``pg_dump app | wedguard pipe --rate 10MB/s | aws s3 cp - s3://bucket/app.dump``

The filter parses its own options (:func:`pipe_main`); the copy is
:func:`wedguard.io.process.pipe_guarded` (``guard.pipe``).

Example::

    >>> import io
    >>> out = io.BytesIO()
    >>> pipe_main(["--rate", "off"], stdin=io.BytesIO(b"dump"), stdout=out), out.getvalue()
    (0, b'dump')
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import stat
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any

from wedguard.cli.args import Commands
from wedguard.cli.common import Terminated, describe, on_sigterm
from wedguard.config import load
from wedguard.errors import ConfigError, EmergencyStop, WedguardError
from wedguard.io.process import pipe_guarded
from wedguard.io.writeback import WindowedWriter, check_window
from wedguard.runtime.guard import DEFAULT, Guard

__all__ = ["pipe_main", "register"]


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
    ``--chunk-size``, ``--control-socket PATH``, ``--writeback SIZE|off`` (when stdout
    is a regular file, ``> app.dump``: the bytes written back to the disk at a time,
    :mod:`wedguard.io.writeback`; default 1 MiB).

    Exit status: 0 done, 1 an I/O error (such as a closed downstream), 2 usage or
    configuration error, 3 stopped, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM);
    when interrupted it prints the session's summary on stderr first.
    """
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
    parser.add_argument(
        "--writeback",
        default="1MiB",
        help="when stdout is a file: bytes written back to the disk at a time (default "
        "1MiB), or off to leave it to the kernel",
    )
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else 2
    src = stdin if stdin is not None else sys.stdin.buffer
    dst = stdout if stdout is not None else sys.stdout.buffer
    guard: Any = None
    session: Any = None
    sigterm = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if sigterm else None
    try:
        off = args.writeback.lower() == "off"
        window = None if off else check_window(args.writeback, "--writeback")
        guard = _pipe_guard(args)
        out = windowed(dst, window)
        with guard.session(args.name) as session:
            pipe_guarded(guard, src, out, chunk_size=args.chunk_size)
        if isinstance(out, WindowedWriter):
            out.close()  # the rest written back and durable
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM: what was done, on stderr (stdout is data)
        if session is not None:
            print(f"wedguard pipe: {session.report()}", file=sys.stderr)
        print(f"wedguard pipe: {describe(exc)}", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
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
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if guard is not None:
            guard.close()
    return 0


def windowed(dst: IO[bytes], window: int | None) -> IO[bytes] | WindowedWriter:
    """``dst`` through a :class:`WindowedWriter` when it is a regular file (``> dump``)
    and ``window`` is set; a pipe, socket, terminal or in-memory file as it is."""
    if window is None:
        return dst
    try:
        if not stat.S_ISREG(os.fstat(dst.fileno()).st_mode):
            return dst
        return WindowedWriter(dst, window)
    except (OSError, ValueError, AttributeError):  # no descriptor, or not seekable
        return dst


def _pipe_guard(args: argparse.Namespace) -> Guard:
    """The guard of ``wedguard pipe``: from ``--config``, else from the options."""
    if args.config is not None:
        guard = load(args.config)
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


def register(commands: Commands) -> None:
    """``wedguard pipe``: shown in ``wedguard --help``; :func:`pipe_main` parses its options."""
    p = commands.add(
        "pipe", "copy stdin to stdout through a guard: ... | wedguard pipe --rate 10MB/s | ..."
    )
    p.add_argument(
        "rest", nargs=argparse.REMAINDER, metavar="OPTIONS", help="see wedguard pipe --help"
    )
