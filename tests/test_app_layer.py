"""The application layer (`wedguard.cli`, `wedguard.config`, `wedguard.demo`,
`wedguard.jobs`): imports that point one way, one documented way to build a guard from
a file, and the guard's defaults written once."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import wedguard as wg
import wedguard.config
from wedguard.config import Config, GuardSettings
from wedguard.runtime import defaults

SRC = Path(wedguard.__file__).resolve().parent
APP = [
    *sorted((SRC / "cli").glob("*.py")),
    *sorted((SRC / "config").glob("*.py")),
    SRC / "demo.py",
    SRC / "jobs.py",
]


def test_the_demo_and_the_shared_pieces_do_not_import_the_command_line() -> None:
    """`wedguard.cli` imports `wedguard.demo`, never the other way round: what both
    need is in `wedguard.jobs`, which imports neither."""
    code = (
        "import sys, wedguard.demo, wedguard.jobs;"
        "print(sorted(m for m in sys.modules if m == 'wedguard.cli' or m.startswith('wedguard.cli.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("path", APP, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_private_name_is_imported_from_another_module(path: Path) -> None:
    """Only a module's own code uses its `_private` names (the core's `_checks` and
    `_fs` helper modules aside)."""
    tree = ast.parse(path.read_text())
    bad = [
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("wedguard")
        for alias in node.names
        if alias.name.startswith("_")
        and not alias.name.startswith("__")
        and alias.name not in ("_checks", "_fs")
    ]
    assert bad == []


@pytest.mark.parametrize("path", APP, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_import_hides_inside_a_function(path: Path) -> None:
    """Imports are at the top of the module, where a cycle would show (an optional
    third-party extra, imported when it is used, aside)."""
    tree = ast.parse(path.read_text())
    hidden = [
        ast.unparse(node)
        for func in ast.walk(tree)
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(func)
        if isinstance(node, (ast.Import, ast.ImportFrom)) and "wedguard" in ast.unparse(node)
    ]
    assert hidden == []


def test_config_build_is_a_deprecated_alias(tmp_path: Path) -> None:
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


def test_the_pipe_command_lives_in_the_command_line() -> None:
    """The filter's entry point is `wedguard.cli.pipe.pipe_main`; the io layer keeps
    the reusable copy (`pipe_guarded`) only."""
    import wedguard.io.process as process
    from wedguard.cli.pipe import pipe_main

    assert not hasattr(process, "pipe_main")
    assert callable(process.pipe_guarded)
    assert callable(pipe_main)


def test_python_dash_m_runs_the_command_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "wedguard", "calendar", "--at", "2026-06-13T23:00+00:00"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("Sat 2026-06-13 23:00 UTC: OPEN")
