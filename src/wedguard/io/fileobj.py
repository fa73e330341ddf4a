"""Throttled file objects: :meth:`Guard.wrap` and :meth:`Guard.copyfileobj`.

A :class:`GuardedFile` stands in for any binary file object. ``read``, ``read1``,
``readinto``, ``readinto1``, ``readline`` and ``write`` go through the session's
``throttle()``; everything else (``seek``, ``tell``, ``name``, ``fileno``...) is the
wrapped object's own, so ``shutil.copyfileobj``, ``tarfile``, ``hashlib`` loops and
boto3's ``upload_fileobj`` work unchanged.

Reads are throttled by what was actually read (after the read); writes before the
write, so an :class:`~wedguard.EmergencyStop` leaves the destination holding exactly
what was written before it. ``write`` writes everything it is given (it calls the
wrapped ``write()`` again after a short write) and returns the length, so the session
counts exactly what the wrapped object took; copies go through the one copy loop,
:func:`wedguard.io.copy.copy_stream`.

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

import contextlib
import weakref
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from wedguard.io.copy import check_chunk_size, complete_write, copy_stream, settle

if TYPE_CHECKING:
    from wedguard.interfaces import GuardLike, GuardSession, SessionLike

__all__ = ["GuardedFile", "copy_throttled"]


def copy_throttled(session: SessionLike, src: Any, dst: Any, length: int) -> int:
    """Copy ``src`` to ``dst`` in chunks of ``length`` bytes through ``session``; return
    the bytes written.

    .. deprecated:: 0.2.0
       The name of :func:`wedguard.io.copy.copy_stream` before every copy used it; kept
       for callers of the old name.

    Raises:
        ConfigError: ``length`` is not a whole number of bytes > 0.
    """
    return copy_stream(session, src, dst, check_chunk_size(length, "length"))


def _end_session(session: GuardSession) -> None:
    session.__exit__(None, None, None)


class GuardedFile:
    """A binary file object whose reads and writes are throttled by a guard.

    Create it with :meth:`Guard.wrap`. ``close()`` closes the wrapped object and ends
    the wrapper's own session (when it has one); use it as a context manager.
    """

    def __init__(
        self,
        guard: GuardLike,
        fileobj: Any,
        *,
        session: SessionLike | None = None,
        name: str | None = None,
    ) -> None:
        self._guard = guard
        self._raw = fileobj
        self._own = session is None
        self._session = session
        self._name = name or str(getattr(fileobj, "name", "") or "file")
        self._finalizer: Any = None
        # bytes read again after a seek back (a checksum pass, then the send) are not
        # charged again: the position once the wrapper has seen a seek (None before),
        # and the stretches of the file read so far ([start, end), merged, sorted)
        self._pos: int | None = None
        self._spans: list[list[int]] = []
        self._untracked = 0  # bytes read before the first seek

    @property
    def raw(self) -> Any:
        """The wrapped file object."""
        return self._raw

    @property
    def session(self) -> SessionLike | None:
        """The session that throttles this file (None until the first I/O of an own one)."""
        return self._session

    def _throttle(self, n: float) -> None:
        s = self._session
        if s is None:
            own = self._guard.session(self._name)
            own.__enter__()
            self._session = s = own
            self._finalizer = weakref.finalize(self, _end_session, own)
        s.throttle(n)

    # -- reading ---------------------------------------------------------------------------

    def _read(self, k: int) -> None:
        """Charge ``k`` bytes just read, less what of them was read before."""
        pos = self._pos
        if pos is None:  # no seek seen: every read is new
            self._untracked += k
            self._throttle(k)
            return
        end = self._pos = pos + k
        new = k - self._seen(pos, end)
        if new > 0:
            self._throttle(new)

    def _seen(self, start: int, end: int) -> int:
        """How much of [start, end) was read before; records it as read."""
        spans = self._spans
        seen = 0
        merged = [start, end]
        kept = []
        for span in spans:
            if span[1] < start or span[0] > end:
                kept.append(span)
                continue
            seen += max(0, min(end, span[1]) - max(start, span[0]))
            merged = [min(merged[0], span[0]), max(merged[1], span[1])]
        kept.append(merged)
        kept.sort()
        self._spans = kept
        return seen

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move the wrapped file's position. Bytes read again after a seek back (boto3
        reads a small object for its checksum, then again to send it) are not charged
        again: the session counts each byte of the file once."""
        if self._pos is None and self._untracked:
            with contextlib.suppress(Exception):  # what was read before: up to here
                here = int(self._raw.tell())
                self._seen(max(0, here - self._untracked), here)
        pos = int(self._raw.seek(offset, whence))
        self._pos = pos
        return pos

    def read(self, size: int | None = -1) -> bytes:
        data: bytes = self._raw.read() if size is None or size < 0 else self._raw.read(size)
        if data:
            self._read(len(data))
        return data

    def read1(self, size: int = -1) -> bytes:
        fn = getattr(self._raw, "read1", None)
        data: bytes = fn(size) if fn is not None else self._raw.read(size)
        if data:
            self._read(len(data))
        return data

    def readinto(self, buffer: Any) -> int | None:
        k: int | None = self._raw.readinto(buffer)
        if k:
            self._read(k)
        return k

    def readinto1(self, buffer: Any) -> int | None:
        fn = getattr(self._raw, "readinto1", None) or self._raw.readinto
        k: int | None = fn(buffer)
        if k:
            self._read(k)
        return k

    def readline(self, size: int | None = -1) -> bytes:
        data: bytes = self._raw.readline(-1 if size is None else size)
        if data:
            self._read(len(data))
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
        """Throttle, then write all of ``data`` (calling the wrapped ``write()`` again
        after a short write, as a buffered file does); return its length.

        Raises:
            BlockingIOError: the wrapped object is non-blocking and took nothing more;
                ``characters_written`` says how much of ``data`` it took.
        """
        n = memoryview(data).nbytes
        raw_write = self._raw.write
        if not n:
            raw_write(data)
            return 0
        self._throttle(n)
        partial = [0]
        try:
            w = raw_write(data)
            if w != n:
                complete_write(raw_write, data, n, w, self._raw, partial)
        except BaseException as exc:
            if self._session is not None:  # always, once _throttle returned
                settle(self._session, exc, 0, n, partial[0])
            self._pos = None  # where the file stands is not known: reads count in full
            raise
        if self._pos is not None:
            self._pos += n
        return n

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
            fin = self._finalizer if self._own else None
            detached = fin.detach() if fin is not None else None
            if detached is not None:  # the wrapper's own session, not ended yet
                own: GuardSession = detached[2][0]
                own.__exit__(exc_type, exc, tb)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def __repr__(self) -> str:
        return f"GuardedFile({self._raw!r}, session={self._session!r})"
