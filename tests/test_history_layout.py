"""The history and report packages keep to their layers and stay readable.

``wedguard.history`` is an adapter: it may use the core, the policies and the other
adapters, never the io, runtime or application layers. ``wedguard.report`` is the
application and may use anything below it, but no other package's private names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import wedguard.history
import wedguard.report

HISTORY = Path(wedguard.history.__file__).parent
REPORT = Path(wedguard.report.__file__).parent
MODULES = sorted([*HISTORY.glob("*.py"), *REPORT.glob("*.py")])
ABOVE_ADAPTERS = ("wedguard.io", "wedguard.runtime", "wedguard.cli", "wedguard.config",
                  "wedguard.demo", "wedguard.report")  # fmt: skip


def _package(path: Path) -> str:
    return f"wedguard.{path.parent.name}"


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """Every import in the module (inside functions too): (module, names)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def test_the_packages_are_split_into_modules() -> None:
    assert {p.stem for p in HISTORY.glob("*.py")} >= {"store", "sink", "recommend", "db"}
    assert {p.stem for p in REPORT.glob("*.py")} >= {"series", "plots", "page", "svg"}


@pytest.mark.parametrize("path", sorted(HISTORY.glob("*.py")), ids=lambda p: p.name)
def test_history_imports_nothing_above_the_adapters(path: Path) -> None:
    for module, _names in _imports(path):
        assert not module.startswith(ABOVE_ADAPTERS), f"{path.name} imports {module}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_private_name_from_another_package(path: Path) -> None:
    own = _package(path)
    for module, names in _imports(path):
        if not module.startswith("wedguard") or module == own or module.startswith(own + "."):
            continue
        assert not any(part.startswith("_") for part in module.split(".")), (path.name, module)
        assert not [n for n in names if n.startswith("_")], (path.name, module, names)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_modules_classes_and_functions_stay_small(path: Path) -> None:
    """At most 800 lines a module, 500 a class, 80 a function (docstring included)."""
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 800
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            size = node.end_lineno - node.lineno + 1  # type: ignore[operator]
            limit = 500 if isinstance(node, ast.ClassDef) else 80
            assert size <= limit, f"{path.name}: {node.name} is {size} lines"
