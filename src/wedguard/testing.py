"""Helpers for testing code that uses wedguard, shipped for users' own test suites.

* :class:`FakeClock`: time that moves only when told; ``sleep()`` returns at once
  having advanced the clock, from any thread and from asyncio.
* :class:`RecordingSink`: keeps every event it is given.
* :class:`ScriptedSource`: plays back a list of samples.

Example::

    >>> from wedguard import TokenBucketThrottler
    >>> clock = FakeClock()
    >>> bucket = TokenBucketThrottler(100, burst=100, clock=clock)
    >>> bucket.acquire(100)
    0.0
    >>> bucket.acquire(50)   # sleeps 0.5 s of fake time, instantly
    0.5
    >>> clock.monotonic()
    0.5
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone

from wedguard.clock import deprecated_alias
from wedguard.errors import ConfigError
from wedguard.interfaces import Event

__all__ = ["FakeClock", "RecordingSink", "ScriptedSource"]

_DEFAULT_START = datetime(2026, 1, 5, 0, 0, tzinfo=timezone.utc)  # a Monday


class FakeClock:
    """A clock for tests: time advances only through :meth:`advance` and sleeps.

    Args:
        start: the aware datetime that ``now()`` returns at first (default: Monday
            2026-01-05 00:00 UTC).
        monotonic: the first value of ``monotonic()`` (default 0.0).

    ``sleep(s)`` advances the clock to ``s`` seconds after the moment it was called
    (never backwards: several threads sleeping at once move time to the latest wake
    time). Every sleep is recorded in :attr:`sleeps`.
    """

    def __init__(self, start: datetime | None = None, *, monotonic: float = 0.0) -> None:
        if start is None:
            start = _DEFAULT_START
        elif start.tzinfo is None or start.utcoffset() is None:
            raise ConfigError("start", start, "an aware datetime (with tzinfo)")
        self._start = start
        self._mono0 = float(monotonic)
        self._elapsed = 0.0
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self._mono0 + self._elapsed

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (which must not be negative)."""
        if not seconds >= 0:
            raise ConfigError("seconds", seconds, "a duration >= 0")
        with self._lock:
            self._elapsed += seconds

    def set(self, when: datetime) -> None:
        """Move time forward to the aware instant ``when``."""
        if when.tzinfo is None or when.utcoffset() is None:
            raise ConfigError("when", when, "an aware datetime (with tzinfo)")
        delta = (when - self._start).total_seconds()
        with self._lock:
            if delta < self._elapsed:
                raise ConfigError("when", when, f"an instant not before {self.now().isoformat()}")
            self._elapsed = delta

    def sleep(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ConfigError("seconds", seconds, "a duration >= 0")
        with self._lock:
            self.sleeps.append(seconds)
            target = self._elapsed + seconds
            if target > self._elapsed:
                self._elapsed = target

    def wait(self, cond: threading.Condition, timeout: float | None) -> bool:
        """Condition wait: without a timeout it really waits for a notification;
        with one it advances the clock by ``timeout`` and reports a timeout."""
        if timeout is None:
            return cond.wait()
        self.sleep(timeout)
        return False

    async def sleep_async(self, seconds: float) -> None:
        """The asyncio form of :meth:`sleep`: advances time at once, then yields to
        the event loop."""
        self.sleep(seconds)
        await asyncio.sleep(0)

    async def asleep(self, seconds: float) -> None:
        """Deprecated: use :meth:`sleep_async` (the same)."""
        deprecated_alias("FakeClock.asleep", "FakeClock.sleep_async")
        await self.sleep_async(seconds)

    asleep.deprecated_alias = True  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now().isoformat()}, monotonic={self.monotonic():g})"


class RecordingSink:
    """A sink that keeps every event, for assertions in tests.

    >>> sink = RecordingSink()
    >>> sink.events
    []
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of_kind(self, kind: str) -> list[Event]:
        """The events whose ``kind`` is ``kind``, in the order they came."""
        with self._lock:
            return [e for e in self.events if e.kind == kind]

    def clear(self) -> None:
        with self._lock:
            self.events.clear()


class ScriptedSource:
    """A source that plays back samples: one per ``sample()`` call.

    After the script runs out the last sample repeats. A callable script is called
    with the sample number (0, 1, 2, ...) instead.

    >>> src = ScriptedSource([{"api.latency_s": 0.1}, {"api.latency_s": 0.2}])
    >>> src.sample(), src.sample(), src.sample()
    ({'api.latency_s': 0.1}, {'api.latency_s': 0.2}, {'api.latency_s': 0.2})
    """

    def __init__(
        self,
        script: Iterable[Mapping[str, float]] | Callable[[int], Mapping[str, float]],
    ) -> None:
        self._calls = 0
        self._lock = threading.Lock()
        if callable(script):
            self._fn: Callable[[int], Mapping[str, float]] | None = script
            self._items: list[Mapping[str, float]] = []
        else:
            self._fn = None
            self._items = list(script)
            if not self._items:
                raise ConfigError("script", self._items, "at least one sample")

    @property
    def calls(self) -> int:
        """How many samples were taken."""
        return self._calls

    def sample(self) -> Mapping[str, float]:
        with self._lock:
            i = self._calls
            self._calls += 1
        if self._fn is not None:
            return dict(self._fn(i))
        return dict(self._items[min(i, len(self._items) - 1)])
