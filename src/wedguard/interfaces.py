"""The Protocols at wedguard's edges.

A host plugs in its own sources, sinks, clocks and throttlers without subclassing
anything: any object with the right methods will do.

* :class:`Source` produces samples: a mapping of metric name to float.
* :class:`Sink` receives events (decisions, breaker transitions, alerts, metric points).
* :class:`Event` is what every event object offers a sink.
* :class:`Throttler` is the token-bucket interface, served locally by
  :class:`~wedguard.TokenBucketThrottler` and across hosts by the Redis bucket.
* :class:`Calendar` says which window (level, cap) holds at an instant.

What the io layer (the copy loop, wrapped files, child processes, uploads) asks of the
runtime above it is written here too, so that io never imports the runtime:

* :class:`SessionLike` paces and counts the bytes a copy moves.
* :class:`GuardSession` is a session the io layer opens itself (``with``).
* :class:`GuardLike` is the little of a :class:`~wedguard.Guard` that io calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from wedguard.clock import Clock

if TYPE_CHECKING:
    from wedguard.decision import Decision

__all__ = [
    "Calendar",
    "Clock",
    "Event",
    "GuardLike",
    "GuardSession",
    "SessionLike",
    "Sink",
    "Source",
    "Throttler",
]

Sample = Mapping[str, float]
"""A set of metric readings taken at one moment, e.g. ``{"cpu.percent": 41.5}``."""


@runtime_checkable
class Source(Protocol):
    """Something that measures production or the backup.

    ``sample()`` never raises and never blocks past the source's own timeout. A reading
    that failed is reported as an error metric (``"<metric>.error": 1.0``), never as an
    exception and never as zero.

    Example::

        class QueueDepth:
            def sample(self) -> Mapping[str, float]:
                return {"queue.depth": float(len(my_queue))}
    """

    def sample(self) -> Mapping[str, float]: ...


@runtime_checkable
class Event(Protocol):
    """What a sink can rely on in every event.

    ``kind`` names the event type (``"decision"``, ``"breaker"``, ``"alert"``, ...);
    ``to_dict()`` gives a JSON-serialisable mapping, secrets already removed.
    """

    @property
    def kind(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class Sink(Protocol):
    """Something that receives events: a log, a file, a webhook, a metrics registry.

    ``emit`` must be quick; a sink that talks to the network queues the event and
    delivers it from its own worker, so a slow or failing sink never holds a backup.
    """

    def emit(self, event: Event) -> None: ...


@runtime_checkable
class Throttler(Protocol):
    """A token bucket: the interface both the local and the Redis bucket serve."""

    @property
    def rate(self) -> float: ...

    @property
    def burst(self) -> float: ...

    @property
    def available(self) -> float: ...

    def try_acquire(self, n: float = 1) -> bool: ...

    def acquire(self, n: float = 1, *, timeout: float | None = None) -> float: ...

    async def acquire_async(self, n: float = 1, *, timeout: float | None = None) -> float: ...

    def reserve(self, n: float = 1) -> float: ...

    def set_rate(self, rate: float | str) -> None: ...


@runtime_checkable
class Calendar(Protocol):
    """A calendar of windows: :class:`~wedguard.PeakHourCalendar`, or anything with
    ``at(when)`` returning a window whose ``.level`` is a :class:`~wedguard.Level`
    (and whose ``.end``, when it has one, is the next instant the answer may change).
    """

    def at(self, when: datetime) -> Any: ...


# -- what the io layer asks of the runtime ---------------------------------------------


class SessionLike(Protocol):
    """A session as the copy loop and wrapped files use it: pace, then count exactly.

    Served by :class:`~wedguard.runtime.session.Session` and, inside a call protected
    with ``guard.protect(cost=...)``, by the budget that call paid for (its bytes are
    spent first, so they are not charged twice).
    """

    def throttle(self, n: float, ops: int = 0, *, size: float | None = None) -> float:
        """Wait until ``n`` bytes (and ``ops`` operations) may go; the seconds waited."""
        ...

    def refund(self, n: float) -> None:
        """``n`` bytes that :meth:`throttle` counted were never written (a write that
        failed): take them off the count, so the report says what the destination holds."""
        ...


class GuardSession(SessionLike, Protocol):
    """A session the io layer opens itself with ``guard.session(name)``: a wrapped
    file's own session, a child process's slot, an upload's session.

    The io layer enters it (``with`` or ``__enter__``) and leaves it when its work ends.
    """

    def count(self, n: float) -> None:
        """Count ``n`` bytes moved without :meth:`throttle` (a child process's I/O, read
        from its counters): they show in the report and in the rate the guard sees the
        backup achieve; nothing waits."""
        ...

    def __enter__(self) -> Any: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class GuardLike(Protocol):
    """The little of a :class:`~wedguard.Guard` that the io layer calls.

    ``guard.run``, ``guard.popen``, ``guard.pipe``, ``guard.wrap`` and the S3 uploads
    hand the guard itself to io as this; a host may hand its own object.
    """

    @property
    def breaker(self) -> Any:
        """The circuit breaker every request of an upload goes through, or None."""
        ...

    @property
    def coordinator(self) -> Any:
        """The fleet's coordinator (Redis), or None when the guard works alone."""
        ...

    @property
    def max_concurrent(self) -> int | None:
        """How many sessions may run at once (None: no limit)."""
        ...

    def decision(self) -> Decision:
        """The guard's decision now: level, allowed rate, verdict and reasons."""
        ...

    def session(self, name: str) -> GuardSession:
        """A new session named ``name``, to be entered."""
        ...

    def current_session(self) -> SessionLike | None:
        """The active session of this guard that the caller is inside, if any: io
        joins it rather than taking a second concurrency slot."""
        ...

    def publish(self, event: Event) -> None:
        """Hand an event (a process report, an alert) to the guard's sinks; never blocks
        on a sink."""
        ...

    def wait_for_change(self, timeout: float) -> None:
        """Wait until the guard's decision may have changed (a new decision, a stop, a
        resume) or ``timeout`` seconds have passed, whichever is first."""
        ...
