"""Small test doubles for the guard tests: a list calendar, a scripted analyser, a breaker."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

import attrs

from wedguard.errors import CircuitOpenError
from wedguard.levels import Level, Verdict

T0 = datetime(2026, 1, 5, 0, 0, tzinfo=timezone.utc)  # FakeClock's default start (Monday)
FAR = T0 + timedelta(days=3650)


def at(hours: float = 0.0, minutes: float = 0.0, seconds: float = 0.0) -> datetime:
    return T0 + timedelta(hours=hours, minutes=minutes, seconds=seconds)


@attrs.frozen
class Win:
    level: Level
    rate: float | None
    start: datetime
    end: datetime
    reason: str = ""
    cpu_share: float | None = None


class ListCalendar:
    """Spans of (start, end, level, cap); OPEN without a cap between them."""

    def __init__(self, *spans: tuple[datetime, datetime, Level, float | None]) -> None:
        self.spans = sorted(spans, key=lambda s: s[0])
        self.calls = 0

    def at(self, when: datetime) -> Win:
        self.calls += 1
        prev_end = T0 - timedelta(days=3650)
        for start, end, level, cap in self.spans:
            if start <= when < end:
                return Win(level, cap, start, end, f"{level.name.lower()} rule")
            if when < start:
                return Win(Level.OPEN, None, prev_end, start, "no rule")
            prev_end = end
        return Win(Level.OPEN, None, prev_end, FAR, "no rule")

    def next_change(self, when: datetime) -> datetime | None:
        return self.at(when).end


@attrs.frozen
class Assessment:
    verdict: Verdict
    reasons: tuple[str, ...] = ()


class KeyAnalyzer:
    """HALT when the sample's "halt" metric is 1, THROTTLE when "throttle" is 1."""

    def __init__(self) -> None:
        self.levels: list[Level] = []

    def assess(self, sample: Mapping[str, float], level: Level = Level.OPEN) -> Assessment:
        self.levels.append(level)
        if sample.get("halt"):
            return Assessment(Verdict.HALT, ("api.latency_s +40 % over baseline",))
        if sample.get("throttle"):
            return Assessment(Verdict.THROTTLE, ("db.latency_s +25 % over baseline",))
        return Assessment(Verdict.OK, ())


class HalvingController:
    """OK: the ceiling; THROTTLE: half of it; HALT: 0."""

    def __init__(self) -> None:
        self.calls = 0

    def update(self, assessment: Assessment, *, ceiling: float, now: float) -> float:
        self.calls += 1
        if assessment.verdict is Verdict.HALT:
            return 0.0
        if assessment.verdict is Verdict.THROTTLE:
            return ceiling / 2
        return ceiling

    def reset(self) -> None:
        self.calls = 0


@attrs.frozen
class BreakerEvent:
    breaker: str
    old: str
    new: str
    reason: str
    at: datetime

    @property
    def kind(self) -> str:
        return "breaker"

    def to_dict(self) -> dict[str, object]:
        return {"kind": "breaker", "breaker": self.breaker, "old": self.old, "new": self.new}


class SimpleBreaker:
    """Opens after ``threshold`` consecutive failures for ``recovery`` seconds."""

    def __init__(self, clock: object, threshold: int = 2, recovery: float = 30.0) -> None:
        self.clock = clock
        self.threshold = threshold
        self.recovery = recovery
        self.failures = 0
        self.opened_at: float | None = None
        self.listeners: list[object] = []
        self.name = "uploads"
        self.successes = 0

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "CLOSED"
        return "OPEN" if self.retry_after > 0 else "HALF_OPEN"

    @property
    def retry_after(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.recovery - self.clock.monotonic())  # type: ignore[attr-defined]

    def add_listener(self, cb: object) -> None:
        self.listeners.append(cb)

    def _notify(self, old: str, new: str) -> None:
        for cb in self.listeners:
            cb(BreakerEvent(self.name, old, new, "test", self.clock.now()))  # type: ignore[attr-defined,operator]

    def allow(self) -> bool:
        return self.state != "OPEN"

    def record_success(self) -> None:
        self.successes += 1
        self.failures = 0
        if self.opened_at is not None:
            self.opened_at = None
            self._notify("HALF_OPEN", "CLOSED")

    def record_failure(self, exc: BaseException | None = None) -> None:
        self.failures += 1
        if self.failures >= self.threshold and self.opened_at is None:
            self.opened_at = self.clock.monotonic()  # type: ignore[attr-defined]
            self._notify("CLOSED", "OPEN")

    def check(self) -> None:
        if not self.allow():
            raise CircuitOpenError(self.name, self.retry_after)
