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

import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    __version__: str
    from wedguard.clock import (
        Clock,
        SystemClock,
    )
    from wedguard.config import (
        Config,
        load_config,
    )
    from wedguard.decision import Decision
    from wedguard.errors import (
        CircuitOpenError,
        ConfigError,
        EmergencyStop,
        HoldTimeout,
        SlotTimeout,
        ThrottleTimeout,
        WedguardError,
    )
    from wedguard.history import (
        HistoryError,
        HistorySink,
        MetricsStore,
        RecommendedWindow,
        recommend_windows,
    )
    from wedguard.interfaces import (
        Event,
        Sink,
        Source,
        Throttler,
    )
    from wedguard.io.fileobj import GuardedFile
    from wedguard.io.process import (
        DutyCycle,
        GuardedProcess,
        ProcessReport,
    )
    from wedguard.levels import (
        Level,
        Verdict,
    )
    from wedguard.policy.alerting import (
        Alert,
        AlertPolicy,
        InhibitRule,
        Matcher,
        Notification,
        Route,
        Severity,
        Silence,
    )
    from wedguard.policy.breaker import (
        BreakerEvent,
        BreakerRecord,
        BreakerState,
        BreakerStorage,
        CircuitBreaker,
        MemoryBreakerStorage,
    )
    from wedguard.policy.bucket import TokenBucketThrottler
    from wedguard.policy.calendar import (
        CalendarRule,
        PeakHourCalendar,
        Season,
        Window,
    )
    from wedguard.policy.controllers import (
        AIMDController,
        LedbatController,
        RateController,
    )
    from wedguard.policy.impact import (
        Assessment,
        Baseline,
        ImpactAnalyzer,
        Thresholds,
    )
    from wedguard.runtime.alerts import AlertDispatcher
    from wedguard.runtime.control_socket import ControlServer
    from wedguard.runtime.guard import Guard
    from wedguard.runtime.session import (
        Cutoff,
        CutoffReached,
        DeadlineError,
        Pause,
        Session,
        SessionReport,
        TimelinePoint,
        current_session,
    )
    from wedguard.units import (
        format_duration,
        format_rate,
        format_size,
        parse_duration,
        parse_rate,
        parse_size,
    )

# Every public name and the module that holds it. Nothing is imported until a name is
# first used (PEP 562), so `import wedguard` loads neither sqlite3, subprocess, psutil
# nor any optional dependency: a host that only parses a rate pays for nothing else.
_WHERE: dict[str, str] = {
    "AIMDController": "wedguard.policy.controllers",
    "Alert": "wedguard.policy.alerting",
    "AlertDispatcher": "wedguard.runtime.alerts",
    "AlertPolicy": "wedguard.policy.alerting",
    "Assessment": "wedguard.policy.impact",
    "Baseline": "wedguard.policy.impact",
    "BreakerEvent": "wedguard.policy.breaker",
    "BreakerRecord": "wedguard.policy.breaker",
    "BreakerState": "wedguard.policy.breaker",
    "BreakerStorage": "wedguard.policy.breaker",
    "CalendarRule": "wedguard.policy.calendar",
    "CircuitBreaker": "wedguard.policy.breaker",
    "CircuitOpenError": "wedguard.errors",
    "Clock": "wedguard.clock",
    "Config": "wedguard.config",
    "ConfigError": "wedguard.errors",
    "ControlServer": "wedguard.runtime.control_socket",
    "Cutoff": "wedguard.runtime.session",
    "current_session": "wedguard.runtime.session",
    "CutoffReached": "wedguard.runtime.session",
    "DeadlineError": "wedguard.runtime.session",
    "Decision": "wedguard.decision",
    "DutyCycle": "wedguard.io.process",
    "EmergencyStop": "wedguard.errors",
    "Event": "wedguard.interfaces",
    "Guard": "wedguard.runtime.guard",
    "GuardedFile": "wedguard.io.fileobj",
    "GuardedProcess": "wedguard.io.process",
    "HistoryError": "wedguard.history",
    "HistorySink": "wedguard.history",
    "HoldTimeout": "wedguard.errors",
    "ImpactAnalyzer": "wedguard.policy.impact",
    "InhibitRule": "wedguard.policy.alerting",
    "LedbatController": "wedguard.policy.controllers",
    "Level": "wedguard.levels",
    "Matcher": "wedguard.policy.alerting",
    "MemoryBreakerStorage": "wedguard.policy.breaker",
    "MetricsStore": "wedguard.history",
    "Notification": "wedguard.policy.alerting",
    "Pause": "wedguard.runtime.session",
    "PeakHourCalendar": "wedguard.policy.calendar",
    "ProcessReport": "wedguard.io.process",
    "RateController": "wedguard.policy.controllers",
    "RecommendedWindow": "wedguard.history",
    "Route": "wedguard.policy.alerting",
    "Season": "wedguard.policy.calendar",
    "Session": "wedguard.runtime.session",
    "SessionReport": "wedguard.runtime.session",
    "Severity": "wedguard.policy.alerting",
    "Silence": "wedguard.policy.alerting",
    "Sink": "wedguard.interfaces",
    "SlotTimeout": "wedguard.errors",
    "Source": "wedguard.interfaces",
    "SystemClock": "wedguard.clock",
    "Thresholds": "wedguard.policy.impact",
    "ThrottleTimeout": "wedguard.errors",
    "Throttler": "wedguard.interfaces",
    "TimelinePoint": "wedguard.runtime.session",
    "TokenBucketThrottler": "wedguard.policy.bucket",
    "Verdict": "wedguard.levels",
    "WedguardError": "wedguard.errors",
    "Window": "wedguard.policy.calendar",
    "format_duration": "wedguard.units",
    "format_rate": "wedguard.units",
    "format_size": "wedguard.units",
    "load_config": "wedguard.config",
    "parse_duration": "wedguard.units",
    "parse_rate": "wedguard.units",
    "parse_size": "wedguard.units",
    "recommend_windows": "wedguard.history",
}

# Former names, kept for one release: each use warns with DeprecationWarning (so they
# are neither cached here nor listed in __all__).
_RENAMED: dict[str, str] = {
    "Rule": "CalendarRule",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value: Any = version("wedguard")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            value = "0+unknown"
    elif name in _RENAMED:
        new = _RENAMED[name]
        warnings.warn(
            f"wedguard.{name} is deprecated; use wedguard.{new}", DeprecationWarning, stacklevel=2
        )
        return __getattr__(new)
    else:
        module = _WHERE.get(name)
        if module is None:
            module = _DEPRECATED.get(name)
            if module is None:
                raise AttributeError(f"module 'wedguard' has no attribute {name!r}")
        from importlib import import_module

        value = getattr(import_module(module), name)
        if name in _DEPRECATED:
            return value  # not kept: a deprecated alias warns on every use
    globals()[name] = value
    return value


# names kept for one release, outside __all__; each warns when used
_DEPRECATED: dict[str, str] = {"CutoffMode": "wedguard.policy.ledger"}


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


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
    "CalendarRule",
    "CircuitBreaker",
    "CircuitOpenError",
    "Clock",
    "Config",
    "ConfigError",
    "ControlServer",
    "Cutoff",
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
    "current_session",
    "format_duration",
    "format_rate",
    "format_size",
    "load_config",
    "parse_duration",
    "parse_rate",
    "parse_size",
    "recommend_windows",
]
