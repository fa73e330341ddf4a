"""Shared fixtures: a fake clock, a recording sink, the reaping of started processes."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from wedguard.testing import FakeClock, RecordingSink

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock starting Monday 2026-01-05 00:00 UTC, monotonic 0."""
    return FakeClock()


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


def kill_strays(marker: Path) -> list[int]:
    """SIGCONT then SIGKILL every process whose command line names ``marker`` (a test's
    own temporary directory): whatever a test started is gone after it, even when the
    test was cut short before it learnt a pid. Returns the pids it found."""
    needle = str(marker).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            found.append(int(entry.name))
    for pid in found:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
    return found


@pytest.fixture
def reap(tmp_path: Path) -> Iterator[list[int]]:
    """Pids (and their process groups) to end after the test, whatever happened; then
    every process whose command line names the test's temporary directory, also one
    the test never learnt the pid of."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
    kill_strays(tmp_path)
