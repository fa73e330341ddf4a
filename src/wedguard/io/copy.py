"""The one copy loop: every byte the guard copies goes through :func:`copy_stream`.

``guard.copyfileobj``, ``Session.copyfileobj``, ``guard.pipe`` (and the ``wedguard
pipe`` filter), ``wedguard copy`` and :class:`~wedguard.io.fileobj.GuardedFile`'s
``write`` share it, so they share its promises:

* **Everything is written.** A ``write()`` that takes part of a chunk (raw files,
  pipes, sockets return how much they took) is called again with the rest (a
  memoryview of the chunk) until the chunk is written.
* **No buffer changes under a destination.** A destination may keep the object it is
  given (an upload queue, a list of parts): it is handed immutable ``bytes`` (and,
  after a short write, a read-only view of them). A buffer is reused (``readinto``)
  only for destinations known to copy what they are given before ``write()``
  returns: ``io.BytesIO``, ``io.FileIO`` and a ``BufferedWriter`` or
  ``BufferedRandom`` over an ``io.FileIO`` (``open(path, "wb")``, ``sys.stdout.buffer``).
* **The count is exact.** The return value, and the bytes the session reports, are the
  bytes the destination took. When the copy ends with an exception (an
  :class:`~wedguard.EmergencyStop` between chunks, a full disk inside a write) the
  session gives back what it counted for the chunk that was not written, so its report
  still says exactly what the destination holds.
* **No second slot.** The callers pass the session the calling thread or task is
  inside (``guard.current_session()``) when there is one.

The loop asks of its session only what :class:`~wedguard.interfaces.SessionLike` says
(``throttle`` and ``refund``): it does not import the runtime that serves it.

A ``write()`` that returns ``None`` means one of two things. On a raw stream (an
``io.RawIOBase`` such as ``FileIO`` or a socket's file, or any object whose
``fileno()`` is in non-blocking mode) it means "nothing could be written without
blocking": the copy raises :class:`BlockingIOError` (``errno.EAGAIN``) rather than
lose the chunk. Any other object that returns ``None`` (a plain Python writer that
returns nothing, as ``tarfile``'s streams and many upload queues do) took the whole
chunk, as :func:`shutil.copyfileobj` assumes. A ``read()`` or ``readinto()`` that
returns ``None`` (a non-blocking source with nothing to read) raises
:class:`BlockingIOError` too, instead of ending the copy early. Whenever a
:class:`BlockingIOError` leaves :func:`copy_stream`, its ``characters_written`` is the
number of bytes the copy wrote in all.

Example::

    >>> import io
    >>> from wedguard import Guard
    >>> from wedguard.testing import FakeClock
    >>> guard = Guard(rate="off", calendar=None, sources=[], sinks=[], clock=FakeClock())
    >>> parts = []
    >>> class Uploads:                 # keeps every object it is given
    ...     def write(self, b):
    ...         parts.append(b)
    >>> with guard.session("photos") as s:
    ...     copy_stream(s, io.BytesIO(b"abcdefgh"), Uploads(), 3)
    8
    >>> parts
    [b'abc', b'def', b'gh']
    >>> s.report().bytes == 8
    True

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from wedguard.errors import ConfigError
from wedguard.io.writeback import WindowedWriter

if TYPE_CHECKING:
    from wedguard.interfaces import SessionLike

__all__ = [
    "MAX_IDLE_WRITES",
    "check_chunk_size",
    "check_ends",
    "complete_write",
    "copy_stream",
    "keeps_nothing",
    "refund",
    "settle",
]

MAX_IDLE_WRITES: Final = 1000
"""A ``write()`` that takes 0 bytes this many times in a row fails the copy (OSError)."""

# destinations that copy what write() is given before returning (exact types only: a
# subclass may override write() to keep its argument)
_COPYING_TYPES: Final = (io.BytesIO, io.FileIO)
_BUFFERED_TYPES: Final = (io.BufferedWriter, io.BufferedRandom)


def check_chunk_size(value: object, field: str = "chunk_size") -> int:
    """``value`` as a chunk size in bytes; :class:`ConfigError` naming ``field`` if it
    is not a whole number > 0.

    >>> check_chunk_size(4096)
    4096
    >>> check_chunk_size(0, "length")
    Traceback (most recent call last):
    ...
    wedguard.errors.ConfigError: length: 0 is not valid; expected a chunk size in bytes > 0
    """
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(field, value, "a chunk size in bytes > 0")
    return value


def keeps_nothing(dst: object) -> bool:
    """True if ``dst.write()`` is known to copy its argument before it returns.

    Only then may the copy loop reuse one buffer for every chunk. Exact types:
    ``io.BytesIO``, ``io.FileIO`` and a ``BufferedWriter``/``BufferedRandom`` whose raw
    stream is an ``io.FileIO`` (what ``open(path, "wb")`` returns).

    >>> keeps_nothing(io.BytesIO()), keeps_nothing(object())
    (True, False)
    """
    kind = type(dst)
    if kind in _COPYING_TYPES:
        return True
    if type(dst) is WindowedWriter:  # writes through to its file
        return keeps_nothing(dst.file)
    return kind in _BUFFERED_TYPES and type(getattr(dst, "raw", None)) is io.FileIO


def check_ends(src: Any, dst: Any) -> None:
    """:class:`ConfigError` naming ``src`` or ``dst`` unless they are a binary source
    (``read()`` or ``readinto()``) and a binary destination (``write()``)."""
    if not (callable(getattr(src, "read", None)) or callable(getattr(src, "readinto", None))):
        raise ConfigError("src", src, "a binary file object with read() or readinto()")
    if isinstance(src, io.TextIOBase):
        raise ConfigError("src", src, "a binary file object (opened with 'rb')")
    if not callable(getattr(dst, "write", None)):
        raise ConfigError("dst", dst, "a binary file object with write()")
    if isinstance(dst, io.TextIOBase):
        raise ConfigError("dst", dst, "a binary file object (opened with 'wb')")


def copy_stream(
    session: SessionLike,
    src: Any,
    dst: Any,
    chunk_size: int = 1 << 20,
    *,
    available: bool = False,
    flush: bool = False,
    ops: int = 0,
    size: float | None = None,
    progress: Callable[[int], object] | None = None,
) -> int:
    """Copy ``src`` to ``dst`` through ``session``; return the bytes written.

    Each chunk is throttled (``session.throttle``) before it is written, then written
    in full. While nothing limits the session, ``throttle`` only counts the chunk (its
    shortcut, a few hundred nanoseconds a chunk).

    Args:
        session: an active session; its report counts exactly the bytes written.
        src: a binary file object with ``read()`` or ``readinto()``.
        dst: a binary file object with ``write()``.
        chunk_size: the most bytes read at a time. When the guard shapes
            (``Guard(shaping=...)``) each chunk is at most :attr:`Session.chunk_size`
            as well, read again before every chunk: smaller while production is near
            its limits, and at most 0.2 s of the allowed rate, so a low rate is paced
            as many short waits rather than a long sleep and a burst.
        available: read what is available (``read1``/``readinto1`` when the source
            has them), so a slow producer is forwarded as it produces.
        flush: call ``dst.flush()`` (when it has one) after each chunk.
        ops: operations counted with the first chunk (or alone, for an empty source):
            ``wedguard copy`` counts one per file.
        size: the whole size of that unit, when known (for CAUTIOUS cutoffs).
        progress: called with each chunk's length once it is written.

    Raises:
        ConfigError: ``chunk_size`` is not a whole number > 0, or ``src``/``dst`` is
            not a binary file object.
        BlockingIOError: a non-blocking source or destination could not go on; its
            ``characters_written`` is the bytes this copy wrote.
        OSError: from the source or destination, or a ``write()`` returning a length
            it was not given (or 0, :data:`MAX_IDLE_WRITES` times in a row).
        EmergencyStop, CutoffReached, DeadlineError: from ``session.throttle``; the
            destination holds every chunk before, none of the chunk after.
    """
    # the loop is written out in one function: a helper called per chunk would cost
    # every copy a call per chunk
    n = check_chunk_size(chunk_size)
    check_ends(src, dst)
    s = session
    throttle = s.throttle
    write = dst.write
    read, readinto, reuse, view = _reader(src, dst, n, available)
    do_flush = getattr(dst, "flush", None) if flush else None
    total = 0  # bytes written
    counted = 0  # bytes the session counted for this copy
    partial = [0]  # bytes of the chunk in hand written so far (set on short writes only)
    chunk: Any
    # shaping: the session's chunk size, read again chunk by chunk
    shaper: Any = s if getattr(s, "shaped", False) else None
    want = n
    try:
        while True:
            if shaper is not None:
                want = max(1, min(n, shaper.chunk_size))
            if view is None:
                chunk = read(want)
                if not chunk:
                    if chunk is None:
                        raise _blocked(f"{_label(src)}.read() returned None: no data yet")
                    break
                if type(chunk) is not bytes:
                    chunk = bytes(chunk)  # a bytearray or view the source may reuse
                k = len(chunk)
            else:
                k = readinto(view if want == n else view[:want])
                if not k:
                    if k is None:
                        raise _blocked(f"{_label(src)}.readinto() returned None: no data yet")
                    break
                if not isinstance(k, int) or not 0 < k <= want:
                    raise OSError(
                        errno.EIO, f"{_label(src)}.readinto() returned {k!r} for {want} bytes"
                    )
                chunk = view if k == n else view[:k]
                if not reuse:
                    chunk = bytes(chunk)
            throttle(k, ops, size=size)
            ops, size = 0, None
            counted += k
            w = write(chunk)
            if w != k:
                complete_write(write, chunk, k, w, dst, partial)
            total += k
            if progress is not None:
                progress(k)
            if do_flush is not None:
                do_flush()
        if ops:
            throttle(0, ops, size=size)
    except BaseException as exc:
        settle(s, exc, total, counted, partial[0])
        raise
    return total


def _reader(src: Any, dst: Any, n: int, available: bool) -> tuple[Any, Any, bool, Any]:
    """How ``src`` is read: ``read``, ``readinto``, whether one buffer is reused for
    every chunk, and that buffer (a memoryview of ``n`` bytes, or None: each chunk is
    read into a new bytes)."""
    if available:
        read = getattr(src, "read1", None) or getattr(src, "read", None)
        readinto = getattr(src, "readinto1", None) or getattr(src, "readinto", None)
    else:
        read = getattr(src, "read", None)
        readinto = getattr(src, "readinto", None)
    reuse = readinto is not None and keeps_nothing(dst)
    buffered = reuse or read is None
    view = memoryview(bytearray(n)) if buffered else None
    return read, readinto, reuse, view


def complete_write(
    write: Callable[[Any], Any], data: Any, k: int, w: object, dst: Any, partial: list[int]
) -> None:
    """Finish writing ``data`` (``k`` bytes) after its first ``write()`` returned ``w``.

    The rest is handed on as a memoryview of ``data`` (no copy per retry; read-only
    when ``data`` is ``bytes``, so a destination keeping it still sees its chunk).
    ``partial[0]`` holds the bytes of ``data`` written so far while this runs (for the
    caller's accounting when it raises) and is 0 again when it returns.
    """
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    done = 0
    idle = 0
    while True:
        if isinstance(w, int) and not isinstance(w, bool):
            if not 0 <= w <= k - done:
                raise OSError(errno.EIO, f"{_label(dst)}.write() returned {w} for {k - done} bytes")
            done += w
            idle = idle + 1 if w == 0 else 0
            if idle >= MAX_IDLE_WRITES:
                raise OSError(
                    errno.EIO,
                    f"{_label(dst)}.write() took nothing {MAX_IDLE_WRITES} times in a row",
                )
        elif w is None and _nonblocking(dst):
            raise _blocked(
                f"{_label(dst)}.write() returned None: the non-blocking destination took nothing"
            )
        else:
            done = k  # no count (None, True): the writer took it all, as shutil assumes
        partial[0] = done
        if done >= k:
            partial[0] = 0
            return
        w = write(view[done:])


def settle(s: SessionLike, exc: BaseException, total: int, counted: int, partial: int) -> None:
    """Account for a copy ending with ``exc``: the session gives back what was counted
    but not written; a BlockingIOError learns how much the copy wrote.

    ``total`` bytes were written in whole chunks, ``counted`` were counted, and
    ``partial`` bytes of the chunk in hand were written (``complete_write``).
    """
    written = total
    if counted > total:  # inside the write of a chunk
        written += partial
        if isinstance(exc, BlockingIOError):
            try:
                took = exc.characters_written  # of the failed write() call
            except AttributeError:
                took = 0
            written += max(0, min(took, counted - written))
    if isinstance(exc, BlockingIOError):
        exc.characters_written = written
    if counted > written:
        refund(s, counted - written)


def refund(s: SessionLike, n: int) -> None:
    """Take ``n`` bytes that were counted but never written off ``s``'s report (inside
    a protected call, ``s`` is what the call paid for: the bytes are paid for again)."""
    s.refund(n)


def _nonblocking(dst: Any) -> bool:
    """True if ``write()`` returning None means "took nothing" for ``dst``."""
    if isinstance(dst, io.RawIOBase):
        return True
    fileno = getattr(dst, "fileno", None)
    if fileno is None:
        return False
    try:
        return not os.get_blocking(fileno())
    except (OSError, ValueError, TypeError, AttributeError):
        return False


def _blocked(message: str) -> BlockingIOError:
    return BlockingIOError(errno.EAGAIN, message, 0)


def _label(obj: Any) -> str:
    name = getattr(obj, "name", None)
    return repr(name) if isinstance(name, (str, int)) else type(obj).__name__
