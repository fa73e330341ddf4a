"""AlertPolicy: Prometheus Alertmanager's manners as a pure core on a clock.

It does no I/O and starts no threads; :class:`~wedguard.runtime.alerts.AlertDispatcher`
runs it with a queue, a worker thread, delivery lanes and a disk spool.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from wedguard import _checks
from wedguard.clock import Clock, check_clock
from wedguard.errors import ConfigError
from wedguard.policy.alerting.values import (
    DEFAULT_INHIBIT_RULES,
    Alert,
    InhibitRule,
    Matcher,
    Notification,
    Route,
    Severity,
    Silence,
    _matcher,
    alert_signature,
    parse_severity,
)
from wedguard.units import parse_duration

__all__ = ["AlertPolicy"]


class _State:
    __slots__ = ("acked", "alert", "escalated", "fired", "groups")

    def __init__(self, alert: Alert, fired: float) -> None:
        self.alert = alert
        self.fired = fired
        self.acked = False
        self.escalated = False
        self.groups: dict[str, Alert] = {}  # group key -> the version placed there


class _Group:
    __slots__ = ("created", "key", "labels", "last_sent", "last_sig", "members", "route", "sent")

    def __init__(self, key: str, route: str, labels: dict[str, str], created: float) -> None:
        self.key = key
        self.route = route
        self.labels = labels
        self.created = created
        self.members: dict[str, Alert] = {}
        self.sent = False
        self.last_sent = -math.inf
        self.last_sig: dict[str, tuple[Any, ...]] = {}


def _duration(value: object, field: str, *, allow_zero: bool) -> float:
    if isinstance(value, bool):
        raise ConfigError(field, value, "a duration in seconds or text such as '30s'")
    seconds = parse_duration(value, field=field)  # type: ignore[arg-type]
    if not (seconds > 0 or (allow_zero and seconds == 0)) or math.isinf(seconds):
        raise ConfigError(field, value, "a finite duration " + (">= 0" if allow_zero else "> 0"))
    return seconds


def _silence_seconds(duration: object, until: datetime | None, clock: Clock) -> float:
    if (duration is None) == (until is None):
        raise ConfigError("duration", duration, "a duration or until=, exactly one of them")
    if until is None:
        return _duration(duration, "duration", allow_zero=False)
    if not isinstance(until, datetime) or until.tzinfo is None or until.utcoffset() is None:
        raise ConfigError("until", until, "an aware datetime")
    seconds = (until - clock.now()).total_seconds()
    if seconds <= 0:
        raise ConfigError("until", until, "an instant in the future")
    return seconds


class AlertPolicy:
    """The dispatcher's pure core: decides what to send and when, on a clock.

    It does no I/O and starts no thread: feed it :meth:`fire`, :meth:`resolve` and
    :meth:`acknowledge`, then :meth:`poll` for the notifications due now and
    :meth:`next_wakeup` for when to poll again. :class:`AlertDispatcher` wraps it
    with a queue, a worker thread, sinks and a spool.

    The rules, per group (a route and the values of the ``group_by`` labels), as in
    Prometheus Alertmanager:

    * A new group waits ``group_wait`` so a burst becomes one notification.
    * After that, a change (a new alert, a changed one, a resolved one) is sent at
      the earliest ``group_interval`` after the group's previous notification.
    * An unchanged group with firing, unacknowledged alerts is sent again every
      ``repeat_interval``.
    * A resolved alert is sent once, in the group's next notification, then forgotten.
    * ``acknowledge(key)`` stops the repeats and the escalation of that alert (its
      resolution is still sent).
    * With ``escalate_after``, an unacknowledged HIGH alert still firing after that
      long is also sent to the CRITICAL route (as a CRITICAL copy labelled
      ``escalated_from="HIGH"``).
    * Inhibited alerts (see :class:`InhibitRule`) and silenced ones are left out of
      notifications; when the inhibition or silence ends they count as new.

    Routing: an alert goes to its label routes (see :class:`Route`), then to the route
    of its own severity. A severity with no route falls through to the nearest *lower*
    severity that has one (a CRITICAL alert reaches the HIGH route when there is no
    CRITICAL route); it never also goes to lower routes. An alert below every route
    goes nowhere and is counted in :attr:`unrouted`.

    Examples:
        >>> from wedguard.testing import FakeClock
        >>> clock = FakeClock()
        >>> core = AlertPolicy(routes=[Severity.HIGH], group_wait=30, clock=clock)
        >>> for i in range(50):
        ...     core.fire(Alert(f"disk{i}", Severity.HIGH, "disk busy"))
        >>> core.poll()
        []
        >>> clock.advance(30)
        >>> [len(n.alerts) for n in core.poll()]
        [50]

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        routes: Mapping[Any, object] | Iterable[Any] = (),
        *,
        label_routes: Sequence[Route] = (),
        group_by: Sequence[str] = ("session",),
        group_wait: float | str = 30.0,
        group_interval: float | str = 300.0,
        repeat_interval: float | str = 4 * 3600.0,
        escalate_after: float | str | None = None,
        inhibit_rules: Sequence[InhibitRule] = DEFAULT_INHIBIT_RULES,
        clock: Clock | None = None,
    ) -> None:
        keys = list(routes.keys()) if isinstance(routes, Mapping) else list(routes)
        self._severity_routes = sorted({parse_severity(k, "routes") for k in keys})
        if not isinstance(label_routes, (list, tuple)) or not all(
            isinstance(r, Route) for r in label_routes
        ):
            raise ConfigError("label_routes", label_routes, "a list of Route")
        names: list[str] = []
        for i, r in enumerate(label_routes):
            name = r.name or f"route{i}"
            if name in names or name in Severity.__members__:
                raise ConfigError("label_routes", name, "unique route names, not severity names")
            names.append(name)
        self._label_routes = [
            (name, r.match, r.continue_) for name, r in zip(names, label_routes, strict=True)
        ]
        if not self._severity_routes and not self._label_routes:
            raise ConfigError("routes", routes, "at least one route (a severity or label route)")
        labels = _checks.items(group_by, "group_by", "a list of label names")
        if not all(isinstance(g, str) for g in labels):
            raise ConfigError("group_by", group_by, "a list of label names")
        self.group_by = labels
        self.group_wait = _duration(group_wait, "group_wait", allow_zero=True)
        self.group_interval = _duration(group_interval, "group_interval", allow_zero=False)
        self.repeat_interval = _duration(repeat_interval, "repeat_interval", allow_zero=False)
        self.escalate_after = (
            None
            if escalate_after is None
            else _duration(escalate_after, "escalate_after", allow_zero=True)
        )
        if not isinstance(inhibit_rules, (list, tuple)) or not all(
            isinstance(r, InhibitRule) for r in inhibit_rules
        ):
            raise ConfigError("inhibit_rules", inhibit_rules, "a list of InhibitRule")
        self.inhibit_rules = tuple(inhibit_rules)
        self._clock = check_clock(clock)
        self._alerts: dict[str, _State] = {}
        self._groups: dict[str, _Group] = {}
        self._silences: dict[str, Silence] = {}
        self.unrouted = 0
        # the rules and, per rule, the firing alerts its source matches (None: to
        # recompute after an alert fires or resolves)
        self._inhibitors: tuple[Sequence[InhibitRule], list[list[Alert]]] | None = None

    # -- inputs ----------------------------------------------------------------------

    @property
    def label_route_names(self) -> list[str]:
        """The names this policy gave the label routes, in the order they were given."""
        return [name for name, _match, _cont in self._label_routes]

    def fire(self, alert: Alert) -> None:
        """An alert fires (or fires again, possibly changed). Same key, same alert."""
        if not isinstance(alert, Alert):
            raise ConfigError("alert", alert, "an Alert")
        if not alert.firing:
            self.resolve(alert.key, at=alert.resolved_at)
            return
        st = self._alerts.get(alert.key)
        if alert.started_at is None:
            started = st.alert.started_at if st is not None else None
            alert = attrs.evolve(alert, started_at=started or self._clock.now())
        if st is None:
            st = _State(alert, self._clock.monotonic())
            self._alerts[alert.key] = st
        else:
            st.alert = alert
        self._inhibitors = None
        self._place(st)

    def resolve(self, key: str, *, at: datetime | None = None) -> bool:
        """The alert ``key`` is over; False if no such alert fires."""
        st = self._alerts.pop(key, None)
        if st is None:
            return False
        self._inhibitors = None
        at = at or self._clock.now()
        for gkey, version in st.groups.items():
            group = self._groups.get(gkey)
            if group is not None and key in group.members:
                group.members[key] = version.resolved(at)
        return True

    def acknowledge(self, key: str) -> bool:
        """Someone is on it: no more repeats or escalation for ``key``."""
        st = self._alerts.get(key)
        if st is None:
            return False
        st.acked = True
        return True

    def silence(
        self,
        matcher: Matcher | Mapping[str, str],
        duration: float | str | None = None,
        *,
        until: datetime | None = None,
        comment: str = "",
        id: str | None = None,
    ) -> Silence:
        """Mute the alerts ``matcher`` selects for ``duration`` (seconds or text such
        as ``"2h"``) or ``until`` an aware datetime; returns the silence."""
        m = _matcher(matcher, "matcher")
        seconds = _silence_seconds(duration, until, self._clock)
        s = Silence(
            id=id or uuid.uuid4().hex,
            matcher=m,
            ends_at=self._clock.monotonic() + seconds,
            until=self._clock.now() + timedelta(seconds=seconds),
            comment=comment,
        )
        self._silences[s.id] = s
        return s

    def expire_silence(self, silence_id: str) -> bool:
        """End a silence now; False if there is no such silence."""
        return self._silences.pop(silence_id, None) is not None

    # -- state -----------------------------------------------------------------------

    @property
    def alerts(self) -> list[Alert]:
        """The alerts firing now."""
        return [st.alert for st in self._alerts.values()]

    @property
    def silences(self) -> list[Silence]:
        """The silences still in force."""
        now = self._clock.monotonic()
        return [s for s in self._silences.values() if s.active(now)]

    def acknowledged(self, key: str) -> bool:
        st = self._alerts.get(key)
        return st is not None and st.acked

    # -- routing ---------------------------------------------------------------------

    def _severity_route(self, severity: Severity) -> str | None:
        best = None
        for s in self._severity_routes:
            if s <= severity:
                best = s
        return None if best is None else best.name

    def routes_for(self, alert: Alert) -> list[str]:
        """The names of the routes ``alert`` goes to."""
        names = []
        for name, match, cont in self._label_routes:
            if match.matches(alert):
                names.append(name)
                if not cont:
                    return names
        route = self._severity_route(alert.severity)
        if route is not None:
            names.append(route)
        return names

    def _group_for(self, route: str, alert: Alert) -> _Group:
        labels = {name: alert.labels.get(name, "") for name in self.group_by}
        key = route + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
        group = self._groups.get(key)
        if group is None:
            group = _Group(key, route, labels, self._clock.monotonic())
            self._groups[key] = group
        return group

    def _place(self, st: _State) -> None:
        alert = st.alert
        wanted: dict[str, Alert] = {}
        routes = self.routes_for(alert)
        if not routes:
            self.unrouted += 1
        for route in routes:
            wanted[self._group_for(route, alert).key] = alert
        if st.escalated:
            target = self._severity_route(Severity.CRITICAL)
            if target is not None and target not in routes:
                copy = attrs.evolve(
                    alert,
                    severity=Severity.CRITICAL,
                    labels={**alert.labels, "escalated_from": alert.severity.name},
                )
                wanted[self._group_for(target, copy).key] = copy
        for gkey in st.groups.keys() - wanted.keys():
            group = self._groups.get(gkey)
            if group is not None:
                group.members.pop(alert.key, None)
        for gkey, version in wanted.items():
            self._groups[gkey].members[alert.key] = version
        st.groups = wanted

    # -- visibility ------------------------------------------------------------------

    def _silenced(self, alert: Alert, now: float) -> bool:
        return any(s.active(now) and s.matcher.matches(alert) for s in self._silences.values())

    def _inhibited(self, alert: Alert) -> bool:
        rules = self.inhibit_rules
        if not rules:
            return False
        # the sources are looked up once per change, not once per alert looked at
        cached = self._inhibitors
        if cached is None or cached[0] is not rules:
            firing = [st.alert for st in self._alerts.values()]
            cached = (rules, [[a for a in firing if r.source.matches(a)] for r in rules])
            self._inhibitors = cached
        for rule, sources in zip(rules, cached[1], strict=True):
            if not rule.target.matches(alert):
                continue
            for source in sources:
                if rule.inhibits(source, alert):
                    return True
        return False

    def _visible(self, group: _Group, now: float) -> tuple[list[Alert], list[Alert]]:
        firing: list[Alert] = []
        resolved: list[Alert] = []
        for alert in group.members.values():
            if self._silenced(alert, now) or self._inhibited(alert):
                continue
            (firing if alert.firing else resolved).append(alert)
        return firing, resolved

    def _due(self, group: _Group, firing: list[Alert], resolved: list[Alert]) -> tuple[float, bool]:
        """When ``group`` should next be sent (inf: never) and whether that is a repeat."""
        if not firing and not resolved:
            return math.inf, False
        if not group.sent:
            return group.created + self.group_wait, False
        if resolved or {a.key: alert_signature(a) for a in firing} != group.last_sig:
            return group.last_sent + self.group_interval, False
        for a in firing:
            st = self._alerts.get(a.key)
            if st is not None and not st.acked:
                return group.last_sent + self.repeat_interval, True
        return math.inf, False

    # -- outputs ---------------------------------------------------------------------

    def poll(self) -> list[Notification]:
        """The notifications due now (call again at :meth:`next_wakeup`)."""
        return self._collect(force=False)

    def flush(self) -> list[Notification]:
        """Everything pending now, also what ``group_wait``/``group_interval`` still
        hold (repeats keep their own schedule)."""
        return self._collect(force=True)

    def next_wakeup(self) -> float | None:
        """The ``monotonic()`` time at which :meth:`poll` may have something, or None."""
        now = self._clock.monotonic()
        best = math.inf
        for group in self._groups.values():
            firing, resolved = self._visible(group, now)
            due, _ = self._due(group, firing, resolved)
            best = min(best, due)
        if self.escalate_after is not None:
            for st in self._alerts.values():
                if self._escalates(st):
                    best = min(best, st.fired + self.escalate_after)
        for s in self._silences.values():
            best = min(best, s.ends_at)
        return None if math.isinf(best) else best

    def unsent(self) -> list[Alert]:
        """The firing alerts that no notification has told in their current form yet,
        leaving out the silenced, the inhibited and the unrouted: what a crash now
        would lose. :class:`AlertDispatcher` keeps them in its spool.

        Example::

            >>> from wedguard.testing import FakeClock
            >>> core = AlertPolicy([Severity.HIGH], group_wait=30, clock=FakeClock())
            >>> core.fire(Alert("backup/halt", Severity.HIGH, "halted"))
            >>> [a.key for a in core.unsent()]
            ['backup/halt']
            >>> _ = core.flush()
            >>> core.unsent()
            []
        """
        now = self._clock.monotonic()
        out: list[Alert] = []
        for key, st in self._alerts.items():
            alert = st.alert
            if not st.groups or self._silenced(alert, now) or self._inhibited(alert):
                continue
            sig = alert_signature(alert)
            told = False
            for gkey in st.groups:
                group = self._groups.get(gkey)
                if group is not None and group.last_sig.get(key) == sig:
                    told = True
                    break
            if not told:
                out.append(alert)
        return out

    def _escalates(self, st: _State) -> bool:
        return not st.escalated and not st.acked and st.alert.severity == Severity.HIGH

    def _collect(self, *, force: bool) -> list[Notification]:
        now = self._clock.monotonic()
        if self.escalate_after is not None:
            for st in self._alerts.values():
                if self._escalates(st) and now >= st.fired + self.escalate_after:
                    st.escalated = True
                    self._place(st)
        for sid in [sid for sid, s in self._silences.items() if not s.active(now)]:
            del self._silences[sid]
        out: list[Notification] = []
        for group in list(self._groups.values()):
            note = self._step(group, now, force)
            if note is not None:
                out.append(note)
        return out

    def _step(self, group: _Group, now: float, force: bool) -> Notification | None:
        members = group.members
        for key in [k for k, a in members.items() if not a.firing]:
            a = members[key]
            if self._silenced(a, now) or self._inhibited(a):
                del members[key]  # resolved while muted: nobody is told
        if not members:
            del self._groups[group.key]
            return None
        firing, resolved = self._visible(group, now)
        if not firing and not resolved:
            if group.sent:
                group.last_sig = {}
            return None
        due, repeat = self._due(group, firing, resolved)
        if not (now >= due or (force and not repeat and not math.isinf(due))):
            return None
        acked = tuple(
            a.key for a in firing if (st := self._alerts.get(a.key)) is not None and st.acked
        )
        note = Notification(
            group_key=group.key,
            route=group.route,
            alerts=tuple(firing + resolved),
            labels=group.labels,
            created_at=self._clock.now(),
            repeat=repeat,
            acknowledged=acked,
        )
        group.sent = True
        group.last_sent = now
        group.last_sig = {a.key: alert_signature(a) for a in firing}
        for a in resolved:
            del members[a.key]
        if not members:
            del self._groups[group.key]
        return note

    def __repr__(self) -> str:
        return (
            f"AlertPolicy(routes={[s.name for s in self._severity_routes]}, "
            f"firing={len(self._alerts)}, groups={len(self._groups)})"
        )


# --------------------------------------------------------------------------------------
# the dispatcher: a queue, a worker, one delivery lane per sink, a spool
