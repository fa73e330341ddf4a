"""The examples in the guard's docstrings run and say what they show."""

from __future__ import annotations

import doctest

import pytest

import wedguard.decision
import wedguard.io.fileobj
import wedguard.runtime.guard
import wedguard.runtime.session


@pytest.mark.parametrize(
    "module",
    [wedguard.runtime.guard, wedguard.runtime.session, wedguard.decision, wedguard.io.fileobj],
)
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0
