"""Alerts as values: what is fired, routed, inhibited, silenced and notified.

>>> from datetime import datetime, timezone
>>> a = Alert("photos/halt", Severity.CRITICAL, "backup halted: API +40 %",
...           labels={"session": "photos"},
...           started_at=datetime(2026, 6, 13, 14, 0, tzinfo=timezone.utc))
>>> a.firing, a.to_dict()["severity"]
(True, 'CRITICAL')
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any

import attrs

from wedguard.errors import ConfigError
from wedguard.interfaces import Sink

__all__ = [
    "DEFAULT_INHIBIT_RULES",
    "Alert",
    "InhibitRule",
    "Matcher",
    "Notification",
    "Route",
    "Severity",
    "Silence",
    "alert_signature",
    "check_sinks",
    "parse_severity",
]


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


def _alert_severity(value: object) -> Severity:
    return parse_severity(value, "severity")


@attrs.frozen(slots=True)
class Alert:
    """One alert, firing or resolved.

    Attributes:
        key: identifies the condition; firing the same key again updates the alert.
        severity: how urgent it is.
        summary: one line a person reads first.
        details: more text (multi-line allowed).
        labels: routing, grouping and inhibition keys, e.g. ``{"session": "photos"}``.
        started_at: when the condition began (aware datetime), if known.
        resolved_at: when it ended; set on a resolved alert.
    """

    key: str = attrs.field(validator=_check_key)
    severity: Severity = attrs.field(converter=_alert_severity)
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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        """The alert that :meth:`to_dict` described (used by the spool)."""
        return cls(
            key=data["key"],
            severity=Severity[data["severity"]]
            if isinstance(data["severity"], str)
            else data["severity"],
            summary=data.get("summary", ""),
            details=data.get("details", ""),
            labels=data.get("labels") or {},
            started_at=_parse_time(data.get("started_at")),
            resolved_at=_parse_time(data.get("resolved_at")),
        )


def _parse_time(value: object) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def parse_severity(value: object, field: str) -> Severity:
    if isinstance(value, Severity):
        return value
    if isinstance(value, str) and value.upper() in Severity.__members__:
        return Severity[value.upper()]
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return Severity(value)
        except ValueError:
            pass
    raise ConfigError(field, value, "a Severity (LOW, MEDIUM, HIGH or CRITICAL)")


def _min_severity(value: object) -> Severity | None:
    return None if value is None else parse_severity(value, "matcher.min_severity")


def _max_severity(value: object) -> Severity | None:
    return None if value is None else parse_severity(value, "matcher.max_severity")


def _labels(value: object, field: str = "labels") -> Mapping[str, str]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(field, value, "a mapping of label name to string value")
    return MappingProxyType(dict(value))


def _matcher_labels(value: object) -> Mapping[str, str]:
    return _labels(value, "matcher.labels")


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _alert_tuple(value: Iterable[Alert]) -> tuple[Alert, ...]:
    return tuple(value)


def alert_signature(alert: Alert) -> tuple[Any, ...]:
    return (
        alert.severity,
        alert.summary,
        alert.details,
        tuple(sorted(alert.labels.items())),
        alert.firing,
    )


# --------------------------------------------------------------------------------------
# matchers, routes, inhibition, silences


@attrs.frozen(slots=True)
class Matcher:
    """Selects alerts by labels (exact values), severity range and key.

    Every given condition must hold; an empty matcher matches every alert.

    >>> m = Matcher({"session": "photos"}, min_severity=Severity.HIGH)
    >>> m.matches(Alert("a", Severity.CRITICAL, "x", labels={"session": "photos"}))
    True
    >>> m.matches(Alert("a", Severity.LOW, "x", labels={"session": "photos"}))
    False

    .. versionadded:: 0.1.0
    """

    labels: Mapping[str, str] = attrs.field(factory=dict, converter=_matcher_labels)
    min_severity: Severity | None = attrs.field(default=None, converter=_min_severity)
    max_severity: Severity | None = attrs.field(default=None, converter=_max_severity)
    key: str | None = None

    def matches(self, alert: Alert) -> bool:
        if self.key is not None and alert.key != self.key:
            return False
        if self.min_severity is not None and alert.severity < self.min_severity:
            return False
        if self.max_severity is not None and alert.severity > self.max_severity:
            return False
        labels = alert.labels
        return all(labels.get(k) == v for k, v in self.labels.items())


def _matcher(value: object, field: str) -> Matcher:
    if isinstance(value, Matcher):
        return value
    if isinstance(value, Mapping):
        return Matcher(_labels(value, field))
    raise ConfigError(field, value, "a Matcher or a mapping of labels")


def check_sinks(value: object, field: str) -> tuple[Sink, ...]:
    items: Sequence[object]
    if hasattr(value, "emit") or hasattr(value, "send"):
        items = [value]
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise ConfigError(field, value, "a sink or a list of sinks (objects with emit())")
    for s in items:
        if not (callable(getattr(s, "emit", None)) or callable(getattr(s, "send", None))):
            raise ConfigError(field, s, "a sink (an object with emit(event))")
    return tuple(items)


def _route_sinks(value: object) -> tuple[Sink, ...]:
    return check_sinks(value, "route.sinks")


def _route_match(value: object) -> Matcher:
    return _matcher(value, "route.match")


def _inhibit_source(value: object) -> Matcher:
    return _matcher(value, "inhibit.source")


def _inhibit_target(value: object) -> Matcher:
    return _matcher(value, "inhibit.target")


@attrs.frozen(slots=True)
class Route:
    """A label route: alerts that ``match`` go to ``sinks``.

    Label routes are tried in order before the severity routes. The first matching
    route takes the alert; with ``continue_=True`` the alert goes on to the next
    matching label routes and to its severity route as well.

    >>> r = Route([], match={"team": "db"}, name="dba")
    >>> r.match.matches(Alert("k", "HIGH", "x", labels={"team": "db"}))
    True

    .. versionadded:: 0.1.0
    """

    sinks: tuple[Sink, ...] = attrs.field(converter=_route_sinks)
    match: Matcher = attrs.field(factory=Matcher, converter=_route_match)
    name: str = ""
    continue_: bool = False


@attrs.frozen(slots=True)
class InhibitRule:
    """While an alert matching ``source`` fires, alerts matching ``target`` are muted
    when they carry the same values for every label in ``equal`` (both must have them).

    The default rule (:data:`DEFAULT_INHIBIT_RULES`): a CRITICAL alert of a session (a
    "backup halted") mutes the lower alerts of that session (its throttle warnings).

    .. versionadded:: 0.1.0
    """

    source: Matcher = attrs.field(converter=_inhibit_source)
    target: Matcher = attrs.field(converter=_inhibit_target)
    equal: tuple[str, ...] = attrs.field(default=("session",), converter=_str_tuple)

    def inhibits(self, source: Alert, target: Alert) -> bool:
        if source.key == target.key or not source.firing:
            return False
        if not (self.source.matches(source) and self.target.matches(target)):
            return False
        sl, tl = source.labels, target.labels
        for name in self.equal:
            value = sl.get(name)
            if value is None or tl.get(name) != value:
                return False
        return True


DEFAULT_INHIBIT_RULES: tuple[InhibitRule, ...] = (
    InhibitRule(
        source=Matcher(min_severity=Severity.CRITICAL),
        target=Matcher(max_severity=Severity.HIGH),
        equal=("session",),
    ),
)
"""A CRITICAL alert mutes the lower alerts of the same ``session`` label."""


@attrs.frozen(slots=True)
class Silence:
    """A silence: alerts that ``matcher`` matches are not notified until ``ends_at``.

    ``ends_at`` is on the dispatcher clock's ``monotonic()`` scale; ``until`` is the
    same instant as a datetime, for people.

    .. versionadded:: 0.1.0
    """

    id: str
    matcher: Matcher
    ends_at: float
    until: datetime
    comment: str = ""

    def active(self, now: float) -> bool:
        return now < self.ends_at


# --------------------------------------------------------------------------------------
# notifications


@attrs.frozen(slots=True)
class Notification:
    """One message to a route's sinks: a group of alerts sent together.

    A burst of alerts with the same group labels inside ``group_wait`` becomes one
    notification. ``alerts`` holds the group's firing alerts and the ones resolved
    since the last notification (each once).

    Attributes:
        group_key: the route and the group labels, e.g. ``HIGH{session="photos"}``.
        route: the route's name (a severity name for severity routes).
        alerts: the alerts, oldest first.
        labels: the group labels.
        created_at: when the dispatcher decided to send it.
        repeat: True for a repeat of an unchanged group (``repeat_interval``).
        acknowledged: keys of the firing alerts that were acknowledged.
        id: unique; stays the same across retries and restarts (receivers may
            deduplicate on it; the webhook sink sends it as ``webhook-id``).

    >>> n = Notification("HIGH{}", "HIGH", (Alert("a", "HIGH", "slow"),))
    >>> n.kind, n.severity.name, n.status
    ('notification', 'HIGH', 'firing')

    .. versionadded:: 0.1.0
    """

    group_key: str
    route: str
    alerts: tuple[Alert, ...] = attrs.field(converter=_alert_tuple)
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=_freeze)
    created_at: datetime | None = attrs.field(default=None, validator=_check_aware)
    repeat: bool = False
    acknowledged: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    id: str = attrs.field(factory=lambda: uuid.uuid4().hex)

    @property
    def kind(self) -> str:
        return "notification"

    @property
    def severity(self) -> Severity:
        """The highest severity among the alerts."""
        return max((a.severity for a in self.alerts), default=Severity.LOW)

    @property
    def status(self) -> str:
        """``"firing"`` while any alert fires, else ``"resolved"``."""
        return "firing" if any(a.firing for a in self.alerts) else "resolved"

    @property
    def firing(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.firing)

    @property
    def resolved(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if not a.firing)

    @property
    def title(self) -> str:
        """One line: ``[FIRING:3] HIGH backup throttled (+2 more)``."""
        firing = self.firing
        head = firing[0] if firing else self.alerts[0] if self.alerts else None
        if head is None:
            return f"[{self.status.upper()}] {self.group_key}"
        more = f" (+{len(self.alerts) - 1} more)" if len(self.alerts) > 1 else ""
        count = len(firing) if firing else len(self.alerts)
        return f"[{self.status.upper()}:{count}] {self.severity.name} {head.summary}{more}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "notification",
            "id": self.id,
            "group_key": self.group_key,
            "route": self.route,
            "status": self.status,
            "severity": self.severity.name,
            "title": self.title,
            "labels": dict(self.labels),
            "created_at": None if self.created_at is None else self.created_at.isoformat(),
            "repeat": self.repeat,
            "acknowledged": list(self.acknowledged),
            "alerts": [a.to_dict() for a in self.alerts],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Notification:
        """The notification that :meth:`to_dict` described (used by the spool)."""
        return cls(
            group_key=data["group_key"],
            route=data["route"],
            alerts=tuple(Alert.from_dict(a) for a in data.get("alerts", ())),
            labels=data.get("labels") or {},
            created_at=_parse_time(data.get("created_at")),
            repeat=bool(data.get("repeat", False)),
            acknowledged=tuple(data.get("acknowledged", ())),
            id=data["id"],
        )


# --------------------------------------------------------------------------------------
# the pure core
