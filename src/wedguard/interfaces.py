"""The Protocols at wedguard's edges.

A host plugs in its own sources, sinks, clocks and throttlers without subclassing
anything: any object with the right methods will do.

* :class:`Source` produces samples: a mapping of metric name to float.
* :class:`Sink` receives events (decisions, breaker transitions, alerts, metric points).
* :class:`Event` is what every event object offers a sink.
* :class:`Throttler` is the token-bucket interface, served locally by
  :class:`~wedguard.TokenBucketThrottler` and across hosts by the Redis bucket.

What the :class:`~wedguard.Guard` composes, satisfied by wedguard's own policy objects:
:class:`Calendar` (and its :class:`CalendarWindow`), :class:`Analyzer` (and its
:class:`ImpactAssessment`), :class:`Controller` and :class:`Breaker`. What a session
asks of its guard: :class:`SessionHost`.

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
from wedguard.decision import Decision
from wedguard.levels import Level, Verdict

if TYPE_CHECKING:
    import asyncio
    import threading

__all__ = [
    "Analyzer",
    "Breaker",
    "Calendar",
    "CalendarWindow",
    "Clock",
    "Controller",
    "Event",
    "GuardLike",
    "GuardSession",
    "ImpactAssessment",
    "SessionHost",
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


# -- what the guard composes, and what its sessions ask of it ------------------------
#
# wedguard's policy objects satisfy these; a host may pass its own. The guard's
# sessions talk to the guard through :class:`SessionHost` only.


@runtime_checkable
class CalendarWindow(Protocol):
    """A calendar window as the guard reads it (:class:`wedguard.Window`)."""

    @property
    def level(self) -> Level: ...
    @property
    def rate(self) -> float | None: ...
    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime | None: ...
    @property
    def reason(self) -> str: ...


@runtime_checkable
class Calendar(Protocol):
    """What the guard asks of a calendar (:class:`wedguard.PeakHourCalendar`):
    ``at(when)`` returns the :class:`CalendarWindow` in force at an aware datetime."""

    def at(self, when: datetime) -> Any: ...


@runtime_checkable
class ImpactAssessment(Protocol):
    """An impact analyser's answer (:class:`wedguard.Assessment`)."""

    @property
    def verdict(self) -> Verdict: ...
    @property
    def reasons(self) -> tuple[str, ...]: ...


@runtime_checkable
class Analyzer(Protocol):
    """What the guard asks of an impact analyser (:class:`wedguard.ImpactAnalyzer`).

    ``assess`` returns an :class:`ImpactAssessment`. An analyser may also offer
    ``observe_baseline(sample)`` and ``baseline_needed(sample)``: the guard then
    learns a baseline by itself (``Guard(baseline_warmup=...)``).
    """

    def assess(self, sample: Mapping[str, float], level: Level = ...) -> Any: ...


@runtime_checkable
class Controller(Protocol):
    """What the guard asks of a rate controller (``update`` returns the allowed rate;
    :class:`wedguard.policy.controllers.RateController` is one). A controller may also
    offer ``observe(rate)`` (the rate the sessions moved) and ``start_from(rate, now)``
    (an operator's new rate)."""

    def update(self, assessment: Any, *, ceiling: float, now: float) -> float: ...

    def reset(self) -> None: ...


@runtime_checkable
class Breaker(Protocol):
    """What the guard asks of a circuit breaker (:class:`wedguard.CircuitBreaker`)."""

    @property
    def name(self) -> str: ...
    @property
    def retry_after(self) -> float: ...
    def allow(self) -> bool: ...
    def record_success(self) -> None: ...
    def record_failure(self, exc: BaseException | None = None) -> None: ...


class SessionHost(Protocol):
    """What a :class:`~wedguard.Session` asks of its guard: the guard's core.

    The hot path reads the attributes without the lock (each is replaced whole, never
    changed in place); everything else runs with ``lock`` held unless it says
    otherwise. The attributes are read-only to a session. ``session`` arguments are the :class:`~wedguard.Session` objects.

    Attributes:
        lock: the guard's condition; waiters wait on it through the clock.
        clock: where time comes from; ``now()`` is its ``monotonic``.
        decision: the :class:`~wedguard.Decision` in force.
        go: False while the decision pauses all work.
        free: True when nothing limits and nothing can change before the next
            decision: ``throttle(n)`` only counts.
        expires: monotonic time when the decision must be recomputed
            (:meth:`refresh`).
        stopped: True while stopped (``throttle()`` raises ``EmergencyStop``).
        held_since: monotonic time since when production's sake holds the backup.
        max_hold: the longest such a hold may last (seconds; ``math.inf``: no limit).
        bytes, ops: the guard's own token buckets (``ops`` None without an ops budget).
        nice, ionice: the priority a session's thread runs at.
        fleet: the coordinator (None without one); ``fleet_bytes``, ``fleet_ops``:
            its shared buckets; ``fleet_leases``: those taken in leased blocks.
        async_waiters: ``(loop, future)`` pairs woken on every change.
    """

    @property
    def lock(self) -> threading.Condition: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def decision(self) -> Decision: ...
    @property
    def go(self) -> bool: ...
    @property
    def free(self) -> bool: ...
    @property
    def expires(self) -> float: ...
    @property
    def stopped(self) -> bool: ...
    @property
    def held_since(self) -> float | None: ...
    @property
    def max_hold(self) -> float: ...
    @property
    def bytes(self) -> Throttler: ...
    @property
    def ops(self) -> Throttler | None: ...
    @property
    def nice(self) -> int: ...
    @property
    def ionice(self) -> bool: ...
    @property
    def fleet(self) -> Any: ...
    @property
    def fleet_bytes(self) -> Any: ...
    @property
    def fleet_ops(self) -> Any: ...
    @property
    def fleet_leases(self) -> tuple[Any, ...]: ...
    @property
    def async_waiters(self) -> set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]: ...

    def now(self) -> float:
        """The clock's monotonic time."""

    def enter(self, session: Any, timeout: float | None) -> None:
        """Take a concurrency slot for ``session`` (no lock held) and begin it."""

    async def enter_async(self, session: Any, timeout: float | None) -> None:
        """The asyncio form of :meth:`enter`."""

    def exit(self, session: Any, exc: BaseException | None) -> None:
        """End ``session`` (no lock held): free its slot, report it."""

    def release(self, slot: Any) -> None:
        """Free a slot whose session was never ended (no lock held)."""

    def refresh(self, now: float) -> None:
        """Recompute the decision now."""

    def pause_cause(self) -> str:
        """Why the decision pauses: ``"stop"``, ``"calendar"`` or ``"impact"``."""

    def action(self, now: float) -> Any:
        """What a driver does at ``now`` under the decision in force: a
        :mod:`wedguard.policy.decision` action, ``Go()``, ``Wait(seconds, cause,
        reason)`` or ``Stop(reason)``."""

    def wait(self, timeout: float) -> None:
        """Wait on ``lock`` (held) through the clock; ``math.inf``: until woken."""

    async def wait_async(self, fut: asyncio.Future[None], timeout: float) -> None:
        """Await ``fut`` (registered in ``async_waiters``) at most ``timeout``."""

    def window_deadline(self, now_dt: datetime) -> datetime | None:
        """When the calendar next becomes more restrictive (``deadline="window"``)."""

    def blackout_end(self, now_dt: datetime) -> datetime | None:
        """When the BLACKOUT in force ends."""

    def fleet_due(self, n: float = 0.0, ops: int = 0) -> bool:
        """Whether a leased shared bucket wants a Redis call now (no lock needed)."""

    def fleet_refresh(self, n: float = 0.0, ops: int = 0) -> None:
        """The leased shared buckets' Redis calls, when due (never with the lock)."""


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

    def session(self, name: str, *, lower_thread: bool = True) -> GuardSession:
        """A new session named ``name``, to be entered (``lower_thread``: see
        :meth:`wedguard.Guard.session`)."""
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
