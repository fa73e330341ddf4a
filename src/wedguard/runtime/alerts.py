"""Delivering alerts: the dispatcher that runs :class:`~wedguard.policy.alerting.AlertPolicy`.

:class:`AlertDispatcher` delivers alerts with Prometheus Alertmanager's manners. Its
decisions come from :class:`~wedguard.policy.alerting.AlertPolicy`, a pure core that runs
on a clock and does no I/O; the dispatcher adds a bounded queue, a worker thread, one
retrying delivery lane per sink and a disk spool.

>>> from wedguard.policy.alerting import Alert, Severity
>>> from wedguard.testing import FakeClock
>>> from wedguard.testing import RecordingSink
>>> sink = RecordingSink()
>>> d = AlertDispatcher({Severity.CRITICAL: [sink]}, group_wait=0)
>>> d.fire(Alert("photos/halt", Severity.CRITICAL, "backup halted"))
True
>>> d.flush(timeout=5)
True
>>> sink.events[0].alerts[0].key
'photos/halt'
>>> d.close()
True
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from wedguard import _checks
from wedguard.clock import SYSTEM_CLOCK, Clock, SystemClock, check_clock
from wedguard.errors import ConfigError
from wedguard.interfaces import Event, Sink
from wedguard.policy.alerting import (
    DEFAULT_INHIBIT_RULES,
    Alert,
    AlertPolicy,
    InhibitRule,
    Matcher,
    Notification,
    Route,
    Severity,
    Silence,
    check_sinks,
    parse_severity,
)
from wedguard.runtime.alert_spool import (
    DURABLE_PREFIX,
    SPOOL_ALERT_KEY,
    UNSENT,
    SpoolKeeper,
    check_retry,
)
from wedguard.sinks.delivery import AsyncDelivery, DeliveryError
from wedguard.sinks.spool import Spool

__all__ = [
    "DEFAULT_INHIBIT_RULES",
    "SPOOL_ALERT_KEY",
    "Alert",
    "AlertDispatcher",
    "AlertPolicy",
    "DeliveryError",
    "InhibitRule",
    "Matcher",
    "Notification",
    "Route",
    "Severity",
    "Silence",
]

log = logging.getLogger("wedguard.alerts")


"""The key of the dispatcher's own alert: its spool cannot be written."""

_FIRE, _RESOLVE, _ACK, _FLUSH = 0, 1, 2, 3
_COMMAND_PRIORITY = int(Severity.CRITICAL) + 1  # resolve/ack outrank every alert


def _first(item: tuple[int, int, Any]) -> int:
    return item[0]


def _note_priority(note: Notification) -> int:
    return int(note.severity)


def _sink_name(sink: object) -> str:
    name = getattr(sink, "name", None)
    return name if isinstance(name, str) and name else type(sink).__name__


class AlertDispatcher:
    """Routes, groups and delivers alerts, with Alertmanager's manners.

    Args:
        routes: severity -> sinks, e.g. ``{Severity.HIGH: [slack], Severity.LOW: [log]}``.
            See :class:`AlertPolicy` for how severities fall through.
        label_routes: :class:`Route` objects tried before the severity routes.
        group_by: the labels whose values make a group (default ``("session",)``).
        group_wait: seconds a new group waits to gather a burst (default 30).
        group_interval: seconds between notifications of a changed group (default 300).
        repeat_interval: seconds between repeats of an unchanged firing group (4 h).
        escalate_after: seconds after which an unacknowledged HIGH alert also goes to
            the CRITICAL route (default: never).
        inhibit_rules: see :class:`InhibitRule` (default :data:`DEFAULT_INHIBIT_RULES`).
        spool: a file path: notifications not yet delivered, and alerts still waiting
            for their group's first notification, are kept there (JSON Lines, fsync'ed,
            mode 0600); the next dispatcher opened on it delivers the notifications and
            fires the alerts again (they wait ``group_wait`` anew; at least once: a
            crash between the two writes can tell an alert twice). A spool that
            cannot be written (a full disk, a read-only file system, an I/O error, a
            permission) never stops delivery: the dispatcher logs an ERROR, goes on
            from memory, fires its own HIGH alert :data:`SPOOL_ALERT_KEY` ("alert
            spool unavailable") and resolves it once the spool takes records again.
        queue_size: the bound of the input queue and of each sink's delivery queue.
        max_attempts: give a notification up after this many failed sends to one sink
            (default None: keep retrying; the spool keeps it meanwhile).
        backoff: the first retry delay in seconds (exponential, jittered; a
            ``Retry-After`` from the receiver is honoured when longer).
        backoff_max: the longest retry delay.
        forward: sinks that receive, unchanged, the non-alert events given to
            :meth:`emit` (default: such events are ignored).
        clock: where time comes from (default :class:`~wedguard.SystemClock`).
        spool_retry: seconds (real time) between attempts to write to a failed spool
            again (default 5; every new record and every :meth:`flush` also tries).

    ``fire``, ``resolve`` and ``acknowledge`` only append to a bounded queue (about a
    microsecond; they never wait for the network). A worker thread feeds the
    :class:`AlertPolicy` core and hands due :class:`Notification` objects to one
    delivery lane per sink. A sink with a ``send(event)`` method (the network sinks)
    is called through it, so failures raise and are retried; other sinks get
    ``emit(event)`` (an exception there is retried too). Each lane delivers in order
    (so the notifications of one key keep their order) and has its own retries, so
    a hanging sink delays only itself; the network sinks' own ``timeout`` bounds
    each attempt.

    When the input queue is full, the lowest-severity alert goes first (resolve and
    acknowledge outrank alerts); each drop is counted in :attr:`dropped` and logged.

    The dispatcher is itself a sink: :meth:`emit` fires an :class:`Alert` (or resolves
    it, when the alert is resolved), and passes any other event to ``forward``.

    Example::

        >>> from wedguard.testing import RecordingSink
        >>> pager = RecordingSink()
        >>> with AlertDispatcher(routes={Severity.HIGH: [pager]}, group_wait=30) as d:
        ...     for i in range(50):
        ...         _ = d.fire(Alert(f"photos/{i}", Severity.HIGH, "API +12 %"))
        ...     d.flush(timeout=5)
        True
        >>> [len(n.alerts) for n in pager.events]
        [50]

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        routes: Mapping[Any, object] | None = None,
        *,
        label_routes: Sequence[Route] = (),
        group_by: Sequence[str] = ("session",),
        group_wait: float | str = 30.0,
        group_interval: float | str = 300.0,
        repeat_interval: float | str = 4 * 3600.0,
        escalate_after: float | str | None = None,
        inhibit_rules: Sequence[InhibitRule] = DEFAULT_INHIBIT_RULES,
        spool: str | Any | None = None,
        queue_size: int = 10_000,
        max_attempts: int | None = None,
        backoff: float = 1.0,
        backoff_max: float = 300.0,
        forward: Sequence[Sink] = (),
        clock: Clock | None = None,
        spool_retry: float = 5.0,
    ) -> None:
        routes = {} if routes is None else routes
        if not isinstance(routes, Mapping):
            raise ConfigError("routes", routes, "a mapping of Severity to a list of sinks")
        self._clock = check_clock(clock)
        # a clock other than the system's (a fake one in tests) may jump: look often
        self._tick = 1.0 if isinstance(self._clock, SystemClock) else 0.02
        self._core = AlertPolicy(
            routes,
            label_routes=label_routes,
            group_by=group_by,
            group_wait=group_wait,
            group_interval=group_interval,
            repeat_interval=repeat_interval,
            escalate_after=escalate_after,
            inhibit_rules=inhibit_rules,
            clock=self._clock,
        )
        if not isinstance(queue_size, int) or isinstance(queue_size, bool) or queue_size < 1:
            raise ConfigError("queue_size", queue_size, "an integer >= 1")
        self._queue_size = queue_size
        items = list(_checks.items(forward, "forward", "a list of sinks")) if forward else []
        self._forward = check_sinks(items, "forward") if items else ()
        self._routes = _route_table(self._core, routes, label_routes)
        retry = check_retry(spool_retry)
        self._inbox: list[deque[tuple[int, int, Any]]] = [
            deque() for _ in range(_COMMAND_PRIORITY + 1)
        ]
        self._inbox_len = 0
        self._seq = itertools.count()
        self._drop_logged = -math.inf
        self._cond = threading.Condition(threading.Lock())
        self._core_lock = threading.Lock()
        self._closing = self._closed = False
        self._next_wakeup: float | None = None
        self._input_dropped = 0
        self.notifications = 0
        self._spool: Spool | None = None
        self._keeper: SpoolKeeper | None = None
        if spool is not None:
            self._spool = (
                spool
                if isinstance(spool, Spool)
                else Spool(_checks.path(spool, "spool", "a spool file path"))
            )
            self._keeper = SpoolKeeper(self._spool, retry, self._wake)
        # one lane per distinct sink object
        self._lanes: dict[int, AsyncDelivery[Notification]] = {}
        self._lane_names: dict[str, AsyncDelivery[Notification]] = {}
        for sinks in self._routes.values():
            for s in sinks:
                if id(s) not in self._lanes:
                    self._add_lane(s, max_attempts, backoff, backoff_max)
        if self._keeper is not None and self._keeper.restore(self._core, self._lane_names):
            self._next_wakeup = self._core.next_wakeup()
        self._thread = threading.Thread(target=self._run, name="wedguard-alerts", daemon=True)
        self._thread.start()

    def _add_lane(
        self, sink: Sink, max_attempts: int | None, backoff: float, backoff_max: float
    ) -> None:
        base = _sink_name(sink)
        name, n = base, 1
        while name in self._lane_names:
            n += 1
            name = f"{base}#{n}"
        lane = _lane(sink, name, self._queue_size, self._spool, max_attempts, backoff, backoff_max)
        self._lanes[id(sink)] = lane
        self._lane_names[name] = lane

    # -- the quick, non-blocking entry points ----------------------------------------

    def _put(self, op: int, priority: int, payload: Any) -> bool:
        # one deque per priority: an overflow evicts the oldest item of the lowest
        # priority below the newcomer's in O(1); the worker restores arrival order
        with self._cond:
            if self._closed:
                return False
            if self._inbox_len >= self._queue_size and op != _FLUSH:
                self._input_dropped += 1
                for lower in self._inbox[:priority]:
                    if lower:
                        lower.popleft()
                        self._inbox_len -= 1
                        break
                else:
                    self._report_drop()
                    return False
                self._report_drop()
            self._inbox[priority].append((next(self._seq), op, payload))
            self._inbox_len += 1
            self._cond.notify()
        return True

    def _report_drop(self) -> None:
        now = time.monotonic()
        if now - self._drop_logged >= 10.0:
            self._drop_logged = now
            log.warning(
                "alerts: input queue full (%d); %d alert(s) dropped so far, lowest severity first",
                self._queue_size,
                self._input_dropped,
            )

    def fire(self, alert: Alert, *, durable: bool = False) -> bool:
        """Queue ``alert``; False if it was dropped on overflow.

        By default this never blocks (about a microsecond): the alert reaches the
        spool when the worker has seen it, a few milliseconds later, so a process
        killed in between loses it.

        With ``durable=True`` (a dispatcher with a ``spool`` only) the alert is in the
        spool, written and fsync'ed, when ``fire`` returns: a process killed at any
        point after that has it delivered by the next dispatcher opened on the same
        spool. That costs one fsync (see the reliability page for figures). The
        result is then False also when the spool could not be written (the alert
        still goes out from memory, and the spool's own alert says why).
        """
        if not isinstance(alert, Alert):
            raise ConfigError("alert", alert, "an Alert")
        if not durable:
            return self._put(_FIRE, int(alert.severity), (alert, None))
        if self._spool is None:
            raise ConfigError("durable", durable, "a dispatcher with a spool")
        record = f"{DURABLE_PREFIX}{uuid.uuid4().hex}"
        stored = self._spool.add(record, UNSENT, alert.to_dict())
        queued = self._put(_FIRE, int(alert.severity), (alert, record))
        return queued and stored

    def fire_durable(self, alert: Alert) -> bool:
        """``fire(alert, durable=True)``: the alert is in the spool when this returns."""
        return self.fire(alert, durable=True)

    def resolve(self, key: str) -> bool:
        """Queue the resolution of ``key`` (never blocks)."""
        return self._put(_RESOLVE, _COMMAND_PRIORITY, (key, self._clock.now()))

    def acknowledge(self, key: str) -> bool:
        """Queue an acknowledgement of ``key``: no more repeats or escalation."""
        return self._put(_ACK, _COMMAND_PRIORITY, key)

    def emit(self, event: Event) -> None:
        """Sink interface: an :class:`Alert` is fired (resolved if it is resolved);
        other events go to the ``forward`` sinks, or are ignored."""
        if isinstance(event, Alert):
            if event.firing:
                self.fire(event)
            else:
                self.resolve(event.key)
            return
        for sink in self._forward:
            try:
                sink.emit(event)
            except Exception:
                log.exception("alerts: forwarding a %r event failed", getattr(event, "kind", "?"))

    def silence(
        self,
        matcher: Matcher | Mapping[str, str],
        duration: float | str | None = None,
        *,
        until: datetime | None = None,
        comment: str = "",
    ) -> Silence:
        """Mute the alerts ``matcher`` selects for ``duration`` (seconds or ``"2h"``)
        or ``until`` an aware datetime. Returns the :class:`Silence` (its ``id``
        ends it early with :meth:`expire_silence`)."""
        with self._core_lock:
            s = self._core.silence(matcher, duration, until=until, comment=comment)
        self._wake()
        return s

    def expire_silence(self, silence_id: str) -> bool:
        """End a silence now."""
        with self._core_lock:
            ok = self._core.expire_silence(silence_id)
        self._wake()
        return ok

    @property
    def silences(self) -> list[Silence]:
        with self._core_lock:
            return self._core.silences

    @property
    def alerts(self) -> list[Alert]:
        """The alerts firing now (as far as the worker has seen)."""
        with self._core_lock:
            return self._core.alerts

    @property
    def dropped(self) -> int:
        """How many alerts or notifications were dropped because a queue was full."""
        return self._input_dropped + sum(lane.dropped for lane in self._lanes.values())

    @property
    def unrouted(self) -> int:
        """Alerts fired with no route to go to (below every severity route)."""
        with self._core_lock:
            return self._core.unrouted

    @property
    def failed(self) -> int:
        """Notifications given up (``max_attempts`` reached or a permanent error)."""
        return sum(lane.failed for lane in self._lanes.values())

    @property
    def pending(self) -> int:
        """Commands not yet seen by the worker plus notifications not yet delivered."""
        with self._cond:
            queued = self._inbox_len
        return queued + sum(lane.pending for lane in self._lanes.values())

    def stats(self) -> dict[str, Any]:
        """Counters, per sink and overall (safe to log: no secrets)."""
        return {
            "dropped": self.dropped,
            "failed": self.failed,
            "pending": self.pending,
            "notifications": self.notifications,
            "sinks": {
                name: {
                    "delivered": lane.delivered,
                    "failed": lane.failed,
                    "dropped": lane.dropped,
                    "retries": lane.retries,
                    "pending": lane.pending,
                }
                for name, lane in self._lane_names.items()
            },
        }

    # -- flush and close ---------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything pending, also what ``group_wait``/``group_interval`` still
        hold, and wait until the sinks have it (True) or ``timeout`` seconds of real
        time pass (False). Also False when a notification was given up meanwhile
        (``max_attempts`` reached, or a permanent error such as HTTP 404), and when
        the spool failed during the flush or still cannot be written (what the
        dispatcher holds would not survive a crash; it tries the spool again first)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        failed = self.failed
        spool = self._spool
        if spool is not None and not spool.durable:
            spool.recover()
        faults = 0 if spool is None else spool.faults
        marker = threading.Event()
        with self._cond:
            if self._closed:
                return self._lanes_flushed(deadline) and self.failed == failed
            self._inbox[_COMMAND_PRIORITY].append((next(self._seq), _FLUSH, marker))
            self._inbox_len += 1
            self._cond.notify()
        if not marker.wait(None if deadline is None else max(0.0, deadline - time.monotonic())):
            return False
        # False too when a notification was given up meanwhile: its sinks do not have it
        delivered = self._lanes_flushed(deadline) and self.failed == failed
        # and when the spool failed meanwhile: what it held was not safe from a crash
        return delivered and (spool is None or (spool.durable and spool.faults == faults))

    @property
    def spool_error(self) -> OSError | None:
        """Why the spool cannot be written now (None: it can, or there is none)."""
        return None if self._spool is None else self._spool.error

    def _lanes_flushed(self, deadline: float | None) -> bool:
        for lane in self._lanes.values():
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not lane.flush(remaining):
                return False
        return True

    def close(self, timeout: float | None = 5.0) -> bool:
        """Flush (waiting at most ``timeout``), then stop the worker and the lanes.

        Whatever could not be delivered stays in the spool for the next dispatcher.
        Returns the flush result.
        """
        if self._closed:
            return True
        ok = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._closed = True
            self._cond.notify_all()
        self._thread.join(2.0)
        for lane in self._lanes.values():
            lane.close(0)
        if self._spool is not None:
            self._spool.close()
        return ok

    def __enter__(self) -> AlertDispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the worker ----------------------------------------------------------------------

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def wake(self) -> None:
        """Make the worker look at its timers now (with a fake clock it also re-reads
        the clock every 20 ms while a timer is pending)."""
        self._wake()

    def _run(self) -> None:
        while True:
            keeper = self._keeper
            limit = math.inf if keeper is None else keeper.retry_limit()
            with self._cond:
                if not self._inbox_len and not self._closing and not self._has_news():
                    wake = self._next_wakeup
                    if wake is None:
                        self._cond.wait(None if math.isinf(limit) else limit)
                    else:
                        remaining = wake - self._clock.monotonic()
                        if remaining > 0:
                            self._cond.wait(min(remaining, self._tick, limit))
                batch = [item for q in self._inbox for item in q]
                for q in self._inbox:
                    q.clear()
                self._inbox_len = 0
                closing = self._closing
            batch.sort(key=_first)
            try:
                self._step(batch)
            except Exception:  # the worker must survive a bad sink or a bug
                log.exception("alerts: dispatcher step failed")
                for _seq, op, payload in batch:
                    if op == _FLUSH:
                        payload.set()
            if closing:
                return

    def _step(self, batch: list[tuple[int, int, Any]]) -> None:
        markers: list[threading.Event] = []
        durable: list[str] = []
        with self._core_lock:
            core = self._core
            for _seq, op, payload in batch:
                if op == _FIRE:
                    alert, record = payload
                    core.fire(alert)
                    if record is not None:
                        durable.append(record)
                elif op == _RESOLVE:
                    core.resolve(payload[0], at=payload[1])
                elif op == _ACK:
                    core.acknowledge(payload)
                else:
                    markers.append(payload)
            if self._keeper is not None:
                self._keeper.tell_health(core)
            notes = core.flush() if markers else core.poll()
            self._next_wakeup = core.next_wakeup()
        for note in notes:
            self._deliver(note)
        keeper = self._keeper
        if keeper is None:
            for marker in markers:
                marker.set()
            return
        if keeper.news:
            # the spool failed (or recovered) while these were delivered: its own
            # alert goes out in the same round, so a flush waits for it too
            with self._core_lock:
                keeper.tell_health(core)
                notes = core.flush() if markers else core.poll()
                self._next_wakeup = core.next_wakeup()
            for note in notes:
                self._deliver(note)
        with self._core_lock:
            unsent = core.unsent()
        keeper.keep_unsent(unsent)
        for record in durable:  # now held by a notification or the unsent record
            keeper.spool.done(record, UNSENT)
        for marker in markers:
            marker.set()

    def _has_news(self) -> bool:
        return self._keeper is not None and bool(self._keeper.news)

    def _deliver(self, note: Notification) -> None:
        self.notifications += 1
        for sink in self._routes.get(note.route, ()):
            lane = self._lanes[id(sink)]
            if self._spool is not None:
                self._spool.add(note.id, lane.name, note.to_dict())
            lane.put(note)

    def __repr__(self) -> str:
        return (
            f"AlertDispatcher(routes={sorted(self._routes)}, sinks={sorted(self._lane_names)}, "
            f"pending={self.pending}, dropped={self.dropped})"
        )


def _route_table(
    core: AlertPolicy, routes: Mapping[Any, object], label_routes: Sequence[Route]
) -> dict[str, tuple[Sink, ...]]:
    """Route name -> sinks: the severity routes, then the label routes by the names the
    policy gave them."""
    table: dict[str, tuple[Sink, ...]] = {}
    for key, sinks in routes.items():
        table[parse_severity(key, "routes").name] = check_sinks(sinks, f"routes[{key}]")
    for name, r in zip(core.label_route_names, label_routes, strict=True):
        table[name] = r.sinks
    return table


def _lane(
    sink: Sink,
    name: str,
    queue_size: int,
    spool: Spool | None,
    max_attempts: int | None,
    backoff: float,
    backoff_max: float,
) -> AsyncDelivery[Notification]:
    """One sink's delivery lane: in order, retried, its deliveries marked in the spool."""
    send = getattr(sink, "send", None)
    deliver = send if callable(send) else sink.emit

    def done(note: Notification, ok: bool) -> None:
        if spool is not None:
            spool.done(note.id, name)

    def dropped(note: Notification) -> None:
        done(note, False)

    return AsyncDelivery(
        deliver,
        name=name,
        queue_size=queue_size,
        priority=_note_priority,
        max_attempts=max_attempts,
        backoff=backoff,
        backoff_max=backoff_max,
        on_done=done,
        on_drop=dropped,
        # retries wait real time even when the policy runs on a fake clock
        clock=SYSTEM_CLOCK,
    )
