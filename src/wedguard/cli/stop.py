"""``wedguard stop`` and ``wedguard resume``: the emergency stop and its release.

``stop`` writes the stop file every guard watching it obeys within its check interval,
tells the running guards through their control sockets and, with ``[redis]``, raises
the fleet's stop flag; ``resume`` undoes each.
"""

from __future__ import annotations

import argparse

from wedguard.cli.args import Commands, text_type, whole_type
from wedguard.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    check_stop_place,
    command_config,
    stop_field,
    write_stop_file,
)
from wedguard.cli.remote import fleet, print_replies, target_options, tell_all
from wedguard.errors import ConfigError

__all__ = ["cmd_resume", "cmd_stop", "register"]


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop the guards: stop file, control sockets, the fleet's flag."""
    reason = args.reason or "stopped by wedguard stop"
    config = command_config(args.config)
    fleet_ok = True
    if config.redis is not None and not args.socket and not args.stop_file:
        fleet_ok = fleet(config, "stop", reason)
    refused: ConfigError | None = None
    if not args.socket:
        try:
            path = write_stop_file(config, args.stop_file, reason)
        except ConfigError as exc:
            if args.stop_file:
                raise
            refused = exc  # still tell the running guards, then fail
        else:
            print(f"stop file {path} written: guards watching it stop at once")
    if args.stop_file and not args.socket:
        return EXIT_OK  # only the guards watching that file
    command = "panic" if args.panic else "stop"
    ok = True
    if refused is None or stop_field(config):  # not when the run directory was refused
        ok = print_replies(tell_all(args, f"{command} {reason}"))
    if refused is not None:
        raise refused
    return EXIT_OK if ok and fleet_ok else EXIT_FAILED


def cmd_resume(args: argparse.Namespace) -> int:
    """Resume the guards: remove the stop file, tell the sockets, lower the flag."""
    config = command_config(args.config)
    fleet_ok = True
    if config.redis is not None and not args.socket and not args.stop_file:
        fleet_ok = fleet(config, "resume")
    if not args.socket:
        path = check_stop_place(config, args.stop_file, create=False)
        try:
            path.unlink()  # removes a link itself, never what it points to
        except FileNotFoundError:
            print(f"stop file {path} absent: not stopped by it")
        else:
            print(f"stop file {path} removed: guards resume")
        if args.stop_file:
            return EXIT_OK  # only the guards watching that file
    ok = print_replies(tell_all(args, "resume"))
    return EXIT_OK if ok and fleet_ok else EXIT_FAILED


def register(commands: Commands) -> None:
    """``wedguard stop`` and ``wedguard resume``: their arguments."""
    p = commands.add("stop", "stop every guard watching the stop file (and the running guards)")
    target_options(p)
    p.add_argument(
        "--reason", type=text_type, help="why (shown by status and in the guards' reasons)"
    )
    p.add_argument("--panic", action="store_true", help="also end the guards' child processes")
    p.add_argument("--pid", type=whole_type(1), help="only the running guard of this process")
    p.set_defaults(func=cmd_stop)
    p = commands.add("resume", "remove the stop file and resume the running guards")
    target_options(p)
    p.add_argument("--pid", type=whole_type(1), help="only the running guard of this process")
    p.set_defaults(func=cmd_resume)
