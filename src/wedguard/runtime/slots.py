"""Concurrency slots: at most ``max_concurrent`` sessions at once, first come first served.

:class:`Slots` keeps the local FIFO queue and the sessions holding a slot; with a
coordinator a session first takes one of the fleet's shared slots (without the
guard's lock), then a local one. A thread waits on the guard's condition, an asyncio
task on a future the guard wakes on every change.
"""

from __future__ import annotations

import asyncio
import collections
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from wedguard.clock import clock_wait
from wedguard.errors import ConfigError, EmergencyStop
from wedguard.policy.decision import Stop
from wedguard.runtime.session import Session, SlotTimeout

if TYPE_CHECKING:
    from wedguard.runtime.core import GuardCore

__all__ = ["CallSlot", "Slot", "Slots"]

_INF: Final = float("inf")


class Slot:
    """A held concurrency slot; released once. A protected call outside a session
    holds one without a session (:meth:`CallAccount.begin
    <wedguard.runtime.calls.CallAccount.begin>`)."""

    __slots__ = ("__weakref__", "name", "released", "session", "shared")

    def __init__(self, session: Session | None, shared: bool = False, name: str = "") -> None:
        self.session: Callable[[], Session | None] = (
            _nobody if session is None else weakref.ref(session)
        )
        self.name = name if session is None else session.name
        self.released = False
        self.shared = shared  # also holds one of the fleet's shared slots


def _nobody() -> None:
    """The session of a slot that a protected call holds: none."""
    return


class CallSlot(Slot):
    """The slot of a protected call outside a session, and when the call began
    (``start``, a clock reading). Kept for the next call of the same function once
    the call ends (:attr:`CallAccount.spare <wedguard.runtime.calls.CallAccount>`)."""

    __slots__ = ("start",)

    def __init__(self, name: str) -> None:
        self.session = _nobody
        self.name = name
        self.released = False
        self.shared = False
        self.start = 0.0


class Slots:
    """The guard's concurrency slots (state under the guard's lock)."""

    def __init__(self, core: GuardCore) -> None:
        self.core = core
        self.limit = core.settings.max_concurrent
        self.cap: float = _INF if self.limit is None else self.limit  # the limit, as a number
        self.queue: collections.deque[object] = collections.deque()
        self.active: dict[Slot, None] = {}

    def sessions(self) -> list[Session]:
        """The sessions holding a slot now (lock held)."""
        out = []
        for slot in self.active:
            s = slot.session()
            if s is not None:
                out.append(s)
        return out

    def names(self) -> list[str]:
        """The names of what holds a slot now: sessions, and protected calls running
        outside one (their function's name), in the order they took it (lock held)."""
        return [slot.name for slot in self.active]

    def _free(self, ticket: object) -> bool:
        return self.queue[0] is ticket and len(self.active) < self.cap

    def _check(self, session: Session, start: float, now: float, timeout: float | None) -> float:
        """Time left to wait for a slot (lock held); raises on a stop (the engine's
        :class:`~wedguard.policy.decision.Stop`) or a timeout."""
        action = self.core.action(now)
        if isinstance(action, Stop):
            raise EmergencyStop(action.reason)
        left = _INF if timeout is None else start + timeout - now
        if left <= 0:
            raise SlotTimeout(session.name, timeout or 0.0, self.limit or 0)
        return left

    # -- entering ---------------------------------------------------------------------

    def enter(self, session: Session, timeout: float | None) -> None:
        """Take a slot (the fleet's first, without the lock), then begin ``session``."""
        if session._started:
            raise ConfigError("session", session.name, "a session that was not entered before")
        fleet = self.core.fleet_link
        shared = False
        if fleet is not None:
            shared, timeout = fleet.take_slot(session, timeout)
        try:
            self._enter_local(session, timeout, shared)
        except BaseException:
            if shared:
                fleet.slots.release()  # type: ignore[union-attr]
            raise

    def _enter_local(self, session: Session, timeout: float | None, shared: bool) -> None:
        core = self.core
        ticket = object()
        with core.lock:
            start = now = core.now()
            self.queue.append(ticket)
            try:
                while not self._free(ticket):
                    left = self._check(session, start, now, timeout)
                    clock_wait(core.clock, core.lock, None if left == _INF else left)
                    now = core.now()
            finally:
                self.queue.remove(ticket)
                core.notify()
            session._waits["slots"] += now - start
            self._take(session, now, shared)

    async def enter_async(self, session: Session, timeout: float | None) -> None:
        """The asyncio form of :meth:`enter`."""
        if session._started:
            raise ConfigError("session", session.name, "a session that was not entered before")
        fleet = self.core.fleet_link
        shared = False
        if fleet is not None:
            shared, timeout = await fleet.take_slot_async(session, timeout)
        try:
            await self._enter_local_async(session, timeout, shared)
        except BaseException:
            if shared:
                await asyncio.shield(asyncio.to_thread(fleet.slots.release))  # type: ignore[union-attr]
            raise

    async def _enter_local_async(
        self, session: Session, timeout: float | None, shared: bool
    ) -> None:
        core = self.core
        ticket = object()
        loop = asyncio.get_running_loop()
        with core.lock:
            start = now = core.now()
            self.queue.append(ticket)
        try:
            while True:
                with core.lock:
                    now = core.now()
                    if self._free(ticket):
                        break
                    left = self._check(session, start, now, timeout)
                    fut: asyncio.Future[None] = loop.create_future()
                    entry = (loop, fut)
                    core.async_waiters.add(entry)
                try:
                    await core.wait_async(fut, left)
                finally:
                    with core.lock:
                        core.async_waiters.discard(entry)
        finally:
            with core.lock:
                self.queue.remove(ticket)
                core.notify()
        with core.lock:
            session._waits["slots"] += now - start
            self._take(session, now, shared)

    def _take(self, session: Session, now: float, shared: bool = False) -> None:
        """The slot is ours (lock held): start the session and, if first, the sampler."""
        slot = Slot(session, shared)
        first = not self.active
        self.active[slot] = None
        session._slot = slot
        weakref.finalize(session, _release_slot, weakref.ref(self), slot)
        if first:
            self.core.first_session(now)
        session._begin(now)

    def adopt(self, session: Session, slot: Slot) -> None:
        """Begin ``session`` on ``slot``, which a protected call outside a session
        holds: the call's session takes the call's slot over, without waiting."""
        if session._started:
            raise ConfigError("session", session.name, "a session that was not entered before")
        core = self.core
        with core.lock:
            slot.session = weakref.ref(session)
            slot.name = session.name
            session._slot = slot
            weakref.finalize(session, _release_slot, weakref.ref(self), slot)
            session._begin(core.now())

    # -- leaving ----------------------------------------------------------------------

    def release(self, slot: Slot | None) -> None:
        """Free ``slot`` (once; the shared slot without the lock)."""
        if slot is None:
            return
        core = self.core
        with core.lock:
            if slot.released:
                return
            self.free(slot)
            core.notify()
        if slot.shared and core.fleet_link is not None:
            core.fleet_link.release_slot()

    def free(self, slot: Slot) -> None:
        """Free ``slot``, held (lock held); whoever waits for a slot is for the caller
        to wake."""
        slot.released = True
        self.active.pop(slot, None)
        if not self.active:
            self.core.last_session()


def _release_slot(slots_ref: weakref.ref[Slots], slot: Slot) -> None:
    """weakref finalizer: a session that was never left still frees its slot."""
    slots = slots_ref()
    if slots is not None:
        slots.release(slot)
