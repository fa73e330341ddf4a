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
    SlotTimeout,
    WedguardError,
    renamed,
)
from wedguard.io import priority as _priority
from wedguard.policy.bucket import LEASE_SPAN
from wedguard.policy.ledger import (
    CAUSES,
    PEAK_WINDOW,
    Cutoff,
    CutoffReached,
    DeadlineError,
    DeadlineSpec,
    Ledger,
    Pause,
    Reservation,
    SessionReport,
    TimelinePoint,
    check_units,
    parse_deadline,
)
from wedguard.runtime.guard_port import GuardPort
from wedguard.units import parse_duration

if TYPE_CHECKING:
    from wedguard.decision import Decision
    from wedguard.runtime.guard import Guard

__all__ = [
    "CAUSES",
    "PEAK_WINDOW",
    "Cutoff",
    "CutoffReached",
    "DeadlineError",
    "DeadlineSpec",
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


__getattr__ = renamed(__name__, {"CutoffMode": "Cutoff"}, globals())


# -- the session --------------------------------------------------------------------------


def _figure(name: str, settable: bool = False) -> Any:
    """A property reading (and writing) the ledger's field ``name``."""

    def get(self: Session) -> Any:
        return getattr(self._led, name)

    def put(self: Session, value: Any) -> None:
        setattr(self._led, name, value)

    return property(get, put if settable else None, doc=f"The ledger's ``{name}``.")


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
        "_credit",
        "_ctx",
        "_deadline_spec",
        "_guard",
        "_hot",
        "_lean",
        "_lean_ops",
        "_lease",
        "_led",
        "_lent",
        "_on_deadline",
        "_ops_bucket",
        "_port",
        "_priority",
        "_priority_tid",
        "_quick",
        "_slot",
        "_slot_timeout",
        "_started",
        "_until",
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
        lower_thread: bool = True,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError("name", name, "a non-empty string")
        self.name = name
        self._guard = guard
        self._port = GuardPort(guard)
        # the guard's core, as sessions see it (SessionHost): the hot path reads its
        # decision flags, its clock and its byte bucket directly
        self._hot: Any = guard.host  # a SessionHost whose bytes is a TokenBucketThrottler
        clock = guard.clock
        self._deadline_spec = parse_deadline(deadline, guard.calendar is not None)
        self._led = Ledger.build(
            name,
            expected_bytes=expected_bytes,
            max_duration=max_duration,
            max_bytes=max_bytes,
            stop_at=stop_at,
            cutoff=cutoff if cutoff_mode is None else cutoff_mode,
            field="cutoff" if cutoff_mode is None else "cutoff_mode",
            rate=rate,
            ops_rate=ops_rate,
            clock=clock,
        )
        self._bucket = self._led.cap  # the session's own caps (read on the hot path)
        self._ops_bucket = self._led.ops_cap
        self._led.start_dt = clock.now()
        if on_deadline not in ("raise", "wait"):
            raise ConfigError("on_deadline", on_deadline, "'raise' or 'wait'")
        self._on_deadline = on_deadline
        self._slot_timeout = (
            None if slot_timeout is None else parse_duration(slot_timeout, field="slot_timeout")
        )
        # the lanes of the hot path (set when the session starts)
        self._lean = False  # nothing but the guard limits: count
        self._lean_ops = False  # lean, and the guard has no operations budget either
        self._quick = False  # the session's cap and cutoffs too, checked inline
        self._clear = -_INF  # before this clock reading no time cutoff can end a call
        self._lease: Any = None  # the fleet's leased bytes, when only they limit beyond the guard
        # credit taken from the buckets in blocks, spent by the hot path without a lock
        # (see _refill); good until _until, or until the guard decides anew (revoke)
        self._credit = 0.0
        self._until = -_INF
        self._lent: tuple[Any, ...] = ()  # the buckets the credit was taken from
        self._priority: _priority.Applied | None = None
        self._priority_tid = 0 if lower_thread else -1  # the lowered thread; -1: none
        self._started = False
        self._closed = False
        self._slot: Any = None
        self._ctx: contextvars.Token[Callable[[], Session | None] | None] | None = None

    # -- the ledger's figures, under the names the guard and the copy loop read ----------

    _bytes = _figure("bytes", settable=True)
    _ops = _figure("ops")
    _waits = _figure("waits")
    _deadline = _figure("deadline")
    _expected = _figure("expected")
    _needed = _figure("needed", settable=True)

    @property
    def ledger(self) -> Ledger:
        """The session's ledger: its cutoffs, caps and accounts (read it under the
        guard's lock, or from the session's own thread)."""
        return self._led

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
    def chunk_size(self) -> int:
        """The chunk size (bytes) to read and write now: :attr:`Guard.chunk_size`.

        .. versionadded:: 0.3.0
        """
        return self._guard.chunk_size

    @property
    def shaped(self) -> bool:
        """True when the guard shapes chunks (``Guard(shaping=...)``): a copy then reads
        :attr:`chunk_size` again before every chunk."""
        return self._guard.shaper is not None

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
        self._lean_ops = self._lean and self._hot.ops is None
        self._quick = not uncapped and not port.fleet
        self._clear = led.clear_until
        if uncapped:
            self._lease = port.lease()  # chunks take leased credit, no Redis
        self._point(now, port.decision)

    def _finish(self, exc: BaseException | None) -> None:
        """Mark the session ended (before the guard frees the slot)."""
        now = self._port.now()
        self._lean = self._lean_ops = self._quick = False
        self._lease = None
        self._give_back()
        self._closed = True
        self._led.end(now, exc)
        self._point(now, self._port.decision)

    def _leave_context(self) -> None:
        token, self._ctx = self._ctx, None
        if token is not None:
            # left from another context than the one it entered: nothing to restore
            with contextlib.suppress(ValueError):
                _CURRENT.reset(token)

    def __enter__(self) -> Session:
        self._port.enter(self, self._slot_timeout)
        return self._entered()

    def _adopt(self, slot: Any) -> Session:
        """Enter on ``slot``, which the protected call this session is opened for holds
        (the session takes it over: no wait, no second slot)."""
        self._port.adopt(self, slot)
        return self._entered()

    def _entered(self) -> Session:
        port = self._port
        nice, ionice, sched_idle, cpus = port.priority()
        if self._priority_tid >= 0 and (nice or ionice or sched_idle or cpus is not None):
            self._priority = _priority.lower(nice, ionice, sched_idle, cpus)
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
            if tid > 0:
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
        if ops == 0:
            if self._fast(n):
                return 0.0
        elif self._lean_ops and ops.__class__ is int and ops > 0 and self._fast(n):
            self._led.count(0.0, ops)  # nothing limits operations: they are counted
            return 0.0
        return self._throttle_slow(n, ops, size)

    async def throttle_async(self, n: float, ops: int = 0, *, size: float | None = None) -> float:
        """The asyncio form of :meth:`throttle`: waits without blocking the loop.

        .. versionadded:: 0.2.0
           the name ``athrottle`` is deprecated.
        """
        if ops == 0:
            if self._fast(n):
                return 0.0
        elif self._lean_ops and ops.__class__ is int and ops > 0 and self._fast(n):
            self._led.count(0.0, ops)
            return 0.0
        return await self._throttle_slow_async(n, ops, size)

    async def athrottle(self, n: float, ops: int = 0, *, size: float | None = None) -> float:
        """Deprecated: use :meth:`throttle_async` (the same)."""
        deprecated_alias("Session.athrottle", "Session.throttle_async")
        return await self.throttle_async(n, ops, size=size)

    def _fast(self, n: float) -> bool:
        """The fast lanes of a call without operations: when nothing binds, count ``n``
        and say True; else False (the slow path decides). One clock read at most, and
        no lock while the credit taken in blocks lasts."""
        g = self._hot  # the hot fields of the guard's core (see SessionHost)
        try:
            if 0 <= n < _INF and n is not True and n is not False:
                if self._lean:
                    # nothing limits beyond the guard, and nothing can change before a
                    # new decision: spend the credit taken from its bucket, or just count
                    if g.free:
                        self._led.bytes += n
                        return True
                    if g.go:
                        now = g.now()
                        if (n <= self._credit and now < self._until) or self._refill(n, now):
                            self._credit -= n
                            self._led.bytes += n
                            return True
                elif self._quick and g.go:
                    # the session's own cap and cutoffs, checked inline
                    led = self._led
                    now = g.now()
                    if (
                        now < self._clear
                        and led.bytes + n < led.byte_limit
                        and ((n <= self._credit and now < self._until) or self._refill(n, now))
                    ):
                        self._credit -= n
                        led.bytes += n
                        return True
        except TypeError:  # n is not a number: the slow path says so (ConfigError)
            pass
        return False

    def _refill(self, n: float, now: float) -> bool:
        """Take new credit, for ``n`` bytes at least, from the buckets that limit the
        session now (its cap, the guard's bucket unless nothing limits); False, and
        nothing taken, when one of them has not got ``n`` now or the decision expired.

        While nothing binds a block is taken (:meth:`TokenBucketThrottler.lease`: about
        10 ms of the slowest rate), so the hot path asks a bucket (and takes its lock)
        once per block instead of once per chunk; while a bucket binds, exactly ``n``.
        What is left is given back first, so credit never piles up. Taken under the
        guard's lock, so that a new decision cannot slip between reading its expiry and
        keeping the credit (the new decision revokes it)."""
        with self._port.cond:
            self._give_back()
            g = self._hot
            caps = (self._bucket, None if g.free else g.bytes)
            buckets = tuple(b for b in caps if b is not None)
            got = _lease_block(buckets, n, now) if now < g.expires else 0.0
            if got:
                self._credit, self._lent, self._until = got, buckets, g.expires
            return bool(got)

    def _give_back(self) -> None:
        """Return the credit not spent to the buckets it was taken from."""
        credit, lent = self._credit, self._lent
        self._credit, self._lent, self._until = 0.0, (), -_INF
        if credit > 0 and credit < _INF:
            for b in lent:
                b.untake(credit)

    def _revoke(self) -> None:
        """The guard decided anew (guard lock held): the credit taken under the old
        decision is not spent any more (the next call gives it back and takes anew)."""
        self._until = -_INF

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
        if lease is not None and ops == 0 and self._port.take_leased(lease, n):
            self._led.bytes += n
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
        if lease is not None and ops == 0 and self._port.take_leased(lease, n):
            self._led.bytes += n
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
            now = port.now() if led.ended is None else led.ended
            return led.report(now, started=self._started, decision=port.decision)

    def copyfileobj(self, src: Any, dst: Any, length: int = 1 << 20) -> int:
        """Copy ``src`` to ``dst`` in chunks of ``length``, throttled; return the bytes
        written (see :func:`wedguard.io.copy.copy_stream`)."""
        from wedguard.io.copy import check_chunk_size, copy_stream

        return copy_stream(self, src, dst, check_chunk_size(length, "length"))

    def refund(self, n: float) -> None:
        """``n`` bytes that :meth:`throttle` counted were never written (a write that
        failed): they come off the count, so the report says what was written."""
        with self._guard._cond:
            self._bytes -= n

    def count(self, n: float) -> None:
        """Count ``n`` bytes moved without :meth:`throttle` (a guarded child's I/O, read
        from its counters); nothing waits."""
        self._bytes += n

    def __repr__(self) -> str:
        state = "active" if self.active else ("ended" if self._closed else "new")
        return f"Session({self.name!r}, {state}, bytes={self._led.bytes:g})"


def _lease_block(buckets: tuple[Any, ...], n: float, now: float) -> float:
    """One credit for ``n`` bytes at least, taken from every bucket in ``buckets``
    (each :meth:`~wedguard.TokenBucketThrottler.lease`: a block of about 10 ms of the
    slowest rate while nothing binds); 0, and nothing taken, when one has not got
    ``n`` now; ``inf`` from no bucket at all."""
    if not buckets:
        return _INF
    got: float = max(n, LEASE_SPAN * min(b.rate for b in buckets))
    taken: list[tuple[Any, float]] = []
    for b in buckets:
        amount: float = b.lease(n, got, now)
        if not amount:
            for tb, ta in taken:
                tb.untake(ta)
            return 0.0
        taken.append((b, amount))
        got = min(got, amount)
    for b, amount in taken:  # the blocks made equal: one credit for all
        if amount > got:
            b.untake(amount - got)
    return got


def _release_slot(guard_ref: weakref.ref[Guard], token: Any) -> None:
    """weakref finalizer: a session that was never left still frees its slot."""
    guard = guard_ref()
    if guard is not None:
        guard._release(token)
