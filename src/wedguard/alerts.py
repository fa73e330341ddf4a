"""Alerts: what wedguard tells people, and how urgently.

An :class:`Alert` is a frozen value: a ``key`` that identifies the condition (alerts
with the same key are the same alert, fired again or resolved), a :class:`Severity`,
a one-line ``summary``, free-form ``details`` and ``labels`` used for routing,
grouping and inhibition.

>>> from datetime import datetime, timezone
>>> a = Alert("photos/halt", Severity.CRITICAL, "backup halted: API +40 %",
...           labels={"session": "photos"},
...           started_at=datetime(2026, 6, 13, 14, 0, tzinfo=timezone.utc))
>>> a.firing, a.to_dict()["severity"]
(True, 'CRITICAL')
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

import attrs

from wedguard.errors import ConfigError

__all__ = ["Alert", "Severity"]


class Severity(enum.IntEnum):
    """How urgent an alert is: ``LOW < MEDIUM < HIGH < CRITICAL``."""

    LOW = 0
    MEDIUM = 1
    HIGH = 2
    CRITICAL = 3

    def __str__(self) -> str:
        return self.name


def _freeze(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


def _check_key(_inst: object, _attr: object, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError("key", value, "a non-empty string")


def _check_aware(_inst: object, attr: attrs.Attribute[Any], value: datetime | None) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ConfigError(attr.name, value, "an aware datetime (with tzinfo)")


@attrs.frozen(slots=True)
class Alert:
    """One alert, firing or resolved.

    Args:
        key: identifies the condition; firing the same key again updates the alert.
        severity: how urgent it is.
        summary: one line a person reads first.
        details: more text (multi-line allowed).
        labels: routing, grouping and inhibition keys, e.g. ``{"session": "photos"}``.
        started_at: when the condition began (aware datetime), if known.
        resolved_at: when it ended; set on a resolved alert.
    """

    key: str = attrs.field(validator=_check_key)
    severity: Severity = attrs.field(converter=Severity)
    summary: str
    details: str = ""
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=_freeze)
    started_at: datetime | None = attrs.field(default=None, validator=_check_aware)
    resolved_at: datetime | None = attrs.field(default=None, validator=_check_aware)

    @property
    def kind(self) -> str:
        return "alert"

    @property
    def firing(self) -> bool:
        """True until the alert is resolved."""
        return self.resolved_at is None

    def resolved(self, at: datetime) -> Alert:
        """This alert, resolved at ``at``."""
        return attrs.evolve(self, resolved_at=at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "alert",
            "key": self.key,
            "severity": self.severity.name,
            "summary": self.summary,
            "details": self.details,
            "labels": dict(self.labels),
            "started_at": None if self.started_at is None else self.started_at.isoformat(),
            "resolved_at": None if self.resolved_at is None else self.resolved_at.isoformat(),
            "status": "firing" if self.firing else "resolved",
        }
