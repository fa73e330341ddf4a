"""A session's ledger: its budgets, cutoffs, deadline and accounts, pure on a clock.

The :class:`Ledger` decides nothing by waiting: it is given clock readings (``now``,
seconds on the guard's monotonic clock) and answers with numbers, a reason, or a
:class:`CutoffReached`. It never sleeps, starts no thread and does no I/O; the
runtime's :class:`~wedguard.Session` drives it, once for threads and once for asyncio.

What it keeps:

* **budgets**: the session's own caps (bytes/s, operations/s) as token buckets, and a
  :class:`Reservation` for a call that has to wait for them and for the guard's;
* **cutoffs**: ``max_bytes``, ``max_duration`` and ``stop_at``, ended as the
  :class:`Cutoff` mode says;
* **deadline pacing**: the rate needed to finish ``expected_bytes`` by the deadline;
* **accounts**: bytes, operations, seconds waited by cause, pauses and the timeline,
  from which :meth:`Ledger.report` makes a :class:`SessionReport`.

Example::

    >>> from datetime import datetime, timezone
    >>> ledger = Ledger("nightly", max_bytes=1000)
    >>> ledger.start(0.0, datetime(2026, 1, 5, tzinfo=timezone.utc))
    >>> ledger.check(600, 0, None, 0.0)      # within the budget: nothing to say
    >>> ledger.count(600, 0)
    >>> ledger.check(600, 0, None, 1.0)      # would cross max_bytes (HARD)
    Traceback (most recent call last):
    ...
    wedguard.policy.ledger.CutoffReached: session 'nightly': max_bytes cutoff reached (HARD)
"""

from __future__ import annotations

import enum
import math
from datetime import datetime, timedelta
from typing import Any, Final

from wedguard.clock import Clock
from wedguard.errors import ConfigError, EmergencyStop, WedguardError, renamed
from wedguard.interfaces import Throttler
from wedguard.levels import Level, Verdict
from wedguard.policy.bucket import TokenBucketThrottler
from wedguard.policy.session_report import (
    CAUSES,
    PEAK_WINDOW,
    Pause,
    SessionReport,
    TimelinePoint,
    peak_rate,
)
from wedguard.units import (
    parse_duration,
    parse_rate,
    parse_size,
)

__all__ = [
    "CAUSES",
    "PEAK_WINDOW",
    "Cutoff",
    "CutoffReached",
    "DeadlineError",
    "DeadlineSpec",
    "Ledger",
    "Pause",
    "Reservation",
    "SessionReport",
    "TimelinePoint",
    "check_units",
    "parse_deadline",
    "peak_rate",
]

_INF: Final = math.inf

PAUSE_CAUSES: Final = frozenset({"calendar", "impact", "stop"})
"""The causes that count as a pause (a stretch in a session's ``pause_log``)."""

MAX_TIMELINE: Final = 20_000
"""Timeline points kept; beyond it the resolution is halved (the ends kept)."""


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


def check_units(n: object, ops: object, size: object) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, float)) or not 0 <= n < _INF:
        raise ConfigError("n", n, "a finite number of bytes >= 0")
    if isinstance(ops, bool) or not isinstance(ops, int) or ops < 0:
        raise ConfigError("ops", ops, "a whole number of operations >= 0")
    if size is not None and (
        isinstance(size, bool) or not isinstance(size, (int, float)) or not 0 <= size < _INF
    ):
        raise ConfigError("size", size, "a finite number of bytes >= 0, or None")


# -- budgets --------------------------------------------------------------------------------


class Reservation:
    """One throttle call that has to wait: its reservations in the buckets it draws on.

    Each bucket is asked once (:meth:`reserve`, which takes the units and says how long
    until they are there); from then on the reservation counts the credit the buckets
    earn at the rates in force (:meth:`advance`, :meth:`rerate`) and says how long is
    left (:meth:`remaining`). Pure: it reads no clock and never waits.
    """

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
        """Take the units from each ``(bucket, amount, shared)`` at clock reading ``now``."""
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
        """Count the credit the buckets earned since the last mark."""
        elapsed = now - self.mark
        self.mark = now
        if elapsed > 0:
            for e in self.entries:
                if e[1] > 0:
                    e[1] -= e[2] * elapsed

    def rerate(self, paused: bool) -> None:
        """Note the rates in force from now on; the guard's (shared) buckets earn
        nothing while the guard is paused."""
        for e in self.entries:
            e[2] = 0.0 if paused and e[3] else e[0].rate

    def remaining(self) -> float:
        """Seconds until every bucket has the units (``inf`` while one is paused)."""
        worst = 0.0
        for e in self.entries:
            short, rate = e[1], e[2]
            if short > 1e-9:
                wait = _INF if rate <= 0 else (0.0 if rate == _INF else short / rate)
                worst = max(worst, wait)
        return worst


# -- a session's arguments -------------------------------------------------------------

DeadlineSpec = datetime | float | str | None
"""A deadline as given: an aware datetime, seconds from the start, ``"window"`` (the
end of the calendar's window) or None."""


def parse_deadline(deadline: object, has_calendar: bool) -> DeadlineSpec:
    """A session's ``deadline`` argument checked: an aware datetime, seconds (a number
    or a duration such as ``"2h"``) from the start, ``"window"`` or None.

    >>> parse_deadline("90m", has_calendar=False)
    5400.0

    Raises:
        ConfigError: naming the field ``deadline``.
    """
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


def _aware(field: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigError(field, value, "an aware datetime (with tzinfo)")
    return value


def _cap(
    value: float | str | None, field: str, what: str, clock: Clock | None, ops: bool = False
) -> TokenBucketThrottler | None:
    """A session's own cap (bytes/s, or operations/s with a burst of a second's worth)."""
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


# -- the ledger -----------------------------------------------------------------------------


class Ledger:
    """A session's cutoffs, deadline and accounts, pure on clock readings.

    Args:
        name: the session's name (for errors and the report).
        max_bytes: the byte cutoff (``inf``: none).
        max_duration: the time cutoff in seconds from the start (``inf``: none).
        stop_at: the instant the session must end by (aware), or None.
        mode: how a cutoff ends the session (:class:`Cutoff`).
        expected_bytes: the bytes the session means to move, if known (for pacing).

    ``now`` arguments are readings of one monotonic clock (seconds); the ledger turns
    them into datetimes from the start it is given.
    """

    __slots__ = (
        "byte_limit",
        "bytes",
        "cap",
        "deadline",
        "ended",
        "error",
        "expected",
        "limit_at",
        "limit_name",
        "max_duration",
        "mode",
        "name",
        "needed",
        "ops",
        "ops_cap",
        "outcome",
        "pauses",
        "start_dt",
        "start_m",
        "stop_at",
        "timeline",
        "units",
        "waits",
    )

    def __init__(
        self,
        name: str,
        *,
        max_bytes: float = _INF,
        max_duration: float = _INF,
        stop_at: datetime | None = None,
        mode: Cutoff = Cutoff.HARD,
        expected_bytes: float | None = None,
    ) -> None:
        if not isinstance(mode, Cutoff):
            raise ConfigError("cutoff", mode, "HARD, SOFT or CAUTIOUS")
        if not max_bytes > 0:
            raise ConfigError("max_bytes", max_bytes, "a size > 0, or None")
        if not max_duration > 0:
            raise ConfigError("max_duration", max_duration, "a duration > 0, or None")
        self.name = name
        self.cap: TokenBucketThrottler | None = None  # the session's own bytes/s
        self.ops_cap: TokenBucketThrottler | None = None  # and operations/s
        self.byte_limit = float(max_bytes)
        self.max_duration = float(max_duration)
        self.stop_at = stop_at
        self.mode = mode
        self.expected = expected_bytes
        self.bytes = 0.0
        self.ops = 0
        self.units = False  # True once a call counted operations (units start with them)
        self.waits = dict.fromkeys(CAUSES, 0.0)
        self.pauses: list[Pause] = []
        self.timeline: list[TimelinePoint] = []
        self.needed: float | None = None
        self.deadline: datetime | None = None
        self.limit_at = _INF
        self.limit_name = ""
        self.start_m = 0.0
        self.start_dt: datetime | None = None
        self.ended: float | None = None  # the clock reading the session ended at
        self.outcome = "running"
        self.error = ""

    @classmethod
    def build(
        cls,
        name: str,
        *,
        expected_bytes: float | str | None = None,
        max_duration: float | str | None = None,
        max_bytes: float | str | None = None,
        stop_at: datetime | None = None,
        cutoff: Cutoff | str = Cutoff.HARD,
        field: str = "cutoff",
        rate: float | str | None = None,
        ops_rate: float | str | None = None,
        clock: Clock | None = None,
    ) -> Ledger:
        """A ledger from a session's arguments as a user gives them (sizes and durations
        as numbers or text, None for none, the cutoff mode by name); ``field`` names
        the cutoff argument in errors. ``rate`` and ``ops_rate`` cap the session below
        its guard (token buckets on ``clock``).

        >>> Ledger.build("photos", max_bytes="2GB", cutoff="soft").byte_limit
        2000000000.0

        Raises:
            ConfigError: naming the argument that is not valid.
        """
        expected = None
        if expected_bytes is not None:
            expected = float(parse_size(expected_bytes, field="expected_bytes"))
        duration = _INF
        if max_duration is not None:
            duration = parse_duration(max_duration, field="max_duration")
            if not duration > 0:
                raise ConfigError("max_duration", max_duration, "a duration > 0, or None")
        limit = _INF
        if max_bytes is not None:
            limit = float(parse_size(max_bytes, field="max_bytes"))
            if not limit > 0:
                raise ConfigError("max_bytes", max_bytes, "a size > 0, or None")
        given: object = stop_at
        if given is not None and not isinstance(given, datetime):
            raise ConfigError("stop_at", given, "an aware datetime, or None")
        if stop_at is not None and (stop_at.tzinfo is None or stop_at.utcoffset() is None):
            raise ConfigError("stop_at", stop_at, "an aware datetime (with tzinfo)")
        try:
            mode = cutoff if isinstance(cutoff, Cutoff) else Cutoff[str(cutoff).upper()]
        except KeyError:
            raise ConfigError(field, cutoff, "HARD, SOFT or CAUTIOUS") from None
        cap = _cap(rate, "rate", "a rate", clock)
        ops_cap = _cap(ops_rate, "ops_rate", "operations per second", clock, ops=True)
        ledger = cls(
            name,
            max_bytes=limit,
            max_duration=duration,
            stop_at=stop_at,
            mode=mode,
            expected_bytes=expected,
        )
        ledger.cap, ledger.ops_cap = cap, ops_cap
        return ledger

    @property
    def has_cutoffs(self) -> bool:
        """True when a cutoff can end the session."""
        return self.max_duration < _INF or self.byte_limit < _INF or self.stop_at is not None

    def start(self, now: float, now_dt: datetime, deadline: datetime | None = None) -> None:
        """The session starts at clock reading ``now`` (the instant ``now_dt``)."""
        self.start_m = now
        self.start_dt = now_dt
        self.deadline = deadline
        limit_at, limit_name = now + self.max_duration, "max_duration"
        if self.stop_at is not None:
            at = now + (self.stop_at - now_dt).total_seconds()
            if at < limit_at:
                limit_at, limit_name = at, "stop_at"
        self.limit_at, self.limit_name = limit_at, limit_name

    def at(self, now: float) -> datetime:
        """The instant of clock reading ``now``."""
        assert self.start_dt is not None, "the ledger has not started"
        return self.start_dt + timedelta(seconds=now - self.start_m)

    # -- cutoffs ------------------------------------------------------------------------

    @property
    def hard_limit(self) -> float:
        """The clock reading at which a HARD time cutoff ends the session, also while
        it waits (``inf`` for the other modes, which never cut a call short)."""
        return self.limit_at if self.mode is Cutoff.HARD else _INF

    @property
    def clear_until(self) -> float:
        """Before this clock reading no time cutoff can end a call (a CAUTIOUS one
        looks ahead by the call's own length, so it is never clear)."""
        if self.mode is Cutoff.CAUTIOUS and self.limit_at < _INF:
            return -_INF
        return self.limit_at

    def check(self, n: float, ops: int, size: float | None, now: float, rate: float = _INF) -> None:
        """Raise :class:`CutoffReached` if a call of ``n`` bytes (``ops`` operations,
        a unit of ``size`` bytes) at ``now``, sent at ``rate`` bytes/s, would cross a
        cutoff; otherwise return None."""
        unit_start = ops > 0 or not self.units
        mode = self.mode
        amount = n if size is None else size
        if now >= self.limit_at:
            if mode is Cutoff.HARD or unit_start:
                raise CutoffReached(self.name, self.limit_name, mode)
        elif (
            mode is Cutoff.CAUTIOUS
            and unit_start
            and self.limit_at < _INF
            and rate < _INF
            and now + amount / rate > self.limit_at
        ):
            raise CutoffReached(self.name, self.limit_name, mode)
        if self.byte_limit < _INF:
            if mode is Cutoff.HARD:
                crossed = self.bytes + n > self.byte_limit
            elif mode is Cutoff.SOFT:
                crossed = unit_start and self.bytes >= self.byte_limit
            else:
                crossed = unit_start and self.bytes + amount > self.byte_limit
            if crossed:
                raise CutoffReached(self.name, "max_bytes", mode)

    # -- accounts -----------------------------------------------------------------------

    def count(self, n: float, ops: int) -> None:
        """``n`` bytes and ``ops`` operations went."""
        self.bytes += n
        self.ops += ops
        if ops:
            self.units = True

    def waited(self, cause: str, seconds: float) -> None:
        """``seconds`` were spent waiting for ``cause`` (one of :data:`CAUSES`)."""
        self.waits[cause] += seconds

    def note(self, r: Reservation, cause: str, now: float) -> None:
        """Track pause episodes of a waiting call: a change of cause closes the running
        one (into :attr:`pauses`)."""
        if cause == r.cause:
            return
        if r.cause in PAUSE_CAUSES:
            self.pauses.append(
                Pause(r.cause, self.at(r.pause_start), now - r.pause_start, r.reason)
            )
        r.cause = cause
        if cause in PAUSE_CAUSES:
            r.pause_start = now

    def point(self, now: float, rate: float, level: Level, verdict: Verdict) -> None:
        """Append a timeline point."""
        tl = self.timeline
        if len(tl) >= MAX_TIMELINE:
            del tl[1:-1:2]  # halve the resolution, keep the ends
        tl.append(TimelinePoint(now - self.start_m, self.bytes, rate, level, verdict))

    # -- deadline pacing ----------------------------------------------------------------

    @property
    def remaining(self) -> float | None:
        """Bytes still to move of ``expected_bytes`` (None when not declared)."""
        return None if self.expected is None else max(0.0, self.expected - self.bytes)

    def pace(self, allowed_seconds: float) -> float:
        """The rate (bytes/s) that finishes ``expected_bytes`` within ``allowed_seconds``
        of usable time (the time the calendar lets the session run before its deadline);
        0 when nothing is left, ``inf`` when no time is."""
        remaining = self.remaining
        if remaining is None or remaining <= 0:
            return 0.0
        return remaining / allowed_seconds if allowed_seconds > 0 else _INF

    def pace_wait(self, now: float, n: float, rate: float) -> float:
        """Seconds to wait before ``n`` bytes so that, sent at ``rate`` from the start, the
        session keeps to that rate (0 when it is behind or on time)."""
        if not rate > 0 or rate == _INF:
            return 0.0 if rate == _INF else _INF
        due = self.start_m + (self.bytes + n) / rate
        return max(0.0, due - now)

    def end(self, now: float, exc: BaseException | None) -> None:
        """The session ended at ``now``, with ``exc`` if it raised: its outcome."""
        self.ended = now
        if exc is None:
            self.outcome = "done"
        elif isinstance(exc, CutoffReached):
            self.outcome, self.error = "cutoff", str(exc)
        elif isinstance(exc, EmergencyStop):
            self.outcome, self.error = "stopped", str(exc)
        else:
            self.outcome = "error"
            self.error = f"{type(exc).__name__}: {exc}"

    # -- the report ---------------------------------------------------------------------

    def report(
        self,
        now: float,
        *,
        started: bool,
        decision: Any,
    ) -> SessionReport:
        """A :class:`SessionReport` as of clock reading ``now`` (the end, once ended);
        ``decision`` (rate, level, verdict) gives a running session's last point."""
        ended = self.ended is not None
        outcome = self.outcome
        duration = max(0.0, now - self.start_m) if started else 0.0
        timeline = list(self.timeline)
        if not ended and started:
            d = decision
            timeline.append(TimelinePoint(duration, self.bytes, d.rate, d.level, d.verdict))
        mean = self.bytes / duration if duration > 0 else 0.0
        assert self.start_dt is not None, "the ledger has not started"
        return SessionReport(
            name=self.name,
            bytes=self.bytes,
            ops=self.ops,
            started_at=self.start_dt,
            finished_at=self.at(now) if ended else None,
            duration=duration,
            wait_seconds=dict(self.waits),
            pauses=len(self.pauses),
            pause_log=tuple(self.pauses),
            peak_rate=max(mean, peak_rate(timeline, PEAK_WINDOW)),
            mean_rate=mean,
            ok=outcome in ("running", "done", "cutoff"),
            outcome=outcome,
            error=self.error,
            expected_bytes=self.expected,
            deadline=self.deadline,
            needed_rate=self.needed,
            timeline=tuple(timeline),
        )


__getattr__ = renamed(__name__, {"CutoffMode": "Cutoff"}, globals())
