"""Protected calls outside a session, counted together: one account per function.

A call of a ``@guard.protect`` function made outside any session does not open a
session of its own when it need not wait: it takes a concurrency slot (when the guard
limits them) and its cost from the guard's budgets, runs, and is counted in its
function's :class:`CallAccount`. The account reports to the sinks as one
:class:`~wedguard.SessionReport` per function and period: the report's ``ops`` are
the calls' operations, ``bytes`` their cost, ``duration`` the period from the first
call to the last, and ``outcome`` ``"error"`` (with how many calls failed and the last
error) when a call raised. A period ends :data:`CALL_PERIOD` seconds after its first
call (at the next call), and when the guard is flushed or closed.

A call that must wait (no slot free, the budgets short, a pause) runs as a session of
its own, with its own report, as a session always did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from wedguard.policy.ledger import Ledger

if TYPE_CHECKING:
    from wedguard.runtime.core import GuardCore

__all__ = ["CALL_PERIOD", "CallAccount"]

#: seconds after its first call that a function's account reports (at the next call)
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

    __slots__ = ("calls", "core", "due", "failures", "last_error", "led", "name")

    def __init__(self, core: GuardCore, name: str) -> None:
        self.core = core
        self.name = name
        self.led: Ledger | None = None
        self.calls = 0
        self.failures = 0
        self.last_error = ""
        self.due = 0.0

    def count(self, n: float, ops: int, exc: BaseException | None, started: float) -> None:
        """A call that began at clock reading ``started`` ended (with ``exc`` if it
        raised), having taken ``n`` bytes and ``ops`` operations (lock held)."""
        core = self.core
        led = self.led
        if led is None:
            led = self.led = Ledger(self.name)
            led.start(started, core.clock.now())
            self.due = started + CALL_PERIOD
            core.accounts.add(self)
        led.count(n, ops)
        core.call_bytes += n
        self.calls += 1
        if exc is not None:
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
        if started >= self.due:
            self.settle(core.now())

    def settle(self, now: float) -> None:
        """End the period: its report to the sinks (lock held); nothing without calls."""
        led, self.led = self.led, None
        core = self.core
        core.accounts.discard(self)
        if led is None:
            return
        led.end(now, None)
        if self.failures:
            led.outcome = "error"
            led.error = f"{self.failures} of {self.calls} calls failed; the last: {self.last_error}"
        self.calls = self.failures = 0
        self.last_error = ""
        core.events.emit(led.report(now, started=True, decision=core.decision))
