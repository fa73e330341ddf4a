"""The guard's core: its state under one lock, driving the pure decision engine.

:class:`GuardCore` gathers what the policies said (the calendar window, the judge's
verdict and controller rate, the stops, the breaker, the fleet) into
:class:`wedguard.policy.decision.Inputs`, asks :func:`~wedguard.policy.decision.decide`
for the :class:`~wedguard.Decision`, and installs it where the hot path reads it (the
token buckets' rates, ``go``, ``free``, ``expires``), waking every waiter and telling
the sinks of a change. It is what a :class:`~wedguard.Session` talks to: the
:class:`~wedguard.interfaces.SessionHost` of a :class:`~wedguard.Guard`.

::

    sources ─► Sampler ─► Judge (analyser, controller) ─┐
    calendar, stops, breaker, fleet ───────────────────►├─► Inputs ─► decide() ─► Decision
                                                        │                          │
    Session.throttle (thread or asyncio driver) ◄── go / free / expires / buckets ◄┘
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from wedguard.clock import clock_await, clock_wait
from wedguard.decision import Decision
from wedguard.levels import Level, Verdict
from wedguard.policy import decision as engine
from wedguard.policy.alerting import Severity
from wedguard.policy.bucket import TokenBucketThrottler
from wedguard.runtime.events import AlertBook, EventQueue
from wedguard.runtime.fleet import Fleet
from wedguard.runtime.judge import Judge
from wedguard.runtime.sampler import Sampler
from wedguard.runtime.signals import StopFileSwitch
from wedguard.runtime.slots import Slot, Slots
from wedguard.units import format_rate

if TYPE_CHECKING:
    from wedguard.runtime.calls import CallAccount
    from wedguard.runtime.session import Session
    from wedguard.runtime.settings import GuardSettings

__all__ = ["GuardCore"]

log = logging.getLogger("wedguard.guard")

_INF: Final = float("inf")


class GuardCore:
    """A guard's state and decisions; see :class:`~wedguard.interfaces.SessionHost`.

    Built by :class:`~wedguard.Guard` from its checked settings. Everything here runs
    with ``lock`` held unless it says otherwise.
    """

    def __init__(self, settings: GuardSettings) -> None:
        s = self.settings = settings
        self.clock = s.clock
        self.now: Callable[[], float] = s.clock.monotonic
        # the guard's lock, and the condition its waiters wait on (the lock itself
        # is taken directly where every microsecond counts: protected calls)
        self.mutex = threading.RLock()
        self.lock = threading.Condition(self.mutex)
        self.async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        self.rate = s.rate
        self.calendar = s.calendar
        self.breaker = s.breaker
        self.nice, self.ionice, self.max_hold = s.nice, s.ionice, s.max_hold
        self.bytes = TokenBucketThrottler(s.rate, clock=s.clock)
        self.ops: TokenBucketThrottler | None = None
        if s.ops_rate < _INF:
            self.ops = TokenBucketThrottler(
                s.ops_rate, burst=max(1.0, s.ops_rate * 0.2), clock=s.clock
            )
        self.events = EventQueue(s.sinks, background=s.background)
        self.alerts = AlertBook(self.events)
        self.judge = Judge(s.sources, s.analyzer, s.controller, s.warmup_n)
        self.judge.shaper = s.shaper
        self.slots = Slots(self)
        self.sampler = Sampler(self)
        self.fleet = s.coordinator
        self.fleet_link = None if s.coordinator is None else Fleet(self, s.coordinator)
        self.stop_switch = None if s.stop_file is None else StopFileSwitch(self, s.stop_file)
        self.checks_stops = self.stop_switch is not None or self.fleet_link is not None
        self.reopen: Callable[[], None] | None = None  # the guard's: closed, used again
        self.closed = False  # the guard was closed (and not used again since)
        self.manual_stop = self.held = self.circuit = ""
        self.circuit_due = _INF  # when an open breaker may try again (monotonic)
        self.window: Any = None  # the calendar window in force (cached until it ends)
        self.next_sample = self.next_stop_check = -_INF
        self.held_since: float | None = None
        self.idle_since = -_INF  # when the last session ended (monotonic)
        # protected calls outside a session: the accounts with calls not yet reported,
        # and the bytes all such calls took (for what the backup moved)
        self.accounts: set[CallAccount] = set()
        self.call_bytes = 0.0
        # such calls' credit from the byte bucket, taken in blocks (wedguard.runtime.calls),
        # good until call_until or the next decision
        self.call_credit = 0.0
        self.call_until = -_INF
        self.stopped = False
        self.go = True
        self.expires = -_INF
        # the hot path's shortcut: going, no byte limit, nothing to recheck before the
        # window ends (never), so s.throttle(n) only counts
        self.free = False
        self.decision = self.make_decision(self.now(), self.clock.now())
        self.apply(self.decision, self.now(), emit=False)
        if self.breaker is not None and callable(getattr(self.breaker, "add_listener", None)):
            self.breaker.add_listener(self.on_breaker)  # type: ignore[attr-defined]

    def describe(self) -> str:
        """The guard's state in one line (its repr)."""
        d = self.decision
        return (
            f"rate={format_rate(self.rate)}, level={d.level.name}, "
            f"verdict={d.verdict.name}, allowed={format_rate(d.rate)}, "
            f"sessions={len(self.slots.active)}/{self.settings.max_concurrent or 'unlimited'}"
            + (", stopped" if self.stopped else "")
        )

    def stop_sampler(self) -> None:
        """Let the sampler thread end, and wait (1 s at most) until it has (no lock)."""
        with self.lock:
            thread = self.sampler.stop()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)

    def give_back_calls(self) -> None:
        """The calls' credit not spent goes back to the byte bucket (lock held)."""
        credit, self.call_credit, self.call_until = self.call_credit, 0.0, -_INF
        if 0 < credit < _INF:  # (an unlimited bucket lends without counting)
            self.bytes.untake(credit)

    def settle_calls(self, due_by: float | None = None) -> None:
        """Report the protected calls counted so far (each function's account): all
        of them, or those whose period ended by clock reading ``due_by``."""
        with self.lock:
            for account in list(self.accounts):
                if due_by is None or account.due <= due_by:
                    account.settle()

    def shutdown(self, timeout: float | None) -> bool:
        """Deliver what is queued (within ``timeout``) and close the sources that hold
        something open; False when something was still undelivered."""
        self.settle_calls()
        done = self.events.flush_all(timeout)
        for src in self.settings.sources:
            close = getattr(src, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()
        return done

    # -- the fleet's side of SessionHost ----------------------------------------------

    @property
    def fleet_bytes(self) -> Any:
        return None if self.fleet_link is None else self.fleet_link.bytes

    @property
    def fleet_ops(self) -> Any:
        return None if self.fleet_link is None else self.fleet_link.ops

    @property
    def fleet_leases(self) -> tuple[Any, ...]:
        return () if self.fleet_link is None else self.fleet_link.leases

    def fleet_due(self, n: float = 0.0, ops: int = 0) -> bool:
        return self.fleet_link is not None and self.fleet_link.due(n, ops)

    def fleet_refresh(self, n: float = 0.0, ops: int = 0) -> None:
        if self.fleet_link is not None:
            self.fleet_link.refresh(n, ops)

    # -- waiting ------------------------------------------------------------------------

    def notify(self) -> None:
        """Wake every waiter, threads and asyncio tasks."""
        self.lock.notify_all()
        for loop, fut in list(self.async_waiters):
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(_wake, fut)

    def wait(self, timeout: float) -> None:
        clock_wait(self.clock, self.lock, None if timeout == _INF else timeout)

    async def wait_async(self, fut: asyncio.Future[None], timeout: float) -> None:
        await clock_await(self.clock, fut, timeout)

    # -- sessions -----------------------------------------------------------------------

    def enter(self, session: Session, timeout: float | None) -> None:
        self.slots.enter(session, timeout)

    async def enter_async(self, session: Session, timeout: float | None) -> None:
        await self.slots.enter_async(session, timeout)

    def exit(self, session: Session, exc: BaseException | None) -> None:
        with self.lock:
            if session._closed:
                return
            session._finish(exc)
            slot = session._slot
            key = f"deadline/{session.name}"
            if key in self.alerts:
                self.alerts.resolve(key, self.clock.now())
        self.slots.release(slot)  # without the lock: a shared slot is freed in Redis
        if self.fleet_link is not None:
            self.fleet_link.settle()
        self.events.emit(session.report())

    def release(self, slot: Slot | None) -> None:
        self.slots.release(slot)

    def first_session(self, now: float) -> None:
        """The first session took its slot: sample now, check the stops now.

        Back to back with the last one (it ended less than a sample interval ago,
        such as one session per protected call) and with the sampler thread still
        running, the sample, the stop check and the decision in force are fresh
        still: nothing is redone, unless a baseline warm-up begins or the shaper's
        pauses depend on sessions running."""
        self.held_since = None
        if self.closed and self.reopen is not None:
            self.reopen()
        warmup = self.judge.warmup
        if warmup.armed:
            warmup.begin()
        settings = self.settings
        if (
            settings.background  # the sampler thread, still running, checks and samples
            and self.sampler.thread is not None
            and now - self.idle_since < settings.interval
            and not warmup.line
            and settings.shaper is None
        ):
            return
        self.next_sample = self.next_stop_check = now
        self.free = False
        self.expires = -_INF
        if self.stop_switch is not None:
            self.stop_switch.check()
        if self.settings.background:
            self.sampler.start()

    def last_session(self) -> None:
        """The last session left: a baseline warm-up no longer holds anyone."""
        self.idle_since = self.now()
        if self.judge.warmup.cancel():
            self.refresh_now()

    # -- the decision -------------------------------------------------------------------

    def calendar_cap(self) -> float:
        """The calendar window's cap in force (``math.inf``: none)."""
        return engine.window_cap(self.window)

    def pause_cause(self) -> str:
        return engine.pause_cause(self.decision, self.calendar_cap())

    def action(self, now: float) -> engine.Action:
        """What a session's driver does now: Go, Wait or Stop."""
        return engine.next_action(
            self.decision, now=now, expires=self.expires, calendar_cap=self.calendar_cap()
        )

    def window_deadline(self, now_dt: datetime) -> datetime | None:
        return engine.window_deadline(self.calendar, now_dt)

    def blackout_end(self, now_dt: datetime) -> datetime | None:
        return engine.blackout_end(self.calendar, now_dt)

    def inputs(self, now_dt: datetime, now: float | None = None) -> engine.Inputs:
        """What the engine decides from now (the window in force is updated); ``now``
        (monotonic) places the shaper's causal pauses."""
        self.window = engine.window_in_force(self.calendar, self.window, now_dt)
        needed = [s._needed for s in self.slots.sessions() if s._needed is not None]
        judge, fleet, switch = self.judge, self.fleet_link, self.stop_switch
        return engine.Inputs(
            rate=self.rate,
            ops_rate=self.settings.ops_rate,
            window=self.window,
            verdict=judge.verdict,
            impact_reasons=judge.reasons,
            allowed=judge.allowed,
            allowed_free=judge.allowed_free,
            manual_stop=self.manual_stop,
            file_stop="" if switch is None else switch.stop,
            fleet_stop="" if fleet is None else fleet.stop,
            held=self.held,
            learning=judge.warmup.line,
            circuit=self.circuit,
            unjudged=judge.unjudged,
            fleet_budget=None if fleet is None else fleet.fallback_budget,
            needed_rate=max(needed) if needed else None,
            at=now_dt,
            signals=judge.signals,
            **self._shaping(now),
        )

    def _shaping(self, now: float | None) -> dict[str, Any]:
        """The shaper's share, its causal pause and its reasons (none without one)."""
        shaper = self.settings.shaper
        if shaper is None or now is None:
            return {}
        ceiling = min(self.rate, self.calendar_cap())
        return {
            "shaped": float(shaper.allowed(ceiling)),
            "probing": bool(self.slots.active) and bool(shaper.paused(now)),
            "shaping_reasons": tuple(shaper.reasons(now)),
        }

    def make_decision(self, now: float, now_dt: datetime) -> Decision:
        """The engine's decision for now (no I/O)."""
        d = engine.decide(self.inputs(now_dt, now))
        self.stopped = d.stopped
        return d

    def refresh_now(self) -> None:
        """Recompute the decision after a change (no sampling)."""
        self.refresh(self.now(), sampled=True)

    def refresh(self, now: float, *, sampled: bool = False) -> None:
        """Recompute the decision. Inline mode samples here when due."""
        if not self.settings.background and self.slots.active:
            if self.checks_stops and now >= self.next_stop_check:
                self.next_stop_check = now + self.settings.stop_interval
                if self.stop_switch is not None:
                    self.stop_switch.check()
                if self.fleet_link is not None:
                    self.fleet_link.check()
            if not sampled and now >= self.next_sample:
                self.next_sample = now + self.settings.interval
                if self.judge.judges:
                    self.assess(self.judge.collect(), now)
                self.track_sessions(now)
        self.apply(self.make_decision(now, self.clock.now()), now)

    def assess(self, sample: dict[str, float], now: float) -> None:
        """Judge a sample (the level and ceiling in force; what the sessions moved)."""
        self.judge.assess(
            sample,
            now,
            level=self.decision.level,
            ceiling=min(self.rate, self.calendar_cap()),
            moved=sum(s._bytes for s in self.slots.sessions()) + self.call_bytes,
            active=bool(self.slots.active),
        )

    def _expiry(self, d: Decision, now: float) -> float:
        """When ``d`` must be recomputed: its window's end, and inline the next
        sample or stop check (a blackout is slept through in one piece: it ends only
        with its window, or a stop, which wakes the waiters)."""
        end = d.window_end
        if end is not None and d.at is not None:
            expires = now + (end - d.at).total_seconds()
        else:
            expires = _INF
        shaper = self.settings.shaper
        if shaper is not None and self.slots.active:  # a causal pause begins or ends
            expires = min(expires, float(shaper.next_change(now)))
        if not self.settings.background and self.slots.active:
            if d.level is not Level.BLACKOUT:
                expires = min(expires, self.next_sample)
            if self.checks_stops:
                expires = min(expires, self.next_stop_check)
        return expires

    def apply(self, d: Decision, now: float, *, emit: bool = True) -> None:
        """Install a new decision: buckets, expiry, wake-ups, events."""
        old = self.decision
        self.free = False
        self.decision = d
        go = not d.paused
        # While paused the buckets keep their rate (the hot path does not reach them,
        # and waiting sessions count no credit), so work resumes with a full burst.
        if go and self.bytes.rate != d.rate:
            self.bytes.set_rate(d.rate)
        if go and self.ops is not None and self.ops.rate != d.ops_rate:
            self.ops.set_rate(d.ops_rate)
        self.go = go
        for s in self.slots.sessions():  # credit taken under the old decision ends here
            s._revoke()
        self.give_back_calls()
        expires = self._expiry(d, now)
        self.expires = expires if expires > now else now + 1e-6
        self.free = go and d.rate == _INF and expires == _INF
        if self.fleet_link is not None:
            self.fleet_link.set_rate(self.rate, self.calendar_cap())
        holding = not go and engine.pause_cause(d, self.calendar_cap()) == "impact"
        if not holding or d.stopped:
            self.held_since = None
        elif self.held_since is None and self.slots.active:
            self.held_since = now
        if d.same_as(old):
            return
        self.notify()
        if emit:
            self.events.emit(d)
            self._alert_changes(d, old)

    def _alert_changes(self, d: Decision, old: Decision) -> None:
        alerts, at = self.alerts, d.at
        if d.verdict is Verdict.HALT and old.verdict is not Verdict.HALT:
            detail = "; ".join(self.judge.reasons) or "production is overloaded"
            alerts.fire("halt", Severity.CRITICAL, f"backup halted: {detail}", at)
        elif d.verdict is not Verdict.HALT and "halt" in alerts:
            alerts.resolve("halt", self.clock.now())
        if d.stopped and not old.stopped:
            alerts.fire("stop", Severity.HIGH, f"backup stopped: {d.stop_reason}", at)
        elif not d.stopped and "stop" in alerts:
            alerts.resolve("stop", self.clock.now())

    def current(self) -> Decision:
        """The decision in force now (no lock held; recomputed when it expired)."""
        self.idle_fleet_check()
        if self.circuit and self.now() >= self.circuit_due and self.breaker is not None:
            # an open breaker moves to HALF_OPEN when looked at (its listener tells us)
            with contextlib.suppress(Exception):
                getattr(self.breaker, "state", None)
        with self.lock:
            now = self.now()
            if now >= self.expires:
                self.refresh(now)
            return self.decision

    def idle_fleet_check(self) -> None:
        """With no sampler running (no session), read the fleet's stop flag here."""
        if self.fleet_link is not None and self.sampler.thread is None:
            self.fleet_link.check()

    # -- the operator's hand (no lock held) ----------------------------------------------

    def set_stop(self, *, stop: str | None = None, held: str | None = None) -> None:
        """Set (or with "" lift) the operator's stop and hold; None leaves one alone."""
        with self.lock:
            if stop is not None:
                self.manual_stop = stop
            if held is not None:
                self.held = held
            self.refresh_now()

    def set_rate(self, value: float) -> None:
        """An operator's rate: it holds at once; the controller starts from it."""
        with self.lock:
            self.rate = value
            now = self.now()
            self.judge.start_from(min(value, self.calendar_cap()), now)
            self.refresh(now, sampled=True)

    def tick(self) -> Decision:
        """Sample the sources now and recompute the decision (what the sampler does)."""
        sample = self.judge.collect()
        with self.lock:
            now = self.now()
            self.assess(sample, now)
            self.next_sample = now + self.settings.interval
            self.refresh(now, sampled=True)
            return self.decision

    # -- the sampler's steps (no lock held) -----------------------------------------------

    def poll_stops(self) -> None:
        """Look at the stop file and the fleet's flag; Redis without the lock."""
        if self.stop_switch is not None:
            self.stop_switch.poll()
        if self.fleet_link is not None:
            self.fleet_link.check()  # a Redis read: not under the lock
            self.fleet_link.refresh()  # idle credit back, a rate set here out

    def sample_step(self) -> None:
        """Read the sources (without the lock), judge, track sessions, decide."""
        sample = self.judge.collect() if self.judge.analyzer is not None else {}
        with self.lock:
            if self.slots.active:
                now = self.now()
                if self.judge.judges:
                    self.assess(sample, now)
                self.track_sessions(now)
                self.refresh(now, sampled=True)

    # -- deadlines and the breaker ------------------------------------------------------

    def track_sessions(self, now: float) -> None:
        """Timeline points and deadline pacing for every active session."""
        d = self.decision
        now_dt = self.clock.now()
        for s in self.slots.sessions():
            s._point(now, d)
            if s._deadline is None or s._expected is None:
                continue
            cap = _INF if s._bucket is None else s._bucket.rate
            remaining = max(0.0, s._expected - s._bytes)
            needed, capacity = engine.pace(
                self.calendar,
                now_dt=now_dt,
                deadline=s._deadline,
                remaining=remaining,
                current_rate=min(d.rate, cap),
                later_rate=min(self.rate, cap),
            )
            s._needed = needed
            self._deadline_alert(s, now_dt, needed, capacity, remaining)

    def _deadline_alert(
        self, s: Session, now_dt: datetime, needed: float, capacity: float, remaining: float
    ) -> None:
        key = f"deadline/{s.name}"
        assert s._deadline is not None
        if remaining > 0 and capacity < remaining:
            if key not in self.alerts:
                can = format_rate(capacity / max(1e-9, (s._deadline - now_dt).total_seconds()))
                self.alerts.fire(
                    key,
                    Severity.HIGH,
                    f"session {s.name!r} will miss its deadline {s._deadline.isoformat()}: "
                    f"needs {format_rate(needed)} over the allowed time, "
                    f"the guard allows about {can} on average",
                    now_dt,
                    labels={"session": s.name},
                )
        elif key in self.alerts:
            self.alerts.resolve(key, self.clock.now())

    def on_breaker(self, event: Any) -> None:
        """Breaker listener: forward the transition, alert while it is open."""
        self.events.emit(event)
        new = str(getattr(event.new, "name", event.new)).upper()
        name = str(getattr(event, "breaker", getattr(self.breaker, "name", "breaker")))
        why = getattr(event, "reason", "") or ""
        retry = 0.0
        if new == "OPEN":
            with contextlib.suppress(Exception):
                retry = float(getattr(self.breaker, "retry_after", 0.0))
        with self.lock:
            self.circuit, self.circuit_due = _circuit_line(new, name, why), _INF
            if new == "OPEN":
                self.circuit_due = self.now() + retry
            self.refresh_now()
            key = f"breaker/{name}"
            if new == "OPEN" and key not in self.alerts:
                text = f"circuit {name!r} opened: {why or 'failures'}"
                self.alerts.fire(key, Severity.HIGH, text, event.at)
            elif new == "CLOSED" and key in self.alerts:
                self.alerts.resolve(key, self.clock.now())


def _circuit_line(state: str, name: str, why: str) -> str:
    """The decision's line for a breaker in ``state`` ("" while it is closed)."""
    if state == "OPEN":
        return (
            f"circuit {name!r} is open ({why or 'failures'}): protected calls fail "
            "until it tries again"
        )
    if state == "HALF_OPEN":
        return f"circuit {name!r} is half-open: a trial call decides"
    return ""


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
