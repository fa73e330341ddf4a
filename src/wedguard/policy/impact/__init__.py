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

from wedguard.errors import renamed
from wedguard.policy.impact.analyzer import Assessment, ImpactAnalyzer
from wedguard.policy.impact.baseline import Baseline, MetricStats
from wedguard.policy.impact.thresholds import (
    FAST_SIGNALS,
    FIELDS,
    MissingPolicy,
    ThresholdRule,
    Thresholds,
)

__all__ = [
    "FAST_SIGNALS",
    "FIELDS",
    "Assessment",
    "Baseline",
    "ImpactAnalyzer",
    "MetricStats",
    "MissingPolicy",
    "ThresholdRule",
    "Thresholds",
]

_RENAMED = {"Rule": "ThresholdRule"}


__getattr__ = renamed(__name__, _RENAMED, globals())
