"""A session's lanes: what the fast lanes count, the light lane of ``@guard.protect``
outside a session, and the async names (``throttle_async``, ``sleep_async``) with the
old ones still working and warning."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wedguard as wg
from wedguard.testing import FakeClock, RecordingSink

MB = 1_000_000


def light_guard(clock: FakeClock, **kw: object) -> wg.Guard:
    """A guard nothing observes a session of: no sinks, no slots, no sources."""
    kw.setdefault("rate", "1MB/s")
    return wg.Guard(
        clock=clock,
        calendar=None,
        sources=[],
        sinks=[],
        log_events=False,
        max_concurrent=None,
        breaker=None,
        **kw,  # type: ignore[arg-type]
    )


# -- the fast lanes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [{"rate": "2MB/s"}, {"max_bytes": "1GB"}, {"max_duration": "1h"}, {"ops_rate": 10}],
)
def test_a_capped_session_waits_exactly_as_the_budgets_say(kw: dict[str, object]) -> None:
    """Small chunks on the fast lane, a large one on the slow lane: the same arithmetic."""
    clock = FakeClock()
    guard = light_guard(clock)
    with guard.session("s", **kw) as s:  # type: ignore[arg-type]
        waited = sum(s.throttle(10_000) for _ in range(20))  # 0.2 MB: the guard's burst
        assert waited == 0.0
        # past the burst: waits for the first 0.2 MB and leaves a debt of the rest
        assert s.throttle(500_000) == pytest.approx(0.2)
        assert s.throttle(10_000) == pytest.approx(0.31)  # the debt repaid first
    r = s.report()
    assert r.bytes == 710_000
    assert r.wait_seconds["rate"] == pytest.approx(0.51)


def test_the_session_cap_binds_below_the_guard() -> None:
    clock = FakeClock()
    guard = light_guard(clock, rate="10MB/s")
    with guard.session("s", rate="100kB/s") as s:
        for _ in range(10):
            s.throttle(10_000)
    # the cap's burst is 20 kB; 100 kB at 100 kB/s takes 0.8 s after it
    assert clock.monotonic() == pytest.approx(0.8)
    assert s.report().bytes == 100_000


def test_the_guard_binding_gives_the_session_cap_its_units_back() -> None:
    """The guard's budget is short while the session's cap has the units: the call
    waits for the guard only, and the cap is not charged twice."""
    clock = FakeClock()
    guard = light_guard(clock, rate="100kB/s")  # burst 20 kB
    with guard.session("s", rate="1MB/s") as s:  # burst 200 kB
        assert s.throttle(20_000) == 0.0
        assert s.throttle(20_000) == pytest.approx(0.2)  # the guard binds
        clock.advance(10)
        assert s.throttle(100_000) == 0.0  # from full buckets (the guard's into debt)
        assert s.throttle(100_000) == pytest.approx(1.0)  # the guard's debt binds
    assert s.report().bytes == 240_000


def run_until_cut(guard: wg.Guard, clock: FakeClock, step: float, **kw: object) -> wg.Session:
    """Throttle 100 bytes at a time (``step`` seconds apart) until a cutoff ends it."""
    s = guard.session("s", **kw)  # type: ignore[arg-type]
    with s:
        for _ in range(1000):
            s.throttle(100)
            clock.advance(step)
    return s


def test_a_hard_byte_cutoff_on_the_fast_lane() -> None:
    clock = FakeClock()
    guard = light_guard(clock, rate="off")
    with pytest.raises(wg.CutoffReached) as info:
        run_until_cut(guard, clock, 0, max_bytes=1000)
    assert info.value.limit == "max_bytes"
    assert clock.monotonic() == 0


def test_a_time_cutoff_on_the_fast_lane() -> None:
    clock = FakeClock()
    guard = light_guard(clock, rate="off")
    with pytest.raises(wg.CutoffReached) as info:
        run_until_cut(guard, clock, 1, max_duration=10)
    assert info.value.limit == "max_duration"
    assert clock.monotonic() == 10  # t = 0 .. 9 went, t = 10 was cut


def test_what_went_before_a_cutoff_is_reported() -> None:
    clock = FakeClock()
    sink = RecordingSink()
    guard = wg.Guard(clock=clock, rate="off", calendar=None, sources=[], sinks=[sink])
    with pytest.raises(wg.CutoffReached):
        run_until_cut(guard, clock, 0, max_bytes=1000)
    [report] = sink.of_kind("session")
    assert report.bytes == 1000  # type: ignore[attr-defined]
    assert report.outcome == "cutoff"  # type: ignore[attr-defined]


# -- protect outside a session -------------------------------------------------------------


def test_a_light_call_takes_its_cost_from_the_budget() -> None:
    clock = FakeClock()
    guard = light_guard(clock)

    @guard.protect(cost=lambda size: size)
    def upload(size: int) -> int:
        return size

    assert [upload(n) for n in (200_000, 1_000_000, 1_000_000)] == [200_000, MB, MB]
    assert clock.monotonic() == pytest.approx(1.2)  # as with a session per call
    assert guard.active_sessions == 0


def test_a_light_call_opens_its_session_when_asked() -> None:
    """current_session() inside a call: the call's session, its cost already counted."""
    clock = FakeClock()
    guard = light_guard(clock)
    seen: list[wg.Session | None] = []

    @guard.protect(cost=500)
    def upload() -> None:
        seen.append(wg.current_session())
        seen.append(wg.current_session())

    upload()
    first, again = seen
    assert first is not None
    assert first is again
    assert first.name == upload.__wrapped__.__qualname__  # type: ignore[attr-defined]
    r = first.report()
    assert (r.bytes, r.ops, r.outcome) == (500, 1, "done")
    assert wg.current_session() is None
    assert guard.active_sessions == 0


def test_a_file_wrapped_in_a_light_call_spends_the_cost_once() -> None:
    clock = FakeClock()
    guard = light_guard(clock, rate="5MB/s")

    @guard.protect(cost=lambda data: len(data))
    def upload(data: bytes) -> int:
        with guard.wrap(io.BytesIO(data)) as body:
            return len(body.read())

    start = clock.monotonic()
    for _ in range(10):
        assert upload(b"x" * (5 * MB)) == 5 * MB
    rate = 50 * MB / (clock.monotonic() - start)
    assert rate == pytest.approx(5 * MB, rel=0.15)  # charged twice: about 2.5 MB/s


def test_a_light_call_that_fails_counts_for_the_breaker_and_ends_its_session() -> None:
    clock = FakeClock()
    breaker = wg.CircuitBreaker(failure_threshold=2, recovery_timeout=30, clock=clock)
    guard = wg.Guard(
        clock=clock, calendar=None, sources=[], sinks=[], log_events=False,
        max_concurrent=None, breaker=breaker,
    )  # fmt: skip
    sessions: list[wg.Session | None] = []

    @guard.protect
    def upload() -> None:
        sessions.append(wg.current_session())
        raise OSError("s3 down")

    for _ in range(2):
        with pytest.raises(OSError):
            upload()
    with pytest.raises(wg.CircuitOpenError):
        upload()
    assert len(sessions) == 2
    assert [None if s is None else s.report().outcome for s in sessions] == ["error"] * 2


def test_a_stopped_guard_refuses_a_light_call() -> None:
    clock = FakeClock()
    guard = light_guard(clock)
    ran: list[int] = []

    @guard.protect(cost=1)
    def upload() -> None:
        ran.append(1)

    upload()
    guard.stop("operator")
    with pytest.raises(wg.EmergencyStop):
        upload()
    assert ran == [1]


def watched_guard(clock: FakeClock, sink: RecordingSink, **kw: object) -> wg.Guard:
    """A guard whose calls outside a session take slots and are reported."""
    kw.setdefault("max_concurrent", 2)
    kw.setdefault("rate", "1MB/s")
    return wg.Guard(
        clock=clock, calendar=None, sources=[], sinks=[sink], log_events=False,
        breaker=None, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_with_sinks_the_calls_are_reported_together() -> None:
    """No session and no report per call: one report per function, at flush."""
    clock = FakeClock()
    sink = RecordingSink()
    guard = watched_guard(clock, sink)

    @guard.protect(cost=10, name="upload")
    def upload() -> None:
        assert guard.active_sessions == 1  # the call holds a slot while it runs
        clock.advance(0.5)

    for _ in range(3):
        upload()
    assert sink.of_kind("session") == []
    assert guard.active_sessions == 0
    assert guard.flush()
    (r,) = sink.of_kind("session")
    assert (r.name, r.bytes, r.ops, r.outcome, r.ok) == ("upload", 30.0, 3, "done", True)  # type: ignore[attr-defined]
    assert r.duration == pytest.approx(1.5)  # type: ignore[attr-defined]
    assert guard.flush()
    assert len(sink.of_kind("session")) == 1  # nothing new: nothing reported again


def test_a_functions_calls_are_reported_once_a_period() -> None:
    from wedguard.runtime.calls import CALL_PERIOD

    clock = FakeClock()
    sink = RecordingSink()
    guard = watched_guard(clock, sink)

    @guard.protect(cost=1)
    def upload() -> None:
        pass

    upload()
    clock.advance(CALL_PERIOD - 1)
    upload()  # within the period: counted
    assert sink.of_kind("session") == []
    clock.advance(1)
    upload()  # begins after the period: the period is reported, the call starts the next
    reports = sink.of_kind("session")
    assert [(r.ops, r.duration) for r in reports] == [(2, CALL_PERIOD - 1)]  # type: ignore[attr-defined]
    upload()
    guard.close()
    assert [r.ops for r in sink.of_kind("session")] == [2, 2]  # type: ignore[attr-defined]


def test_failed_calls_are_named_in_the_report() -> None:
    clock = FakeClock()
    sink = RecordingSink()
    guard = watched_guard(clock, sink)

    @guard.protect(cost=1)
    def upload(fail: bool) -> None:
        if fail:
            raise OSError("s3 down")

    upload(False)
    with pytest.raises(OSError, match="s3 down"):
        upload(True)
    upload(False)
    guard.flush()
    (r,) = sink.of_kind("session")
    assert (r.ops, r.ok, r.outcome) == (3, False, "error")  # type: ignore[attr-defined]
    assert r.error == "1 of 3 calls failed; the last: OSError: s3 down"  # type: ignore[attr-defined]


def test_a_call_outside_a_session_holds_a_slot_and_waits_for_one() -> None:
    """With max_concurrent=1 a call holds the only slot while it runs; while a session
    holds it, a call waits for it as a session of its own (and reports as one)."""
    clock = FakeClock()
    sink = RecordingSink()
    guard = watched_guard(clock, sink, max_concurrent=1, slot_timeout=1.0)

    @guard.protect(cost=1, name="upload")
    def upload() -> int:
        return guard.active_sessions

    assert upload() == 1
    holding, done = threading.Event(), threading.Event()

    def photos() -> None:
        with guard.session("photos"):
            holding.set()
            done.wait(10)

    t = threading.Thread(target=photos)
    t.start()
    try:
        assert holding.wait(10)
        with pytest.raises(wg.SlotTimeout):  # the session holds the slot: the call waits
            upload()
    finally:
        done.set()
        t.join(10)
    assert upload() == 1
    guard.flush()
    reports = {r.name: (r.ops, r.outcome) for r in sink.of_kind("session")}  # type: ignore[attr-defined]
    # the call that timed out never ran (no slot, no report); the two that ran together
    assert reports == {"photos": (0, "done"), "upload": (2, "done")}


def test_a_call_that_asks_for_its_session_hands_its_slot_over() -> None:
    """max_concurrent=1: the call's session takes the slot the call held (no deadlock),
    and the call is reported by that session, not counted twice."""
    clock = FakeClock()
    sink = RecordingSink()
    guard = watched_guard(clock, sink, max_concurrent=1, slot_timeout=1.0)

    @guard.protect(cost=100, name="upload")
    def upload() -> str:
        s = wg.current_session()
        assert s is not None
        assert guard.active_sessions == 1
        return s.name

    assert upload() == "upload"
    guard.flush()
    (r,) = sink.of_kind("session")
    assert (r.bytes, r.ops, r.outcome) == (100.0, 1, "done")  # type: ignore[attr-defined]
    assert guard.active_sessions == 0


def test_calls_outside_a_session_count_in_what_the_backup_moved() -> None:
    clock = FakeClock()
    sink = RecordingSink()
    guard = watched_guard(clock, sink)

    @guard.protect(cost=lambda n: n)
    def upload(n: int) -> None:
        pass

    for n in (100, 200, 300):
        upload(n)
    assert guard.host.call_bytes == 600


async def test_a_light_async_call() -> None:
    clock = FakeClock()
    guard = light_guard(clock)

    @guard.protect(cost=lambda data: len(data))
    async def put(data: bytes) -> wg.Session | None:
        await asyncio.sleep(0)
        return wg.current_session()

    s = await put(b"x" * 1000)
    assert s is not None
    assert s.report().bytes == 1000
    assert await put(b"y" * 199_000) is not None  # the rest of the burst: no wait
    assert clock.monotonic() == 0.0
    assert await put(b"z" * 100_000) is not None  # the budget is short: a session waits
    assert clock.monotonic() == pytest.approx(0.1)


# -- async names --------------------------------------------------------------------------


async def test_throttle_async_and_its_old_name() -> None:
    clock = FakeClock()
    guard = light_guard(clock)
    async with guard.session("s") as s:
        assert await s.throttle_async(200_000) == 0.0
        with pytest.warns(DeprecationWarning, match="throttle_async"):
            assert await s.athrottle(100_000) == pytest.approx(0.1)
    assert s.report().bytes == 300_000


async def test_sleep_async_and_its_old_name() -> None:
    clock = FakeClock()
    await clock.sleep_async(2)
    with pytest.warns(DeprecationWarning, match="sleep_async"):
        await clock.asleep(3)
    assert clock.monotonic() == 5
    await wg.SystemClock().sleep_async(0)
    with pytest.warns(DeprecationWarning, match="sleep_async"):
        await wg.SystemClock().asleep(0)


def test_try_acquire_at_reads_no_clock() -> None:
    clock = FakeClock()
    bucket = wg.TokenBucketThrottler(10, burst=10, clock=clock)
    assert bucket.try_acquire_at(10, 0.0)
    assert not bucket.try_acquire_at(5, 0.0)
    clock.advance(0.5)
    assert bucket.try_acquire_at(5, clock.monotonic())  # the caller's reading
    bucket.untake(5)  # not used after all: there again
    assert bucket.try_acquire(5)
    assert not bucket.try_acquire(1)
    with pytest.raises(wg.ConfigError):
        bucket.try_acquire_at(-1, 0.0)


class CountingClock(FakeClock):
    """A fake clock that counts how often it is read."""

    reads = 0

    def monotonic(self) -> float:
        self.reads += 1
        return super().monotonic()


@pytest.mark.parametrize("kw", [{}, {"rate": "2MB/s"}, {"max_bytes": "1GB"}, {"stop_at": None}])
def test_one_clock_read_per_chunk_when_nothing_binds(kw: dict[str, object]) -> None:
    clock = CountingClock()
    guard = light_guard(clock, rate="1GB/s")
    if "stop_at" in kw:
        kw = {"stop_at": clock.now() + timedelta(hours=1)}
    with guard.session("s", **kw) as s:  # type: ignore[arg-type]
        s.throttle(1000)  # the first call may refresh the decision
        before = clock.reads
        for _ in range(100):
            s.throttle(1000)
        assert clock.reads - before == 100


# -- credit taken in blocks ----------------------------------------------------------------


def test_lease_takes_a_block_only_while_nothing_binds() -> None:
    clock = FakeClock()
    bucket = wg.TokenBucketThrottler(100, burst=100, clock=clock)
    assert bucket.lease(1, 20, 0.0) == 20  # full: a block
    assert bucket.lease(1, 30, 0.0) == 30  # 80 there, 50 left after: a block still
    # 50 there: a block would leave less than half the burst, so only what is asked
    assert bucket.lease(5, 30, 0.0) == 5
    assert bucket.lease(50, 60, 0.0) == 0  # not there: nothing taken
    assert bucket.available == pytest.approx(45)
    bucket.untake(20)
    assert bucket.available == pytest.approx(65)
    with pytest.raises(wg.ConfigError, match="n"):
        bucket.lease(-1, 10, 0.0)


@given(
    steps=st.lists(
        st.tuples(
            st.floats(0, 0.05),  # time passing
            st.floats(0, 300),  # n
            st.floats(0, 300),  # want beyond n
            st.floats(0, 1),  # share of the lease given back
        ),
        max_size=60,
    )
)
def test_leases_never_give_more_than_the_rate_and_the_burst(
    steps: list[tuple[float, float, float, float]],
) -> None:
    """Whatever is leased and given back, what is kept never exceeds rate * t + burst."""
    clock = FakeClock()
    bucket = wg.TokenBucketThrottler(1000, burst=200, clock=clock)
    kept = 0.0
    start = clock.monotonic()
    biggest = 200.0  # a request beyond the burst is served from a full bucket
    for dt, n, extra, share in steps:
        clock.advance(dt)
        got = bucket.lease(n, n + extra, clock.monotonic())
        assert got == 0 or got >= n
        back = (got - n) * share if got else 0.0
        if back:
            bucket.untake(back)
        kept += got - back
        biggest = max(biggest, n if got else 0.0)
        assert kept <= 1000 * (clock.monotonic() - start) + biggest + 1e-6


def test_a_new_decision_ends_the_credit_at_once() -> None:
    """Credit taken while nothing bound does not outlive the decision it was taken under:
    a lower rate binds from the next call."""
    clock = FakeClock()
    guard = light_guard(clock, rate="1GB/s")
    with guard.session("s") as s:
        for _ in range(100):
            assert s.throttle(1000) == 0.0  # within the credit: no lock, no wait
        guard.set_rate("10kB/s")  # the operator lowers the rate
        waited = sum(s.throttle(1000) for _ in range(30))
    # the new bucket's burst goes first, then 10 kB/s: nothing of the old credit is spent
    burst = wg.TokenBucketThrottler(10_000).burst
    assert waited == pytest.approx(max(0.0, (30_000 - burst) / 10_000), abs=1e-6)
    assert s.report().bytes == 130_000


def test_unspent_credit_goes_back_to_the_guard_when_the_session_ends() -> None:
    clock = FakeClock()
    guard = light_guard(clock, rate="100MB/s")
    full = guard.host.bytes.available
    with guard.session("s") as s:
        s.throttle(1000)  # the first call decides (the slow lane)
        s.throttle(1000)
        assert guard.host.bytes.available < full - 2000  # a block was taken
    assert guard.host.bytes.available == pytest.approx(full - 2000)


def test_two_sessions_on_a_binding_bucket_share_it_as_before() -> None:
    """While the guard's rate binds no session holds credit the other could use."""
    clock = FakeClock()
    guard = light_guard(clock, rate="100kB/s")
    a = guard.session("a").__enter__()
    b = guard.session("b").__enter__()
    try:
        burst = guard.host.bytes.burst
        while guard.host.bytes.available > 0.5 * burst:  # drain to half, alternating
            a.throttle(1000)
            b.throttle(1000)
        # now binding: each call takes exactly its bytes from the bucket, no block
        # (100 bytes: a block of 10 ms at 100 kB/s would be ten times that)
        for s in (a, b, a, b):
            before = guard.host.bytes.available
            assert s.throttle(100) == 0.0
            assert guard.host.bytes.available == pytest.approx(before - 100)
    finally:
        b.__exit__(None, None, None)
        a.__exit__(None, None, None)


def test_calls_from_many_threads_keep_the_slot_limit_and_are_all_counted() -> None:
    """Eight threads calling one protected function on a real clock: never more than
    max_concurrent at once, every call counted once (in the account or a session)."""
    sink = RecordingSink()
    guard = wg.Guard(calendar=None, sources=[], sinks=[sink], log_events=False, breaker=None,
                     rate="off", max_concurrent=2, slot_timeout=30)  # fmt: skip
    lock = threading.Lock()
    running = [0]
    peak = [0]

    @guard.protect(cost=10, name="upload")
    def upload() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.0005)
        with lock:
            running[0] -= 1

    def worker() -> None:
        for _ in range(50):
            upload()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert guard.flush()
    assert peak[0] == 2  # the limit held (and was reached)
    reports = [r for r in sink.of_kind("session") if r.name == "upload"]  # type: ignore[attr-defined]
    assert sum(r.ops for r in reports) == 400  # type: ignore[attr-defined]
    assert sum(r.bytes for r in reports) == 4000  # type: ignore[attr-defined]
    assert guard.active_sessions == 0
    guard.close()


def test_a_new_decision_ends_the_calls_credit_at_once() -> None:
    """Protected calls outside a session spend credit taken in blocks too; a lower rate
    binds from the next call, and what was not spent goes back."""
    clock = FakeClock()
    sink = RecordingSink()
    guard = watched_guard(clock, sink, rate="1GB/s")

    @guard.protect(cost=1000, name="upload")
    def upload() -> None:
        pass

    full = guard.host.bytes.available
    upload()  # a block is taken for the calls
    assert guard.host.bytes.available < full - 1000
    for _ in range(99):
        upload()
    assert clock.monotonic() == 0.0
    guard.set_rate("10kB/s")
    start = clock.monotonic()
    for _ in range(30):
        upload()
    burst = wg.TokenBucketThrottler(10_000).burst
    assert clock.monotonic() - start == pytest.approx((30_000 - burst) / 10_000, abs=1e-6)
    guard.flush()
    assert sum(r.ops for r in sink.of_kind("session")) == 130  # type: ignore[attr-defined]
