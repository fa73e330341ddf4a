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

Cost: the guard's lock is taken once per call, as it begins (:meth:`CallAccount.begin`:
its slot, its cost); as it ends (:meth:`CallAccount.end`) the call is noted in a deque
and its slot freed without the lock, and counted in the period's ledger when the period
is settled. A call's slot is one of its function's, kept from calls that ended (the
cost measured: ``benchmarks/hot_path.py``).
"""

from __future__ import annotations

import collections
from datetime import timedelta
from typing import TYPE_CHECKING, Final, Literal

from wedguard.errors import EmergencyStop
from wedguard.policy.bucket import LEASE_SPAN
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
        "ended",
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
        self.led: Ledger | None = None  # the open period's
        self.due = 0.0  # when the open period ends (a clock reading)
        self.calls = 0  # the open period's calls, failures, bytes, operations, last end
        self.failures = 0
        self.bytes = 0.0
        self.ops = 0
        self.last_end = 0.0
        self.last = ("", "")  # the last failure: (outcome, error text)
        self.spare: list[CallSlot] = []  # slots of calls that ended, for the next ones
        # calls that ended, not yet counted: (began, ended, bytes, operations, raised);
        # appended without the lock, counted under it (one deque, never replaced)
        self.ended: collections.deque[_Ended] = collections.deque()

    # -- a call: begun under the guard's lock, ended without it ----------------------------

    def begin(self, n: float, ops: int, watched: bool) -> CallSlot | Literal[False] | None:
        """A protected call outside a session that may go now without waiting: takes
        its slot (``watched``: one free now, nobody waiting) and ``n`` bytes and
        ``ops`` operations; returns the slot (``None`` unwatched: nothing held, nothing
        counted). False, and nothing taken, when it must wait (as a session)."""
        core = self.core
        with core.mutex:  # (never acquire() then try: a Ctrl-C between leaks the lock)
            now = core.now()
            slot = None
            if watched:
                # a slot, if one is free now and nobody waits for one (else the call
                # waits as a session); never a fleet's shared slot (a guard in a fleet
                # runs such calls as sessions)
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
            if _take(core, n, ops, now):
                if slot is not None:
                    core.call_bytes += n  # what the backup moved, as the call starts
                    if now >= self.due or self.led is None:
                        self.roll(now)
                return slot
            if slot is not None:
                slots.free(slot)
                core.notify()
                spare.append(slot)
            return False

    def end(self, slot: CallSlot, n: float, ops: int, exc: BaseException | None) -> None:
        """The call holding ``slot`` ended, raising ``exc`` if it did: its slot freed
        (kept for the next call), the call noted to be counted in the period open then.

        Without the guard's lock, unless someone waits for a slot or the guard was
        closed: each step is one operation on a deque, a dict, a list or an attribute,
        and whoever reads them takes the lock (the slot is freed after the call is
        noted, so a settle that sees the slot free sees the call too)."""
        core = self.core
        now = core.now()
        self.ended.append((slot.start, now, n, ops, exc))
        if self.led is None:  # the period was settled while the call ran
            core.accounts.add(self)
        core.idle_since = now  # (read only while no slot is held)
        slot.released = True
        slots = core.slots
        slots.active.pop(slot, None)
        self.spare.append(slot)
        if slots.queue or core.closed:
            with core.mutex:
                if slots.queue:
                    core.notify()
                if core.closed:  # nothing would report it later
                    self.settle()

    def release(self, slot: CallSlot) -> None:
        """Free ``slot`` of a call not counted here (its session counts it)."""
        core = self.core
        with core.mutex:
            core.slots.free(slot)
            core.notify()

    # -- periods (lock held) ---------------------------------------------------------------

    def roll(self, now: float) -> None:
        """A call begins at clock reading ``now`` with no period open, or after the open
        one's end: the calls that ended are counted, the period due is reported, and a
        new one begins with this call if none is open."""
        self.count()
        if self.led is not None and now >= self.due:
            self.report()
        if self.led is None:
            self.open(now)

    def open(self, started: float) -> None:
        """Begin a period with a call that began at clock reading ``started``."""
        core = self.core
        led = self.led = Ledger(self.name)
        led.start(started, core.clock.now() - _since(core, started))
        self.due = started + CALL_PERIOD
        self.last_end = started
        core.accounts.add(self)

    def count(self) -> None:
        """Count the calls that ended, in the open period (one opened from a call's
        start if none is: a call that ran across the end of its period)."""
        ended = self.ended
        while ended:
            started, end, n, ops, exc = ended.popleft()
            if self.led is None:
                self.open(started)
            self.bytes += n
            self.ops += ops
            self.calls += 1
            if end > self.last_end:
                self.last_end = end
            if exc is not None:
                self.failures += 1
                self.last = (_outcome(exc), f"{type(exc).__name__}: {exc}")

    def settle(self) -> None:
        """End the period: the calls that ended counted, its report to the sinks;
        nothing without calls."""
        self.count()
        self.report()

    def report(self) -> None:
        """The open period's report to the sinks (if a call ended in it); the period
        closed."""
        led, self.led = self.led, None
        core = self.core
        core.accounts.discard(self)
        if led is None or not self.calls:
            return
        end = self.last_end
        led.count(self.bytes, self.ops)
        led.end(end, None)
        if self.failures:
            led.outcome = self.last[0]
            led.error = f"{self.failures} of {self.calls} calls failed; the last: {self.last[1]}"
        self.calls = self.failures = self.ops = 0
        self.bytes = 0.0
        self.last = ("", "")
        core.events.emit(led.report(end, started=True, decision=core.decision))


_Ended = tuple[float, float, float, int, "BaseException | None"]


def _take(core: GuardCore, n: float, ops: int, now: float) -> bool:
    """Take ``n`` bytes and ``ops`` operations for a protected call, if the decision in
    force lets them go now (the guard's lock held); False takes nothing. Bytes come from
    the calls' credit (``core.call_credit``, good until ``core.call_until`` or the next
    decision, which gives it back), leased from the byte bucket in blocks while nothing
    binds (as a session's are), so most calls take no other lock."""
    if not core.go or now >= core.expires:
        return False
    ops_bucket = core.ops
    if ops and ops_bucket is not None and not ops_bucket.try_acquire_at(ops, now):
        return False
    if n > 0 and not core.free:
        credit = core.call_credit
        if n > credit or now >= core.call_until:
            core.give_back_calls()
            bucket = core.bytes
            credit = bucket.lease(n, max(n, LEASE_SPAN * bucket.rate), now)
            if not credit:
                if ops and ops_bucket is not None:
                    ops_bucket.untake(ops)
                return False
            core.call_until = core.expires
        core.call_credit = credit - n
    return True


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
