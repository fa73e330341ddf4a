"""Causal probing and the two loops: measure the backup's harm, not the machine's drift.

A baseline learnt before the backup started goes stale: on a shared machine production's
latency drifts by more than the +5 % a guard is meant to hold. LEDBAT++ answers the same
problem for delay-based congestion control by slowing down briefly and periodically to
re-measure its base delay. A guard can do the same, and so measure its own harm
*causally*: production's latency while the backup briefly pauses, against its latency
while the backup runs, both taken within the same minute, so drift cancels out.

* :class:`PauseSchedule`: short scheduled pauses (1 s every 30 s by default), never
  more than ``max_share`` of the time (10 % at most).
* :class:`CausalJudge`: production's samples taken while running against those taken
  while paused (rolling), judged with a one-sided Mann-Whitney U test *and* a minimum
  effect on the medians, so noise alone does not throttle and a harm smaller than the
  limit is not acted on.
* :class:`Shaper`: the two loops. The *inner loop* runs on every sample (100–250 ms)
  on the fast signals (PSI, run-queue wait; see
  :data:`~wedguard.policy.impact.FAST_SIGNALS`): above a cap it halves the backup's
  share at once, below it recovers slowly. The *outer loop* runs every
  ``outer_interval`` on production's own latency through the :class:`CausalJudge`:
  additive increase while the pauses show no harm, multiplicative decrease when they
  do. It also suggests the chunk size (:class:`~wedguard.policy.shaping.ChunkPolicy`).

Everything here is pure: time is the ``now`` argument (a monotonic clock's seconds);
nothing sleeps, starts threads or reads files.

>>> s = PauseSchedule(every=30, pause=1)
>>> s.state(start=0.0, now=29.0), s.state(start=0.0, now=30.5)
((False, 30.0), (True, 31.0))
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from statistics import NormalDist, median
from typing import Final

import attrs

from wedguard.errors import ConfigError
from wedguard.levels import Verdict
from wedguard.policy.impact import FAST_SIGNALS
from wedguard.policy.shaping import ChunkPolicy

__all__ = ["CausalAssessment", "CausalJudge", "PauseSchedule", "Shaper", "mann_whitney_greater"]

_NORMAL: Final = NormalDist()


def _positive(field: str, value: object, hi: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= hi:
        raise ConfigError(field, value, f"a number > 0 and <= {hi:g}")
    return float(value)


def _count(field: str, value: object, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(field, value, f"a whole number >= {lo}")
    return value


def mann_whitney_greater(x: Sequence[float], y: Sequence[float]) -> float:
    """One-sided p-value that values of ``x`` tend to be greater than those of ``y``
    (Mann-Whitney U, normal approximation with tie and continuity corrections).

    1.0 when either sample is empty or every value is tied.

    >>> round(mann_whitney_greater([5, 6, 7, 8, 9, 10], [1, 2, 3, 4, 5, 6]), 4)
    0.0064
    >>> mann_whitney_greater([1, 2, 3], [7, 8, 9]) > 0.9
    True
    """
    n1, n2 = len(x), len(y)
    if not n1 or not n2:
        return 1.0
    pooled = sorted([(v, 0) for v in x] + [(v, 1) for v in y])
    n = n1 + n2
    rank_x = 0.0
    ties = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        avg = (i + j) / 2 + 1
        t = j - i + 1
        ties += t**3 - t
        rank_x += avg * sum(1 for k in range(i, j + 1) if pooled[k][1] == 0)
        i = j + 1
    u = rank_x - n1 * (n1 + 1) / 2
    mean = n1 * n2 / 2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return 1.0
    z = (u - mean - 0.5) / math.sqrt(var)
    return 1 - _NORMAL.cdf(z)


@attrs.frozen
class PauseSchedule:
    """Short scheduled pauses of the backup: ``pause`` seconds every ``every`` seconds.

    The first pause begins ``every`` seconds after the start. ``pause / every`` may not
    exceed ``max_share`` (at most 0.10: a tenth of the backup's time).

    Raises:
        ConfigError: a non-positive figure, ``pause >= every``, or a share of the
            time over ``max_share``.
    """

    every: float = attrs.field(default=30.0)
    pause: float = attrs.field(default=1.0)
    max_share: float = attrs.field(default=0.10)

    def __attrs_post_init__(self) -> None:
        _positive("every", self.every)
        _positive("pause", self.pause)
        _positive("max_share", self.max_share, 0.10)
        if self.pause > self.every * self.max_share * (1 + 1e-9):  # not by a rounding
            raise ConfigError(
                "pause",
                self.pause,
                f"at most {self.max_share:g} of every ({self.every:g} s): "
                f"<= {self.every * self.max_share:g} s",
            )

    def state(self, *, start: float, now: float) -> tuple[bool, float]:
        """``(paused, next change)``: whether ``now`` falls in a pause of a schedule that
        began at ``start``, and when that changes (the pause's end, or the next start)."""
        k = math.floor((now - start) / self.every)
        if start + (k + 1) * self.every <= now:  # the division rounded down across a start
            k += 1
        elif start + k * self.every > now:  # or up
            k -= 1
        if k >= 1:
            begin = start + k * self.every
            if now < begin + self.pause:
                return True, begin + self.pause
        return False, start + max(1, k + 1) * self.every


@attrs.frozen
class CausalAssessment:
    """What the pauses showed about the backup's harm.

    Attributes:
        verdict: ``THROTTLE`` when production is slower while the backup runs, beyond
            noise (``p_value < alpha``) and by more than ``limit``; else ``OK``.
        effect: median while running / median while paused - 1 (0.08 = +8 %);
            NaN before there are enough samples of both.
        p_value: the one-sided Mann-Whitney p-value (1.0 before enough samples).
        running: samples taken while the backup ran, in the window.
        paused: samples taken while it paused, in the window.
        reasons: one line saying what was found, or why nothing could be judged yet.
    """

    verdict: Verdict
    effect: float
    p_value: float
    running: int
    paused: int
    reasons: tuple[str, ...] = ()


class CausalJudge:
    """Production's samples while the backup runs, against those while it pauses.

    Args:
        metric: the production latency judged (for the reasons' wording).
        limit: the allowed relative increase of the median (0.05 = +5 %).
        alpha: the false-positive rate of one assessment (one-sided).
        min_samples: samples of each kind needed before judging.
        keep: the most recent samples of each kind kept (the rolling window).

    >>> j = CausalJudge("api.latency_s", min_samples=4)
    >>> for v in (1.0, 1.01, 0.99, 1.0, 1.02):
    ...     j.add(v, paused=True)
    >>> for v in (1.3, 1.32, 1.28, 1.31, 1.29):
    ...     j.add(v, paused=False)
    >>> a = j.assess()
    >>> a.verdict.name, round(a.effect, 2)
    ('THROTTLE', 0.3)
    """

    __slots__ = ("_paused", "_running", "alpha", "limit", "metric", "min_samples")

    def __init__(
        self,
        metric: str,
        *,
        limit: float = 0.05,
        alpha: float = 0.01,
        min_samples: int = 8,
        keep: int = 120,
    ) -> None:
        if not isinstance(metric, str) or not metric:
            raise ConfigError("metric", metric, "a metric name")
        self.metric = metric
        self.limit = _positive("limit", limit, 10.0)
        self.alpha = _positive("alpha", alpha, 0.5)
        self.min_samples = _count("min_samples", min_samples, 3)
        _count("keep", keep, self.min_samples)
        self._running: deque[float] = deque(maxlen=keep)
        self._paused: deque[float] = deque(maxlen=keep)

    def add(self, value: float, *, paused: bool) -> None:
        """One sample of the metric, taken while the backup paused or ran."""
        if isinstance(value, (int, float)) and math.isfinite(value):
            (self._paused if paused else self._running).append(float(value))

    def assess(self) -> CausalAssessment:
        """Judge the samples in the window."""
        r, p = list(self._running), list(self._paused)
        if len(r) < self.min_samples or len(p) < self.min_samples:
            why = (
                f"{self.metric}: {len(p)} paused and {len(r)} running samples, "
                f"{self.min_samples} of each needed; not judged yet"
            )
            return CausalAssessment(Verdict.OK, math.nan, 1.0, len(r), len(p), (why,))
        base = median(p)
        effect = median(r) / base - 1 if base > 0 else (math.inf if median(r) > 0 else 0.0)
        pv = mann_whitney_greater(r, p)
        harm = pv < self.alpha and effect > self.limit
        word = "over" if harm else "within"
        why = (
            f"{self.metric} while the backup runs is {effect * 100:+.1f} % against its "
            f"pauses (p = {pv:.3g}, {len(r)} running / {len(p)} paused samples): "
            f"{word} the limit +{self.limit * 100:g} %"
        )
        return CausalAssessment(
            Verdict.THROTTLE if harm else Verdict.OK, effect, pv, len(r), len(p), (why,)
        )


def _fast_load(sample: Mapping[str, float], caps: Mapping[str, float]) -> float:
    """The worst fast signal's value / cap in ``sample`` (0.0 when none is there)."""
    worst = 0.0
    for metric, cap in caps.items():
        v = sample.get(metric)
        if isinstance(v, (int, float)) and math.isfinite(v):
            worst = max(worst, v / cap)
    return worst


class Shaper:
    """The two loops, causal probing and the chunk size, on an injected clock.

    Feed it every sample with :meth:`observe`; ask it whether the backup pauses now
    (:meth:`paused`), what share of the allowed rate it may use (:attr:`factor`) and
    which chunk size to use (:meth:`chunk_size`).

    Args:
        metric: the production latency the outer loop judges (``"api.latency_s"``).
            None: the first of ``candidates`` a sample reports.
        pauses: the :class:`PauseSchedule` (None: no pauses; the outer loop then has
            nothing to judge and only the fast signals act).
        fast: the fast signals' caps, ``{metric: cap}`` (default
            :data:`~wedguard.policy.impact.FAST_SIGNALS`).
        limit: the :class:`CausalJudge`'s allowed relative increase (+5 %).
        alpha: the :class:`CausalJudge`'s false-positive rate per assessment.
        min_samples: the :class:`CausalJudge`'s samples of each kind needed.
        interval: seconds between samples the guard should take (the inner loop's
            period, 0.05–1 s; default 0.2).
        outer_interval: seconds between causal assessments (default 5).
        settle: seconds after a pause begins or ends whose samples are not used
            (production drains what the backup queued; default 0.25).
        min_factor: the smallest share of the rate the loops leave (default 0.05).
        chunks: the :class:`ChunkPolicy`.
        candidates: production latency metrics looked for when ``metric`` is None.

    .. versionadded:: 0.3.0
    """

    def __init__(
        self,
        metric: str | None = None,
        *,
        pauses: PauseSchedule | None = PauseSchedule(),
        fast: Mapping[str, float] | None = None,
        limit: float = 0.05,
        alpha: float = 0.01,
        min_samples: int = 8,
        interval: float = 0.2,
        outer_interval: float = 5.0,
        settle: float = 0.25,
        min_factor: float = 0.05,
        chunks: ChunkPolicy | None = None,
        candidates: Sequence[str] = ("api.latency_s", "db.latency_s"),
    ) -> None:
        if metric is not None and (not isinstance(metric, str) or not metric):
            raise ConfigError("metric", metric, "a metric name, or None")
        if pauses is not None and not isinstance(pauses, PauseSchedule):
            raise ConfigError("pauses", pauses, "a PauseSchedule, or None")
        caps = dict(FAST_SIGNALS if fast is None else fast)
        for k, v in caps.items():
            _positive(f"fast[{k!r}]", v)
        self.metric = metric
        self.pauses = pauses
        self.fast = caps
        self.interval = _positive("interval", interval, 1.0)
        if self.interval < 0.05:
            raise ConfigError("interval", interval, "seconds, 0.05 to 1")
        self.outer_interval = _positive("outer_interval", outer_interval)
        self.settle = _positive("settle", settle, 5.0)
        if pauses is not None and self.settle >= pauses.pause:
            raise ConfigError("settle", settle, f"less than the pause ({pauses.pause:g} s)")
        self.min_factor = _positive("min_factor", min_factor, 1.0)
        self.chunks = ChunkPolicy() if chunks is None else chunks
        if not isinstance(self.chunks, ChunkPolicy):
            raise ConfigError("chunks", chunks, "a ChunkPolicy, or None")
        self.candidates = tuple(candidates)
        self._judge_args = (limit, alpha, min_samples)
        CausalJudge("check", limit=limit, alpha=alpha, min_samples=min_samples)
        self._judge: CausalJudge | None = None
        self._start: float | None = None
        self._inner = 1.0
        self._outer = 1.0
        self._next_outer = math.inf
        self._load = 0.0
        self._moved: tuple[float, float] | None = None  # (time, bytes) at the last sample
        self._peak = 0.0  # the highest throughput seen while running, bytes/s
        self.last: CausalAssessment | None = None

    # -- the schedule ---------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Begin (or begin again) at ``now``: the first pause is one period later."""
        self._start = now
        self._next_outer = now + self.outer_interval

    def _state(self, now: float) -> tuple[bool, float]:
        if self.pauses is None or self._start is None or self._judge is None:
            return False, math.inf  # nothing to measure: no pause
        return self.pauses.state(start=self._start, now=now)

    def paused(self, now: float) -> bool:
        """True while a scheduled pause is under way."""
        return self._state(now)[0]

    def next_change(self, now: float) -> float:
        """When :meth:`paused` changes next (``inf``: never, as things stand)."""
        return self._state(now)[1]

    def _period(self, now: float) -> int:
        assert self.pauses is not None
        assert self._start is not None
        every, start = self.pauses.every, self._start
        k = math.floor((now - start) / every)
        if start + (k + 1) * every <= now:
            k += 1
        elif start + k * every > now:
            k -= 1
        return k

    def _settled(self, now: float) -> bool | None:
        """True: a paused sample; False: a running one; None: too close to a change."""
        if self.pauses is None or self._start is None:
            return False
        paused, change = self._state(now)
        if paused:
            began = change - self.pauses.pause
            return True if now - began >= self.settle else None
        k = self._period(now)  # the last pause's period
        ended = self._start + k * self.pauses.every + self.pauses.pause
        return None if k >= 1 and now - ended < self.settle else False

    # -- the loops ------------------------------------------------------------------------

    @property
    def factor(self) -> float:
        """The share of the allowed rate the backup may use now (min_factor..1)."""
        return max(self.min_factor, self._inner * self._outer)

    @property
    def load(self) -> float:
        """The worst fast signal's value / cap at the last sample."""
        return self._load

    def allowed(self, ceiling: float) -> float:
        """The rate the loops allow under ``ceiling`` (bytes/s; ``inf`` when nothing
        caps it: then a share of the highest throughput seen while running)."""
        f = self.factor
        if f >= 1.0:
            return ceiling
        if math.isfinite(ceiling):
            return ceiling * f
        return self._peak * f if self._peak > 0 else ceiling

    def observe(self, sample: Mapping[str, float], now: float, moved: float | None = None) -> None:
        """One sample: label it, run the inner loop, and the outer loop when due.

        ``moved``: the bytes the backup has moved in all, for its throughput.
        """
        if self._start is None:
            self.start(now)
        if moved is not None:
            prev, self._moved = self._moved, (now, moved)
            if prev is not None and now > prev[0] and not self.paused(now) and self.factor >= 1:
                self._peak = max(self._peak, (moved - prev[1]) / (now - prev[0]))
        if self._judge is None:
            metric = self.metric or next((m for m in self.candidates if m in sample), None)
            if metric is not None and metric in sample:
                limit, alpha, n = self._judge_args
                self._judge = CausalJudge(metric, limit=limit, alpha=alpha, min_samples=n)
        label = self._settled(now)
        judge = self._judge
        if judge is not None and label is not None:
            value = sample.get(judge.metric)
            if value is not None:
                judge.add(value, paused=label)
        # inner loop: the fast signals, every sample; a paused sample says nothing of
        # the backup's pressure (it is not running), so it does not move the share
        if label is not True:
            self._load = _fast_load(sample, self.fast)
            if self._load > 1.0:
                self._inner = max(self.min_factor, self._inner * 0.5)
            elif self._load < 0.8:
                self._inner = min(1.0, self._inner * 1.05 + 0.01)
        # outer loop: production's latency, running against paused
        if judge is not None and now >= self._next_outer:
            self._next_outer = now + self.outer_interval
            self.last = a = judge.assess()
            if a.verdict is Verdict.THROTTLE:
                self._outer = max(self.min_factor, self._outer * 0.7)
            elif not math.isnan(a.effect):
                self._outer = min(1.0, self._outer + 0.1)

    def chunk_size(self, rate: float = math.inf) -> int:
        """The chunk to use now, at an allowed ``rate`` (bytes per second)."""
        load = self._load
        last = self.last
        if last is not None and math.isfinite(last.effect):
            load = max(load, last.effect / self._judge_args[0])
        if self._inner < 1.0 or self._outer < 1.0:
            load = max(load, self.chunks.sensitive_load)
        return self.chunks.size(load=load, rate=rate)

    def reasons(self, now: float) -> tuple[str, ...]:
        """What the loops are doing, one line each (empty when nothing is held back)."""
        out: list[str] = []
        if self.paused(now):
            assert self.pauses is not None
            out.append(
                f"probing: a {self.pauses.pause:g} s pause every {self.pauses.every:g} s "
                "measures production without the backup"
            )
        if self._inner < 1.0:
            out.append(
                f"fast signals: share {self._inner * 100:.0f} % (worst at {self._load * 100:.0f} % of its cap)"
            )
        last = self.last
        if last is not None and (self._outer < 1.0 or last.verdict is Verdict.THROTTLE):
            out.append(f"causal: share {self._outer * 100:.0f} %; " + "; ".join(last.reasons))
        return tuple(out)

    def __repr__(self) -> str:
        return (
            f"Shaper(metric={self.metric!r}, pauses={self.pauses!r}, "
            f"factor={self.factor:.2f}, load={self._load:.2f})"
        )
