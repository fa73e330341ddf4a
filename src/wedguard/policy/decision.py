"""The decision engine: what the guard allows now, as a pure function of its inputs.

The engine does no I/O, reads no clock and keeps no state: the runtime layer gathers
what the policies said into one :class:`Inputs` value (the calendar window in force,
the configured and operator's rate, the impact verdict and the rate controller's
answer, the stops and holds, the breaker's state line, the fleet's fallback share) and
:func:`decide` turns it into the immutable :class:`~wedguard.Decision` that the hot
path reads. :func:`next_action` then tells a driver what to do with it: :class:`Go`,
:class:`Wait` (how long and why) or :class:`Stop`. A thread driver and an asyncio
driver carry the action out; neither decides anything itself.

Limits compose as values. Each :class:`Limit` says its cap and its reason; ``a & b``
joins them into :class:`Limits`, whose :attr:`~Limits.rate` is the most restrictive
cap and whose :meth:`~Limits.reasons` list every one, the binding one first. A
:class:`Blocker` is a reason no work may proceed at all (a stop, a hold, a BLACKOUT,
an impact HALT), with the cause a waiting session reports.

>>> import math
>>> from wedguard.levels import Level, Verdict
>>> d = decide(Inputs(rate=5e6, window=None, verdict=Verdict.OK))
>>> d.rate, d.reasons
(5000000.0, ('rate limit 5 MB/s',))
>>> (Limit(5e6, "rate limit") & Limit(1.25e6, "peak cap")).rate
1250000.0
>>> next_action(decide(Inputs(rate=5e6, manual_stop="failover")), now=0.0, expires=math.inf)
Stop(reason='failover')
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Final, cast

import attrs

from wedguard.decision import Decision
from wedguard.levels import Level, Verdict
from wedguard.units import format_rate

if TYPE_CHECKING:
    from wedguard.interfaces import Calendar, CalendarWindow

__all__ = [
    "Action",
    "Blocker",
    "Decision",
    "Go",
    "Inputs",
    "Limit",
    "Limits",
    "Stop",
    "Wait",
    "blackout_end",
    "blockers",
    "decide",
    "limits",
    "next_action",
    "pace",
    "pause_cause",
    "window_cap",
    "window_deadline",
    "window_in_force",
]

_INF: Final = math.inf
#: how many calendar windows a walk looks through before it gives up (a calendar
#: whose windows never end, or end where they start)
_WALK: Final = 1000


# -- limits ---------------------------------------------------------------------------


@attrs.frozen(slots=True)
class Limit:
    """One cap on the allowed rate, and why.

    Attributes:
        cap: units per second (``math.inf``: no cap).
        reason: the line the decision gives for it.
        rank: orders equal caps in the reasons (lower first): the calendar's cap (0)
            before the impact controller's (1) before the configured rate (2).

    >>> Limit(1e6, "calendar: PEAK cap 1 MB/s")
    Limit(cap=1000000.0, reason='calendar: PEAK cap 1 MB/s', rank=0)
    """

    cap: float = attrs.field(converter=float)
    reason: str
    rank: int = 0

    def __and__(self, other: Limit | Limits) -> Limits:
        return Limits((self,)) & other


@attrs.frozen(slots=True)
class Limits:
    """Caps that all hold at once: the most restrictive one wins.

    >>> both = Limit(8e6, "rate limit", rank=2) & Limit(2e6, "calendar cap")
    >>> both.rate, both.reasons()
    (2000000.0, ('calendar cap', 'rate limit'))
    >>> Limits().rate
    inf
    """

    items: tuple[Limit, ...] = ()

    def __and__(self, other: Limit | Limits) -> Limits:
        more = (other,) if isinstance(other, Limit) else other.items
        return Limits(self.items + more)

    @property
    def rate(self) -> float:
        """The most restrictive cap (``math.inf`` when there is none)."""
        return min((lim.cap for lim in self.items), default=_INF)

    @property
    def binding(self) -> tuple[Limit, ...]:
        """The limits whose cap is the rate (several when they tie)."""
        rate = self.rate
        return tuple(lim for lim in self.items if lim.cap == rate)

    def reasons(self) -> tuple[str, ...]:
        """Every limit's reason, the most restrictive first."""
        ordered = sorted(self.items, key=lambda lim: (lim.cap, lim.rank, lim.reason))
        return tuple(lim.reason for lim in ordered)


@attrs.frozen(slots=True)
class Blocker:
    """A reason no work may proceed now.

    Attributes:
        cause: what a waiting session reports: ``"stop"`` (a stop or hold),
            ``"calendar"`` (a BLACKOUT) or ``"impact"`` (production suffers, or the
            baseline is being learnt).
        reason: the line the decision gives for it.
    """

    cause: str
    reason: str


# -- the inputs -----------------------------------------------------------------------


@attrs.frozen(slots=True, kw_only=True)
class Inputs:
    """Everything the engine decides from; gathered by the runtime under its lock.

    Attributes:
        rate: the configured byte budget (the operator's rate once changed live).
        ops_rate: the operations budget.
        window: the calendar window in force (None without a calendar).
        verdict: the impact analyser's last verdict.
        impact_reasons: its reasons.
        allowed: the rate controller's last answer.
        allowed_free: True when the controller does not hold the rate below the
            ceiling (it climbed back, or never cut).
        manual_stop: ``guard.stop()``'s reason ("" when not stopped); likewise
            ``file_stop`` (the stop file) and ``fleet_stop`` (the fleet's flag).
        held: ``guard.hold()``'s reason.
        learning: why the backup waits for the baseline ("" when it does not).
        circuit: the breaker's state line while it is not closed.
        unjudged: limits the analyser could not judge (no baseline).
        fleet_budget: this host's fallback budget while Redis is unreachable (None
            while it is reachable or without a fleet).
        needed_rate: the highest rate a session with a deadline needs.
        at: when (aware datetime).
        signals: the metrics that judge the backup now (production's latency first).
        shaped: the shaper's share of the ceiling (``Guard(shaping=...)``).
        probing: a causal pause is on (production measured without the backup).
        shaping_reasons: what the shaper's loops are doing.
    """

    rate: float
    ops_rate: float = _INF
    window: CalendarWindow | None = None
    verdict: Verdict = Verdict.OK
    impact_reasons: tuple[str, ...] = ()
    allowed: float = _INF
    allowed_free: bool = True
    manual_stop: str = ""
    file_stop: str = ""
    fleet_stop: str = ""
    held: str = ""
    learning: str = ""
    circuit: str = ""
    unjudged: tuple[str, ...] = ()
    fleet_budget: float | None = None
    needed_rate: float | None = None
    at: datetime | None = None
    signals: tuple[str, ...] = ()
    shaped: float = _INF
    probing: bool = False
    shaping_reasons: tuple[str, ...] = ()

    @property
    def stop_reason(self) -> str:
        """The stop in force: the operator's, else the stop file's, else the fleet's."""
        return self.manual_stop or self.file_stop or self.fleet_stop

    @property
    def level(self) -> Level:
        return Level.OPEN if self.window is None else Level(self.window.level)

    @property
    def ceiling(self) -> float:
        """The rate before the impact controller: configured rate and calendar cap."""
        return min(self.rate, window_cap(self.window))

    @property
    def controlled(self) -> float:
        """What the controller allows under the ceiling."""
        ceiling = self.ceiling
        return ceiling if self.allowed_free else min(ceiling, self.allowed)


def window_cap(window: CalendarWindow | None) -> float:
    """A window's rate cap (``math.inf`` for none)."""
    if window is None or window.rate is None:
        return _INF
    return float(window.rate)


def _window_words(window: CalendarWindow | None) -> tuple[str, str]:
    """(" until <end>", " (<reason>)") for a window's reason lines."""
    if window is None:
        return "", ""
    until = "" if window.end is None else f" until {window.end.isoformat()}"
    why = f" ({window.reason})" if window.reason else ""
    return until, why


def _impact_detail(i: Inputs) -> str:
    detail = "; ".join(i.impact_reasons)
    return f" ({detail})" if detail else ""


def limits(i: Inputs) -> Limits:
    """The caps in force: the configured rate, the calendar's cap, the controller's.

    A controller answer of 0 is not a cap but a :class:`Blocker` (see
    :func:`blockers`).
    """
    out = Limits((Limit(i.rate, f"rate limit {format_rate(i.rate)}", rank=2),))
    cap = window_cap(i.window)
    if cap < _INF:
        until, why = _window_words(i.window)
        out &= Limit(cap, f"calendar: {i.level.name} cap {format_rate(cap)}{until}{why}")
    allowed = i.controlled
    if 0 < allowed < i.ceiling:
        text = f"impact: {i.verdict.name}, controller allows {format_rate(allowed)}"
        out &= Limit(allowed, text + _impact_detail(i), rank=1)
    if i.shaped < i.ceiling:
        out &= Limit(i.shaped, f"shaping: the fast loop allows {format_rate(i.shaped)}", rank=1)
    return out


def blockers(i: Inputs) -> tuple[Blocker, ...]:
    """What stops all work now, in the order the reasons give them."""
    out: list[Blocker] = []
    if i.stop_reason:
        out.append(Blocker("stop", f"emergency stop: {i.stop_reason}"))
    if i.held:
        out.append(Blocker("stop", f"on hold: {i.held}"))
    if i.learning:
        out.append(Blocker("impact", i.learning))
    if i.level is Level.BLACKOUT:
        until, why = _window_words(i.window)
        out.append(Blocker("calendar", f"calendar: BLACKOUT{until}{why}"))
    if i.verdict is Verdict.HALT or i.controlled <= 0:
        out.append(Blocker("impact", f"impact: {i.verdict.name}" + _impact_detail(i)))
    if i.probing:
        out.append(Blocker("impact", "shaping: a short pause measures production alone"))
    return tuple(out)


def _notes(i: Inputs) -> list[str]:
    """Lines that shape no rate but that an operator must read."""
    notes = list(i.shaping_reasons)
    if i.circuit:
        notes.append(i.circuit)
    if not i.learning:
        notes.extend(i.unjudged)
    if i.fleet_budget is not None:
        notes.append(
            "fleet: Redis unreachable, this host runs on its fallback budget "
            f"{format_rate(i.fleet_budget)}"
        )
    return notes


def decide(i: Inputs) -> Decision:
    """The decision for ``i``: the most restrictive limit, unless a blocker pauses.

    Reasons: the blockers, then every limit (the binding one first), then the
    breaker's state, the limits not judged and the fleet's fallback.
    """
    caps = limits(i)
    stops = blockers(i)
    # a calendar cap of 0 pauses too (as an impact blocker says: the controller has 0)
    paused = bool(stops) or caps.rate <= 0
    stop_reason = i.stop_reason
    window = i.window
    return Decision(
        level=i.level,
        rate=0.0 if paused else min(caps.rate, i.controlled),
        verdict=i.verdict,
        reasons=(*(b.reason for b in stops), *caps.reasons(), *_notes(i)),
        stopped=bool(stop_reason),
        stop_reason=stop_reason or i.held,
        on_hold=bool(i.held),
        ops_rate=0.0 if paused else i.ops_rate,
        window_start=None if window is None else window.start,
        window_end=None if window is None else window.end,
        cpu_share=None if window is None else getattr(window, "cpu_share", None),
        needed_rate=i.needed_rate,
        at=i.at,
        signals=i.signals,
    )


# -- actions --------------------------------------------------------------------------


@attrs.frozen(slots=True)
class Go:
    """The work may proceed now (as far as the guard's decision goes)."""


@attrs.frozen(slots=True)
class Wait:
    """Wait ``seconds`` (through the clock; a change wakes the waiter sooner).

    Attributes:
        seconds: how long at most (``math.inf``: until something changes).
        cause: ``"stop"``, ``"calendar"`` or ``"impact"`` (see :class:`Blocker`).
        reason: the decision's first reason.
    """

    seconds: float
    cause: str
    reason: str = ""


@attrs.frozen(slots=True)
class Stop:
    """The guard was stopped: raise :class:`~wedguard.EmergencyStop` with ``reason``."""

    reason: str


Action = Go | Wait | Stop
"""What a driver does next: go, wait or stop."""


def pause_cause(d: Decision, calendar_cap: float = _INF) -> str:
    """Why no work may proceed under ``d``: ``"stop"``, ``"calendar"`` or ``"impact"``.

    >>> from wedguard.levels import Level, Verdict
    >>> pause_cause(Decision(level=Level.BLACKOUT, rate=0.0, verdict=Verdict.OK))
    'calendar'
    """
    if d.on_hold:
        return "stop"
    if d.level is Level.BLACKOUT or calendar_cap <= 0:
        return "calendar"
    return "impact"


def next_action(d: Decision, *, now: float, expires: float, calendar_cap: float = _INF) -> Action:
    """What a driver does under ``d`` at monotonic time ``now``.

    ``expires`` is when the decision must be recomputed (the window's end, the next
    sample): a paused driver waits until then at most.

    >>> from wedguard.levels import Level, Verdict
    >>> d = Decision(level=Level.BLACKOUT, rate=0.0, verdict=Verdict.OK,
    ...              reasons=("calendar: BLACKOUT",))
    >>> next_action(d, now=10.0, expires=70.0)
    Wait(seconds=60.0, cause='calendar', reason='calendar: BLACKOUT')
    """
    if d.stopped:
        return Stop(d.stop_reason)
    if not d.paused:
        return Go()
    reason = d.reasons[0] if d.reasons else ""
    return Wait(max(0.0, expires - now), pause_cause(d, calendar_cap), reason)


# -- calendar walks -------------------------------------------------------------------


def window_in_force(
    calendar: Calendar | None, cached: CalendarWindow | None, now_dt: datetime
) -> CalendarWindow | None:
    """The calendar's window at ``now_dt``: ``cached`` while it still holds (the
    calendar is asked once per window, not once per decision)."""
    if calendar is None:
        return None
    if (
        cached is not None
        and cached.start <= now_dt
        and (cached.end is None or now_dt < cached.end)
    ):
        return cached
    return cast("CalendarWindow", calendar.at(now_dt))


def window_deadline(calendar: Calendar | None, now_dt: datetime) -> datetime | None:
    """When the calendar next becomes more restrictive than at ``now_dt`` (a
    session's ``deadline="window"``); None when it never does."""
    if calendar is None:
        return None
    w = calendar.at(now_dt)
    level = Level(w.level)
    t = w.end
    for _ in range(_WALK):
        if t is None:
            return None
        nxt = calendar.at(t)
        if Level(nxt.level) > level:
            return cast("datetime", t)
        t = nxt.end
    return None


def blackout_end(calendar: Calendar | None, now_dt: datetime) -> datetime | None:
    """When the BLACKOUT in force at ``now_dt`` ends (adjacent blackouts merged);
    ``now_dt`` itself when there is none, None when it never ends."""
    if calendar is None:
        return now_dt
    t = now_dt
    for _ in range(_WALK):
        w = calendar.at(t)
        if Level(w.level) is not Level.BLACKOUT:
            return t
        if w.end is None:
            return None
        t = w.end
    return None


def _spans(
    calendar: Calendar | None, now_dt: datetime, deadline: datetime
) -> Iterable[tuple[float, Level, float]]:
    """(seconds, level, cap) of each calendar window from ``now_dt`` to ``deadline``."""
    t = now_dt
    for _ in range(10 * _WALK):
        if calendar is None:
            end, level, cap = deadline, Level.OPEN, _INF
        else:
            w = calendar.at(t)
            end = deadline if w.end is None else min(w.end, deadline)
            level, cap = Level(w.level), window_cap(w)
        yield (end - t).total_seconds(), level, cap
        if end >= deadline or end <= t:
            return
        t = end


def pace(
    calendar: Calendar | None,
    *,
    now_dt: datetime,
    deadline: datetime,
    remaining: float,
    current_rate: float,
    later_rate: float,
) -> tuple[float, float]:
    """Deadline pacing: (the rate needed, the units the calendar lets through).

    ``remaining`` units must move before ``deadline``; the window in force runs at
    ``current_rate``, later ones at ``later_rate`` under their own cap. BLACKOUT
    windows count no time.

    >>> from datetime import datetime, timedelta, timezone
    >>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> pace(None, now_dt=t, deadline=t + timedelta(seconds=10), remaining=100.0,
    ...      current_rate=5.0, later_rate=5.0)
    (10.0, 50.0)
    """
    if remaining <= 0:
        return 0.0, _INF
    if now_dt >= deadline:
        return _INF, 0.0
    allowed_seconds = capacity = 0.0
    first = True
    for span, level, cap in _spans(calendar, now_dt, deadline):
        if level is not Level.BLACKOUT:
            allowed_seconds += span
            rate = current_rate if first else min(later_rate, cap)
            capacity += rate * span if rate < _INF else _INF
        first = False
    needed = remaining / allowed_seconds if allowed_seconds > 0 else _INF
    return needed, capacity
