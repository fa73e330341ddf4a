"""Nothing is lost at exit: ``with Guard(...)``, ``close()``, and interpreter exit.

The events a guard queued reach its sinks before the guard ends: on leaving a ``with``
block, on ``close()`` (with a bounded wait) and, for a guard nobody closed, when the
interpreter exits normally.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import wedguard as wg
from wedguard.testing import RecordingSink

SRC = str(Path(wg.__file__).resolve().parent.parent)


class SlowSink:
    """Takes a while with each event, so events wait in the guard's queue."""

    def __init__(self, delay: float = 0.01) -> None:
        self.inner = RecordingSink()
        self.delay = delay
        self.flushed: list[float | None] = []

    def emit(self, event: Any) -> None:
        time.sleep(self.delay)
        self.inner.emit(event)

    def flush(self, timeout: float | None = None) -> bool:
        self.flushed.append(timeout)
        return True


def busy_guard(sink: Any, **kw: Any) -> wg.Guard:
    return wg.Guard(rate="off", calendar=None, sources=[], sinks=[sink], log_events=False, **kw)


def test_with_block_delivers_every_event_and_flushes_the_sinks() -> None:
    sink = SlowSink()
    with busy_guard(sink) as guard:
        for i in range(5):
            guard.stop(f"maintenance {i}")
            guard.resume()
    alerts = sink.inner.of_kind("alert")
    assert len(alerts) == 10  # 5 firing, 5 resolved
    assert len(sink.inner.of_kind("decision")) == 10
    assert sink.flushed
    assert sink.flushed[0] is not None


def test_close_waits_a_bounded_time_for_a_hanging_sink() -> None:
    release = threading.Event()

    class Hanging:
        def emit(self, event: Any) -> None:
            release.wait(30)

    guard = busy_guard(Hanging())
    try:
        guard.stop("x")
        start = time.monotonic()
        assert guard.close(timeout=0.5) is False
        assert time.monotonic() - start < 3
    finally:
        release.set()


# One process imports wedguard once, then forks the programs under test: each child
# runs the work and leaves through sys.exit(), a normal interpreter exit (atexit
# handlers run, daemon threads are abandoned), without flushing or closing the guard.
SPAWNER = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {src!r})
    import wedguard as wg
    from wedguard.sinks import JsonlSink

    class Slow:
        def __init__(self, inner):
            self.inner = inner
        def emit(self, event):
            time.sleep(0.002)
            self.inner.emit(event)

    def work(path, mode):
        breaker = wg.CircuitBreaker("uploads", failure_threshold=1)
        guard = wg.Guard(rate="off", calendar=None, sources=[], breaker=breaker,
                         sinks=[Slow(JsonlSink(path))], log_events=False)
        for i in range(5):
            guard.stop(f"maintenance {{i}}")
            guard.resume()
        breaker.record_failure(RuntimeError("S3 said no"))
        if mode == "flush":
            guard.flush()

    directory, mode, count, parallel = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    running, failed = set(), 0
    for i in range(count):
        while len(running) >= parallel:
            pid, status = os.wait()
            running.discard(pid)
            failed += status != 0
        pid = os.fork()
        if pid == 0:
            work(os.path.join(directory, f"events-{{mode}}-{{i}}.jsonl"), mode)
            sys.exit(0)
        running.add(pid)
    while running:
        pid, status = os.wait()
        running.discard(pid)
        failed += status != 0
    sys.exit(1 if failed else 0)
    """
)


def _run_children(tmp_path: Path, count: int, mode: str, parallel: int = 20) -> list[Path]:
    script = tmp_path / "spawner.py"
    script.write_text(SPAWNER.format(src=SRC))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path), mode, str(count), str(parallel)],
        env=env,
        capture_output=True,
        timeout=170,  # 100 interpreters starting on a busy 2-core machine
    )
    assert done.returncode == 0, done.stderr.decode()
    return [tmp_path / f"events-{mode}-{i}.jsonl" for i in range(count)]


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.timeout(180)
def test_no_event_is_lost_when_a_program_exits_without_flushing(tmp_path: Path) -> None:
    """100 programs emit events (and the breaker's alert) and exit at once: all arrive."""
    (reference,) = _run_children(tmp_path, 1, "flush")
    expected = _events(reference)
    assert any(
        e.get("key") == "wedguard/breaker/uploads" and "opened" in e.get("summary", "")
        for e in expected
    )
    lost = []
    for path in _run_children(tmp_path, 100, "exit"):
        got = _events(path) if path.exists() else []
        if len(got) != len(expected):
            lost.append((path.name, len(expected) - len(got)))
    assert lost == []


@pytest.mark.parametrize("mode", ["exit"])
def test_the_breaker_alert_survives_an_exit_right_after_it(tmp_path: Path, mode: str) -> None:
    (path,) = _run_children(tmp_path, 1, mode)
    kinds = [(e.get("kind"), e.get("key")) for e in _events(path)]
    assert ("alert", "wedguard/breaker/uploads") in kinds


def test_a_guard_used_again_after_close_is_closed_at_exit_again() -> None:
    from wedguard.runtime import at_exit as _atexit

    guard = busy_guard(RecordingSink())
    assert guard in _atexit._open
    guard.close()
    assert guard not in _atexit._open
    with guard.session("again"):
        pass
    assert guard in _atexit._open
    guard.close()
