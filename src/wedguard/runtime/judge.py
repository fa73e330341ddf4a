"""Judging production: sources → analyser → rate controller.

:class:`Judge` reads the sources (a source that fails becomes an error metric, never
an exception), feeds the sample to the impact analyser (or to the baseline warm-up)
and the verdict to the rate controller, and keeps what the decision engine needs:
the verdict, its reasons, the limits it could not judge and the controller's rate.
A failing analyser or controller is logged and contained.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, Final

from wedguard.interfaces import Analyzer, Controller, Source
from wedguard.levels import Level, Verdict
from wedguard.policy.shaping import signals_used
from wedguard.policy.warmup import Warmup
from wedguard.runtime.watch import ProbeWatch

__all__ = ["Judge"]

log = logging.getLogger("wedguard.guard")

_INF: Final = math.inf


class Judge:
    """The impact side of a guard (state under the guard's lock).

    Attributes:
        verdict, reasons, unjudged: the analyser's last verdict, its reasons and the
            limits it could not judge.
        allowed: the controller's last rate; ``allowed_free``: True when that rate
            does not hold the backup below the ceiling.
        warmup: the baseline warm-up.
    """

    def __init__(
        self,
        sources: tuple[Source, ...],
        analyzer: Analyzer | None,
        controller: Controller | None,
        warmup_samples: int,
    ) -> None:
        self.sources = sources
        self.analyzer = analyzer
        self.controller = controller
        self.probes = ProbeWatch()
        self.warmup = Warmup(analyzer, warmup_samples)
        self.assessment: Any = None
        self.verdict = Verdict.OK
        self.reasons: tuple[str, ...] = ()
        self.unjudged: tuple[str, ...] = ()
        self.allowed = _INF
        self.allowed_free = True
        self._moved = 0.0  # bytes the sessions had moved at the last sample
        self.shaper: Any = None  # the two loops and the causal pauses (Guard(shaping=))
        self.signals: tuple[str, ...] = ()  # the metrics that judge the backup now
        self._moved_at: float | None = None

    @property
    def judges(self) -> bool:
        """Whether there is anything to judge (sources and an analyser)."""
        return bool(self.sources) and self.analyzer is not None

    def collect(self) -> dict[str, float]:
        """Read every source (no lock held in background mode); a failure is a metric."""
        sample: dict[str, float] = {}
        for src in self.sources:
            try:
                sample.update(src.sample())
            except Exception:
                log.exception("source %r failed", src)
                sample[f"{type(src).__name__}.error"] = 1.0
        return sample

    def assess(
        self,
        sample: Mapping[str, float],
        now: float,
        *,
        level: Level,
        ceiling: float,
        moved: float,
        active: bool,
    ) -> None:
        """Judge ``sample`` (lock held); ``moved``: bytes the sessions moved so far."""
        for level_no, line in self.probes.update(sample, now):
            log.log(level_no, "%s", line)
        if self.shaper is not None:  # shaping: the fast loop and the pauses' samples
            self.shaper.observe(sample, now, moved=moved)
        if self.analyzer is None:
            return
        rules = getattr(getattr(self.analyzer, "thresholds", None), "rules", None)
        if rules is not None:  # which signals judge the backup (decision().signals)
            self.signals = signals_used(rules(level), sample)
        learnt, line = self.warmup.step(sample, active=active)
        if line:
            log.info("%s", line)
        if learnt:
            return
        try:
            assessment = self.analyzer.assess(sample, level=level)
        except Exception:
            log.exception("analyzer %r failed; keeping the last assessment", self.analyzer)
            return
        self.assessment = assessment
        self.verdict = Verdict(assessment.verdict)
        self.reasons = tuple(str(r) for r in getattr(assessment, "reasons", ()))
        unjudged = tuple(str(r) for r in getattr(assessment, "unjudged", ()))
        for text in set(unjudged) - set(self.unjudged):
            log.warning(
                "%s (learn one: Guard(baseline_warmup=...) or guard.observe_baseline())", text
            )
        self.unjudged = unjudged
        self._observe_moved(now, moved)
        self.allowed = self._control(assessment, ceiling, now)
        self.allowed_free = self.allowed >= ceiling

    def _observe_moved(self, now: float, moved: float) -> None:
        observe = getattr(self.controller, "observe", None)
        if observe is None:
            return
        if self._moved_at is not None and now > self._moved_at and moved > self._moved:
            observe((moved - self._moved) / (now - self._moved_at))
        self._moved_at, self._moved = now, moved

    def _control(self, assessment: Any, ceiling: float, now: float) -> float:
        if self.controller is None:
            return 0.0 if self.verdict is Verdict.HALT else _INF
        try:
            return float(self.controller.update(assessment, ceiling=ceiling, now=now))
        except Exception:
            log.exception("controller %r failed", self.controller)
            return 0.0 if self.verdict is Verdict.HALT else ceiling

    def start_from(self, ceiling: float, now: float) -> None:
        """An operator's new rate: the controller starts from ``ceiling``."""
        start = getattr(self.controller, "start_from", None)
        if callable(start):
            start(ceiling, now)
        elif self.controller is not None:
            self.controller.reset()
        self.allowed, self.allowed_free = ceiling, True
