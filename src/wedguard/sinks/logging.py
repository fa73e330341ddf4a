"""Events as stdlib log records, with the event's fields in ``extra``.

Each record's message is one readable line; its ``extra`` carries ``wedguard_kind``
(the event kind) and ``wedguard_event`` (the event's ``to_dict()``), so structured
handlers (JSON formatters, structlog's stdlib bridge) can keep every field.

>>> import logging
>>> from wedguard.policy.alerting import Alert, Severity
>>> sink = LoggingSink("wedguard.doc")
>>> sink.level_for(Alert("k", Severity.HIGH, "slow")) == logging.ERROR
True
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from wedguard import _checks
from wedguard.errors import ConfigError
from wedguard.interfaces import Event
from wedguard.policy.alerting import Severity
from wedguard.sinks._common import event_resolved, event_title

__all__ = ["LoggingSink"]

_LEVELS = {
    Severity.LOW: logging.INFO,
    Severity.MEDIUM: logging.WARNING,
    Severity.HIGH: logging.ERROR,
    Severity.CRITICAL: logging.CRITICAL,
}


class LoggingSink:
    """Log every event through :mod:`logging`.

    Args:
        logger: a :class:`logging.Logger` or a logger name (default ``"wedguard.events"``).
        level: log everything at this level instead of the default mapping.
        levels: override the level per severity.

    Default levels: firing alerts and notifications by severity (LOW INFO, MEDIUM
    WARNING, HIGH ERROR, CRITICAL CRITICAL); resolved ones INFO; breaker events
    opening and closing again WARNING (a console that showed the one shows the
    other), half-open INFO; everything else INFO (decisions DEBUG, they are frequent).

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        logger: logging.Logger | str = "wedguard.events",
        *,
        level: int | None = None,
        levels: Mapping[Severity, int] | None = None,
        name: str = "logging",
    ) -> None:
        if isinstance(logger, str):
            logger = logging.getLogger(logger)
        if not isinstance(logger, logging.Logger):
            raise ConfigError("logger", logger, "a logging.Logger or a logger name")
        if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
            raise ConfigError("level", level, "a logging level such as logging.WARNING")
        self.logger = logger
        self.level = level
        given: Mapping[Severity, int] = _checks.mapping(
            levels or {}, "levels", "a mapping of Severity to a logging level"
        )
        for severity, number in given.items():
            if isinstance(number, bool) or not isinstance(number, int):
                raise ConfigError(f"levels[{severity}]", number, "a logging level such as 30")
        self.levels = {**_LEVELS, **given}
        self.name = name

    def level_for(self, event: Event) -> int:
        if self.level is not None:
            return self.level
        kind = event.kind
        if kind in ("alert", "notification"):
            if event_resolved(event):
                return logging.INFO
            severity = getattr(event, "severity", Severity.MEDIUM)
            return self.levels.get(severity, logging.WARNING)
        if kind == "decision":
            return logging.DEBUG
        if kind == "breaker":
            data = event.to_dict()
            new = str(data.get("new", "")).lower()
            old = str(data.get("old", "")).lower()
            if "open" in new and "half" not in new:
                return logging.WARNING
            # closed again after being open: as visible as the opening was
            return logging.WARNING if "closed" in new and "open" in old else logging.INFO
        return logging.INFO

    def emit(self, event: Event) -> None:
        level = self.level_for(event)
        if not self.logger.isEnabledFor(level):
            return
        self.logger.log(
            level,
            "%s",
            event_title(event),
            extra={"wedguard_kind": event.kind, "wedguard_event": event.to_dict()},
        )

    def __repr__(self) -> str:
        return f"LoggingSink(logger={self.logger.name!r})"
