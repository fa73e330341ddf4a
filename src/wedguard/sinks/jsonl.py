"""Events as JSON Lines in a local file, rotated by size.

``events.jsonl`` grows to ``max_bytes``; then it becomes ``events.jsonl.1`` (the older
``.1`` becomes ``.2``, and so on) and only ``backups`` old files are kept.

>>> import tempfile, os, json
>>> from wedguard.policy.alerting import Alert, Severity
>>> path = os.path.join(tempfile.mkdtemp(), "events.jsonl")
>>> sink = JsonlSink(path, max_bytes="1MiB", backups=3)
>>> sink.emit(Alert("k", Severity.LOW, "hello"))
>>> sink.close()
>>> from pathlib import Path
>>> json.loads(Path(path).read_text().splitlines()[0])["summary"]
'hello'
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import weakref
from pathlib import Path
from typing import IO

from wedguard import _checks
from wedguard.errors import ConfigError
from wedguard.interfaces import Event
from wedguard.sinks.delivery import DeliveryError
from wedguard.units import parse_size

__all__ = ["JsonlSink"]


class JsonlSink:
    """Append one JSON object per event to ``path``.

    Args:
        path: the file (its directory is created). A symbolic link at ``path`` is not
            followed: writing fails (logged, counted in :attr:`errors`), so a link
            planted in a shared directory cannot turn the sink on another file.
        max_bytes: rotate before a write would pass this size (bytes or ``"10MiB"``).
        backups: how many rotated files to keep (0: the file is simply restarted).
        fsync: fsync after every line (slower; for audit trails).
        mode: file permissions for new files (default 0600).

    Writing is local and quick, so ``emit`` writes directly (under a lock, so threads
    may share the sink). A write error is logged, never raised into the backup.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int | str = 10 * 2**20,
        backups: int = 5,
        fsync: bool = False,
        mode: int = 0o600,
        name: str = "jsonl",
    ) -> None:
        self.path = Path(_checks.path(path, "path"))
        if self.path.is_dir():
            raise ConfigError("path", str(path), "a file path, not a directory")
        self.max_bytes = parse_size(max_bytes, field="max_bytes")
        if self.max_bytes <= 0:
            raise ConfigError("max_bytes", max_bytes, "a size > 0")
        if isinstance(backups, bool) or not isinstance(backups, int) or backups < 0:
            raise ConfigError("backups", backups, "an integer >= 0")
        self.backups = backups
        self.fsync = fsync
        self.mode = mode
        self.name = name
        self.errors = 0
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        self._closer = weakref.finalize(self, lambda: None)
        self._size = 0

    def _open(self) -> IO[bytes]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(self.path, flags | getattr(os, "O_CLOEXEC", 0), self.mode)
        f = os.fdopen(fd, "ab")
        self._size = os.fstat(fd).st_size
        # a sink dropped unclosed (its guard replaced) closes its file when collected
        self._closer.detach()
        self._closer = weakref.finalize(self, f.close)
        return f

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            oldest = self.path.with_name(f"{self.path.name}.{self.backups}")
            oldest.unlink(missing_ok=True)
            for i in range(self.backups - 1, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{i}")
                if src.exists():
                    os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
            if self.path.exists():
                os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._file = self._open()

    def emit(self, event: Event) -> None:
        """Append ``event``; a write error (a full disk, ...) is logged and counted
        in :attr:`errors`, never raised."""
        try:
            self._write(event)
        except OSError:
            import logging

            self.errors += 1
            logging.getLogger("wedguard.sinks").exception("jsonl: cannot write %s", self.path)

    def send(self, event: Event) -> None:
        """Append ``event`` or raise :class:`~wedguard.runtime.alerts.DeliveryError`.

        The alert dispatcher calls this one, so a line that could not be written (a
        full disk) is retried, kept in its spool meanwhile, and ``flush()`` says so.
        """
        try:
            self._write(event)
        except OSError as exc:
            self.errors += 1
            raise DeliveryError(f"cannot write {self.path}: {exc}") from exc

    def _write(self, event: Event) -> None:
        line = (
            json.dumps(event.to_dict(), separators=(",", ":"), default=str, ensure_ascii=False)
            + "\n"
        ).encode("utf-8")
        with self._lock:
            try:
                if self._file is None:
                    self._file = self._open()
                    self._mend()
                if self._size > 0 and self._size + len(line) > self.max_bytes:
                    self._rotate()
                f = self._file
                assert f is not None
                f.write(line)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
                self._size += len(line)
            except OSError:
                # drop the file object and what its buffer still holds: the next
                # write opens the file again and starts on a fresh line
                broken, self._file = self._file, None
                if broken is not None:
                    with contextlib.suppress(OSError):
                        broken.close()
                raise

    def _mend(self) -> None:
        """Cut off a line torn by a failed write (a full disk can take half a line):
        that event was not delivered and comes again whole."""
        if self._size == 0:
            return
        with open(self.path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            pos = end
            while pos > 0:
                step = min(pos, 1 << 16)
                pos -= step
                f.seek(pos)
                chunk = f.read(step)
                if pos + len(chunk) == end and chunk.endswith(b"\n"):
                    return  # the last line is whole
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    pos += cut + 1
                    break
        os.truncate(self.path, pos)
        self._size = pos

    def files(self) -> list[Path]:
        """The current file and the rotated ones that exist, newest first."""
        out = [self.path] if self.path.exists() else []
        for i in range(1, self.backups + 1):
            p = self.path.with_name(f"{self.path.name}.{i}")
            if p.exists():
                out.append(p)
        return out

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __repr__(self) -> str:
        return f"JsonlSink(path={str(self.path)!r}, max_bytes={self.max_bytes}, backups={self.backups})"
