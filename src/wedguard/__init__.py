"""wedguard: let backups run beside live production without hurting it.

wedguard decides, chunk by chunk, how fast a backup may go, when it must wait (peak
hours, blackout days, production slowing down, an emergency stop), whom to tell, and
why. The policy objects are pure: they compute on an injected :class:`Clock` and never
sleep or do I/O themselves.

Example::

    >>> import wedguard as wg
    >>> bucket = wg.TokenBucketThrottler(wg.parse_rate("10MB/s"))
    >>> bucket.try_acquire(64 * 1024)
    True
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from wedguard.alerts import (
    Alert,
    AlertDispatcher,
    AlertPolicy,
    InhibitRule,
    Matcher,
    Notification,
    Route,
    Severity,
    Silence,
)
from wedguard.clock import Clock, SystemClock
from wedguard.config import Config, load_config
from wedguard.control import ControlServer
from wedguard.decision import Decision
from wedguard.errors import (
    CircuitOpenError,
    ConfigError,
    EmergencyStop,
    HoldTimeout,
    ThrottleTimeout,
    WedguardError,
)
from wedguard.fileobj import GuardedFile
from wedguard.guard import Guard
from wedguard.history import (
    HistoryError,
    HistorySink,
    MetricsStore,
    RecommendedWindow,
    recommend_windows,
)
from wedguard.levels import Level, Verdict
from wedguard.policy.breaker import (
    BreakerEvent,
    BreakerRecord,
    BreakerState,
    BreakerStorage,
    CircuitBreaker,
    MemoryBreakerStorage,
)
from wedguard.policy.calendar import PeakHourCalendar, Rule, Season, Window
from wedguard.policy.control import AIMDController, LedbatController, RateController
from wedguard.policy.impact import Assessment, Baseline, ImpactAnalyzer, Thresholds
from wedguard.policy.throttle import TokenBucketThrottler
from wedguard.process import DutyCycle, GuardedProcess, ProcessReport
from wedguard.protocols import Event, Sink, Source, Throttler
from wedguard.session import (
    Cutoff,
    CutoffMode,
    CutoffReached,
    DeadlineError,
    Pause,
    Session,
    SessionReport,
    SlotTimeout,
    TimelinePoint,
)
from wedguard.units import (
    format_duration,
    format_rate,
    format_size,
    parse_duration,
    parse_rate,
    parse_size,
)

try:
    __version__ = version("wedguard")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "AIMDController",
    "Alert",
    "AlertDispatcher",
    "AlertPolicy",
    "Assessment",
    "Baseline",
    "BreakerEvent",
    "BreakerRecord",
    "BreakerState",
    "BreakerStorage",
    "CircuitBreaker",
    "CircuitOpenError",
    "Clock",
    "Config",
    "ConfigError",
    "ControlServer",
    "Cutoff",
    "CutoffMode",
    "CutoffReached",
    "DeadlineError",
    "Decision",
    "DutyCycle",
    "EmergencyStop",
    "Event",
    "Guard",
    "GuardedFile",
    "GuardedProcess",
    "HistoryError",
    "HistorySink",
    "HoldTimeout",
    "ImpactAnalyzer",
    "InhibitRule",
    "LedbatController",
    "Level",
    "Matcher",
    "MemoryBreakerStorage",
    "MetricsStore",
    "Notification",
    "Pause",
    "PeakHourCalendar",
    "ProcessReport",
    "RateController",
    "RecommendedWindow",
    "Route",
    "Rule",
    "Season",
    "Session",
    "SessionReport",
    "Severity",
    "Silence",
    "Sink",
    "SlotTimeout",
    "Source",
    "SystemClock",
    "Thresholds",
    "ThrottleTimeout",
    "Throttler",
    "TimelinePoint",
    "TokenBucketThrottler",
    "Verdict",
    "WedguardError",
    "Window",
    "__version__",
    "format_duration",
    "format_rate",
    "format_size",
    "load_config",
    "parse_duration",
    "parse_rate",
    "parse_size",
    "recommend_windows",
]
