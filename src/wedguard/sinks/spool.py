"""A small disk spool: what was handed to a sink and not yet confirmed delivered.

The spool is an append-only JSON Lines file (mode 0600, every record fsync'ed). Each
notification queued for a sink appends an ``add`` record; a delivery (or a give-up)
appends a ``done`` record. Opening the spool reads the records, keeps the adds that
have no done, and rewrites the file with only those (atomically: a temporary file, then
a rename), so the file does not grow without bound across restarts. A record torn by a
crash mid-write is skipped.

A failing file (ENOSPC, EROFS, EIO, EACCES) never stops the records: they are kept in
memory, the spool reports itself not :attr:`Spool.durable`, and it goes back to the
file as soon as a write works again.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "alerts.spool")
>>> s = Spool(path)
>>> s.add("n1", "slack", {"kind": "notification"})
True
>>> s.close()
>>> Spool(path).pending()
[('n1', 'slack', {'kind': 'notification'})]
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wedguard._fs import fsync_dir
from wedguard.errors import ConfigError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _open_planted_safe(path: str, flags: int) -> int:
    """``open()``'s opener for reading the spool: never through a link, never
    blocking on a FIFO (what is planted at the name is not read; the rewrite replaces it)."""
    return os.open(path, flags | _NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)


__all__ = ["Spool"]

log = logging.getLogger("wedguard.alerts")


class Spool:
    """An append-only, fsync'ed, mode-0600 JSON Lines spool of pending deliveries.

    Args:
        path: the spool file; created (with its parent directory) if missing.
        fsync: fsync after every record (default True; turn off only in tests).
        compact_bytes: once everything is delivered and this much was appended,
            the file is rewritten empty (so a long-running process keeps it small).
        on_fault: called as ``on_fault(error)`` when the file stops taking records
            (``error`` is the :class:`OSError`) and as ``on_fault(None)`` when it takes
            them again.

    A spool never raises because of its file. When a write fails (a full disk, a
    file system remounted read-only, an I/O error, a permission taken away) the
    record is still kept in memory, :attr:`error` holds the cause, an ERROR is
    logged, and :attr:`durable` turns False. Later records (at most once a second)
    and :meth:`recover` try the file again: once a write works, the whole pending set
    is rewritten (atomically) and the spool is durable again.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: bool = True,
        compact_bytes: int = 1 << 20,
        on_fault: Callable[[OSError | None], None] | None = None,
    ) -> None:
        try:
            self.path = Path(path)
        except TypeError:
            raise ConfigError("spool", path, "a file path") from None
        if self.path.exists() and self.path.is_dir():
            raise ConfigError("spool", str(path), "a file path, not a directory")
        self._fsync = fsync
        self._compact_bytes = compact_bytes
        self._written = 0
        self._lock = threading.Lock()
        self._closed = False
        self._fd: int | None = None
        self.error: OSError | None = None
        self.faults = 0
        self.on_fault = on_fault
        self._tried = -math.inf
        self._unread = False  # the file could not be read at open: read it before a rewrite
        try:
            self._pending: dict[tuple[str, str], dict[str, Any]] = self._read()
        except OSError as exc:  # unreadable: start empty, in memory
            self._pending = {}
            self._unread = True
            self._broken(exc)
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._reopen()
        except OSError as exc:
            self._broken(exc)

    @property
    def durable(self) -> bool:
        """True while records reach the file (False: kept in memory only)."""
        return self.error is None and not self._closed

    def _read(self) -> dict[tuple[str, str], dict[str, Any]]:
        pending: dict[tuple[str, str], dict[str, Any]] = {}
        try:
            f = open(self.path, encoding="utf-8", errors="replace", opener=_open_planted_safe)  # noqa: SIM115
        except FileNotFoundError:
            return pending
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            return pending
        with f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return pending
            for line in f:
                try:
                    rec = json.loads(line)
                    key = (str(rec["id"]), str(rec["sink"]))
                    if rec["op"] == "add":
                        pending[key] = rec["event"]
                    elif rec["op"] == "done":
                        pending.pop(key, None)
                except (ValueError, KeyError, TypeError):
                    continue  # a record torn by a crash
        return pending

    def _reopen(self) -> None:
        """Rewrite the file with the pending records and open it for appending."""
        self._rewrite()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.path, flags, 0o600)
        try:
            os.fchmod(fd, 0o600)
        except OSError:
            os.close(fd)
            raise
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = fd
        self._written = 0

    def _rewrite(self) -> None:
        # a new file of a random name, created exclusively (mode 0600): a name planted
        # in advance is never opened, truncated or written through
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        tmp = Path(name)
        try:
            try:
                os.fchmod(fd, 0o600)
                data = "".join(
                    _line({"op": "add", "id": i, "sink": s, "event": e})
                    for (i, s), e in self._pending.items()
                ).encode("utf-8")
                _write_all(fd, data)
                if self._fsync:
                    _fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):  # do not leave a half-written copy
                os.unlink(tmp)
            raise
        if self._fsync:
            fsync_dir(self.path.parent)

    def pending(self) -> list[tuple[str, str, dict[str, Any]]]:
        """``(id, sink, event dict)`` for every undelivered record, oldest first."""
        with self._lock:
            return [(i, s, e) for (i, s), e in self._pending.items()]

    def add(self, id: str, sink: str, event: dict[str, Any]) -> bool:
        """Record that ``event`` (with id ``id``) is owed to ``sink``.

        Returns True when the record is on disk (fsync'ed unless ``fsync=False``),
        False when it is kept in memory only (see :attr:`error`).
        """
        return self._append(
            {"op": "add", "id": id, "sink": sink, "event": event}, (id, sink), event
        )

    def done(self, id: str, sink: str) -> bool:
        """Record that ``sink`` has (or gave up) the event ``id``; True when on disk."""
        return self._append({"op": "done", "id": id, "sink": sink}, (id, sink), None)

    def _append(
        self, record: dict[str, Any], key: tuple[str, str], event: dict[str, Any] | None
    ) -> bool:
        data = _line(record).encode("utf-8")
        with self._lock:
            if self._closed:
                return False
            if event is None:
                self._pending.pop(key, None)
            else:
                self._pending[key] = event
            if self.error is not None:
                # the file failed before: this record is in _pending, and a working
                # rewrite carries it with everything else (tried at most once a
                # second, so a burst of alerts on a full disk is not a burst of
                # rewrites)
                now = time.monotonic()
                if now - self._tried < _RETRY_EVERY:
                    return False
                self._tried = now
                return self._recover_locked()
            try:
                assert self._fd is not None
                _write_all(self._fd, data)
                if self._fsync:
                    _fsync(self._fd)
                self._written += len(data)
                if not self._pending and self._written >= self._compact_bytes:
                    self._reopen()  # atomically replaced by an empty file
            except OSError as exc:
                self._broken(exc)
                return False
            return True

    def recover(self) -> bool:
        """Try the file again after a fault; True when the spool is durable."""
        with self._lock:
            if self._closed:
                return False
            if self.error is None:
                return True
            return self._recover_locked()

    def _recover_locked(self) -> bool:
        try:
            if self._unread:  # never replace records this spool has not read
                found = self._read()
                found.update(self._pending)
                self._pending = found
                self._unread = False
            self._reopen()
            # an empty rewrite needs no room: prove the file takes a record again
            assert self._fd is not None
            _write_all(self._fd, _PROBE)
            if self._fsync:
                _fsync(self._fd)
        except OSError as exc:
            self.error = exc
            return False
        cause, self.error = self.error, None
        log.warning(
            "alert spool %s writable again after %s; %d pending record(s) written",
            self.path,
            _describe(cause),
            len(self._pending),
        )
        self._notify(None)
        return True

    def _broken(self, exc: OSError) -> None:
        self.faults += 1
        first = self.error is None
        self.error = exc
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if first:
            log.error(
                "alert spool %s cannot be written (%s): alerts are kept in memory only "
                "and are lost if this process dies",
                self.path,
                _describe(exc),
            )
            self._notify(exc)

    def _notify(self, exc: OSError | None) -> None:
        if self.on_fault is not None:
            try:
                self.on_fault(exc)
            except Exception:  # a callback must not break the spool
                log.exception("alert spool: fault callback failed")

    def close(self) -> None:
        """Close the file (records already written stay)."""
        with self._lock:
            self._closed = True
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None

    def __repr__(self) -> str:
        state = "" if self.error is None else f", error={_describe(self.error)!r}"
        return f"Spool(path={str(self.path)!r}, pending={len(self._pending)}{state})"


def _describe(exc: OSError | None) -> str:
    if exc is None:
        return "no error"
    name = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or str(exc)
    return f"{name}: {text}" if name else text


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = _os_write(fd, view)
        view = view[n:]


# the calls that touch the disk, as module attributes so tests can inject faults
_os_write = os.write
_fsync = os.fsync


_RETRY_EVERY = 1.0  # seconds between rewrites tried by add/done while the file fails
_PROBE = b'{"op":"probe"}\n'  # skipped when read back (no id)


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), sort_keys=True, default=str) + "\n"
