"""The guard's one event queue: decisions, session reports, breaker transitions and
alerts reach the sinks through it.

:class:`EventQueue` hands events to the sinks synchronously (inline mode, on a fake
clock) or through a bounded queue and one delivery thread (background mode): an emit
is a queue put, a slow sink costs old events, never the backup's time.
:class:`AlertBook` remembers which of the guard's own alerts are firing, so each is
fired once and resolved once, through the same queue.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime

from wedguard.interfaces import Event, Sink
from wedguard.policy.alerting import Alert, Severity

__all__ = ["AlertBook", "EventQueue"]

log = logging.getLogger("wedguard.guard")

#: events held for slow sinks before the oldest is dropped
QUEUE_SIZE = 10_000


class EventQueue:
    """Delivers events to ``sinks``: inline, or from one thread when ``background``.

    Example::

        >>> seen = []
        >>> class Sink:
        ...     def emit(self, event): seen.append(event.kind)
        >>> from wedguard.decision import Decision
        >>> q = EventQueue([Sink()], background=False)
        >>> q.emit(Decision(level=0, rate=1.0, verdict=0))
        >>> seen
        ['decision']
    """

    def __init__(self, sinks: Sequence[Sink], *, background: bool) -> None:
        self.sinks: tuple[Sink, ...] = tuple(sinks)
        self.background = background
        self.events: collections.deque[Event] = collections.deque(maxlen=QUEUE_SIZE)
        self._cond = threading.Condition()
        self._deliverer: threading.Thread | None = None
        self._delivering = False
        self.dropped = 0

    def emit(self, event: Event) -> None:
        """Hand an event to the sinks: synchronously inline, else through the queue."""
        if not self.sinks:
            return
        if not self.background:
            self.deliver(event)
            return
        with self._cond:
            if len(self.events) == self.events.maxlen:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning(
                        "sinks fall behind: %d events dropped (the oldest first)", self.dropped
                    )
            self.events.append(event)
            if self._deliverer is None:
                self._start()
            self._cond.notify_all()

    def _start(self) -> None:
        deliverer = threading.Thread(target=self._loop, name="wedguard-events", daemon=True)
        try:
            deliverer.start()
        except RuntimeError:  # the interpreter is shutting down: flush() delivers
            return
        self._deliverer = deliverer

    def deliver(self, event: Event) -> None:
        """Hand ``event`` to every sink now; a sink that fails is logged and skipped."""
        for sink in self.sinks:
            try:
                sink.emit(event)
            except Exception:
                log.exception("sink %r failed on a %s event", sink, event.kind)

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self.events:
                    self._cond.wait(2.0)
                if not self.events:
                    self._deliverer = None
                    self._cond.notify_all()
                    return
                event = self.events.popleft()
                self._delivering = True
            try:
                self.deliver(event)
            finally:
                with self._cond:
                    self._delivering = False
                    self._cond.notify_all()

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Wait (real time) until every queued event reached the sinks; False on timeout.

        Events left with no delivery thread to take them (one could not be started as
        the interpreter shuts down) are delivered by the caller.
        """
        with self._cond:
            alive = self._deliverer is not None and self._deliverer.is_alive()
            if alive or self._delivering:
                return self._cond.wait_for(
                    lambda: not self.events and not self._delivering, timeout
                )
            pending = list(self.events)
            self.events.clear()
        for event in pending:
            self.deliver(event)
        return True

    def flush_all(self, timeout: float | None) -> bool:
        """:meth:`flush`, then each sink's own ``flush``, within ``timeout`` in all."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        done = self.flush(left())
        for sink in self.sinks:
            flush = getattr(sink, "flush", None)
            if not callable(flush):
                continue
            try:
                if flush(timeout=left()) is False:
                    done = False
            except TypeError:  # a flush() without a timeout
                flush()
            except Exception:
                log.exception("sink %r failed to flush", sink)
                done = False
        if not done:
            log.warning("events were still undelivered when the guard closed")
        return done


class AlertBook:
    """The guard's own alerts currently firing, by key (``wedguard/<key>``).

    Not locked: the guard calls it with its lock held.
    """

    def __init__(self, queue: EventQueue) -> None:
        self.queue = queue
        self.firing: dict[str, Alert] = {}

    def __contains__(self, key: str) -> bool:
        return key in self.firing

    def fire(
        self,
        key: str,
        severity: Severity,
        summary: str,
        at: datetime | None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """Fire ``wedguard/<key>`` (again: a firing alert is sent once more)."""
        alert = Alert(
            f"wedguard/{key}",
            severity,
            summary,
            labels={"component": "guard", **(labels or {})},
            started_at=at,
        )
        self.firing[key] = alert
        self.queue.emit(alert)

    def resolve(self, key: str, at: datetime) -> None:
        """Resolve ``wedguard/<key>`` if it is firing."""
        alert = self.firing.pop(key, None)
        if alert is not None:
            self.queue.emit(alert.resolved(at))
