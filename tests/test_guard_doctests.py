"""The examples in the guard's docstrings run and say what they show."""

from __future__ import annotations

import doctest

import pytest

import wedguard.decision
import wedguard.fileobj
import wedguard.guard
import wedguard.session


@pytest.mark.parametrize(
    "module", [wedguard.guard, wedguard.session, wedguard.decision, wedguard.fileobj]
)
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0
