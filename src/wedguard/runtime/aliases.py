"""The names by which sessions and file wrappers reached into a guard, kept working.

Sessions talk to their guard through :class:`~wedguard.interfaces.SessionHost`
(``guard.host``). Until every caller does, :class:`GuardAliases` keeps the guard's
former private attributes (``guard._go``, ``guard._enter``, ...) working: those that
never change are plain attributes bound once by :func:`bind` (the hot path reads
them at the cost of an attribute), those that change with every decision read
through to the host. Nothing new should use them.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio
    import threading

    from wedguard.clock import Clock
    from wedguard.decision import Decision
    from wedguard.interfaces import Analyzer, Breaker, Event, Sink, Source
    from wedguard.policy.bucket import TokenBucketThrottler
    from wedguard.runtime.core import GuardCore
    from wedguard.runtime.session import Session

__all__ = ["GuardAliases", "bind"]


class GuardAliases:
    """A guard's former private attributes, read from its :class:`GuardCore`."""

    _host: GuardCore
    # bound once by bind(): they never change
    _cond: threading.Condition
    _now: Callable[[], float]
    _max_hold: float
    _slot_timeout: float | None
    _bytes: TokenBucketThrottler
    _ops: TokenBucketThrottler | None
    _nice: int
    _ionice: bool
    _async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]
    _fleet: Any
    _fleet_bytes: Any
    _fleet_ops: Any
    _fleet_leases: tuple[Any, ...]
    _clock: Clock
    _breaker: Breaker | None
    _sources: tuple[Source, ...]
    _analyzer: Analyzer | None
    _sinks: tuple[Sink, ...]
    _emit: Callable[[Event], None]
    _sessions: Callable[[], list[Session]]
    _enter: Any
    _aenter: Any
    _exit: Any
    _release: Any
    _wait: Callable[[float], None]
    _await: Any
    _refresh_locked: Any
    _pause_cause: Callable[[], str]
    _window_deadline: Any
    _blackout_end: Any
    _fleet_due: Callable[..., bool]
    _fleet_refresh: Callable[..., None]

    # read through: they change with every decision
    @property
    def _decision(self) -> Decision:
        return self._host.decision

    @property
    def _go(self) -> bool:
        return self._host.go

    @property
    def _free(self) -> bool:
        return self._host.free

    @property
    def _expires(self) -> float:
        return self._host.expires

    @property
    def _stopped(self) -> bool:
        return self._host.stopped

    @property
    def _held_since(self) -> float | None:
        return self._host.held_since

    @property
    def _fleet_slots(self) -> Any:
        link = self._host.fleet_link
        return None if link is None else link.slots

    @property
    def _events(self) -> collections.deque[Event]:
        return self._host.events.events

    @_events.setter
    def _events(self, queue: collections.deque[Event]) -> None:
        self._host.events.events = queue


#: former name -> where on the host it lives now (attributes that never change)
_BOUND: dict[str, str] = {
    "_cond": "lock",
    "_now": "now",
    "_max_hold": "max_hold",
    "_slot_timeout": "settings.slot_timeout",
    "_bytes": "bytes",
    "_ops": "ops",
    "_nice": "nice",
    "_ionice": "ionice",
    "_async_waiters": "async_waiters",
    "_fleet": "fleet",
    "_fleet_bytes": "fleet_bytes",
    "_fleet_ops": "fleet_ops",
    "_fleet_leases": "fleet_leases",
    "_clock": "clock",
    "_breaker": "breaker",
    "_sources": "settings.sources",
    "_analyzer": "settings.analyzer",
    "_sinks": "events.sinks",
    "_emit": "events.emit",
    "_sessions": "slots.sessions",
    "_enter": "enter",
    "_aenter": "enter_async",
    "_exit": "exit",
    "_release": "release",
    "_wait": "wait",
    "_await": "wait_async",
    "_refresh_locked": "refresh",
    "_pause_cause": "pause_cause",
    "_window_deadline": "window_deadline",
    "_blackout_end": "blackout_end",
    "_fleet_due": "fleet_due",
    "_fleet_refresh": "fleet_refresh",
}


def bind(guard: GuardAliases, host: GuardCore) -> None:
    """Give ``guard`` the former names of ``host``'s attributes that never change."""
    for old, path in _BOUND.items():
        value: Any = host
        for part in path.split("."):
            value = getattr(value, part)
        setattr(guard, old, value)
