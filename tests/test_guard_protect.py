"""``@guard.protect``: what it charges, and what it says about its breaker.

* the cost is charged once: file objects wrapped inside a protected call (or handed
  to it) spend the cost paid before the call instead of being charged again;
* without a cost, a wrapped file paces the call's bytes on the wire;
* an open breaker's reason reaches ``CircuitOpenError.reason``, ``decision()`` says
  the circuit is open, and every transition (the recovery too) is logged.
"""

from __future__ import annotations

import asyncio
import errno
import io
import itertools
import logging

import pytest

import wedguard as wg
from wedguard.testing import FakeClock, RecordingSink

MB = 1_000_000


def make_guard(clock: FakeClock, **kw: object) -> wg.Guard:
    kw.setdefault("rate", "5MB/s")
    kw.setdefault("calendar", None)
    kw.setdefault("sources", [])
    kw.setdefault("sinks", [])
    return wg.Guard(clock=clock, **kw)  # type: ignore[arg-type]


def drain(body: io.RawIOBase | wg.GuardedFile) -> int:
    n = 0
    while chunk := body.read(MB):
        n += len(chunk)
    return n


def test_wrap_inside_a_protected_call_is_not_charged_twice() -> None:
    clock = FakeClock()
    guard = make_guard(clock, breaker=None)

    @guard.protect(cost=lambda data: len(data))
    def upload(data: bytes) -> int:
        with guard.wrap(io.BytesIO(data)) as body:
            return drain(body)

    start = clock.monotonic()
    for _ in range(10):
        assert upload(b"x" * (5 * MB)) == 5 * MB
    rate = 50 * MB / (clock.monotonic() - start)
    assert rate == pytest.approx(5 * MB, rel=0.15)  # charged twice: about 2.5 MB/s


def test_a_wrapped_file_handed_to_a_protected_call_joins_its_session() -> None:
    """The tutorial's shape: wrap outside, protect around the upload; one slot, one charge."""
    clock = FakeClock()
    guard = make_guard(clock, breaker=None, max_concurrent=1)
    seen: list[int] = []

    @guard.protect(cost=lambda body, size: size)
    def upload(body: wg.GuardedFile, size: int) -> int:
        n = drain(body)
        seen.append(guard.active_sessions)
        return n

    start = clock.monotonic()
    for _ in range(10):
        with guard.wrap(io.BytesIO(b"x" * (5 * MB))) as body:
            assert upload(body, 5 * MB) == 5 * MB
    assert seen == [1] * 10  # no second session (with max_concurrent=1: no deadlock)
    rate = 50 * MB / (clock.monotonic() - start)
    assert rate == pytest.approx(5 * MB, rel=0.15)


def test_io_beyond_the_cost_is_charged() -> None:
    clock = FakeClock()
    guard = make_guard(clock, breaker=None)

    @guard.protect(cost=MB)  # says 1 MB, moves 20
    def upload(data: bytes) -> int:
        with guard.wrap(io.BytesIO(data)) as body:
            return drain(body)

    start = clock.monotonic()
    upload(b"x" * (20 * MB))
    assert clock.monotonic() - start >= (20 - 1 - 5) / 5 - 0.01  # 19 MB charged, 5 MB burst


def test_protect_without_cost_and_a_wrapped_file_paces_the_wire() -> None:
    clock = FakeClock()
    guard = make_guard(clock, breaker=None)
    times: list[float] = []

    class Timed(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            times.append(clock.monotonic())
            return super().read(size)

    @guard.protect()
    def upload(data: bytes) -> int:
        with guard.wrap(Timed(data)) as body:
            return drain(body)

    upload(b"x" * (30 * MB))
    # after the burst, one 1 MB read per 0.2 s: paced while the call runs
    gaps = [b - a for a, b in itertools.pairwise(times[10:-1])]
    assert gaps
    assert all(g == pytest.approx(0.2, abs=0.01) for g in gaps)


# -- the breaker ---------------------------------------------------------------------------


def failing_upload(guard: wg.Guard) -> object:
    @guard.protect(cost=MB)
    def upload() -> None:
        raise ConnectionError("S3 unreachable")

    return upload


def test_circuit_open_error_from_protect_carries_the_breakers_reason() -> None:
    clock = FakeClock()
    guard = make_guard(clock, breaker=wg.CircuitBreaker("uploads", clock=clock))
    upload = failing_upload(guard)
    for _ in range(3):
        with pytest.raises(ConnectionError):
            upload()  # type: ignore[operator]
    with pytest.raises(wg.CircuitOpenError) as info:
        upload()  # type: ignore[operator]
    assert info.value.reason == "3 consecutive failures (last: ConnectionError)"
    assert info.value.breaker == "uploads"
    assert info.value.retry_after == pytest.approx(300.0)
    assert "3 consecutive failures (last: ConnectionError)" in str(info.value)


async def test_async_protect_carries_the_reason_too() -> None:
    clock = FakeClock()
    guard = make_guard(clock, breaker=wg.CircuitBreaker("uploads", clock=clock))

    @guard.protect(cost=MB)
    async def put() -> None:
        raise TimeoutError

    for _ in range(3):
        with pytest.raises(TimeoutError):
            await put()
    with pytest.raises(wg.CircuitOpenError) as info:
        await put()
    assert info.value.reason == "3 consecutive failures (last: TimeoutError)"


def test_decision_says_the_circuit_is_open_and_when_it_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    breaker = wg.CircuitBreaker("uploads", clock=clock)
    sink = RecordingSink()
    guard = make_guard(clock, breaker=breaker, sinks=[sink])
    upload = failing_upload(guard)
    with caplog.at_level(logging.INFO, logger="wedguard"):
        for _ in range(3):
            with pytest.raises(ConnectionError):
                upload()  # type: ignore[operator]
        opened = guard.decision()
        clock.advance(301)
        half = guard.decision()  # looked at after the recovery timeout: HALF_OPEN
        breaker.record_success()
        closed = guard.decision()
    assert (
        "circuit 'uploads' is open (3 consecutive failures (last: ConnectionError)): "
        "protected calls fail until it tries again"
    ) in opened.reasons
    assert "circuit 'uploads' is half-open: a trial call decides" in half.reasons
    assert not any("circuit" in r for r in closed.reasons)
    logged = [r.getMessage() for r in caplog.records]
    assert any("CLOSED -> OPEN (3 consecutive failures" in m for m in logged)
    assert any("OPEN -> HALF_OPEN" in m for m in logged)
    (recovered,) = [r for r in caplog.records if "HALF_OPEN -> CLOSED" in r.getMessage()]
    assert recovered.levelno == logging.WARNING  # as visible as the opening
    assert any("[RESOLVED]" in m and "uploads" in m for m in logged)


def test_the_breaker_pages_example_reason() -> None:
    """docs/breaker.md: the reason printed is the one the breaker really gives."""
    clock = FakeClock()
    breaker = wg.CircuitBreaker("uploads", clock=clock)

    @breaker
    def upload(path: str) -> None:
        raise ConnectionError(f"cannot reach https://s3.example/{path}?token=secret")

    for _ in range(3):
        with pytest.raises(ConnectionError):
            upload("photos.tar")
    clock.advance(12.5)
    with pytest.raises(wg.CircuitOpenError) as info:
        upload("photos.tar")
    exc = info.value
    assert (exc.breaker, exc.retry_after, exc.reason) == (
        "uploads",
        287.5,
        "3 consecutive failures (last: ConnectionError)",
    )


def test_a_wrapped_file_in_a_protected_call_still_refuses_bad_amounts() -> None:
    clock = FakeClock()
    guard = make_guard(clock, breaker=None)

    @guard.protect(cost=MB)
    def write_weird() -> None:
        body = guard.wrap(io.BytesIO())
        body.session.throttle(-5)

    with pytest.raises(wg.ConfigError):
        write_weird()


def test_an_interrupted_trial_call_gives_its_place_back() -> None:
    """A half-open breaker's trial call ended by KeyboardInterrupt (not a failure of
    the service) used to keep its trial place: every later call was refused."""
    clock = FakeClock()
    breaker = wg.CircuitBreaker("uploads", clock=clock, recovery_timeout=10)
    guard = make_guard(clock, breaker=breaker)
    outcomes = iter([KeyboardInterrupt(), None])

    @guard.protect(cost=MB)
    def upload() -> str:
        outcome = next(outcomes)
        if outcome is not None:
            raise outcome
        return "sent"

    breaker.trip("test")
    clock.advance(10)
    with pytest.raises(KeyboardInterrupt):
        upload()
    assert breaker.state is wg.BreakerState.HALF_OPEN
    assert upload() == "sent"
    assert breaker.state is wg.BreakerState.CLOSED


async def test_a_cancelled_async_trial_call_gives_its_place_back() -> None:
    clock = FakeClock()
    breaker = wg.CircuitBreaker("uploads", clock=clock, recovery_timeout=10)
    guard = make_guard(clock, breaker=breaker)
    calls = itertools.count()

    @guard.protect(cost=MB)
    async def put() -> str:
        if next(calls) == 0:
            raise asyncio.CancelledError
        return "sent"

    breaker.trip("test")
    clock.advance(10)
    with pytest.raises(asyncio.CancelledError):
        await put()
    assert await put() == "sent"
    assert breaker.state is wg.BreakerState.CLOSED


def test_a_trial_call_stopped_before_it_ran_gives_its_place_back() -> None:
    """An emergency stop between the breaker's admission and the call (the call never
    ran) used to keep the trial place: after resume() every call was refused."""
    clock = FakeClock()
    breaker = wg.CircuitBreaker("uploads", clock=clock, recovery_timeout=10)
    guard = make_guard(clock, breaker=breaker)

    @guard.protect(cost=MB)
    def upload() -> str:
        return "sent"

    breaker.trip("test")
    clock.advance(10)
    guard.stop("maintenance")
    with pytest.raises(wg.EmergencyStop):
        upload()
    guard.resume()
    assert upload() == "sent"
    assert breaker.state is wg.BreakerState.CLOSED


async def test_an_async_trial_call_stopped_before_it_ran_gives_its_place_back() -> None:
    clock = FakeClock()
    breaker = wg.CircuitBreaker("uploads", clock=clock, recovery_timeout=10)
    guard = make_guard(clock, breaker=breaker)

    @guard.protect(cost=MB)
    async def put() -> str:
        return "sent"

    breaker.trip("test")
    clock.advance(10)
    guard.stop("maintenance")
    with pytest.raises(wg.EmergencyStop):
        await put()
    guard.resume()
    assert await put() == "sent"


def test_a_failed_write_of_a_wrapped_file_in_a_protected_call_raises_its_own_error() -> None:
    """A full disk under a wrapped file handed to a protected call used to surface as
    AttributeError (the refund of the unwritten bytes did not know the call's budget);
    now the OSError comes through, and the bytes not written stay paid for."""
    clock = FakeClock()
    sink = RecordingSink()
    guard = make_guard(clock, breaker=None, sinks=[sink])
    room = [0]

    class Disk(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b: object) -> int:
            if not room[0]:
                raise OSError(errno.ENOSPC, "No space left on device")
            return len(memoryview(b))  # type: ignore[arg-type]

    @guard.protect(cost=100)
    def upload(dst: wg.GuardedFile) -> None:
        with pytest.raises(OSError) as info:
            dst.write(b"x" * 60)
        assert info.value.errno == errno.ENOSPC
        room[0] = 1
        assert dst.write(b"x" * 100) == 100  # the 60 not written are not paid twice

    with guard.wrap(Disk()) as dst:
        upload(dst)
    assert [r.bytes for r in sink.of_kind("session")] == [100]
