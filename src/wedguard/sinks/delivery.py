"""Delivery off the caller's thread: a bounded queue, one worker, retries with backoff.

:class:`AsyncDelivery` is what keeps a slow or failing sink from ever holding a backup:
``put()`` is a non-blocking append to a bounded queue; a daemon thread calls the send
function in order, retrying a failed item (exponential backoff with jitter, or the
``Retry-After`` a server gave) before it moves on, so items are delivered in the order
they were put. When the queue is full, the item with the lowest priority is dropped
first (the newest among equals is kept out) and counted.

It is shared by the network sinks (their ``emit``) and by the alert dispatcher (one
lane per sink).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from wedguard import _checks
from wedguard.clock import Clock, check_clock, clock_wait
from wedguard.errors import ConfigError, WedguardError
from wedguard.redact import redact_text

__all__ = ["AsyncDelivery", "DeliveryError", "backoff_delay", "redact"]

T = TypeVar("T")

log = logging.getLogger("wedguard.delivery")


class DeliveryError(WedguardError):
    """A sink could not deliver an event.

    Attributes:
        retry_after: seconds the receiver asked us to wait (HTTP 429/503
            ``Retry-After``), if it said.
        permanent: True when retrying cannot help (e.g. HTTP 400/401/404); the
            item is given up at once.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, permanent: bool = False
    ) -> None:
        self.retry_after = retry_after
        self.permanent = permanent
        super().__init__(message)


def backoff_delay(
    attempt: int, *, base: float, cap: float, rng: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, 3, ...).

    Exponential with "equal jitter": half of ``min(cap, base * 2**(attempt-1))`` plus a
    random share of the other half, so retries of many senders spread out.

    >>> backoff_delay(1, base=1.0, cap=60.0, rng=lambda: 0.0)
    0.5
    >>> backoff_delay(10, base=1.0, cap=60.0, rng=lambda: 1.0)
    60.0
    """
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 62))
    return ceiling / 2.0 + ceiling / 2.0 * rng()


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every non-empty secret replaced by ``***``.

    The same as :func:`wedguard.redact.redact_text`: each secret is hidden in every
    form it may take in a message (percent-encoded, escaped, the parts of a URL), and
    recognisable secrets (URL passwords, ``password=...``) are hidden too.

    >>> redact("POST /hooks/T0KEN failed", ["https://example.org/hooks/T0KEN"])
    'POST *** failed'
    """
    return redact_text(text, secrets)


class _Entry(Generic[T]):
    __slots__ = ("attempts", "item", "priority")

    def __init__(self, item: T, priority: int) -> None:
        self.item = item
        self.priority = priority
        self.attempts = 0


class AsyncDelivery(Generic[T]):
    """A bounded queue drained by one daemon thread that calls ``send(item)``.

    Args:
        send: delivers one item; raises on failure (a :class:`DeliveryError` may carry
            ``retry_after`` and ``permanent``).
        name: used in the thread name and in log messages (never a secret).
        queue_size: how many items may wait; beyond that the lowest priority goes.
        priority: ranks items for dropping (higher is kept longer).
        max_attempts: give an item up after this many failed sends (None: never).
        backoff: first retry delay in seconds; doubles per attempt, with jitter.
        backoff_max: the longest retry delay.
        on_done: called as ``on_done(item, delivered)`` after an item is delivered
            (True) or given up (False); not for dropped items.
        on_drop: called with an item dropped because the queue was full.
        clock: waits between retries go through it.
        secrets: strings removed from every log message.

    The thread starts at the first ``put``. ``put`` never blocks beyond a short lock.
    """

    def __init__(
        self,
        send: Callable[[T], None],
        *,
        name: str,
        queue_size: int = 1000,
        priority: Callable[[T], int] = lambda _item: 0,
        max_attempts: int | None = None,
        backoff: float = 0.5,
        backoff_max: float = 60.0,
        on_done: Callable[[T, bool], None] | None = None,
        on_drop: Callable[[T], None] | None = None,
        clock: Clock | None = None,
        secrets: Callable[[], Iterable[str]] = tuple,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not isinstance(queue_size, int) or isinstance(queue_size, bool) or queue_size < 1:
            raise ConfigError("queue_size", queue_size, "an integer >= 1")
        if max_attempts is not None and (
            not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1
        ):
            raise ConfigError("max_attempts", max_attempts, "an integer >= 1 or None")
        top = _checks.MAX_TIMEOUT
        if not (isinstance(backoff, (int, float)) and 0 <= backoff <= top):
            raise ConfigError("backoff", backoff, f"a number of seconds from 0 to {top:g}")
        if not (isinstance(backoff_max, (int, float)) and backoff <= backoff_max <= top):
            raise ConfigError(
                "backoff_max", backoff_max, f"a number of seconds from {backoff} to {top:g}"
            )
        self._send = send
        self.name = name
        self._size = queue_size
        self._priority = priority
        self._max_attempts = max_attempts
        self._backoff = float(backoff)
        self._backoff_max = float(backoff_max)
        self._on_done = on_done
        self._on_drop = on_drop
        self._clock = check_clock(clock)
        self._secrets = secrets
        self._rng = rng
        self._queue: deque[_Entry[T]] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self.retries = 0
        self._drop_logged = -float("inf")

    # -- producer side ---------------------------------------------------------

    def put(self, item: T) -> bool:
        """Queue ``item``; False if it was dropped (queue full of higher priorities, or closed)."""
        entry = _Entry(item, self._priority(item))
        dropped: _Entry[T] | None = None
        with self._cond:
            if self._closed:
                dropped = entry
            else:
                if len(self._queue) >= self._size:
                    dropped = self._evict_for(entry)
                if dropped is not entry:
                    self._queue.append(entry)
                    if self._thread is None:
                        self._start()
                    self._cond.notify_all()
            if dropped is not None:
                self.dropped += 1
        if dropped is not None:
            now = time.monotonic()
            if now - self._drop_logged >= 10.0:
                self._drop_logged = now
                log.warning(
                    "%s: queue full (%d); %d item(s) dropped so far, lowest priority first",
                    self.name,
                    self._size,
                    self.dropped,
                )
            if self._on_drop is not None:
                self._on_drop(dropped.item)
            return dropped is not entry
        return True

    def _evict_for(self, entry: _Entry[T]) -> _Entry[T]:
        # the head may be in flight: never evict it
        start = 1 if self._busy else 0
        victim_index = -1
        victim_priority = entry.priority
        for i in range(start, len(self._queue)):
            p = self._queue[i].priority
            if p < victim_priority:
                victim_index, victim_priority = i, p
        if victim_index < 0:
            return entry
        victim = self._queue[victim_index]
        del self._queue[victim_index]
        return victim

    def _start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"wedguard-delivery-{self.name}", daemon=True
        )
        self._thread.start()

    @property
    def pending(self) -> int:
        """Items queued or in flight."""
        with self._cond:
            return len(self._queue)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait (real time) until every queued item was delivered or given up."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._queue:
                if deadline is None:
                    self._cond.wait(1.0)
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(min(remaining, 1.0))
            return True

    def close(self, timeout: float | None = 5.0) -> bool:
        """Deliver what is queued (waiting at most ``timeout``), then stop the thread.

        Returns False when items were left undelivered.
        """
        done = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)
        return done

    # -- worker side -------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                entry = self._queue[0]
                self._busy = True
            ok, delay, give_up = self._attempt(entry)
            with self._cond:
                self._busy = False
                if ok or give_up:
                    if self._queue and self._queue[0] is entry:
                        self._queue.popleft()
                    if ok:
                        self.delivered += 1
                    else:
                        self.failed += 1
                    self._cond.notify_all()
                else:
                    self.retries += 1
                    # new items notify the condition: keep waiting until the backoff
                    # is over, so a flood of puts never hammers a failing receiver
                    deadline = self._clock.monotonic() + delay
                    while not self._closed:
                        remaining = deadline - self._clock.monotonic()
                        if remaining <= 0:
                            break
                        clock_wait(self._clock, self._cond, remaining)
            if (ok or give_up) and self._on_done is not None:
                try:
                    self._on_done(entry.item, ok)
                except Exception:  # a callback must not kill the worker
                    log.exception("%s: completion callback failed", self.name)

    def _attempt(self, entry: _Entry[T]) -> tuple[bool, float, bool]:
        """Send once: (delivered, delay before the next try, give up)."""
        try:
            self._send(entry.item)
        except Exception as exc:
            entry.attempts += 1
            retry_after = getattr(exc, "retry_after", None)
            permanent = bool(getattr(exc, "permanent", False))
            give_up = permanent or (
                self._max_attempts is not None and entry.attempts >= self._max_attempts
            )
            delay = backoff_delay(
                entry.attempts, base=self._backoff, cap=self._backoff_max, rng=self._rng
            )
            if isinstance(retry_after, (int, float)) and retry_after > delay:
                delay = float(retry_after)
            message = redact(f"{type(exc).__name__}: {exc}", self._secrets())
            if give_up:
                log.error(
                    "%s: giving up after %d attempt(s): %s", self.name, entry.attempts, message
                )
            else:
                log.warning(
                    "%s: attempt %d failed (%s); retrying in %.3g s",
                    self.name,
                    entry.attempts,
                    message,
                    delay,
                )
            return False, delay, give_up
        return True, 0.0, False

    def __repr__(self) -> str:
        return (
            f"AsyncDelivery(name={self.name!r}, pending={len(self._queue)}, "
            f"delivered={self.delivered}, failed={self.failed}, dropped={self.dropped})"
        )
