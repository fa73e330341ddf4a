"""The ``wedguard`` argument parser: the shared options, then each command's own.

Example::

    >>> args = build_parser().parse_args(["calendar", "--week"])
    >>> args.command, args.week, args.func.__module__
    ('calendar', True, 'wedguard.cli.calendar')
"""

from __future__ import annotations

import argparse

from wedguard import __version__
from wedguard.cli import (
    calendar,
    config,
    copy,
    demo,
    pipe,
    report,
    run,
    status,
    stop,
    throttle,
    windows,
)
from wedguard.cli.args import Commands, Parser

__all__ = ["COMMANDS", "build_parser"]

#: the command modules, in the order ``wedguard --help`` lists them
COMMANDS = (demo, copy, run, pipe, calendar, stop, status, throttle, report, windows, config)


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``wedguard`` command line; each command's ``func`` runs it."""
    common = Parser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    parser = Parser(
        prog="wedguard",
        description="Let backups run beside live production without hurting it.",
        epilog="Exit codes: 0 done, 1 failed, 2 usage or configuration error, 3 stopped, "
        "4 circuit open.",
    )
    parser.add_argument("--debug", action="store_true", default=False, help="show tracebacks")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands = Commands(sub, common)
    for module in COMMANDS:
        module.register(commands)
    return parser
