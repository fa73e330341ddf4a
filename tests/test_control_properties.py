"""Stateful checks of both controllers against a tiny reference model of their rules."""

from __future__ import annotations

import math

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from wedguard import AIMDController, Assessment, LedbatController, Verdict

FLOOR = 5.0
DWELL = 3.0


class ControllerMachine(RuleBasedStateMachine):
    """The model: rate in [floor, ceiling] (0 on HALT); THROTTLE never raises it, OK
    never lowers it; nothing changes within the dwell time of the last change."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.ceiling = 1000.0
        self.last: float | None = None
        self.last_change = -math.inf
        self.result = 0.0

    @initialize(kind=st.sampled_from(["aimd", "ledbat"]), proportional=st.booleans())
    def make(self, kind: str, proportional: bool) -> None:
        if kind == "aimd":
            self.c: AIMDController | LedbatController = AIMDController(
                floor=FLOOR, increase=25, min_dwell=DWELL, proportional=proportional
            )
        else:
            self.c = LedbatController(floor=FLOOR, min_dwell=DWELL)

    def _step(self, verdict: Verdict, load: float) -> None:
        before = self.c.rate
        got = self.c.update(Assessment(verdict, load=load), ceiling=self.ceiling, now=self.now)
        self.result = got
        if verdict is Verdict.HALT:
            assert got == 0.0
            self.last = None
            self.last_change = self.now
            return
        assert min(FLOOR, self.ceiling) <= got <= self.ceiling
        if before is not None and min(before, self.ceiling) != got:
            prior = min(before, self.ceiling)
            if verdict is Verdict.THROTTLE:
                assert got <= prior
            elif got > prior:
                assert self.now - self.last_change >= DWELL
            if got != before:
                self.last_change = self.now
        self.last = got

    @rule(load=st.floats(0, 5))
    def ok(self, load: float) -> None:
        self._step(Verdict.OK, load)

    @rule(load=st.floats(0, 5))
    def throttle(self, load: float) -> None:
        self._step(Verdict.THROTTLE, load)

    @rule()
    def halt(self) -> None:
        self._step(Verdict.HALT, 0.0)

    @rule(dt=st.floats(0, 10))
    def wait(self, dt: float) -> None:
        self.now += dt

    @rule(ceiling=st.sampled_from([2.0, 100.0, 1000.0, 5000.0]))
    def set_ceiling(self, ceiling: float) -> None:
        self.ceiling = ceiling

    @invariant()
    def never_negative(self) -> None:
        assert self.result >= 0.0


TestControllerMachine = ControllerMachine.TestCase
