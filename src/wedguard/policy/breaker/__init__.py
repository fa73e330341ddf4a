"""A circuit breaker: closed, open, half-open; fast, thread-safe, sync and async.

The breaker is a pure policy object in the sans-I/O manner: it never sleeps, never
starts a thread and reads time only from its :class:`~wedguard.Clock`. Its core is
three methods: :meth:`CircuitBreaker.allow` asks whether a call may be made now, and
:meth:`~CircuitBreaker.record_success` and :meth:`~CircuitBreaker.record_failure` report
how it went. Around that core the breaker serves as a decorator (sync and async
functions), as ``call(fn, ...)`` and as a context manager (``with`` and ``async with``).

Locks guard only state changes. The protected function always runs with no lock held,
so callers run concurrently; on the common path (closed, no failures counted) a call
takes no lock at all.

The state lives in a :class:`BreakerStorage`: memory by default
(:class:`MemoryBreakerStorage`). Every change is a compare-and-set of a whole
:class:`BreakerRecord` against the version that was read, so a storage shared between
processes (Redis) can serve the same breaker without read-modify-write races.

Example::

    >>> from wedguard.testing import FakeClock
    >>> clock = FakeClock()
    >>> breaker = CircuitBreaker("db", failure_threshold=2, recovery_timeout="5m",
    ...                          clock=clock)
    >>> for _ in range(2):
    ...     breaker.record_failure(TimeoutError("slow"))
    >>> breaker.state, breaker.allow(), breaker.retry_after
    (<BreakerState.OPEN: 'open'>, False, 300.0)
    >>> clock.advance(300)
    >>> breaker.allow()           # the recovery timeout passed: one trial call
    True
    >>> breaker.record_success()  # the trial worked: closed again
    >>> breaker.state
    <BreakerState.CLOSED: 'closed'>
"""

from __future__ import annotations

from wedguard.policy.breaker.core import CircuitBreaker
from wedguard.policy.breaker.state import (
    BreakerEvent,
    BreakerRecord,
    BreakerState,
    BreakerStorage,
    MemoryBreakerStorage,
)

__all__ = [
    "BreakerEvent",
    "BreakerRecord",
    "BreakerState",
    "BreakerStorage",
    "CircuitBreaker",
    "MemoryBreakerStorage",
]
