"""The examples in the alert and sink docstrings run and say what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "wedguard.policy.alerting",
    "wedguard.runtime.alerts",
    "wedguard.sinks.spool",
    "wedguard.sinks.delivery",
    "wedguard.sinks._common",
    "wedguard.sinks.logging",
    "wedguard.sinks.jsonl",
    "wedguard.sinks.webhook",
    "wedguard.sinks.slack",
    "wedguard.sinks.smtp",
    "wedguard.sinks.prometheus",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
