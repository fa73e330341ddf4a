"""A guarded job on this machine: what the command line and the demo share.

* the **run directory** (:func:`run_dir`) where command-line guards keep the default
  stop file, their status files and their control sockets; it is made mode 0700, and one
  that exists must be the user's own and private;
* the **status file** (:class:`StatusFile`) a running job rewrites once a second, which
  ``wedguard status`` reads (:func:`running_guards`);
* the **copy of a file or a tree** (:class:`CopyJob`): temporary name, fsync, rename,
  modes and times, each file's bytes through the session's one copy loop;
* the **progress line** (:class:`Progress`) drawn on a terminal.

Example::

    >>> import os, tempfile
    >>> from pathlib import Path
    >>> import wedguard as wg
    >>> src = Path(tempfile.mkdtemp()) / "photos.tar"
    >>> _ = src.write_bytes(b"x" * 3000)
    >>> dst = Path(tempfile.mkdtemp())
    >>> guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[])
    >>> with guard.session("copy") as s:
    ...     job = CopyJob(s, guard)
    ...     for a, b in job.plan(src, dst):
    ...         job.copy_file(a, b)
    >>> job.copied, job.bytes, (dst / "photos.tar").read_bytes() == src.read_bytes()
    (1, 3000, True)
    >>> _ = guard.close()

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from wedguard import _fs
from wedguard.errors import CircuitOpenError, ConfigError, EmergencyStop, WedguardError
from wedguard.io.copy import copy_stream
from wedguard.io.writeback import DEFAULT_WINDOW, WindowedWriter, check_window
from wedguard.redact import redact_text
from wedguard.runtime.guard import Guard
from wedguard.runtime.session import Session
from wedguard.units import format_duration, format_rate, format_size

__all__ = [
    "CHUNK",
    "TMP_PREFIX",
    "CopyJob",
    "Progress",
    "StatusFile",
    "UsageError",
    "already_copied",
    "control_path",
    "default_stop_file",
    "open_status_dir",
    "pid_alive",
    "planned_bytes",
    "run_dir",
    "running_guards",
    "status_dir",
]

log = logging.getLogger("wedguard.cli")


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


def default_stop_file() -> Path:
    """The stop file command-line guards watch unless told otherwise."""
    return run_dir() / "stop"


def status_dir(create: bool = False) -> Path:
    """``<run dir>/guards``; with ``create``, made (or found) private to this user:
    mode 0700, else :class:`ConfigError` naming the directory."""
    path = run_dir() / "guards"
    if create:
        _fs.private_dir(path.parent, create=True)
        _fs.private_dir(path, create=True)
    return path


@contextlib.contextmanager
def open_status_dir() -> Iterator[int | None]:
    """The status directory, opened (a descriptor) once it is checked to be private;
    None when there is none yet. Someone else's run directory is a ConfigError."""
    path = status_dir()
    if not _fs.private_dir(path.parent, create=False) or not _fs.private_dir(path, create=False):
        yield None
        return
    fd = _fs.open_dir(path, private=True)
    try:
        yield fd
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (someone else's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StatusFile:
    """Writes this guard's decision to ``<run dir>/guards/<pid>.json`` once a second."""

    def __init__(self, guard: Guard, command: str, session: Session | None = None) -> None:
        self.guard = guard
        self.command = redact_text(command)  # status files are read by anyone in the group
        self.session = session
        self.started = datetime.now().astimezone()
        self.path = status_dir() / f"{os.getpid()}.json"
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
            "control": control_path(self.guard),
        }
        # a random temporary name, mode 0600, renamed over the status file: nothing
        # planted in the directory is followed or written through
        _fs.write_file(self.path.parent, self.path.name, json.dumps(data).encode(), private=True)

    def _loop(self) -> None:
        while not self._halt.wait(1.0):
            with contextlib.suppress(Exception):
                self.write()

    def __enter__(self) -> StatusFile:
        try:
            status_dir(create=True)
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


def running_guards() -> list[dict[str, Any]]:
    """The status files of the guards running on this machine (stale ones removed)."""
    out: list[dict[str, Any]] = []
    with open_status_dir() as fd:
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
            if not pid_alive(pid):  # a guard that died without cleaning up
                for stale in (name, name[: -len(".json")] + ".sock"):
                    with contextlib.suppress(OSError):
                        os.unlink(stale, dir_fd=fd)
                continue
            out.append(data)
    return out


def control_path(guard: Guard) -> str | None:
    """The path of the control socket ``guard`` serves, or None."""
    server = getattr(guard, "_control", None)
    path = getattr(server, "path", None)
    return None if path is None else str(path)


# -- copying a file or a tree ------------------------------------------------------------

#: the read size of a file copy
CHUNK = 1 << 20
#: the name a file has while it is copied (renamed over the target at the end)
TMP_PREFIX = ".wedguard-tmp."


def already_copied(src: os.stat_result, dst: os.stat_result) -> bool:
    """Already copied: same size and same modification time (to the second when one
    side's file system keeps only seconds)."""
    if src.st_size != dst.st_size:
        return False
    if src.st_mtime_ns == dst.st_mtime_ns:
        return True
    coarse = src.st_mtime_ns % 1_000_000_000 == 0 or dst.st_mtime_ns % 1_000_000_000 == 0
    return coarse and src.st_mtime_ns // 1_000_000_000 == dst.st_mtime_ns // 1_000_000_000


class CopyJob:
    """Copies files under one session: temp name, fsync, rename, modes and times.

    ``writeback``: the bytes of a file written back to the disk at a time while it is
    copied (default 1 MiB; :mod:`wedguard.io.writeback`), or None to leave it to the
    kernel until the file's fsync.
    """

    def __init__(
        self,
        session: Session,
        guard: Guard,
        chunk: int = CHUNK,
        *,
        writeback: int | str | None = DEFAULT_WINDOW,
    ) -> None:
        self.session = session
        self.guard = guard
        self.chunk = chunk
        self.writeback = None if writeback is None else check_window(writeback, "writeback")
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
                    if name.startswith(TMP_PREFIX):
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
            elif dst.exists() and not dst.is_file():
                # the copy renames a new file over its destination: a device (/dev/null,
                # a tape), a FIFO or a socket would be replaced by a regular file
                raise UsageError(
                    f"{dst} exists and is not a regular file (a device, a FIFO or a socket "
                    "is never replaced; to write into one, use wedguard pipe)"
                )
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
            if already_copied(st, dst.stat()):
                self.skipped += 1
                return
        breaker = self.guard.breaker
        if breaker is not None and not breaker.allow():
            raise CircuitOpenError(breaker.name, breaker.retry_after, "too many failed files")
        self.current = str(src)
        tmp = dst.parent / f"{TMP_PREFIX}{dst.name}"
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
        # a link planted at the temporary name is not written through (ELOOP: the file fails)
        with open(src, "rb") as fin, open(tmp, "wb", opener=_fs.no_follow) as fout:
            sink = WindowedWriter(fout, self.writeback)
            # one operation per file, counted with its first chunk
            copy_stream(
                self.session, fin, sink, self.chunk, ops=1, size=st.st_size, progress=self._count
            )
            sink.close()  # the rest written back, durable
        os.chmod(tmp, st.st_mode & 0o7777)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))

    def _count(self, n: int) -> None:
        self.bytes += n


class Progress:
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

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self._thread.join(2.0)
        with contextlib.suppress(Exception):
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()


def planned_bytes(src: Path, dst: Path) -> float | None:
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
                if not name.startswith(TMP_PREFIX)
            )
        total = 0
        for s, d in pairs:
            st = s.lstat()
            if not stat.S_ISREG(st.st_mode):
                continue
            with contextlib.suppress(OSError):
                if already_copied(st, d.stat()):
                    continue
            total += st.st_size
    except OSError:
        return None
    return float(total)
