"""A command's output streamed through the guard into a file: the safe ``pg_dump`` pipe.

:func:`stream_command` (``guard.stream(argv, dst)``) starts a command, copies its
standard output through a guard session into ``dst`` and waits for it. What a
hand-written ``Popen`` loop gets wrong, it gets right:

* an emergency stop ends the command and surfaces as
  :class:`~wedguard.EmergencyStop` (exit code 3 in the CLI), not as "the dump failed";
* a destination that fails (a full disk, ``/dev/full``, a closed socket) ends the
  command at once: it cannot hang, blocked on a full pipe nobody reads any more;
* a command that fails raises :class:`CommandFailed` with its exit status and the
  last lines it wrote on standard error;
* the command (and what it starts) runs on the guard's ``child_cpus`` (by default
  every core but the first);
* with a path as ``dst`` the output goes to ``<dst>.partial`` and is renamed over
  ``dst`` only when the command succeeded and the file is on disk (fsync'ed), so a
  failed or stopped dump never looks like a finished one;
* with a path as ``dst`` the file reaches the disk as it is written, a window of
  ``writeback`` bytes at a time (:class:`~wedguard.io.writeback.WindowedWriter`),
  instead of lying dirty in memory until the kernel writes it back in one burst that
  production's own writes queue behind.

Example::

    >>> import sys, wedguard as wg
    >>> from wedguard.testing import FakeClock
    >>> guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[], clock=FakeClock())
    >>> import io
    >>> out = io.BytesIO()
    >>> guard.stream([sys.executable, "-c", "print('dump')"], out)
    5
    >>> out.getvalue()
    b'dump\\n'

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wedguard._fs import fsync_dir, no_follow
from wedguard.errors import ConfigError, WedguardError
from wedguard.io.child import guard_child_cpus
from wedguard.io.priority import starting_on
from wedguard.io.writeback import DEFAULT_WINDOW, WindowedWriter, check_window
from wedguard.redact import redact_argv, redact_text

if TYPE_CHECKING:
    from wedguard.interfaces import GuardLike

__all__ = ["CommandFailed", "stream_command"]

_TAIL = 2000  # characters of the command's standard error kept for the error


class CommandFailed(WedguardError, subprocess.CalledProcessError):
    """The streamed command exited with a non-zero status.

    Attributes:
        returncode: its exit status (negative: the signal that ended it).
        cmd: its argv (as given: the repr shows it with its secrets hidden).
        stderr: the end of what it wrote on standard error (text; the message shows
            its last line with URLs' passwords and ``password=`` values hidden).
    """

    def __str__(self) -> str:
        text = f"{self.cmd[0] if self.cmd else 'command'} failed with exit status {self.returncode}"
        tail = (self.stderr or "").strip().splitlines()
        return f"{text}: {redact_text(tail[-1])}" if tail else text

    def __repr__(self) -> str:
        """The command with its secrets hidden (:func:`wedguard.redact.redact_argv`)."""
        return f"{type(self).__name__}({self.returncode!r}, {list(redact_argv(self.cmd))!r})"


def _argv(argv: Any) -> list[str]:
    if isinstance(argv, (str, bytes)) or not isinstance(argv, Sequence) or not argv:
        raise ConfigError("argv", argv, "a non-empty list of arguments, e.g. ['pg_dump', 'app']")
    items = [os.fspath(a) if isinstance(a, os.PathLike) else a for a in argv]
    if not all(isinstance(a, str) and "\0" not in a for a in items):
        raise ConfigError("argv", argv, "arguments as text without NUL characters")
    return items


def _end(proc: subprocess.Popen[bytes], grace: float) -> None:
    """End the command: SIGTERM, then SIGKILL after ``grace`` seconds; reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()


def _tail(err: Any) -> str:
    err.seek(0, os.SEEK_END)
    size = err.tell()
    err.seek(max(0, size - _TAIL * 4))
    return str(err.read().decode(errors="replace")[-_TAIL:])


def stream_command(
    guard: GuardLike,
    argv: Sequence[str | os.PathLike[str]],
    dst: str | os.PathLike[str] | Any,
    *,
    name: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    grace: float = 10.0,
    writeback: int | str | None = DEFAULT_WINDOW,
    **pipe_options: Any,
) -> int:
    """Run ``argv``, stream its standard output through ``guard`` into ``dst``, wait
    for it; return the bytes written.

    Args:
        guard: the guard whose session throttles the copy
            (:func:`~wedguard.io.process.pipe_guarded`, as ``guard.pipe``).
        argv: the command, e.g. ``["pg_dump", "-Fc", "app"]``.
        dst: a path (written to ``<dst>.partial``, renamed over ``dst`` on success)
            or a binary file object (the caller owns it).
        name: the session's name (default: the command's name).
        env: the command's environment (default: this process's).
        cwd: the command's working directory.
        grace: seconds between SIGTERM and SIGKILL when the command must end.
        writeback: with a path as ``dst``, the bytes written back to the disk at a
            time while the command runs (default 1 MiB, ``"256KiB"`` and the like;
            see :mod:`wedguard.io.writeback`); None leaves it to the kernel (and one
            fsync at the end). A file object as ``dst`` is written as it is.
        pipe_options: passed to :func:`~wedguard.io.process.pipe_guarded`
            (``chunk_size``...).

    Raises:
        EmergencyStop: the guard was stopped; the command was ended.
        CommandFailed: the command exited with a non-zero status.
        OSError: writing ``dst`` failed; the command was ended.
        ConfigError: a bad argument.
    """
    from wedguard.io.process import pipe_guarded  # psutil and the rest: when used

    items = _argv(argv)
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not 0 <= grace < 3600:
        raise ConfigError("grace", grace, "seconds between 0 and 3600")
    window = None if writeback is None else check_window(writeback, "writeback")
    path: Path | None = None
    if isinstance(dst, (str, os.PathLike)):
        path = Path(dst)
        if not path.parent.is_dir():
            raise ConfigError("dst", str(dst), "a file in an existing directory")
    elif not callable(getattr(dst, "write", None)):
        raise ConfigError("dst", dst, "a path or a binary file object with write()")
    session = name or Path(items[0]).name
    with tempfile.TemporaryFile() as err:
        with starting_on(guard_child_cpus(guard)):  # the command on the guard's cores
            proc = subprocess.Popen(
                items,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env=None if env is None else dict(env),
                cwd=cwd,
            )
        assert proc.stdout is not None
        partial = None if path is None else path.with_name(path.name + ".partial")
        try:
            with proc.stdout:
                if partial is None:
                    written = pipe_guarded(guard, proc.stdout, dst, name=session, **pipe_options)
                else:
                    # a link planted at <dst>.partial is not written through (ELOOP)
                    with open(partial, "wb", opener=no_follow) as out:
                        sink = WindowedWriter(out, window)
                        written = pipe_guarded(
                            guard, proc.stdout, sink, name=session, **pipe_options
                        )
                        sink.close()  # the rest written back, durable
            status = proc.wait()
        except BaseException:
            _end(proc, grace)  # a stop, a failing destination, Ctrl-C: never leave it behind
            if partial is not None:
                with contextlib.suppress(OSError):
                    partial.unlink()
            raise
        if status != 0:
            if partial is not None:
                with contextlib.suppress(OSError):
                    partial.unlink()
            raise CommandFailed(status, items, stderr=_tail(err))
    if partial is not None and path is not None:
        os.replace(partial, path)
        fsync_dir(path.parent)
    return int(written)
