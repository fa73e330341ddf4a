"""The baseline warm-up: learn what production looks like before judging it.

A latency limit ("+5 % over the baseline") can only be judged against a baseline.
:class:`Warmup` is the state machine that decides, sample by sample, whether a
sample teaches the analyser its baseline and whether the backup must wait for it.
It is pure: it calls the analyser's ``observe_baseline`` and ``baseline_needed`` and
keeps its state as plain data; the guard logs what it returns.

>>> class Analyzer:
...     def __init__(self): self.seen = 0
...     def observe_baseline(self, sample): self.seen += 1
...     def baseline_needed(self, sample): return ["api.latency_s"]
>>> w = Warmup(Analyzer(), samples=3)
>>> w.begin()
>>> sample = {"api.latency_s": 0.1}
>>> w.step(sample, active=True)
(True, '')
>>> w.line
'learning the baseline of api.latency_s: 1 of 3 samples of production at rest (the backup waits)'
>>> w.step(sample, active=True)
(True, '')
>>> w.step(sample, active=True)
(True, 'baseline learnt for api.latency_s from 3 samples')
>>> w.step(sample, active=True)
(False, '')
>>> w.line
''
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["Warmup"]


class Warmup:
    """The warm-up of ``analyzer``'s baseline over ``samples`` samples (0: none).

    Attributes:
        line: why the backup waits for the baseline ("" when it does not).
        left: samples still to learn (-1: the next sample decides).
        metrics: the metrics being learnt.
        armed: whether a session's start may begin a warm-up.
    """

    def __init__(self, analyzer: Any, samples: int) -> None:
        self.analyzer = analyzer
        self.samples = samples
        self.line = ""
        self.left = 0
        self.metrics = ""
        self.armed = bool(samples) and callable(getattr(analyzer, "baseline_needed", None))

    def begin(self) -> None:
        """The first session starts: it waits for the first sample, which decides."""
        if self.armed and self.analyzer is not None:
            self.line = "learning the baseline: waiting for the first sample"
            self.left = -1

    def cancel(self) -> bool:
        """The last session ended: stop waiting. True when a warm-up was under way."""
        was, self.line = bool(self.line), ""
        return was

    def step(self, sample: Mapping[str, float], *, active: bool) -> tuple[bool, str]:
        """Take in ``sample``: (learnt from it instead of judging it, a line to log).

        With no session running every sample is production at rest and adds to the
        baseline (and is judged too). A session's first sample decides whether there
        is a latency without a baseline; if so the backup waits while the guard
        learns one, before the session's first byte.
        """
        observe = getattr(self.analyzer, "observe_baseline", None)
        if observe is None or not self.samples:
            return False, ""
        if not active:
            observe(sample)
            return False, ""
        if not self.line:
            return False, ""
        if self.left < 0:
            need = self.analyzer.baseline_needed(sample)
            if not need:
                self.line = ""
                # nothing to learn; look again next time only if a probe failed
                self.armed = any(k.endswith(".error") for k in sample)
                return False, ""
            self.left = self.samples
            self.metrics = ", ".join(need)
        observe(sample)
        self.left -= 1
        done = self.samples - self.left
        if self.left <= 0:
            self.line = ""
            self.armed = False
            return True, f"baseline learnt for {self.metrics} from {done} samples"
        self.line = (
            f"learning the baseline of {self.metrics}: {done} of "
            f"{self.samples} samples of production at rest (the backup waits)"
        )
        return True, ""
