"""The application layer (`wedguard.cli`, `wedguard.config`, `wedguard.demo`): the
guard's defaults written once."""

from __future__ import annotations

import inspect

import wedguard as wg
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
