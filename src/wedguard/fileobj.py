"""Throttled file objects: :meth:`Guard.wrap` and :meth:`Guard.copyfileobj`.

A :class:`GuardedFile` stands in for any binary file object. ``read``, ``read1``,
``readinto``, ``readinto1``, ``readline`` and ``write`` go through the session's
``throttle()``; everything else (``seek``, ``tell``, ``name``, ``fileno``...) is the
wrapped object's own, so ``shutil.copyfileobj``, ``tarfile``, ``hashlib`` loops and
boto3's ``upload_fileobj`` work unchanged.

Reads are throttled by what was actually read (after the read); writes before the
write, so an :class:`~wedguard.EmergencyStop` leaves the destination holding exactly
what was written before it.

Example::

    >>> import hashlib, io
    >>> from wedguard import Guard
    >>> from wedguard.testing import FakeClock
    >>> guard = Guard(rate="1MB/s", calendar=None, sources=[], sinks=[], clock=FakeClock())
    >>> digest = hashlib.sha256()
    >>> with guard.wrap(io.BytesIO(b"x" * 300_000)) as f:
    ...     for chunk in iter(lambda: f.read(100_000), b""):
    ...         digest.update(chunk)
    >>> guard.clock.monotonic()   # 1 MB/s with a 0.2 s burst: the third chunk waited
    0.1
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from wedguard.errors import ConfigError

if TYPE_CHECKING:
    from wedguard.guard import Guard
    from wedguard.session import Session

__all__ = ["GuardedFile", "copy_throttled"]


def copy_throttled(session: Session, src: Any, dst: Any, length: int) -> int:
    """Copy ``src`` to ``dst`` in chunks of ``length`` bytes, throttled by ``session``
    before each write; returns the bytes copied.

    A source with ``readinto`` is read into one reused buffer (no allocation per
    chunk). While nothing limits the session a chunk is only counted (the shortcut at
    the top of :meth:`Session.throttle`, taken here without the call: at memory speed
    the call alone costs about 3 % of a 1 MiB chunk).

    Raises:
        ConfigError: ``length`` is not a whole number of bytes > 0.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
        raise ConfigError("length", length, "a chunk size in bytes > 0")
    s = session
    throttle = s.throttle
    total = 0
    readinto = getattr(src, "readinto", None)
    write = dst.write
    if readinto is not None:
        buf = bytearray(length)
        view = memoryview(buf)
        while True:
            k = readinto(view)
            if not k:
                break
            if s._guard._free and s._lean:
                s._bytes += k
            else:
                throttle(k)
            write(view if k == length else view[:k])
            total += k
        return total
    read = src.read
    while True:
        chunk = read(length)
        if not chunk:
            break
        k = len(chunk)
        if s._guard._free and s._lean:
            s._bytes += k
        else:
            throttle(k)
        write(chunk)
        total += k
    return total


def _end_session(session: Session) -> None:
    session.__exit__(None, None, None)


class GuardedFile:
    """A binary file object whose reads and writes are throttled by a guard.

    Create it with :meth:`Guard.wrap`. ``close()`` closes the wrapped object and ends
    the wrapper's own session (when it has one); use it as a context manager.
    """

    def __init__(
        self,
        guard: Guard,
        fileobj: Any,
        *,
        session: Session | None = None,
        name: str | None = None,
    ) -> None:
        self._guard = guard
        self._raw = fileobj
        self._own = session is None
        self._session = session
        self._name = name or str(getattr(fileobj, "name", "") or "file")
        self._finalizer: Any = None

    @property
    def raw(self) -> Any:
        """The wrapped file object."""
        return self._raw

    @property
    def session(self) -> Session | None:
        """The session that throttles this file (None until the first I/O of an own one)."""
        return self._session

    def _throttle(self, n: float) -> None:
        s = self._session
        if s is None:
            s = self._guard.session(self._name)
            s.__enter__()
            self._session = s
            self._finalizer = weakref.finalize(self, _end_session, s)
        s.throttle(n)

    # -- reading ---------------------------------------------------------------------------

    def read(self, size: int | None = -1) -> bytes:
        data: bytes = self._raw.read() if size is None or size < 0 else self._raw.read(size)
        if data:
            self._throttle(len(data))
        return data

    def read1(self, size: int = -1) -> bytes:
        fn = getattr(self._raw, "read1", None)
        data: bytes = fn(size) if fn is not None else self._raw.read(size)
        if data:
            self._throttle(len(data))
        return data

    def readinto(self, buffer: Any) -> int | None:
        k: int | None = self._raw.readinto(buffer)
        if k:
            self._throttle(k)
        return k

    def readinto1(self, buffer: Any) -> int | None:
        fn = getattr(self._raw, "readinto1", None) or self._raw.readinto
        k: int | None = fn(buffer)
        if k:
            self._throttle(k)
        return k

    def readline(self, size: int | None = -1) -> bytes:
        data: bytes = self._raw.readline(-1 if size is None else size)
        if data:
            self._throttle(len(data))
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    # -- writing ---------------------------------------------------------------------------

    def write(self, data: Any) -> int:
        n = memoryview(data).nbytes
        if n:
            self._throttle(n)
        written: int | None = self._raw.write(data)
        return n if written is None else written

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    # -- the rest ---------------------------------------------------------------------------

    def readable(self) -> bool:
        fn = getattr(self._raw, "readable", None)
        return bool(fn()) if fn is not None else hasattr(self._raw, "read")

    def writable(self) -> bool:
        fn = getattr(self._raw, "writable", None)
        return bool(fn()) if fn is not None else hasattr(self._raw, "write")

    def seekable(self) -> bool:
        fn = getattr(self._raw, "seekable", None)
        return bool(fn()) if fn is not None else hasattr(self._raw, "seek")

    @property
    def closed(self) -> bool:
        return bool(getattr(self._raw, "closed", False))

    def close(self) -> None:
        """Close the wrapped file and end this wrapper's own session."""
        try:
            self._raw.close()
        finally:
            if self._own and self._finalizer is not None:
                self._finalizer()

    def __enter__(self) -> GuardedFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._raw.close()
        finally:
            if self._own and self._finalizer is not None and self._finalizer.alive:
                self._finalizer.detach()
                assert self._session is not None
                self._session.__exit__(exc_type, exc, tb)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def __repr__(self) -> str:
        return f"GuardedFile({self._raw!r}, session={self._session!r})"
