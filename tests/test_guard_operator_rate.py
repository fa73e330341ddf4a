"""An operator's rate holds at once: ``guard.set_rate``, the control socket, ``throttle``.

The impact controller had cut the rate to a trickle and climbs back slowly
(+5 % of the ceiling every 20 s). An operator who says "10 MB/s" means now: the
decision says 10 MB/s at once, the next decision period keeps it, and the
controller cuts from there if production suffers again.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wedguard as wg
from guard_helpers import KeyAnalyzer
from wedguard.runtime.control_socket import send_command
from wedguard.testing import FakeClock

MB = 1_000_000


class Production:
    """A source whose verdict the test sets: {"throttle": 1.0} or calm."""

    def __init__(self) -> None:
        self.busy = True

    def sample(self) -> dict[str, float]:
        return {"throttle": 1.0} if self.busy else {"calm": 1.0}


def slowed_guard(clock: FakeClock, prod: Production, **kw: object) -> wg.Guard:
    kw.setdefault("calendar", None)
    return wg.Guard(
        rate="10MB/s",
        sources=[prod],
        analyzer=KeyAnalyzer(),
        sinks=[],
        clock=clock,
        **kw,  # type: ignore[arg-type]
    )


def run_for(s: wg.Session, clock: FakeClock, seconds: float, chunk: int = 100_000) -> None:
    end = clock.monotonic() + seconds
    while clock.monotonic() < end:
        s.throttle(chunk)


def test_set_rate_holds_at_once_and_through_the_next_decision_period() -> None:
    clock = FakeClock()
    prod = Production()
    guard = slowed_guard(clock, prod)
    with guard.session("photos") as s:
        run_for(s, clock, 65)  # cut at 0, 20, 40, 60 s: 10 -> 5 -> 2.5 -> 1.25 -> 0.625 MB/s
        assert guard.decision().rate < 1 * MB
        prod.busy = False
        run_for(s, clock, 5)
        assert guard.decision().rate < 2 * MB  # climbing back slowly
        guard.set_rate("10MB/s")
        assert guard.decision().rate == 10 * MB  # at once
        run_for(s, clock, 1.5)  # one decision period (and a half) later
        assert guard.decision().rate == 10 * MB
        prod.busy = True
        run_for(s, clock, 21)
        assert 4.5 * MB <= guard.decision().rate < 10 * MB  # cut from the operator's rate


def test_an_operator_rate_under_the_calendar_cap_starts_from_the_cap() -> None:
    clock = FakeClock()
    prod = Production()
    cal = wg.PeakHourCalendar.parse("Mon-Sun 00:00-24:00 peak 4MB/s", tz="UTC")
    guard = slowed_guard(clock, prod, calendar=cal)
    with guard.session("photos") as s:
        run_for(s, clock, 25)
        prod.busy = False
        guard.set_rate("10MB/s")
        assert guard.decision().rate == 4 * MB
        run_for(s, clock, 2)
        assert guard.decision().rate == 4 * MB


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="wg") as d:
        yield Path(d)


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="Unix sockets")
def test_rate_through_the_real_control_socket(sock_dir: Path) -> None:
    clock = FakeClock()
    prod = Production()
    guard = slowed_guard(clock, prod, control_socket=sock_dir / "wg.sock")
    try:
        with guard.session("photos") as s:
            run_for(s, clock, 45)
            prod.busy = False
            assert guard.decision().rate < 2 * MB
            answer = send_command(sock_dir / "wg.sock", "rate=10MB/s", timeout=5.0)
            assert answer == "ok: rate 10 MB/s"
            assert guard.decision().rate == 10 * MB
            run_for(s, clock, 1.5)
            assert guard.decision().rate == 10 * MB
    finally:
        guard.close()


def test_controllers_start_from_an_operators_rate() -> None:
    aimd = wg.AIMDController(min_dwell=20)
    ok = wg.Assessment(wg.Verdict.OK)
    aimd.update(wg.Assessment(wg.Verdict.THROTTLE), ceiling=10 * MB, now=0)
    assert aimd.update(ok, ceiling=10 * MB, now=1) == 5 * MB
    aimd.start_from(10 * MB, now=2)
    assert aimd.update(ok, ceiling=10 * MB, now=3) == 10 * MB
    ledbat = wg.LedbatController(min_dwell=20)
    ledbat.update(wg.Assessment(wg.Verdict.THROTTLE, load=2.0), ceiling=10 * MB, now=0)
    ledbat.update(wg.Assessment(wg.Verdict.THROTTLE, load=2.0), ceiling=10 * MB, now=21)
    ledbat.start_from(8 * MB, now=22)
    assert ledbat.update(wg.Assessment(wg.Verdict.OK, load=0.9), ceiling=10 * MB, now=23) == 8 * MB
    with pytest.raises(wg.ConfigError):
        aimd.start_from(-1, now=0)


@given(
    verdicts=st.lists(st.sampled_from(list(wg.Verdict)), max_size=30),
    rate=st.floats(min_value=1.0, max_value=1e9),
    ceiling=st.floats(min_value=1.0, max_value=1e9),
    ledbat=st.booleans(),
)
def test_after_start_from_an_ok_keeps_the_operators_rate(
    verdicts: list[wg.Verdict], rate: float, ceiling: float, ledbat: bool
) -> None:
    """Whatever the controller went through, an OK right after start_from(rate) allows
    the operator's rate (within the ceiling and above the floor)."""
    c: wg.AIMDController | wg.LedbatController = (
        wg.LedbatController(min_dwell=20) if ledbat else wg.AIMDController(min_dwell=20)
    )
    now = 0.0
    for v in verdicts:
        c.update(wg.Assessment(v, load=2.0 if v else 0.5), ceiling=ceiling, now=now)
        now += 7.0
    c.start_from(rate, now=now)
    got = c.update(wg.Assessment(wg.Verdict.OK, load=0.9), ceiling=ceiling, now=now + 1)
    assert got == pytest.approx(max(min(rate, ceiling), c.floor) if ceiling > c.floor else ceiling)
