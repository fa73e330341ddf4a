"""``wedguard throttle RATE|off``: change the running guards' rate live."""

from __future__ import annotations

import argparse

from wedguard.cli.args import Commands, socket_type, whole_type
from wedguard.cli.common import EXIT_FAILED, EXIT_OK, rate_arg
from wedguard.cli.remote import print_replies, tell_all
from wedguard.errors import ConfigError

__all__ = ["cmd_throttle", "register"]


def cmd_throttle(args: argparse.Namespace) -> int:
    """Send ``rate=RATE`` to the running guards (``--pid``, ``--socket`` narrow it)."""
    rate = rate_arg(args.rate, "RATE")
    if not rate > 0:
        raise ConfigError("RATE", args.rate, "a rate > 0 (wedguard stop pauses everything)")
    replies = tell_all(args, f"rate={args.rate}")
    if not replies:
        raise ConfigError(
            "throttle: no running guard was found (guards started by 'wedguard copy', "
            "'run' or 'demo' on this machine, or give --socket PATH)"
        )
    return EXIT_OK if print_replies(replies) else EXIT_FAILED


def register(commands: Commands) -> None:
    """``wedguard throttle``: its arguments."""
    p = commands.add("throttle", "set the running guards' rate (RATE or off)")
    p.add_argument("rate", metavar="RATE|off")
    p.add_argument("--pid", type=whole_type(1), help="only the running guard of this process")
    p.add_argument(
        "--socket", metavar="PATH", type=socket_type, help="the guard serving this control socket"
    )
    p.set_defaults(func=cmd_throttle)
