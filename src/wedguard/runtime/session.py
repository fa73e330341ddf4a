"""Sessions: one backup job under a :class:`~wedguard.Guard`, and what it reports.

A :class:`Session` is what a host's copy loop talks to::

    with guard.session("photos", expected_bytes=total, deadline="window") as s:
        for chunk in chunks:
            s.throttle(len(chunk))      # waits for rate, windows, impact; may raise
            dst.write(chunk)
    print(s.report())

``throttle(n)`` returns at once when nothing limits (a few hundred nanoseconds: it
reads the guard's current decision, compares two numbers and asks the token bucket).
Otherwise it waits, through the guard's clock, for as long as the rate, the calendar
(BLACKOUT), the impact analyser (HALT) or a hold requires, and raises
:class:`~wedguard.EmergencyStop` when the guard is stopped, :class:`CutoffReached`
when a cutoff ends the session and :class:`DeadlineError` when a blackout would make
the session miss its deadline.

A session is meant to be used by one thread or task at a time; the guard it belongs
to is shared by any number of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import threading
import weakref
from collections.abc import Callable, Generator
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal

from wedguard.clock import deprecated_alias
from wedguard.errors import (
    ConfigError,
    EmergencyStop,
    HoldTimeout,
    ThrottleTimeout,
    WedguardError,
)
from wedguard.policy.bucket import TokenBucketThrottler
from wedguard.policy.ledger import (
    CAUSES,
    PEAK_WINDOW,
    Cutoff,
    CutoffReached,
    DeadlineError,
    Ledger,
    Pause,
    Reservation,
    SessionReport,
    TimelinePoint,
    check_units,
)
from wedguard.runtime import priority as _priority
from wedguard.runtime.prepaid import Prepaid
from wedguard.units import parse_duration, parse_rate

if TYPE_CHECKING:
    from wedguard.decision import Decision
    from wedguard.runtime.guard import Guard

__all__ = [
    "CAUSES",
    "PEAK_WINDOW",
    "Cutoff",
    "CutoffReached",
    "DeadlineError",
    "Pause",
    "Session",
    "SessionReport",
    "SlotTimeout",
    "TimelinePoint",
    "current_session",
]

_INF: Final = math.inf

# a weak reference, so that a session entered and then abandoned can still be
# collected (and its slot freed)
# (or a protected call's session, opened when first asked for: see enter_lazy)
_CURRENT: contextvars.ContextVar[Callable[[], Session | None] | None] = contextvars.ContextVar(
    "wedguard_session", default=None
)


def current_session() -> Session | None:
    """The session the calling thread or task is inside (``with guard.session()``), if any.

    ``guard.protect``, ``guard.wrap`` and ``guard.copyfileobj`` join it rather than
    opening a session of their own (which would take a second concurrency slot).
    """
    ref = _CURRENT.get()
    return None if ref is None else ref()


def __getattr__(name: str) -> Any:
    if name == "CutoffMode":  # the deprecated alias lives with the enum
        from wedguard.policy import ledger

        return ledger.__getattr__(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class SlotTimeout(ThrottleTimeout):
    """No concurrency slot came free within the timeout; the session did not start.

    A :class:`~wedguard.ThrottleTimeout` (and so a :class:`TimeoutError`): nothing is
    held. ``wedguard.distributed.SlotTimeout`` (the slots shared through Redis) is a
    subclass, so ``except wedguard.SlotTimeout`` catches both.

    Attributes:
        session: the session's name.
        timeout: the timeout, in seconds.
        limit: the guard's ``max_concurrent``.
        key: the Redis key of the shared slots, when those were full (else None).
    """

    def __init__(self, session: str, timeout: float, limit: int, *, key: str | None = None) -> None:
        super().__init__(1, timeout, _INF)
        self.session = session
        self.limit = limit
        self.key = key
        where = "" if key is None else f" in {key!r}"
        self.args = (
            f"session {session!r}: no slot free{where} within {timeout:g} s "
            f"(at most {limit} sessions at once)",
        )


# -- the guard, as a session sees it --------------------------------------------------------


class GuardPort:
    """Every part of a :class:`~wedguard.Guard` that sessions and protected calls use.

    Built once per session; nothing else in this module (or in ``protect``) reaches
    into the guard. The hot path of :meth:`Session.throttle` reads five of the
    guard's fields itself, for speed: ``_free``, ``_go``, ``_expires`` (the current
    decision's shortcut flags), ``_now`` (the clock) and ``_bytes`` (the byte bucket).
    """

    __slots__ = ("clock", "cond", "guard", "now")

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
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
    def light(self) -> bool:
        """True when a call outside a session would need no session of its own: the
        guard keeps no sinks (nobody gets its report), takes no slots, is no fleet's
        member, samples nothing, watches no stop file and lowers no priority."""
        g = self.guard
        return not (
            g._sinks
            or g._max_concurrent is not None
            or g._fleet is not None
            or g._sources
            or g._stop_file is not None
            or g._nice
            or g._ionice
            or g._closed
        )

    def take(self, n: float, ops: int) -> bool:
        """Take ``n`` bytes and ``ops`` operations from the guard's budgets if the
        decision in force lets them go now (one clock read); False takes nothing."""
        g = self.guard
        if not g._go:
            return False
        now = g._now()
        if now >= g._expires:
            return False
        paid = n > 0 and not g._free
        if paid and not g._bytes.try_acquire_at(n, now):
            return False
        if ops and g._ops is not None and not g._ops.try_acquire_at(ops, now):
            if paid:
                g._bytes.untake(n)
            return False
        return True

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
        return self.guard._window_deadline(now_dt)

    def blackout_end(self, now_dt: datetime) -> datetime | None:
        return self.guard._blackout_end(now_dt)

    # slots and priority
    def enter(self, s: Session, timeout: float | None) -> None:
        self.guard._enter(s, timeout)

    async def enter_async(self, s: Session, timeout: float | None) -> None:
        await self.guard._aenter(s, timeout)

    def exit(self, s: Session, exc: BaseException | None) -> None:
        self.guard._exit(s, exc)

    def priority(self) -> tuple[int, bool]:
        return self.guard._nice, self.guard._ionice


class _Lazy:
    """A protected call's session, opened only if the call asks for it (through
    :func:`current_session`): with the call's cost counted and prepaid already."""

    __slots__ = ("guard", "n", "name", "ops", "prepaid", "session", "token")

    def __init__(self, guard: Guard, name: str, n: float, ops: int) -> None:
        self.guard = guard
        self.name = name
        self.n = n
        self.ops = ops
        self.session: Session | None = None
        self.prepaid: Any = None
        self.token = _CURRENT.set(self)

    def __call__(self) -> Session | None:
        s = self.session
        if s is None:
            s = self.session = self.guard.session(self.name)
            s.__enter__()
            s._led.count(self.n, self.ops)  # taken from the budgets before the call
            self.prepaid = Prepaid(s, self.n).enter()
        return s

    def close(self, exc: BaseException | None) -> None:
        """The call ended (with ``exc``, if it raised): end its session, if opened."""
        s = self.session
        try:
            if s is not None:
                with contextlib.suppress(ValueError):  # left from another context
                    Prepaid.leave(self.prepaid)
                s.__exit__(None if exc is None else type(exc), exc, None)
        finally:
            with contextlib.suppress(ValueError):
                _CURRENT.reset(self.token)


def enter_lazy(guard: Guard, name: str, n: float, ops: int) -> _Lazy:
    """Make the calling context a protected call's, whose session (named ``name``,
    ``n`` bytes and ``ops`` operations already taken) opens only if asked for; end it
    with ``close(exc)``."""
    return _Lazy(guard, name, n, ops)


# -- building a session ---------------------------------------------------------------------


def _aware(field: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigError(field, value, "an aware datetime (with tzinfo)")
    return value


DeadlineSpec = datetime | float | str | None


def _deadline_spec(deadline: object, has_calendar: bool) -> DeadlineSpec:
    if deadline is None or isinstance(deadline, datetime):
        return None if deadline is None else _aware("deadline", deadline)
    if isinstance(deadline, str) and deadline.strip().lower() == "window":
        if not has_calendar:
            raise ConfigError("deadline", deadline, "a datetime or duration (no calendar)")
        return "window"
    if isinstance(deadline, (int, float, str)) and not isinstance(deadline, bool):
        seconds = parse_duration(deadline, field="deadline")
        if not seconds > 0:
            raise ConfigError("deadline", deadline, "a duration > 0")
        return seconds
    raise ConfigError("deadline", deadline, "an aware datetime, a duration, 'window' or None")


def _cap(
    value: float | str | None, field: str, what: str, clock: Any, ops: bool = False
) -> TokenBucketThrottler | None:
    if value is None:
        return None
    rate = parse_rate(value, field=field)
    if not rate > 0:
        raise ConfigError(field, value, f"{what} > 0, or None")
    if rate == _INF:
        return None
    if ops:
        return TokenBucketThrottler(rate, burst=max(1.0, rate), clock=clock)
    return TokenBucketThrottler(rate, clock=clock)


# -- the session --------------------------------------------------------------------------


class Session:
    """One backup job under a guard. Create it with :meth:`Guard.session`.

    Use it as ``with guard.session(...) as s`` or ``async with``; entering takes a
    concurrency slot (waiting in FIFO order), leaving frees it, also when the body
    raises.

    Example::

        >>> from wedguard import Guard
        >>> from wedguard.testing import FakeClock
        >>> guard = Guard(rate="10MB/s", calendar=None, sources=[], sinks=[],
        ...               clock=FakeClock())
        >>> with guard.session("photos", expected_bytes="4MB") as s:
        ...     _ = s.throttle(2_000_000)     # within the burst: no wait
        ...     s.throttle(2_000_000)         # waits for the rate
        0.2
        >>> s.report().bytes
        4000000.0

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "__weakref__",
        "_bucket",
        "_clear",
        "_closed",
        "_ctx",
        "_deadline_spec",
        "_error",
        "_guard",
        "_lean",
        "_lease",
        "_led",
        "_on_deadline",
        "_ops_bucket",
        "_outcome",
        "_port",
        "_priority",
        "_priority_tid",
        "_quick",
        "_slot",
        "_slot_timeout",
        "_started",
        "name",
    )

    def __init__(
        self,
        guard: Guard,
        name: str,
        *,
        deadline: DeadlineSpec = None,
        expected_bytes: float | str | None = None,
        rate: float | str | None = None,
        ops_rate: float | str | None = None,
        max_duration: float | str | None = None,
        max_bytes: float | str | None = None,
        stop_at: datetime | None = None,
        cutoff: Cutoff | str = Cutoff.HARD,
        on_deadline: Literal["raise", "wait"] = "raise",
        slot_timeout: float | str | None = None,
        cutoff_mode: Cutoff | str | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError("name", name, "a non-empty string")
        self.name = name
        self._guard = guard
        self._port = GuardPort(guard)
        clock = guard.clock
        self._deadline_spec = _deadline_spec(deadline, guard.calendar is not None)
        self._bucket = _cap(rate, "rate", "a rate", clock)
        self._ops_bucket = _cap(ops_rate, "ops_rate", "operations per second", clock, ops=True)
        self._led = Ledger.build(
            name,
            expected_bytes=expected_bytes,
            max_duration=max_duration,
            max_bytes=max_bytes,
            stop_at=stop_at,
            cutoff=cutoff if cutoff_mode is None else cutoff_mode,
            field="cutoff" if cutoff_mode is None else "cutoff_mode",
        )
        self._led.start_dt = clock.now()
        if on_deadline not in ("raise", "wait"):
            raise ConfigError("on_deadline", on_deadline, "'raise' or 'wait'")
        self._on_deadline = on_deadline
        self._slot_timeout = (
            None if slot_timeout is None else parse_duration(slot_timeout, field="slot_timeout")
        )
        # the lanes of the hot path (set when the session starts)
        self._lean = False  # nothing but the guard limits: count
        self._quick = False  # the session's cap and cutoffs too, checked inline
        self._clear = -_INF  # before this clock reading no time cutoff can end a call
        self._lease: Any = None  # the fleet's leased bytes, when only they limit beyond the guard
        self._priority: _priority.Applied | None = None
        self._priority_tid = 0
        self._started = False
        self._closed = False
        self._slot: Any = None
        self._ctx: contextvars.Token[Callable[[], Session | None] | None] | None = None
        self._error = ""
        self._outcome = "running"

    # -- the ledger's figures, under the names the guard and the copy loop read ----------

    @property
    def _bytes(self) -> float:
        return self._led.bytes

    @_bytes.setter
    def _bytes(self, value: float) -> None:
        self._led.bytes = value

    @property
    def _ops(self) -> int:
        return self._led.ops

    @property
    def _waits(self) -> dict[str, float]:
        return self._led.waits

    @property
    def _deadline(self) -> datetime | None:
        return self._led.deadline

    @property
    def _expected(self) -> float | None:
        return self._led.expected

    @property
    def _needed(self) -> float | None:
        return self._led.needed

    @_needed.setter
    def _needed(self, value: float | None) -> None:
        self._led.needed = value

    # -- properties ---------------------------------------------------------------------

    @property
    def guard(self) -> Guard:
        """The guard this session runs under."""
        return self._guard

    @property
    def bytes(self) -> float:
        """Bytes throttled so far."""
        return self._led.bytes

    @property
    def ops(self) -> int:
        """Operations counted so far."""
        return self._led.ops

    @property
    def deadline(self) -> datetime | None:
        """The session's deadline as an aware datetime (known once it started)."""
        return self._led.deadline

    @property
    def expected_bytes(self) -> float | None:
        return self._led.expected

    @property
    def needed_rate(self) -> float | None:
        """Bytes/s needed to finish ``expected_bytes`` by the deadline, counting only
        the time the calendar allows (updated by the sampler; None without both)."""
        return self._led.needed

    @property
    def priority(self) -> _priority.Applied | None:
        """The CPU and I/O priority this session's thread runs at, when the guard
        lowers it (``Guard(nice=..., ionice=...)``); None otherwise."""
        return self._priority

    @property
    def active(self) -> bool:
        """True between entering and leaving the session."""
        return self._started and not self._closed

    # -- lifecycle -----------------------------------------------------------------------

    def _begin(self, now: float) -> None:
        """Called by the guard once the slot is held (guard lock held)."""
        port = self._port
        start_dt = port.clock.now()
        spec = self._deadline_spec
        deadline: datetime | None = None
        if spec == "window":
            deadline = port.window_deadline(start_dt)
        elif isinstance(spec, float):
            deadline = start_dt + timedelta(seconds=spec)
        elif isinstance(spec, datetime):
            deadline = spec
        led = self._led
        led.start(now, start_dt, deadline)
        self._started = True
        uncapped = self._bucket is None and self._ops_bucket is None and not led.has_cutoffs
        self._lean = uncapped and not port.fleet  # a shared bucket is asked on every call
        self._quick = not uncapped and not port.fleet
        self._clear = led.clear_until
        if uncapped:
            self._lease = port.lease()  # chunks take leased credit, no Redis
        self._point(now, port.decision)

    def _finish(self, exc: BaseException | None) -> None:
        """Mark the session ended (before the guard frees the slot)."""
        now = self._port.now()
        self._lean = self._quick = False
        self._lease = None
        self._closed = True
        self._led.ended = now
        if exc is None:
            self._outcome = "done"
        elif isinstance(exc, CutoffReached):
            self._outcome, self._error = "cutoff", str(exc)
        elif isinstance(exc, EmergencyStop):
            self._outcome, self._error = "stopped", str(exc)
        else:
            self._outcome = "error"
            self._error = f"{type(exc).__name__}: {exc}"
        self._point(now, self._port.decision)

    def _leave_context(self) -> None:
        token, self._ctx = self._ctx, None
        if token is not None:
            # left from another context than the one it entered: nothing to restore
            with contextlib.suppress(ValueError):
                _CURRENT.reset(token)

    def __enter__(self) -> Session:
        port = self._port
        port.enter(self, self._slot_timeout)
        nice, ionice = port.priority()
        if nice or ionice:
            self._priority = _priority.lower(nice, ionice)
            self._priority_tid = threading.get_native_id()
        self._ctx = _CURRENT.set(weakref.ref(self))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._leave_context()
            self._port.exit(self, exc)
        finally:
            tid, self._priority_tid = self._priority_tid, 0  # once, however often left
            if tid:
                _priority.restore(tid)

    async def __aenter__(self) -> Session:
        await self._port.enter_async(self, self._slot_timeout)
        self._ctx = _CURRENT.set(weakref.ref(self))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._leave_context()
        self._port.exit(self, exc)

    # -- the hot path ----------------------------------------------------------------------

    def throttle(self, n: float, ops: int = 0, *, size: float | None = None) -> float:
        """Wait until ``n`` bytes (and ``ops`` operations) may go; return seconds waited.

        Args:
            n: bytes about to be written or sent.
            ops: operations this call starts (1 per file or request), counted against
                the operations budget; ``ops >= 1`` also starts a new unit for cutoffs.
            size: the whole size of the unit this call starts, when known (for
                CAUTIOUS cutoffs).

        Raises:
            EmergencyStop: the guard was stopped (nothing of ``n`` may be written).
            CutoffReached: a cutoff ends the session.
            DeadlineError: a BLACKOUT covers the deadline (``on_deadline="raise"``).
        """
        if ops == 0 and self._fast(n):
            return 0.0
        return self._throttle_slow(n, ops, size)

    async def throttle_async(self, n: float, ops: int = 0, *, size: float | None = None) -> float:
        """The asyncio form of :meth:`throttle`: waits without blocking the loop.

        .. versionadded:: 0.2.0
           the name ``athrottle`` is deprecated.
        """
        if ops == 0 and self._fast(n):
            return 0.0
        return await self._throttle_slow_async(n, ops, size)

    async def athrottle(self, n: float, ops: int = 0, *, size: float | None = None) -> float:
        """Deprecated: use :meth:`throttle_async` (the same)."""
        deprecated_alias("Session.athrottle", "Session.throttle_async")
        return await self.throttle_async(n, ops, size=size)

    def _fast(self, n: float) -> bool:
        """The fast lanes of a call without operations: when nothing binds, count ``n``
        and say True; else False (the slow path decides). One clock read at most."""
        g = self._guard  # the five hot fields (see GuardPort)
        try:
            if 0 <= n < _INF and n is not True and n is not False:
                if self._lean:
                    # nothing limits beyond the guard, and nothing can change before a
                    # new decision: take from the guard's bucket, or just count
                    if g._free:
                        self._led.bytes += n
                        return True
                    if g._go:
                        now = g._now()
                        if now < g._expires and g._bytes.try_acquire_at(n, now):
                            self._led.bytes += n
                            return True
                elif self._quick and g._go:
                    # the session's own cap and cutoffs, checked inline
                    led = self._led
                    now = g._now()
                    if now < g._expires and now < self._clear and led.bytes + n < led.byte_limit:
                        cap = self._bucket
                        if cap is None or cap.try_acquire_at(n, now):
                            if g._free or g._bytes.try_acquire_at(n, now):
                                led.bytes += n
                                return True
                            if cap is not None:
                                cap.untake(n)  # the guard's budget binds: the slow path waits
        except TypeError:  # n is not a number: the slow path says so (ConfigError)
            pass
        return False

    # -- the slow path: one core, a driver for threads and one for asyncio ------------------

    def _flow(self, r: Reservation) -> Generator[float, None, float]:
        """The slow path's decisions, run with the guard's lock held: yields how long to
        wait (the driver waits, lock released or not, and resumes it with the lock
        held); returns the seconds waited in all once the call may go."""
        now_of = self._port.now
        led = self._led
        start = now = now_of()
        try:
            while True:
                timeout, cause = self._step(r, now)
                if timeout <= 0:
                    break
                led.note(r, cause, now)
                try:
                    yield timeout
                finally:
                    after = now_of()
                    led.waited(cause, after - now)
                    now = after
        finally:
            led.note(r, "", now_of())
        led.count(r.n, r.ops)
        return now - start

    def _throttle_slow(self, n: float, ops: int, size: float | None) -> float:
        lease = self._lease
        if lease is not None and ops == 0 and self._take_leased(lease, n):
            return 0.0
        check_units(n, ops, size)
        port = self._port
        flow = self._flow(Reservation(n, ops, size))
        leased = port.leased
        if leased:
            port.fleet_refresh(n, ops)  # a Redis round trip, if one is due: not under the lock
        try:
            with port.cond:
                try:
                    timeout = next(flow)
                    while True:
                        try:
                            port.wait(timeout)
                        except BaseException:
                            flow.close()
                            raise
                        timeout = flow.send(None)
                except StopIteration as done:
                    return float(done.value)
        finally:
            if leased:
                port.fleet_refresh()  # e.g. a rate the step set, out to Redis (lock released)

    async def _throttle_slow_async(self, n: float, ops: int, size: float | None) -> float:
        lease = self._lease
        if lease is not None and ops == 0 and self._take_leased(lease, n):
            return 0.0
        check_units(n, ops, size)
        port = self._port
        if port.leased and port.fleet_due(n, ops):
            await asyncio.to_thread(port.fleet_refresh, n, ops)  # Redis: off the loop
        flow = self._flow(Reservation(n, ops, size))
        loop = asyncio.get_running_loop()
        try:
            with port.cond:
                timeout = next(flow)
                entry = port.waiter(loop)
            while True:
                try:
                    await port.wait_async(entry[1], timeout)
                except BaseException:
                    with port.cond:
                        port.unwait(entry)
                        flow.close()
                    raise
                with port.cond:
                    port.unwait(entry)
                    timeout = flow.send(None)
                    entry = port.waiter(loop)
        except StopIteration as done:
            waited = float(done.value)
        if port.leased and port.fleet_due():
            await asyncio.to_thread(port.fleet_refresh)  # e.g. a rate the step set
        return waited

    def _take_leased(self, lease: Any, n: float) -> bool:
        """The fleet's shortcut: nothing but the guard's bucket and the fleet's leased
        credit limit this call, and both have the units now: count (no lock, no Redis)."""
        g = self._guard  # the hot fields (see GuardPort)
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
                    self._led.bytes += n
                    return True
                lease.untake(n)
        except TypeError:  # n is not a number: the slow path says so (ConfigError)
            pass
        return False

    def _step(self, r: Reservation, now: float) -> tuple[float, str]:
        """Decide (guard lock held) whether the call may go: (0, "") or (wait, cause)."""
        port = self._port
        if r.reserved:
            r.advance(now)
        if now >= port.expires:
            port.refresh(now)
        if r.reserved:
            r.rerate(not port.go)
        if self._closed or not self._started:
            raise WedguardError(
                f"session {self.name!r} is not active: use it inside 'with guard.session(...)'"
            )
        d = port.decision
        if port.stopped:
            raise EmergencyStop(d.stop_reason)
        led = self._led
        # a HARD time cutoff ends the session also while it waits
        hard_limit = led.hard_limit
        if now >= hard_limit:
            raise CutoffReached(self.name, led.limit_name, led.mode)
        if not port.go:
            return self._paused(r, now, d, hard_limit)
        if not r.reserved:
            if led.has_cutoffs:
                rate = d.rate if self._bucket is None else min(d.rate, self._bucket.rate)
                led.check(r.n, r.ops, r.size, now, rate)
            if r.ops:
                led.units = True
            g_bytes, g_ops, f_bytes, f_ops = port.budgets()
            r.reserve(
                now,
                [
                    (g_bytes, r.n, True),
                    (g_ops, r.ops, True),
                    (self._bucket, r.n, False),
                    (self._ops_bucket, r.ops, False),
                    # the fleet's shared budgets (Redis); they keep earning while this
                    # host pauses, as the other hosts go on
                    (f_bytes, r.n, False),
                    (f_ops, r.ops, False),
                ],
            )
        wait = r.remaining()
        if wait <= 1e-9:  # below the clock's resolution: done
            return 0.0, ""
        return min(wait, port.expires - now, hard_limit - now), "rate"

    def _paused(
        self, r: Reservation, now: float, d: Decision, hard_limit: float
    ) -> tuple[float, str]:
        """The guard pauses (blackout, halt, hold): how long, and why."""
        port = self._port
        cause = port.pause_cause()
        if cause == "calendar" and r.cause != "calendar":
            self._check_blackout_deadline()
        r.reason = d.reasons[0] if d.reasons else ""
        until = min(port.expires, hard_limit)
        since, max_hold = port.hold()
        if cause == "impact" and since is not None and max_hold < _INF:
            # held back for production's sake: not forever (max_hold)
            if now >= since + max_hold:
                raise HoldTimeout(now - since, r.reason)
            until = min(until, since + max_hold)
        return until - now, cause

    def _check_blackout_deadline(self) -> None:
        deadline = self._led.deadline
        if deadline is None or self._on_deadline != "raise":
            return
        port = self._port
        end = port.blackout_end(port.clock.now())
        if end is None or deadline <= end:
            until = "indefinitely" if end is None else f"until {end.isoformat()}"
            raise DeadlineError(self.name, deadline, f"the calendar is BLACKOUT {until}")

    # -- bookkeeping --------------------------------------------------------------------------

    def _point(self, now: float, d: Any) -> None:
        """Append a timeline point (guard lock held or session thread)."""
        self._led.point(now, d.rate, d.level, d.verdict)

    def report(self) -> SessionReport:
        """What the session did so far (or in all, once it ended)."""
        port = self._port
        led = self._led
        with port.cond:
            ended = led.ended is not None
            now = port.now() if led.ended is None else led.ended
            return led.report(
                now,
                started=self._started,
                ended=ended,
                decision=port.decision,
                outcome=self._outcome,
                error=self._error,
            )

    def copyfileobj(self, src: Any, dst: Any, length: int = 1 << 20) -> int:
        """Copy ``src`` to ``dst`` in chunks of ``length``, throttled; return the bytes
        written (see :func:`wedguard.io.copy.copy_stream`)."""
        from wedguard.io.copy import check_chunk_size, copy_stream

        return copy_stream(self, src, dst, check_chunk_size(length, "length"))

    def __repr__(self) -> str:
        state = "active" if self.active else ("ended" if self._closed else "new")
        return f"Session({self.name!r}, {state}, bytes={self._led.bytes:g})"


def _release_slot(guard_ref: weakref.ref[Guard], token: Any) -> None:
    """weakref finalizer: a session that was never left still frees its slot."""
    guard = guard_ref()
    if guard is not None:
        guard._release(token)
