"""The guard as sessions and protected calls see it: one small adapter, one place.

:class:`GuardPort` lists every part of a :class:`~wedguard.Guard` that
:class:`~wedguard.Session` and ``@guard.protect`` use, so that nothing else in those
modules reaches into the guard. Built once per session (and once per protected
function).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from wedguard.decision import Decision
    from wedguard.runtime.core import GuardCore
    from wedguard.runtime.guard import Guard
    from wedguard.runtime.session import Session

__all__ = ["GuardPort"]

_INF: Final = math.inf


class GuardPort:
    """Every part of a :class:`~wedguard.Guard` that sessions and protected calls use.

    Built once per session; nothing else in this module (or in ``protect``) reaches
    into the guard. The hot path of :meth:`Session.throttle` reads five of the
    guard's fields itself, for speed: ``_free``, ``_go``, ``_expires`` (the current
    decision's shortcut flags), ``_now`` (the clock) and ``_bytes`` (the byte bucket).
    """

    __slots__ = ("clock", "cond", "core", "guard", "now")

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.core: GuardCore = guard._host
        self.clock = guard.clock
        self.now: Callable[[], float] = guard._now
        self.cond = guard._cond

    # the decision in force (lock held for a consistent view)
    @property
    def go(self) -> bool:
        return self.guard._go

    @property
    def free(self) -> bool:
        return self.guard._free

    @property
    def expires(self) -> float:
        return self.guard._expires

    @property
    def stopped(self) -> bool:
        return self.guard._stopped

    @property
    def decision(self) -> Decision:
        return self.guard._decision

    def refresh(self, now: float) -> None:
        self.guard._refresh_locked(now)

    def pause_cause(self) -> str:
        return self.guard._pause_cause()

    def hold(self) -> tuple[float | None, float]:
        """(since when the impact analyser holds the guard, ``max_hold``)."""
        return self.guard._held_since, self.guard._max_hold

    # protected calls outside a session
    def direct(self) -> bool:
        """True when a call outside a session may run without one (if it need not
        wait): the guard is in no fleet and lowers no priority; see
        :meth:`CallAccount.begin <wedguard.runtime.calls.CallAccount.begin>`."""
        g = self.guard
        return not (
            g._fleet is not None or g._nice or g._ionice or g.sched_idle or g.cpus is not None
        )

    def watched(self) -> bool:
        """True when the guard keeps slots or an account of calls outside a session:
        it has sinks (reports go somewhere), a ``max_concurrent``, sources (the
        sampler runs while calls do) or a stop file."""
        g = self.guard
        return bool(
            g._sinks
            or g.max_concurrent is not None
            or g._sources
            or self.core.stop_switch is not None
        )

    def take_leased(self, lease: Any, n: float) -> bool:
        """The fleet's shortcut: nothing but the guard's bucket and the fleet's leased
        credit limit a call, and both have ``n`` units now: take them (no lock, no
        Redis). False takes nothing (and for an ``n`` that is no size: the slow path
        says what is wrong)."""
        g = self.guard
        try:
            if (
                g._go
                and 0 <= n < _INF
                and n is not True
                and n is not False
                and g._now() < g._expires
                and lease.try_acquire(n)
            ):
                if g._bytes.try_acquire(n):
                    return True
                lease.untake(n)
        except TypeError:
            pass
        return False

    # budgets: (the guard's bytes, its operations, the fleet's bytes and operations)
    def budgets(self) -> tuple[Any, Any, Any, Any]:
        g = self.guard
        return g._bytes, g._ops, g._fleet_bytes, g._fleet_ops

    def lease(self) -> Any:
        """The fleet's leased byte credit, when the fleet shares bytes through leases."""
        g = self.guard
        fb = g._fleet_bytes
        return fb if fb is not None and fb in g._fleet_leases else None

    @property
    def fleet(self) -> bool:
        return self.guard._fleet is not None

    @property
    def leased(self) -> bool:
        return bool(self.guard._fleet_leases)

    def fleet_due(self, n: float = 0.0, ops: int = 0) -> bool:
        return self.guard._fleet_due(n, ops)

    def fleet_refresh(self, n: float = 0.0, ops: int = 0) -> None:
        self.guard._fleet_refresh(n, ops)

    # waiting (lock held)
    def wait(self, timeout: float) -> None:
        self.guard._wait(timeout)

    def waiter(self, loop: asyncio.AbstractEventLoop) -> tuple[Any, asyncio.Future[None]]:
        """A future the guard completes when anything changes (lock held)."""
        entry = (loop, loop.create_future())
        self.guard._async_waiters.add(entry)
        return entry

    def unwait(self, entry: tuple[Any, asyncio.Future[None]]) -> None:
        self.guard._async_waiters.discard(entry)

    async def wait_async(self, fut: asyncio.Future[None], timeout: float) -> None:
        await self.guard._await(fut, timeout)

    # the calendar
    def window_deadline(self, now_dt: datetime) -> datetime | None:
        return self.guard.host.window_deadline(now_dt)

    def blackout_end(self, now_dt: datetime) -> datetime | None:
        return self.guard.host.blackout_end(now_dt)

    # slots and priority
    def enter(self, s: Session, timeout: float | None) -> None:
        self.guard._enter(s, timeout)

    def adopt(self, s: Session, slot: Any) -> None:
        """Begin ``s`` on ``slot``, held by a protected call outside a session."""
        self.core.slots.adopt(s, slot)

    async def enter_async(self, s: Session, timeout: float | None) -> None:
        await self.guard._aenter(s, timeout)

    def exit(self, s: Session, exc: BaseException | None) -> None:
        self.guard._exit(s, exc)

    def priority(self) -> tuple[int, bool, bool, frozenset[int] | None]:
        """nice, ionice, sched_idle and cpus for the session's thread."""
        g = self.guard
        return g.nice, g.ionice, g.sched_idle, g.cpus
