"""The dispatcher's timing rules, on the pure AlertPolicy core and a fake clock."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import wedguard as wg
from wedguard.interfaces import Event
from wedguard.policy.alerting import (
    DEFAULT_INHIBIT_RULES,
    Alert,
    AlertPolicy,
    InhibitRule,
    Matcher,
    Notification,
    Route,
    Severity,
)
from wedguard.testing import FakeClock

HIGH, CRITICAL, LOW, MEDIUM = Severity.HIGH, Severity.CRITICAL, Severity.LOW, Severity.MEDIUM


def core(clock: FakeClock, **kw: object) -> AlertPolicy:
    kw.setdefault("routes", [LOW, MEDIUM, HIGH, CRITICAL])
    kw.setdefault("group_wait", 30)
    kw.setdefault("group_interval", 300)
    kw.setdefault("repeat_interval", 3600)
    return AlertPolicy(clock=clock, **kw)  # type: ignore[arg-type]


def a(key: str, sev: Severity = HIGH, summary: str = "x", **labels: str) -> Alert:
    return Alert(key, sev, summary, labels=labels)


def test_unsent_leaves_out_the_told_the_silenced_and_the_unrouted(clock: FakeClock) -> None:
    c = core(clock, routes=[HIGH])
    c.fire(a("told", summary="v1", session="s1"))
    c.fire(a("muted", session="s2"))
    c.fire(a("nowhere", LOW, session="s3"))  # no LOW route
    c.silence({"session": "s2"}, "1h")
    assert [x.key for x in c.unsent()] == ["told"]
    assert c.flush()
    assert c.unsent() == []
    c.fire(a("told", summary="v2", session="s1"))  # changed: the receivers must hear again
    assert [x.summary for x in c.unsent()] == ["v2"]


def test_burst_of_50_becomes_one_notification(clock: FakeClock) -> None:
    """50 breaches with the same group labels inside group_wait: one notification."""
    c = core(clock)
    for i in range(50):
        c.fire(a(f"k{i}", session="photos"))
        clock.advance(0.5)
    assert c.poll() == []
    clock.advance(30 - 25)
    notes = c.poll()
    assert len(notes) == 1
    assert len(notes[0].alerts) == 50
    assert notes[0].group_key == 'HIGH{session="photos"}'
    assert c.poll() == []


def test_group_wait_is_counted_from_the_first_alert(clock: FakeClock) -> None:
    c = core(clock)
    c.fire(a("k1"))
    assert c.next_wakeup() == 30
    clock.advance(29.9)
    assert c.poll() == []
    clock.advance(0.1)
    assert [n.route for n in c.poll()] == ["HIGH"]


def test_different_group_labels_make_different_notifications(clock: FakeClock) -> None:
    c = core(clock)
    c.fire(a("k1", session="photos"))
    c.fire(a("k2", session="db"))
    clock.advance(30)
    notes = c.poll()
    assert sorted(n.labels["session"] for n in notes) == ["db", "photos"]


def test_change_waits_for_group_interval(clock: FakeClock) -> None:
    c = core(clock)
    c.fire(a("k1"))
    clock.advance(30)
    assert len(c.poll()) == 1
    clock.advance(10)
    c.fire(a("k2"))
    assert c.poll() == []
    assert c.next_wakeup() == 30 + 300
    clock.advance(289.9)
    assert c.poll() == []
    clock.advance(0.1)
    (note,) = c.poll()
    assert [x.key for x in note.alerts] == ["k1", "k2"]
    assert not note.repeat


def test_duplicate_fire_is_deduplicated(clock: FakeClock) -> None:
    c = core(clock)
    c.fire(a("k1"))
    clock.advance(30)
    assert len(c.poll()) == 1
    for _ in range(10):
        c.fire(a("k1"))
        clock.advance(30)
        assert c.poll() == []


def test_changed_alert_is_a_change(clock: FakeClock) -> None:
    c = core(clock)
    c.fire(a("k1", summary="API +6 %"))
    clock.advance(30)
    c.poll()
    c.fire(a("k1", summary="API +9 %"))
    clock.advance(300)
    (note,) = c.poll()
    assert note.alerts[0].summary == "API +9 %"


def test_repeat_interval_for_unchanged_firing_alerts(clock: FakeClock) -> None:
    c = core(clock, repeat_interval=1000)
    c.fire(a("k1"))
    clock.advance(30)
    c.poll()
    clock.advance(999)
    assert c.poll() == []
    clock.advance(1)
    (note,) = c.poll()
    assert note.repeat
    clock.advance(1000)
    assert [n.repeat for n in c.poll()] == [True]


def test_resolved_notice_is_sent_once(clock: FakeClock) -> None:
    c = core(clock)
    c.fire(a("k1"))
    clock.advance(30)
    c.poll()
    assert c.resolve("k1")
    assert not c.resolve("k1")
    clock.advance(300)
    (note,) = c.poll()
    assert note.status == "resolved"
    assert note.alerts[0].resolved_at == clock.now() - __import__("datetime").timedelta(seconds=300)
    for _ in range(20):
        clock.advance(3600)
        assert c.poll() == []
    assert c.next_wakeup() is None


def test_resolved_alert_leaves_the_group_but_others_repeat(clock: FakeClock) -> None:
    c = core(clock)
    c.fire(a("k1"))
    c.fire(a("k2"))
    clock.advance(30)
    c.poll()
    c.resolve("k1")
    clock.advance(300)
    (note,) = c.poll()
    assert [(x.key, x.firing) for x in note.alerts] == [("k2", True), ("k1", False)]
    assert note.status == "firing"
    clock.advance(3600)
    (rep,) = c.poll()
    assert [x.key for x in rep.alerts] == ["k2"]


def test_acknowledge_stops_repeats_but_not_the_resolution(clock: FakeClock) -> None:
    c = core(clock)
    c.fire(a("k1"))
    clock.advance(30)
    c.poll()
    assert c.acknowledge("k1")
    assert not c.acknowledge("nope")
    for _ in range(5):
        clock.advance(3600)
        assert c.poll() == []
    c.resolve("k1")
    clock.advance(300)
    (note,) = c.poll()
    assert note.status == "resolved"


def test_acknowledged_alerts_are_marked(clock: FakeClock) -> None:
    c = core(clock)
    c.fire(a("k1"))
    c.acknowledge("k1")
    clock.advance(30)
    (note,) = c.poll()
    assert note.acknowledged == ("k1",)


def test_escalation_sends_an_unacknowledged_high_to_the_critical_route(clock: FakeClock) -> None:
    c = core(clock, routes=[HIGH, CRITICAL], escalate_after=600)
    c.fire(a("k1", session="photos"))
    clock.advance(30)
    assert [n.route for n in c.poll()] == ["HIGH"]
    assert c.next_wakeup() == 600
    clock.advance(570)
    c.poll()
    clock.advance(30)
    (note,) = c.poll()
    assert note.route == "CRITICAL"
    assert note.alerts[0].severity == CRITICAL
    assert note.alerts[0].labels["escalated_from"] == "HIGH"
    # resolving reaches both routes
    c.resolve("k1")
    clock.advance(300)
    assert sorted(n.route for n in c.poll()) == ["CRITICAL", "HIGH"]


def test_acknowledged_high_is_not_escalated(clock: FakeClock) -> None:
    c = core(clock, routes=[HIGH, CRITICAL], escalate_after=600)
    c.fire(a("k1"))
    clock.advance(30)
    c.poll()
    c.acknowledge("k1")
    clock.advance(10_000)
    assert all(n.route != "CRITICAL" for n in c.poll())


def test_inhibition_critical_halt_mutes_throttle_alerts_of_the_same_session(
    clock: FakeClock,
) -> None:
    c = core(clock)
    c.fire(a("photos/throttle", MEDIUM, "throttled", session="photos", verdict="THROTTLE"))
    c.fire(a("db/throttle", MEDIUM, "throttled", session="db", verdict="THROTTLE"))
    c.fire(a("photos/halt", CRITICAL, "backup halted", session="photos", verdict="HALT"))
    clock.advance(30)
    notes = {n.group_key: n for n in c.poll()}
    assert [x.key for x in notes['CRITICAL{session="photos"}'].alerts] == ["photos/halt"]
    assert [x.key for x in notes['MEDIUM{session="db"}'].alerts] == ["db/throttle"]
    assert 'MEDIUM{session="photos"}' not in notes
    # the halt ends: the muted alert is now news
    c.resolve("photos/halt")
    clock.advance(300)
    keys = {n.group_key: [x.key for x in n.alerts] for n in c.poll()}
    assert keys['MEDIUM{session="photos"}'] == ["photos/throttle"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["k0", "k1", "k2", "k3", "k4"]),
            st.sampled_from([LOW, HIGH, CRITICAL, None]),  # None: resolve
            st.sampled_from(["s1", "s2"]),
        ),
        max_size=25,
    )
)
def test_inhibited_agrees_with_every_rule_against_every_firing_alert(
    ops: list[tuple[str, Severity | None, str]],
) -> None:
    """The inhibiting alerts are looked up once per change; the answer is the plain one."""
    rules = [*DEFAULT_INHIBIT_RULES, InhibitRule({"team": "db"}, {}, equal=())]
    c = core(FakeClock(), inhibit_rules=rules)
    for key, sev, session in ops:
        if sev is None:
            c.resolve(key)
        else:
            labels = {"session": session, **({"team": "db"} if key == "k4" else {})}
            c.fire(Alert(key, sev, "x", labels=labels))
        for target in c.alerts:
            plain = any(r.inhibits(src, target) for r in rules for src in c.alerts)
            assert c._inhibited(target) is plain


def test_custom_inhibit_rule(clock: FakeClock) -> None:
    rule = InhibitRule(
        source={"verdict": "HALT"}, target={"verdict": "THROTTLE"}, equal=("session",)
    )
    c = core(clock, inhibit_rules=[rule])
    c.fire(a("t", HIGH, session="s", verdict="THROTTLE"))
    c.fire(a("h", HIGH, session="s", verdict="HALT"))
    clock.advance(30)
    (note,) = c.poll()
    assert [x.key for x in note.alerts] == ["h"]


def test_no_inhibition_without_the_equal_label(clock: FakeClock) -> None:
    c = core(clock)
    c.fire(a("t", MEDIUM))
    c.fire(a("h", CRITICAL))
    clock.advance(30)
    assert sorted(n.route for n in c.poll()) == ["CRITICAL", "MEDIUM"]


def test_silence_mutes_until_it_expires(clock: FakeClock) -> None:
    c = core(clock)
    s = c.silence({"session": "photos"}, "1h", comment="maintenance")
    c.fire(a("k1", session="photos"))
    c.fire(a("k2", session="db"))
    clock.advance(30)
    assert [n.labels["session"] for n in c.poll()] == ["db"]
    assert c.next_wakeup() == s.ends_at
    clock.advance(3600 - 30)
    (note,) = c.poll()
    assert note.labels["session"] == "photos"
    assert c.silences == []


def test_silence_until_an_instant(clock: FakeClock) -> None:
    from datetime import timedelta

    c = core(clock)
    s = c.silence({}, until=clock.now() + timedelta(hours=2))
    assert s.ends_at == 7200
    with pytest.raises(wg.ConfigError) as err:
        c.silence({}, until=clock.now())
    assert err.value.field == "until"
    with pytest.raises(wg.ConfigError) as err:
        c.silence({})
    assert err.value.field == "duration"
    with pytest.raises(wg.ConfigError) as err:
        c.silence({}, "1h", until=clock.now() + timedelta(hours=2))
    assert err.value.field == "duration"


def test_expire_silence_early(clock: FakeClock) -> None:
    c = core(clock)
    s = c.silence(Matcher(key="k1"), 3600)
    c.fire(a("k1"))
    clock.advance(30)
    assert c.poll() == []
    assert c.expire_silence(s.id)
    assert not c.expire_silence(s.id)
    assert len(c.poll()) == 1


def test_alert_resolved_while_silenced_is_not_announced(clock: FakeClock) -> None:
    c = core(clock)
    c.fire(a("k1"))
    clock.advance(30)
    c.poll()
    c.silence({}, 3600)
    c.resolve("k1")
    clock.advance(300)
    assert c.poll() == []
    assert c.next_wakeup() is not None  # only the silence's end
    clock.advance(3600)
    assert c.poll() == []


def test_severity_routes_fall_through_to_the_nearest_lower_route(clock: FakeClock) -> None:
    c = core(clock, routes=[LOW, HIGH])
    assert c.routes_for(a("k", CRITICAL)) == ["HIGH"]
    assert c.routes_for(a("k", HIGH)) == ["HIGH"]
    assert c.routes_for(a("k", MEDIUM)) == ["LOW"]
    c2 = core(clock, routes=[HIGH])
    assert c2.routes_for(a("k", LOW)) == []
    c2.fire(a("k", LOW))
    assert c2.unrouted == 1


def test_label_routes_first_match_wins_unless_continue(clock: FakeClock) -> None:
    db = Route([], match={"team": "db"}, name="dba")
    all_ = Route([], match=Matcher(min_severity=HIGH), name="audit", continue_=True)
    c = core(clock, routes=[LOW], label_routes=[all_, db])
    assert c.routes_for(a("k", HIGH, team="db")) == ["audit", "dba"]
    assert c.routes_for(a("k", LOW, team="db")) == ["dba"]
    assert c.routes_for(a("k", HIGH)) == ["audit", "LOW"]


def test_flush_sends_what_group_wait_holds(clock: FakeClock) -> None:
    c = core(clock)
    c.fire(a("k1"))
    (note,) = c.flush()
    assert note.alerts[0].key == "k1"
    c.fire(a("k2"))
    assert len(c.flush()) == 1  # group_interval is not waited for either
    assert c.flush() == []  # repeats keep their schedule


def test_fire_of_a_resolved_alert_resolves(clock: FakeClock) -> None:
    c = core(clock)
    c.fire(a("k1"))
    c.fire(a("k1").resolved(clock.now()))
    assert c.alerts == []


def test_started_at_is_filled_in(clock: FakeClock) -> None:
    c = core(clock)
    clock.advance(5)
    c.fire(a("k1"))
    assert c.alerts[0].started_at == clock.now()


def test_notification_is_an_event_and_round_trips() -> None:
    n = Notification(
        'HIGH{session="p"}',
        "HIGH",
        (a("k1", HIGH), a("k2", CRITICAL).resolved(wg.SystemClock().now())),
        labels={"session": "p"},
    )
    assert isinstance(n, Event)
    assert n.kind == "notification"
    assert n.severity == CRITICAL
    assert n.status == "firing"
    d = n.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert Notification.from_dict(d) == n
    assert d["kind"] == "notification"
    assert len(d["alerts"]) == 2


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"group_wait": -1}, "group_wait"),
        ({"group_interval": 0}, "group_interval"),
        ({"repeat_interval": "soon"}, "repeat_interval"),
        ({"escalate_after": -5}, "escalate_after"),
        ({"routes": ["URGENT"]}, "routes"),
        ({"routes": []}, "routes"),
        ({"group_by": "session"}, "group_by"),
        ({"inhibit_rules": ["x"]}, "inhibit_rules"),
        ({"label_routes": [Route([], name="HIGH")]}, "label_routes"),
    ],
)
def test_bad_configuration_names_field_and_value(
    clock: FakeClock, kw: dict[str, object], field: str
) -> None:
    with pytest.raises(wg.ConfigError) as err:
        core(clock, **kw)
    assert err.value.field == field
    assert field in str(err.value)


def test_bad_alert_values() -> None:
    with pytest.raises(wg.ConfigError, match="severity"):
        Alert("k", "URGENT", "x")  # type: ignore[arg-type]
    with pytest.raises(wg.ConfigError, match=r"matcher\.labels"):
        Matcher({"a": 1})  # type: ignore[dict-item]
    with pytest.raises(wg.ConfigError, match=r"route\.sinks"):
        Route([object()])  # type: ignore[list-item]
    with pytest.raises(wg.ConfigError, match="alert"):
        AlertPolicy([HIGH]).fire("boom")  # type: ignore[arg-type]


# -- a reference model of the promises, checked against random sequences -------------

KEYS = [f"k{i}" for i in range(4)]


class DispatchMachine(RuleBasedStateMachine):
    """Random fire/resolve/acknowledge/time: within group_wait + group_interval of an
    alert (re)entering a route, that route's last notification lists it as firing;
    nothing resolved is announced twice or announced as firing again."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.core = AlertPolicy(
            [LOW, HIGH],
            group_by=(),
            group_wait=30,
            group_interval=300,
            repeat_interval=3600,
            inhibit_rules=(),
            clock=self.clock,
        )
        self.firing: dict[str, float] = {}  # key -> when it (re)fired
        self.severity: dict[str, Severity] = {}
        # (key, route): the route's receivers were last told the key fires
        self.notified: set[tuple[str, str]] = set()
        # (key, route) resolved; its notice is owed at most once
        self.resolved_open: set[tuple[str, str]] = set()
        self.resolved_told: set[tuple[str, str]] = set()

    def _poll(self) -> None:
        for note in self.core.poll():
            assert note.alerts
            firing = {x.key for x in note.alerts if x.firing}
            for key in KEYS:
                if key in firing:
                    self.notified.add((key, note.route))
                else:
                    self.notified.discard((key, note.route))
            for alert in note.alerts:
                if alert.firing:
                    assert alert.key in self.firing, f"{alert.key} announced firing after resolve"
                else:
                    told = (alert.key, note.route)
                    assert told not in self.resolved_told, f"{told} resolved twice"
                    assert told in self.resolved_open
                    self.resolved_told.add(told)
                    self.resolved_open.discard(told)

    @rule(key=st.sampled_from(KEYS), sev=st.sampled_from([LOW, HIGH]))
    def fire(self, key: str, sev: Severity) -> None:
        now = self.clock.monotonic()
        route = sev.name
        if key not in self.firing or self.severity[key] != sev:
            self.firing[key] = now  # (re)enters a route: its receivers must hear of it
        self.severity[key] = sev
        self.resolved_open.discard((key, route))
        self.resolved_told.discard((key, route))
        self.core.fire(Alert(key, sev, "x"))

    @precondition(lambda self: bool(self.firing))
    @rule(data=st.data())
    def resolve(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.firing)))
        del self.firing[key]
        self.resolved_open.add((key, self.severity[key].name))
        self.resolved_told.discard((key, self.severity[key].name))
        assert self.core.resolve(key)

    @rule(key=st.sampled_from(KEYS))
    def acknowledge(self, key: str) -> None:
        assert self.core.acknowledge(key) == (key in self.firing)

    @rule(dt=st.floats(min_value=0, max_value=4000))
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)
        self._poll()

    @rule()
    def poll_at_wakeup(self) -> None:
        wake = self.core.next_wakeup()
        if wake is not None:
            self.clock.advance(max(0.0, wake - self.clock.monotonic()))
        self._poll()

    @invariant()
    def every_firing_alert_is_known_in_time(self) -> None:
        now = self.clock.monotonic()
        for key, since in self.firing.items():
            if now - since > 30 + 300 + 1e-6:
                self._poll()
                told = (key, self.severity[key].name)
                assert told in self.notified, f"{key} firing since {since}, now {now}"

    @invariant()
    def unsent_covers_every_alert_no_notification_told_yet(self) -> None:
        """What a dispatcher spools (so a crash loses nothing): every firing alert its
        route has not heard of, and only firing alerts. (It may hold more: an alert
        that moved back to a route whose group ended is told again, and so spooled.)"""
        told = {key for key in self.firing if (key, self.severity[key].name) in self.notified}
        unsent = {x.key for x in self.core.unsent()}
        assert set(self.firing) - told <= unsent <= set(self.firing)

    @invariant()
    def nothing_resolved_is_still_listed(self) -> None:
        assert {x.key for x in self.core.alerts} == set(self.firing)


DispatchMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30)
TestDispatchMachine = DispatchMachine.TestCase
