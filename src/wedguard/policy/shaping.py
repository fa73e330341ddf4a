"""Shaping: how big each piece of backup work is, and which signals judge it.

A rate says how many bytes per second the backup may move; it does not say how they
arrive. A backup paced at 1 MB/s that reads 1 MiB, then sleeps a second, puts a whole
1 MiB request at the head of the disk's queue and a burst of work on a CPU once a
second: production's requests that arrive during the burst wait for all of it. The
added wait is roughly the device's utilisation times one chunk's service time, so the
same rate in smaller chunks, paced with many small waits, hurts less.

:class:`ChunkPolicy` turns what the guard knows (how close production is to its limits,
the allowed rate) into a suggested chunk size:

* large (``quiet``, 1 MiB) while production shows no pressure;
* small (``sensitive``, 128 KiB) once the worst judged signal reaches half its limit,
  and in between on a geometric scale;
* never more than ``span`` seconds of the allowed rate (the token bucket's own burst),
  so a low rate is taken as many small pieces, not one long sleep then a burst;
* never below ``floor``.

:func:`signals_used` names the signals a set of rules judges in a sample, production's
own latency first (it leads), then the fast signals, then the backup's own figures.

Both are pure.

>>> ChunkPolicy().size(load=0.0)
1048576
>>> ChunkPolicy().size(load=1.2)
131072
>>> ChunkPolicy().size(load=0.0, rate=100_000)     # 0.2 s of 100 kB/s
20000
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Final, Protocol

import attrs

from wedguard.errors import ConfigError

__all__ = ["FAST_PREFIXES", "ChunkPolicy", "signals_used"]

FAST_PREFIXES: Final = ("pressure.", "prod.runq")
"""Metric name prefixes of the fast signals (PSI, run-queue wait)."""


def _size(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(field, value, "a chunk size in bytes > 0")
    return value


def _span(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 10:
        raise ConfigError("span", value, "seconds of the rate per chunk, 0 < span <= 10")
    return float(value)


@attrs.frozen
class ChunkPolicy:
    """Suggests a chunk size from production's pressure and the allowed rate.

    Attributes:
        quiet: bytes per chunk while nothing judged is near its limit (1 MiB).
        sensitive: bytes per chunk once the worst signal is at ``sensitive_load`` of
            its limit or more (128 KiB; 64–128 KiB keeps a disk request short).
        floor: the smallest chunk (4 KiB).
        span: at most this many seconds of the allowed rate per chunk (0.2 s, the
            token bucket's default burst).
        sensitive_load: the load (measured impact / allowed impact) from which the
            chunk is ``sensitive`` (0.5).

    Raises:
        ConfigError: sizes that are not whole numbers > 0, or not ``floor <=
            sensitive <= quiet``.
    """

    quiet: int = attrs.field(default=1 << 20)
    sensitive: int = attrs.field(default=128 << 10)
    floor: int = attrs.field(default=4 << 10)
    span: float = attrs.field(default=0.2, converter=_span)
    sensitive_load: float = attrs.field(default=0.5)

    def __attrs_post_init__(self) -> None:
        for name in ("quiet", "sensitive", "floor"):
            _size(name, getattr(self, name))
        if not self.floor <= self.sensitive <= self.quiet:
            raise ConfigError(
                "sensitive", self.sensitive, f"floor ({self.floor}) <= sensitive <= quiet"
            )
        s = self.sensitive_load
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 < s <= 10:
            raise ConfigError("sensitive_load", s, "a load > 0 (1.0 = at the limit)")

    def size(self, *, load: float, rate: float = math.inf) -> int:
        """The chunk to use at ``load`` (0 = no impact, 1 = at the limit) and ``rate``
        (bytes per second allowed now; ``inf`` when unlimited, 0 while paused)."""
        if not load > 0:  # also NaN: nothing known, nothing near a limit
            size = float(self.quiet)
        elif load >= self.sensitive_load:
            size = float(self.sensitive)
        else:  # geometric from quiet at 0 to sensitive at sensitive_load
            f = load / self.sensitive_load
            size = self.quiet * (self.sensitive / self.quiet) ** f
        if 0 < rate < math.inf:
            size = min(size, rate * self.span)
        return int(max(self.floor, size))


class _RuleLike(Protocol):
    @property
    def metric(self) -> str: ...

    @property
    def kind(self) -> str: ...


def _present(sample: Mapping[str, float], metric: str) -> bool:
    return metric in sample or f"{metric}.error" in sample


def signals_used(rules: Iterable[_RuleLike], sample: Mapping[str, float]) -> tuple[str, ...]:
    """The metrics ``rules`` judge in ``sample`` (reported, or failing): production's
    latency first, then the fast signals, then the rest, each group in rule order.

    >>> from wedguard.policy.impact import Thresholds
    >>> rules = Thresholds.with_fast_signals().rules()
    >>> signals_used(rules, {"pressure.cpu.some_percent": 3.0, "api.latency_s": 0.2})
    ('api.latency_s', 'pressure.cpu.some_percent')
    """
    lead: list[str] = []
    fast: list[str] = []
    rest: list[str] = []
    for rule in rules:
        m = rule.metric
        if not _present(sample, m):
            continue
        if rule.kind == "relative":
            lead.append(m)
        elif m.startswith(FAST_PREFIXES):
            fast.append(m)
        else:
            rest.append(m)
    return (*lead, *fast, *rest)
