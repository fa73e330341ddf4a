"""What the ``wedguard`` commands share: exit codes, the configuration a command runs
with, the stop file's place, the guard a command builds, and how an error is shown.

Example::

    >>> describe(ValueError("postgres://backup:hunter2@db/app is down"))
    'postgres://backup:***@db/app is down'
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wedguard import _checks, _fs
from wedguard.config import Built, Config, load_config
from wedguard.errors import ConfigError, EmergencyStop, WedguardError
from wedguard.jobs import UsageError, default_stop_file, run_dir, status_dir
from wedguard.redact import redact_text
from wedguard.runtime.defaults import MIN_RATE
from wedguard.units import parse_rate

__all__ = [
    "EXIT_CIRCUIT_OPEN",
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_STOPPED",
    "Terminated",
    "UsageError",
    "assemble",
    "check_stop_place",
    "command_config",
    "describe",
    "on_sigterm",
    "print_notes",
    "rate_arg",
    "stop_field",
    "stop_file_path",
    "write_stop_file",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_STOPPED = 3
EXIT_CIRCUIT_OPEN = 4

log = logging.getLogger("wedguard.cli")


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwind like Ctrl-C (temporary files removed), exit code 143."""


def on_sigterm(signum: int, frame: Any) -> None:
    """The SIGTERM handler while a command runs: raises :class:`Terminated`."""
    raise Terminated()


# -- configuration for a command ---------------------------------------------------------


def command_config(path: str | None) -> Config:
    """The configuration a command runs with: ``--config``, else ``$WEDGUARD_CONFIG``,
    else the built-in defaults."""
    if path is not None:
        return load_config(path)
    env = os.environ.get("WEDGUARD_CONFIG")
    if env:
        return load_config(env)
    return Config.from_dict({}, path="<defaults>")


def stop_file_path(config: Config, given: str | None = None) -> Path:
    """The stop file: ``--stop-file``, else the configuration's, else the run directory's."""
    if given:
        return Path(_checks.path(given, "--stop-file"))
    if config.guard.stop_file:
        return Path(config.guard.stop_file)
    return default_stop_file()


def stop_field(config: Config, given: str | None = None) -> str:
    """What chose the stop file, for error messages ('' for the run directory's)."""
    if given:
        return "--stop-file"
    if config.guard.stop_file:
        return "guard.stop_file"
    return ""


def check_stop_place(config: Config, given: str | None, *, create: bool) -> Path:
    """The stop file, its place checked: the run directory's (private; created with
    ``create``) or a directory that must exist and that nobody else controls."""
    path = stop_file_path(config, given)
    field = stop_field(config, given)
    if not field:
        _fs.private_dir(path.parent, create=create)
        return path
    missing = _fs.check_stop_location(path, field=field)
    if missing and create:
        raise ConfigError(
            field,
            str(path),
            f"a stop file in an existing directory: the directory {path.parent} does not "
            "exist (wedguard stop does not create it)",
        )
    return path


def write_stop_file(config: Config, given: str | None, reason: str) -> Path:
    """Write the stop file (its place checked; never through someone else's file)."""
    path = check_stop_place(config, given, create=True)
    field = stop_field(config, given) or "run directory"
    me = _fs.euid()
    with contextlib.suppress(FileNotFoundError):
        st = os.lstat(path)
        if me not in (None, 0) and st.st_uid not in (me, 0):
            raise ConfigError(
                field,
                str(path),
                f"a stop file of yours: {path} is owned by {_fs.owner(st.st_uid)} "
                "(guards ignore it); have it removed, or use another stop file",
            )
    _fs.write_file(
        path.parent,
        path.name,
        (reason + "\n").encode(),
        private=not stop_field(config, given),
        field=field,
    )
    return path


def rate_arg(text: str, field: str) -> float:
    """A rate given on the command line, its error naming the option or argument."""
    try:
        rate = parse_rate(text, field=field)
    except ConfigError:
        raise ConfigError(field, text, "a rate such as '10MB/s' or 'off'") from None
    if 0 < rate < MIN_RATE:
        raise ConfigError(field, text, f"a rate >= {MIN_RATE:g}/s, or 'off'")
    return rate


def assemble(args: argparse.Namespace, config: Config) -> Built:
    """The guard of a command that does work (``copy``, ``run``): the run directory's
    stop file and control socket, no logging sink unless the file names sinks, and
    ``--rate`` over the file's rate."""
    if not stop_field(config) or config.guard.control_socket is None:
        try:  # the run directory: ours alone (ConfigError otherwise), made if missing
            status_dir(create=True)
        except OSError as exc:  # cannot be made: no status, no socket, the work goes on
            log.debug("no run directory %s: %s", run_dir(), exc)
    overrides: dict[str, Any] = {"stop_file": str(stop_file_path(config))}
    if not config.sinks_given:
        # the command shows decisions itself (progress, summary, status): no default
        # logging sink repeating them on stderr
        overrides["sinks"] = []
        overrides["log_events"] = False
    # a latency source without a stored baseline: learn one (5 s) before the first byte
    overrides["baseline_warmup"] = "5s"
    if getattr(args, "rate", None) is not None:
        overrides["rate"] = rate_arg(args.rate, "--rate")
    built = config.assemble(**overrides)
    if config.guard.control_socket is None:
        try:
            path = status_dir(create=True) / f"{os.getpid()}.sock"
            built.guard.serve_control(path)
        except (OSError, WedguardError) as exc:  # a convenience; never fail the work for it
            log.debug("no control socket in %s: %s", status_dir(), exc)
    return built


def print_notes(notes: Sequence[str]) -> None:
    """Notes (legal but worth a second look) as ``wedguard: note:`` lines on stderr."""
    for note in notes:
        print(f"wedguard: note: {note}", file=sys.stderr)


def describe(exc: BaseException) -> str:
    """An error as the one line the command prints (secrets redacted)."""
    if isinstance(exc, EmergencyStop):
        return f"stopped: {exc.reason or 'emergency stop'}"
    if isinstance(exc, Terminated):
        return "terminated"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    # the last net: a message that quotes a URL, a DSN or name=value shows no password
    return redact_text(str(exc)) or type(exc).__name__
