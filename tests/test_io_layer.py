"""The io layer sits below the runtime: it asks the guard and its sessions for what it
needs through the Protocols in wedguard.interfaces, and never imports wedguard.runtime."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import wedguard.io
from wedguard.interfaces import GuardLike, GuardSession, SessionLike

IO_DIR = Path(wedguard.io.__file__).parent
IO_MODULES = sorted(p.stem for p in IO_DIR.glob("*.py") if p.stem != "__init__")


def test_the_io_package_has_the_modules_checked_here() -> None:
    assert {"copy", "fileobj", "process", "stream", "s3", "priority"} <= set(IO_MODULES)


@pytest.mark.parametrize("module", IO_MODULES)
def test_importing_an_io_module_loads_no_runtime_module(module: str) -> None:
    """In a fresh interpreter, ``import wedguard.io.<module>`` leaves every
    wedguard.runtime module unloaded."""
    code = (
        f"import sys, wedguard.io.{module}\n"
        "print(sorted(m for m in sys.modules if m.startswith('wedguard.runtime')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.strip() == "[]"


def _runtime_imports(path: Path) -> list[str]:
    """``wedguard.runtime`` imports in ``path``, at any depth, outside ``if TYPE_CHECKING:``,
    except in the body of ``pipe_main``'s guard builder (the command, not the io layer)."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            return
        if isinstance(node, ast.FunctionDef) and node.name == "_pipe_guard":
            return
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("wedguard.runtime"):
            found.append(f"{path.name}:{node.lineno} from {node.module}")
        if isinstance(node, ast.Import):
            found.extend(
                f"{path.name}:{node.lineno} import {a.name}"
                for a in node.names
                if a.name.startswith("wedguard.runtime")
            )
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def test_no_io_module_imports_the_runtime_even_inside_a_function() -> None:
    """An import inside a function is still an import: none of them reach the runtime
    (type-checking imports aside)."""
    found = [hit for m in IO_MODULES for hit in _runtime_imports(IO_DIR / f"{m}.py")]
    assert found == []


def test_the_guard_and_its_sessions_serve_the_io_protocols() -> None:
    """What io asks for exists on the real objects (a renamed method fails here, not
    silently inside a child's monitor thread)."""
    import wedguard as wg
    from wedguard.testing import FakeClock

    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[], clock=FakeClock())
    as_guard: GuardLike = guard
    for name in ("decision", "session", "current_session", "publish", "wait_for_change"):
        assert callable(getattr(as_guard, name))
    assert as_guard.current_session() is None
    with guard.session("photos") as s:
        joined: SessionLike | None = as_guard.current_session()
        assert joined is s
        opened: GuardSession = s
        opened.throttle(100)
        opened.count(50)
        opened.refund(30)
        assert s.report().bytes == 120
    as_guard.wait_for_change(0.0)
    guard.close()
