"""A small disk spool: what was handed to a sink and not yet confirmed delivered.

The spool is an append-only JSON Lines file (mode 0600, every record fsync'ed). Each
notification queued for a sink appends an ``add`` record; a delivery (or a give-up)
appends a ``done`` record. Opening the spool reads the records, keeps the adds that
have no done, and rewrites the file with only those (atomically: a temporary file, then
a rename), so the file does not grow without bound across restarts. A record torn by a
crash mid-write is skipped.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "alerts.spool")
>>> s = Spool(path)
>>> s.add("n1", "slack", {"kind": "notification"})
>>> s.close()
>>> Spool(path).pending()
[('n1', 'slack', {'kind': 'notification'})]
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from wedguard.errors import ConfigError

__all__ = ["Spool"]


class Spool:
    """An append-only, fsync'ed, mode-0600 JSON Lines spool of pending deliveries.

    Args:
        path: the spool file; created (with its parent directory) if missing.
        fsync: fsync after every record (default True; turn off only in tests).
        compact_bytes: once everything is delivered and this much was appended,
            the file is rewritten empty (so a long-running process keeps it small).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: bool = True,
        compact_bytes: int = 1 << 20,
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._pending: dict[tuple[str, str], dict[str, Any]] = self._read()
        self._rewrite()
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(self._fd, 0o600)

    def _read(self) -> dict[tuple[str, str], dict[str, Any]]:
        pending: dict[tuple[str, str], dict[str, Any]] = {}
        try:
            with open(self.path, encoding="utf-8") as f:
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
        except FileNotFoundError:
            pass
        return pending

    def _rewrite(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            data = "".join(
                _line({"op": "add", "id": i, "sink": s, "event": e})
                for (i, s), e in self._pending.items()
            ).encode("utf-8")
            os.write(fd, data)
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        if self._fsync:
            _fsync_dir(self.path.parent)

    def pending(self) -> list[tuple[str, str, dict[str, Any]]]:
        """``(id, sink, event dict)`` for every undelivered record, oldest first."""
        with self._lock:
            return [(i, s, e) for (i, s), e in self._pending.items()]

    def add(self, id: str, sink: str, event: dict[str, Any]) -> None:
        """Record that ``event`` (with id ``id``) is owed to ``sink``."""
        self._append({"op": "add", "id": id, "sink": sink, "event": event}, (id, sink), event)

    def done(self, id: str, sink: str) -> None:
        """Record that ``sink`` has (or gave up) the event ``id``."""
        self._append({"op": "done", "id": id, "sink": sink}, (id, sink), None)

    def _append(
        self, record: dict[str, Any], key: tuple[str, str], event: dict[str, Any] | None
    ) -> None:
        data = _line(record).encode("utf-8")
        with self._lock:
            if self._fd is None:
                return
            if event is None:
                self._pending.pop(key, None)
            else:
                self._pending[key] = event
            os.write(self._fd, data)
            if self._fsync:
                os.fsync(self._fd)
            self._written += len(data)
            if not self._pending and self._written >= self._compact_bytes:
                self._rewrite()  # atomically replaced by an empty file
                os.close(self._fd)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                self._written = 0

    def close(self) -> None:
        """Close the file (records already written stay)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __repr__(self) -> str:
        return f"Spool(path={str(self.path)!r}, pending={len(self._pending)})"


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), sort_keys=True, default=str) + "\n"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
