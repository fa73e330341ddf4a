"""The application layer (`wedguard.cli`, `wedguard.config`, `wedguard.demo`): the
guard's defaults written once, one documented way to build a guard from a file."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import wedguard as wg
import wedguard.config
from wedguard.config import Config, GuardSettings
from wedguard.runtime import defaults


def test_a_file_without_guard_keys_takes_the_guard_defaults() -> None:
    """`[guard]` keys a file leaves out are the `Guard` parameters' defaults: both read
    `wedguard.runtime.defaults`."""
    params = inspect.signature(wg.Guard).parameters
    settings = Config.from_dict({}, path="<defaults>").guard
    assert settings == GuardSettings()
    for name in ("rate", "max_concurrent", "sample_interval", "stop_check_interval", "nice"):
        assert getattr(settings, name) == params[name].default, name
    assert settings.ionice is params["ionice"].default
    assert settings.rate == defaults.RATE == 50e6
    assert settings.max_concurrent == defaults.MAX_CONCURRENT == 2
    breaker = Config.from_dict({}).breaker
    assert breaker["failure_threshold"] == defaults.BREAKER_FAILURE_THRESHOLD == 3
    assert breaker["recovery_timeout"] == defaults.BREAKER_RECOVERY_TIMEOUT == 300.0


def test_config_build_is_a_deprecated_alias() -> None:
    config = Config.from_dict({"sources": [], "calendar": {"preset": "none"}})
    with pytest.warns(DeprecationWarning, match="wedguard.config.load"):
        guard = config.build(sinks=[])
    try:
        assert guard.decision().rate == defaults.RATE
    finally:
        guard.close()


def test_load_gives_the_guard_without_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "wedguard.toml"
    path.write_text('sources = []\n[guard]\nrate = "5MB/s"\n[calendar]\npreset = "none"\n')
    guard = wedguard.config.load(path, sinks=[])  # filterwarnings=error: no warning
    try:
        assert guard.decision().rate == 5e6
    finally:
        guard.close()
