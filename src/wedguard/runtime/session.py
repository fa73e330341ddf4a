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
import enum
import math
import threading
import weakref
from collections.abc import Mapping
from datetime import datetime, timedelta
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs

from wedguard.errors import (
    ConfigError,
    EmergencyStop,
    HoldTimeout,
    ThrottleTimeout,
    WedguardError,
)
from wedguard.interfaces import Throttler
from wedguard.io import priority as _priority
from wedguard.levels import Level, Verdict
from wedguard.policy.bucket import TokenBucketThrottler
from wedguard.units import (
    format_duration,
    format_rate,
    format_size,
    parse_duration,
    parse_rate,
    parse_size,
)

if TYPE_CHECKING:
    from wedguard.runtime.guard import Guard

__all__ = [
    "CAUSES",
    "Cutoff",
    "CutoffMode",
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

CAUSES: Final = ("rate", "calendar", "impact", "slots", "stop")
"""The causes a session's waiting time is attributed to."""

_PAUSE_CAUSES: Final = frozenset({"calendar", "impact", "stop"})

# a weak reference, so that a session entered and then abandoned can still be
# collected (and its slot freed)
_CURRENT: contextvars.ContextVar[weakref.ref[Session] | None] = contextvars.ContextVar(
    "wedguard_session", default=None
)


def current_session() -> Session | None:
    """The session the calling thread or task is inside (``with guard.session()``), if any.

    ``guard.protect``, ``guard.wrap`` and ``guard.copyfileobj`` join it rather than
    opening a session of their own (which would take a second concurrency slot).
    """
    ref = _CURRENT.get()
    return None if ref is None else ref()


_MAX_TIMELINE: Final = 20_000


# -- errors ---------------------------------------------------------------------------


class DeadlineError(WedguardError):
    """The session cannot meet its deadline: a BLACKOUT window covers it.

    Raised inside ``throttle()`` when the session's ``on_deadline`` is ``"raise"``
    (the default). With ``on_deadline="wait"`` the session sleeps through the blackout
    instead and the deadline-risk alert tells people.

    Attributes:
        session: the session's name.
        deadline: the deadline (aware datetime).
        reason: what makes it unreachable.
    """

    def __init__(self, session: str, deadline: datetime, reason: str) -> None:
        self.session = session
        self.deadline = deadline
        self.reason = reason
        super().__init__(f"session {session!r} cannot finish by {deadline.isoformat()}: {reason}")


class Cutoff(enum.Enum):
    """How a cutoff (``max_duration``, ``max_bytes``, ``stop_at``) ends a session.

    As rclone's ``--cutoff-mode``:

    * ``HARD``: stop now: the call that would cross the limit raises.
    * ``SOFT``: finish the current unit, start no new one.
    * ``CAUTIOUS``: do not start a unit that would cross the limit.

    A *unit* starts with a call ``throttle(n, ops=1)`` (a file, a request); a session
    that never counts operations treats every ``throttle()`` call as a unit. Give the
    whole unit's size with ``throttle(n, ops=1, size=...)`` so CAUTIOUS can judge it.
    """

    HARD = "hard"
    SOFT = "soft"
    CAUTIOUS = "cautious"

    def __str__(self) -> str:
        return self.name


CutoffMode = Cutoff
"""Another name for :class:`Cutoff`, after rclone's ``--cutoff-mode``."""


class CutoffReached(WedguardError):
    """A session's cutoff ended it. Everything before the cutoff was delivered.

    Attributes:
        session: the session's name.
        limit: ``"max_bytes"``, ``"max_duration"`` or ``"stop_at"``.
        mode: the :class:`Cutoff` mode that applied.
    """

    def __init__(self, session: str, limit: str, mode: Cutoff) -> None:
        self.session = session
        self.limit = limit
        self.mode = mode
        super().__init__(f"session {session!r}: {limit} cutoff reached ({mode.name})")


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


# -- report value types ---------------------------------------------------------------


@attrs.frozen(slots=True)
class TimelinePoint:
    """One point of a session's timeline, for plotting.

    Attributes:
        t: seconds since the session started.
        bytes: bytes throttled so far.
        rate: the rate allowed at that moment (bytes/s; ``inf`` unlimited; 0 paused).
        level: the calendar level.
        verdict: the impact verdict.
    """

    t: float
    bytes: float
    rate: float
    level: Level
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "bytes": self.bytes,
            "rate": "inf" if math.isinf(self.rate) else self.rate,
            "level": self.level.name,
            "verdict": self.verdict.name,
        }


@attrs.frozen(slots=True)
class Pause:
    """One stretch of time a session spent paused.

    Attributes:
        cause: ``"calendar"`` (blackout), ``"impact"`` (halt) or ``"stop"`` (hold).
        started_at: when it began (aware datetime).
        duration: how long it lasted, in seconds.
        reason: the decision's first reason at the time.
    """

    cause: str
    started_at: datetime
    duration: float
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "cause": self.cause,
            "started_at": self.started_at.isoformat(),
            "duration_s": self.duration,
            "reason": self.reason,
        }


def _freeze_waits(value: Mapping[str, float]) -> Mapping[str, float]:
    waits = dict.fromkeys(CAUSES, 0.0)
    waits.update(value)
    return MappingProxyType(waits)


@attrs.frozen(slots=True)
class SessionReport:
    """What a session did: bytes, time, time waited and why, rates, timeline.

    Also an event (``kind == "session"``): the guard sends the final report to its
    sinks when the session ends.

    Attributes:
        name: the session's name.
        bytes: bytes throttled (and so, by the host, written).
        ops: operations counted (files, requests).
        started_at: when the session started (aware datetime).
        finished_at: when it ended; None while it runs.
        duration: wall time in seconds (so far, while it runs).
        wait_seconds: seconds waited by cause: ``rate``, ``calendar``, ``impact``,
            ``slots``, ``stop``.
        pauses: how many times the session was paused (blackout, halt, hold).
        pause_log: those pauses, in order.
        peak_rate: the highest mean rate over any stretch of at least 5 s (bytes/s;
            the mean rate for shorter sessions).
        mean_rate: bytes / duration.
        ok: True unless the session ended with an error (a cutoff counts as ok).
        outcome: ``"running"``, ``"done"``, ``"cutoff"``, ``"stopped"`` or ``"error"``.
        error: the error's text, if any.
        expected_bytes: as declared, if any.
        deadline: the deadline (aware datetime), if any.
        needed_rate: the rate needed to meet the deadline, at the last sample.
        timeline: (t, bytes, allowed rate, level, verdict) points for plotting.

    Example::

        >>> from wedguard import Guard
        >>> from wedguard.testing import FakeClock
        >>> guard = Guard(rate="1MB/s", calendar=None, sources=[], sinks=[],
        ...               clock=FakeClock())
        >>> with guard.session("demo") as s:
        ...     for _ in range(10):
        ...         _ = s.throttle(500_000)
        >>> r = s.report()
        >>> r.bytes, r.duration, r.wait_seconds["rate"]
        (5000000.0, 4.5, 4.5)

    .. versionadded:: 0.1.0
    """

    name: str
    bytes: float
    ops: int
    started_at: datetime
    finished_at: datetime | None
    duration: float
    wait_seconds: Mapping[str, float] = attrs.field(converter=_freeze_waits)
    pauses: int
    pause_log: tuple[Pause, ...]
    peak_rate: float
    mean_rate: float
    ok: bool
    outcome: str
    error: str = ""
    expected_bytes: float | None = None
    deadline: datetime | None = None
    needed_rate: float | None = None
    timeline: tuple[TimelinePoint, ...] = ()

    @property
    def kind(self) -> str:
        return "session"

    @property
    def wall_time(self) -> float:
        """The session's wall time in seconds (same as :attr:`duration`)."""
        return self.duration

    @property
    def waited(self) -> float:
        """Total seconds waited, all causes together."""
        return sum(self.wait_seconds.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (rates ``"inf"`` when unlimited)."""

        def num(v: float | None) -> float | str | None:
            return "inf" if v is not None and math.isinf(v) else v

        return {
            "kind": "session",
            "name": self.name,
            "bytes": self.bytes,
            "ops": self.ops,
            "started_at": self.started_at.isoformat(),
            "finished_at": None if self.finished_at is None else self.finished_at.isoformat(),
            "duration_s": self.duration,
            "wait_seconds": dict(self.wait_seconds),
            "pauses": self.pauses,
            "pause_log": [p.to_dict() for p in self.pause_log],
            "peak_rate": num(self.peak_rate),
            "mean_rate": num(self.mean_rate),
            "ok": self.ok,
            "outcome": self.outcome,
            "error": self.error,
            "expected_bytes": self.expected_bytes,
            "deadline": None if self.deadline is None else self.deadline.isoformat(),
            "needed_rate": num(self.needed_rate),
            "timeline": [p.to_dict() for p in self.timeline],
        }

    def __str__(self) -> str:
        waits = ", ".join(
            f"{k} {format_duration(v)}" for k, v in self.wait_seconds.items() if v > 0
        )
        return (
            f"{self.name}: {format_size(self.bytes)} in {format_duration(self.duration)} "
            f"(mean {format_rate(self.mean_rate)}, peak {format_rate(self.peak_rate)}); "
            f"waited {format_duration(self.waited)}"
            + (f" ({waits})" if waits else "")
            + f"; {self.outcome}"
        )


# -- the session --------------------------------------------------------------------------


class _Pending:
    """One throttle call on the slow path: its reservations and its current wait."""

    __slots__ = (
        "cause",
        "entries",
        "mark",
        "n",
        "ops",
        "pause_start",
        "reason",
        "reserved",
        "size",
    )

    def __init__(self, n: float, ops: int, size: float | None) -> None:
        self.n = n
        self.ops = ops
        self.size = size
        self.reserved = False
        # each entry: [bucket, units still short of the bucket's credit, rate since the
        # mark, whether it is one of the guard's (shared) buckets]
        self.entries: list[list[Any]] = []
        self.mark = 0.0
        self.cause = ""
        self.pause_start = 0.0
        self.reason = ""

    def reserve(self, now: float, items: list[tuple[Throttler | None, float, bool]]) -> None:
        for bucket, amount, shared in items:
            if bucket is None or amount <= 0:
                continue
            wait = bucket.reserve(amount)
            rate = bucket.rate
            if wait > 0 and rate < _INF:
                self.entries.append([bucket, wait * rate if rate > 0 else amount, rate, shared])
        self.reserved = True
        self.mark = now

    def advance(self, now: float) -> None:
        """Count the credit the buckets earned since the last mark (lock held)."""
        elapsed = now - self.mark
        self.mark = now
        if elapsed > 0:
            for e in self.entries:
                if e[1] > 0:
                    e[1] -= e[2] * elapsed

    def rerate(self, paused: bool) -> None:
        """Note the rates in force from now on; the guard's buckets earn nothing while
        the guard is paused (lock held)."""
        for e in self.entries:
            e[2] = 0.0 if paused and e[3] else e[0].rate

    def remaining(self) -> float:
        worst = 0.0
        for e in self.entries:
            short, rate = e[1], e[2]
            if short > 1e-9:
                wait = _INF if rate <= 0 else (0.0 if rate == _INF else short / rate)
                worst = max(worst, wait)
        return worst


PEAK_WINDOW: Final = 5.0
"""Seconds: the peak rate is the highest mean rate over any stretch at least this long.

Bytes are counted a call at a time, so over shorter stretches a single large chunk
would read as a burst the bucket never allowed."""


def _peak_rate(timeline: list[TimelinePoint], window: float) -> float:
    """The highest mean rate over stretches of at least ``window`` seconds."""
    peak = 0.0
    i = 0
    for j in range(1, len(timeline)):
        tj = timeline[j].t
        # the latest anchor still at least a window before point j
        while i + 1 < j and tj - timeline[i + 1].t >= window:
            i += 1
        dt = tj - timeline[i].t
        if dt >= window:
            peak = max(peak, (timeline[j].bytes - timeline[i].bytes) / dt)
    return peak


def _check_units(n: object, ops: object, size: object) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, float)) or not 0 <= n < _INF:
        raise ConfigError("n", n, "a finite number of bytes >= 0")
    if isinstance(ops, bool) or not isinstance(ops, int) or ops < 0:
        raise ConfigError("ops", ops, "a whole number of operations >= 0")
    if size is not None and (
        isinstance(size, bool) or not isinstance(size, (int, float)) or not 0 <= size < _INF
    ):
        raise ConfigError("size", size, "a finite number of bytes >= 0, or None")


def _aware(field: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigError(field, value, "an aware datetime (with tzinfo)")
    return value


DeadlineSpec = datetime | float | str | None


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
        "_byte_limit",
        "_bytes",
        "_closed",
        "_ctx",
        "_cutoff",
        "_deadline",
        "_deadline_alert",
        "_deadline_spec",
        "_end_dt",
        "_end_m",
        "_error",
        "_expected",
        "_guard",
        "_has_cutoffs",
        "_lean",
        "_lease",
        "_limit_at",
        "_limit_name",
        "_max_duration",
        "_needed",
        "_on_deadline",
        "_ops",
        "_ops_bucket",
        "_outcome",
        "_pauses",
        "_priority",
        "_priority_tid",
        "_slot",
        "_slot_timeout",
        "_start_dt",
        "_start_m",
        "_started",
        "_stop_at",
        "_timeline",
        "_units",
        "_waits",
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
        clock = guard.clock
        # deadline
        if deadline is None or isinstance(deadline, datetime):
            self._deadline_spec: DeadlineSpec = (
                None if deadline is None else _aware("deadline", deadline)
            )
        elif isinstance(deadline, str) and deadline.strip().lower() == "window":
            if guard.calendar is None:
                raise ConfigError("deadline", deadline, "a datetime or duration (no calendar)")
            self._deadline_spec = "window"
        elif isinstance(deadline, (int, float, str)) and not isinstance(deadline, bool):
            seconds = parse_duration(deadline, field="deadline")
            if not seconds > 0:
                raise ConfigError("deadline", deadline, "a duration > 0")
            self._deadline_spec = seconds
        else:
            raise ConfigError(
                "deadline", deadline, "an aware datetime, a duration, 'window' or None"
            )
        if expected_bytes is None:
            self._expected: float | None = None
        else:
            self._expected = float(parse_size(expected_bytes, field="expected_bytes"))
        # caps under the guard's budgets
        self._bucket: TokenBucketThrottler | None = None
        self._ops_bucket: TokenBucketThrottler | None = None
        if rate is not None:
            value = parse_rate(rate, field="rate")
            if not value > 0:
                raise ConfigError("rate", rate, "a rate > 0, or None")
            if value < _INF:
                self._bucket = TokenBucketThrottler(value, clock=clock)
        if ops_rate is not None:
            value = parse_rate(ops_rate, field="ops_rate")
            if not value > 0:
                raise ConfigError("ops_rate", ops_rate, "operations per second > 0, or None")
            if value < _INF:
                self._ops_bucket = TokenBucketThrottler(value, burst=max(1.0, value), clock=clock)
        # cutoffs
        self._max_duration = _INF
        if max_duration is not None:
            self._max_duration = parse_duration(max_duration, field="max_duration")
            if not self._max_duration > 0:
                raise ConfigError("max_duration", max_duration, "a duration > 0, or None")
        self._byte_limit = _INF
        if max_bytes is not None:
            self._byte_limit = float(parse_size(max_bytes, field="max_bytes"))
            if not self._byte_limit > 0:
                raise ConfigError("max_bytes", max_bytes, "a size > 0, or None")
        if stop_at is not None and not isinstance(stop_at, datetime):
            raise ConfigError("stop_at", stop_at, "an aware datetime, or None")
        self._stop_at = None if stop_at is None else _aware("stop_at", stop_at)
        field = "cutoff"
        if cutoff_mode is not None:  # rclone's name for it
            cutoff, field = cutoff_mode, "cutoff_mode"
        try:
            self._cutoff = cutoff if isinstance(cutoff, Cutoff) else Cutoff[str(cutoff).upper()]
        except KeyError:
            raise ConfigError(field, cutoff, "HARD, SOFT or CAUTIOUS") from None
        if on_deadline not in ("raise", "wait"):
            raise ConfigError("on_deadline", on_deadline, "'raise' or 'wait'")
        self._on_deadline = on_deadline
        if slot_timeout is None:
            self._slot_timeout: float | None = None
        else:
            self._slot_timeout = parse_duration(slot_timeout, field="slot_timeout")
        self._has_cutoffs = (
            self._max_duration < _INF or self._byte_limit < _INF or self._stop_at is not None
        )
        # state
        self._bytes = 0.0
        self._ops = 0
        self._units = False
        self._lean = False
        self._lease: Any = None  # the fleet's leased bytes, when only they limit beyond the guard
        self._priority: _priority.Applied | None = None
        self._priority_tid = 0
        self._started = False
        self._closed = False
        self._slot: Any = None
        self._ctx: contextvars.Token[weakref.ref[Session] | None] | None = None
        self._waits = dict.fromkeys(CAUSES, 0.0)
        self._pauses: list[Pause] = []
        self._timeline: list[TimelinePoint] = []
        self._error = ""
        self._outcome = "running"
        self._needed: float | None = None
        self._deadline: datetime | None = None
        self._deadline_alert: Any = None
        self._limit_at = _INF
        self._limit_name = ""
        self._start_m = 0.0
        self._end_m: float | None = None
        self._start_dt = clock.now()
        self._end_dt: datetime | None = None

    # -- properties ---------------------------------------------------------------------

    @property
    def guard(self) -> Guard:
        """The guard this session runs under."""
        return self._guard

    @property
    def bytes(self) -> float:
        """Bytes throttled so far."""
        return self._bytes

    @property
    def ops(self) -> int:
        """Operations counted so far."""
        return self._ops

    @property
    def deadline(self) -> datetime | None:
        """The session's deadline as an aware datetime (known once it started)."""
        return self._deadline

    @property
    def expected_bytes(self) -> float | None:
        return self._expected

    @property
    def needed_rate(self) -> float | None:
        """Bytes/s needed to finish ``expected_bytes`` by the deadline, counting only
        the time the calendar allows (updated by the sampler; None without both)."""
        return self._needed

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
        return self._guard.shaping is not None

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
        g = self._guard
        self._start_m = now
        self._start_dt = g.clock.now()
        if self._deadline_spec == "window":
            self._deadline = g._window_deadline(self._start_dt)
        elif isinstance(self._deadline_spec, float):
            self._deadline = self._start_dt + timedelta(seconds=self._deadline_spec)
        elif isinstance(self._deadline_spec, datetime):
            self._deadline = self._deadline_spec
        limit_at, limit_name = now + self._max_duration, "max_duration"
        if self._stop_at is not None:
            at = now + (self._stop_at - self._start_dt).total_seconds()
            if at < limit_at:
                limit_at, limit_name = at, "stop_at"
        self._limit_at, self._limit_name = limit_at, limit_name
        self._started = True
        self._lean = (
            self._bucket is None
            and self._ops_bucket is None
            and not self._has_cutoffs
            and g._fleet is None  # a shared bucket is asked on every call
        )
        if (
            self._bucket is None
            and self._ops_bucket is None
            and not self._has_cutoffs
            and g._fleet_bytes is not None
            and g._fleet_bytes in g._fleet_leases
        ):
            self._lease = g._fleet_bytes  # chunks take leased credit, no Redis
        self._point(now, g._decision)

    def _finish(self, exc: BaseException | None) -> None:
        """Mark the session ended (before the guard frees the slot)."""
        g = self._guard
        now = g._now()
        self._lean = False
        self._lease = None
        self._closed = True
        self._end_m = now
        self._end_dt = self._at(now)
        if exc is None:
            self._outcome = "done"
        elif isinstance(exc, CutoffReached):
            self._outcome, self._error = "cutoff", str(exc)
        elif isinstance(exc, EmergencyStop):
            self._outcome, self._error = "stopped", str(exc)
        else:
            self._outcome = "error"
            self._error = f"{type(exc).__name__}: {exc}"
        self._point(now, g._decision)

    def _leave_context(self) -> None:
        token, self._ctx = self._ctx, None
        if token is not None:
            # left from another context than the one it entered: nothing to restore
            with contextlib.suppress(ValueError):
                _CURRENT.reset(token)

    def __enter__(self) -> Session:
        g = self._guard
        g._enter(self, self._slot_timeout)
        if g._nice or g._ionice or g._sched_idle:
            self._priority = _priority.lower(g._nice, g._ionice, g._sched_idle)
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
            self._guard._exit(self, exc)
        finally:
            tid, self._priority_tid = self._priority_tid, 0  # once, however often left
            if tid:
                _priority.restore(tid)

    async def __aenter__(self) -> Session:
        await self._guard._aenter(self, self._slot_timeout)
        self._ctx = _CURRENT.set(weakref.ref(self))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._leave_context()
        self._guard._exit(self, exc)

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
        g = self._guard
        try:
            # nothing limits and nothing can change before a new decision: count
            if (
                g._free
                and ops == 0
                and self._lean
                and 0 <= n < _INF
                and n is not True
                and n is not False
            ):
                self._bytes += n
                return 0.0
            if (
                ops == 0
                and self._lean
                and g._go
                and 0 <= n < _INF
                and g._now() < g._expires
                and g._bytes.try_acquire(n)
            ):
                self._bytes += n
                return 0.0
        except TypeError:  # n is not a number: the slow path says so (ConfigError)
            pass
        return self._throttle_slow(n, ops, size)

    async def athrottle(self, n: float, ops: int = 0, *, size: float | None = None) -> float:
        """The asyncio form of :meth:`throttle`: waits without blocking the loop."""
        # throttle()'s two shortcuts, written out again: a shared helper would add a
        # call to every chunk of both
        g = self._guard
        try:
            # nothing limits and nothing can change before a new decision: count
            if (
                g._free
                and ops == 0
                and self._lean
                and 0 <= n < _INF
                and n is not True
                and n is not False
            ):
                self._bytes += n
                return 0.0
            if (
                ops == 0
                and self._lean
                and g._go
                and 0 <= n < _INF
                and g._now() < g._expires
                and g._bytes.try_acquire(n)
            ):
                self._bytes += n
                return 0.0
        except TypeError:  # n is not a number: the slow path says so (ConfigError)
            pass
        return await self._athrottle_slow(n, ops, size)

    # -- the slow path ---------------------------------------------------------------------

    def _throttle_slow(self, n: float, ops: int, size: float | None) -> float:
        g = self._guard
        lease = self._lease
        if lease is not None and ops == 0 and self._take_leased(lease, n):
            return 0.0
        _check_units(n, ops, size)
        p = _Pending(n, ops, size)
        leased = bool(g._fleet_leases)
        if leased:
            g._fleet_refresh(n, ops)  # a Redis round trip, if one is due: not under the lock
        try:
            with g._cond:
                start = now = g._now()
                try:
                    while True:
                        timeout, cause = self._step(p, now)
                        if timeout <= 0:
                            break
                        self._note(p, cause, now)
                        g._wait(timeout)
                        after = g._now()
                        self._waits[cause] += after - now
                        now = after
                finally:
                    self._note(p, "", g._now())
                self._bytes += n
                self._ops += ops
                return now - start
        finally:
            if leased:
                g._fleet_refresh()  # e.g. a rate the step set, out to Redis (lock released)

    def _take_leased(self, lease: Any, n: float) -> bool:
        """The fleet's shortcut: nothing but the guard's bucket and the fleet's leased
        credit limit this call, and both have the units now: count (no lock, no Redis)."""
        g = self._guard
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
                    self._bytes += n
                    return True
                lease.untake(n)
        except TypeError:  # n is not a number: the slow path says so (ConfigError)
            pass
        return False

    async def _athrottle_slow(self, n: float, ops: int, size: float | None) -> float:
        lease = self._lease
        if lease is not None and ops == 0 and self._take_leased(lease, n):
            return 0.0
        _check_units(n, ops, size)
        g = self._guard
        p = _Pending(n, ops, size)
        if g._fleet_leases and g._fleet_due(n, ops):
            await asyncio.to_thread(g._fleet_refresh, n, ops)  # Redis: off the loop
        start = now = g._now()
        loop = asyncio.get_running_loop()
        try:
            while True:
                with g._cond:
                    now = g._now()
                    timeout, cause = self._step(p, now)
                    if timeout <= 0:
                        self._bytes += n
                        self._ops += ops
                        break
                    self._note(p, cause, now)
                    fut: asyncio.Future[None] = loop.create_future()
                    entry = (loop, fut)
                    g._async_waiters.add(entry)
                try:
                    await g._await(fut, timeout)
                finally:
                    with g._cond:
                        g._async_waiters.discard(entry)
                        self._waits[cause] += g._now() - now
        finally:
            with g._cond:
                self._note(p, "", g._now())
        if g._fleet_leases and g._fleet_due():
            await asyncio.to_thread(g._fleet_refresh)  # e.g. a rate the step set
        return now - start

    def _step(self, p: _Pending, now: float) -> tuple[float, str]:
        """Decide (guard lock held) whether the call may go: (0, "") or (wait, cause)."""
        g = self._guard
        if p.reserved:
            p.advance(now)
        if now >= g._expires:
            g._refresh_locked(now)
        if p.reserved:
            p.rerate(not g._go)
        if self._closed or not self._started:
            raise WedguardError(
                f"session {self.name!r} is not active: use it inside 'with guard.session(...)'"
            )
        if g._stopped:
            raise EmergencyStop(g._decision.stop_reason)
        # a HARD time cutoff ends the session also while it waits
        hard_limit = self._limit_at if self._cutoff is Cutoff.HARD else _INF
        if now >= hard_limit:
            raise CutoffReached(self.name, self._limit_name, self._cutoff)
        d = g._decision
        if not g._go:
            cause = g._pause_cause()
            if cause == "calendar" and p.cause != "calendar":
                self._check_blackout_deadline()
            p.reason = d.reasons[0] if d.reasons else ""
            until = min(g._expires, hard_limit)
            since = g._held_since
            if cause == "impact" and since is not None and g._max_hold < _INF:
                # held back for production's sake: not forever (max_hold)
                if now >= since + g._max_hold:
                    raise HoldTimeout(now - since, p.reason)
                until = min(until, since + g._max_hold)
            return until - now, cause
        if not p.reserved:
            if self._has_cutoffs:
                self._check_cutoffs(p, now)
            if p.ops:
                self._units = True
            p.reserve(
                now,
                [
                    (g._bytes, p.n, True),
                    (g._ops, p.ops, True),
                    (self._bucket, p.n, False),
                    (self._ops_bucket, p.ops, False),
                    # the fleet's shared budgets (Redis); they keep earning while this
                    # host pauses, as the other hosts go on
                    (g._fleet_bytes, p.n, False),
                    (g._fleet_ops, p.ops, False),
                ],
            )
        wait = p.remaining()
        if wait <= 1e-9:  # below the clock's resolution: done
            return 0.0, ""
        return min(wait, g._expires - now, hard_limit - now), "rate"

    def _note(self, p: _Pending, cause: str, now: float) -> None:
        """Track pause episodes: a change of cause closes the running one."""
        if cause == p.cause:
            return
        if p.cause in _PAUSE_CAUSES:
            self._pauses.append(
                Pause(p.cause, self._at(p.pause_start), now - p.pause_start, p.reason)
            )
        p.cause = cause
        if cause in _PAUSE_CAUSES:
            p.pause_start = now

    def _check_blackout_deadline(self) -> None:
        if self._deadline is None or self._on_deadline != "raise":
            return
        end = self._guard._blackout_end(self._guard.clock.now())
        if end is None or self._deadline <= end:
            until = "indefinitely" if end is None else f"until {end.isoformat()}"
            raise DeadlineError(self.name, self._deadline, f"the calendar is BLACKOUT {until}")

    def _check_cutoffs(self, p: _Pending, now: float) -> None:
        unit_start = p.ops > 0 or not self._units
        mode = self._cutoff
        amount = p.n if p.size is None else p.size
        if now >= self._limit_at:
            if mode is Cutoff.HARD or unit_start:
                raise CutoffReached(self.name, self._limit_name, mode)
        elif mode is Cutoff.CAUTIOUS and unit_start and self._limit_at < _INF:
            rate = self._guard._decision.rate
            if self._bucket is not None:
                rate = min(rate, self._bucket.rate)
            if rate < _INF and now + amount / rate > self._limit_at:
                raise CutoffReached(self.name, self._limit_name, mode)
        if self._byte_limit < _INF:
            if mode is Cutoff.HARD:
                crossed = self._bytes + p.n > self._byte_limit
            elif mode is Cutoff.SOFT:
                crossed = unit_start and self._bytes >= self._byte_limit
            else:
                crossed = unit_start and self._bytes + amount > self._byte_limit
            if crossed:
                raise CutoffReached(self.name, "max_bytes", mode)

    # -- bookkeeping --------------------------------------------------------------------------

    def _at(self, m: float) -> datetime:
        return self._start_dt + timedelta(seconds=m - self._start_m)

    def _point(self, now: float, d: Any) -> None:
        """Append a timeline point (guard lock held or session thread)."""
        tl = self._timeline
        if len(tl) >= _MAX_TIMELINE:
            del tl[1:-1:2]  # halve the resolution, keep the ends
        tl.append(TimelinePoint(now - self._start_m, self._bytes, d.rate, d.level, d.verdict))

    def report(self) -> SessionReport:
        """What the session did so far (or in all, once it ended)."""
        g = self._guard
        with g._cond:
            now = g._now() if self._end_m is None else self._end_m
            duration = max(0.0, now - self._start_m) if self._started else 0.0
            timeline = list(self._timeline)
            if self._end_m is None and self._started:
                d = g._decision
                timeline.append(TimelinePoint(duration, self._bytes, d.rate, d.level, d.verdict))
            pauses = tuple(self._pauses)
            waits = dict(self._waits)
        mean = self._bytes / duration if duration > 0 else 0.0
        peak = max(mean, _peak_rate(timeline, PEAK_WINDOW))
        return SessionReport(
            name=self.name,
            bytes=self._bytes,
            ops=self._ops,
            started_at=self._start_dt,
            finished_at=self._end_dt,
            duration=duration,
            wait_seconds=waits,
            pauses=len(pauses),
            pause_log=pauses,
            peak_rate=peak,
            mean_rate=mean,
            ok=self._outcome in ("running", "done", "cutoff"),
            outcome=self._outcome,
            error=self._error,
            expected_bytes=self._expected,
            deadline=self._deadline,
            needed_rate=self._needed,
            timeline=tuple(timeline),
        )

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
        return f"Session({self.name!r}, {state}, bytes={self._bytes:g})"


def _release_slot(guard_ref: weakref.ref[Guard], token: Any) -> None:
    """weakref finalizer: a session that was never left still frees its slot."""
    guard = guard_ref()
    if guard is not None:
        guard._release(token)
