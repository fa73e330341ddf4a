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
symbolic link, and are written atomically with mode 0600.

Example::

    >>> from wedguard.cli import main
    >>> main(["calendar", "--at", "2026-06-13T12:00+00:00"])
    Sat 2026-06-13 12:00 UTC: PEAK 1.25 MB/s until Sat 2026-06-13 22:00 (rule 'peak hours')
    0

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import os
import signal
import stat
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

from wedguard import _checks, _fs
from wedguard.config import Built, Config, load_config
from wedguard.errors import CircuitOpenError, ConfigError, EmergencyStop, WedguardError
from wedguard.levels import Level
from wedguard.redact import redact_arg, redact_argv, redact_text
from wedguard.runtime.defaults import MIN_RATE
from wedguard.runtime.guard import Guard
from wedguard.runtime.session import Session
from wedguard.units import format_duration, format_rate, format_size, parse_rate

__all__ = [
    "EXIT_CIRCUIT_OPEN",
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_STOPPED",
    "main",
    "run_dir",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_STOPPED = 3
EXIT_CIRCUIT_OPEN = 4

log = logging.getLogger("wedguard.cli")


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwind like Ctrl-C (temporary files removed), exit code 143."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


class UsageError(WedguardError):
    """A command was used wrongly (a missing source, a bad time): exit code 2."""


# -- the run directory: the default stop file and the status files -----------------------


def run_dir() -> Path:
    """Where command-line guards keep the default stop file and their status files."""
    env = os.environ.get("WEDGUARD_RUN_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "wedguard"
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"wedguard-{uid}"


def _default_stop_file() -> Path:
    return run_dir() / "stop"


def _status_dir(create: bool = False) -> Path:
    """``<run dir>/guards``; with ``create``, made (or found) private to this user:
    mode 0700, else :class:`ConfigError` naming the directory."""
    path = run_dir() / "guards"
    if create:
        _fs.private_dir(path.parent, create=True)
        _fs.private_dir(path, create=True)
    return path


@contextlib.contextmanager
def _open_status_dir() -> Iterator[int | None]:
    """The status directory, opened (a descriptor) once it is checked to be private;
    None when there is none yet. Someone else's run directory is a ConfigError."""
    path = _status_dir()
    if not _fs.private_dir(path.parent, create=False) or not _fs.private_dir(path, create=False):
        yield None
        return
    fd = _fs.open_dir(path, private=True)
    try:
        yield fd
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _StatusFile:
    """Writes this guard's decision to ``<run dir>/guards/<pid>.json`` once a second."""

    def __init__(self, guard: Guard, command: str, session: Session | None = None) -> None:
        self.guard = guard
        self.command = redact_text(command)  # status files are read by anyone in the group
        self.session = session
        self.started = datetime.now().astimezone()
        self.path = _status_dir() / f"{os.getpid()}.json"
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def write(self) -> None:
        d = self.guard.decision()
        data = {
            "pid": os.getpid(),
            "command": self.command,
            "started": self.started.isoformat(),
            "updated": datetime.now().astimezone().isoformat(),
            "bytes": None if self.session is None else self.session.bytes,
            "decision": d.to_dict(),
            "control": _control_path(self.guard),
        }
        # a random temporary name, mode 0600, renamed over the status file: nothing
        # planted in the directory is followed or written through
        _fs.write_file(self.path.parent, self.path.name, json.dumps(data).encode(), private=True)

    def _loop(self) -> None:
        while not self._halt.wait(1.0):
            with contextlib.suppress(Exception):
                self.write()

    def __enter__(self) -> _StatusFile:
        try:
            _status_dir(create=True)
            self.write()
        except OSError as exc:  # status is a convenience; never fail the work for it
            log.debug("cannot write the status file %s: %s", self.path, exc)
            return self
        except ConfigError as exc:  # someone else's run directory: not used
            log.warning("no status file: %s", exc)
            return self
        self._thread = threading.Thread(target=self._loop, name="wedguard-status", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(2.0)
        with contextlib.suppress(OSError):
            self.path.unlink()


def _running_guards() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with _open_status_dir() as fd:
        if fd is None:
            return out
        for name in sorted(os.listdir(fd)):
            if not name.endswith(".json") or name.startswith("."):
                continue
            try:
                data = json.loads(_fs.read_file(name, dir_fd=fd))
                pid = int(data["pid"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if not _alive(pid):  # a guard that died without cleaning up
                for stale in (name, name[: -len(".json")] + ".sock"):
                    with contextlib.suppress(OSError):
                        os.unlink(stale, dir_fd=fd)
                continue
            out.append(data)
    return out


# -- configuration for a command ---------------------------------------------------------


def _config(path: str | None) -> Config:
    if path is not None:
        return load_config(path)
    env = os.environ.get("WEDGUARD_CONFIG")
    if env:
        return load_config(env)
    return Config.from_dict({}, path="<defaults>")


def _stop_file(config: Config, given: str | None = None) -> Path:
    if given:
        return Path(_checks.path(given, "--stop-file"))
    if config.guard.stop_file:
        return Path(config.guard.stop_file)
    return _default_stop_file()


def _stop_field(config: Config, given: str | None = None) -> str:
    """What chose the stop file, for error messages ('' for the run directory's)."""
    if given:
        return "--stop-file"
    if config.guard.stop_file:
        return "guard.stop_file"
    return ""


def _check_stop_place(config: Config, given: str | None, *, create: bool) -> Path:
    """The stop file, its place checked: the run directory's (private; created with
    ``create``) or a directory that must exist and that nobody else controls."""
    path = _stop_file(config, given)
    field = _stop_field(config, given)
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


def _write_stop_file(config: Config, given: str | None, reason: str) -> Path:
    path = _check_stop_place(config, given, create=True)
    field = _stop_field(config, given) or "run directory"
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
        private=not _stop_field(config, given),
        field=field,
    )
    return path


def _rate_arg(text: str, field: str) -> float:
    """A rate given on the command line, its error naming the option or argument."""
    try:
        rate = parse_rate(text, field=field)
    except ConfigError:
        raise ConfigError(field, text, "a rate such as '10MB/s' or 'off'") from None
    if 0 < rate < MIN_RATE:
        raise ConfigError(field, text, f"a rate >= {MIN_RATE:g}/s, or 'off'")
    return rate


def _assemble(args: argparse.Namespace, config: Config) -> Built:
    if not _stop_field(config) or config.guard.control_socket is None:
        try:  # the run directory: ours alone (ConfigError otherwise), made if missing
            _status_dir(create=True)
        except OSError as exc:  # cannot be made: no status, no socket, the work goes on
            log.debug("no run directory %s: %s", run_dir(), exc)
    overrides: dict[str, Any] = {"stop_file": str(_stop_file(config))}
    if not config.sinks_given:
        # the command shows decisions itself (progress, summary, status): no default
        # logging sink repeating them on stderr
        overrides["sinks"] = []
        overrides["log_events"] = False
    # a latency source without a stored baseline: learn one (5 s) before the first byte
    overrides["baseline_warmup"] = "5s"
    if getattr(args, "rate", None) is not None:
        overrides["rate"] = _rate_arg(args.rate, "--rate")
    built = config.assemble(**overrides)
    if config.guard.control_socket is None:
        try:
            path = _status_dir(create=True) / f"{os.getpid()}.sock"
            built.guard.serve_control(path)
        except (OSError, WedguardError) as exc:  # a convenience; never fail the work for it
            log.debug("no control socket in %s: %s", _status_dir(), exc)
    return built


def _control_path(guard: Guard) -> str | None:
    server = getattr(guard, "_control", None)
    path = getattr(server, "path", None)
    return None if path is None else str(path)


# -- copy --------------------------------------------------------------------------------

_CHUNK = 1 << 20
_TMP_PREFIX = ".wedguard-tmp."


def _same(src: os.stat_result, dst: os.stat_result) -> bool:
    """Already copied: same size and same modification time (to the second when one
    side's file system keeps only seconds)."""
    if src.st_size != dst.st_size:
        return False
    if src.st_mtime_ns == dst.st_mtime_ns:
        return True
    coarse = src.st_mtime_ns % 1_000_000_000 == 0 or dst.st_mtime_ns % 1_000_000_000 == 0
    return coarse and src.st_mtime_ns // 1_000_000_000 == dst.st_mtime_ns // 1_000_000_000


class _CopyJob:
    """Copies files under one session: temp name, fsync, rename, modes and times."""

    def __init__(self, session: Session, guard: Guard, chunk: int = _CHUNK) -> None:
        self.session = session
        self.guard = guard
        self.chunk = chunk
        self.copied = 0
        self.skipped = 0
        self.failed: list[str] = []
        self.special: list[str] = []
        self.bytes = 0
        self.current = ""

    def plan(self, src: Path, dst: Path) -> Iterator[tuple[Path, Path]]:
        """(source, destination) file pairs; directories are created on the way."""
        if src.is_dir():
            if dst.exists() and not dst.is_dir():
                raise UsageError(f"{dst} exists and is not a directory")
            real_src, real_dst = src.resolve(), dst.resolve()
            if real_dst == real_src or real_src in real_dst.parents:
                raise UsageError(f"{dst} is inside {src}: the copy would copy itself")
            dst.mkdir(parents=True, exist_ok=True)
            dirs: list[tuple[Path, Path]] = [(src, dst)]
            for root, dirnames, filenames in os.walk(src):
                dirnames.sort()
                base = Path(root)
                target = dst / base.relative_to(src)
                for name in dirnames:
                    (target / name).mkdir(exist_ok=True)
                    dirs.append((base / name, target / name))
                for name in sorted(filenames):
                    if name.startswith(_TMP_PREFIX):
                        continue
                    yield base / name, target / name
            for s, d in reversed(dirs):  # directory modes and times last
                with contextlib.suppress(OSError):
                    st = s.stat()
                    os.chmod(d, st.st_mode & 0o7777)
                    os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))
        else:
            if dst.is_dir():
                dst = dst / src.name
            elif not dst.parent.exists():
                raise UsageError(f"the directory {dst.parent} does not exist")
            yield src, dst

    def copy_file(self, src: Path, dst: Path) -> None:
        st = src.lstat()
        if os.path.islink(src):
            if not os.path.lexists(dst):
                os.symlink(os.readlink(src), dst)
                self.copied += 1
            else:
                self.skipped += 1
            return
        if not stat.S_ISREG(st.st_mode):  # a FIFO, socket or device: never opened
            self.special.append(str(src))
            return
        with contextlib.suppress(FileNotFoundError):
            if _same(st, dst.stat()):
                self.skipped += 1
                return
        breaker = self.guard.breaker
        if breaker is not None and not breaker.allow():
            raise CircuitOpenError(breaker.name, breaker.retry_after, "too many failed files")
        self.current = str(src)
        tmp = dst.parent / f"{_TMP_PREFIX}{dst.name}"
        try:
            self._copy_data(src, tmp, st)
            os.replace(tmp, dst)
        except (EmergencyStop, KeyboardInterrupt, CircuitOpenError):
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if breaker is not None:
                breaker.record_failure(exc)
            self.failed.append(f"{src}: {exc.strerror or exc}")
            log.debug("cannot copy %s", src, exc_info=True)
            return
        if breaker is not None:
            breaker.record_success()
        _fs.fsync_dir(dst.parent)
        self.copied += 1

    def _copy_data(self, src: Path, tmp: Path, st: os.stat_result) -> None:
        from wedguard.io.copy import copy_stream

        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            # one operation per file, counted with its first chunk
            copy_stream(
                self.session, fin, fout, self.chunk, ops=1, size=st.st_size, progress=self._count
            )
            fout.flush()
            os.fsync(fout.fileno())
        os.chmod(tmp, st.st_mode & 0o7777)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))

    def _count(self, n: int) -> None:
        self.bytes += n


class _Progress:
    """A live progress line on a terminal: bytes done of the total and the percentage,
    the rate smoothed over the last seconds against the rate allowed, the time left at
    that rate, the level and verdict, and the reason in force."""

    #: seconds of history the shown rate is averaged over: one 1 MiB chunk a second
    #: under a 1 MB/s limit reads as 1 MB/s, not as 2 MB/s and 0 in turn.
    WINDOW = 8.0

    def __init__(
        self,
        stream: IO[str],
        guard: Guard,
        bytes_done: Any,
        interval: float = 0.5,
        *,
        total: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.stream = stream
        self.guard = guard
        self.bytes_done = bytes_done
        self.interval = interval
        self.total = total
        self._clock = clock
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="wedguard-progress", daemon=True)
        self._seen: collections.deque[tuple[float, float]] = collections.deque()
        self._seen.append((clock(), float(bytes_done())))
        self._width = 0

    def rate(self) -> float:
        """The rate over the last :attr:`WINDOW` seconds (bytes/s)."""
        now = self._clock()
        done = float(self.bytes_done())
        seen = self._seen
        seen.append((now, done))
        while len(seen) > 2 and now - seen[1][0] >= self.WINDOW:
            seen.popleft()
        then, before = seen[0]
        return (done - before) / (now - then) if now > then else 0.0

    def line(self) -> str:
        current = self.rate()
        done = self._seen[-1][1]
        d = self.guard.decision()
        allowed = "paused" if d.paused else format_rate(d.rate)
        text = f"{format_size(done):>9}"
        total = self.total
        if total is not None and total > 0:
            text += f" of {format_size(total)} ({min(done / total, 1.0):.0%})"
        text += f"  {format_rate(current):>11} (allowed {allowed})"
        if total is not None and total > done and current > 0:
            text += f"  {format_duration((total - done) / current)} left"
        text += f"  {d.level.name}/{d.verdict.name}"
        why = d.reasons[0] if d.reasons else ""
        if why and d.paused:
            text += f"  waiting: {why}"
        elif why:
            text += f"  {why}"
        unjudged = [r.partition(":")[0] for r in d.reasons if r.endswith("not judged")]
        if unjudged:  # a limit the guard cannot judge is never silently passed
            text += f"  not judged: {', '.join(unjudged)}"
        return text

    def _draw(self, text: str) -> None:
        cols = 0
        with contextlib.suppress(OSError, ValueError):
            cols = os.get_terminal_size(self.stream.fileno()).columns
        cols = cols if cols > 0 else 120
        text = text[: max(20, cols - 1)]
        pad = max(0, self._width - len(text))
        self._width = len(text)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()

    def _loop(self) -> None:
        while not self._halt.wait(self.interval):
            with contextlib.suppress(Exception):
                self._draw(self.line())

    def __enter__(self) -> _Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self._thread.join(2.0)
        with contextlib.suppress(Exception):
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()


def _planned_bytes(src: Path, dst: Path) -> float | None:
    """The bytes a copy of ``src`` to ``dst`` will move: regular files not already
    there (the progress line's total); None when the tree cannot be read."""
    try:
        if not src.is_dir():
            target = dst / src.name if dst.is_dir() else dst
            pairs: Iterable[tuple[Path, Path]] = [(src, target)]
        else:
            pairs = (
                (Path(root) / name, dst / Path(root).relative_to(src) / name)
                for root, _dirs, names in os.walk(src)
                for name in names
                if not name.startswith(_TMP_PREFIX)
            )
        total = 0
        for s, d in pairs:
            st = s.lstat()
            if not stat.S_ISREG(st.st_mode):
                continue
            with contextlib.suppress(OSError):
                if _same(st, d.stat()):
                    continue
            total += st.st_size
    except OSError:
        return None
    return float(total)


def _summary(job: _CopyJob, report: Any) -> str:
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


def _s3_job(session: Session, guard: Guard, url: str) -> Any:
    """The copy job for an ``s3://bucket/prefix`` destination (extra ``s3``)."""
    from wedguard.io import s3

    s3.parse_url(url)  # a bad URL is a usage error before anything starts
    try:
        client = s3.default_client()
    except ImportError:
        raise UsageError("copying to s3:// needs boto3: pip install 'wedguard[s3]'") from None
    return s3.S3CopyJob(session, guard, client, state_dir=run_dir() / "s3-uploads")


def cmd_copy(args: argparse.Namespace) -> int:
    src = Path(args.src)
    to_s3 = args.dst.startswith("s3://")
    dst: Any = args.dst if to_s3 else Path(args.dst)
    if not src.exists() and not src.is_symlink():
        raise UsageError(f"{src}: no such file or directory")
    config = _config(args.config)
    outcome = EXIT_OK
    error: BaseException | None = None
    with _assemble(args, config) as built:
        guard = built.guard
        session = guard.session(args.name)
        job = _s3_job(session, guard, dst) if to_s3 else _CopyJob(session, guard)
        entered = False
        try:
            # the session ends with the error, so its report says "stopped" or "error"
            with session:
                entered = True
                progress: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
                if sys.stderr.isatty() and not args.quiet:
                    progress = _Progress(
                        sys.stderr,
                        guard,
                        lambda: job.bytes,
                        total=None if to_s3 else _planned_bytes(src, dst),
                    )
                with _StatusFile(guard, f"copy {src} {dst}", session), progress:
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
                print(_summary(job, session.report()), flush=True)
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
        print(_summary(job, report))
    for line in job.failed:
        print(f"wedguard: cannot copy {line}", file=sys.stderr)
    if error is not None:
        print(f"wedguard: {_describe(error)}", file=sys.stderr)
    return outcome


# -- run ---------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    argv = list(args.cmd)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("run: give the command after '--', e.g. wedguard run -- pg_dump mydb")
    config = _config(args.config)
    with _assemble(args, config) as built:
        guard = built.guard
        with _StatusFile(guard, "run " + " ".join(redact_argv(argv))):
            try:
                death = args.on_guard_death or config.run.on_guard_death
                done = guard.run(argv, name=os.path.basename(argv[0]), on_guard_death=death)
            except (FileNotFoundError, PermissionError) as exc:
                shown = redact_arg(argv[0])
                raise UsageError(f"cannot run {shown!r}: {exc.strerror or exc}") from None
    report = done.report
    if args.report:
        print(str(report), file=sys.stderr)
    if report.aborted:
        if "panic" in report.aborted or "stop" in report.aborted:
            raise EmergencyStop(report.aborted)
        print(f"wedguard: {report.name} ended by the guard: {report.aborted}", file=sys.stderr)
    code = int(done.returncode)
    return code if code >= 0 else 128 - code


# -- calendar ----------------------------------------------------------------------------


_AT_WHAT = (
    "a time such as '2026-06-13T09:30', '2026-06-13 09:30+01:00', '09:30' (today) or "
    "'Sat 09:30' (this week)"
)
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _parse_at(text: str | None, tz: Any) -> datetime:
    """``--at``: an ISO time, ``HH:MM`` today or ``Ddd HH:MM`` this week, read in
    ``tz`` unless it carries an offset."""
    now = datetime.now(tz)
    if text is None:
        return now
    words = text.strip().split()
    try:
        if len(words) == 2 and words[0][:3].lower() in _DAYS and ":" in words[1]:
            clock = datetime.strptime(words[1], "%H:%M").time()
            day = now.date() + timedelta(days=_DAYS.index(words[0][:3].lower()) - now.weekday())
            return datetime.combine(day, clock, tz)
        if len(words) == 1 and len(text.strip()) <= 5 and ":" in text:
            return datetime.combine(now.date(), datetime.strptime(text.strip(), "%H:%M").time(), tz)
        when = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        raise ConfigError("--at", text, _AT_WHAT) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return _existing(when, text)


def _existing(when: datetime, text: str) -> datetime:
    """``when`` unless it is a wall-clock time its zone skips (the spring-forward gap):
    such a time never happens, so it is refused rather than silently moved. An
    ambiguous time (the autumn repeat) is its first occurrence."""
    if when.tzinfo is None or isinstance(when.tzinfo, timezone):
        return when
    back = when.astimezone(timezone.utc).astimezone(when.tzinfo)
    if back.replace(tzinfo=None) != when.replace(tzinfo=None):
        raise ConfigError(
            "--at",
            text,
            f"a time that exists in {when.tzinfo} ({when:%Y-%m-%d %H:%M} falls in the hour "
            "the clocks skip)",
        )
    return when


def _window_line(w: Any) -> str:
    cap = "" if w.rate is None or w.level is Level.BLACKOUT else f" {format_rate(w.rate)}"
    return f"{w.level.name}{cap}"


def cmd_calendar(args: argparse.Namespace) -> int:
    config = _config(args.config)
    cal = config.calendar
    if cal is None:
        when = _parse_at(args.at, None if args.at else datetime.now().astimezone().tzinfo)
        print(f"{when.isoformat(timespec='minutes')}: OPEN (no calendar)")
        return EXIT_OK
    when = _parse_at(args.at, cal.tz)
    _print_notes(cal.notes())
    w = cal.at(when)
    local = when.astimezone(cal.tz)
    until = "" if not w.bounded else f" until {w.end.astimezone(cal.tz):%a %Y-%m-%d %H:%M}"
    print(f"{local:%a %Y-%m-%d %H:%M %Z}: {_window_line(w)}{until} ({w.reason})")
    if args.week:
        start = datetime.combine(
            local.date() - timedelta(days=local.weekday()), datetime.min.time(), cal.tz
        )
        end = start + timedelta(days=7)
        print()
        print(f"{'day':<14} {'from':>5}  {'to':>9}  {'level':<9} {'cap':>12}  reason")
        for win in cal.windows(start, end):
            s = max(win.start, start).astimezone(cal.tz)
            e = min(win.end, end).astimezone(cal.tz)
            to = (
                "24:00" if e.date() > s.date() and e.time() == datetime.min.time() else f"{e:%H:%M}"
            )
            if e.date() > s.date() and to != "24:00":
                to = f"{e:%a} {to}"
            cap = (
                "-"
                if win.rate is None
                else ("0" if win.level is Level.BLACKOUT else format_rate(win.rate))
            )
            print(
                f"{s:%a %Y-%m-%d} {s:%H:%M}  {to:>9}  {win.level.name:<9} {cap:>12}  {win.reason}"
            )
    return EXIT_OK


# -- stop, resume, status, throttle ------------------------------------------------------


def _sockets(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(label, socket path) of the guards to talk to: ``--socket``, else every running
    guard started by this command that serves one (``--pid`` narrows it)."""
    given = getattr(args, "socket", None)
    if given:
        _checks.socket_path(given, "--socket")
        return [(given, given)]
    pid = getattr(args, "pid", None)
    return [
        (f"pid {g['pid']}", str(g["control"]))
        for g in _running_guards()
        if g.get("control") and (pid is None or g["pid"] == pid)
    ]


def _tell(path: str, line: str) -> dict[str, Any]:
    """Send ``json <line>`` to a control socket; the JSON reply (``ok`` False on failure)."""
    from wedguard.runtime.control_socket import UntrustedPeerError, send_command

    try:
        reply = send_command(path, f"json {line}", timeout=5.0)
        data: Any = json.loads(reply)
    except UntrustedPeerError as exc:
        return {"ok": False, "error": str(exc)}
    except (OSError, ValueError) as exc:
        return {"ok": False, "error": f"cannot reach {path}: {exc}"}
    if not isinstance(data, dict):
        return {"ok": False, "error": f"{path}: not a wedguard control socket"}
    return dict(data)


def _tell_all(args: argparse.Namespace, line: str) -> list[tuple[str, dict[str, Any]]]:
    return [(label, _tell(path, line)) for label, path in _sockets(args)]


def _print_replies(replies: list[tuple[str, dict[str, Any]]]) -> bool:
    ok = True
    for label, reply in replies:
        if reply.get("ok"):
            print(f"{label}: {reply.get('message', 'ok')}")
        else:
            ok = False
            print(f"wedguard: {label}: {reply.get('error', 'failed')}", file=sys.stderr)
    return ok


def _fleet(config: Config, action: str, reason: str = "") -> bool:
    """Raise (``stop``), lower (``resume``) or show (``status``) the fleet's stop flag
    of ``[redis]``; False when Redis could not be reached."""
    prefix = config.redis.get("prefix", "wedguard") if config.redis else "wedguard"
    coord = config.coordinator()
    try:
        if action == "stop":
            ok = bool(coord.stop(reason))
            text = f"fleet stop flag {prefix}:stop raised: every host's guard stops"
        elif action == "resume":
            ok = bool(coord.resume())
            text = f"fleet stop flag {prefix}:stop lowered: every host's guard resumes"
        else:
            flag = coord.stop_flag
            raised = flag.refresh()
            ok = bool(coord.link.online)
            state = f"raised ({flag.reason})" if raised else "lowered"
            text = f"fleet stop flag {prefix}:stop: {state}"
    finally:
        coord.close()
    if ok:
        print(text)
    else:
        print(
            f"wedguard: fleet stop flag {prefix}:stop: Redis could not be reached", file=sys.stderr
        )
    return ok


def cmd_stop(args: argparse.Namespace) -> int:
    reason = args.reason or "stopped by wedguard stop"
    config = _config(args.config)
    fleet_ok = True
    if config.redis is not None and not args.socket and not args.stop_file:
        fleet_ok = _fleet(config, "stop", reason)
    refused: ConfigError | None = None
    if not args.socket:
        try:
            path = _write_stop_file(config, args.stop_file, reason)
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
    if refused is None or _stop_field(config):  # not when the run directory was refused
        ok = _print_replies(_tell_all(args, f"{command} {reason}"))
    if refused is not None:
        raise refused
    return EXIT_OK if ok and fleet_ok else EXIT_FAILED


def cmd_resume(args: argparse.Namespace) -> int:
    config = _config(args.config)
    fleet_ok = True
    if config.redis is not None and not args.socket and not args.stop_file:
        fleet_ok = _fleet(config, "resume")
    if not args.socket:
        path = _check_stop_place(config, args.stop_file, create=False)
        try:
            path.unlink()  # removes a link itself, never what it points to
        except FileNotFoundError:
            print(f"stop file {path} absent: not stopped by it")
        else:
            print(f"stop file {path} removed: guards resume")
        if args.stop_file:
            return EXIT_OK  # only the guards watching that file
    ok = _print_replies(_tell_all(args, "resume"))
    return EXIT_OK if ok and fleet_ok else EXIT_FAILED


def cmd_status(args: argparse.Namespace) -> int:
    config = _config(args.config)
    path = _check_stop_place(config, args.stop_file, create=False)
    watch = _fs.StopFile(path)
    stopped = watch.present()
    ignored = watch.problem
    reason = ""
    if stopped:
        with contextlib.suppress(OSError):
            reason = _fs.read_file(path, limit=4096).decode(errors="replace").strip()
    guards = [] if args.socket else _running_guards()
    if args.socket:
        guards = [{"pid": None, "command": "?", "control": args.socket}]
    for g in guards:  # the live answer from the control socket, when there is one
        if g.get("control"):
            live = _tell(str(g["control"]), "status")
            if live.get("ok"):
                g["decision"] = live["decision"]
                g["reasons"] = live.get("reasons", live["decision"].get("reasons", []))
                g["sessions"] = live.get("sessions")
                g["children"] = live.get("children", [])
            elif args.socket:
                raise UsageError(live.get("error", f"cannot reach {args.socket}"))
            else:
                g["error"] = live.get("error", "no answer")
    if args.json:
        print(
            json.dumps(
                {"stop_file": str(path), "stopped": stopped, "reason": reason, "guards": guards}
                | ({"ignored": ignored} if ignored else {}),
                indent=2,
            )
        )
        return EXIT_OK
    state = f"present ({reason})" if stopped else "absent"
    if ignored:
        state = f"ignored: {ignored}"
    print(f"stop file {path}: {state}")
    if config.redis is not None and not args.socket:
        _fleet(config, "status")
    if not guards:
        print("no running guards")
    for g in guards:
        d = g.get("decision", {})
        rate = d.get("rate")
        shown = format_rate(float(rate or 0))  # float("inf"): "unlimited"
        done = g.get("bytes")
        extra = "" if done is None else f", {format_size(done)} done"
        who = f"pid {g['pid']}" if g.get("pid") else str(g.get("control"))
        print(f"{who}: {g.get('command', '?')} since {g.get('started', '?')}{extra}")
        state = " (stopped)" if d.get("stopped") else " (paused)" if d.get("paused") else ""
        print(f"  {d.get('level')}/{d.get('verdict')} at {shown}{state}")
        for r in g.get("reasons", d.get("reasons", [])):
            print(f"  - {r}")
        if g.get("error"):
            print(f"  control socket: {g['error']}")
        for c in g.get("children") or []:
            print(f"  child {c.get('name')} (pid {c.get('pid')}): {c.get('state')}")
    return EXIT_OK


def cmd_throttle(args: argparse.Namespace) -> int:
    rate = _rate_arg(args.rate, "RATE")
    if not rate > 0:
        raise ConfigError("RATE", args.rate, "a rate > 0 (wedguard stop pauses everything)")
    replies = _tell_all(args, f"rate={args.rate}")
    if not replies:
        raise ConfigError(
            "throttle: no running guard was found (guards started by 'wedguard copy', "
            "'run' or 'demo' on this machine, or give --socket PATH)"
        )
    return EXIT_OK if _print_replies(replies) else EXIT_FAILED


# -- report and windows ------------------------------------------------------------------


def _store(args: argparse.Namespace) -> Any:
    from wedguard.history import MetricsStore

    path = args.history
    config = None
    if path is None:
        config = _config(args.config)
        if config.history is not None:
            path = config.history["path"]
    if path is None:
        raise ConfigError(
            "no history database: give --history PATH or set [history] path in the configuration"
        )
    if not os.path.exists(path):
        raise ConfigError("--history", path, "an existing history database")
    retention = "7d"
    if config is not None and config.history is not None:
        retention = config.history.get("retention", retention)
    from wedguard.history import StoreCorruptError

    try:
        # a reader: nothing is written, so a database on read-only media opens too
        return MetricsStore(path, retention=retention, read_only=True)
    except StoreCorruptError as exc:  # the path names some other file
        where = "--history" if args.history is not None else "history.path"
        raise ConfigError(where, path, f"a wedguard history database ({exc})") from None


def cmd_report(args: argparse.Namespace) -> int:
    with contextlib.closing(_store(args)) as store:
        records = store.sessions(name=args.name)
        records = records[-args.last :] if args.last else records
        if args.json:
            print(json.dumps([dict(r.data) for r in records], indent=2, default=str))
            return EXIT_OK
        if not records:
            print("no session reports stored")
            return EXIT_OK
        print(
            f"{'ended':<20} {'name':<16} {'bytes':>10} {'took':>8} {'waited':>8} "
            f"{'pauses':>6}  outcome"
        )
        for r in records:
            data = r.data
            waited = sum(float(v) for v in dict(data.get("wait_seconds", {})).values())
            print(
                f"{r.at:%Y-%m-%d %H:%M:%S} {r.name[:16]:<16} {format_size(r.bytes):>10} "
                f"{format_duration(r.duration):>8} {format_duration(waited):>8} "
                f"{data.get('pauses', 0)!s:>6}  {data.get('outcome', '?')}"
            )
        if args.plot or args.html:
            _draw(records[-1], args.plot, args.html, store)
    return EXIT_OK


def _draw(record: Any, png: str | None, html: str | None, store: Any) -> None:
    """The last session's picture (PNG, needs matplotlib) and/or HTML page, with
    production latency from the history when it holds some."""
    from wedguard import report as report_module

    data = dict(record.data)
    latency = report_module.history_latency(store, data)
    if png:
        try:
            figure = report_module.plot_session(data, **latency)
        except report_module.PlotUnavailable:
            raise ConfigError("--plot", png, "matplotlib installed (or use --html)") from None
        figure.savefig(png)
        print(f"wrote {png}")
    if html:
        report_module.write_html_report(html, data, **latency)
        print(f"wrote {html}")


def _outside_level(text: str) -> str:
    """``--rules LEVEL``: a level and an optional cap, as a calendar rule ends."""
    from wedguard.policy.calendar import PeakHourCalendar

    what = "a level and an optional cap, such as 'blackout' or 'peak 10Mbit/s'"
    try:
        (rule,) = PeakHourCalendar.parse(f"Mon 00:00-01:00 {text}").rules
    except (ConfigError, ValueError):
        raise ConfigError("--rules", text, what) from None
    if rule.weekdays != {0} or (rule.start, rule.end) != (0, 60) or rule.season or rule.dates:
        raise ConfigError("--rules", text, what)
    return text


def _print_notes(notes: Sequence[str]) -> None:
    for note in notes:
        print(f"wedguard: note: {note}", file=sys.stderr)


def cmd_windows(args: argparse.Namespace) -> int:
    from wedguard.history import recommend_windows

    if args.rules is not None:
        _outside_level(args.rules)
    config = _config(args.config) if args.config else None
    calendar = None if config is None else config.calendar
    tz = args.tz or ("UTC" if calendar is None else str(calendar.to_dict()["tz"]))
    with contextlib.closing(_store(args)) as store:
        try:
            windows = recommend_windows(
                store, duration=args.duration, count=args.count, calendar=calendar,
                metric=args.metric, tz=tz,
            )  # fmt: skip
        except ConfigError as exc:
            raise ConfigError(f"--{exc.field}", exc.value, exc.expected) from None
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "rank": w.rank,
                        "start": str(w.start),
                        "end": str(w.end),
                        "duration_s": w.duration,
                        "expected_load": w.expected_load,
                        "peak_load": w.peak_load,
                        "metric": w.metric,
                        "tz": w.tz,
                        "reason": w.reason,
                    }
                    for w in windows
                ],
                indent=2,
            )
        )
        return EXIT_OK
    if not windows:
        print(f"no window found: not enough history of {args.metric} yet")
        return EXIT_OK
    for w in windows:
        print(
            f"{w.rank}. {w.start}-{w.end.time:%H:%M} {w.tz}: {w.metric} about "
            f"{w.expected_load:.3g} (p95 {w.peak_load:.3g}); {w.reason}"
        )
    if args.rules:
        from wedguard.history import windows_to_rules

        print()
        print("# calendar rules for these windows ([calendar] rules):")
        print(windows_to_rules(windows, outside=args.rules))
    return EXIT_OK


# -- config check ------------------------------------------------------------------------


def cmd_config(args: argparse.Namespace) -> int:
    config = load_config(args.file, env=not args.no_env)
    notes = () if config.calendar is None else config.calendar.notes()
    if args.json:
        print(json.dumps(config.to_dict(), indent=2, default=str))
        _print_notes(notes)
    else:
        print(config.render(), end="")
        for name, present in config.secrets().items():
            print(f"# secret from ${name}: {'set' if present else 'NOT SET'} (value hidden)")
        for note in notes:  # a TOML comment: the output stays a valid file
            print(f"# note: {note}")
    print(f"{args.file}: OK", file=sys.stderr)
    return EXIT_OK


# -- demo --------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from wedguard.demo import run_demo

    if not 2 <= args.seconds <= 600:
        raise ConfigError("--seconds", args.seconds, "a number of seconds from 2 to 600")
    return run_demo(seconds=args.seconds, out=args.out, stream=sys.stdout)


# -- the parser --------------------------------------------------------------------------


def _path_type(what: str = "a file path") -> Any:
    """An argparse ``type``: a path without NUL characters, not empty (exit 2)."""

    def convert(text: str) -> str:
        try:
            return _checks.path(text, "", what)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {exc.expected}") from None

    return convert


def _socket_type(text: str) -> str:
    try:
        return _checks.socket_path(text, "")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {exc.expected}") from None


def _text_type(text: str) -> str:
    """An argparse ``type``: one line of UTF-8 text (a reason, a name)."""
    if any(c in text for c in "\x00\r\n"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected one line of text")
    try:
        text.encode("utf-8")
    except UnicodeError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected UTF-8 text") from None
    return text


def _whole_type(minimum: int, maximum: int = 2**31 - 1) -> Any:
    """An argparse ``type``: a whole number from ``minimum`` to ``maximum``."""

    def convert(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            number = minimum - 1
        if not minimum <= number <= maximum:
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected a whole number from {minimum} to {maximum}"
            )
        return number

    return convert


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (exit code 2), pointing to ``--help``."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    parser = _Parser(
        prog="wedguard",
        description="Let backups run beside live production without hurting it.",
        epilog="Exit codes: 0 done, 1 failed, 2 usage or configuration error, 3 stopped, "
        "4 circuit open.",
    )
    parser.add_argument("--debug", action="store_true", default=False, help="show tracebacks")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=[common])

    def config_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            "-c",
            metavar="FILE",
            type=_path_type("a configuration file path"),
            help="a wedguard.toml (default: $WEDGUARD_CONFIG, else built-in defaults)",
        )

    p = add("demo", "watch a guarded copy throttle, pause and resume (about 30 s)")
    p.add_argument(
        "--seconds", type=float, default=30.0, help="how long the demo runs (default 30)"
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        type=_path_type("a directory path"),
        help="where to write the report (default: a temporary directory)",
    )
    p.set_defaults(func=cmd_demo)

    p = add("copy", "a guarded, resumable copy of a file or a directory tree")
    p.add_argument("src", metavar="SRC", type=_path_type())
    p.add_argument(
        "dst", metavar="DST", type=_path_type(), help="a path, or s3://bucket/prefix (extra s3)"
    )
    p.add_argument("--rate", help="the rate budget, e.g. 20MB/s (overrides guard.rate)")
    config_opt(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--name",
        default="copy",
        type=_text_type,
        help="the session's name in reports (default copy)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress line")
    p.set_defaults(func=cmd_copy)

    p = add("run", "run a command under the guard: niced, paused and paced by the guard")
    config_opt(p)
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
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    p.set_defaults(func=cmd_run)

    p = add("pipe", "copy stdin to stdout through a guard: ... | wedguard pipe --rate 10MB/s | ...")
    p.add_argument(
        "rest", nargs=argparse.REMAINDER, metavar="OPTIONS", help="see wedguard pipe --help"
    )

    p = add("calendar", "the level in force now (or at TIME), and the week as a table")
    p.add_argument(
        "--at", metavar="TIME", help="an ISO time, e.g. 2026-06-13T09:30 (calendar's zone)"
    )
    p.add_argument("--week", action="store_true", help="also print the week as a table")
    config_opt(p)
    p.set_defaults(func=cmd_calendar)

    for name, func, text in (
        ("stop", cmd_stop, "stop every guard watching the stop file (and the running guards)"),
        ("resume", cmd_resume, "remove the stop file and resume the running guards"),
        ("status", cmd_status, "the stop file and the running guards' decisions and reasons"),
    ):
        p = add(name, text)
        p.add_argument(
            "--stop-file",
            metavar="PATH",
            type=_path_type(),
            help="the stop file (default: the config's, else the run directory's)",
        )
        p.add_argument(
            "--socket",
            metavar="PATH",
            type=_socket_type,
            help="talk to the guard serving this control socket only",
        )
        config_opt(p)
        if name == "stop":
            p.add_argument(
                "--reason", type=_text_type, help="why (shown by status and in the guards' reasons)"
            )
            p.add_argument(
                "--panic", action="store_true", help="also end the guards' child processes"
            )
        if name in ("stop", "resume"):
            p.add_argument(
                "--pid", type=_whole_type(1), help="only the running guard of this process"
            )
        if name == "status":
            p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)

    p = add("throttle", "set the running guards' rate (RATE or off)")
    p.add_argument("rate", metavar="RATE|off")
    p.add_argument("--pid", type=_whole_type(1), help="only the running guard of this process")
    p.add_argument(
        "--socket", metavar="PATH", type=_socket_type, help="the guard serving this control socket"
    )
    p.set_defaults(func=cmd_throttle)

    p = add("report", "stored session reports from the history database")
    p.add_argument(
        "--history",
        metavar="DB",
        type=_path_type(),
        help="the history database (default: the config's)",
    )
    config_opt(p)
    p.add_argument("--name", type=_text_type, help="only sessions with this name")
    p.add_argument(
        "--last", type=_whole_type(0), default=20, help="how many (default 20; 0 for all)"
    )
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--plot",
        metavar="PNG",
        type=_path_type(),
        help="draw the last session's picture (matplotlib)",
    )
    p.add_argument(
        "--html", metavar="FILE", type=_path_type(), help="write the last session's report as HTML"
    )
    p.set_defaults(func=cmd_report)

    p = add("windows", "recommended backup windows from the history database")
    p.add_argument(
        "--history",
        metavar="DB",
        type=_path_type(),
        help="the history database (default: the config's)",
    )
    config_opt(p)
    p.add_argument("--duration", default="2h", help="how long the backup needs (default 2h)")
    p.add_argument(
        "--count", type=_whole_type(1, 1000), default=3, help="how many windows (default 3)"
    )
    p.add_argument(
        "--metric", default="cpu.percent", help="the load to avoid (default cpu.percent)"
    )
    p.add_argument("--tz", help="the time zone of the windows (default: the calendar's)")
    p.add_argument(
        "--rules",
        metavar="LEVEL",
        help="also print calendar rules: the windows open, the rest of the week LEVEL "
        "(e.g. 'blackout' or 'peak 10Mbit/s')",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_windows)

    p = add("config", "configuration files")
    csub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = csub.add_parser(
        "check", help="validate FILE and print the effective configuration", parents=[common]
    )
    c.add_argument("file", metavar="FILE", type=_path_type("a configuration file path"))
    c.add_argument("--json", action="store_true", help="print it as JSON")
    c.add_argument(
        "--no-env", action="store_true", help="do not require the secrets' environment variables"
    )
    c.set_defaults(func=cmd_config)
    return parser


def _version() -> str:
    from wedguard import __version__

    return __version__


def _describe(exc: BaseException) -> str:
    if isinstance(exc, EmergencyStop):
        return f"stopped: {exc.reason or 'emergency stop'}"
    if isinstance(exc, Terminated):
        return "terminated"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    # the last net: a message that quotes a URL, a DSN or name=value shows no password
    return redact_text(str(exc)) or type(exc).__name__


def _fail(code: int, exc: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    print(f"wedguard: {_describe(exc)}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((i for i, a in enumerate(argv) if a != "--debug"), None)
    if first is not None and argv[first] == "pipe":  # the filter parses its own options
        from wedguard.io.process import pipe_main

        rest = argv[first + 1 :]
        return pipe_main(rest[1:] if rest[:1] == ["--"] else rest)
    parser = _parser()
    args = parser.parse_args(argv)
    for word in getattr(args, "cmd", None) or ():
        if "\x00" in word:  # no exec() takes it
            parser.error(f"argument CMD: {word!r} has a NUL character")
    debug = bool(getattr(args, "debug", False))
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
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
