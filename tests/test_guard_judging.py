"""A guard says what it judges: baselines, limits it cannot judge, failing probes, max_hold.

On a fake clock (inline sampling): the guard learns a latency baseline before the
session's first byte, names a latency it cannot judge, logs a probe that keeps failing
whatever sinks are configured, and gives up after ``max_hold`` instead of waiting
forever.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from pathlib import Path

import pytest

import wedguard as wg
from guard_helpers import ListCalendar, at
from wedguard.levels import Level, Verdict
from wedguard.sinks import JsonlSink, LoggingSink
from wedguard.testing import FakeClock, RecordingSink, ScriptedSource

MB = 1_000_000


def latency(
    rise_at: int, before: float = 0.200, after: float = 1.2, until: int = 10**9
) -> ScriptedSource:
    """api.latency_s at ``after`` for samples rise_at..until-1, else ``before``."""
    return ScriptedSource(lambda i: {"api.latency_s": after if rise_at <= i < until else before})


def run_for(s: wg.Session, clock: FakeClock, seconds: float, chunk: int = MB) -> None:
    end = clock.monotonic() + seconds
    while clock.monotonic() < end:
        s.throttle(chunk)


# -- baselines ----------------------------------------------------------------------------


def test_latency_without_a_baseline_is_named_as_not_judged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With no baseline the latency limit is not judged, and the guard says so."""
    clock = FakeClock()
    guard = wg.Guard(
        rate="10MB/s",
        calendar=None,
        sources=[latency(rise_at=0)],  # 6x the baseline it never learnt
        analyzer=wg.ImpactAnalyzer(clock=clock),
        sinks=[],
        clock=clock,
    )
    with caplog.at_level(logging.WARNING, logger="wedguard"), guard.session("photos") as s:
        run_for(s, clock, 10)
        d = guard.decision()
    assert d.verdict is Verdict.OK
    assert "api.latency_s: no baseline yet, not judged" in d.reasons
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("api.latency_s: no baseline yet, not judged" in m for m in warned)


def test_guard_learns_a_baseline_before_the_first_byte_and_then_judges() -> None:
    """The tutorial's case: latency rises 6x for 15 s; the default guard slows down."""
    clock = FakeClock()
    sink = RecordingSink()
    guard = wg.Guard(
        rate="10MB/s",
        calendar=None,
        sources=[latency(rise_at=8, until=23)],
        sinks=[sink],
        clock=clock,
    )
    with guard.session("photos") as s:
        first = s.throttle(MB)
        learnt = guard._analyzer.baseline["api.latency_s"]  # type: ignore[union-attr]
        run_for(s, clock, 60)
    assert first == pytest.approx(4.0)  # 5 samples at 1 s before the first byte
    assert learnt.count == 5
    assert learnt.median == pytest.approx(0.2)
    decisions = sink.of_kind("decision")
    reasons = [r for e in decisions for r in e.reasons]  # type: ignore[attr-defined]
    assert any(r.startswith("learning the baseline of api.latency_s: 1 of 5") for r in reasons)
    assert any(e.verdict is not Verdict.OK for e in decisions)  # type: ignore[attr-defined]
    assert any(e.rate < 10 * MB for e in decisions[1:])  # type: ignore[attr-defined]
    assert any("api.latency_s" in r and "over baseline" in r for r in reasons)
    assert s.report().wait_seconds["impact"] >= 4.0


def test_no_pause_when_the_sources_report_no_latency() -> None:
    """A guard whose sources report no latency learns nothing and never waits for it."""
    clock = FakeClock()
    src = ScriptedSource([{"cpu.percent": 10.0}])
    guard = wg.Guard(rate="10MB/s", calendar=None, sources=[src], sinks=[], clock=clock)
    with guard.session("a") as s:
        assert s.throttle(MB) == 0.0
    with guard.session("b") as s:
        assert s.throttle(MB) == 0.0
        assert not any("baseline" in r for r in guard.decision().reasons)


def test_samples_while_no_session_runs_make_a_rolling_baseline() -> None:
    """tick() with no session running teaches the baseline; the session then goes at once."""
    clock = FakeClock()
    guard = wg.Guard(
        rate="10MB/s", calendar=None, sources=[latency(rise_at=99)], sinks=[], clock=clock
    )
    for _ in range(3):
        guard.tick()
        clock.advance(1)
    assert guard._analyzer.baseline["api.latency_s"].count == 3  # type: ignore[union-attr]
    with guard.session("photos") as s:
        assert s.throttle(MB) == 0.0
    assert not any("baseline" in r for r in guard.decision().reasons)


def test_baseline_warmup_validation() -> None:
    with pytest.raises(wg.ConfigError, match="baseline_warmup"):
        wg.Guard(baseline_warmup="soon", sources=[], sinks=[], clock=FakeClock())
    with pytest.raises(wg.ConfigError, match="max_hold"):
        wg.Guard(max_hold=0, sources=[], sinks=[], clock=FakeClock())
    with pytest.raises(wg.ConfigError, match="log_events"):
        wg.Guard(log_events="yes", sources=[], sinks=[], clock=FakeClock())  # type: ignore[arg-type]


# -- failing probes -----------------------------------------------------------------------


def test_failing_probe_is_logged_whatever_the_sinks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Events go to a JSONL file only; the failing probe still reaches the console."""
    clock = FakeClock()
    failing = ScriptedSource([{"api.latency_s.error": 1.0}])
    jsonl = JsonlSink(tmp_path / "events.jsonl")
    guard = wg.Guard(
        rate="10MB/s",
        calendar=None,
        sources=[failing],
        sinks=[jsonl],
        log_events=False,
        clock=clock,
        max_hold=None,
    )
    with caplog.at_level(logging.WARNING, logger="wedguard"), guard.session("photos") as s:
        s.throttle(MB)
        warned_at = clock.monotonic()
    jsonl.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(
        r.name.startswith("wedguard") and "probe api.latency_s is failing" in r.getMessage()
        for r in warnings
    )
    assert warned_at <= 5.0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_health_url_is_on_the_console_within_5s_real_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The tutorial's guard with nothing listening on its health URL, on the real clock."""
    from wedguard.sources import HttpProbe

    url = f"http://127.0.0.1:{_closed_port()}/health"
    jsonl = JsonlSink(tmp_path / "events.jsonl")
    guard = wg.Guard(
        rate="50MB/s",
        calendar=None,
        sources=[HttpProbe(url, timeout=0.5)],
        sinks=[jsonl],
        sample_interval=0.2,
    )
    seen = threading.Event()

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "probe api.latency_s is failing" in record.getMessage():
                seen.set()

    handler = Seen(logging.WARNING)
    logging.getLogger("wedguard").addHandler(handler)
    errors: list[BaseException] = []

    def backup() -> None:
        try:
            with guard.session("photos") as s:
                while True:
                    s.throttle(64 * 1024)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=backup)
    start = time.monotonic()
    worker.start()
    try:
        assert seen.wait(5.0), "no warning within 5 s"
        assert time.monotonic() - start < 5.0
    finally:
        guard.stop("test over")
        worker.join(10)
        logging.getLogger("wedguard").removeHandler(handler)
        guard.close()
        jsonl.close()
    assert not worker.is_alive()
    assert isinstance(errors[0], wg.EmergencyStop)


# -- max_hold ------------------------------------------------------------------------------


def test_a_probe_that_never_answers_ends_the_session_after_max_hold() -> None:
    clock = FakeClock()
    guard = wg.Guard(
        rate="10MB/s",
        calendar=None,
        sources=[ScriptedSource([{"api.latency_s.error": 1.0}])],
        sinks=[],
        clock=clock,
        max_hold="30s",
    )
    with pytest.raises(wg.HoldTimeout) as info, guard.session("photos") as s:
        run_for(s, clock, 3600)
    exc = info.value
    assert isinstance(exc, wg.WedguardError)
    assert exc.held == pytest.approx(30.0, abs=1.0)
    assert "api.latency_s probe failed" in exc.cause
    assert clock.monotonic() < 60
    assert s.report().outcome == "error"


def test_default_max_hold_is_30_minutes() -> None:
    clock = FakeClock()
    guard = wg.Guard(
        rate="10MB/s",
        calendar=None,
        sources=[ScriptedSource([{"api.latency_s.error": 1.0}])],
        sinks=[],
        clock=clock,
    )
    with pytest.raises(wg.HoldTimeout), guard.session("photos") as s:
        run_for(s, clock, 4 * 3600)
    assert 1800 <= clock.monotonic() <= 1800 + 10


def test_blackouts_and_holds_do_not_count_towards_max_hold() -> None:
    """A planned BLACKOUT of an hour is waited through with max_hold of a minute."""
    clock = FakeClock()
    cal = ListCalendar((at(0), at(1), Level.BLACKOUT, None))
    guard = wg.Guard(rate="10MB/s", calendar=cal, sources=[], sinks=[], clock=clock, max_hold=60)
    with guard.session("photos") as s:
        waited = s.throttle(MB)
    assert waited == pytest.approx(3600)


def test_a_new_session_gets_a_fresh_max_hold() -> None:
    """The hold clock restarts with each session: an old HALT is not held against it."""
    clock = FakeClock()
    script = ScriptedSource(lambda i: {"api.latency_s.error": 1.0} if i < 40 else {})
    guard = wg.Guard(
        rate="10MB/s", calendar=None, sources=[script], sinks=[], clock=clock, max_hold=20
    )
    with pytest.raises(wg.HoldTimeout), guard.session("a") as s:
        run_for(s, clock, 600)
    clock.advance(3600)
    with guard.session("b") as s:
        waited = s.throttle(MB)  # the probe answers again within b's own 20 s
    assert 0 < waited < 20


# -- the logging sink is kept ------------------------------------------------------------------


def test_sinks_add_to_the_logging_sink(caplog: pytest.LogCaptureFixture) -> None:
    rec = RecordingSink()
    clock = FakeClock()
    guard = wg.Guard(calendar=None, sources=[], sinks=[rec], clock=clock)
    assert any(isinstance(s, LoggingSink) for s in guard._sinks)
    with caplog.at_level(logging.INFO, logger="wedguard.events"):
        guard.stop("maintenance")
    assert rec.of_kind("alert")
    assert any("maintenance" in r.getMessage() for r in caplog.records)


def test_log_events_false_removes_the_logging_sink(caplog: pytest.LogCaptureFixture) -> None:
    rec = RecordingSink()
    guard = wg.Guard(calendar=None, sources=[], sinks=[rec], clock=FakeClock(), log_events=False)
    assert not any(isinstance(s, LoggingSink) for s in guard._sinks)
    with caplog.at_level(logging.DEBUG, logger="wedguard.events"):
        guard.stop("maintenance")
    assert rec.of_kind("alert")
    assert not [r for r in caplog.records if r.name == "wedguard.events"]


def test_a_logging_sink_given_is_not_doubled() -> None:
    mine = LoggingSink("my.events")
    guard = wg.Guard(calendar=None, sources=[], sinks=[mine], clock=FakeClock())
    assert [s for s in guard._sinks if isinstance(s, LoggingSink)] == [mine]


def test_jsonl_events_carry_what_was_not_judged(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "events.jsonl"
    jsonl = JsonlSink(path)
    guard = wg.Guard(
        rate="10MB/s",
        calendar=None,
        sources=[latency(rise_at=0)],
        analyzer=wg.ImpactAnalyzer(clock=clock),
        sinks=[jsonl],
        clock=clock,
    )
    with guard.session("photos") as s:
        run_for(s, clock, 3)
    jsonl.close()
    decisions = [json.loads(x) for x in path.read_text().splitlines()]
    assert any(
        "api.latency_s: no baseline yet, not judged" in d.get("reasons", []) for d in decisions
    )


@pytest.mark.parametrize(
    "name", ["wedguard.runtime.watch", "wedguard.policy.impact", "wedguard.policy.controllers"]
)
def test_docstring_examples(name: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_the_cli_progress_line_names_what_is_not_judged() -> None:
    import io

    from wedguard.jobs import Progress as _Progress

    clock = FakeClock()
    guard = wg.Guard(
        rate="10MB/s",
        calendar=None,
        sources=[latency(rise_at=0)],
        analyzer=wg.ImpactAnalyzer(clock=clock),
        sinks=[],
        clock=clock,
    )
    with guard.session("photos") as s:
        run_for(s, clock, 3)
        line = _Progress(io.StringIO(), guard, lambda: s.bytes).line()
    assert line.endswith("  not judged: api.latency_s")
