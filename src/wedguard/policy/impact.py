"""The impact analyser: is the backup hurting production?

:class:`ImpactAnalyzer` is a pure policy object. It is fed samples (mappings of metric
name to float, as the :mod:`wedguard.sources` produce them) and answers with an
:class:`Assessment`: ``OK`` (go on), ``THROTTLE`` (slow down) or ``HALT`` (stop now),
with reasons a person can read.

Production latency is noisy: in a quiet baseline about a third of one-second p95
samples already sit more than 5 % above their own median, so a limit of "+5 %" applied
sample by sample reads noise as harm. The analyser therefore judges

* a *smoothed* value (the median of the last ``window`` samples) rather than a sample,
* against a robust :class:`Baseline` (median and a one-sided robust spread),
* and flags it only when it is above ``baseline × (1 + limit)`` *and* above the
  baseline by more than the noise could explain with the configured ``confidence``
  (the *dead-band*, derived from the baseline's own spread and the window size).

``HALT`` needs the smoothed value past the critical limit (default 3x the allowed
excess, also widened by a dead-band at ``critical_confidence``) on ``halt_after`` consecutive assessments (gh-ost's
critical-load double check), or a production probe that keeps failing.

Example::

    >>> from wedguard import ImpactAnalyzer, Level
    >>> a = ImpactAnalyzer()
    >>> for v in [0.200, 0.204, 0.198, 0.201, 0.199, 0.202, 0.200, 0.197, 0.203, 0.200]:
    ...     a.observe_baseline({"api.latency_s": v})
    >>> a.assess({"api.latency_s": 0.201}).verdict
    <Verdict.OK: 0>
    >>> for _ in range(5):
    ...     result = a.assess({"api.latency_s": 0.226})
    >>> result.verdict, result.reasons[0]
    (<Verdict.THROTTLE: 1>, 'api.latency_s 0.226 s is +13 % over baseline 0.2 s (limit +5 %)')

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import json
import math
import os
import threading
import warnings
from collections import deque
from collections.abc import Mapping
from statistics import NormalDist
from types import MappingProxyType
from typing import Any, Final, Literal

import attrs

from wedguard import _fs
from wedguard.clock import Clock, check_clock
from wedguard.errors import ConfigError
from wedguard.levels import Level, Verdict
from wedguard.units import format_rate, format_size, parse_rate, parse_size

__all__ = [
    "FAST_SIGNALS",
    "Assessment",
    "Baseline",
    "ImpactAnalyzer",
    "MetricStats",
    "ThresholdRule",
    "Thresholds",
]

_MEDIAN_SE: Final = math.sqrt(math.pi / 2)  # standard error of a median, in sigmas * sqrt(n)
_MAD_TO_SIGMA: Final = 1.4826
_Q_ONE_SIGMA: Final = 0.8413  # the quantile one sigma above the median of a normal

FIELDS: Final[Mapping[str, tuple[str, str]]] = MappingProxyType(
    {
        # field -> (metric, kind)
        "api_latency": ("api.latency_s", "relative"),
        "db_latency": ("db.latency_s", "relative"),
        "backup_cpu": ("backup.cpu.percent", "absolute"),
        "backup_memory": ("backup.rss_bytes", "extra"),
        "backup_network": ("net.sent_bytes_per_s", "extra"),
    }
)
"""Each built-in threshold field, the metric it judges and how."""

FAST_SIGNALS: Final[Mapping[str, float]] = MappingProxyType(
    {
        # metric -> cap, in the metric's unit, at every calendar level
        "pressure.cpu.some_percent": 30.0,
        "pressure.io.some_percent": 20.0,
        "prod.runq_ratio": 0.10,
    }
)
"""The fast signals a guard judges without configuration, and their caps.

Host CPU and I/O pressure (PSI, percent of the last interval in which some task
waited) and the run-queue wait of named production processes (seconds per second).
See :meth:`Thresholds.with_fast_signals`.
"""

_LEVEL_DEFAULTS: Final[Mapping[Level, Mapping[str, float | None]]] = MappingProxyType(
    {Level.OPEN: MappingProxyType({"backup_cpu": None, "backup_network": None})}
)

MissingPolicy = Literal["fail_closed", "fail_open", "halt"]


def _positive(field: str, value: object, *, allow_inf: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(field, value, "a number > 0")
    try:
        v = float(value)
    except OverflowError:  # an int beyond a float: 10**400
        raise ConfigError(field, value, "a finite number > 0") from None
    if not (v > 0 and (allow_inf or math.isfinite(v))):
        raise ConfigError(field, value, "a finite number > 0" if not allow_inf else "a number > 0")
    return v


def _opt_api(value: object) -> float | None:
    return None if value is None else _positive("api_latency", value)


def _opt_db(value: object) -> float | None:
    return None if value is None else _positive("db_latency", value)


def _opt_size(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        return float(parse_size(value, field="backup_memory"))
    return _positive("backup_memory", value)


def _opt_rate(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        rate = parse_rate(value, field="backup_network")
        if not rate > 0:
            raise ConfigError("backup_network", value, "a rate > 0 or None")
        return None if math.isinf(rate) else rate
    return _positive("backup_network", value)


def _opt_percent(value: object) -> float | None:
    if value is None:
        return None
    return _positive("backup_cpu", value)


def _metric_map(field: str, value: object) -> Mapping[str, float]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise ConfigError(field, value, "a mapping of metric name to limit")
    out: dict[str, float] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k:
            raise ConfigError(f"{field}[{k!r}]", k, "a metric name as the key")
        out[k] = _positive(f"{field}[{k!r}]", v)
    return MappingProxyType(out)


def _relative_map(value: object) -> Mapping[str, float]:
    return _metric_map("relative", value)


def _absolute_map(value: object) -> Mapping[str, float]:
    return _metric_map("absolute", value)


def _stats_map(value: Mapping[str, MetricStats]) -> Mapping[str, MetricStats]:
    return MappingProxyType(dict(value))


def _float_map(value: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType(dict(value))


@attrs.frozen
class ThresholdRule:
    """One limit on one metric, as the analyser applies it at a given level.

    ``kind`` is ``"relative"`` (a production latency: at most ``limit`` as a fraction
    over the baseline), ``"absolute"`` (at most ``limit`` in the metric's unit) or
    ``"extra"`` (at most ``limit`` over the baseline, in the metric's unit).
    ``production`` marks a production probe: its failure is judged by the missing
    policy and, when it keeps failing, halts the backup.

    Formerly ``Rule`` (a name the calendar's rules also had); ``wedguard.policy.impact.Rule``
    still works for one release and warns with :class:`DeprecationWarning`.
    """

    metric: str
    kind: str
    limit: float
    production: bool


def _level_key(value: object) -> Level:
    if isinstance(value, Level):
        return value
    if isinstance(value, str) and value.upper() in Level.__members__:
        return Level[value.upper()]
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return Level(value)
        except ValueError:
            pass
    raise ConfigError("per_level key", value, "a Level (OPEN, PEAK or BLACKOUT)")


@attrs.frozen
class Thresholds:
    """The limits production signals must stay within while a backup runs.

    The defaults are the platform's table:

    ==================  =====================  ==================================
    field               metric                 default
    ==================  =====================  ==================================
    ``api_latency``     ``api.latency_s``      +5 % over its baseline
    ``db_latency``      ``db.latency_s``       +20 % over its baseline
    ``backup_cpu``      ``backup.cpu.percent`` 30 % of the machine, at PEAK
    ``backup_memory``   ``backup.rss_bytes``   500 MB over its baseline
    ``backup_network``  ``net.sent_bytes_per_s`` 10 Mbit/s over baseline, at PEAK
    ==================  =====================  ==================================

    Attributes:
        api_latency: allowed relative increase of API latency (``0.05`` = +5 %);
            ``None`` disables the rule.
        db_latency: allowed relative increase of database latency.
        backup_cpu: the backup's CPU cap in percent of the machine.
        backup_memory: extra memory the backup may use, bytes or text (``"500MB"``).
        backup_network: extra upload bandwidth, bytes/s or text (``"10Mbit/s"``).
        relative: more production latency metrics, ``{metric: fraction}``, judged
            like ``api_latency`` (for example ``{"api.latency_s.p99": 0.10}``).
        absolute: more caps, ``{metric: limit}`` in the metric's unit (for example
            ``{"pressure.cgroup.cpu.some_percent": 20}``).
        critical: the critical limit as a multiple of the allowed excess (default 3):
            API latency +15 %, backup CPU 90 %... Past it on consecutive assessments
            the analyser says HALT.
        per_level: overrides for a calendar level: ``{Level.OPEN: {"backup_cpu": 60},
            Level.BLACKOUT: {"api_latency": 0.01}}``. Keys are the field names above
            or a metric named in ``relative``/``absolute``; ``None`` switches the rule
            off at that level. A :class:`Thresholds` as the value means all of its
            five built-in fields at that level. By default ``backup_cpu`` and ``backup_network`` apply
            only at PEAK and BLACKOUT (``{Level.OPEN: {"backup_cpu": None,
            "backup_network": None}}`` is merged under what you give).

    Example::

        >>> th = Thresholds(api_latency=0.10, per_level={Level.OPEN: {"api_latency": 0.25}})
        >>> [(r.metric, r.limit) for r in th.rules(Level.OPEN)]
        [('api.latency_s', 0.25), ('db.latency_s', 0.2), ('backup.rss_bytes', 500000000.0)]
        >>> th.limit("backup_cpu", Level.PEAK)
        30.0

    Bad values raise :class:`~wedguard.ConfigError` naming the field.
    """

    api_latency: float | None = attrs.field(default=0.05, converter=_opt_api)
    db_latency: float | None = attrs.field(default=0.20, converter=_opt_db)
    backup_cpu: float | None = attrs.field(default=30.0, converter=_opt_percent)
    backup_memory: float | None = attrs.field(default=500e6, converter=_opt_size)
    backup_network: float | None = attrs.field(default=10e6 / 8, converter=_opt_rate)
    relative: Mapping[str, float] = attrs.field(factory=dict, converter=_relative_map)
    absolute: Mapping[str, float] = attrs.field(factory=dict, converter=_absolute_map)
    critical: float = attrs.field(default=3.0)
    per_level: Mapping[Level, Mapping[str, float | None]] = attrs.field(factory=dict)
    _rules: Mapping[Level, tuple[ThresholdRule, ...]] = attrs.field(
        init=False, repr=False, eq=False, factory=dict
    )

    @critical.validator
    def _check_critical(self, _a: object, value: object) -> None:
        if _positive("critical", value) <= 1:
            raise ConfigError("critical", value, "a multiple of the allowed excess > 1")

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.per_level, Mapping):
            raise ConfigError("per_level", self.per_level, "a mapping of Level to overrides")
        merged: dict[Level, dict[str, float | None]] = {
            lv: dict(over) for lv, over in _LEVEL_DEFAULTS.items()
        }
        for key, over in self.per_level.items():
            level = _level_key(key)
            if isinstance(over, Thresholds):
                over = {
                    **{name: getattr(over, name) for name in FIELDS},
                    **{k: v for k, v in over.relative.items() if k in self.relative},
                    **{k: v for k, v in over.absolute.items() if k in self.absolute},
                }
            if not isinstance(over, Mapping):
                raise ConfigError(
                    f"per_level[{level.name}]", over, "a mapping of field to limit, or a Thresholds"
                )
            for name, value in over.items():
                merged.setdefault(level, {})[name] = self._convert(
                    f"per_level[{level.name}][{name!r}]", name, value
                )
        object.__setattr__(
            self,
            "per_level",
            MappingProxyType({lv: MappingProxyType(o) for lv, o in merged.items()}),
        )
        object.__setattr__(
            self, "_rules", MappingProxyType({lv: self._build(lv, merged) for lv in Level})
        )

    @classmethod
    def with_fast_signals(cls, **kwargs: Any) -> Thresholds:
        """These thresholds with caps on the :data:`FAST_SIGNALS` as well (under any
        ``absolute`` given, which wins): what ``Guard()`` judges when you configure
        nothing. A signal no source reports is not judged.

        >>> th = Thresholds.with_fast_signals(absolute={"prod.runq_ratio": 0.05})
        >>> th.limit("pressure.cpu.some_percent"), th.limit("prod.runq_ratio")
        (30.0, 0.05)

        .. versionadded:: 0.3.0
        """
        given = kwargs.pop("absolute", None)
        absolute = {**FAST_SIGNALS, **(_absolute_map(given) if given is not None else {})}
        return cls(absolute=absolute, **kwargs)

    def _convert(self, field: str, name: object, value: object) -> float | None:
        if name in FIELDS:
            if value is None:
                return None
            if name == "backup_memory" and isinstance(value, str):
                return float(parse_size(value, field=field))
            if name == "backup_network" and isinstance(value, str):
                rate = parse_rate(value, field=field)
                return None if math.isinf(rate) else _positive(field, rate)
            return _positive(field, value)
        if isinstance(name, str) and (name in self.relative or name in self.absolute):
            return None if value is None else _positive(field, value)
        raise ConfigError(
            field, name, f"one of {', '.join(FIELDS)} or a metric in relative/absolute"
        )

    def _build(
        self, level: Level, merged: Mapping[Level, Mapping[str, float | None]]
    ) -> tuple[ThresholdRule, ...]:
        over = merged.get(level, {})
        rules: list[ThresholdRule] = []
        for name, (metric, kind) in FIELDS.items():
            limit = over[name] if name in over else getattr(self, name)
            if limit is not None:
                rules.append(ThresholdRule(metric, kind, limit, kind == "relative"))
        for metric, limit in self.relative.items():
            lim = over.get(metric, limit) if metric in over else limit
            if lim is not None:
                rules.append(ThresholdRule(metric, "relative", lim, True))
        for metric, limit in self.absolute.items():
            lim = over.get(metric, limit) if metric in over else limit
            if lim is not None:
                rules.append(ThresholdRule(metric, "absolute", lim, False))
        return tuple(rules)

    def rules(self, level: Level = Level.PEAK) -> tuple[ThresholdRule, ...]:
        """The rules in force at ``level``."""
        return self._rules[level]

    def limit(self, name: str, level: Level = Level.PEAK) -> float | None:
        """The limit of a field (``"api_latency"``) or metric at ``level``; None if off."""
        metric = FIELDS[name][0] if name in FIELDS else name
        for rule in self._rules[level]:
            if rule.metric == metric:
                return rule.limit
        return None


# --------------------------------------------------------------------------- baseline


@attrs.frozen
class MetricStats:
    """Robust statistics of one metric in a quiet baseline.

    ``median`` is the centre; ``spread`` a robust standard deviation: the larger of
    the scaled median absolute deviation and the distance from the median to the
    84th percentile (latency noise is skewed upwards); ``count`` how many samples.
    """

    median: float
    spread: float
    count: int

    @classmethod
    def of(cls, values: list[float]) -> MetricStats:
        """Statistics of ``values`` (at least one finite value)."""
        xs = sorted(values)
        n = len(xs)
        med = _median_sorted(xs)
        mad = _median_sorted(sorted(abs(x - med) for x in xs)) * _MAD_TO_SIGMA
        upper = _quantile_sorted(xs, _Q_ONE_SIGMA) - med
        return cls(med, max(mad, upper, 0.0), n)


def _median_sorted(xs: list[float]) -> float:
    n = len(xs)
    mid = n // 2
    return xs[mid] if n % 2 else (xs[mid - 1] + xs[mid]) / 2


def _quantile_sorted(xs: list[float], q: float) -> float:
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _median(values: Any) -> float:
    return _median_sorted(sorted(values))


@attrs.frozen
class Baseline:
    """Per-metric statistics of production taken while no backup runs.

    It round-trips through plain JSON, so a backup that starts cold can use the last
    quiet baseline::

        >>> b = Baseline.from_samples([{"api.latency_s": 0.25}, {"api.latency_s": 0.75}])
        >>> Baseline.from_json(b.to_json()) == b
        True
        >>> b["api.latency_s"].median
        0.5
    """

    stats: Mapping[str, MetricStats] = attrs.field(factory=dict, converter=_stats_map)
    created: str | None = None

    @classmethod
    def from_samples(
        cls, samples: list[Mapping[str, float]], *, created: str | None = None
    ) -> Baseline:
        """Robust statistics of each metric over ``samples`` (non-finite values skipped)."""
        cols: dict[str, list[float]] = {}
        for s in samples:
            for k, v in s.items():
                if isinstance(v, (int, float)) and math.isfinite(v) and not k.endswith(".error"):
                    cols.setdefault(k, []).append(float(v))
        return cls({k: MetricStats.of(v) for k, v in cols.items()}, created)

    def __getitem__(self, metric: str) -> MetricStats:
        return self.stats[metric]

    def __contains__(self, metric: object) -> bool:
        return metric in self.stats

    def get(self, metric: str) -> MetricStats | None:
        return self.stats.get(metric)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "created": self.created,
            "metrics": {
                k: {"median": s.median, "spread": s.spread, "count": s.count}
                for k, s in sorted(self.stats.items())
            },
        }

    def to_json(self) -> str:
        """Plain JSON: ``{"version": 1, "created": ..., "metrics": {name: {...}}}``."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Baseline:
        """Read what :meth:`to_json` wrote; bad input raises ConfigError."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError("baseline", text[:80], f"JSON ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
            raise ConfigError("baseline", data, 'an object with a "metrics" object')
        stats: dict[str, MetricStats] = {}
        for name, s in data["metrics"].items():
            field = f"baseline.metrics[{name!r}]"
            if not isinstance(s, dict):
                raise ConfigError(field, s, "an object with median, spread, count")
            try:
                median, spread, count = float(s["median"]), float(s["spread"]), int(s["count"])
            except (KeyError, TypeError, ValueError):
                raise ConfigError(field, s, "an object with median, spread, count") from None
            if not (math.isfinite(median) and math.isfinite(spread) and spread >= 0 and count > 0):
                raise ConfigError(field, s, "finite median, spread >= 0, count > 0")
            stats[name] = MetricStats(median, spread, count)
        created = data.get("created")
        return cls(stats, created if isinstance(created, str) else None)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_json` to ``path`` (atomically: a temporary file renamed)."""
        _fs.replace_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Baseline:
        """Read a baseline written by :meth:`save`."""
        try:
            text = _fs.read_text(path)
        except OSError as exc:
            raise ConfigError(
                "baseline path", os.fspath(path), f"a readable file ({exc})"
            ) from None
        return cls.from_json(text)


# -------------------------------------------------------------------------- assessment


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


_RENAMED = {"Rule": "ThresholdRule"}


def __getattr__(name: str) -> Any:
    new = _RENAMED.get(name)
    if new is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"{__name__}.{name} is deprecated; use {__name__}.{new}",
        DeprecationWarning,
        stacklevel=2,
    )
    return globals()[new]
