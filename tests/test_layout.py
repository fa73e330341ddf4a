"""The package's layout: the first layout's module paths still work, and say where to go."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys

import pytest

from wedguard._moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_module_path_warns_and_gives_the_module_at_its_new_place(old: str) -> None:
    """``import wedguard.guard`` still works for one release: it warns, naming the new
    place, and every name (private ones included) is the very object at the new place."""
    code = (
        "import importlib, warnings\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        f"    old = importlib.import_module({old!r})\n"
        f"new = importlib.import_module({MOVED[old]!r})\n"
        "assert old is new, (old, new)\n"
        "[msg] = [str(x.message) for x in w if issubclass(x.category, DeprecationWarning)]\n"
        "print(msg)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert f"{old} moved to {MOVED[old]}" in out


def test_every_new_place_exists_and_is_not_itself_an_alias() -> None:
    for new in MOVED.values():
        assert new not in MOVED
        assert importlib.util.find_spec(new) is not None, new
