"""CircuitBreaker: states, the three forms, exclusions, listeners, storage."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
from datetime import datetime, timedelta
from typing import Any

import pytest

import wedguard as wg
from wedguard.policy.breaker import BreakerRecord, MemoryBreakerStorage
from wedguard.testing import FakeClock, RecordingSink

CLOSED = wg.BreakerState.CLOSED
OPEN = wg.BreakerState.OPEN
HALF_OPEN = wg.BreakerState.HALF_OPEN


class Boom(Exception):
    pass


class HttpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def fail(exc: BaseException | None = None) -> None:
    raise exc if exc is not None else Boom("down")


def ok(x: int = 1) -> int:
    return x


def open_breaker(clock: FakeClock, **kw: Any) -> wg.CircuitBreaker:
    b = wg.CircuitBreaker("db", clock=clock, **kw)
    b.trip("test")
    return b


# -- construction ------------------------------------------------------------------------


def test_defaults_are_the_platform_rule() -> None:
    """Opens after 3 consecutive failures, tries again after 5 minutes."""
    b = wg.CircuitBreaker()
    assert b.name == "default"
    assert b.failure_threshold == 3
    assert b.recovery_timeout == 300.0
    assert b.half_open_max_calls == 1
    assert b.success_threshold == 1
    assert b.state is CLOSED
    assert b.retry_after == 0.0
    assert isinstance(b.clock, wg.SystemClock)
    assert isinstance(b.storage, wg.MemoryBreakerStorage)


def test_recovery_timeout_accepts_duration_text(clock: FakeClock) -> None:
    assert wg.CircuitBreaker(recovery_timeout="5m").recovery_timeout == 300.0
    assert wg.CircuitBreaker(recovery_timeout="1h30m").recovery_timeout == 5400.0
    assert wg.CircuitBreaker(recovery_timeout=2).recovery_timeout == 2.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", ""),
        ("name", 3),
        ("failure_threshold", 0),
        ("failure_threshold", 2.5),
        ("failure_threshold", True),
        ("recovery_timeout", -1),
        ("recovery_timeout", "soon"),
        ("recovery_timeout", True),
        ("half_open_max_calls", 0),
        ("success_threshold", -2),
        ("exclude", "ValueError"),
        ("exclude", 42),
        ("clock", object()),
        ("failure_rate_threshold", 0),
        ("failure_rate_threshold", 1.5),
        ("failure_rate_threshold", "50%"),
        ("window_size", 0),
        ("minimum_calls", 0),
        ("storage", object()),
    ],
)
def test_bad_input_names_field_and_value(field: str, value: object) -> None:
    with pytest.raises(wg.ConfigError) as info:
        wg.CircuitBreaker(**{field: value})
    assert info.value.field == field
    assert field in str(info.value)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("item", [int, 42, "KeyError"])
def test_bad_exclude_entry_is_named(item: object) -> None:
    with pytest.raises(wg.ConfigError) as info:
        wg.CircuitBreaker(exclude=[KeyError, item])  # type: ignore[list-item]
    assert info.value.field == "exclude"
    assert info.value.value == item
    assert f"exclude: {item!r} is not valid" in str(info.value)


def test_minimum_calls_cannot_exceed_window() -> None:
    with pytest.raises(wg.ConfigError, match="minimum_calls: 11"):
        wg.CircuitBreaker(failure_rate_threshold=0.5, window_size=10, minimum_calls=11)


def test_listener_must_be_callable() -> None:
    with pytest.raises(wg.ConfigError, match="callback"):
        wg.CircuitBreaker().add_listener(42)  # type: ignore[arg-type]


# -- the state machine -------------------------------------------------------------------


def test_opens_after_consecutive_failures_only(clock: FakeClock) -> None:
    b = wg.CircuitBreaker(clock=clock)
    b.record_failure()
    b.record_failure()
    b.record_success()  # breaks the run
    b.record_failure()
    b.record_failure()
    assert b.state is CLOSED
    assert b.record.failures == 2
    b.record_failure(Boom("third"))
    assert b.state is OPEN
    assert "3 consecutive failures" in b.record.reason
    assert b.record.reason == "3 consecutive failures (last: Boom)"


def test_open_refuses_without_calling(clock: FakeClock) -> None:
    b = open_breaker(clock, recovery_timeout=60)
    calls = []
    clock.advance(15)
    with pytest.raises(wg.CircuitOpenError) as info:
        b.call(calls.append, 1)
    assert calls == []
    assert info.value.breaker == "db"
    assert info.value.retry_after == pytest.approx(45.0)
    assert info.value.reason == "test"
    assert not b.allow()
    assert b.retry_after == pytest.approx(45.0)


def test_half_open_after_recovery_timeout_then_closes(clock: FakeClock) -> None:
    b = open_breaker(clock, recovery_timeout="1m")
    clock.advance(59.9)
    assert b.state is OPEN
    clock.advance(0.1)
    assert b.state is HALF_OPEN
    assert b.retry_after == 0.0
    assert b.call(ok, 7) == 7
    assert b.state is CLOSED


def test_failed_trial_reopens_with_fresh_timer(clock: FakeClock) -> None:
    b = open_breaker(clock, recovery_timeout=60)
    clock.advance(100)
    with pytest.raises(Boom):
        b.call(fail)
    assert b.state is OPEN
    assert b.retry_after == 60.0
    assert "trial call failed" in b.record.reason


def test_half_open_trial_limit_and_success_threshold(clock: FakeClock) -> None:
    b = open_breaker(clock, recovery_timeout=1, half_open_max_calls=2, success_threshold=3)
    clock.advance(1)
    assert b.allow()
    assert b.allow()
    assert not b.allow()  # two trials running
    with pytest.raises(wg.CircuitOpenError) as info:
        b.call(ok)
    assert info.value.retry_after == 0.0
    assert "half-open" in info.value.reason
    b.record_success()  # frees a place
    assert b.state is HALF_OPEN
    assert b.allow()
    b.record_success()
    assert b.state is HALF_OPEN
    b.record_success()  # three consecutive successes
    assert b.state is CLOSED


def test_release_gives_a_trial_place_back_and_counts_nothing(clock: FakeClock) -> None:
    """A call admitted by allow() but never made (its caller was stopped first)."""
    b = open_breaker(clock, recovery_timeout=1)
    clock.advance(1)
    assert b.allow()
    assert not b.allow()  # the one trial place is taken
    b.release()
    assert b.state is HALF_OPEN
    assert b.allow()  # free again
    b.record_success()
    assert b.state is CLOSED
    for _ in range(2):
        b.record_failure(Boom())
    assert b.allow()
    b.release()  # CLOSED: neither a success (which would end the run of failures)...
    assert b.state is CLOSED
    b.record_failure(Boom())
    assert b.state is OPEN  # ...nor a failure: three in a row, as without it


def test_trip_and_reset(clock: FakeClock) -> None:
    b = wg.CircuitBreaker("x", clock=clock, recovery_timeout=10)
    b.trip("maintenance")
    assert b.state is OPEN
    assert b.record.reason == "maintenance"
    clock.advance(5)
    b.trip()  # restarts the timer
    assert b.retry_after == 10.0
    assert b.record.reason == "tripped by hand"
    b.reset()
    assert b.state is CLOSED
    assert b.retry_after == 0.0
    assert b.call(ok) == 1


def test_outcomes_while_open_are_ignored(clock: FakeClock) -> None:
    b = open_breaker(clock, recovery_timeout=10)
    b.record_failure()
    b.record_success()
    assert b.state is OPEN
    assert b.retry_after == 10.0


def test_outcome_of_call_admitted_before_a_change_does_not_count(clock: FakeClock) -> None:
    """A call that started while CLOSED must not decide a later half-open trial."""
    b = wg.CircuitBreaker(clock=clock, failure_threshold=1, recovery_timeout=1)

    def slow_failure() -> None:
        b.trip("elsewhere")
        clock.advance(1)
        assert b.state is HALF_OPEN
        raise Boom

    with pytest.raises(Boom):
        b.call(slow_failure)
    assert b.state is HALF_OPEN  # the stale failure did not reopen it
    assert b.allow()  # and the trial place is still free


def test_infinite_recovery_timeout_waits_for_reset(clock: FakeClock) -> None:
    b = open_breaker(clock, recovery_timeout=float("inf"))
    clock.advance(10**9)
    assert b.state is OPEN
    assert b.retry_after == float("inf")
    b.reset()
    assert b.state is CLOSED


def test_repr(clock: FakeClock) -> None:
    b = wg.CircuitBreaker("db", clock=clock)
    b.record_failure()
    assert repr(b) == "CircuitBreaker(name='db', state=CLOSED, failures=1/3, retry_after=0)"


# -- exclusions and BaseException ------------------------------------------------------


def test_excluded_types_propagate_but_do_not_count(clock: FakeClock) -> None:
    b = wg.CircuitBreaker(clock=clock, failure_threshold=1, exclude=[KeyError, LookupError])
    with pytest.raises(KeyError):
        b.call(fail, KeyError("k"))
    with pytest.raises(IndexError):  # a subclass of an excluded type
        b.call(fail, IndexError("i"))
    assert b.state is CLOSED
    with pytest.raises(Boom):
        b.call(fail)
    assert b.state is OPEN


def test_single_excluded_type_is_accepted(clock: FakeClock) -> None:
    b = wg.CircuitBreaker(clock=clock, failure_threshold=1, exclude=KeyError)
    with pytest.raises(KeyError):
        b.call(fail, KeyError("k"))
    assert b.state is CLOSED


def test_exclude_none_excludes_nothing(clock: FakeClock) -> None:
    b = wg.CircuitBreaker(clock=clock, failure_threshold=1, exclude=None)
    with pytest.raises(KeyError):
        b.call(fail, KeyError("k"))
    assert b.state is OPEN


def test_exclude_predicate_counts_5xx_not_4xx(clock: FakeClock) -> None:
    def client_error(exc: BaseException) -> bool:
        return isinstance(exc, HttpError) and exc.status < 500

    b = wg.CircuitBreaker(clock=clock, failure_threshold=2, exclude=[client_error])

    @b
    def request(status: int) -> None:
        raise HttpError(status)

    for status in (404, 400, 404, 503, 409):
        with pytest.raises(HttpError):
            request(status)
    assert b.state is CLOSED
    assert b.record.failures == 1  # only the 503; 4xx neither count nor reset
    with pytest.raises(HttpError):
        request(500)
    assert b.state is OPEN


def test_predicate_that_raises_is_logged_and_failure_counts(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(exc: BaseException) -> bool:
        raise RuntimeError("bug in predicate")

    b = wg.CircuitBreaker(clock=clock, failure_threshold=1, exclude=[broken])
    with caplog.at_level(logging.ERROR, logger="wedguard.breaker"), pytest.raises(Boom):
        b.call(fail)
    assert b.state is OPEN
    assert any("predicate" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(1), asyncio.CancelledError()])
def test_base_exceptions_never_count(clock: FakeClock, exc: BaseException) -> None:
    b = wg.CircuitBreaker(clock=clock, failure_threshold=1)
    with pytest.raises(type(exc)):
        b.call(fail, exc)
    with pytest.raises(type(exc)), b:
        raise exc
    b.record_failure(exc)
    assert b.state is CLOSED
    assert b.record.failures == 0


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), asyncio.CancelledError(), KeyError("x")])
def test_uncounted_exception_gives_trial_place_back(clock: FakeClock, exc: BaseException) -> None:
    b = open_breaker(clock, recovery_timeout=1, exclude=[KeyError])
    clock.advance(1)
    with pytest.raises(type(exc)):
        b.call(fail, exc)
    assert b.state is HALF_OPEN
    assert b.record.trials == 0
    assert b.call(ok) == 1  # the place was free for the next trial
    assert b.state is CLOSED


async def test_cancelled_task_does_not_count(clock: FakeClock) -> None:
    b = wg.CircuitBreaker(clock=clock, failure_threshold=1)
    started = asyncio.Event()

    @b
    async def hang() -> None:
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(hang())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert b.state is CLOSED
    assert b.record.failures == 0


# -- the three forms -------------------------------------------------------------------


def test_decorator_keeps_name_doc_and_signature(clock: FakeClock) -> None:
    b = wg.CircuitBreaker(clock=clock)

    def upload(path: str, *, retries: int = 3) -> str:
        """Upload a file."""
        return f"{path}:{retries}"

    guarded = b(upload)
    assert guarded.__name__ == "upload"
    assert guarded.__doc__ == "Upload a file."
    assert inspect.signature(guarded) == inspect.signature(upload)
    assert guarded.__wrapped__ is upload  # type: ignore[attr-defined]
    assert guarded("a.tar", retries=1) == "a.tar:1"


def test_sync_decorator_counts_and_refuses(clock: FakeClock) -> None:
    b = wg.CircuitBreaker(clock=clock, failure_threshold=2)
    calls: list[int] = []

    @b
    def work(n: int) -> int:
        calls.append(n)
        if n < 0:
            raise Boom
        return n * 2

    assert work(2) == 4
    for n in (-1, -2):
        with pytest.raises(Boom):
            work(n)
    assert b.state is OPEN
    with pytest.raises(wg.CircuitOpenError):
        work(3)
    assert calls == [2, -1, -2]


async def test_async_decorator(clock: FakeClock) -> None:
    b = wg.CircuitBreaker(clock=clock, failure_threshold=2, recovery_timeout=5)

    @b
    async def fetch(url: str, *, fail_it: bool = False) -> str:
        """Fetch a URL."""
        await asyncio.sleep(0)
        if fail_it:
            raise Boom(url)
        return url.upper()

    assert inspect.iscoroutinefunction(fetch)
    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch a URL."
    assert str(inspect.signature(fetch)) == "(url: 'str', *, fail_it: 'bool' = False) -> 'str'"
    assert fetch.__wrapped__.__name__ == "fetch"  # type: ignore[attr-defined]
    assert await fetch("a") == "A"
    for _ in range(2):
        with pytest.raises(Boom):
            await fetch("b", fail_it=True)
    assert b.state is OPEN
    with pytest.raises(wg.CircuitOpenError):
        await fetch("c")
    clock.advance(5)
    assert await fetch("d") == "D"  # the trial
    assert b.state is CLOSED


async def test_call_accepts_sync_and_async(clock: FakeClock) -> None:
    b = wg.CircuitBreaker(clock=clock, failure_threshold=1)

    async def double(x: int) -> int:
        return 2 * x

    assert b.call(ok, x=5) == 5
    assert b.call(functools.partial(ok, 6)) == 6
    assert await b.call(double, 4) == 8
    assert await b.call_async(double, 5) == 10
    with pytest.raises(Boom):
        b.call(fail)
    assert b.state is OPEN
    with pytest.raises(wg.CircuitOpenError):
        await b.call(double, 1)


def test_context_manager(clock: FakeClock) -> None:
    b = wg.CircuitBreaker(clock=clock, failure_threshold=2, recovery_timeout=5)
    with b as entered:
        assert entered is b
    for _ in range(2):
        with pytest.raises(Boom), b:
            raise Boom
    assert b.state is OPEN
    ran = []
    with pytest.raises(wg.CircuitOpenError), b:
        ran.append(1)
    assert ran == []
    clock.advance(5)
    with b:  # the trial
        assert b.state is HALF_OPEN
    assert b.state is CLOSED


def test_nested_context_managers_settle_their_own_calls(clock: FakeClock) -> None:
    b = wg.CircuitBreaker(clock=clock, failure_threshold=1)
    other = wg.CircuitBreaker("other", clock=clock, failure_threshold=1)

    def body() -> None:
        with b:
            with other:
                pass
            raise Boom

    with pytest.raises(Boom):
        body()
    assert b.state is OPEN
    assert other.state is CLOSED


async def test_async_context_manager(clock: FakeClock) -> None:
    b = wg.CircuitBreaker(clock=clock, failure_threshold=1, recovery_timeout=5)
    async with b:
        await asyncio.sleep(0)
    with pytest.raises(Boom):
        async with b:
            raise Boom
    assert b.state is OPEN
    with pytest.raises(wg.CircuitOpenError):
        async with b:
            pass
    clock.advance(5)
    async with b:
        pass
    assert b.state is CLOSED


def test_exit_without_enter_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="without __enter__"):
        wg.CircuitBreaker().__exit__(None, None, None)


# -- failure-rate mode -----------------------------------------------------------------


def test_failure_rate_mode_opens_on_ratio_after_minimum_calls(clock: FakeClock) -> None:
    b = wg.CircuitBreaker(clock=clock, failure_rate_threshold=0.5, window_size=10, minimum_calls=4)
    for _ in range(3):  # 3 of 3 failed, but fewer than minimum_calls
        b.record_failure()
    assert b.state is CLOSED  # and failure_threshold=3 is not used in this mode
    b.record_success()
    assert b.state is CLOSED  # 3 of 4 would do, but only a failure is checked
    b.record_failure()
    assert b.state is OPEN  # 4 of 5
    assert "failure rate 80% over the last 5 calls" in b.record.reason


def test_failure_rate_window_slides(clock: FakeClock) -> None:
    b = wg.CircuitBreaker(clock=clock, failure_rate_threshold=0.5, window_size=4, minimum_calls=4)
    for outcome in [False, False, True, True, True, False]:
        (b.record_success if outcome else b.record_failure)()
    # window now [True, True, True, False] -> 25 % failed
    assert b.state is CLOSED
    b.record_failure()  # [True, True, False, False] -> 50 %
    assert b.state is OPEN


def test_failure_rate_window_restarts_after_closing(clock: FakeClock) -> None:
    b = wg.CircuitBreaker(
        clock=clock,
        failure_rate_threshold=1.0,
        window_size=3,
        minimum_calls=3,
        recovery_timeout=1,
    )
    for _ in range(3):
        with pytest.raises(Boom):
            b.call(fail)
    assert b.state is OPEN
    clock.advance(1)
    assert b.call(ok) == 1
    assert b.state is CLOSED
    b.record_failure()
    b.record_failure()
    assert b.state is CLOSED  # the old failures were forgotten


# -- listeners and events --------------------------------------------------------------


def test_listener_gets_typed_transition_events(clock: FakeClock, sink: RecordingSink) -> None:
    b = wg.CircuitBreaker("db", clock=clock, failure_threshold=1, recovery_timeout=60)
    events: list[wg.BreakerEvent] = []
    assert b.add_listener(events.append) == events.append
    b.add_listener(sink.emit)
    opened = clock.now()
    with pytest.raises(Boom):
        b.call(fail)
    clock.advance(60)
    assert b.state is HALF_OPEN
    b.call(ok)
    assert [(e.old, e.new) for e in events] == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]
    first = events[0]
    assert first.breaker == "db"
    assert isinstance(first.at, datetime)
    assert first.at.tzinfo is not None
    assert first.at == opened
    assert events[1].at == events[2].at == opened + timedelta(seconds=60)
    assert "1 consecutive failures" in first.reason
    assert events[1].reason == "recovery timeout of 60 s passed"
    assert isinstance(first, wg.Event)
    assert first.kind == "breaker"
    data = first.to_dict()
    assert data == {
        "kind": "breaker",
        "breaker": "db",
        "old": "CLOSED",
        "new": "OPEN",
        "reason": first.reason,
        "at": first.at.isoformat(),
    }
    json.dumps(data)
    assert sink.of_kind("breaker") == events
    with pytest.raises(AttributeError):
        first.reason = "x"  # type: ignore[misc]


def test_listener_sees_trip_and_reset_but_not_repeats(clock: FakeClock) -> None:
    b = wg.CircuitBreaker(clock=clock)
    events: list[wg.BreakerEvent] = []
    b.add_listener(events.append)
    b.reset()  # already closed: no event
    b.trip("by hand")
    b.trip("again")  # already open: no event
    b.reset()
    assert [(e.old, e.new, e.reason) for e in events] == [
        (CLOSED, OPEN, "by hand"),
        (OPEN, CLOSED, "reset by hand"),
    ]
    b.remove_listener(events.append)
    b.remove_listener(events.append)  # unknown: ignored
    b.trip()
    assert len(events) == 2


def test_failing_listener_is_logged_and_isolated(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    b = wg.CircuitBreaker("db", clock=clock, failure_threshold=1)
    seen: list[wg.BreakerEvent] = []

    def broken(event: wg.BreakerEvent) -> None:
        raise RuntimeError("listener bug")

    b.add_listener(broken)
    b.add_listener(seen.append)
    with caplog.at_level(logging.ERROR, logger="wedguard.breaker"), pytest.raises(Boom):
        b.call(fail)  # the caller sees its own exception, not the listener's
    assert b.state is OPEN
    assert len(seen) == 1  # the next listener still ran
    records = [r for r in caplog.records if r.name == "wedguard.breaker"]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert "listener" in records[0].getMessage()
    b.reset()  # and the breaker keeps working
    assert b.call(ok) == 1
    assert len(seen) == 2


def test_listener_may_call_back_into_the_breaker(clock: FakeClock) -> None:
    """No lock is held while listeners run, and events stay in order."""
    b = wg.CircuitBreaker(clock=clock, failure_threshold=1)
    events: list[tuple[wg.BreakerState, wg.BreakerState]] = []

    def listener(event: wg.BreakerEvent) -> None:
        events.append((event.old, event.new))
        if event.new is OPEN:
            b.reset()  # a transition from inside a listener

    b.add_listener(listener)
    b.trip()
    assert events == [(CLOSED, OPEN), (OPEN, CLOSED)]
    assert b.state is CLOSED


# -- storage ---------------------------------------------------------------------------


def test_memory_storage_compare_and_set() -> None:
    storage = MemoryBreakerStorage()
    assert storage.load() == BreakerRecord()
    new = BreakerRecord(state=OPEN, version=1, generation=1, opened_at=5.0, reason="r")
    assert storage.compare_and_set(0, new)
    assert storage.load() is new
    assert not storage.compare_and_set(0, BreakerRecord(version=1))
    assert storage.load() is new
    assert isinstance(storage, wg.BreakerStorage)
    assert "OPEN" in repr(storage) or "open" in repr(storage)
    with pytest.raises(wg.ConfigError, match="record"):
        MemoryBreakerStorage("closed")  # type: ignore[arg-type]


def test_breaker_starts_from_stored_state(clock: FakeClock) -> None:
    storage = MemoryBreakerStorage(
        BreakerRecord(state=OPEN, version=7, generation=3, opened_at=0.0, reason="elsewhere")
    )
    b = wg.CircuitBreaker(clock=clock, storage=storage, recovery_timeout=10)
    assert b.state is OPEN
    assert b.retry_after == 10.0
    with pytest.raises(wg.CircuitOpenError, match="elsewhere"):
        b.call(ok)


class RacingStorage:
    """A storage shared with another process that writes between our load and set."""

    def __init__(self) -> None:
        self.inner = MemoryBreakerStorage()
        self.races = 0
        self.attempts = 0

    def load(self) -> BreakerRecord:
        return self.inner.load()

    def compare_and_set(self, expected_version: int, new: BreakerRecord) -> bool:
        self.attempts += 1
        if self.races:
            self.races -= 1
            current = self.inner.load()
            # the other process counted a failure of its own
            other = BreakerRecord(
                state=current.state,
                version=current.version + 1,
                generation=current.generation,
                failures=current.failures + 1,
                opened_at=current.opened_at,
            )
            assert self.inner.compare_and_set(current.version, other)
        return self.inner.compare_and_set(expected_version, new)


def test_transitions_are_compare_and_set_never_lost_updates(clock: FakeClock) -> None:
    storage = RacingStorage()
    b = wg.CircuitBreaker(clock=clock, storage=storage, failure_threshold=3)
    storage.races = 1
    b.record_failure()  # retried on the fresh record: both failures count
    assert b.record.failures == 2
    assert storage.attempts == 2
    b.record_failure()
    assert b.state is OPEN


def test_each_breaker_has_its_own_default_storage() -> None:
    a, b = wg.CircuitBreaker("a"), wg.CircuitBreaker("b")
    a.trip()
    assert b.state is CLOSED
    assert a.storage is not b.storage


def test_record_round_trips_through_a_dict() -> None:
    record = BreakerRecord(
        state=HALF_OPEN, version=9, generation=4, successes=1, trials=2, opened_at=1.5, reason="r"
    )
    data = record.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert BreakerRecord.from_dict(data) == record
    assert BreakerRecord.from_dict({}) == BreakerRecord()
    with pytest.raises(wg.ConfigError, match="record"):
        BreakerRecord.from_dict({"state": "ajar"})


def test_docstring_examples() -> None:
    import doctest

    import wedguard.policy.breaker as package
    from wedguard.policy.breaker import core, state

    results = [doctest.testmod(m, optionflags=doctest.ELLIPSIS) for m in (package, core, state)]
    assert sum(r.attempted for r in results) > 10
    assert sum(r.failed for r in results) == 0


def test_failure_rate_outcome_counts_once_when_compare_and_set_is_retried(
    clock: FakeClock,
) -> None:
    storage = RacingStorage()
    b = wg.CircuitBreaker(
        clock=clock,
        storage=storage,
        failure_rate_threshold=0.5,
        window_size=4,
        minimum_calls=2,
    )
    b.record_success()
    storage.races = 1
    b.record_failure()  # 1 of 2 failed: opens; the retry must not add a second failure
    assert b.state is OPEN
    assert "50% over the last 2 calls" in b.record.reason


def test_reasons_name_the_exception_type_not_its_text(clock: FakeClock) -> None:
    b = wg.CircuitBreaker(clock=clock, failure_threshold=1)
    with pytest.raises(Boom):
        b.call(fail, Boom("https://hooks.example/T0/secret-token"))
    assert "secret-token" not in b.record.reason
    assert b.record.reason.endswith("(last: Boom)")
