"""Fuzzing the constructors: any arguments build the object or raise one
ConfigError that names an argument that was given, never another exception.

Each property draws a keyword set for one public constructor from right values and
wrong ones (wrong types, huge ints, NaN and infinities, empty text, NUL characters,
paths too long for a socket). The example counts are the constants below;
``docs/reliability.md`` quotes them.
"""

from __future__ import annotations

import atexit
import contextlib
import doctest
import importlib
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wedguard as wg
from wedguard import sinks, sources
from wedguard.testing import FakeClock, RecordingSink

#: examples per constructor (see docs/reliability.md, "Bad input")
PER_CONSTRUCTOR = 150
CALENDAR_TEXTS = 300

_TMP = Path(tempfile.mkdtemp(prefix="wedguard-fuzz-ctor-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
T = TypeVar("T")

WRONG = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.sampled_from([10**400, -(10**400), 2**63, 2**64]),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e-300, 1e300, -0.0]),
    st.sampled_from(["", " ", "\x00", "a\x00b", "\udcff", "nan", "inf", "-1", "1e400",
                     "off", "fast", "x" * 200]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
    st.builds(object),
)  # fmt: skip


@contextlib.contextmanager
def in_tmp() -> Iterator[None]:
    """Run in the fuzz directory: a relative path that is accepted lands there."""
    cwd = os.getcwd()
    os.chdir(_TMP)
    try:
        yield
    finally:
        os.chdir(cwd)


def attempt(make: Callable[[], T]) -> tuple[T | None, wg.ConfigError | None]:
    """``make()`` in the fuzz directory: (its result, None) or (None, the ConfigError)."""
    with in_tmp():
        try:
            return make(), None
        except wg.ConfigError as exc:
            return None, exc


def path_like() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(["stop", "a/b", "x" * 150]).map(lambda n: str(_TMP / n)),
        st.sampled_from(["", "a\x00b", "\udcff"]),
        st.just(_TMP / "pathlib.stop"),
    )


def mix(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(valid, valid, WRONG)


def kwargs_of(space: Mapping[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={k: mix(v) for k, v in space.items()})


def _close(obj: Any) -> None:
    for name in ("close", "shutdown"):
        method = getattr(obj, name, None)
        if callable(method):
            method()
            return


# a bound that one argument sets for another: the error may name either
RELATED = {"backoff": ("backoff_max",), "burst": ("rate",), "ssl": ("starttls",)}


def check(make: Callable[..., Any], kwargs: dict[str, Any], **fixed: Any) -> None:
    """The property: built, or a ConfigError naming one of ``kwargs``."""
    obj, exc = attempt(lambda: make(**fixed, **kwargs))
    if exc is not None:
        names = [*kwargs, *fixed, *(r for k in kwargs for r in RELATED.get(k, ()))]
        assert any(
            exc.field == n or exc.field.startswith((f"{n}.", f"{n}[", f"{n}:")) for n in names
        ), f"{exc!r} names none of {sorted(names)}"
        return
    _close(obj)


RATES = st.sampled_from(["10MB/s", "off", 1000, 2.5e6, "100/min"])
DURATIONS = st.sampled_from([0.1, 1, "1s", "250ms", "5m"])
GUARD = {
    "rate": RATES,
    "calendar": st.sampled_from([None, wg.PeakHourCalendar.default()]),
    "breaker": st.sampled_from([None]),
    "analyzer": st.sampled_from([None]),
    "sources": st.sampled_from([[], ()]),
    "sinks": st.builds(lambda: [RecordingSink()]),
    "max_concurrent": st.sampled_from([None, 1, 2]),
    "stop_file": path_like(),
    "ops_rate": st.sampled_from([None, 10, "100/min"]),
    "sample_interval": DURATIONS,
    "stop_check_interval": DURATIONS,
    "slot_timeout": st.sampled_from([None, 0, 1, "5m"]),
    "control_socket": path_like(),
    "name": st.sampled_from(["guard", "photos"]),
    "nice": st.integers(0, 19),
    "ionice": st.booleans(),
}

SETTINGS = settings(
    max_examples=PER_CONSTRUCTOR, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@SETTINGS
@given(kwargs_of(GUARD))
def test_guard(kwargs: dict[str, Any]) -> None:
    check(wg.Guard, kwargs, clock=FakeClock())


@SETTINGS
@given(kwargs_of({"rate": RATES, "burst": st.sampled_from([None, 1, 1e6, "1MB"])}))
def test_token_bucket_throttler(kwargs: dict[str, Any]) -> None:
    kwargs.setdefault("rate", 1.0)
    check(wg.TokenBucketThrottler, kwargs, clock=FakeClock())


@SETTINGS
@given(
    kwargs_of(
        {
            "name": st.sampled_from(["db", "guard"]),
            "failure_threshold": st.integers(1, 5),
            "recovery_timeout": DURATIONS,
            "half_open_max_calls": st.integers(1, 3),
            "success_threshold": st.integers(1, 3),
            "exclude": st.sampled_from([(), (KeyError,)]),
        }
    )
)
def test_circuit_breaker(kwargs: dict[str, Any]) -> None:
    check(wg.CircuitBreaker, kwargs, clock=FakeClock())


THRESHOLDS = {
    "api_latency": st.sampled_from([None, 0.05, 0.5]),
    "db_latency": st.sampled_from([None, 0.2]),
    "backup_cpu": st.sampled_from([None, 30, 30.5]),
    "backup_memory": st.sampled_from([None, 5e8, "500MB"]),
    "backup_network": st.sampled_from([None, "10Mbit/s", 1.25e6]),
    "critical": st.sampled_from([2.0, 3]),
    "relative": st.sampled_from([{}, {"api.latency_s": 0.1}]),
    "absolute": st.sampled_from([{}, {"cpu.percent": 90}]),
}


@SETTINGS
@given(kwargs_of(THRESHOLDS))
def test_thresholds(kwargs: dict[str, Any]) -> None:
    check(wg.Thresholds, kwargs)


@SETTINGS
@given(kwargs_of({"thresholds": st.builds(wg.Thresholds)}))
def test_impact_analyzer(kwargs: dict[str, Any]) -> None:
    check(wg.ImpactAnalyzer, kwargs, clock=FakeClock())


@SETTINGS
@given(
    kwargs_of(
        {
            "routes": st.builds(lambda: {wg.Severity.HIGH: [RecordingSink()]}),
            "group_by": st.sampled_from([(), ["host"]]),
            "group_wait": DURATIONS,
            "group_interval": DURATIONS,
            "repeat_interval": DURATIONS,
            "escalate_after": st.sampled_from([None, 60]),
            "forward": st.builds(lambda: [RecordingSink()]),
            "spool": path_like(),
            "queue_size": st.integers(1, 100),
            "max_attempts": st.sampled_from([None, 3]),
            "backoff": st.sampled_from([0, 1.0]),
            "backoff_max": st.sampled_from([10, 600.0]),
        }
    )
)
def test_alert_dispatcher(kwargs: dict[str, Any]) -> None:
    kwargs.setdefault("routes", {wg.Severity.HIGH: [RecordingSink()]})
    check(wg.AlertDispatcher, kwargs, clock=FakeClock())


DELIVERY = {
    "timeout": st.sampled_from([1, 2.5]),
    "max_attempts": st.sampled_from([None, 3]),
    "backoff": st.sampled_from([0, 1.0]),
    "backoff_max": st.sampled_from([10, 60.0]),
    "name": st.sampled_from(["a", "b"]),
}
SINKS: list[tuple[Callable[..., Any], dict[str, Any], dict[str, st.SearchStrategy[Any]]]] = [
    (sinks.LoggingSink, {}, {"logger": st.sampled_from(["x", "wedguard.events"]),
                             "level": st.sampled_from([None, 20]),
                             "levels": st.sampled_from([None, {}])}),
    (sinks.JsonlSink, {}, {"path": path_like(), "max_bytes": st.sampled_from(["1MB", 4096]),
                           "backups": st.integers(0, 3), "fsync": st.booleans()}),
    (sinks.WebhookSink, {"clock": FakeClock()},
     {"url": st.sampled_from(["http://127.0.0.1:9/hook", "https://example.org/h"]),
      "secret": st.sampled_from([None, "s3cret"]),
      "headers": st.sampled_from([None, {"X-A": "b"}]), **DELIVERY}),
    (sinks.SlackSink, {"clock": FakeClock()},
     {"url": st.just("https://hooks.slack.com/services/x"),
      "channel": st.sampled_from([None, "#ops"]), **DELIVERY}),
    (sinks.SmtpSink, {"clock": FakeClock()},
     {"host": st.sampled_from(["localhost", "127.0.0.1"]), "port": st.sampled_from([25, 465]),
      "sender": st.just("a@example.org"), "recipients": st.sampled_from(["b@example.org"]),
      "starttls": st.sampled_from([None, True, False]), "ssl": st.booleans(),
      "username": st.sampled_from([None, "u"]), **DELIVERY}),
    (sinks.PrometheusSink, {}, {"namespace": st.sampled_from(["wedguard", "fuzz_1"])}),
]  # fmt: skip


@pytest.mark.parametrize(("make", "fixed", "space"), SINKS, ids=[s[0].__name__ for s in SINKS])
def test_sinks(make: Callable[..., Any], fixed: dict[str, Any], space: dict[str, Any]) -> None:
    required = {
        "JsonlSink": {"path": str(_TMP / "events.jsonl")},
        "WebhookSink": {"url": "http://127.0.0.1:9/hook"},
        "SlackSink": {"url": "https://hooks.slack.com/services/x"},
        "SmtpSink": {"sender": "a@example.org", "recipients": ["b@example.org"]},
    }.get(make.__name__, {})
    if make is sinks.PrometheusSink:
        fixed = {**fixed, "registry": None}

    @SETTINGS
    @given(kwargs_of(space))
    def run(kwargs: dict[str, Any]) -> None:
        check(make, {**required, **kwargs}, **fixed)

    run()


SOURCES: list[tuple[Callable[..., Any], dict[str, Any], dict[str, st.SearchStrategy[Any]]]] = [
    (sources.SystemSource, {}, {"cgroup": st.sampled_from([None, False]),
                                "disks": st.booleans(), "network": st.booleans(),
                                "cgroup_root": st.just("/sys/fs/cgroup"),
                                "procfs": st.sampled_from(["/proc", None])}),
    (sources.ProcessSource, {}, {"pid": st.sampled_from([None, 1]),
                                 "include_children": st.booleans(),
                                 "prefix": st.sampled_from(["backup", "b"])}),
    (sources.HttpProbe, {}, {"url": st.just("http://127.0.0.1:9/"),
                             "timeout": st.sampled_from([1, 0.5]),
                             "percentile": st.sampled_from([0.5, 95])}),
    (sources.PressureSource, {}, {"cgroup": st.sampled_from([None, "self"]),
                                  "resources": st.sampled_from([("cpu",), ["io", "memory"]]),
                                  "system": st.just(True),
                                  "proc_root": st.just("/proc/pressure"),
                                  "prefix": st.just("pressure")}),
    (sources.CallableProbe, {}, {"fn": st.just(lambda: None),
                                 "name": st.sampled_from(["db.latency_s"]),
                                 "timeout": st.sampled_from([1, 0.5])}),
]  # fmt: skip


@pytest.mark.parametrize(("make", "fixed", "space"), SOURCES, ids=[s[0].__name__ for s in SOURCES])
def test_sources(make: Callable[..., Any], fixed: dict[str, Any], space: dict[str, Any]) -> None:
    required = {
        "HttpProbe": {"url": "http://127.0.0.1:9/"},
        "CallableProbe": {"fn": lambda: None},
    }.get(make.__name__, {})

    @SETTINGS
    @given(kwargs_of(space))
    def run(kwargs: dict[str, Any]) -> None:
        check(make, {**required, **kwargs}, **fixed)

    run()


# -- the calendar's text forms ------------------------------------------------------------

TOKENS = st.sampled_from(
    ["Mon", "Mon-Fri", "Sat,Sun", "daily", "May-Oct", "Nov-Feb", "05-15..09-30",
     "2026-06-13", "2026-12-24..2026-12-26", "06:00-22:00", "22:00-02:00", "08:00-24:00",
     "25:00-26:00", "peak", "open", "blackout", "10Mbit/s", "rate=1MB/s", "cpu=30%",
     "cpu=200%", 'name="x"', "down=1MB/s", ";", "#", "garbage", "\x00", "1e400", "-"]
)  # fmt: skip


@settings(max_examples=CALENDAR_TEXTS, deadline=None)
@given(st.lists(st.lists(TOKENS, max_size=6).map(" ".join), max_size=4).map("\n".join))
def test_calendar_rules_text(text: str) -> None:
    """Property: any rules text is a calendar (whose notes can be read) or a ConfigError
    naming the line."""
    cal, exc = attempt(lambda: wg.PeakHourCalendar.parse(text, tz="Europe/London"))
    if exc is not None:
        assert exc.field.startswith(("line ", "text", "rules", "end", "rate", "cpu")), exc
        return
    assert cal is not None
    assert all(isinstance(n, str) for n in cal.notes())


RCLONE = st.sampled_from(
    ["08:00,512k", "12:00,10M", "23:00,off", "Mon-08:00,1M", "sunday-23:59,0",
     "08:00,10M:100k", "24:00,1M", "08:60,1M", "8:00,1M", "Mon-Tue-08:00,1M",
     "Xyz-08:00,1M", "08:00", "08:00,1M,2M", "08:00,", "08:00,1Q", ";", "10M", "off"]
)  # fmt: skip


@settings(max_examples=CALENDAR_TEXTS, deadline=None)
@given(st.lists(RCLONE, max_size=5), st.sampled_from([" ", ";", "; "]))
def test_rclone_timetables(entries: list[str], sep: str) -> None:
    """Property: a timetable is read as rclone reads it or refused as rclone refuses it
    (a ConfigError naming bwlimit); a time given twice is a note, not silence."""
    text = sep.join(entries)
    cal, exc = attempt(lambda: wg.PeakHourCalendar.from_rclone(text))
    if exc is not None:
        assert exc.field == "bwlimit", exc
        assert rclone_refuses(text), f"rclone reads {text!r}"
        return
    assert cal is not None
    assert not rclone_refuses(text), f"rclone refuses {text!r}"
    times = [e.split(",")[0].lower() for e in text.replace(";", " ").split() if "," in e]
    daily = [t for t in times if "-" not in t]
    if len(daily) != len(set(daily)):
        assert any("both at" in n for n in cal.notes()), cal.notes()


def rclone_refuses(text: str) -> bool:
    """rclone's own rules (fs/bwtimetable.go): empty; a bare value; else entries
    split on blanks and ';', each ``[Day-]HH:MM,BW`` with hh 00-23 and mm 00-59."""
    days = {"mon", "monday", "tue", "tuesday", "wed", "wednesday", "thu", "thursday",
            "fri", "friday", "sat", "saturday", "sun", "sunday"}  # fmt: skip
    stripped = text.strip()
    if not stripped:
        return True
    if " " not in stripped and "," not in stripped and ";" not in stripped:
        return not all(_rclone_bw(side) for side in stripped.split(":", 1))
    for token in stripped.replace(";", " ").split():
        parts = token.split(",")
        if len(parts) != 2:
            return True
        when, bw = parts
        if "-" in when:
            pieces = when.split("-")
            if len(pieces) != 2 or pieces[0].lower() not in days:
                return True
            when = pieces[1]
        if len(when) != 5 or not (when[:2].isdigit() and when[3:].isdigit() and when[2] == ":"):
            return True
        if int(when[:2]) > 23 or int(when[3:]) > 59:
            return True
        if not all(_rclone_bw(side) for side in bw.split(":", 1)):
            return True
    return False


def _rclone_bw(text: str) -> bool:
    if text.lower() == "off":
        return True
    number = text.rstrip("kKMGTPEbB")
    if len(text) - len(number) > 1:
        return False
    try:
        float(number)
    except ValueError:
        return False
    return bool(number)


# -- the findings, one by one: the field and what was expected --------------------------------


def _smtp(**kwargs: Any) -> Any:
    return sinks.SmtpSink(**{"sender": "a@example.org", "recipients": "b@example.org", **kwargs})


FINDINGS: list[tuple[Callable[[], Any], str, object, str]] = [
    (lambda: wg.Guard(stop_file="", sources=[], sinks=[]), "stop_file", "", "not empty"),
    (lambda: wg.Guard(stop_file="a\x00b", sources=[], sinks=[]), "stop_file", "a\x00b", "NUL"),
    (lambda: wg.Guard(rate=10**400, sources=[], sinks=[]), "rate", 10**400, "rate"),
    (lambda: wg.Guard(rate=1e-300, sources=[], sinks=[]), "rate", 1e-300, ">= 0.001"),
    (lambda: wg.Guard(ops_rate=1e-9, sources=[], sinks=[]), "ops_rate", 1e-9, ">= 0.001"),
    (lambda: wg.Guard(sources=5, sinks=[]), "sources", 5, "a list of sources"),
    (lambda: wg.Guard(sources=[], sinks=5), "sinks", 5, "a list of sinks"),
    (
        lambda: wg.Guard(stop_check_interval=1e-300, sources=[], sinks=[]),
        "stop_check_interval",
        1e-300,
        "from 0.001 to 86400",
    ),
    (
        lambda: wg.Guard(sample_interval="2d", sources=[], sinks=[]),
        "sample_interval",
        "2d",
        "from 0.001 to 86400",
    ),
    (
        lambda: wg.Guard(control_socket="/tmp/" + "s" * 120, sources=[], sinks=[]),
        "control_socket",
        "/tmp/" + "s" * 120,
        "107 bytes",
    ),
    (lambda: wg.TokenBucketThrottler(10**400), "rate", 10**400, "rate"),
    (lambda: wg.CircuitBreaker(recovery_timeout=10**400), "recovery_timeout", 10**400, ""),
    (lambda: wg.Thresholds(api_latency=10**400), "api_latency", 10**400, "finite"),
    (lambda: wg.Thresholds(absolute={"": 1}), "absolute['']", "", "metric name"),
    (lambda: _smtp(ssl=True, starttls=True), "starttls", True, "not with ssl=True"),
    (lambda: _smtp(recipients=5), "recipients", 5, "one address or a list"),
    (lambda: _smtp(timeout=1e300), "timeout", 1e300, "<= 86400"),
    (lambda: sinks.JsonlSink(5), "path", 5, "a file path"),
    (lambda: sinks.LoggingSink(levels=5), "levels", 5, "a mapping"),
    (lambda: sources.ProcessSource(pid=2**31), "pid", 2**31, "process id"),
    (lambda: sources.SystemSource(procfs="a\x00b"), "procfs", "a\x00b", "NUL"),
    (lambda: sources.PressureSource(resources=5), "resources", 5, "subset"),
    (lambda: sources.PressureSource(cgroup=5), "cgroup", 5, "cgroup path"),
]


@pytest.mark.parametrize(("make", "field", "value", "expected"), FINDINGS)
def test_findings_name_the_field_and_the_value(
    make: Callable[[], Any], field: str, value: object, expected: str
) -> None:
    with pytest.raises(wg.ConfigError) as info:
        make()
    assert info.value.field == field
    assert info.value.value == value
    assert expected in info.value.expected


def test_smtp_ssl_alone_needs_no_starttls_flag() -> None:
    sink = _smtp(ssl=True)
    try:
        assert (sink.ssl, sink.starttls) == (True, False)
    finally:
        sink.close()
    sink = _smtp()
    try:
        assert (sink.ssl, sink.starttls) == (False, True)
    finally:
        sink.close()


def test_calendar_notes_name_overlaps_and_rclone_repeats() -> None:
    cal = wg.PeakHourCalendar.parse("06:00-22:00 peak 10Mbit/s\nSat 08:00-12:00 blackout")
    (note,) = cal.notes()
    assert "'Sat 08:00-12:00 blackout'" in note
    assert note.endswith("the lowest rate cap: 'Sat 08:00-12:00 blackout'")
    cal = wg.PeakHourCalendar.parse("Mon-Fri 06:00-12:00 peak 10Mbit/s\nSat blackout")
    assert cal.notes() == ()
    cal = wg.PeakHourCalendar.from_rclone("08:00,1M 12:00,off 08:00,2M")
    assert cal.notes() == (
        "rclone entries '08:00,1M' and '08:00,2M' are both at 08:00: "
        "the later one, '08:00,2M', counts (as in rclone)",
    )
    assert cal.at(datetime(2026, 1, 5, 9, tzinfo=timezone.utc)).rate == 2 * 2**20
    cal = wg.PeakHourCalendar.from_dict({"rclone": "Mon-08:00,1M 08:00,off"})
    assert cal.notes() == (
        "rclone entries 'Mon-08:00,1M' and '08:00,off' are both at Mon 08:00: "
        "the later one, '08:00,off', counts (as in rclone)",
    )


_CALENDAR = ("tokens", "model", "syntax", "rclone", "zone", "compiled", "evaluate", "engine",
             "describe", "peak")  # fmt: skip


@pytest.mark.parametrize(
    "module",
    [
        "wedguard._checks",
        "wedguard.policy.calendar",
        *(f"wedguard.policy.calendar.{m}" for m in _CALENDAR),
    ],
)
def test_the_examples_in_the_docstrings_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
