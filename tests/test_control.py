"""Rate controllers: unit behaviour and a closed-loop simulation with a plant model."""

from __future__ import annotations

import math
import random

import pytest

from wedguard import (
    AIMDController,
    Assessment,
    ConfigError,
    ImpactAnalyzer,
    LedbatController,
    RateController,
    Verdict,
)
from wedguard.testing import FakeClock

OK = Assessment(Verdict.OK)
THROTTLE = Assessment(Verdict.THROTTLE)
HALT = Assessment(Verdict.HALT)


def test_both_satisfy_the_protocol() -> None:
    assert isinstance(AIMDController(), RateController)
    assert isinstance(LedbatController(), RateController)


# ----------------------------------------------------------------------- AIMD


def test_aimd_additive_increase_multiplicative_decrease() -> None:
    c = AIMDController(floor=10, increase=50, decrease=0.5, min_dwell=5, proportional=False)
    assert c.update(OK, ceiling=1000, now=0) == 1000
    assert c.update(THROTTLE, ceiling=1000, now=1) == 500
    assert c.update(THROTTLE, ceiling=1000, now=2) == 500  # dwelling: no second cut
    assert c.update(OK, ceiling=1000, now=4) == 500
    assert c.update(OK, ceiling=1000, now=6) == 550
    assert c.update(OK, ceiling=1000, now=8) == 550
    assert c.update(OK, ceiling=1000, now=11) == 600
    assert c.update(THROTTLE, ceiling=1000, now=12) == 300


def test_aimd_proportional_cut_is_bounded_by_decrease() -> None:
    c = AIMDController(floor=1, increase=10, decrease=0.5, min_dwell=0)
    c.update(OK, ceiling=1000, now=0)
    assert c.update(Assessment(Verdict.THROTTLE, load=1.25), ceiling=1000, now=1) == pytest.approx(
        1000 * 0.95 / 1.25
    )
    assert c.update(Assessment(Verdict.THROTTLE, load=10), ceiling=1000, now=2) == pytest.approx(
        760 * 0.5
    )


def test_aimd_floor_ceiling_and_halt() -> None:
    c = AIMDController(floor=100, increase=10, decrease=0.1, min_dwell=0, proportional=False)
    assert c.update(OK, ceiling=1000, now=0) == 1000
    assert c.update(THROTTLE, ceiling=1000, now=1) == 100  # never below the floor
    assert c.update(THROTTLE, ceiling=1000, now=2) == 100
    assert c.update(HALT, ceiling=1000, now=3) == 0.0
    assert c.update(OK, ceiling=1000, now=4) >= 100  # back from HALT at the floor or above
    assert c.update(OK, ceiling=50, now=5) == 50  # a calendar cap below the floor wins
    assert c.update(OK, ceiling=0, now=6) == 0
    assert c.update(OK, ceiling=300, now=7) <= 300


def test_aimd_hysteresis_needs_consecutive_oks() -> None:
    c = AIMDController(floor=1, increase=10, min_dwell=0, ok_needed=3, proportional=False)
    c.update(OK, ceiling=100, now=0)
    c.update(THROTTLE, ceiling=100, now=1)
    assert c.update(OK, ceiling=100, now=2) == 50
    assert c.update(OK, ceiling=100, now=3) == 50
    assert c.update(OK, ceiling=100, now=4) == 60


def test_aimd_infinite_ceiling() -> None:
    c = AIMDController(floor=10, increase=100, min_dwell=0, initial=None, proportional=False)
    assert c.update(OK, ceiling=math.inf, now=0) == math.inf
    # the first cut starts from the floor when nothing finite is known
    assert c.update(THROTTLE, ceiling=math.inf, now=1) == 10
    assert c.update(OK, ceiling=math.inf, now=2) == 110
    d = AIMDController(floor=10, increase=100, min_dwell=0, max_rate=5000, proportional=False)
    assert d.update(OK, ceiling=math.inf, now=0) == 5000
    assert d.update(THROTTLE, ceiling=math.inf, now=1) == 2500


def test_aimd_reset() -> None:
    c = AIMDController(floor=1, increase=1, min_dwell=0)
    c.update(OK, ceiling=100, now=0)
    c.update(THROTTLE, ceiling=100, now=1)
    c.reset()
    assert c.rate is None
    assert c.update(OK, ceiling=100, now=2) == 100


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"floor": -1}, "floor"),
        ({"floor": "fast"}, "floor"),
        ({"increase": 0}, "increase"),
        ({"decrease": 1.0}, "decrease"),
        ({"decrease": 0}, "decrease"),
        ({"min_dwell": -1}, "min_dwell"),
        ({"ok_needed": 0}, "ok_needed"),
        ({"floor": 100, "max_rate": 10}, "max_rate"),
        ({"margin": 1.5}, "margin"),
    ],
)
def test_aimd_bad_arguments(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        AIMDController(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"target": 0}, "target"),
        ({"gain": -1}, "gain"),
        ({"base_history": -1}, "base_history"),
        ({"max_increase": 0}, "max_increase"),
        ({"floor": math.inf}, "floor"),
    ],
)
def test_ledbat_bad_arguments(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        LedbatController(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.parametrize("controller", [AIMDController(), LedbatController()])
def test_bad_update_arguments(controller: RateController) -> None:
    with pytest.raises(ConfigError):
        controller.update(OK, ceiling=-1, now=0)
    with pytest.raises(ConfigError):
        controller.update(OK, ceiling=10, now=math.nan)


# --------------------------------------------------------------------- LEDBAT


def test_ledbat_steers_towards_target_load() -> None:
    c = LedbatController(target=0.8, gain=0.5, min_dwell=0, floor=1)
    assert c.update(Assessment(Verdict.OK, load=0.0), ceiling=1000, now=0) == 1000
    r = c.update(Assessment(Verdict.OK, load=1.2), ceiling=1000, now=1)
    assert r == pytest.approx(1000 * (1 + 0.5 * (0.8 - 1.2) / 0.8))
    r2 = c.update(Assessment(Verdict.OK, load=0.4), ceiling=1000, now=2)
    assert r2 == pytest.approx(r * 1.25)  # bounded by max_increase
    assert c.update(Assessment(Verdict.OK, load=0.8), ceiling=1000, now=3) == pytest.approx(r2)
    # THROTTLE always shrinks, even when the load reads low (a missing probe)
    assert c.update(Assessment(Verdict.THROTTLE, load=0.0), ceiling=1000, now=4) < r2
    assert c.update(HALT, ceiling=1000, now=5) == 0.0


def test_ledbat_infinite_ceiling_and_base_history() -> None:
    c = LedbatController(min_dwell=0, initial=400, base_history=3, base_interval=10)
    assert c.update(Assessment(Verdict.OK, load=0.3), ceiling=math.inf, now=0) == 400
    c2 = LedbatController(min_dwell=0)
    assert c2.update(Assessment(Verdict.OK, load=0.3), ceiling=math.inf, now=0) == math.inf
    assert math.isfinite(c2.update(Assessment(Verdict.OK, load=1.5), ceiling=math.inf, now=1))
    # a base load seen for a while is subtracted (RFC 6817's base-delay history)
    c.update(Assessment(Verdict.OK, load=0.5), ceiling=1000, now=15)
    assert c.base == pytest.approx(0.3)
    # ... and forgotten once it is older than the history (3 periods of 10 s)
    for t in range(20, 60, 5):
        c.update(Assessment(Verdict.OK, load=0.5), ceiling=1000, now=t)
    assert c.base == pytest.approx(0.5)


# ----------------------------------------------------------- plant simulation

BASE = 0.2


def simulate(
    controller: RateController,
    *,
    r_star: float,
    ceiling: float,
    noise: float,
    seed: int,
    steps: int,
) -> tuple[list[float], float]:
    """Production latency rises linearly with the backup rate: at ``r_star`` it is +5 %.

    One sample and one controller update per second of fake time. Returns the rates
    and the largest rate that keeps latency under the limit *as the analyser judges
    it* (its learnt baseline times 1.05).
    """
    rng = random.Random(seed)
    k = 0.05 / r_star
    clock = FakeClock()
    analyzer = ImpactAnalyzer(clock=clock)
    for _ in range(600):
        analyzer.observe_baseline({"api.latency_s": BASE * rng.lognormvariate(0, noise)})
    limit = analyzer.baseline["api.latency_s"].median * 1.05
    best = (limit / BASE - 1) / k
    rate = controller.update(analyzer.assess({}), ceiling=ceiling, now=clock.monotonic())
    rates = []
    for _ in range(steps):
        clock.advance(1.0)
        latency = BASE * (1 + k * rate) * rng.lognormvariate(0, noise)
        assessment = analyzer.assess({"api.latency_s": latency})
        rate = controller.update(assessment, ceiling=ceiling, now=clock.monotonic())
        rates.append(rate)
    return rates, best


CONTROLLERS = {
    "aimd": lambda: AIMDController(floor=10, min_dwell=20),
    "ledbat": lambda: LedbatController(floor=10, min_dwell=20),
}


@pytest.mark.parametrize("name", sorted(CONTROLLERS))
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("r_star", "ceiling"), [(600.0, 1000.0), (3000.0, 5000.0), (200.0, 260.0)])
def test_converges_to_the_largest_safe_rate(
    name: str, seed: int, r_star: float, ceiling: float
) -> None:
    rates, best = simulate(
        CONTROLLERS[name](), r_star=r_star, ceiling=ceiling, noise=0.01, seed=seed, steps=700
    )
    settle = 150  # bounded number of steps (seconds at 1 Hz)
    tail = rates[settle:]
    assert min(tail) >= 0.8 * best, (min(tail), best)
    assert max(tail) <= 1.2 * best, (max(tail), best)
    # and it uses the room it has: on average within 12 % of the best rate
    assert sum(tail) / len(tail) >= 0.88 * best


@pytest.mark.parametrize("name", sorted(CONTROLLERS))
def test_stays_at_the_ceiling_when_production_does_not_mind(name: str) -> None:
    rates, best = simulate(
        CONTROLLERS[name](), r_star=10_000.0, ceiling=1000.0, noise=0.01, seed=1, steps=300
    )
    assert best > 1000
    assert rates[-100:] == [1000.0] * 100


def test_floor_keeps_a_trickle_under_heavy_load() -> None:
    rates, best = simulate(
        AIMDController(floor=10, min_dwell=20),
        r_star=5.0,
        ceiling=1000.0,
        noise=0.01,
        seed=2,
        steps=400,
    )
    assert best < 10
    assert all(r == 0.0 or r >= 10 for r in rates)  # HALT or the trickle, never in between
    assert rates[-1] >= 10 or rates[-1] == 0.0


def test_aimd_verdicts_only_settles_near_the_known_limit() -> None:
    """Without a load figure (a host's own OK/THROTTLE), AIMD still avoids the sawtooth:
    after the first full cut it steps just below the rate production complained at."""
    c = AIMDController(floor=10, min_dwell=5)
    r_star = 600.0
    rate = c.update(OK, ceiling=1000, now=0)
    rates = []
    for t in range(1, 600):
        verdict = Verdict.THROTTLE if rate > r_star else Verdict.OK
        rate = c.update(Assessment(verdict), ceiling=1000, now=t)
        rates.append(rate)
    tail = rates[150:]
    assert min(tail) >= 0.8 * r_star
    assert max(tail) <= 1.2 * r_star
    classic = AIMDController(floor=10, min_dwell=5, proportional=False)
    rate = classic.update(OK, ceiling=1000, now=0)
    lows = []
    for t in range(1, 600):
        verdict = Verdict.THROTTLE if rate > r_star else Verdict.OK
        rate = classic.update(Assessment(verdict), ceiling=1000, now=t)
        lows.append(rate)
    assert min(lows[150:]) < 0.6 * r_star  # the classic sawtooth, for contrast


@pytest.mark.parametrize("make", [AIMDController, LedbatController])
def test_halt_cuts_the_rate_to_come_back_from_once(make: type[AIMDController]) -> None:
    c = make(floor=10, decrease=0.5, min_dwell=0)
    assert c.update(Assessment(Verdict.OK, load=0.0), ceiling=1000, now=0) == 1000
    assert c.update(HALT, ceiling=1000, now=1) == 0.0
    assert c.rate == 500  # one cut by decrease
    assert c.update(HALT, ceiling=1000, now=2) == 0.0
    assert c.rate == 500  # a HALT in a row does not cut again
    fresh = make(floor=10, initial=70, min_dwell=0)
    assert fresh.update(HALT, ceiling=1000, now=0) == 0.0
    assert fresh.rate == 70  # no rate yet: initial, else the floor
    bare = make(floor=10, min_dwell=0)
    assert bare.update(HALT, ceiling=1000, now=0) == 0.0
    assert bare.rate == 10
