"""The breaker against a tiny reference model, driven by hypothesis on a FakeClock.

The model is the issue's rules written as plainly as possible. Calls are started and
finished in any order (coroutines driven by hand), so outcomes of calls admitted in an
earlier state are exercised too: they must not count.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any

from hypothesis import given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

import wedguard as wg
from wedguard.testing import FakeClock

CLOSED = wg.BreakerState.CLOSED
OPEN = wg.BreakerState.OPEN
HALF_OPEN = wg.BreakerState.HALF_OPEN


class Boom(Exception):
    pass


class Ignored(Exception):
    pass


class Model:
    """The rules of issue 4, as plainly as they can be written."""

    def __init__(
        self,
        clock: FakeClock,
        failure_threshold: int,
        recovery_timeout: float,
        half_open_max_calls: int,
        success_threshold: int,
        rate: float | None,
        window_size: int,
        minimum_calls: int,
    ) -> None:
        self.clock = clock
        self.failure_threshold = failure_threshold
        self.recovery_timeout = recovery_timeout
        self.half_open_max_calls = half_open_max_calls
        self.success_threshold = success_threshold
        self.rate = rate
        self.window_size = window_size
        self.minimum_calls = minimum_calls
        self.state = CLOSED
        self.generation = 0
        self.failures = 0
        self.successes = 0
        self.trials = 0
        self.opened_at = 0.0
        self.window: list[bool] = []
        self.transitions: list[tuple[wg.BreakerState, wg.BreakerState]] = []

    def _go(self, state: wg.BreakerState) -> None:
        if state is not self.state:
            self.transitions.append((self.state, state))
        self.state = state
        self.generation += 1
        self.failures = self.successes = self.trials = 0
        if state is OPEN:
            self.opened_at = self.clock.monotonic()
        if state is CLOSED:
            self.window = []

    def look(self) -> wg.BreakerState:
        """Reading the state moves an open breaker whose timer ran out to half-open."""
        if self.state is OPEN and self.clock.monotonic() - self.opened_at >= self.recovery_timeout:
            self._go(HALF_OPEN)
        return self.state

    def retry_after(self) -> float:
        if self.state is not OPEN:
            return 0.0
        return max(0.0, self.opened_at + self.recovery_timeout - self.clock.monotonic())

    def admit(self) -> tuple[int, bool] | None:
        """(generation, trial) for an admitted call; None when refused."""
        state = self.look()
        if state is CLOSED:
            return self.generation, False
        if state is HALF_OPEN and self.trials < self.half_open_max_calls:
            self.trials += 1
            return self.generation, True
        return None

    def outcome(self, ticket: tuple[int, bool] | None, result: str) -> None:
        """result: 'ok', 'fail' (counts) or 'ignored' (excluded / BaseException)."""
        if ticket is not None and ticket[0] != self.generation:
            return  # admitted in an earlier state
        if self.state is CLOSED:
            if result == "ignored":
                return
            if self.rate is not None:
                self.window = [*self.window, result == "fail"][-self.window_size :]
                failed = sum(self.window)
                if (
                    result == "fail"
                    and len(self.window) >= self.minimum_calls
                    and failed >= self.rate * len(self.window)
                ):
                    self._go(OPEN)
            elif result == "ok":
                self.failures = 0
            else:
                self.failures += 1
                if self.failures >= self.failure_threshold:
                    self._go(OPEN)
        elif self.state is HALF_OPEN:
            self.trials = max(0, self.trials - 1)
            if result == "fail":
                self._go(OPEN)
            elif result == "ok":
                self.successes += 1
                if self.successes >= self.success_threshold:
                    self._go(CLOSED)

    def trip(self) -> None:
        self._go(OPEN)

    def reset(self) -> None:
        self._go(CLOSED)


class _Gate:
    """Suspends a coroutine once, so a call can be held open between two rules."""

    def __await__(self) -> Generator[None, None, None]:
        yield


class Pending:
    """A call admitted through ``call_async`` and not yet finished."""

    def __init__(self, coro: Coroutine[Any, Any, str], ticket: tuple[int, bool]) -> None:
        self.coro = coro
        self.ticket = ticket
        self.exc: BaseException | None = None


class BreakerMachine(RuleBasedStateMachine):
    pending = Bundle("pending")

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.events: list[wg.BreakerEvent] = []

    @initialize(
        failure_threshold=st.integers(1, 4),
        recovery_timeout=st.sampled_from([0.0, 1.0, 5.0]),
        half_open_max_calls=st.integers(1, 3),
        success_threshold=st.integers(1, 3),
        rate=st.one_of(st.none(), st.sampled_from([0.25, 0.5, 1.0])),
        window_size=st.integers(1, 6),
        data=st.data(),
    )
    def setup(
        self,
        failure_threshold: int,
        recovery_timeout: float,
        half_open_max_calls: int,
        success_threshold: int,
        rate: float | None,
        window_size: int,
        data: st.DataObject,
    ) -> None:
        minimum_calls = data.draw(st.integers(1, window_size), label="minimum_calls")
        self.breaker = wg.CircuitBreaker(
            "m",
            failure_threshold=failure_threshold,
            recovery_timeout=recovery_timeout,
            half_open_max_calls=half_open_max_calls,
            success_threshold=success_threshold,
            exclude=[Ignored],
            clock=self.clock,
            failure_rate_threshold=rate,
            window_size=window_size,
            minimum_calls=minimum_calls,
        )
        self.breaker.add_listener(self.events.append)
        self.model = Model(
            self.clock,
            failure_threshold,
            recovery_timeout,
            half_open_max_calls,
            success_threshold,
            rate,
            window_size,
            minimum_calls,
        )

    # -- time and manual control ---------------------------------------------------

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.5, 5.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def trip(self) -> None:
        self.breaker.trip()
        self.model.trip()

    @rule()
    def reset(self) -> None:
        self.breaker.reset()
        self.model.reset()

    # -- the pure core -------------------------------------------------------------

    @rule()
    def allow(self) -> None:
        expected = self.model.admit() is not None
        assert self.breaker.allow() == expected

    @rule(result=st.sampled_from(["ok", "fail", "ignored", "interrupt"]))
    def record(self, result: str) -> None:
        if result == "ok":
            self.breaker.record_success()
        elif result == "fail":
            self.breaker.record_failure(Boom())
        elif result == "ignored":
            self.breaker.record_failure(Ignored())
        else:
            self.breaker.record_failure(KeyboardInterrupt())
        self.model.outcome(
            None, "ok" if result == "ok" else "ignored" if result != "fail" else "fail"
        )

    # -- whole calls ---------------------------------------------------------------

    @rule(result=st.sampled_from(["ok", "fail", "ignored", "interrupt"]))
    def call(self, result: str) -> None:
        def body() -> str:
            if result == "fail":
                raise Boom
            if result == "ignored":
                raise Ignored
            if result == "interrupt":
                raise KeyboardInterrupt
            return "done"

        ticket = self.model.admit()
        try:
            value = self.breaker.call(body)
        except wg.CircuitOpenError as exc:
            assert ticket is None
            assert (exc.breaker, exc.retry_after) == ("m", self.model.retry_after())  # noqa: PT017
            return
        except (Boom, Ignored, KeyboardInterrupt):
            assert ticket is not None
        else:
            assert ticket is not None
            assert value == "done"
        self.model.outcome(
            ticket, "ok" if result == "ok" else "fail" if result == "fail" else "ignored"
        )

    @rule(target=pending)
    def start(self) -> Pending | None:
        async def body(holder: list[Pending]) -> str:
            await _Gate()
            exc = holder[0].exc
            if exc is not None:
                raise exc
            return "done"

        ticket = self.model.admit()
        holder: list[Pending] = []
        coro = self.breaker.call_async(body, holder)
        try:
            coro.send(None)  # admission happens here; the body then waits at the gate
        except wg.CircuitOpenError:
            assert ticket is None
            return None
        assert ticket is not None
        call = Pending(coro, ticket)
        holder.append(call)
        return call

    @rule(call=consumes(pending), result=st.sampled_from(["ok", "fail", "ignored", "cancel"]))
    def finish(self, call: Pending | None, result: str) -> None:
        if call is None:
            return
        call.exc = {
            "ok": None,
            "fail": Boom(),
            "ignored": Ignored(),
            "cancel": KeyboardInterrupt(),
        }[result]
        try:
            call.coro.send(None)
        except StopIteration as stop:
            assert (result, stop.value) == ("ok", "done")  # noqa: PT017
        except (Boom, Ignored, KeyboardInterrupt):
            assert result != "ok"
        else:  # pragma: no cover - the body never suspends twice
            raise AssertionError("the call did not finish")
        self.model.outcome(
            call.ticket, "ok" if result == "ok" else "fail" if result == "fail" else "ignored"
        )

    # -- agreement -----------------------------------------------------------------

    @invariant()
    def agrees(self) -> None:
        if not hasattr(self, "model"):
            return
        state = self.breaker.state
        expected = self.model.look()
        note(f"breaker={self.breaker.record!r} model={vars(self.model)!r}")
        assert state is expected
        assert self.breaker.retry_after == self.model.retry_after()
        record = self.breaker.record
        assert record.generation == self.model.generation
        assert record.trials == self.model.trials
        assert record.successes == self.model.successes
        assert record.failures == self.model.failures
        assert [(e.old, e.new) for e in self.events] == self.model.transitions
        for event in self.events:
            assert event.breaker == "m"
            assert event.old is not event.new

    @precondition(lambda self: hasattr(self, "model"))
    @invariant()
    def trials_within_limit(self) -> None:
        assert 0 <= self.breaker.record.trials <= self.breaker.half_open_max_calls

    def teardown(self) -> None:
        # close the coroutines still held at the gate
        for item in getattr(self, "bundles", {}).get("pending", []):
            if isinstance(item, Pending):
                item.coro.close()


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = settings(stateful_step_count=25)


@given(
    outcomes=st.lists(st.booleans(), max_size=40),
    threshold=st.integers(1, 5),
)
def test_closed_opens_exactly_at_a_run_of_failures(outcomes: list[bool], threshold: int) -> None:
    """Property: a closed breaker opens at the first run of `threshold` failures."""
    clock = FakeClock()
    b = wg.CircuitBreaker(failure_threshold=threshold, clock=clock)
    run = 0
    opened_at = None
    for i, failed in enumerate(outcomes):
        if failed:
            b.record_failure()
            run += 1
        else:
            b.record_success()
            run = 0
        if run >= threshold and opened_at is None:
            opened_at = i
        assert (b.state is OPEN) == (opened_at is not None)


@given(
    outcomes=st.lists(st.booleans(), max_size=60),
    rate=st.floats(0.05, 1.0),
    window=st.integers(1, 10),
    data=st.data(),
)
def test_failure_rate_opens_when_the_window_says_so(
    outcomes: list[bool], rate: float, window: int, data: st.DataObject
) -> None:
    """Property: in failure-rate mode the breaker opens at the first failure that makes
    the last `window` calls at least `rate` failures, given `minimum_calls` calls."""
    minimum = data.draw(st.integers(1, window))
    b = wg.CircuitBreaker(
        clock=FakeClock(), failure_rate_threshold=rate, window_size=window, minimum_calls=minimum
    )
    seen: list[bool] = []
    should_open = False
    for failed in outcomes:
        (b.record_failure if failed else b.record_success)()
        if not should_open:
            seen = [*seen, failed][-window:]
            if failed and len(seen) >= minimum and sum(seen) >= rate * len(seen):
                should_open = True
        assert (b.state is OPEN) == should_open
