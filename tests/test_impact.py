"""The impact analyser: thresholds, baseline, noise-aware judgement, missing metrics."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator

import pytest

from wedguard import Assessment, Baseline, ConfigError, ImpactAnalyzer, Level, Thresholds, Verdict
from wedguard.policy.impact import MetricStats
from wedguard.testing import FakeClock

API = "api.latency_s"
BASE = 0.200
# Lognormal noise with sigma 0.111: about a third of the samples sit more than 5 %
# above their median, as the issue measured for one-second p95 samples.
SIGMA = 0.111


def noisy(seed: int, mult: float = 1.0, n: int = 1000) -> Iterator[float]:
    r = random.Random(seed)
    for _ in range(n):
        yield r.lognormvariate(math.log(BASE * mult), SIGMA)


def quiet_analyzer(seed: int = 1000, **kw: object) -> ImpactAnalyzer:
    a = ImpactAnalyzer(clock=FakeClock(), **kw)  # type: ignore[arg-type]
    for v in noisy(seed, n=300):
        a.observe_baseline({API: v})
    return a


# ------------------------------------------------------------------ thresholds


def test_threshold_defaults_are_the_platform_table() -> None:
    th = Thresholds()
    assert th.api_latency == 0.05
    assert th.db_latency == 0.20
    assert th.backup_cpu == 30.0
    assert th.backup_memory == 500e6
    assert th.backup_network == 10e6 / 8
    assert th.critical == 3.0
    peak = {r.metric: r.limit for r in th.rules(Level.PEAK)}
    assert peak == {
        "api.latency_s": 0.05,
        "db.latency_s": 0.20,
        "backup.cpu.percent": 30.0,
        "backup.rss_bytes": 500e6,
        "net.sent_bytes_per_s": 1.25e6,
    }
    # CPU and network caps apply at PEAK (and BLACKOUT), not while the calendar is OPEN
    assert th.limit("backup_cpu", Level.OPEN) is None
    assert th.limit("backup_network", Level.OPEN) is None
    assert th.limit("backup_cpu", Level.BLACKOUT) == 30.0


def test_thresholds_overridable_and_per_level() -> None:
    th = Thresholds(
        api_latency=0.10,
        backup_memory="1GB",
        backup_network="20Mbit/s",
        per_level={
            Level.OPEN: {"api_latency": 0.25, "backup_cpu": 80},
            "BLACKOUT": {"db_latency": None},
        },
        relative={"api.latency_s.p99": 0.3},
        absolute={"pressure.cgroup.cpu.some_percent": 20},
    )
    assert th.limit("api_latency", Level.PEAK) == 0.10
    assert th.limit("api_latency", Level.OPEN) == 0.25
    assert th.limit("backup_cpu", Level.OPEN) == 80
    assert th.limit("backup_memory") == 1e9
    assert th.limit("backup_network") == 2.5e6
    assert th.limit("db_latency", Level.BLACKOUT) is None
    assert th.limit("api.latency_s.p99") == 0.3
    assert th.limit("pressure.cgroup.cpu.some_percent") == 20
    rule = next(r for r in th.rules() if r.metric == "api.latency_s.p99")
    assert rule.production
    assert rule.kind == "relative"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"api_latency": -0.05}, "api_latency"),
        ({"api_latency": math.nan}, "api_latency"),
        ({"db_latency": "fast"}, "db_latency"),
        ({"backup_cpu": 0}, "backup_cpu"),
        ({"backup_memory": "lots"}, "backup_memory"),
        ({"backup_network": "0Mbit/s"}, "backup_network"),
        ({"critical": 1.0}, "critical"),
        ({"per_level": {"NOON": {}}}, "per_level key"),
        ({"per_level": {Level.OPEN: {"api_latncy": 0.1}}}, "per_level[OPEN]['api_latncy']"),
        ({"per_level": {Level.OPEN: {"api_latency": -1}}}, "per_level[OPEN]['api_latency']"),
        ({"relative": {"x": 0}}, "relative['x']"),
        ({"absolute": ["x"]}, "absolute"),
    ],
)
def test_bad_thresholds_name_field_and_value(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Thresholds(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"window": 0}, "window"),
        ({"short_window": 30}, "short_window"),
        ({"min_samples": 50}, "min_samples"),
        ({"confidence": 1.0}, "confidence"),
        ({"halt_after": 0}, "halt_after"),
        ({"on_missing": "ignore"}, "on_missing"),
        ({"probe_failures_to_halt": 0}, "probe_failures_to_halt"),
        ({"thresholds": {"api_latency": 0.05}}, "thresholds"),
    ],
)
def test_bad_analyzer_arguments(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        ImpactAnalyzer(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


# -------------------------------------------------------------------- baseline


def test_baseline_is_robust_to_outliers() -> None:
    values = [0.2] * 50 + [0.21] * 50 + [5.0] * 5  # a few huge outliers
    stats = MetricStats.of(values)
    assert stats.median == pytest.approx(0.21)
    assert stats.spread < 0.05
    assert stats.count == 105


def test_baseline_round_trips_through_plain_json(tmp_path: object) -> None:
    a = quiet_analyzer()
    a.observe_baseline({"db.latency_s": 0.01})
    text = a.baseline.to_json()
    data = json.loads(text)
    assert set(data["metrics"]) == {API, "db.latency_s"}
    assert Baseline.from_json(text) == Baseline.from_json(text)
    again = Baseline.from_json(text)
    assert again[API].median == pytest.approx(a.baseline[API].median)

    import pathlib

    path = pathlib.Path(str(tmp_path)) / "baseline.json"
    a.save_baseline(path)
    cold = ImpactAnalyzer(clock=FakeClock())
    cold.load_baseline(path)
    assert cold.baseline[API].median == pytest.approx(a.baseline[API].median)
    # a cold analyzer with the stored baseline judges like the warm one
    warm_v = [a.assess({API: v}).verdict for v in noisy(7, 1.3, 40)]
    cold_v = [cold.assess({API: v}).verdict for v in noisy(7, 1.3, 40)]
    assert warm_v == cold_v
    assert Verdict.HALT in cold_v
    # and the constructor accepts one too
    assert ImpactAnalyzer(baseline=again).baseline[API] == again[API]


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"metrics": {"x": {"median": 1}}}',
        '{"metrics": {"x": {"median": "NaN", "spread": 0, "count": 1}}}',
        '{"metrics": {"x": {"median": 1, "spread": -1, "count": 1}}}',
    ],
)
def test_bad_baseline_json_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        Baseline.from_json(text)
    assert info.value.field.startswith("baseline")


def test_load_missing_baseline_file_is_a_config_error(tmp_path: object) -> None:
    with pytest.raises(ConfigError):
        ImpactAnalyzer().load_baseline(f"{tmp_path}/nope.json")


# ------------------------------------------------------- noise-aware judgement


def test_noise_model_matches_the_issue() -> None:
    """The test noise is as bad as the issue says: ~1/3 of samples >5 % over median."""
    xs = sorted(noisy(1, n=20000))
    med = xs[len(xs) // 2]
    share = sum(x > med * 1.05 for x in xs) / len(xs)
    assert 0.31 <= share <= 0.36


@pytest.mark.parametrize("seed", range(6))
def test_quiet_noisy_production_stays_ok(seed: int) -> None:
    """A sample-by-sample +5 % test would call a third of these ticks harm; we do not."""
    a = quiet_analyzer(1000 + seed)
    stream = list(noisy(seed, n=1500))
    naive = sum(v > a.baseline[API].median * 1.05 for v in stream) / len(stream)
    assert naive > 0.25  # what the naive controller saw
    verdicts = [a.assess({API: v}).verdict for v in stream]
    assert Verdict.HALT not in verdicts
    assert sum(v is Verdict.THROTTLE for v in verdicts) / len(verdicts) < 0.03


@pytest.mark.parametrize("seed", range(6))
def test_sustained_ten_percent_shift_is_flagged_within_bounded_samples(seed: int) -> None:
    a = quiet_analyzer(1000 + seed)
    verdicts = [a.assess({API: v}).verdict for v in noisy(seed, 1.10, 200)]
    first = next(i for i, v in enumerate(verdicts) if v >= Verdict.THROTTLE)
    assert first < 30
    assert sum(v >= Verdict.THROTTLE for v in verdicts[30:]) / len(verdicts[30:]) > 0.5


@pytest.mark.parametrize("seed", range(6))
def test_three_times_the_allowed_excess_halts_on_consecutive_assessments(seed: int) -> None:
    a = quiet_analyzer(1000 + seed)
    results = [a.assess({API: v}) for v in noisy(seed, 1.0 + 3 * 0.05 * 2, 60)]
    verdicts = [r.verdict for r in results]
    first_halt = verdicts.index(Verdict.HALT)
    assert first_halt < 15
    # the assessment before the first HALT was already over, but not yet HALT
    assert verdicts[first_halt - 1] is Verdict.THROTTLE
    assert "critical" in results[first_halt - 1].reasons[0]
    assert "in a row" in results[first_halt].reasons[0]


def test_exact_critical_excess_halts_eventually() -> None:
    a = quiet_analyzer()
    verdicts = [a.assess({API: v}).verdict for v in noisy(3, 1.0 + 3 * 0.05 + 0.02, 120)]
    assert Verdict.HALT in verdicts


def test_single_spikes_never_halt() -> None:
    a = quiet_analyzer()
    stream = list(noisy(5, n=400))
    for i in range(0, 400, 7):
        stream[i] = BASE * 10  # one wild sample every seven
    verdicts = [a.assess({API: v}).verdict for v in stream]
    assert Verdict.HALT not in verdicts


def test_reasons_name_metric_value_baseline_and_limit() -> None:
    a = ImpactAnalyzer(clock=FakeClock())
    for v in [0.206] * 20:
        a.observe_baseline({API: v})
    for _ in range(5):
        r = a.assess({API: 0.231})
    assert r.verdict is Verdict.THROTTLE
    assert r.reasons == ("api.latency_s 0.231 s is +12 % over baseline 0.206 s (limit +5 %)",)
    assert r.metrics[API] == pytest.approx(0.231)
    assert r.excess == pytest.approx(0.231 / (0.206 * 1.05) - 1)
    assert r.load == pytest.approx((0.231 - 0.206) / (0.206 * 0.05))
    assert r.level is Level.PEAK


def test_metrics_are_smoothed_values_not_the_last_sample() -> None:
    a = quiet_analyzer()
    for v in [0.2, 0.21, 0.19, 0.2, 0.2, 0.2]:
        r = a.assess({API: v})
    r = a.assess({API: 5.0})
    assert r.metrics[API] == pytest.approx(0.2)
    assert r.verdict is Verdict.OK


def test_absolute_and_extra_limits() -> None:
    a = ImpactAnalyzer(clock=FakeClock())
    a.observe_baseline({"backup.rss_bytes": 100e6, "net.sent_bytes_per_s": 1e6})
    ok = a.assess(
        {"backup.cpu.percent": 20, "backup.rss_bytes": 550e6, "net.sent_bytes_per_s": 2e6}
    )
    assert ok.verdict is Verdict.OK  # 450 MB and 1 MB/s over baseline: within limits
    r = a.assess({"backup.cpu.percent": 45, "backup.rss_bytes": 700e6, "net.sent_bytes_per_s": 5e6})
    # the short-window median of [20, 45] is 32.5 %, over 30 %; rss (550+700)/2 -100 = 525 MB
    assert r.verdict is Verdict.THROTTLE
    text = " | ".join(r.reasons)
    assert "backup.cpu.percent" in text
    assert "limit 30 %" in text
    assert "backup.rss_bytes" in text
    assert "500 MB" in text
    # CPU is not capped while the calendar is OPEN
    a2 = ImpactAnalyzer()
    assert a2.assess({"backup.cpu.percent": 80}, level=Level.OPEN).verdict is Verdict.OK
    assert a2.assess({"backup.cpu.percent": 80}, level=Level.PEAK).verdict is Verdict.THROTTLE


def test_absolute_critical_halts_only_on_consecutive_assessments() -> None:
    a = ImpactAnalyzer()
    assert a.assess({"backup.cpu.percent": 95}).verdict is Verdict.THROTTLE
    assert a.assess({"backup.cpu.percent": 95}).verdict is Verdict.HALT


# ------------------------------------------------------------- missing metrics


def test_nothing_provided_is_ok() -> None:
    a = quiet_analyzer()
    r = a.assess({})
    assert r.verdict is Verdict.OK
    assert r.reasons == ()
    assert r.excess == 0.0
    assert ImpactAnalyzer().assess({"some.other": 1.0}).verdict is Verdict.OK


def test_failed_probe_is_never_ok_by_default() -> None:
    a = quiet_analyzer()
    r = a.assess({API + ".error": 1.0})
    assert r.verdict is Verdict.THROTTLE
    assert r.missing == (API,)
    assert "missing" in r.reasons[0]


def test_vanished_metric_is_missing_but_idle_is_not() -> None:
    a = quiet_analyzer()
    a.assess({API: 0.2})
    assert a.assess({}).verdict is Verdict.THROTTLE
    assert a.assess({API + ".idle": 1.0}).verdict is Verdict.OK
    assert a.assess({API: math.nan}).verdict is Verdict.THROTTLE


def test_probe_that_keeps_failing_halts() -> None:
    a = quiet_analyzer(probe_failures_to_halt=3)
    verdicts = [a.assess({API + ".error": 1.0}).verdict for _ in range(4)]
    assert verdicts == [Verdict.THROTTLE, Verdict.THROTTLE, Verdict.HALT, Verdict.HALT]
    assert a.assess({API: 0.2}).verdict is Verdict.OK  # recovered


def test_fail_open_and_halt_policies() -> None:
    a = quiet_analyzer(on_missing="fail_open")
    assert all(a.assess({API + ".error": 1.0}).verdict is Verdict.OK for _ in range(10))
    b = quiet_analyzer(on_missing="halt")
    assert b.assess({API + ".error": 1.0}).verdict is Verdict.HALT


def test_backup_metric_missing_throttles_but_does_not_halt() -> None:
    a = ImpactAnalyzer()
    verdicts = [a.assess({"backup.cpu.percent.error": 1.0}).verdict for _ in range(10)]
    assert set(verdicts) == {Verdict.THROTTLE}


def test_assessment_is_a_frozen_value() -> None:
    r = Assessment(Verdict.OK)
    with pytest.raises(AttributeError):
        r.verdict = Verdict.HALT  # type: ignore[misc]
    assert r.to_dict()["verdict"] == "OK"
    assert ImpactAnalyzer(clock=FakeClock(monotonic=42.0)).assess({}).at == 42.0


def test_reset_forgets_history_not_baseline() -> None:
    a = quiet_analyzer()
    for v in noisy(2, 2.0, 10):
        a.assess({API: v})
    a.reset()
    assert a.assess({}).verdict is Verdict.OK
    assert API in a.baseline


def test_missing_reasons_say_what_went_wrong() -> None:
    a = quiet_analyzer()
    assert "reported an error" in a.assess({API + ".error": 1.0}).reasons[0]
    a.assess({API: 0.2})
    assert "no longer reported" in a.assess({}).reasons[0]
    assert "not a number" in a.assess({API: math.nan}).reasons[0]


def test_per_level_accepts_a_thresholds() -> None:
    th = Thresholds(per_level={Level.OPEN: Thresholds(api_latency=0.5, backup_cpu=None)})
    assert th.limit("api_latency", Level.OPEN) == 0.5
    assert th.limit("backup_cpu", Level.OPEN) is None
    assert th.limit("api_latency", Level.PEAK) == 0.05


def test_a_single_baseline_sample_is_enough_to_judge() -> None:
    a = ImpactAnalyzer()
    a.observe_baseline({API: 0.2})
    verdicts = [a.assess({API: 0.3}).verdict for _ in range(5)]
    assert verdicts[0] is Verdict.OK  # not judged on one sample: "enough samples per window"
    assert Verdict.HALT in verdicts  # +50 % is ten times the allowed excess


def test_a_short_baseline_widens_the_dead_band() -> None:
    """The same median and spread, but from 2 samples instead of 600: less certain."""
    short = ImpactAnalyzer(baseline=Baseline({API: MetricStats(0.2, 0.01, 2)}))
    long = ImpactAnalyzer(baseline=Baseline({API: MetricStats(0.2, 0.01, 600)}))
    for _ in range(20):
        r_short = short.assess({API: 0.215})
        r_long = long.assess({API: 0.215})
    assert r_long.verdict is Verdict.THROTTLE  # +7.5 %, over the +5 % limit, with confidence
    assert r_short.verdict is Verdict.OK  # could be the short baseline's own error


def test_reasons_carry_units() -> None:
    a = ImpactAnalyzer()
    a.observe_baseline({"net.sent_bytes_per_s": 250_000.0, "backup.rss_bytes": 50e6})
    r = a.assess({"net.sent_bytes_per_s": 3_000_000.0, "backup.rss_bytes": 900e6})
    net = next(x for x in r.reasons if x.startswith("net."))
    assert net == (
        "net.sent_bytes_per_s 3 MB/s is 2.75 MB/s over baseline 250 kB/s (limit 1.25 MB/s at PEAK)"
    )
    rss = next(x for x in r.reasons if x.startswith("backup.rss"))
    assert rss == "backup.rss_bytes 900 MB is 850 MB over baseline 50 MB (limit 500 MB at PEAK)"


def test_a_baseline_too_small_to_scale_does_not_divide_by_zero() -> None:
    """A baseline median so small that median x limit underflows to 0 is judged, not a crash."""
    a = ImpactAnalyzer(clock=FakeClock(), window=1, short_window=1, min_samples=1, min_baseline=1)
    a.observe_baseline({"db.latency_s": -5e-324})
    result = a.assess({"db.latency_s": 0.0}, level=Level.OPEN)
    assert result.verdict in (Verdict.OK, Verdict.THROTTLE, Verdict.HALT)
    result = a.assess({"db.latency_s": 1.0}, level=Level.OPEN)
    assert result.verdict > Verdict.OK
