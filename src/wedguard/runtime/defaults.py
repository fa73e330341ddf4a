"""The guard's defaults and bounds, written once.

:class:`~wedguard.Guard` takes its parameters' defaults from here, and
:mod:`wedguard.config` fills in a file's missing keys from the same constants, so a
guard built from an empty ``wedguard.toml`` is the guard ``Guard()`` builds. Constants
only: no code, nothing imported but ``typing``.

The values are the wedding platform's targets (see the defaults table in the contract):

    >>> from wedguard.units import format_rate
    >>> format_rate(RATE), MAX_CONCURRENT, BREAKER_FAILURE_THRESHOLD, BREAKER_RECOVERY_TIMEOUT
    ('50 MB/s', 2, 3, 300.0)

.. versionadded:: 0.2.0
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BREAKER_FAILURE_THRESHOLD",
    "BREAKER_RECOVERY_TIMEOUT",
    "CPUS",
    "IONICE",
    "MAX_CONCURRENT",
    "MAX_HOLD",
    "MAX_INTERVAL",
    "MAX_SLOT_TIMEOUT",
    "MIN_INTERVAL",
    "MIN_RATE",
    "NICE",
    "RATE",
    "SAMPLE_INTERVAL",
    "STOP_CHECK_INTERVAL",
]

# -- defaults ------------------------------------------------------------------------------

#: the byte budget: 50 MB/s
RATE: Final = 50e6
#: sessions at once (None: no limit)
MAX_CONCURRENT: Final = 2
#: seconds between samples of the sources
SAMPLE_INTERVAL: Final = 1.0
#: seconds between looks at the stop file
STOP_CHECK_INTERVAL: Final = 0.1
#: seconds a session is held back for production's sake before it ends (HoldTimeout)
MAX_HOLD: Final = 1800.0
#: niceness added to a thread while it runs a session (0: none)
NICE: Final = 0
#: a thread running a session is in the idle I/O class
IONICE: Final = False
#: the cores a session's thread and a guarded command run on: "auto", a session's thread
#: where it is, a command on every core but the first (a core left to production)
CPUS: Final = "auto"
#: the guard's circuit breaker opens after this many consecutive failures...
BREAKER_FAILURE_THRESHOLD: Final = 3
#: ...and tries again after this many seconds
BREAKER_RECOVERY_TIMEOUT: Final = 300.0

# -- bounds --------------------------------------------------------------------------------

#: the lowest rate (units per second) a guard takes: below it one unit waits for hours
MIN_RATE: Final = 0.001
#: sample_interval and stop_check_interval: from 1 ms (not a busy loop) to a day
MIN_INTERVAL: Final = 0.001
MAX_INTERVAL: Final = 86400.0
#: the longest slot_timeout: 30 days (None waits forever)
MAX_SLOT_TIMEOUT: Final = 30 * 86400.0
