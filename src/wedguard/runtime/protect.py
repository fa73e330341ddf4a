"""``@guard.protect``: a function's calls run under the guard, one way for sync and async.

A protected call passes the breaker's gate, takes its cost from the budgets, then runs
with that cost prepaid for the file objects it wraps, and tells the breaker how it
went. Inside an active session of the guard it joins that session; outside one it
runs as a session of its own, named after the function.

That session is made only when something needs it. When nothing can observe it (the
guard keeps no sinks for its report, takes no concurrency slots, samples nothing and
lowers no priority) and the budgets have the call's cost now, the call runs on a light
lane: a couple of microseconds instead of a whole session and report. Should the
function ask for its session after all (``guard.wrap``, ``guard.copyfileobj``,
:func:`~wedguard.current_session`), the session is opened there and then, with the cost
already counted and prepaid, and ended with the call.

The gate and the surroundings of the call are written once; the thread and asyncio
forms differ only in how they wait and how they call.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar, cast

from wedguard.clock import clock_asleep
from wedguard.errors import CircuitOpenError, ConfigError, EmergencyStop
from wedguard.io.fileobj import GuardedFile
from wedguard.runtime.calls import CallAccount
from wedguard.runtime.guard_port import GuardPort
from wedguard.runtime.prepaid import Prepaid
from wedguard.runtime.session import (
    _CURRENT,
    Session,
    current_session,
)

if TYPE_CHECKING:
    from wedguard.interfaces import Breaker
    from wedguard.runtime.guard import Guard
    from wedguard.runtime.slots import CallSlot

__all__ = ["joinable", "protect"]

P = ParamSpec("P")
R = TypeVar("R")

_INF: Final = math.inf
_in_context = _CURRENT.get  # what current_session() reads: None outside any session
_set_current = _CURRENT.set


def joinable(guard: Guard) -> Session | None:
    """The active session of ``guard`` the caller is inside, if any."""
    s = current_session()
    if s is not None and s.guard is guard and s.active:
        return s
    return None


def protect(
    guard: Guard,
    fn: Callable[P, R] | None,
    *,
    cost: Callable[..., float] | float | None,
    ops: int,
    name: str | None,
    wait_on_open: bool,
    breaker: Breaker | None,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """What :meth:`Guard.protect` returns (the breaker already chosen); see there."""
    if isinstance(ops, bool) or not isinstance(ops, int) or ops < 0:
        raise ConfigError("ops", ops, "a whole number of operations >= 0")
    if (
        cost is not None
        and not callable(cost)
        and (isinstance(cost, bool) or not isinstance(cost, (int, float)) or not 0 <= cost < _INF)
    ):
        raise ConfigError("cost", cost, "a function of the call's arguments or bytes >= 0")

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        call = _Protected(guard, func, cost, ops, name, wait_on_open, breaker)
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def awrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await call.run_async(args, kwargs)

            return cast("Callable[P, R]", awrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            result: R = call.run(args, kwargs)  # (no cast(): a call on every call)
            return result

        return wrapper

    if fn is not None:
        return decorate(fn)
    return decorate


class _Protected:
    """One protected function: its settings, and its calls driven for threads or asyncio."""

    __slots__ = (
        "account",
        "breaker",
        "core",
        "cost",
        "direct",
        "fixed",
        "func",
        "guard",
        "label",
        "ops",
        "port",
        "wait_on_open",
        "watched",
    )

    def __init__(
        self,
        guard: Guard,
        func: Callable[..., Any],
        cost: Callable[..., float] | float | None,
        ops: int,
        name: str | None,
        wait_on_open: bool,
        breaker: Breaker | None,
    ) -> None:
        self.guard = guard
        self.port = GuardPort(guard)
        self.core = self.port.core
        self.func = func
        self.cost = cost
        self.ops = ops
        self.label = name or getattr(func, "__qualname__", None) or "protected"
        self.wait_on_open = wait_on_open
        self.breaker = breaker
        # what never changes: whether calls outside a session may run without one
        # (direct), with a slot and an account (watched); a cost that is a number
        self.direct = self.port.direct()
        self.watched = self.port.watched()
        self.account = CallAccount(self.port.core, self.label)
        self.fixed = None if cost is None or callable(cost) else float(cost)

    def units(self, args: Any, kwargs: Any) -> float:
        fixed = self.fixed
        if fixed is not None:
            return fixed
        cost = self.cost
        if cost is None:
            return 0.0
        value = cost(*args, **kwargs) if callable(cost) else cost
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < _INF:
            raise ConfigError("cost", value, "bytes >= 0 returned by the cost function")
        return float(value)

    # -- the gate: one flow, waited through by threads or by asyncio ------------------------

    def gate(self, b: Breaker) -> Generator[float, None, None]:
        """The breaker refused a call: yields how long to wait until it asks again (with
        ``wait_on_open``); raises CircuitOpenError (without it) or EmergencyStop (the
        guard stopped). Returns once the breaker allows the call."""
        port = self.port
        while True:
            retry = float(b.retry_after)
            if not self.wait_on_open:
                raise _open_error(b, retry)
            if port.stopped:
                raise EmergencyStop(port.decision.stop_reason)
            yield max(retry, 0.01)
            if port.stopped:
                raise EmergencyStop(port.decision.stop_reason)
            if b.allow():
                return

    def pass_gate(self) -> None:
        b = self.breaker
        if b is not None and not b.allow():
            self.wait_gate(b)

    def wait_gate(self, b: Breaker) -> None:
        """The breaker refused: wait until it allows the call (or raise)."""
        port = self.port
        for wait in self.gate(b):
            with port.cond:
                if port.stopped:
                    raise EmergencyStop(port.decision.stop_reason)
                port.wait(wait)

    async def pass_gate_async(self) -> None:
        b = self.breaker
        if b is None or b.allow():
            return
        for wait in self.gate(b):
            await clock_asleep(self.port.clock, wait)

    # -- the call: inside a session (joined or its own), or on the light lane ----------------

    def run(self, args: Any, kwargs: Any) -> Any:
        # every call goes through here: the common case (no session around, a fixed
        # cost, no breaker or a closed one) calls no helper it can do without
        n = self.fixed
        if n is None:
            n = self.units(args, kwargs)
        if _in_context() is not None:
            outer = joinable(self.guard)
            if outer is not None:
                return self.inside(outer, n, args, kwargs)
        if (
            self.direct
            and not self.core.closed
            and not ((args or kwargs) and _has_files(args, kwargs))
        ):
            b = self.breaker
            if b is not None and not b.allow():
                self.wait_gate(b)
            ticket = self.account.begin(n, self.ops, self.watched)
            if ticket is not False:
                light = None  # (a Ctrl-C while it is made must not keep the slot)
                try:
                    light = _Light(self, n, ticket)
                    result = self.func(*args, **kwargs)
                except BaseException as exc:
                    self.ended(light, ticket, n, exc)
                    raise
                light.end(None)
                return result
            with self.guard.session(self.label) as s:
                return self.inside(s, n, args, kwargs, gated=True)
        with self.guard.session(self.label) as s:
            return self.inside(s, n, args, kwargs)

    def ended(
        self, light: _Light | None, ticket: CallSlot | None, n: float, exc: BaseException
    ) -> None:
        """A call on the light lane raised ``exc``; ``light`` None: before the call
        was made (a breaker trial's place given back, its slot freed, the call counted
        as one that failed)."""
        if light is not None:
            light.end(exc)
            return
        _release(self.breaker)
        if ticket is not None:
            self.account.end(ticket, n, self.ops, exc)

    def inside(self, s: Session, n: float, args: Any, kwargs: Any, gated: bool = False) -> Any:
        if not gated:
            self.pass_gate()
        try:
            s.throttle(n, ops=self.ops)
        except BaseException:
            _release(self.breaker)  # stopped before the call: a trial's place is given back
            raise
        with _Around(self, s, n, args, kwargs):
            return self.func(*args, **kwargs)

    async def run_async(self, args: Any, kwargs: Any) -> Any:
        n = self.units(args, kwargs)
        outer = joinable(self.guard)
        if outer is not None:
            return await self.inside_async(outer, n, args, kwargs)
        if (
            self.direct
            and not self.core.closed
            and not ((args or kwargs) and _has_files(args, kwargs))
        ):
            await self.pass_gate_async()
            ticket = self.account.begin(n, self.ops, self.watched)
            if ticket is not False:
                light = None  # (a cancellation while it is made must not keep the slot)
                try:
                    light = _Light(self, n, ticket)
                    result = await self.func(*args, **kwargs)
                except BaseException as exc:
                    self.ended(light, ticket, n, exc)
                    raise
                light.end(None)
                return result
            async with self.guard.session(self.label) as s:
                return await self.inside_async(s, n, args, kwargs, gated=True)
        async with self.guard.session(self.label) as s:
            return await self.inside_async(s, n, args, kwargs)

    async def inside_async(
        self, s: Session, n: float, args: Any, kwargs: Any, gated: bool = False
    ) -> Any:
        if not gated:
            await self.pass_gate_async()
        try:
            await s.throttle_async(n, ops=self.ops)
        except BaseException:
            _release(self.breaker)  # stopped before the call: a trial's place is given back
            raise
        with _Around(self, s, n, args, kwargs):
            return await self.func(*args, **kwargs)


class _Around:
    """The surroundings of one protected call in a session: its cost prepaid for the
    files it wraps, the breaker told how it went."""

    __slots__ = ("bound", "call", "token")

    def __init__(self, call: _Protected, s: Session, n: float, args: Any, kwargs: Any):
        self.call = call
        prepaid = Prepaid(s, n)
        self.token = prepaid.enter()
        self.bound = _bind_files(call.guard, prepaid, args, kwargs)

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            _record(self.call.breaker, exc)
        finally:
            for value in self.bound:
                value._session = None
            Prepaid.leave(self.token)


class _Light:
    """A protected call outside a session, on the light lane: the breaker told how it
    went, and the call counted in its function's account when it ends (:meth:`end`).
    Should the call ask for its session (through :func:`current_session`), the session
    is opened there and then, with the call's cost counted and prepaid already (the
    call's slot handed over to it), and ended with the call."""

    __slots__ = ("call", "n", "prepaid", "session", "ticket", "token")

    def __init__(self, call: _Protected, n: float, ticket: CallSlot | None) -> None:
        self.call = call
        self.n = n
        self.ticket = ticket  # the call's slot on a watched guard; None: nothing held
        self.session: Session | None = None
        self.prepaid: Any = None
        self.token = _set_current(self)  # what current_session() asks: this call

    def __call__(self) -> Session | None:
        s = self.session
        if s is not None:
            return s
        call = self.call
        with call.port.core.mutex:  # threads of one call asking at once: one session
            s = self.session
            if s is None:
                s = call.guard.session(call.label)
                ticket, self.ticket = self.ticket, None
                try:
                    if ticket is not None:
                        s._adopt(ticket)  # the call's slot, taken over: no wait
                    else:
                        s.__enter__()  # a guard that keeps no slots: none to wait for
                except BaseException:
                    if ticket is not None:
                        call.account.release(ticket)
                    raise
                s.ledger.count(self.n, call.ops)  # taken from the budgets before the call
                self.prepaid = Prepaid(s, self.n).enter()
                self.session = s
        return s

    def end(self, exc: BaseException | None) -> None:
        """The call returned (``exc`` None) or raised ``exc``."""
        call = self.call
        try:
            b = call.breaker
            if b is not None:
                _record(b, exc)
        finally:
            try:
                if self.session is not None:
                    self.end_session(exc)
                elif self.ticket is not None:
                    ticket, self.ticket = self.ticket, None
                    call.account.end(ticket, self.n, call.ops, exc)
            finally:
                try:  # noqa: SIM105 (not contextlib.suppress: this runs on every call)
                    _CURRENT.reset(self.token)
                except ValueError:  # left from another context: nothing to restore
                    pass

    def end_session(self, exc: BaseException | None) -> None:
        """End the session the call asked for, with the call."""
        s = cast("Session", self.session)
        if self.prepaid is not None:
            with contextlib.suppress(ValueError):  # left from another context
                Prepaid.leave(self.prepaid)
        s.__exit__(None if exc is None else type(exc), exc, None)


def _record(b: Breaker | None, exc: BaseException | None) -> None:
    """Tell the breaker how a call went (an Exception counts; a trial's place is
    given back always)."""
    if b is not None:
        if exc is None:
            b.record_success()
        else:
            b.record_failure(exc)


def _release(b: Breaker | None) -> None:
    """Give back what ``b.allow()`` took for a call that will not be made (a breaker
    without ``release()`` keeps it)."""
    release = getattr(b, "release", None)
    if callable(release):
        release()


def _open_error(b: Breaker, retry: float) -> CircuitOpenError:
    """The breaker's own CircuitOpenError (with its reason), or one built here."""
    make = getattr(b, "_open_error", None)
    if callable(make):
        with contextlib.suppress(Exception):
            exc = make()
            if isinstance(exc, CircuitOpenError):
                return exc
    record = getattr(b, "record", None)
    return CircuitOpenError(b.name, retry, str(getattr(record, "reason", "") or ""))


def _has_files(args: Any, kwargs: Any) -> bool:
    """Whether a wrapped file is among a call's arguments (it spends the call's cost)."""
    for v in args:
        if isinstance(v, GuardedFile):
            return True
    return bool(kwargs) and any(isinstance(v, GuardedFile) for v in kwargs.values())


def _bind_files(guard: Guard, prepaid: Prepaid, args: Any, kwargs: Any) -> list[Any]:
    """Let this guard's wrapped files among a protected call's arguments spend what
    the call paid for (the call's session, not one of their own); returns them."""
    bound = []
    for value in (*args, *kwargs.values()):
        if isinstance(value, GuardedFile) and value._guard is guard and value._session is None:
            value._session = cast("Session", prepaid)
            bound.append(value)
    return bound
