"""``wedguard run -- CMD ...``: a command under the guard (``guard.run``).

The command runs niced, is paused and paced by the guard's decision, and its exit code
passes through. Ctrl-C and SIGTERM reach it too; ``wedguard run`` then prints its
report on stderr and ``wedguard: interrupted`` (``terminated``).
"""

from __future__ import annotations

import argparse
import os
import sys

from wedguard.cli.args import Commands, config_option
from wedguard.cli.common import UsageError, assemble, command_config
from wedguard.errors import EmergencyStop
from wedguard.jobs import StatusFile
from wedguard.redact import redact_arg, redact_argv

__all__ = ["cmd_run", "register"]

#: the signals forwarded to the command that mean the user ended it, and what is said
INTERRUPTED = {"SIGINT": "interrupted", "SIGTERM": "terminated"}


def cmd_run(args: argparse.Namespace) -> int:
    """Run ``args.cmd`` under a guard; its exit code (128 + N for signal N)."""
    argv = list(args.cmd)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("run: give the command after '--', e.g. wedguard run -- pg_dump mydb")
    config = command_config(args.config)
    with assemble(args, config) as built:
        guard = built.guard
        with StatusFile(guard, "run " + " ".join(redact_argv(argv))):
            try:
                death = args.on_guard_death or config.run.on_guard_death
                done = guard.run(
                    argv,
                    name=os.path.basename(argv[0]),
                    on_guard_death=death,
                    cpus="guard" if args.cpus is None else args.cpus,
                )
            except (FileNotFoundError, PermissionError) as exc:
                shown = redact_arg(argv[0])
                raise UsageError(f"cannot run {shown!r}: {exc.strerror or exc}") from None
    report = done.report
    # Ctrl-C or SIGTERM reached the command too: say what it did, then why it ended
    interrupted = next((INTERRUPTED[s] for s in report.signals if s in INTERRUPTED), None)
    if args.report or interrupted:
        print(str(report), file=sys.stderr)
    if report.aborted:
        if "panic" in report.aborted or "stop" in report.aborted:
            raise EmergencyStop(report.aborted)
        print(f"wedguard: {report.name} ended by the guard: {report.aborted}", file=sys.stderr)
    if interrupted:
        print(f"wedguard: {interrupted}", file=sys.stderr)
    code = int(done.returncode)
    return code if code >= 0 else 128 - code


def _cores(text: str) -> int | str:
    """``--cpus``: a count >= 1, ``all-but-one`` or ``all``."""
    if text in ("all-but-one", "all"):
        return text
    # digits only: int() would also take "+2", " 2" and "2_0"
    n = int(text) if text.isascii() and text.isdigit() else 0
    if n < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not valid; expected a number of cores >= 1, all-but-one or all"
        )
    return n


def register(commands: Commands) -> None:
    """``wedguard run``: its arguments."""
    p = commands.add("run", "run a command under the guard: niced, paused and paced by the guard")
    config_option(p)
    p.add_argument("--rate", help="the rate budget (overrides guard.rate)")
    p.add_argument("--report", action="store_true", help="print the child's report on stderr")
    p.add_argument(
        "--on-guard-death",
        choices=("auto", "resume", "terminate", "off"),
        default=None,
        help="if this process is killed (even by SIGKILL), a watchdog resumes the command "
        "(resume), ends it (terminate), or nothing is done (off); default: run.on_guard_death "
        "of the configuration, else auto (terminate with a Redis slot, else resume)",
    )
    p.add_argument(
        "--cpus",
        type=_cores,
        default=None,
        metavar="N|all-but-one|all",
        help="confine the command and what it starts to N cores (the last ones this "
        "process may use), leaving the others to production; all-but-one: every core "
        "but the first; all: not confined (default: [guard] cpus of the configuration, "
        "else all-but-one)",
    )
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    p.set_defaults(func=cmd_run)
