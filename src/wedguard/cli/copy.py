"""``wedguard copy SRC DST``: a guarded, resumable copy of a file or a tree.

DST may be ``s3://bucket/prefix`` (extra ``s3``). Files already there (same size and
modification time) are skipped; each file is written under a temporary name, synced
and renamed, so an interrupted copy leaves no half file behind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from wedguard.cli.args import Commands, config_option, path_type, text_type
from wedguard.cli.common import (
    EXIT_CIRCUIT_OPEN,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STOPPED,
    UsageError,
    assemble,
    command_config,
    describe,
)
from wedguard.errors import CircuitOpenError, EmergencyStop
from wedguard.io import s3
from wedguard.io.writeback import check_window
from wedguard.jobs import CopyJob, Progress, StatusFile, planned_bytes, run_dir
from wedguard.runtime.guard import Guard
from wedguard.runtime.session import Session
from wedguard.units import format_duration, format_rate, format_size

__all__ = ["cmd_copy", "register", "s3_job", "summary"]


def summary(job: CopyJob, report: Any) -> str:
    """The one line a finished copy prints."""
    waits = ", ".join(f"{k} {format_duration(v)}" for k, v in report.wait_seconds.items() if v > 0)
    text = (
        f"copied {job.copied} file(s), {format_size(job.bytes)}; skipped {job.skipped} already "
        f"there; in {format_duration(report.duration)} "
        f"(mean {format_rate(report.mean_rate)}); waited {format_duration(report.waited)}"
    )
    if waits:
        text += f" ({waits})"
    if report.pauses:
        text += f"; paused {report.pauses} time(s)"
    if job.special:
        text += f"; {len(job.special)} special file(s) left out"
    if job.failed:
        text += f"; {len(job.failed)} failed"
    return text


def s3_job(session: Session, guard: Guard, url: str) -> Any:
    """The copy job for an ``s3://bucket/prefix`` destination (extra ``s3``)."""
    s3.parse_url(url)  # a bad URL is a usage error before anything starts
    try:
        client = s3.default_client()
    except ImportError:
        raise UsageError("copying to s3:// needs boto3: pip install 'wedguard[s3]'") from None
    return s3.S3CopyJob(session, guard, client, state_dir=run_dir() / "s3-uploads")


def cmd_copy(args: argparse.Namespace) -> int:
    """Copy ``args.src`` to ``args.dst`` under a guard; the exit code."""
    src = Path(args.src)
    to_s3 = args.dst.startswith("s3://")
    dst: Any = args.dst if to_s3 else Path(args.dst)
    if not src.exists() and not src.is_symlink():
        raise UsageError(f"{src}: no such file or directory")
    off = args.writeback.lower() == "off"
    window = None if off else check_window(args.writeback, "--writeback")
    config = command_config(args.config)
    outcome = EXIT_OK
    error: BaseException | None = None
    with assemble(args, config) as built:
        guard = built.guard
        session = guard.session(args.name)
        job = s3_job(session, guard, dst) if to_s3 else CopyJob(session, guard, writeback=window)
        entered = False
        try:
            # the session ends with the error, so its report says "stopped" or "error"
            with session:
                entered = True
                progress: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
                if sys.stderr.isatty() and not args.quiet:
                    progress = Progress(
                        sys.stderr,
                        guard,
                        lambda: job.bytes,
                        total=None if to_s3 else planned_bytes(src, dst),
                    )
                with StatusFile(guard, f"copy {src} {dst}", session), progress:
                    for s, d in job.plan(src, dst):
                        job.copy_file(s, d)
        except EmergencyStop as exc:
            if not entered:  # stopped before anything began
                if args.json:
                    print(json.dumps({"exit_code": EXIT_STOPPED, "error": str(exc),
                                      "copied": 0, "skipped": 0, "special": [], "failed": [],
                                      "bytes": 0, "report": None}, indent=2))  # fmt: skip
                raise
            outcome, error = EXIT_STOPPED, exc
        except CircuitOpenError as exc:
            outcome, error = EXIT_CIRCUIT_OPEN, exc
        except KeyboardInterrupt:
            if entered:  # Ctrl-C: what was done so far (as at the end), then "interrupted"
                print(summary(job, session.report()), flush=True)
            raise
        report = session.report()
    if outcome == EXIT_OK and job.failed:
        outcome = EXIT_FAILED
    if args.json:
        print(
            json.dumps(
                {
                    "exit_code": outcome,
                    "error": None if error is None else str(error),
                    "copied": job.copied,
                    "skipped": job.skipped,
                    "special": job.special,
                    "failed": job.failed,
                    "bytes": job.bytes,
                    "report": report.to_dict(),
                },
                indent=2,
            )
        )
    else:
        print(summary(job, report))
    for line in job.failed:
        print(f"wedguard: cannot copy {line}", file=sys.stderr)
    if error is not None:
        print(f"wedguard: {describe(error)}", file=sys.stderr)
    return outcome


# -- run ---------------------------------------------------------------------------------


def register(commands: Commands) -> None:
    """``wedguard copy``: its arguments."""
    p = commands.add("copy", "a guarded, resumable copy of a file or a directory tree")
    p.add_argument("src", metavar="SRC", type=path_type())
    p.add_argument(
        "dst", metavar="DST", type=path_type(), help="a path, or s3://bucket/prefix (extra s3)"
    )
    p.add_argument("--rate", help="the rate budget, e.g. 20MB/s (overrides guard.rate)")
    config_option(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--name",
        default="copy",
        type=text_type,
        help="the session's name in reports (default copy)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress line")
    p.add_argument(
        "--writeback",
        default="1MiB",
        help="bytes of a file written back to the disk at a time while it is copied "
        "(default 1MiB), or off to leave it to the kernel until the file's fsync",
    )
    p.set_defaults(func=cmd_copy)
