"""The examples in the history and report modules' docstrings run and say what they show."""

from __future__ import annotations

import doctest
import types

import pytest

import wedguard.history
import wedguard.report


@pytest.mark.parametrize("module", [wedguard.history, wedguard.report])
def test_docstring_examples(module: types.ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
