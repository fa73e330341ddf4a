"""Properties of the analyser over random sample streams."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from wedguard import ImpactAnalyzer, Level, Thresholds, Verdict

METRICS = [
    "api.latency_s",
    "db.latency_s",
    "backup.cpu.percent",
    "backup.rss_bytes",
    "net.sent_bytes_per_s",
    "cpu.percent",
]
KEYS = METRICS + [m + ".error" for m in METRICS] + [m + ".idle" for m in METRICS]

any_float = st.floats(allow_nan=True, allow_infinity=True)
samples = st.dictionaries(st.sampled_from(KEYS), any_float, max_size=8)
levels = st.sampled_from(list(Level))


@given(
    baseline=st.lists(samples, max_size=30),
    stream=st.lists(st.tuples(samples, levels), max_size=60),
    window=st.integers(1, 10),
)
def test_never_raises_and_answers_sensibly(
    baseline: list[dict[str, float]], stream: list[tuple[dict[str, float], Level]], window: int
) -> None:
    a = ImpactAnalyzer(window=window, short_window=1, min_samples=1, min_baseline=1)
    for s in baseline:
        a.observe_baseline(s)
    for s, level in stream:
        r = a.assess(s, level=level)
        assert r.verdict in Verdict
        assert r.excess >= 0  # never NaN
        assert not math.isnan(r.load)
        assert (r.verdict is Verdict.OK) or r.reasons
        assert set(r.metrics) <= set(METRICS)
    # the baseline still serialises
    assert a.baseline.to_json()


positive = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False)


@given(
    base=st.lists(positive, min_size=10, max_size=40),
    stream=st.lists(positive, min_size=1, max_size=60),
    factors=st.tuples(st.floats(1.0, 5.0), st.floats(1.0, 5.0)),
    cpu=st.lists(st.floats(0.0, 100.0), min_size=1, max_size=60),
)
def test_verdict_never_gets_milder_as_excess_grows(
    base: list[float], stream: list[float], factors: tuple[float, float], cpu: list[float]
) -> None:
    """Scaling every production reading up can only make each verdict stricter."""
    lo, hi = sorted(factors)
    th = Thresholds()
    a_lo = ImpactAnalyzer(th, min_samples=1)
    a_hi = ImpactAnalyzer(th, min_samples=1)
    for v in base:
        a_lo.observe_baseline({"api.latency_s": v})
        a_hi.observe_baseline({"api.latency_s": v})
    prev_lo = prev_hi = None
    for i, v in enumerate(stream):
        c = cpu[i % len(cpu)]
        r_lo = a_lo.assess({"api.latency_s": v * lo, "backup.cpu.percent": c * lo})
        r_hi = a_hi.assess({"api.latency_s": v * hi, "backup.cpu.percent": c * hi})
        assert r_hi.verdict >= r_lo.verdict
        assert r_hi.load >= r_lo.load - 1e-9
        prev_lo, prev_hi = r_lo, r_hi
    assert prev_lo is not None
    assert prev_hi is not None


@given(value=st.floats(0.0, 1e4), level=levels)
def test_excess_zero_exactly_when_within_limits(value: float, level: Level) -> None:
    a = ImpactAnalyzer()
    r = a.assess({"backup.cpu.percent": value}, level=level)
    limit = a.thresholds.limit("backup_cpu", level)
    if limit is None or value <= limit:
        assert r.verdict is Verdict.OK
        assert r.excess == 0.0
    else:
        assert r.verdict >= Verdict.THROTTLE
        assert r.excess > 0
