"""What production may bear: :class:`Thresholds`, per metric and per calendar level."""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, Literal

import attrs

from wedguard.errors import ConfigError
from wedguard.levels import Level
from wedguard.units import parse_rate, parse_size

__all__ = ["FAST_SIGNALS", "FIELDS", "MissingPolicy", "ThresholdRule", "Thresholds"]


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
