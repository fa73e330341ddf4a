"""The names by which sessions and file wrappers reached into a guard, kept working.

Sessions talk to their guard through :class:`~wedguard.interfaces.SessionHost`
(``guard.host``). Until every caller does, :class:`GuardAliases` keeps the guard's
former private attributes (``guard._go``, ``guard._enter``, ...) as read-through
properties of that host, and of the guard's event queue and settings. Nothing new
should use them.
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

__all__ = ["GuardAliases"]


class GuardAliases:
    """A guard's former private attributes, read from its :class:`GuardCore`."""

    __slots__ = ()
    _host: GuardCore

    # the hot path's state
    @property
    def _cond(self) -> threading.Condition:
        return self._host.lock

    @property
    def _now(self) -> Callable[[], float]:
        return self._host.now

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
    def _max_hold(self) -> float:
        return self._host.max_hold

    @property
    def _bytes(self) -> TokenBucketThrottler:
        return self._host.bytes

    @property
    def _ops(self) -> TokenBucketThrottler | None:
        return self._host.ops

    @property
    def _nice(self) -> int:
        return self._host.nice

    @property
    def _ionice(self) -> bool:
        return self._host.ionice

    @property
    def _async_waiters(self) -> set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]:
        return self._host.async_waiters

    # the fleet
    @property
    def _fleet(self) -> Any:
        return self._host.fleet

    @property
    def _fleet_bytes(self) -> Any:
        return self._host.fleet_bytes

    @property
    def _fleet_ops(self) -> Any:
        return self._host.fleet_ops

    @property
    def _fleet_slots(self) -> Any:
        link = self._host.fleet_link
        return None if link is None else link.slots

    @property
    def _fleet_leases(self) -> tuple[Any, ...]:
        return self._host.fleet_leases

    # what the guard was given
    @property
    def _clock(self) -> Clock:
        return self._host.clock

    @property
    def _breaker(self) -> Breaker | None:
        return self._host.breaker

    @property
    def _sources(self) -> tuple[Source, ...]:
        return self._host.settings.sources

    @property
    def _analyzer(self) -> Analyzer | None:
        return self._host.settings.analyzer

    @property
    def _sinks(self) -> tuple[Sink, ...]:
        return self._host.events.sinks

    @property
    def _events(self) -> collections.deque[Event]:
        return self._host.events.events

    @_events.setter
    def _events(self, queue: collections.deque[Event]) -> None:
        self._host.events.events = queue

    # the host's methods under their former names
    @property
    def _emit(self) -> Callable[[Event], None]:
        return self._host.events.emit

    @property
    def _sessions(self) -> Callable[[], list[Session]]:
        return self._host.slots.sessions

    @property
    def _enter(self) -> Any:
        return self._host.enter

    @property
    def _aenter(self) -> Any:
        return self._host.enter_async

    @property
    def _exit(self) -> Any:
        return self._host.exit

    @property
    def _release(self) -> Any:
        return self._host.release

    @property
    def _wait(self) -> Callable[[float], None]:
        return self._host.wait

    @property
    def _await(self) -> Any:
        return self._host.wait_async

    @property
    def _refresh_locked(self) -> Any:
        return self._host.refresh

    @property
    def _pause_cause(self) -> Callable[[], str]:
        return self._host.pause_cause

    @property
    def _window_deadline(self) -> Any:
        return self._host.window_deadline

    @property
    def _blackout_end(self) -> Any:
        return self._host.blackout_end

    @property
    def _fleet_due(self) -> Callable[..., bool]:
        return self._host.fleet_due

    @property
    def _fleet_refresh(self) -> Callable[..., None]:
        return self._host.fleet_refresh
