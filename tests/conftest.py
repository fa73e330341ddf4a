"""Shared fixtures: a fake clock, a recording sink."""

from __future__ import annotations

import os

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
