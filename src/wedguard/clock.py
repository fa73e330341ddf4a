"""Time, as the policy objects see it.

wedguard's policy objects never read the system clock themselves: they are handed a
:class:`Clock`. ``monotonic()`` measures rates and timeouts, ``now()`` places an
instant in the calendar, ``sleep()`` waits. In production that is :class:`SystemClock`;
in tests it is :class:`wedguard.testing.FakeClock`, on which an hour passes in a
microsecond.

A clock may also offer ``wait(cond, timeout)`` (wait on a held
:class:`threading.Condition` until notified or until ``timeout`` seconds of *its* time
have passed) and ``async sleep_async(seconds)`` (``asleep``, its old name, still works). The helpers :func:`clock_wait` and
:func:`clock_asleep` use them when present and fall back to ``sleep`` and
:func:`asyncio.sleep` otherwise, so a host's own clock needs only the three
protocol methods.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import warnings
from datetime import datetime, timezone
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "check_clock", "clock_asleep", "clock_await", "clock_wait"]


@runtime_checkable
class Clock(Protocol):
    """Where time comes from.

    Example::

        >>> clock = SystemClock()
        >>> t0 = clock.monotonic()
        >>> clock.now().tzinfo is not None
        True
    """

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (rates, timeouts)."""
        ...

    def now(self) -> datetime:
        """The current instant as an aware datetime (calendars)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic`, UTC ``now()``, :func:`time.sleep`.

    ``monotonic`` is the C function itself, so reading it on the hot path costs no
    extra Python call.
    """

    __slots__ = ()

    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def wait(self, cond: threading.Condition, timeout: float | None) -> bool:
        """Wait on ``cond`` (held by the caller) until notified or ``timeout`` passes.

        A timeout beyond what the platform can wait (a window that ends in year 9999)
        waits as long as it can instead of raising ``OverflowError``.
        """
        if timeout is not None and timeout > threading.TIMEOUT_MAX:
            timeout = threading.TIMEOUT_MAX
        return cond.wait(timeout)

    async def sleep_async(self, seconds: float) -> None:
        """The asyncio form of :meth:`sleep`."""
        await asyncio.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        """Deprecated: use :meth:`sleep_async` (the same)."""
        deprecated_alias("SystemClock.asleep", "SystemClock.sleep_async")
        await self.sleep_async(seconds)

    asleep.deprecated_alias = True  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()


def check_clock(clock: object, field: str = "clock") -> Clock:
    """``clock`` as a :class:`Clock` (``None``: the system clock); else a ConfigError.

    >>> check_clock(None)
    SystemClock()
    >>> check_clock(42)
    Traceback (most recent call last):
    ...
    wedguard.errors.ConfigError: clock: 42 is not valid; expected a Clock (monotonic(), now(), sleep())
    """
    if clock is None:
        return SYSTEM_CLOCK
    if not isinstance(clock, Clock):
        from wedguard.errors import ConfigError

        raise ConfigError(field, clock, "a Clock (monotonic(), now(), sleep())")
    return clock


def clock_wait(clock: Clock, cond: threading.Condition, timeout: float | None) -> bool:
    """Wait on ``cond`` (which the caller holds) through ``clock``.

    Returns what :meth:`threading.Condition.wait` returns: False when the timeout
    passed without a notification. A clock without ``wait`` sleeps with the lock
    released, which is correct but cannot be woken early.
    """
    wait = getattr(clock, "wait", None)
    if wait is not None:
        return bool(wait(cond, timeout))
    if timeout is None:
        return cond.wait()
    cond.release()
    try:
        clock.sleep(timeout)
    finally:
        cond.acquire()
    return False


async def clock_await(clock: Clock, fut: asyncio.Future[None], timeout: float) -> None:
    """Wait until ``fut`` is done or ``timeout`` seconds of ``clock``'s time pass.

    ``math.inf`` waits for ``fut`` alone. On the system clock this is
    :func:`asyncio.wait`; another clock sleeps its own way (:func:`clock_asleep`) while
    ``fut`` can still end the wait early. ``fut`` is never cancelled.
    """
    if timeout == math.inf:
        await fut
    elif isinstance(clock, SystemClock):
        await asyncio.wait((fut,), timeout=timeout)
    else:
        nap = asyncio.ensure_future(clock_asleep(clock, timeout))
        try:
            await asyncio.wait((fut, nap), return_when=asyncio.FIRST_COMPLETED)
        finally:
            nap.cancel()


async def clock_asleep(clock: Clock, seconds: float) -> None:
    """Sleep ``seconds`` of ``clock``'s time without blocking the event loop: through the
    clock's own ``sleep_async`` (or the older name ``asleep``), else :func:`asyncio.sleep`."""
    sleep_async = getattr(clock, "asleep", None)  # a clock written for the older name
    if sleep_async is None or getattr(sleep_async, "deprecated_alias", False):
        sleep_async = getattr(clock, "sleep_async", None)
    if sleep_async is not None:
        await sleep_async(seconds)
    else:
        await asyncio.sleep(seconds)


def deprecated_alias(old: str, new: str) -> None:
    """Warn that ``old`` (a name kept for one release) is deprecated in favour of ``new``."""
    warnings.warn(f"{old} is deprecated: use {new}", DeprecationWarning, stacklevel=3)
