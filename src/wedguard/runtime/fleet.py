"""Many hosts, one budget: a guard's side of a :class:`~wedguard.distributed.RedisCoordinator`.

:class:`Fleet` holds the shared buckets (taken in leased blocks, so a chunk costs no
Redis round trip), the shared concurrency slots, the fleet's stop flag and the state
of the link to Redis. Every Redis call is made without the guard's lock: the lock is
taken only to install what a call brought back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import TYPE_CHECKING, Any

from wedguard.errors import EmergencyStop
from wedguard.policy.alerting import Severity
from wedguard.runtime.session import SlotTimeout
from wedguard.units import format_rate

if TYPE_CHECKING:
    from wedguard.runtime.core import GuardCore
    from wedguard.runtime.session import Session

__all__ = ["Fleet"]


class Fleet:
    """The coordinator's shared objects for one guard, and the fleet's state.

    Attributes:
        bytes, ops: the shared byte and operations buckets (``ops`` None without an
            operations budget).
        slots: the shared concurrency slots (None without ``max_concurrent``).
        leases: the shared buckets that are leased (``refresh`` off the lock).
        rate: the rate this guard last gave the shared byte bucket.
        stop: the fleet's stop reason ("" when not stopped).
        offline: True while Redis is unreachable.
    """

    def __init__(self, core: GuardCore, coordinator: Any) -> None:
        s = core.settings
        self.core = core
        self.coordinator = coordinator
        # a coordinator that leases (RedisCoordinator) is asked for leases, else buckets
        shared = getattr(coordinator, "lease", None) or coordinator.bucket
        self.bytes: Any = shared(s.rate, name=s.name)
        self.ops: Any = None
        if s.ops_rate < float("inf"):
            self.ops = shared(s.ops_rate, max(1.0, s.ops_rate * 0.2), name=f"{s.name}:ops")
        self.leases: tuple[Any, ...] = tuple(
            b for b in (self.bytes, self.ops) if hasattr(b, "refresh")
        )
        self.slots: Any = None
        if s.max_concurrent is not None:
            self.slots = coordinator.slots(s.max_concurrent, name=s.name)
        self.rate = s.rate
        self.stop = ""
        self.offline = not coordinator.link.online
        changes: collections.deque[bool] = collections.deque()
        self.changes = changes

        def on_link(online: bool, error: BaseException | None) -> None:
            # no lock here: taken in by the stop check (within stop_check_interval)
            changes.append(online)

        coordinator.link.add_listener(on_link)

    @property
    def share(self) -> float:
        """This host's share of the fleet's rate while Redis is unreachable."""
        return float(getattr(self.coordinator, "fallback_share", 1.0))

    @property
    def fallback_budget(self) -> float | None:
        """This host's budget while Redis is unreachable (None while it is reachable)."""
        return self.rate * self.share if self.offline else None

    # -- leased credit (never with the lock) ------------------------------------------

    def due(self, n: float = 0.0, ops: int = 0) -> bool:
        """Whether a leased shared bucket wants a Redis call now (cheap; no lock)."""
        return any(lease.due(n if lease is self.bytes else float(ops)) for lease in self.leases)

    def refresh(self, n: float = 0.0, ops: int = 0) -> None:
        """The Redis calls of the leased shared buckets, when due (never with the lock).

        ``n``, ``ops``: what the caller is about to take; it waits for a block in
        flight only when its leased credit does not cover that.
        """
        for lease in self.leases:
            lease.refresh(n if lease is self.bytes else float(ops))

    def settle(self) -> None:
        """The last session ended: give leased credit back to the fleet (no lock)."""
        if self.leases and not self.core.slots.active:
            for lease in self.leases:
                lease.settle()

    def set_rate(self, rate: float, calendar_cap: float) -> None:
        """Give the shared bucket the fleet's ceiling (lock held; on a change only).

        A leased shared bucket (what a :class:`~wedguard.distributed.RedisCoordinator`
        gives) takes the rate locally; :meth:`refresh`, called right after by the
        session's thread or the sampler without the lock, writes it to Redis. A
        coordinator without ``lease()`` hands out plain buckets, whose ``set_rate`` is
        called here: such a bucket must take the rate without a round trip.

        The fleet's ceiling is ``rate`` or, when lower, the calendar window's cap: the
        calendar is the fleet's ("all backups together at most 10 Mbit/s in peak
        hours"). The impact controller's rate and the session caps are this host's
        own and stay in the local buckets.
        """
        target = min(rate, calendar_cap) if calendar_cap > 0 else rate
        if target != self.rate:
            self.rate = target
            self.bytes.set_rate(target)

    # -- the stop flag and the link ---------------------------------------------------

    def check(self) -> None:
        """Read the fleet's stop flag and take in Redis going away or coming back.

        The flag answers from a reading at most its ``max_age`` old (0.5 s), so this
        costs at most one Redis round trip per half second, whatever the interval.
        Called without the lock in background mode (the sampler), with it inline.
        """
        flag = self.coordinator.stop_flag
        stop = f"fleet stop: {flag.reason or 'stopped'}" if flag.is_set() else ""
        changes: list[bool] = []
        while self.changes:
            changes.append(self.changes.popleft())
        core = self.core
        with core.lock:
            changed = stop != self.stop
            self.stop = stop
            for online in changes:
                self._alert(online)
            offline = not self.coordinator.link.online
            changed = changed or offline != self.offline
            self.offline = offline
            if changed:
                core.refresh_now()

    def _alert(self, online: bool) -> None:
        alerts = self.core.alerts
        if not online and "redis" not in alerts:
            share = self.share
            prefix = getattr(self.coordinator, "prefix", "redis")
            alerts.fire(
                "redis",
                Severity.HIGH,
                f"Redis {prefix!r} is unreachable: this host runs on its fallback "
                f"budget {format_rate(self.rate * share)} "
                f"({share:.0%} of the fleet's rate)",
                self.core.clock.now(),
                labels={"redis": str(prefix)},
            )
        elif online and "redis" in alerts:
            alerts.resolve("redis", self.core.clock.now())

    def abort(self) -> bool:
        """Whether a wait for a shared slot must end: this guard or the fleet stopped."""
        if self.coordinator.stop_flag.is_set() and not self.stop:
            self.check()
        return self.core.stopped

    # -- shared slots ---------------------------------------------------------------------

    def take_slot(self, session: Session, timeout: float | None) -> tuple[bool, float | None]:
        """Take one of the fleet's shared slots (no lock held): (held, timeout left).

        Waits in the fleet's FIFO queue; a stop (this guard's or the fleet's) ends the
        wait with :class:`~wedguard.EmergencyStop`.
        """
        self.check()
        self._raise_if_stopped()
        self.refresh()  # a first block (and this guard's rate) before any chunk
        if self.slots is None:
            return False, timeout
        start = self.core.now()
        try:
            held = bool(self.slots.acquire(timeout, abort=self.abort))
        except SlotTimeout as exc:
            raise self._timeout(session, timeout) from exc
        return self._taken(held, session, start, timeout)

    async def take_slot_async(
        self, session: Session, timeout: float | None
    ) -> tuple[bool, float | None]:
        """The asyncio form of :meth:`take_slot`."""
        await asyncio.to_thread(self.check)
        self._raise_if_stopped()
        if self.due():
            await asyncio.to_thread(self.refresh)
        if self.slots is None:
            return False, timeout
        start = self.core.now()
        try:
            held = bool(await self.slots.acquire_async(timeout, abort=self.abort))
        except SlotTimeout as exc:
            raise self._timeout(session, timeout) from exc
        return self._taken(held, session, start, timeout)

    def _raise_if_stopped(self) -> None:
        if self.core.stopped:
            raise EmergencyStop(self.core.decision.stop_reason)

    def _timeout(self, session: Session, timeout: float | None) -> SlotTimeout:
        limit = self.core.settings.max_concurrent or 0
        return SlotTimeout(session.name, timeout or 0.0, limit, key=self.slots.key)

    def _taken(
        self, held: bool, session: Session, start: float, timeout: float | None
    ) -> tuple[bool, float | None]:
        if not held:
            raise EmergencyStop(self.core.decision.stop_reason)
        waited = max(0.0, self.core.now() - start)
        session._waits["slots"] += waited
        return True, None if timeout is None else max(0.0, timeout - waited)

    def release_slot(self) -> None:
        """Give a shared slot back (no lock held)."""
        # no Redis fault reaches here (a lost Redis frees the slot by its lease);
        # slots closed with their coordinator hold nothing any more
        with contextlib.suppress(RuntimeError):
            self.slots.release()
