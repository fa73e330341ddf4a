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
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Final

from wedguard.errors import EmergencyStop
from wedguard.policy.ledger import CutoffReached, Ledger

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

    __slots__ = ("calls", "core", "due", "failures", "last", "last_end", "led", "name")

    def __init__(self, core: GuardCore, name: str) -> None:
        self.core = core
        self.name = name
        self.led: Ledger | None = None
        self.calls = 0
        self.failures = 0
        self.last = ("", "")  # the last failure: (outcome, error text)
        self.due = 0.0
        self.last_end = 0.0

    def count(
        self, n: float, ops: int, exc: BaseException | None, started: float, ended: float
    ) -> None:
        """A call that ran from clock reading ``started`` to ``ended`` (raising ``exc``,
        if it did), having taken ``n`` bytes and ``ops`` operations (lock held)."""
        if self.led is not None and started >= self.due:
            self.settle()  # the call belongs to a new period
        led = self.led
        if led is None:
            core = self.core
            led = self.led = Ledger(self.name)
            led.start(started, core.clock.now() - _since(core, started))
            self.due = started + CALL_PERIOD
            self.last_end = started
            core.accounts.add(self)
        led.count(n, ops)
        self.calls += 1
        self.last_end = max(self.last_end, ended)
        if exc is not None:
            self.failures += 1
            self.last = (_outcome(exc), f"{type(exc).__name__}: {exc}")

    def settle(self) -> None:
        """End the period: its report to the sinks (lock held); nothing without calls."""
        led, self.led = self.led, None
        core = self.core
        core.accounts.discard(self)
        if led is None:
            return
        end = self.last_end
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
