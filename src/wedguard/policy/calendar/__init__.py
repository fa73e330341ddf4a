"""The peak-hour calendar: how much a backup may do at any instant.

A :class:`PeakHourCalendar` is a pure policy object. It is told an instant and answers
with a :class:`Window`: the :class:`~wedguard.levels.Level` that holds (``OPEN``, ``PEAK``
or ``BLACKOUT``), the rate cap and CPU share cap, when that window started, when it
ends, and which rule or rules decided. It never reads a clock itself.

>>> from datetime import datetime, timezone
>>> cal = PeakHourCalendar.parse('''
...     Mon-Sun 06:00-22:00 peak 10Mbit/s cpu=30%
...     May-Oct Sat 08:00-24:00 blackout name="wedding Saturdays"
...     2026-12-24 blackout
... ''', tz="Europe/London")
>>> w = cal.at(datetime(2026, 6, 13, 12, 0, tzinfo=timezone.utc))   # a Saturday in June
>>> w.level, w.reason
(<Level.BLACKOUT: 2>, "rule 'wedding Saturdays'")
>>> w = cal.at(datetime(2026, 1, 6, 12, 0, tzinfo=timezone.utc))
>>> w.level, w.rate, w.cpu_share, w.start.hour, w.end.hour
(<Level.PEAK: 1>, 1250000.0, 0.3, 6, 22)

Semantics, in one place:

* **Rules.** A rule holds on the days its weekdays, season and dates (each optional)
  all allow, from its start time to its end time. A range that ends at or before it
  starts (``22:00-02:00``) crosses midnight: it belongs to the day it starts on.
  ``24:00`` (or ``00:00``) as an end means midnight at the end of the day.
* **Overlaps.** The most restrictive level wins; among the rules at that level, the
  lowest rate cap and the lowest CPU share apply. The window's reason names the rules
  that decided (those that set a cap, or all of them when none sets one). When no rule
  holds, the calendar's ``default`` level applies.
* **Time zones.** Rules are wall-clock times in the calendar's zone. A time that does
  not exist on a day (the spring-forward gap) takes effect at the first instant after
  the gap; an ambiguous time (the fall-back fold) takes effect at its first occurrence.
  A window may therefore last 23 or 25 hours, or (for a rule wholly inside a gap)
  vanish that day.
* **Windows are maximal.** ``at(t).end`` is the first instant after ``t`` at which
  anything in the answer changes, and ``next_change(t)`` returns exactly that, or
  ``None`` when nothing ever changes.

The package, by concern (each module imports only the ones listed before it):

* :mod:`~wedguard.policy.calendar.tokens`: units and the tokens of the line syntax;
* :mod:`~wedguard.policy.calendar.model`: the values :class:`Season`,
  :class:`CalendarRule` and :class:`Window`;
* :mod:`~wedguard.policy.calendar.syntax`: the line syntax;
  :mod:`~wedguard.policy.calendar.rclone`: rclone ``--bwlimit`` timetables;
* :mod:`~wedguard.policy.calendar.zone`: wall clocks and instants, daylight saving;
* :mod:`~wedguard.policy.calendar.compiled`, :mod:`~wedguard.policy.calendar.evaluate`
  and :mod:`~wedguard.policy.calendar.engine`: the rules as bit sets, the decision at a
  wall minute, and the window at an instant;
* :mod:`~wedguard.policy.calendar.describe`: tables and notes for people;
* :mod:`~wedguard.policy.calendar.peak`: :class:`PeakHourCalendar`, which puts them
  together.

``Rule`` is the former name of :class:`CalendarRule`, kept for one release: using it
warns with :class:`DeprecationWarning`.
"""

from __future__ import annotations

from wedguard.errors import renamed
from wedguard.policy.calendar.model import CalendarRule, Season, Window
from wedguard.policy.calendar.peak import PeakHourCalendar

__all__ = ["CalendarRule", "PeakHourCalendar", "Season", "Window"]

_RENAMED = {"Rule": "CalendarRule"}


__getattr__ = renamed(__name__, _RENAMED, globals())
