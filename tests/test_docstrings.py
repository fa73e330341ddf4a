"""Every example in every module's docstrings runs and shows what it says.

The per-module doctest tests pin a few modules by name; this one walks the whole
package, so a module added later cannot carry an example nobody runs.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import wedguard
from wedguard._moved import MOVED

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(wedguard.__path__, "wedguard.")
    if not m.name.endswith("__main__") and m.name not in MOVED  # aliases: see test_layout
)


def test_the_walk_finds_the_package() -> None:
    """The walk sees the package's layers, so the parametrised test below covers them."""
    assert {"wedguard.runtime.guard", "wedguard.policy.bucket", "wedguard.sinks.webhook"} <= set(
        MODULES
    )


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
