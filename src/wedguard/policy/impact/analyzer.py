"""The judgement: :class:`ImpactAnalyzer` compares a sample with the baseline and the thresholds and returns an :class:`Assessment`."""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from collections.abc import Mapping
from statistics import NormalDist
from typing import Any

import attrs

from wedguard.clock import Clock, check_clock
from wedguard.errors import ConfigError
from wedguard.levels import Level, Verdict
from wedguard.policy.impact.baseline import _MEDIAN_SE, Baseline, MetricStats, _median
from wedguard.policy.impact.thresholds import (
    MissingPolicy,
    ThresholdRule,
    Thresholds,
    _float_map,
)
from wedguard.units import format_rate, format_size

__all__ = ["Assessment", "ImpactAnalyzer"]


@attrs.frozen
class Assessment:
    """What the analyser concluded from one sample.

    Attributes:
        verdict: ``OK``, ``THROTTLE`` or ``HALT``.
        reasons: why, one line per finding, naming metric, value, baseline and limit.
            Empty when OK.
        metrics: the smoothed values that were judged, by metric.
        excess: the worst relative excess over a limit (``0.1`` = 10 % over the line
            the value was judged against); 0.0 when nothing is over.
        load: the worst ratio of measured impact to allowed impact (1.0 at the limit,
            0 or below with no impact); the delay-based controller steers on it. 0.0
            when nothing was judged.
        level: the calendar level the limits were taken from.
        missing: metrics a source should have produced but did not.
        at: the clock's monotonic time of the assessment.
        unjudged: limits that were measured but could not be judged, one line each
            naming the metric and why (``"api.latency_s: no baseline yet, not
            judged"``). The verdict says nothing about these metrics.

    .. versionchanged:: 0.2.0 ``unjudged``.
    """

    verdict: Verdict
    reasons: tuple[str, ...] = ()
    metrics: Mapping[str, float] = attrs.field(factory=dict, converter=_float_map)
    excess: float = 0.0
    load: float = 0.0
    level: Level = Level.PEAK
    missing: tuple[str, ...] = ()
    at: float = 0.0
    unjudged: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.name,
            "reasons": list(self.reasons),
            "metrics": dict(self.metrics),
            "excess": self.excess,
            "load": self.load,
            "level": self.level.name,
            "missing": list(self.missing),
            "at": self.at,
            "unjudged": list(self.unjudged),
        }


def _fmt(metric: str, value: float) -> str:
    """A value with its unit, guessed from the metric's name."""
    finite = math.isfinite(value) and value >= 0
    if "bytes_per_s" in metric:
        return format_rate(value) if finite else f"{value:g} B/s"
    if "bytes" in metric:
        return format_size(value) if finite else f"{value:g} B"
    if "percent" in metric:
        return f"{value:.3g} %"
    if metric.endswith("_s") or ".latency" in metric:
        return f"{value:.3g} s"
    return f"{value:.4g}"


def _pct(x: float) -> str:
    return f"{x * 100:+.0f} %" if math.isfinite(x) else f"{x * 100:+} %"


class _Track:
    """The analyser's memory of one metric."""

    __slots__ = ("crit_streak", "failures", "seen", "values")

    def __init__(self, window: int) -> None:
        self.values: deque[float] = deque(maxlen=window)
        self.failures = 0
        self.crit_streak = 0
        self.seen = False


class ImpactAnalyzer:
    """Turns samples into OK / THROTTLE / HALT, with reasons.

    Args:
        thresholds: the limits (default :class:`Thresholds()`, the platform's table).
        clock: stamps assessments and baselines (default: the system clock).
        baseline: a stored :class:`Baseline` to start from.
        window: how many recent samples the smoothed value (their median) covers.
        short_window: how many recent samples the median of a backup's own metrics
            (CPU, memory, bandwidth: capped, not compared with a baseline) covers.
        min_samples: samples needed before a latency is judged at all.
        min_baseline: baseline samples needed before a latency is judged (a short
            baseline is less certain, which widens the dead-band; a minute's worth
            or more is best).
        confidence: how sure the analyser must be that a latency rose, beyond what
            the baseline's noise explains, before it says THROTTLE (one-sided).
        critical_confidence: the same for the critical check.
        halt_after: consecutive assessments past the critical limit before HALT.
        on_missing: what a metric that a source should have produced but did not
            means: ``"fail_closed"`` (THROTTLE, the default), ``"fail_open"`` (ignored,
            noted in the reasons) or ``"halt"``.
        probe_failures_to_halt: consecutive failures of a production probe after
            which the analyser says HALT (``None``: never, unless ``on_missing`` says).
        baseline_size: baseline samples kept per metric (the most recent).

    A metric that no source provides is not assessed, so ``assess({})`` is OK. A
    metric is *missing* when its ``"<metric>.error"`` key is set, its value is NaN, or
    it was reported before and has vanished (a ``"<metric>.idle"`` key says the source
    is healthy but had nothing to measure: not missing, not judged).

    Example::

        >>> a = ImpactAnalyzer(Thresholds(backup_cpu=25))
        >>> a.assess({"backup.cpu.percent": 40.0}).reasons
        ('backup.cpu.percent 40 % is over its limit 25 % at PEAK (+60 %)',)
        >>> ImpactAnalyzer().assess({}).verdict      # nothing measured: nothing to judge
        <Verdict.OK: 0>
        >>> a.assess({}).reasons        # but a metric that vanished is never read as OK
        ('backup.cpu.percent is missing: it is no longer reported (1 in a row); not read as OK',)
    """

    def __init__(
        self,
        thresholds: Thresholds | None = None,
        *,
        clock: Clock | None = None,
        baseline: Baseline | None = None,
        window: int = 20,
        short_window: int = 5,
        min_samples: int = 3,
        min_baseline: int = 1,
        confidence: float = 0.99,
        critical_confidence: float = 0.999,
        halt_after: int = 2,
        on_missing: MissingPolicy = "fail_closed",
        probe_failures_to_halt: int | None = 5,
        baseline_size: int = 3600,
    ) -> None:
        if thresholds is None:
            thresholds = Thresholds()
        elif not isinstance(thresholds, Thresholds):
            raise ConfigError("thresholds", thresholds, "a Thresholds")
        if baseline is not None and not isinstance(baseline, Baseline):
            raise ConfigError("baseline", baseline, "a Baseline")
        for name, value, lo in (
            ("window", window, 1),
            ("short_window", short_window, 1),
            ("min_samples", min_samples, 1),
            ("min_baseline", min_baseline, 1),
            ("halt_after", halt_after, 1),
            ("baseline_size", baseline_size, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ConfigError(name, value, f"an integer >= {lo}")
        if short_window > window:
            raise ConfigError("short_window", short_window, f"an integer <= window ({window})")
        if min_samples > window:
            raise ConfigError("min_samples", min_samples, f"an integer <= window ({window})")
        for name, p in (("confidence", confidence), ("critical_confidence", critical_confidence)):
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.5 <= p < 1:
                raise ConfigError(name, p, "a probability in [0.5, 1)")
        if on_missing not in ("fail_closed", "fail_open", "halt"):
            raise ConfigError("on_missing", on_missing, "'fail_closed', 'fail_open' or 'halt'")
        if probe_failures_to_halt is not None and (
            isinstance(probe_failures_to_halt, bool)
            or not isinstance(probe_failures_to_halt, int)
            or probe_failures_to_halt < 1
        ):
            raise ConfigError(
                "probe_failures_to_halt", probe_failures_to_halt, "an integer >= 1 or None"
            )
        self.thresholds = thresholds
        self._clock = check_clock(clock)
        self.window = window
        self.short_window = short_window
        self.min_samples = min_samples
        self.min_baseline = min_baseline
        self.confidence = float(confidence)
        self.critical_confidence = float(critical_confidence)
        self._z = NormalDist().inv_cdf(confidence)
        self._zc = NormalDist().inv_cdf(critical_confidence)
        self.halt_after = halt_after
        self.on_missing: MissingPolicy = on_missing
        self.probe_failures_to_halt = probe_failures_to_halt
        self._stored = baseline if baseline is not None else Baseline()
        self._quiet: dict[str, deque[float]] = {}
        self._baseline_size = baseline_size
        self._cached: Baseline | None = None
        self._tracks: dict[str, _Track] = {}
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- baseline

    def observe_baseline(self, sample: Mapping[str, float] | Baseline) -> None:
        """Learn from a sample taken while no backup runs (or adopt a stored Baseline).

        Non-finite values and ``.error`` keys are ignored; never raises on a sample.
        """
        with self._lock:
            self._observe(sample)

    def _observe(self, sample: Mapping[str, float] | Baseline) -> None:
        if isinstance(sample, Baseline):
            self._stored = sample
            self._quiet.clear()
            self._cached = None
            return
        for k, v in sample.items():
            if (
                isinstance(v, (int, float))
                and math.isfinite(v)
                and not k.endswith((".error", ".idle"))
            ):
                q = self._quiet.get(k)
                if q is None:
                    q = self._quiet[k] = deque(maxlen=self._baseline_size)
                q.append(float(v))
        self._cached = None

    @property
    def baseline(self) -> Baseline:
        """The baseline in force: the quiet samples observed, over a stored baseline."""
        b = self._cached
        if b is None:
            stats = dict(self._stored.stats)
            for k, q in self._quiet.items():
                stats[k] = MetricStats.of(list(q))
            b = self._cached = Baseline(stats, self._clock.now().isoformat())
        return b

    @baseline.setter
    def baseline(self, value: Baseline) -> None:
        if not isinstance(value, Baseline):
            raise ConfigError("baseline", value, "a Baseline")
        self.observe_baseline(value)

    def save_baseline(self, path: str | os.PathLike[str]) -> None:
        """Write the baseline in force to ``path`` as JSON."""
        self.baseline.save(path)

    def load_baseline(self, path: str | os.PathLike[str]) -> Baseline:
        """Adopt the baseline stored at ``path`` (replacing quiet samples seen so far)."""
        b = Baseline.load(path)
        self.observe_baseline(b)
        return b

    def baseline_needed(
        self, sample: Mapping[str, float], count: int | None = None
    ) -> tuple[str, ...]:
        """The metrics of ``sample`` judged against a baseline that has fewer than
        ``count`` samples (default ``min_baseline``): what a guard must learn first.

        Only metrics with a finite value in ``sample`` and a relative rule at some
        level count; a failed probe teaches nothing.

        >>> a = ImpactAnalyzer()
        >>> a.baseline_needed({"api.latency_s": 0.2, "cpu.percent": 40.0})
        ('api.latency_s',)
        >>> a.observe_baseline({"api.latency_s": 0.2})
        >>> a.baseline_needed({"api.latency_s": 0.2}), a.baseline_needed({"api.latency_s": 0.2}, 5)
        ((), ('api.latency_s',))

        .. versionadded:: 0.2.0
        """
        need = self.min_baseline if count is None else count
        relative: set[str] = set()
        for level in Level:
            relative.update(r.metric for r in self.thresholds.rules(level) if r.kind == "relative")
        with self._lock:
            baseline = self.baseline
        out = []
        for m in sorted(relative):
            value = sample.get(m)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            stats = baseline.get(m)
            if stats is None or stats.count < need:
                out.append(m)
        return tuple(out)

    def reset(self) -> None:
        """Forget the recent samples, streaks and failures (keeps the baseline)."""
        self._tracks.clear()

    # ------------------------------------------------------------------ judge

    def assess(self, sample: Mapping[str, float], level: Level = Level.PEAK) -> Assessment:
        """Judge ``sample`` (and the recent ones) against the limits of ``level``.

        Pure apart from updating the analyser's recent history; never raises on a
        sample's content. Thread-safe (one assessment at a time).
        """
        try:
            level = Level(level)
        except ValueError:
            raise ConfigError("level", level, "a Level") from None
        with self._lock:
            return self._assess(sample, level)

    def _assess(self, sample: Mapping[str, float], level: Level) -> Assessment:
        baseline = self.baseline
        verdict = Verdict.OK
        reasons: list[str] = []
        metrics: dict[str, float] = {}
        missing: list[str] = []
        unjudged: list[str] = []
        excess = 0.0
        load = 0.0
        for rule in self.thresholds.rules(level):
            m = rule.metric
            track = self._tracks.get(m)
            if track is None:
                track = self._tracks[m] = _Track(self.window)
            value = sample.get(m)
            err = sample.get(m + ".error")
            failed = bool(err) and not (isinstance(err, float) and math.isnan(err))
            how = "its source reported an error"
            if (value is not None and not isinstance(value, (int, float))) or (
                value is not None and (math.isnan(value) or value == -math.inf)
            ):
                failed = True
                how = f"its value {value!r} is not a number"
            elif value is None and not failed:
                if track.seen and not sample.get(m + ".idle"):
                    failed = True
                    how = "it is no longer reported"
                else:
                    continue
            if failed:
                track.failures += 1
                track.crit_streak = 0
                missing.append(m)
                v, why = self._missing(rule, track, how)
                if why:
                    reasons.append(why)
                verdict = max(verdict, v)
                continue
            assert value is not None
            track.seen = True
            track.failures = 0
            track.values.append(float(value))
            stats = baseline.get(m)
            if rule.kind == "relative" and (stats is None or stats.count < self.min_baseline):
                have = 0 if stats is None else stats.count
                unjudged.append(
                    f"{m}: no baseline yet, not judged"
                    if not have
                    else f"{m}: baseline of {have} sample(s), {self.min_baseline} needed; not judged"
                )
            v, why, smoothed, ex, ld = self._judge(rule, track, stats, level)
            if smoothed is not None:
                metrics[m] = smoothed
                load = max(load, ld)
            if why:
                reasons.append(why)
            excess = max(excess, ex)
            verdict = max(verdict, v)
        return Assessment(
            verdict,
            tuple(reasons),
            metrics,
            excess,
            load,
            level,
            tuple(missing),
            self._clock.monotonic(),
            tuple(unjudged),
        )

    def _missing(self, rule: ThresholdRule, track: _Track, how: str) -> tuple[Verdict, str]:
        m = rule.metric
        n = track.failures
        if self.on_missing == "fail_open":
            return Verdict.OK, ""
        if self.on_missing == "halt":
            return Verdict.HALT, f"{m} is missing: {how} (on_missing='halt')"
        limit = self.probe_failures_to_halt
        if rule.production and limit is not None and n >= limit:
            return Verdict.HALT, f"{m} probe failed {n} times in a row (halt after {limit}): {how}"
        return Verdict.THROTTLE, f"{m} is missing: {how} ({n} in a row); not read as OK"

    def _judge(
        self, rule: ThresholdRule, track: _Track, stats: MetricStats | None, level: Level
    ) -> tuple[Verdict, str, float | None, float, float]:
        vals = track.values
        n = len(vals)
        m = rule.metric
        crit = self.thresholds.critical
        if rule.kind == "relative":
            if stats is None or stats.count < self.min_baseline:
                return Verdict.OK, "", None, 0.0, 0.0
            if n < self.min_samples:
                return Verdict.OK, "", None, 0.0, 0.0
            base = stats.median
            scale = abs(base)
            smoothed = _median(vals)
            line = base + scale * rule.limit
            # the standard error of (window median - baseline median), in the metric's unit
            se = _MEDIAN_SE * stats.spread * math.sqrt(1 / n + 1 / stats.count)
            band = self._z * se
            throttle_line = max(line, base + band)
            crit_line = max(
                base + scale * rule.limit * crit,
                base + self._zc * se,
            )
            allowed = scale * rule.limit  # 0 also when a tiny baseline underflows
            ld = (
                (smoothed - base) / allowed
                if allowed > 0
                else (math.inf if smoothed > base else 0.0)
            )
            over = smoothed > throttle_line
            if not over:  # the usual case: no reason to word
                track.crit_streak = 0
                return Verdict.OK, "", smoothed, 0.0, ld
            what = (
                f"{m} {_fmt(m, smoothed)} is {_pct((smoothed - base) / scale) if scale else 'above'}"
                f" over baseline {_fmt(m, base)} (limit {_pct(rule.limit)}"
            )
            what += f", noise band {_pct(band / scale)})" if band > line - base and scale else ")"
            return self._decide(
                track, over, over and smoothed > crit_line, smoothed, throttle_line, ld, what, crit
            )
        # absolute and extra: the short-window median against a cap
        ns = min(n, self.short_window)
        smoothed = _median(list(vals)[-ns:]) if ns < n else _median(vals)
        offset = 0.0
        if rule.kind == "extra" and stats is not None:
            offset = stats.median
        extra = smoothed - offset
        cap = rule.limit
        ld = extra / cap
        if extra <= cap:  # the usual case (critical > 1, so not critical either)
            track.crit_streak = 0
            return Verdict.OK, "", smoothed, 0.0, ld
        if rule.kind == "extra" and offset:
            what = (
                f"{m} {_fmt(m, smoothed)} is {_fmt(m, extra)} over baseline {_fmt(m, offset)}"
                f" (limit {_fmt(m, cap)} at {level.name})"
            )
        else:
            what = f"{m} {_fmt(m, smoothed)} is over its limit {_fmt(m, cap)} at {level.name}"
            what += f" ({_pct(extra / cap - 1)})"
        return self._decide(
            track, extra > cap, extra > cap * crit, smoothed, offset + cap, ld, what, crit
        )

    def _decide(
        self,
        track: _Track,
        over: bool,
        critical: bool,
        smoothed: float,
        line: float,
        ld: float,
        what: str,
        crit: float,
    ) -> tuple[Verdict, str, float, float, float]:
        if critical:
            track.crit_streak += 1
        else:
            track.crit_streak = 0
        if not (over or critical):
            return Verdict.OK, "", smoothed, 0.0, ld
        ex = smoothed / line - 1 if line > 0 else (math.inf if smoothed > line else 0.0)
        ex = max(ex, 0.0) if not math.isnan(ex) else math.inf
        if critical and track.crit_streak >= self.halt_after:
            return (
                Verdict.HALT,
                f"{what}; past the critical limit ({crit:g}x) on {track.crit_streak} assessments in a row",
                smoothed,
                ex,
                ld,
            )
        if critical:
            what += f"; past the critical limit ({crit:g}x), {track.crit_streak} of {self.halt_after} before HALT"
        return Verdict.THROTTLE, what, smoothed, ex, ld

    def __repr__(self) -> str:
        return (
            f"ImpactAnalyzer(window={self.window}, short_window={self.short_window}, "
            f"confidence={self.confidence:g}, on_missing={self.on_missing!r}, "
            f"metrics={sorted(self.baseline.stats)})"
        )
