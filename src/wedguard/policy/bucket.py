"""A precise, thread-safe token bucket for threads and asyncio alike.

The bucket counts whatever the caller counts (bytes, files, requests). It is exact by
arithmetic, not by polling: the credit the bucket has made available is a linear
function of the clock since its last anchor, so a million tiny requests lose no
fractions and the long-run rate holds to floating-point precision.

Requests are served in FIFO order: a request *reserves* its place at once (so a large
chunk is never starved by a stream of small ones) and then waits until the credit
reaches its place. A request larger than the burst is served when the bucket is full
and leaves the bucket in debt, which later requests repay; it never deadlocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import threading
from collections.abc import Generator
from typing import Final

from wedguard import _checks
from wedguard.clock import Clock, check_clock, clock_await, clock_wait
from wedguard.errors import ConfigError, ThrottleTimeout
from wedguard.units import parse_rate

__all__ = ["TokenBucketThrottler"]

BURST_SPAN: Final = 0.2
"""Default burst, in seconds' worth of the current rate."""
BURST_FLOOR: Final = 1.0
"""The smallest default burst, in units."""
LEASE_SPAN: Final = 0.01
"""The credit a caller that spends it without a lock takes at once while nothing binds
(:meth:`TokenBucketThrottler.lease`), in seconds' worth of the rate."""

_INF: Final = math.inf
_FLOAT_MAX: Final = sys.float_info.max
_SLACK: Final = 1e-9
"""Seconds below which a remaining wait counts as served (float rounding, not policy)."""


class _Ticket:
    """A blocking request's place in the queue: served once the credit reaches it."""

    __slots__ = ("n", "position")

    def __init__(self, n: float, position: float) -> None:
        self.n = n
        self.position = position


class TokenBucketThrottler:
    """A token bucket: ``rate`` units per second, bursts of up to ``burst`` units.

    Args:
        rate: units per second (a number or rate text such as ``"10MB/s"``); ``0``
            pauses, ``math.inf`` or ``"off"`` means unlimited.
        burst: how many units may be taken at once from a full bucket (a number or a
            size such as ``"256KiB"``). ``None`` (the default) follows the rate: 0.2 s
            worth of it, at least one unit, so there is no line-rate burst followed by
            a long sleep.
        clock: where time comes from (default: the system clock).

    Raises:
        ConfigError: ``rate`` is negative or not a rate, or ``burst`` is not a finite
            number of units > 0.

    Example::

        >>> from wedguard.testing import FakeClock
        >>> bucket = TokenBucketThrottler("1MB/s", clock=FakeClock())
        >>> bucket.burst
        200000.0
        >>> bucket.try_acquire(150_000), bucket.try_acquire(150_000)
        (True, False)
        >>> bucket.reserve(150_000)      # pure: takes it now, says how long to wait
        0.1

    The blocking :meth:`acquire` and :meth:`acquire_async` sleep through the clock;
    :meth:`try_acquire` and :meth:`reserve` never wait. All methods are thread-safe.

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "__weakref__",
        "_async_waiters",
        "_burst",
        "_burst_given",
        "_c0",
        "_clock",
        "_cond",
        "_consumed",
        "_lock",
        "_now",
        "_queue",
        "_rate",
        "_slope",
        "_t0",
        "_unlimited",
    )

    def __init__(
        self,
        rate: float | str,
        burst: float | str | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        rate_value = parse_rate(rate, field="rate")
        if burst is None:
            burst_given = None
        else:
            burst_given = parse_rate(burst, field="burst")
            if not 0 < burst_given < _INF:
                raise ConfigError("burst", burst, "a finite number of units > 0, or None")
        self._clock: Clock = check_clock(clock)
        self._now = self._clock.monotonic
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        # one ticket per blocking caller waiting now
        self._queue: list[_Ticket] = []
        self._burst_given = burst_given
        self._rate = rate_value
        self._unlimited = rate_value == _INF
        self._burst = self._effective_burst(rate_value)
        self._consumed = 0.0
        # The credit line is c0 + slope * (now - t0). While unlimited it is flat at
        # the largest float, so every finite request fits and no arithmetic meets
        # inf * 0.
        self._slope = 0.0 if self._unlimited else rate_value
        self._c0 = _FLOAT_MAX if self._unlimited else self._burst  # a new bucket starts full
        self._t0 = self._now()

    # -- properties -----------------------------------------------------------------

    @property
    def rate(self) -> float:
        """Units per second now (``math.inf`` when unlimited, 0 when paused)."""
        return self._rate

    @property
    def burst(self) -> float:
        """The most a full bucket gives at once (``math.inf`` while unlimited)."""
        return self._burst

    @property
    def available(self) -> float:
        """Units that could be taken now without waiting; negative while in debt.

        Units reserved by waiting callers are already counted out.
        """
        with self._lock:
            if self._unlimited:
                return _INF
            return self._credit(self._now()) - self._consumed

    @property
    def waiting(self) -> int:
        """How many blocking callers are waiting now."""
        return len(self._queue)

    @property
    def clock(self) -> Clock:
        """The clock this bucket reads."""
        return self._clock

    # -- the pure core ----------------------------------------------------------------

    def _effective_burst(self, rate: float) -> float:
        if rate == _INF:
            return _INF  # unlimited: no bucket to fill
        if self._burst_given is not None:
            return self._burst_given
        return max(rate * BURST_SPAN, BURST_FLOOR)

    def _credit(self, now: float) -> float:
        """Total credit made available up to ``now`` (lock held)."""
        credit = self._c0 + self._slope * (now - self._t0)
        cap = self._consumed + self._burst
        if credit >= cap:
            self._c0 = cap
            self._t0 = now
            return cap
        return credit

    def try_acquire(self, n: float = 1) -> bool:
        """Take ``n`` units if they are there now; never waits.

        A request larger than the burst succeeds only from a full bucket (and leaves it
        in debt). While other callers wait, their places come first, so this returns
        False rather than jumping the queue.

        >>> from wedguard.testing import FakeClock
        >>> clock = FakeClock()
        >>> bucket = TokenBucketThrottler(10, burst=5, clock=clock)
        >>> bucket.try_acquire(5), bucket.try_acquire(1)
        (True, False)
        >>> clock.advance(0.1)
        >>> bucket.try_acquire(1)
        True

        Raises:
            ConfigError: ``n`` is negative, not finite or not a number.
        """
        # try_acquire_at's first test, written out again: the call would cost the hot
        # path a third of its time
        try:
            with self._lock:
                now = self._now()
                consumed = self._consumed
                available = self._c0 + self._slope * (now - self._t0) - consumed
                if available >= n >= 0 and n is not True and n is not False:
                    if available >= self._burst and now > self._t0:  # full: re-anchor
                        self._c0 = consumed + self._burst
                        self._t0 = now
                    self._consumed = consumed + n
                    return True
                return self._take_beyond(n, now, available)
        except TypeError:  # n is not a number at all
            _checks.units(n)
            raise

    def try_acquire_at(self, n: float, now: float) -> bool:
        """:meth:`try_acquire` at a reading of this bucket's clock the caller already took
        (a caller that checks other limits at the same instant reads the clock once).

        >>> from wedguard.testing import FakeClock
        >>> clock = FakeClock()
        >>> bucket = TokenBucketThrottler(10, burst=5, clock=clock)
        >>> bucket.try_acquire_at(5, clock.monotonic()), bucket.try_acquire_at(1, 0.1)
        (True, True)

        Raises:
            ConfigError: ``n`` is negative, not finite or not a number.
        """
        # The hot path: one lock, one clock read, and validation folded into the
        # comparisons (a bad n never passes the first test; the slow path rejects it).
        try:
            with self._lock:
                consumed = self._consumed
                available = self._c0 + self._slope * (now - self._t0) - consumed
                if available >= n >= 0 and n is not True and n is not False:
                    if available >= self._burst and now > self._t0:  # full: re-anchor
                        self._c0 = consumed + self._burst
                        self._t0 = now
                    self._consumed = consumed + n
                    return True
                return self._take_beyond(n, now, available)
        except TypeError:  # n is not a number at all
            _checks.units(n)
            raise

    def lease(self, n: float, want: float, now: float) -> float:
        """Take credit for ``n`` units, or for ``want`` (``> n``) while the bucket would
        keep at least half its burst after; return the units taken (0: none).

        A caller that spends its credit itself (without a lock) asks the bucket once
        per block instead of once per request, and gives back what it did not spend
        with :meth:`untake`. The block is taken only while nothing binds (the bucket
        more than half full), so a bucket that binds serves exactly what is asked, as
        :meth:`try_acquire_at` does. An unlimited bucket gives ``want`` and counts
        nothing.

        >>> from wedguard.testing import FakeClock
        >>> clock = FakeClock()
        >>> bucket = TokenBucketThrottler(100, burst=100, clock=clock)
        >>> bucket.lease(1, 20, 0.0)                # full: a block of 20
        20.0
        >>> bucket.untake(19); bucket.lease(1, 40, 0.0)   # 99 there: 40 (59 left)
        40.0
        >>> bucket.lease(1, 40, 0.0)                # 59 - 40 < 50: only what is asked
        1.0

        Raises:
            ConfigError: ``n`` is negative, not finite or not a number.
        """
        n = _checks.units(n)
        with self._lock:
            if self._unlimited:
                return float(max(want, n))
            consumed = self._consumed
            available = self._c0 + self._slope * (now - self._t0) - consumed
            burst = self._burst
            take = want if want > n and available - want >= burst * 0.5 else n
            if available >= take:
                if available >= burst and now > self._t0:  # full: re-anchor
                    self._c0 = consumed + burst
                    self._t0 = now
                self._consumed = consumed + take
                return float(take)
            return n if self._take_beyond(n, now, available) else 0.0

    def _take_beyond(self, n: float, now: float, available: float) -> bool:
        """The units are not there (or ``n`` is no size): a request beyond the burst
        is served from a full bucket, into debt (lock held)."""
        n = _checks.units(n)  # raises for NaN, inf, negatives, bools, huge ints
        burst = self._burst
        if available >= burst:  # n > burst: served from a full bucket, into debt
            self._c0 = self._consumed + burst
            self._t0 = now
            self._consumed += n
            return True
        return False

    def untake(self, n: float) -> None:
        """Give back ``n`` units just taken by :meth:`try_acquire` (or
        :meth:`try_acquire_at`) and not used after all, as if never taken.

        >>> from wedguard.testing import FakeClock
        >>> bucket = TokenBucketThrottler(10, burst=5, clock=FakeClock())
        >>> bucket.try_acquire(5), bucket.try_acquire(1)
        (True, False)
        >>> bucket.untake(5)
        >>> bucket.try_acquire(5)
        True

        Never more than the burst: units given back after the rate changed (credit
        leased at a higher rate) fill the bucket at most to its burst now.

        >>> bucket.untake(1000); bucket.available
        5.0
        """
        n = _checks.units(n)
        with self._lock:
            if not self._unlimited:
                self._consumed -= n
                now = self._now()
                if self._c0 + self._slope * (now - self._t0) - self._consumed > self._burst:
                    self._c0 = self._consumed + self._burst
                    self._t0 = now

    def reserve(self, n: float = 1) -> float:
        """Take ``n`` units now and return how many seconds the caller must wait.

        Pure: it never sleeps. The caller is expected to wait the returned time before
        using the units (``math.inf`` while the bucket is paused at rate 0).

        >>> from wedguard.testing import FakeClock
        >>> bucket = TokenBucketThrottler(10, burst=10, clock=FakeClock())
        >>> bucket.reserve(10), bucket.reserve(5)
        (0.0, 0.5)

        Raises:
            ConfigError: ``n`` is negative, not finite or not a number.
        """
        n = _checks.units(n)
        with self._lock:
            if self._unlimited:
                return 0.0
            credit = self._credit(self._now())
            position = self._consumed + (n if n < self._burst else self._burst)
            self._consumed += n
            short = position - credit
            if short <= 0:
                return 0.0
            return short / self._slope if self._slope > 0 else _INF

    # -- blocking ----------------------------------------------------------------------

    def _place(self, n: float, timeout: float | None, now: float) -> tuple[_Ticket | None, float]:
        """Reserve a place for ``n`` (lock held); returns (ticket, wait seconds).

        The ticket is None when the units are there now. Raises ThrottleTimeout,
        consuming nothing, when the wait exceeds ``timeout``.
        """
        credit = self._credit(now)
        position = self._consumed + (n if n < self._burst else self._burst)
        short = position - credit
        if short <= 0:
            self._consumed += n
            return None, 0.0
        wait = short / self._slope if self._slope > 0 else _INF
        if timeout is not None and wait > timeout:
            raise ThrottleTimeout(n, timeout, wait)
        self._consumed += n
        ticket = _Ticket(n, position)
        self._queue.append(ticket)
        return ticket, wait

    def _remaining(self, ticket: _Ticket, now: float) -> float:
        """Seconds until the credit reaches the ticket's place (lock held).

        Returns 0 and takes the ticket out of the queue once it is served.
        """
        if not self._unlimited:
            short = ticket.position - self._credit(now)
            if short > 0:
                if self._slope <= 0:
                    return _INF
                wait = short / self._slope
                # A wait below a nanosecond, or below what the clock can still
                # represent, is float rounding: waiting for it could spin forever.
                if wait > _SLACK and now + wait != now:
                    return wait
        self._queue.remove(ticket)
        return 0.0

    def _give_back(
        self, ticket: _Ticket
    ) -> list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]:
        """Undo a ticket that will not be served (lock held), as if never placed.

        The places after it move up by its size, so nobody behind it loses ground and
        nobody ahead of it gains credit it has not earned. Returns the asyncio waiters
        to wake.
        """
        queue = self._queue
        try:
            i = queue.index(ticket)
        except ValueError:  # already served: the units were taken
            return []
        del queue[i]
        n = ticket.n
        for later in queue[i:]:
            later.position -= n
        self._consumed -= n
        if i < len(queue):
            self._cond.notify_all()
            return list(self._async_waiters)
        return []

    def _serve(self, n: float, timeout: float | None) -> Generator[float, None, float]:
        """One blocking request, for threads and asyncio alike (run with the lock held):
        places ``n`` and yields how long to wait until the credit may reach its place;
        the driver waits (and is woken by :meth:`set_rate`) and resumes it. Returns the
        seconds waited. Closed or failing before it is served, it gives the place back,
        as if never placed."""
        start = now = self._now()
        ticket, wait = self._place(n, timeout, now)
        if ticket is None:
            return 0.0
        deadline = _INF if timeout is None else start + timeout
        try:
            while True:
                yield wait
                now = self._now()
                wait = self._remaining(ticket, now)
                if wait <= 0:
                    return now - start
                if now + wait > deadline + _SLACK:
                    raise ThrottleTimeout(n, timeout or 0.0, now + wait - start)
        except BaseException:
            _wake_all(self._give_back(ticket))
            raise

    def acquire(self, n: float = 1, *, timeout: float | None = None) -> float:
        """Take ``n`` units, waiting for them if need be; returns the seconds waited.

        Args:
            n: units to take (may exceed the burst: served through debt).
            timeout: the longest to wait, in seconds. If the units cannot be had in
                time at the current rate, :class:`~wedguard.ThrottleTimeout` is raised
                at once and nothing is consumed (also when a lowered rate makes a
                waiting caller miss its deadline).

        Waiters are served in FIFO order and wake at once when :meth:`set_rate`
        changes the rate. At rate 0 a caller without a timeout waits until the rate
        is raised.

        >>> from wedguard.testing import FakeClock
        >>> bucket = TokenBucketThrottler(100, burst=100, clock=FakeClock())
        >>> bucket.acquire(100), bucket.acquire(50)
        (0.0, 0.5)

        Raises:
            ConfigError: ``n`` or ``timeout`` is not valid.
            ThrottleTimeout: the units could not be had within ``timeout``.
        """
        if timeout is None:
            if self._unlimited:  # the copy loop's fast path
                try:
                    if 0 <= n <= _FLOAT_MAX and n is not True and n is not False:
                        return 0.0
                except TypeError:
                    pass
            else:  # the units are there: take them as try_acquire would, no queue place
                try:
                    with self._lock:
                        now = self._now()
                        consumed = self._consumed
                        available = self._c0 + self._slope * (now - self._t0) - consumed
                        if available >= n >= 0 and n is not True and n is not False:
                            if available >= self._burst:
                                self._c0 = consumed + self._burst
                                self._t0 = now
                            self._consumed = consumed + n
                            return 0.0
                except TypeError:
                    pass
        n = _checks.units(n)
        _checks.timeout(timeout)
        if self._unlimited:
            return 0.0
        with self._cond:
            flow = self._serve(n, timeout)
            try:
                wait = next(flow)
                while True:
                    try:
                        clock_wait(self._clock, self._cond, None if wait == _INF else wait)
                    except BaseException:
                        flow.close()  # nothing consumed: the place is given back
                        raise
                    wait = flow.send(None)
            except StopIteration as done:
                return float(done.value)

    async def acquire_async(self, n: float = 1, *, timeout: float | None = None) -> float:
        """The asyncio form of :meth:`acquire`: waits without blocking the loop.

        Cancelling the awaiting task gives the reserved units back. Threads and tasks
        (on any event loop) may share one bucket; :meth:`set_rate` wakes them all.

        >>> import asyncio
        >>> from wedguard.testing import FakeClock
        >>> bucket = TokenBucketThrottler(100, burst=100, clock=FakeClock())
        >>> async def copy():
        ...     return [await bucket.acquire_async(n) for n in (100, 50)]
        >>> asyncio.run(copy())
        [0.0, 0.5]

        Raises:
            ConfigError: ``n`` or ``timeout`` is not valid.
            ThrottleTimeout: the units could not be had within ``timeout``.
        """
        if self._unlimited and timeout is None:
            try:
                if 0 <= n <= _FLOAT_MAX and n is not True and n is not False:
                    return 0.0
            except TypeError:
                pass
        n = _checks.units(n)
        _checks.timeout(timeout)
        if self._unlimited:
            return 0.0
        loop = asyncio.get_running_loop()
        with self._lock:
            flow = self._serve(n, timeout)
            try:
                wait = next(flow)
            except StopIteration as done:
                return float(done.value)
            # Registered under the same lock that computed the wait: a set_rate()
            # between the two cannot be missed.
            entry = (loop, loop.create_future())
            self._async_waiters.add(entry)
        try:
            while True:
                # a set_rate() completes the future and wakes us, whatever the clock
                await clock_await(self._clock, entry[1], wait)
                with self._lock:
                    self._async_waiters.discard(entry)
                    wait = flow.send(None)
                    entry = (loop, loop.create_future())
                    self._async_waiters.add(entry)
        except StopIteration as done:
            return float(done.value)
        except BaseException:
            with self._lock:
                self._async_waiters.discard(entry)
                flow.close()  # nothing consumed: the place is given back
            raise

    # -- control -----------------------------------------------------------------------

    def set_rate(self, rate: float | str) -> None:
        """Change the rate live; waiters recompute at once.

        ``0`` pauses (waiters wait until the rate is raised); ``math.inf`` or ``"off"``
        lets everything through. Credit earned so far is kept, up to the new burst.

        >>> from wedguard.testing import FakeClock
        >>> bucket = TokenBucketThrottler(10, burst=10, clock=FakeClock())
        >>> bucket.set_rate(0)
        >>> bucket.reserve(10), bucket.reserve(5)   # the full bucket, then a wait
        (0.0, inf)
        >>> bucket.set_rate("20/s")
        >>> bucket.available
        -5.0

        Raises:
            ConfigError: ``rate`` is negative or not a rate.
        """
        value = parse_rate(rate, field="rate")
        with self._cond:
            now = self._now()
            if self._unlimited:
                self._burst = self._effective_burst(value)
                if not self._queue:  # nobody holds a place: restart the count
                    self._consumed = 0.0
                self._c0 = self._consumed + self._burst
            else:
                self._c0 = self._credit(now)
                self._burst = self._effective_burst(value)
                self._c0 = min(self._c0, self._consumed + self._burst)
            self._t0 = now
            self._rate = value
            self._unlimited = value == _INF
            self._slope = value
            if self._unlimited:
                self._slope = 0.0
                self._c0 = _FLOAT_MAX
            self._cond.notify_all()
            waiters = list(self._async_waiters)
        _wake_all(waiters)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(rate={self._rate:g}, burst={self._burst:g}, "
            f"available={self.available:g})"
        )


def _wake_all(waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]) -> None:
    for loop, fut in waiters:
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(_wake, fut)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
