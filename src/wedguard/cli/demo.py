"""``wedguard demo``: watch a guarded copy throttle, pause and resume (:mod:`wedguard.demo`)."""

from __future__ import annotations

import argparse
import sys

from wedguard.cli.args import Commands, path_type
from wedguard.demo import run_demo
from wedguard.errors import ConfigError

__all__ = ["cmd_demo", "register"]


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo for ``--seconds`` (2 to 600); its exit code."""
    if not 2 <= args.seconds <= 600:
        raise ConfigError("--seconds", args.seconds, "a number of seconds from 2 to 600")
    return run_demo(seconds=args.seconds, out=args.out, stream=sys.stdout)


def register(commands: Commands) -> None:
    """``wedguard demo``: its arguments."""
    p = commands.add("demo", "watch a guarded copy throttle, pause and resume (about 30 s)")
    p.add_argument(
        "--seconds", type=float, default=30.0, help="how long the demo runs (default 30)"
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        type=path_type("a directory path"),
        help="where to write the report (default: a temporary directory)",
    )
    p.set_defaults(func=cmd_demo)
