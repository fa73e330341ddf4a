"""The circuit breaker: closed, open, half-open, on a clock, over a storage."""

from __future__ import annotations

import collections
import contextvars
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Final, TypeVar, cast

import attrs
from typing_extensions import ParamSpec

from wedguard.clock import Clock, check_clock
from wedguard.errors import CircuitOpenError, ConfigError
from wedguard.policy.breaker.calls import wrap_async, wrap_sync
from wedguard.policy.breaker.state import (
    _TRANSITIONS,
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerEvent,
    BreakerRecord,
    BreakerState,
    BreakerStorage,
    Exclusion,
    MemoryBreakerStorage,
)
from wedguard.units import parse_duration

__all__ = ["CircuitBreaker"]

P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger("wedguard.breaker")


# -- the breaker -----------------------------------------------------------------------

# (breaker, generation, trial) for each `with breaker:` block open in this context
_Entry = tuple["CircuitBreaker", int, bool]
_entered: contextvars.ContextVar[tuple[_Entry, ...]] = contextvars.ContextVar(
    "wedguard_breaker_entered", default=()
)

_ANY: Final = -1  # "whatever generation is current": the pure core's record_*()


def _positive_int(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(field, value, "a whole number >= 1")
    return value


def _exclusions(
    value: object,
) -> tuple[tuple[type[BaseException], ...], tuple[Callable[[BaseException], bool], ...]]:
    items: Iterable[object]
    if value is None:
        items = ()
    elif isinstance(value, type) or callable(value):
        items = (value,)
    elif isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigError("exclude", value, "exception types or predicates (exc) -> bool")
    else:
        items = tuple(value)
    types: list[type[BaseException]] = []
    predicates: list[Callable[[BaseException], bool]] = []
    for item in items:
        if isinstance(item, type):
            if not issubclass(item, BaseException):
                raise ConfigError("exclude", item, "an exception type or a predicate")
            types.append(item)
        elif callable(item):
            predicates.append(cast(Callable[[BaseException], bool], item))
        else:
            raise ConfigError("exclude", item, "an exception type or a predicate")
    return tuple(types), tuple(predicates)


def _describe(exc: BaseException | None) -> str:
    # the type only: an exception's text may carry a URL with a token in it
    return "" if exc is None else f" (last: {type(exc).__qualname__})"


class CircuitBreaker:
    """Stop calling something that keeps failing; try again after a while.

    Args:
        name: names the breaker in errors, events and logs.
        failure_threshold: consecutive failures that open a closed breaker.
        recovery_timeout: how long an open breaker refuses calls before it lets trial
            calls through: seconds, or duration text such as ``"5m"``.
        half_open_max_calls: how many trial calls may run at a time while half-open.
        success_threshold: consecutive successful trial calls that close it again.
        exclude: exception types, or predicates ``(exc) -> bool``, for exceptions that
            propagate but do not count as failures (a 4xx answer, say). A
            ``BaseException`` that is not an ``Exception`` (``KeyboardInterrupt``,
            ``SystemExit``, ``asyncio.CancelledError``) never counts.
        clock: where time comes from (default: the system clock).
        failure_rate_threshold: switches on failure-rate mode (off when ``None``): the
            breaker opens when at least this fraction (0 < ratio <= 1) of the last
            ``window_size`` calls failed, once the window holds ``minimum_calls``
            calls. In this mode ``failure_threshold`` is not used.
        window_size: the sliding window of the failure-rate mode, in calls.
        minimum_calls: calls the window must hold before the failure rate counts.
        storage: where the state lives (default: a new :class:`MemoryBreakerStorage`).

    Every bad argument raises :class:`~wedguard.ConfigError` naming it.

    Example::

        breaker = wg.CircuitBreaker("uploads", exclude=[lambda e: e.status < 500])

        @breaker
        def upload(path: str) -> None: ...

        @breaker
        async def upload_async(path: str) -> None: ...

        with breaker:
            do_something()
        breaker.call(upload, "a.tar")   # raises wg.CircuitOpenError while open

    Thread-safe. The protected function runs with no lock held; only state changes
    are locked, and on the closed path with nothing to reset no lock is taken.

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "__weakref__",
        "_clock",
        "_delivering",
        "_exclude_predicates",
        "_exclude_types",
        "_failure_threshold",
        "_half_open_max_calls",
        "_listeners",
        "_load",
        "_lock",
        "_minimum_calls",
        "_name",
        "_pending",
        "_rate_threshold",
        "_recovery_timeout",
        "_storage",
        "_success_threshold",
        "_window",
    )

    def __init__(
        self,
        name: str = "default",
        *,
        failure_threshold: int = 3,
        recovery_timeout: float | str = 300.0,
        half_open_max_calls: int = 1,
        success_threshold: int = 1,
        exclude: Iterable[Exclusion] | Exclusion | None = (),
        clock: Clock | None = None,
        failure_rate_threshold: float | None = None,
        window_size: int = 20,
        minimum_calls: int = 10,
        storage: BreakerStorage | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError("name", name, "a non-empty string")
        self._name = name
        self._failure_threshold = _positive_int("failure_threshold", failure_threshold)
        if isinstance(recovery_timeout, bool):
            raise ConfigError("recovery_timeout", recovery_timeout, "seconds or '5m'")
        self._recovery_timeout = parse_duration(recovery_timeout, field="recovery_timeout")
        self._half_open_max_calls = _positive_int("half_open_max_calls", half_open_max_calls)
        self._success_threshold = _positive_int("success_threshold", success_threshold)
        self._exclude_types, self._exclude_predicates = _exclusions(exclude)
        self._clock: Clock = check_clock(clock)
        if failure_rate_threshold is None:
            self._rate_threshold: float | None = None
        elif (
            isinstance(failure_rate_threshold, bool)
            or not isinstance(failure_rate_threshold, (int, float))
            or not 0 < failure_rate_threshold <= 1
        ):
            raise ConfigError(
                "failure_rate_threshold", failure_rate_threshold, "a ratio 0 < r <= 1, or None"
            )
        else:
            self._rate_threshold = float(failure_rate_threshold)
        window_size = _positive_int("window_size", window_size)
        self._minimum_calls = _positive_int("minimum_calls", minimum_calls)
        if self._minimum_calls > window_size:
            raise ConfigError(
                "minimum_calls", minimum_calls, f"at most window_size ({window_size})"
            )
        # outcomes of closed calls in the current generation: True = failed
        self._window: collections.deque[bool] | None = (
            None if self._rate_threshold is None else collections.deque(maxlen=window_size)
        )
        if storage is None:
            storage = MemoryBreakerStorage()
        elif not isinstance(storage, BreakerStorage):
            raise ConfigError("storage", storage, "a BreakerStorage (load(), compare_and_set())")
        self._storage: BreakerStorage = storage
        self._load = storage.load
        self._lock = threading.Lock()
        self._listeners: tuple[Callable[[BreakerEvent], object], ...] = ()
        self._pending: collections.deque[BreakerEvent] = collections.deque()
        self._delivering = False

    # -- properties ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The breaker's name."""
        return self._name

    @property
    def failure_threshold(self) -> int:
        return self._failure_threshold

    @property
    def recovery_timeout(self) -> float:
        """Seconds an open breaker waits before trial calls."""
        return self._recovery_timeout

    @property
    def half_open_max_calls(self) -> int:
        return self._half_open_max_calls

    @property
    def success_threshold(self) -> int:
        return self._success_threshold

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def storage(self) -> BreakerStorage:
        return self._storage

    @property
    def record(self) -> BreakerRecord:
        """The stored record as it is now (no transition is made)."""
        return self._load()

    @property
    def state(self) -> BreakerState:
        """Where the breaker stands now.

        An open breaker whose recovery timeout has passed moves to HALF_OPEN when it is
        looked at (and its listeners hear of it).
        """
        record = self._load()
        if record.state is OPEN and self._recovered(record):
            return self._transition("recovery_timeout", OPEN).state
        return record.state

    @property
    def retry_after(self) -> float:
        """Seconds until a trial call is allowed: 0 when closed or half-open."""
        return self._retry_after(self._load())

    def _retry_after(self, record: BreakerRecord) -> float:
        if record.state is not OPEN:
            return 0.0
        return max(0.0, record.opened_at + self._recovery_timeout - self._clock.monotonic())

    # -- the pure core ------------------------------------------------------------------

    def allow(self) -> bool:
        """May a call be made now? Never waits.

        CLOSED: yes. OPEN: no, until the recovery timeout has passed. HALF_OPEN: yes if
        fewer than ``half_open_max_calls`` trials are running, and the answer takes a
        trial place, which :meth:`record_success` or :meth:`record_failure` gives back.
        """
        record = self._load()
        if record.state is CLOSED:
            return True
        return self._admit(record) is not None

    def record_success(self) -> None:
        """Report that a call succeeded."""
        self._settle_success(_ANY, None)

    def record_failure(self, exc: BaseException | None = None) -> None:
        """Report that a call failed, with the exception if there was one.

        An excluded exception, or a ``BaseException`` that is not an ``Exception``,
        does not count; a trial call's place is given back all the same.
        """
        if exc is not None and not self._counts(exc):
            self._settle_ignored(_ANY, None)
        else:
            self._settle_failure(_ANY, None, exc)

    def release(self) -> None:
        """Give back the place :meth:`allow` took for a call that was never made (the
        caller was stopped before it); nothing is counted.

        .. versionadded:: 0.2.0
        """
        self._settle_ignored(_ANY, None)

    def trip(self, reason: str = "") -> None:
        """Open the breaker now, from any state, with a fresh recovery timer."""
        self._transition("trip", None, reason or "tripped by hand")

    def reset(self) -> None:
        """Close the breaker now, from any state, clearing every counter."""
        self._transition("reset", None, "reset by hand")

    # -- listeners ----------------------------------------------------------------------

    def add_listener(
        self, callback: Callable[[BreakerEvent], object]
    ) -> Callable[[BreakerEvent], object]:
        """Call ``callback(event)`` on every change of state; returns ``callback``.

        Listeners run after the change was stored, in a thread that changed the
        state, with no lock held, one event at a time and in order. A listener that
        raises is logged on the ``wedguard.breaker`` logger and otherwise ignored.

        Example::

            breaker.add_listener(lambda e: print(f"{e.breaker}: {e.old} -> {e.new}"))
            breaker.add_listener(sink.emit)   # events are wedguard Events
        """
        if not callable(callback):
            raise ConfigError("callback", callback, "a callable taking one event")
        with self._lock:
            self._listeners = (*self._listeners, callback)
        return callback

    def remove_listener(self, callback: Callable[[BreakerEvent], object]) -> None:
        """Stop calling ``callback``; unknown callbacks are ignored."""
        with self._lock:
            listeners = list(self._listeners)
            if callback in listeners:
                listeners.remove(callback)
            self._listeners = tuple(listeners)

    # -- the three forms: call, decorator, context manager -------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)`` through the breaker.

        Raises :class:`~wedguard.CircuitOpenError` without calling ``fn`` while the
        breaker is open. For a coroutine function, returns a coroutine that does the
        same when awaited.
        """
        if inspect.iscoroutinefunction(fn):
            return cast(R, self.call_async(cast(Callable[P, Awaitable[Any]], fn), *args, **kwargs))
        generation, trial = self._enter()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._exit_with(generation, trial, exc)
            raise
        self._settle_success(generation, trial)
        return result

    async def call_async(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Await ``fn(*args, **kwargs)`` through the breaker."""
        generation, trial = self._enter()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._exit_with(generation, trial, exc)
            raise
        self._settle_success(generation, trial)
        return result

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate a sync or async function so every call goes through the breaker.

        The wrapper keeps ``fn``'s name, docstring and signature
        (:func:`functools.wraps`), and type checkers keep its parameter types.
        """
        if inspect.iscoroutinefunction(fn):
            return cast(Callable[P, R], wrap_async(self, cast(Callable[P, Awaitable[Any]], fn)))
        return wrap_sync(self, fn)

    def __enter__(self) -> CircuitBreaker:
        generation, trial = self._enter()
        _entered.set((*_entered.get(), (self, generation, trial)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        generation, trial = self._pop_entered()
        if exc is None:
            self._settle_success(generation, trial)
        else:
            self._exit_with(generation, trial, exc)

    async def __aenter__(self) -> CircuitBreaker:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def _pop_entered(self) -> tuple[int, bool]:
        stack = _entered.get()
        for i in range(len(stack) - 1, -1, -1):
            if stack[i][0] is self:
                _entered.set(stack[:i] + stack[i + 1 :])
                return stack[i][1], stack[i][2]
        raise RuntimeError(f"circuit {self._name!r}: __exit__ without __enter__")

    # -- admission and outcomes ------------------------------------------------------

    def _recovered(self, record: BreakerRecord) -> bool:
        return self._clock.monotonic() - record.opened_at >= self._recovery_timeout

    def _enter(self, record: BreakerRecord | None = None) -> tuple[int, bool]:
        """Admit a call or raise CircuitOpenError; returns (generation, trial)."""
        if record is None:
            record = self._load()
        if record.state is CLOSED:
            return record.generation, False
        admitted = self._admit(record)
        if admitted is None:
            raise self._open_error()
        return admitted

    def _open_error(self) -> CircuitOpenError:
        record = self._load()
        if record.state is HALF_OPEN:
            reason = f"half-open: {self._half_open_max_calls} trial call(s) already running"
            return CircuitOpenError(self._name, 0.0, reason)
        return CircuitOpenError(self._name, self._retry_after(record), record.reason)

    def _admit(self, seen: BreakerRecord) -> tuple[int, bool] | None:
        """The slow admission path: OPEN or HALF_OPEN (or changed since ``seen``)."""
        if seen.state is OPEN and not self._recovered(seen):
            return None
        events: list[BreakerEvent] = []
        with self._lock:
            while True:
                record = self._load()
                state = record.state
                if state is CLOSED:
                    return record.generation, False
                if state is OPEN:
                    if not self._recovered(record):
                        return None
                    new = self._next(record, "recovery_timeout", self._recovery_reason())
                    new = attrs.evolve(new, trials=1)
                elif record.trials >= self._half_open_max_calls:
                    return None
                else:
                    new = attrs.evolve(record, version=record.version + 1, trials=record.trials + 1)
                if self._storage.compare_and_set(record.version, new):
                    if new.state is not state:
                        events.append(self._event(state, new))
                    break
            self._pending.extend(events)
        if events:
            self._deliver()
        return new.generation, True

    def _counts(self, exc: BaseException) -> bool:
        """Does ``exc`` count as a failure?"""
        if not isinstance(exc, Exception):
            return False
        if self._exclude_types and isinstance(exc, self._exclude_types):
            return False
        for predicate in self._exclude_predicates:
            try:
                if predicate(exc):
                    return False
            except Exception:
                logger.exception(
                    "circuit %r: exclude predicate %r raised; counting the failure",
                    self._name,
                    predicate,
                )
        return True

    def _exit_with(self, generation: int, trial: bool, exc: BaseException) -> None:
        if self._counts(exc):
            self._settle_failure(generation, trial, exc)
        elif trial:
            self._settle_ignored(generation, trial)

    def _settle_success(self, generation: int, trial: bool | None) -> None:
        self._update(generation, trial, None, success=True)

    def _settle_failure(
        self, generation: int, trial: bool | None, exc: BaseException | None
    ) -> None:
        self._update(generation, trial, exc, success=False)

    def _settle_ignored(self, generation: int, trial: bool | None) -> None:
        self._update(generation, trial, None, success=None)

    def _update(
        self,
        generation: int,
        trial: bool | None,
        exc: BaseException | None,
        *,
        success: bool | None,
    ) -> None:
        """Count one outcome: success True, failure False, or None (neither).

        ``generation`` is the one that admitted the call (``_ANY`` for the pure core);
        ``trial`` whether it took a trial place (None: whatever the state says).
        """
        if success and self._window is None:
            record = self._load()
            if record.state is CLOSED and not record.failures:
                return  # nothing to reset: no lock on the common path
        events: list[BreakerEvent] = []
        window = self._window
        with self._lock:
            while True:
                record = self._load()
                if generation != _ANY and record.generation != generation:
                    return  # the breaker moved on since the call was admitted
                if window is not None and record.state is CLOSED and not trial:
                    if success is not None:
                        window.append(not success)  # True = failed
                    window = None  # once, even if the compare-and-set is retried
                new = self._count(record, trial, exc, success)
                if new is None:
                    return
                if self._storage.compare_and_set(record.version, new):
                    break
            if new.state is not record.state:
                if new.state is CLOSED and self._window is not None:
                    self._window.clear()
                events.append(self._event(record.state, new))
                self._pending.extend(events)
        if events:
            self._deliver()

    def _count(
        self,
        record: BreakerRecord,
        trial: bool | None,
        exc: BaseException | None,
        success: bool | None,
    ) -> BreakerRecord | None:
        """The record after one outcome, or None if nothing changes (lock held)."""
        state = record.state
        if state is CLOSED:
            if trial or success is None:
                return None
            window = self._window
            if window is not None:  # the outcome is in the window already
                if success:
                    return None
                calls = len(window)
                failed = window.count(True)
                threshold = cast(float, self._rate_threshold)
                if calls >= self._minimum_calls and failed >= threshold * calls:
                    reason = (
                        f"failure rate {failed / calls:.0%} over the last {calls} calls"
                        f"{_describe(exc)}"
                    )
                    return self._next(record, "too_many_failures", reason)
                return None
            if success:
                if not record.failures:
                    return None
                return attrs.evolve(record, version=record.version + 1, failures=0)
            failures = record.failures + 1
            if failures >= self._failure_threshold:
                reason = f"{failures} consecutive failures{_describe(exc)}"
                return self._next(record, "too_many_failures", reason)
            return attrs.evolve(record, version=record.version + 1, failures=failures)
        if state is HALF_OPEN:
            if trial is False:
                return None
            trials = max(0, record.trials - 1)
            if success is None:
                if trials == record.trials:
                    return None
                return attrs.evolve(record, version=record.version + 1, trials=trials)
            if not success:
                return self._next(record, "trial_failed", f"trial call failed{_describe(exc)}")
            successes = record.successes + 1
            if successes >= self._success_threshold:
                reason = f"{successes} trial call(s) succeeded"
                return self._next(record, "trials_succeeded", reason)
            return attrs.evolve(
                record, version=record.version + 1, trials=trials, successes=successes
            )
        return None  # OPEN: outcomes of calls admitted before it opened do not count

    def _next(self, record: BreakerRecord, event: str, reason: str) -> BreakerRecord:
        """The record after ``event`` per the transition table (lock held)."""
        state = _TRANSITIONS[record.state, event]
        opened_at = self._clock.monotonic() if state is OPEN else record.opened_at
        return BreakerRecord(
            state=state,
            version=record.version + 1,
            generation=record.generation + 1,
            opened_at=opened_at,
            reason=reason,
        )

    def _recovery_reason(self) -> str:
        return f"recovery timeout of {self._recovery_timeout:g} s passed"

    def _transition(
        self, event: str, expected: BreakerState | None, reason: str | None = None
    ) -> BreakerRecord:
        """Apply ``event`` (if the state is still ``expected``, when given)."""
        events: list[BreakerEvent] = []
        with self._lock:
            while True:
                record = self._load()
                if expected is not None and record.state is not expected:
                    return record
                if event == "recovery_timeout" and not self._recovered(record):
                    return record
                new = self._next(record, event, reason or self._recovery_reason())
                if self._storage.compare_and_set(record.version, new):
                    break
            if new.state is CLOSED and self._window is not None:
                self._window.clear()
            if new.state is not record.state:
                events.append(self._event(record.state, new))
                self._pending.extend(events)
        if events:
            self._deliver()
        return new

    def _event(self, old: BreakerState, new: BreakerRecord) -> BreakerEvent:
        return BreakerEvent(self._name, old, new.state, new.reason, self._clock.now())

    def _deliver(self) -> None:
        """Hand pending events to the listeners, in order, with no lock held."""
        with self._lock:
            if self._delivering:
                return  # the thread delivering now will hand ours over too
            self._delivering = True
        try:
            while True:
                with self._lock:
                    if not self._pending:
                        self._delivering = False
                        return
                    event = self._pending.popleft()
                    listeners = self._listeners
                for listener in listeners:
                    try:
                        listener(event)
                    except Exception:
                        logger.exception(
                            "circuit %r: listener %r failed on %s -> %s",
                            self._name,
                            listener,
                            event.old,
                            event.new,
                        )
        except BaseException:
            with self._lock:
                self._delivering = False
            raise

    def __repr__(self) -> str:
        record = self._load()
        return (
            f"CircuitBreaker(name={self._name!r}, state={record.state}, "
            f"failures={record.failures}/{self._failure_threshold}, "
            f"retry_after={self.retry_after:g})"
        )
