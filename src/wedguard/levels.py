"""The small ordered scales the policies speak in.

* :class:`Level`: what the calendar allows now: ``OPEN < PEAK < BLACKOUT``.
* :class:`Verdict`: what the impact analyser concludes: ``OK < THROTTLE < HALT``.

Both are ordered by how restrictive they are, so ``max()`` combines them.

>>> max(Level.OPEN, Level.BLACKOUT)
<Level.BLACKOUT: 2>
>>> Verdict.THROTTLE > Verdict.OK
True
"""

from __future__ import annotations

import enum

__all__ = ["Level", "Verdict"]


class Level(enum.IntEnum):
    """How much backup work the calendar allows, ordered by how restrictive.

    * ``OPEN``: no calendar limit.
    * ``PEAK``: limited: a rate cap, a CPU share.
    * ``BLACKOUT``: no backup work at all.
    """

    OPEN = 0
    PEAK = 1
    BLACKOUT = 2

    def __str__(self) -> str:
        return self.name


class Verdict(enum.IntEnum):
    """What production's state means for the backup, ordered by how restrictive.

    * ``OK``: go on.
    * ``THROTTLE``: slow down.
    * ``HALT``: stop now, until production recovers.
    """

    OK = 0
    THROTTLE = 1
    HALT = 2

    def __str__(self) -> str:
        return self.name
