"""The ``wedguard`` command (also ``python -m wedguard``).

Commands::

    wedguard demo [--seconds N]            watch a guard throttle, pause and resume
    wedguard copy SRC DST [--rate R]       a guarded, resumable copy of a file or tree
                                           (DST may be s3://bucket/prefix)
    wedguard run [--config F] -- CMD ...   a command under the guard (guard.run)
    wedguard pipe [--rate R]               stdin to stdout through a guard
    wedguard calendar [--at TIME] [--week] the level in force, and the week as a table
    wedguard stop [--reason] [--panic] | resume | status
    wedguard throttle RATE|off             change the running guards' rate
    wedguard report | windows              stored session reports, recommended windows
    wedguard config check FILE             validate a file, print the effective config

Exit codes: 0 done, 1 failed (an I/O error, an unreachable control socket), 2 usage
or configuration error, 3 stopped (emergency stop), 4 circuit open; ``run`` passes its
command's code through. Errors are one line on stderr; ``--debug`` adds the traceback.

Guards started by this command (``copy``, ``run``, ``demo``) share a run directory
(``$WEDGUARD_RUN_DIR``, else ``$XDG_RUNTIME_DIR/wedguard``, else
``<tmp>/wedguard-<uid>``): the default stop file lives there, and each guard keeps a
status file and serves its control socket (:mod:`wedguard.runtime.control_socket`) there, which
``status``, ``stop``, ``resume`` and ``throttle`` use. The run directory is created
mode 0700; one that exists must be the user's own and private (mode 0700, not a link),
else the command refuses it (exit code 2). Files in it are never opened through a
symbolic link, and are written atomically with mode 0600 (:mod:`wedguard.jobs`).

Each command is a module of this package (``wedguard.cli.copy``, ``wedguard.cli.run``,
``wedguard.cli.pipe``...) with a ``register()`` that adds its arguments to the parser
(:mod:`wedguard.cli.parser`) and a ``cmd_*`` function that runs it.

Example::

    >>> from wedguard.cli import main
    >>> main(["calendar", "--at", "2026-06-13T12:00+00:00"])
    Sat 2026-06-13 12:00 UTC: PEAK 1.25 MB/s until Sat 2026-06-13 22:00 (rule 'peak hours')
    0

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import traceback
from collections.abc import Sequence

from wedguard.cli.common import (
    EXIT_CIRCUIT_OPEN,
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STOPPED,
    Terminated,
    UsageError,
    describe,
    on_sigterm,
)
from wedguard.cli.parser import build_parser
from wedguard.cli.pipe import pipe_main
from wedguard.errors import CircuitOpenError, ConfigError, EmergencyStop, WedguardError
from wedguard.jobs import run_dir

__all__ = [
    "EXIT_CIRCUIT_OPEN",
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_STOPPED",
    "main",
    "run_dir",
]


def _fail(code: int, exc: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    print(f"wedguard: {describe(exc)}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((i for i, a in enumerate(argv) if a != "--debug"), None)
    if first is not None and argv[first] == "pipe":  # the filter parses its own options
        rest = argv[first + 1 :]
        return pipe_main(rest[1:] if rest[:1] == ["--"] else rest)
    parser = build_parser()
    args = parser.parse_args(argv)
    for word in getattr(args, "cmd", None) or ():
        if "\x00" in word:  # no exec() takes it
            parser.error(f"argument CMD: {word!r} has a NUL character")
    debug = bool(getattr(args, "debug", False))
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, on_sigterm)
        try:
            return _main(args, debug)
        finally:
            signal.signal(signal.SIGTERM, previous)
    return _main(args, debug)


def _main(args: argparse.Namespace, debug: bool) -> int:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="wedguard: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except (ConfigError, UsageError) as exc:
        return _fail(EXIT_CONFIG, exc, debug)
    except EmergencyStop as exc:
        return _fail(EXIT_STOPPED, exc, debug)
    except CircuitOpenError as exc:
        return _fail(EXIT_CIRCUIT_OPEN, exc, debug)
    except Terminated as exc:
        return _fail(143, exc, debug)
    except KeyboardInterrupt as exc:
        return _fail(130, exc, debug)
    except (WedguardError, OSError) as exc:
        return _fail(EXIT_FAILED, exc, debug)
