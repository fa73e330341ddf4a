"""Production without a backup: :class:`Baseline` (robust statistics per metric), saved and loaded."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import attrs

from wedguard import _fs
from wedguard.errors import ConfigError

__all__ = ["Baseline", "MetricStats"]

_MEDIAN_SE: Final = math.sqrt(math.pi / 2)  # standard error of a median, in sigmas * sqrt(n)
_MAD_TO_SIGMA: Final = 1.4826
_Q_ONE_SIGMA: Final = 0.8413  # the quantile one sigma above the median of a normal


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


def _stats_map(value: Mapping[str, MetricStats]) -> Mapping[str, MetricStats]:
    return MappingProxyType(dict(value))


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
