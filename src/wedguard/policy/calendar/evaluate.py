"""The decision at one wall-clock minute, and where it may begin and end.

A query is answered in wall-clock minutes of the calendar's zone (``ordinal * 1440 +
minute``; see :mod:`wedguard.policy.calendar.zone`): every rule is tested with integer
comparisons. :meth:`Evaluator.evaluate` finds the rules holding at a wall minute as one
expression on bit sets (the day's set of rules and the piece of the day), decides what
they allow, and scans the marked times of that day and up to six days either side for
the nearest wall minutes, before and after, where a rule that matters starts or ends.
A window reaching further is left to :meth:`Evaluator.evaluate_slow`, which searches
each rule's days as far as needed.

>>> from datetime import date
>>> from wedguard.policy.calendar.model import CalendarRule
>>> ev = Evaluator((CalendarRule("peak", start="06:00", end="22:00", rate=1e6),))
>>> day = date(2026, 1, 5).toordinal()
>>> key, lo, hi, rules, sure = ev.evaluate(day, 9 * 60, 2026)
>>> key[:2], (lo - day * 1440) // 60, (hi - day * 1440) // 60
((1, 1000000.0), 6, 22)
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from typing import Any

from wedguard.policy.calendar.compiled import _PAD, CompiledRule, RuleTables
from wedguard.policy.calendar.model import CalendarRule
from wedguard.policy.calendar.tokens import _DAY, _INF, _MAX_ORDINAL, _MIN_ORDINAL

__all__ = ["Evaluator"]

# What a set of holding rules decides: the comparable key, the deciding rules, and the
# set of rules whose starting or ending would change the answer (bit i is rule i).
_Answer = tuple[tuple[Any, ...], tuple[CalendarRule, ...], int]

# A decision at one wall-clock minute: a comparable key, the wall-clock minutes
# (ordinal * 1440 + minute, or ±inf) where it may begin and end, the deciding rules,
# and whether the beginning (bit 1) and the end (bit 2) are sure to change the answer:
# they are unless a rule sharing its name with another one starts or ends there.
_Found = tuple[tuple[Any, ...], float, float, tuple[CalendarRule, ...], int]


def _decides(c: CompiledRule, rate: float, cpu: float, down: float, uncapped: bool) -> bool:
    """Whether a holding rule of the winning level decides: it sets a cap that applies
    (or no rule of that level sets one)."""
    return (
        uncapped
        or (c.rate == rate and rate < _INF)
        or (c.cpu == cpu and cpu < _INF)
        or (c.down == down and down < _INF)
    )


def _would_cap(c: CompiledRule, rate: float, cpu: float, down: float, uncapped: bool) -> bool:
    """Whether a rule of the winning level that does not hold would change the answer
    by starting: it would set a cap at least as low as one that applies."""
    return (
        (c.rate <= rate and c.rate < _INF)
        or (c.cpu <= cpu and c.cpu < _INF)
        or (c.down <= down and c.down < _INF)
        or (uncapped and c.uncapped)
    )


class Evaluator:
    """A calendar's rules, compiled, and what they decide at any wall minute.

    Args:
        rules: the calendar's rules (their order is the bit order of the rule sets).
    """

    __slots__ = ("_answers", "_shared", "compiled", "tables")

    def __init__(self, rules: Sequence[CalendarRule]) -> None:
        self.compiled = tuple(CompiledRule(r) for r in rules)
        self.tables = RuleTables(self.compiled)
        labels = [c.label for c in self.compiled]
        counts = Counter(labels)
        # the rules whose name another rule shares (bit i is rule i)
        self._shared = sum(1 << i for i, label in enumerate(labels) if counts[label] > 1)
        self._answers: dict[int, _Answer] = {}

    @property
    def shared(self) -> int:
        """The rules whose name another rule shares, as a bit set (bit i is rule i)."""
        return self._shared

    def _answer(self, held: int) -> _Answer:
        """What the rules in ``held`` decide (remembered: few sets ever occur)."""
        compiled = self.compiled
        by_level = self.tables.by_level
        level = -1
        rate = cpu = down = _INF
        rest = held
        while rest:
            low = rest & -rest
            rest ^= low
            c = compiled[low.bit_length() - 1]
            if c.level > level:
                level, rate, cpu, down = c.level, c.rate, c.cpu, c.down
            elif c.level == level:
                rate = min(rate, c.rate)
                cpu = min(cpu, c.cpu)
                down = min(down, c.down)
        deciders: list[CompiledRule] = []
        if level < 0:  # the default: every rule that starts changes it
            key: tuple[Any, ...] = (-1,)
            watch = by_level[0] | by_level[1] | by_level[2]
        else:
            # a rule of a higher level changes the answer by starting; one of a lower
            # level neither decides nor changes anything; one of this level decides
            # when it sets a cap that applies, and changes the answer by starting when
            # it would set one
            watch = 0
            for above in by_level[level + 1 :]:
                watch |= above
            uncapped = rate == _INF and cpu == _INF and down == _INF
            rest = by_level[level]
            while rest:
                low = rest & -rest
                rest ^= low
                c = compiled[low.bit_length() - 1]
                if held & low:
                    if _decides(c, rate, cpu, down, uncapped):
                        deciders.append(c)
                        watch |= low
                elif _would_cap(c, rate, cpu, down, uncapped):
                    watch |= low
            key = (level, rate, cpu, down, tuple(dict.fromkeys(c.label for c in deciders)))
        answer = (key, tuple(c.rule for c in deciders), watch)
        if len(self._answers) >= 4096:
            self._answers.clear()
        self._answers[held] = answer
        return answer

    # -- the fast evaluation: bit sets, bounds found by scanning a fortnight ----------

    def evaluate(self, day: int, minute: int, year: int) -> _Found:
        """The decision at a wall minute, its wall bounds and the deciding rules.

        The rules holding are one bit set, from the day's set of rules and the
        segment of the day. The bounds are the nearest instants, before and after,
        where a rule that matters starts or ends: the marked times of this day and of
        up to six days either side are scanned, and a window reaching further is left
        to :meth:`evaluate_slow`. ``year`` is the calendar year of ordinal ``day``.
        """
        if not _MIN_ORDINAL + _PAD < day < _MAX_ORDINAL - _PAD:
            return self.evaluate_slow(day, minute, year)
        t = self.tables
        base, _span, _masks, days = t.year(year)
        k = day - base
        j = bisect.bisect_right(t.times, minute) - 1
        held = (days[k] & t.in_today[j]) | (days[k - 1] & t.in_yesterday[j])
        answer = self._answers.get(held)
        if answer is None:
            answer = self._answer(held)
        key, deciders, watch = answer
        if not watch:  # nothing can change
            return key, -_INF, _INF, deciders, 3
        after = self._end_after(days, k, j, watch)
        if after is None:
            return self.evaluate_slow(day, minute, year)
        before = self._start_before(days, k, j, watch)
        if before is None:
            return self.evaluate_slow(day, minute, year)
        shared = self._shared
        sure = 1 if after[1] & shared else 3
        if before[1] & shared:
            sure &= 2
        d0 = day * _DAY
        return key, d0 + before[0], d0 + after[0], deciders, sure

    def _end_after(self, days: list[int], k: int, j: int, watch: int) -> tuple[int, int] | None:
        """The first mark after the segment ``j`` of day ``k`` (of the year's ``days``)
        of a rule in ``watch``: (minutes from the start of day ``k``, the rules marked
        there); None when there is none within six days."""
        t = self.tables
        times, marks_today, marks_yesterday = t.times, t.marks_today, t.marks_yesterday
        now, prev = days[k], days[k - 1]
        n = len(times)
        for i in range(j + 1, n):
            hit = ((marks_today[i] & now) | (marks_yesterday[i] & prev)) & watch
            if hit:
                return times[i], hit
        # at midnight the all-day rules also start and end, where their days change
        midnight, midnight_y, full = marks_today[0], marks_yesterday[0], t.full
        for ahead in range(1, 7):
            cur = days[k + ahead]
            before = days[k + ahead - 1]
            hit = ((midnight & cur) | (midnight_y & before) | ((cur ^ before) & full)) & watch
            if hit:
                return ahead * _DAY, hit
            for i in range(1, n):
                hit = ((marks_today[i] & cur) | (marks_yesterday[i] & before)) & watch
                if hit:
                    return ahead * _DAY + times[i], hit
        return None

    def _start_before(self, days: list[int], k: int, j: int, watch: int) -> tuple[int, int] | None:
        """The last mark at or before the segment ``j`` of day ``k`` of a rule in
        ``watch``: (minutes from the start of day ``k``, at most 0 for an earlier day;
        the rules marked there); None when there is none within six days."""
        t = self.tables
        times, marks_today, marks_yesterday = t.times, t.marks_today, t.marks_yesterday
        now, prev = days[k], days[k - 1]
        n = len(times)
        for i in range(j, 0, -1):
            hit = ((marks_today[i] & now) | (marks_yesterday[i] & prev)) & watch
            if hit:
                return times[i], hit
        midnight, midnight_y, full = marks_today[0], marks_yesterday[0], t.full
        for back in range(7):
            cur = days[k - back]
            before = days[k - back - 1]
            hit = ((midnight & cur) | (midnight_y & before) | ((cur ^ before) & full)) & watch
            if hit:
                return -back * _DAY, hit
            if back == 6:
                break
            cur, before = before, days[k - back - 2]
            for i in range(n - 1, 0, -1):
                hit = ((marks_today[i] & cur) | (marks_yesterday[i] & before)) & watch
                if hit:
                    return -(back + 1) * _DAY + times[i], hit
        return None

    # -- the slow evaluation: rule by rule, as far as each rule's days reach -----------

    def evaluate_slow(self, day: int, minute: int, year: int) -> _Found:
        """:meth:`evaluate` rule by rule, searching each rule's days as far as needed."""
        base, _span, masks, _days = self.tables.year(year)
        state, level, rate, cpu, down = self._holding(masks, day - base - 2, minute)
        uncapped = rate == _INF and cpu == _INF and down == _INF
        start = -_INF
        end = _INF
        deciders: list[CompiledRule] = []
        for i, c in enumerate(self.compiled):
            if c.level < level:
                continue  # it neither decides nor would change anything by starting
            b = state[i]
            if b & 96:
                if c.level != level or not _decides(c, rate, cpu, down, uncapped):
                    continue
                deciders.append(c)
                lo, hi = self._held_span(i, b, day, year)
            elif c.level > level or _would_cap(c, rate, cpu, down, uncapped):
                lo, hi = self._between(i, b, day, minute, year, masks[i], base)
            else:
                continue
            if lo > start:
                start = lo
            if hi < end:
                end = hi
        sure = 0 if self._shared else 3
        if level < 0:
            return (-1,), start, end, (), sure
        labels = tuple(dict.fromkeys(c.label for c in deciders))
        rules = tuple(c.rule for c in deciders)
        return (level, rate, cpu, down, labels), start, end, rules, sure

    def _holding(
        self, masks: tuple[int, ...], k: int, minute: int
    ) -> tuple[list[int], int, float, float, float]:
        """Per rule: bits 0-4 say whether it holds on the days day-2 .. day+2 (bit k of
        the year's masks is day-2); bit 5 is set when today's interval holds at
        ``minute``, bit 6 when yesterday's (crossing midnight). Also the winning level
        and its caps (-1 and ``inf`` when no rule holds)."""
        state: list[int] = []
        level = -1
        rate = cpu = down = _INF
        for c, m in zip(self.compiled, masks):  # noqa: B905 - equal lengths
            b = (m >> k) & 31
            if b & 4 and c.start <= minute < c.endp:
                state.append(b | 32)
            elif b & 2 and minute < c.endx:
                state.append(b | 64)
            else:
                state.append(b)
                continue
            if c.level >= level:
                if c.level > level:
                    level, rate, cpu, down = c.level, c.rate, c.cpu, c.down
                else:
                    if c.rate < rate:
                        rate = c.rate
                    if c.cpu < cpu:
                        cpu = c.cpu
                    if c.down < down:
                        down = c.down
        return state, level, rate, cpu, down

    def _held_span(self, i: int, b: int, day: int, year: int) -> tuple[float, float]:
        """The wall interval of rule ``i``, which holds now (``b`` is its state): the
        interval itself, or for an all-day rule the run of days it holds on."""
        c = self.compiled[i]
        d0 = day * _DAY
        lo: float
        hi: float
        if not c.full:
            lo = d0 + c.start if b & 32 else d0 - _DAY + c.start
            return lo, lo + c.endp - c.start
        # the neighbouring days may be used directly unless they are out of range
        if day > _MIN_ORDINAL and not b & 2:
            lo = d0
        else:
            p = self.tables.prev_on(i, day - 1, year, False)
            lo = -_INF if p is None else (p + 1) * _DAY
        if day < _MAX_ORDINAL and not b & 8:
            hi = d0 + _DAY
        else:
            n = self.tables.next_on(i, day + 1, year, False)
            hi = _INF if n is None else n * _DAY
        return lo, hi

    def _between(
        self, i: int, b: int, day: int, minute: int, year: int, mask: int, base: int
    ) -> tuple[float, float]:
        """For rule ``i``, which does not hold now: the end of its previous interval and
        the start of its next one (an all-day rule's start is 0 and its end 1440: the
        same sums serve). ``mask`` is its day mask in ``year``, from ordinal ``base``."""
        c = self.compiled[i]
        d0 = day * _DAY
        lo: float
        hi: float
        if b & 4 and minute < c.start:
            hi = d0 + c.start
        elif day < _MAX_ORDINAL and b & 8:
            hi = d0 + _DAY + c.start
        else:
            t = mask >> (day - base + 1)  # the days from tomorrow on, in this year's mask
            if t:
                n = day + (t & -t).bit_length()
                hi = n * _DAY + c.start if n <= _MAX_ORDINAL else _INF
            else:
                n2 = self.tables.next_on(i, day + 1, year, True)
                hi = _INF if n2 is None else n2 * _DAY + c.start
        if b & 4 and minute >= c.endp:
            lo = d0 + c.endp
        elif day > _MIN_ORDINAL and b & 2:
            lo = d0 - _DAY + c.endp
        else:
            t = mask & ((1 << (day - base)) - 1)  # the days up to yesterday
            if t:
                p = base + t.bit_length() - 1
                lo = p * _DAY + c.endp if p >= _MIN_ORDINAL else -_INF
            else:
                p2 = self.tables.prev_on(i, day - 1, year, True)
                lo = -_INF if p2 is None else p2 * _DAY + c.endp
        return lo, hi
