"""Protected calls outside a session, counted together: one account per function.

A call of a ``@guard.protect`` function made outside any session does not open a
session of its own when it need not wait: it takes a concurrency slot (on a guard
that keeps slots, sinks, sources or a stop file) and its cost from the guard's
budgets, runs, and is counted in its function's :class:`CallAccount`. The account
reports to the sinks as one :class:`~wedguard.SessionReport` per function and period:
``ops`` the calls' operations, ``bytes`` their cost, ``duration`` from the start of the
period's first call to the end of its last, and, when a call raised, ``ok`` False with
``error`` saying how many failed and the last error (``outcome`` that of the last
failure: ``"error"``, ``"stopped"`` for an emergency stop).

A period ends :data:`CALL_PERIOD` seconds after its first call began (the guard's
sampler reports it then; a later call first reports the period before it), when calls
stop (the sampler goes idle: no call for a sample interval), and when the guard is
flushed or closed (also at interpreter exit). A call that ends after the guard was
closed is reported at once.

A call that must wait (no slot free, the budgets short, a pause) runs as a session of
its own, with its own report, as a session always did.

Cost: the guard's lock is taken twice per call (:meth:`CallAccount.begin`, when the
call ends :meth:`CallAccount.end`), each time with ``acquire``/``release`` rather than
``with`` (half the cost on CPython); a call's slot is one of its function's, kept from
calls that ended; bytes and operations go into the period's ledger when the period is
settled (the cost measured: ``benchmarks/hot_path.py``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Final, Literal

from wedguard.errors import EmergencyStop
from wedguard.policy.ledger import CutoffReached, Ledger
from wedguard.runtime.slots import CallSlot

if TYPE_CHECKING:
    from wedguard.runtime.core import GuardCore

__all__ = ["CALL_PERIOD", "CallAccount"]

#: seconds after its first call began that a function's account reports
CALL_PERIOD: Final = 60.0


class CallAccount:
    """The calls of one protected function outside a session, in the current period
    (state under the guard's lock).

    Example::

        >>> from wedguard import Guard
        >>> from wedguard.testing import FakeClock, RecordingSink
        >>> sink = RecordingSink()
        >>> guard = Guard(rate="1MB/s", calendar=None, sources=[], sinks=[sink],
        ...               clock=FakeClock())
        >>> @guard.protect(cost=1000)
        ... def upload(key): return key
        >>> [upload(k) for k in "abc"]
        ['a', 'b', 'c']
        >>> guard.flush()
        True
        >>> (report,) = sink.of_kind("session")
        >>> report.name, report.ops, report.bytes, report.outcome
        ('upload', 3, 3000.0, 'done')
    """

    __slots__ = (
        "bytes",
        "calls",
        "core",
        "due",
        "failures",
        "last",
        "last_end",
        "led",
        "name",
        "ops",
        "spare",
    )

    def __init__(self, core: GuardCore, name: str) -> None:
        self.core = core
        self.name = name
        self.led: Ledger | None = None  # the period's, once it has a call
        self.calls = 0
        self.bytes = 0.0  # the period's calls' bytes and operations, counted at settle
        self.ops = 0
        self.failures = 0
        self.last = ("", "")  # the last failure: (outcome, error text)
        self.due = 0.0
        self.last_end = 0.0
        self.spare: list[CallSlot] = []  # slots of calls that ended, for the next ones

    # -- a call: begun, ended (each under the guard's lock, taken once) -------------------
    # (the lock taken with acquire and release, not ``with``: half the cost, and these
    # run on every call)

    def begin(self, n: float, ops: int, watched: bool) -> CallSlot | Literal[False] | None:
        """A protected call outside a session that may go now without waiting: takes
        its slot (``watched``: one free now, nobody waiting) and ``n`` bytes and
        ``ops`` operations; returns the slot (``None`` unwatched: nothing held, nothing
        counted). False, and nothing taken, when it must wait (as a session)."""
        core = self.core
        mutex = core.mutex
        mutex.acquire()
        try:
            now = core.now()
            if not watched:  # no slot, no account: only the budgets
                if now >= core.expires:
                    core.refresh(now)
                return None if core.take_for_call(n, ops, now) else False
            # a slot, if one is free now and nobody waits for one (else the call waits
            # as a session); never a fleet's shared slot (a guard in a fleet runs such
            # calls as sessions)
            slots = core.slots
            active = slots.active
            if slots.queue or len(active) >= slots.cap:
                return False
            first = not active
            spare = self.spare
            slot = spare.pop() if spare else CallSlot(self.name)
            slot.released = False
            slot.start = now
            active[slot] = None
            if first:
                core.first_session(now)
            if now >= core.expires:
                core.refresh(now)
            if not core.take_for_call(n, ops, now):
                slots.free(slot)
                core.notify()
                spare.append(slot)
                return False
            core.call_bytes += n  # what the backup moved, as the call starts
            return slot
        finally:
            mutex.release()

    def end(self, slot: CallSlot, n: float, ops: int, exc: BaseException | None) -> None:
        """The call holding ``slot`` ended, raising ``exc`` if it did: its slot freed
        (kept for the next call), the call counted (bytes and operations in the
        period's ledger when it is settled)."""
        core = self.core
        mutex = core.mutex
        mutex.acquire()
        try:
            now = core.now()
            # the slot freed (what Slots.free does for a session's, without the
            # session's bookkeeping: no baseline warm-up can hold a call that ran)
            slot.released = True
            slots = core.slots
            active = slots.active
            del active[slot]
            self.spare.append(slot)
            if not active:
                core.idle_since = now
            if slots.queue:
                core.notify()
            # the call counted
            started = slot.start
            if self.led is None or started >= self.due:
                self.open(started)
            self.bytes += n
            self.ops += ops
            self.calls += 1
            if now > self.last_end:
                self.last_end = now
            if exc is not None:
                self.failures += 1
                self.last = (_outcome(exc), f"{type(exc).__name__}: {exc}")
            if core.closed:  # nothing would report it later
                self.settle()
        finally:
            mutex.release()

    def release(self, slot: CallSlot) -> None:
        """Free ``slot`` of a call not counted here (its session counts it)."""
        core = self.core
        with core.mutex:
            core.slots.free(slot)
            core.notify()

    def open(self, started: float) -> Ledger:
        """Begin a period with a call that began at clock reading ``started``, the
        period before it reported first (lock held)."""
        if self.led is not None:
            self.settle()
        core = self.core
        led = self.led = Ledger(self.name)
        led.start(started, core.clock.now() - _since(core, started))
        self.due = started + CALL_PERIOD
        self.last_end = started
        core.accounts.add(self)
        return led

    def settle(self) -> None:
        """End the period: its report to the sinks (lock held); nothing without calls."""
        led, self.led = self.led, None
        core = self.core
        core.accounts.discard(self)
        if led is None:
            return
        end = self.last_end
        led.count(self.bytes, self.ops)
        self.bytes = 0.0
        self.ops = 0
        led.end(end, None)
        if self.failures:
            led.outcome = self.last[0]
            led.error = f"{self.failures} of {self.calls} calls failed; the last: {self.last[1]}"
        self.calls = self.failures = 0
        self.last = ("", "")
        core.events.emit(led.report(end, started=True, decision=core.decision))


def _since(core: GuardCore, started: float) -> timedelta:
    """How long ago clock reading ``started`` was, as a timedelta."""
    return timedelta(seconds=max(0.0, core.now() - started))


def _outcome(exc: BaseException) -> str:
    """A failed call's outcome, as a session's would be."""
    if isinstance(exc, EmergencyStop):
        return "stopped"
    if isinstance(exc, CutoffReached):
        return "cutoff"
    return "error"
