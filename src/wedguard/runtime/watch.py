"""What the guard tells the console on its own, whatever sinks are configured.

:class:`ProbeWatch` follows the sources' ``"<metric>.error"`` keys from sample to
sample and says, as log lines, when a probe starts failing, while it keeps failing
and when it answers again. It is pure: it is told each sample and the time and
returns ``(level, message)`` pairs; the guard logs them on the ``wedguard.runtime.guard``
logger, so a failing probe shows on the console even when the events go elsewhere.

>>> w = ProbeWatch(repeat=60.0)
>>> w.update({"api.latency_s.error": 1.0}, now=0.0)
[(30, 'probe api.latency_s is failing: its source reported an error (the guard cannot judge it; the backup is throttled, then halted)')]
>>> w.update({"api.latency_s.error": 1.0}, now=30.0)
[]
>>> w.update({"api.latency_s": 0.2}, now=45.0)
[(20, 'probe api.latency_s answers again after 45s')]

A signal its source cannot read here at all (``"<metric>.unavailable"``: no PSI on this
kernel) is said once, and not again:

>>> w.update({"pressure.io.some_percent.unavailable": 1.0}, now=50.0)
[(30, 'signal pressure.io.some_percent cannot be read on this system; the guard does not judge it')]
>>> w.update({"pressure.io.some_percent.unavailable": 1.0}, now=120.0)
[]
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from wedguard.units import format_duration

__all__ = ["ProbeWatch"]


def failing_metrics(sample: Mapping[str, float]) -> list[str]:
    """The metrics whose ``.error`` key is set in ``sample``."""
    out = []
    for key, value in sample.items():
        if (
            key.endswith(".error")
            and value
            and not (isinstance(value, float) and math.isnan(value))
        ):
            out.append(key[: -len(".error")])
    return out


class ProbeWatch:
    """Turns the failing probes of successive samples into log lines.

    Args:
        repeat: seconds between reminders while a probe keeps failing.
    """

    __slots__ = ("_failing", "_reminded", "_unavailable", "repeat")

    def __init__(self, repeat: float = 60.0) -> None:
        self.repeat = repeat
        self._failing: dict[str, float] = {}  # metric -> monotonic time it began failing
        self._reminded: dict[str, float] = {}
        self._unavailable: set[str] = set()  # signals already said to be unreadable

    @property
    def failing(self) -> dict[str, float]:
        """The probes failing now, with the time each began failing."""
        return dict(self._failing)

    def update(self, sample: Mapping[str, float], now: float) -> list[tuple[int, str]]:
        lines: list[tuple[int, str]] = []
        for key in sample:
            if key.endswith(".unavailable") and key not in self._unavailable:
                self._unavailable.add(key)
                lines.append(
                    (
                        logging.WARNING,
                        f"signal {key[: -len('.unavailable')]} cannot be read on this "
                        "system; the guard does not judge it",
                    )
                )
        failing = set(failing_metrics(sample))
        for m in sorted(failing):
            since = self._failing.get(m)
            if since is None:
                self._failing[m] = self._reminded[m] = now
                lines.append(
                    (
                        logging.WARNING,
                        f"probe {m} is failing: its source reported an error (the guard "
                        "cannot judge it; the backup is throttled, then halted)",
                    )
                )
            elif now - self._reminded[m] >= self.repeat:
                self._reminded[m] = now
                lines.append(
                    (
                        logging.WARNING,
                        f"probe {m} still failing after {format_duration(now - since)}",
                    )
                )
        for m in sorted(set(self._failing) - failing):
            since = self._failing.pop(m)
            self._reminded.pop(m, None)
            lines.append(
                (logging.INFO, f"probe {m} answers again after {format_duration(now - since)}")
            )
        return lines
