"""The calendar package's shape: modules split by concern, imports one way, sizes a
reader can take in, pure policy (no I/O), and the former name ``Rule`` as a warning
alias."""

from __future__ import annotations

import ast
import importlib
import pathlib
import warnings

import pytest

import wedguard as wg
import wedguard.policy.calendar as calendar_pkg
import wedguard.policy.impact as impact

PACKAGE = pathlib.Path(calendar_pkg.__file__).parent

# Each module may import only modules of a lower rank (the layers of the package).
RANK = {
    "tokens": 0,
    "model": 1,
    "syntax": 2,
    "rclone": 2,
    "zone": 2,
    "compiled": 2,
    "evaluate": 3,
    "describe": 3,
    "engine": 4,
    "peak": 5,
    "__init__": 6,
}
# What pure policy code must not use: threads, processes, sockets, files, sleeping.
IMPURE = {"threading", "subprocess", "socket", "os", "io", "time", "asyncio", "pathlib", "shutil"}


def trees() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(encoding="utf-8")) for p in PACKAGE.glob("*.py")}


def test_every_module_has_a_rank() -> None:
    assert set(trees()) == set(RANK)


@pytest.mark.parametrize("name", sorted(RANK))
def test_imports_point_one_way_and_stay_at_module_level(name: str) -> None:
    tree = trees()[name]
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            continue
        assert id(node) in top, f"{name}.py line {node.lineno}: an import inside a block"
        for module in modules:
            assert module.split(".")[0] not in IMPURE, f"{name}.py imports {module}"
            if module.startswith("wedguard.policy.calendar."):
                other = module.rsplit(".", 1)[1]
                assert RANK[other] < RANK[name], f"{name}.py imports {other}"
            elif module.startswith("wedguard."):
                assert module in ("wedguard.errors", "wedguard.levels", "wedguard.units"), module


def lines(node: ast.stmt) -> int:
    assert node.end_lineno is not None
    return node.end_lineno - node.lineno + 1


@pytest.mark.parametrize("name", sorted(RANK))
def test_sizes(name: str) -> None:
    """Modules of at most 800 lines, classes of at most 500, functions of at most 80."""
    path = PACKAGE / f"{name}.py"
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 800
    for node in ast.walk(trees()[name]):
        if isinstance(node, ast.ClassDef):
            assert lines(node) <= 500, f"class {node.name}"
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert lines(node) <= 80, f"{name}.{node.name}"


def test_the_public_names_stay() -> None:
    """Everything the single module exported is still exported, by the same objects
    that the modules of the package define."""
    assert set(calendar_pkg.__all__) == {"CalendarRule", "PeakHourCalendar", "Season", "Window"}
    for name in calendar_pkg.__all__:
        assert getattr(wg, name) is getattr(calendar_pkg, name)
    assert calendar_pkg.PeakHourCalendar.__module__ == "wedguard.policy.calendar.peak"
    assert calendar_pkg.CalendarRule.__module__ == "wedguard.policy.calendar.model"


@pytest.mark.parametrize(
    ("module", "new"),
    [
        (wg, wg.CalendarRule),
        (calendar_pkg, calendar_pkg.CalendarRule),
        (impact, impact.ThresholdRule),
    ],
)
def test_the_former_name_rule_warns_and_still_works(module: object, new: type) -> None:
    for _ in range(2):  # every use warns, not only the first
        with pytest.warns(
            DeprecationWarning, match=rf"\.Rule is deprecated; use .*\.{new.__name__}"
        ):
            old = module.Rule  # type: ignore[attr-defined]
        assert old is new
    assert "Rule" not in module.__all__  # type: ignore[attr-defined]


def test_from_import_of_the_former_name_warns() -> None:
    with pytest.warns(DeprecationWarning, match="wedguard.Rule is deprecated"):
        from wedguard import Rule  # type: ignore[attr-defined]
    assert Rule("peak", start="06:00", end="22:00") == wg.CalendarRule("peak", start=360, end=1320)


def test_star_imports_do_not_warn() -> None:
    """A deprecated name is not in ``__all__``, so ``from ... import *`` stays quiet."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("wedguard", "wedguard.policy.calendar", "wedguard.policy.impact"):
            exec(f"from {name} import *", {})  # a fixed module name


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'Rules'"):
        calendar_pkg.Rules  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(AttributeError, match="has no attribute 'Rules'"):
        importlib.import_module("wedguard.policy.impact").Rules  # noqa: B018
