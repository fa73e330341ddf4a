"""The layers hold: imports point one way, no cycles, no private names across packages,
the policy layer stays pure, and no module, class or function outgrows a reader.

The layers, lowest first (docs/explanation.md draws them):

0. core: ``errors``, ``units``, ``clock``, ``levels``, ``interfaces``, ``decision``,
   ``redact`` and the package's private helpers (``_checks``, ``_fs``, ``_moved``);
1. ``policy``: pure decisions on a clock;
2. adapters: ``sources``, ``sinks``, ``distributed``, ``history``;
3. ``io``: the copy loop, file wrappers, child processes, object stores;
4. ``runtime``: the only code that blocks, sleeps or starts threads;
5. the application: ``cli``, ``config``, ``demo``, ``jobs``, ``report``, ``testing`` and the
   package's lazy ``__init__``.

Every import counts, including one inside a function (a cycle hidden there is still a
cycle); only imports under ``if TYPE_CHECKING:`` are free. The aliases of the first
layout (``wedguard._moved``) are left out: they exist to point elsewhere.

Sizes: a module has at most 800 lines, a class 500 and a function 80, docstrings not
counted inside classes and functions; where one must be longer, ``LONGER_ALLOWED`` says
why (and so does a comment at the place).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import wedguard
from wedguard._moved import MOVED

SRC = Path(wedguard.__file__).resolve().parent

CORE = {"errors", "units", "clock", "levels", "interfaces", "decision", "redact"}
LAYER_OF_PACKAGE = {
    "policy": 1,
    "sources": 2,
    "sinks": 2,
    "distributed": 2,
    "history": 2,
    "io": 3,
    "runtime": 4,
    "cli": 5,
    "config": 5,
    "report": 5,
}
APP_MODULES = {"demo", "jobs", "testing", "__init__", "__main__"}
LAYER_NAMES = ["core", "policy", "adapters", "io", "runtime", "application"]

MAX_MODULE_LINES = 800
MAX_CLASS_LINES = 500
MAX_FUNCTION_LINES = 80
# (module, qualified name) -> why it is allowed to be longer; each says so in a comment too
LONGER_ALLOWED: dict[tuple[str, str], str] = {}

POLICY_FORBIDDEN_MODULES = {"socket", "subprocess", "selectors", "signal", "sqlite3", "asyncio"}
POLICY_THREADING_ALLOWED = {"Lock", "RLock"}  # a lock around a pure update; nothing that waits
# The design's one exception: a policy object may offer a blocking convenience next to
# its pure method (``TokenBucketThrottler.acquire`` beside ``reserve``), waiting on a
# condition or an asyncio future, never sleeping by itself.
BLOCKING_CONVENIENCES: dict[str, set[str]] = {
    "wedguard.policy.bucket": {"asyncio", "threading.Condition"},
}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}
    return {m: p for m, p in found.items() if m not in MOVED and m != "wedguard._moved"}


MODULES = modules()


def package_of(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (SRC / parts[1]).is_dir()) else ""


def layer_of(mod: str) -> int:
    parts = mod.split(".")
    if len(parts) == 1:
        return 5  # the package's __init__
    head = parts[1]
    if head in LAYER_OF_PACKAGE:
        return LAYER_OF_PACKAGE[head]
    if head in CORE or (head.startswith("_") and head not in {"__init__", "__main__"}):
        return 0
    if head in APP_MODULES:
        return 5
    raise AssertionError(f"{mod}: no layer assigned; add it to tests/test_layers.py")


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for child in node.body:
                    for sub in ast.walk(child):
                        if hasattr(sub, "lineno"):
                            lines.add(sub.lineno)
    return lines


def _resolve(mod: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    is_pkg = MODULES[mod].name == "__init__.py"
    base = mod.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(mod: str) -> Iterator[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import outside TYPE_CHECKING."""
    tree = ast.parse(MODULES[mod].read_text())
    skip = _type_checking_lines(tree)
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(mod, node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES or sub in MOVED:
                    yield sub, None, node.lineno
                else:
                    yield target, alias.name, node.lineno


def internal(name: str) -> str | None:
    """The module of this package that an imported dotted name lands in."""
    while name:
        if name in MODULES or name in MOVED:
            return name
        name = name.rpartition(".")[0]
    return None


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for mod in MODULES:
        for target, _name, _line in imports(mod):
            dep = internal(target) if target.startswith("wedguard") else None
            if dep and dep != mod and dep != "wedguard":
                edges[mod].add(dep)
    return edges


def test_every_module_has_a_layer() -> None:
    for mod in MODULES:
        layer_of(mod)


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for mod in MODULES:
        for target, _name, line in imports(mod):
            dep = internal(target) if target.startswith("wedguard.") else None
            if dep is None:
                continue
            if dep in MOVED:
                wrong.append(f"{mod}:{line} imports the deprecated alias {dep}")
            elif layer_of(dep) > layer_of(mod):
                wrong.append(
                    f"{mod}:{line} ({LAYER_NAMES[layer_of(mod)]}) imports {dep} "
                    f"({LAYER_NAMES[layer_of(dep)]})"
                )
    assert not wrong, "\n".join(wrong)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles() -> None:
    cycles = _cycles(graph())
    assert not cycles, "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_private_names_across_packages() -> None:
    wrong = []
    for mod in MODULES:
        for target, name, line in imports(mod):
            dep = internal(target) if target.startswith("wedguard.") else None
            if dep is None or package_of(dep) == package_of(mod):
                continue
            private_module = any(p.startswith("_") and p != "__init__" for p in dep.split(".")[2:])
            if private_module or (name or "").startswith("_"):
                wrong.append(f"{mod}:{line} takes {dep}{'.' + name if name else ''}")
    assert not wrong, "\n".join(wrong)


def test_the_policy_layer_stays_pure() -> None:
    wrong = []
    for mod, path in MODULES.items():
        if layer_of(mod) != 1:
            continue
        tree = ast.parse(path.read_text())
        allowed = BLOCKING_CONVENIENCES.get(mod, set())
        for target, _name, line in imports(mod):
            top = target.split(".")[0]
            if top in POLICY_FORBIDDEN_MODULES and top not in allowed:
                wrong.append(f"{mod}:{line} imports {target}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                owner, attr = node.value.id, node.attr
                if (
                    owner == "threading"
                    and attr not in POLICY_THREADING_ALLOWED
                    and f"threading.{attr}" not in allowed
                ):
                    wrong.append(f"{mod}:{node.lineno} uses threading.{attr}")
                if owner == "time" and attr == "sleep":
                    wrong.append(f"{mod}:{node.lineno} sleeps")
                if owner == "os" and attr in {"open", "fork", "system", "kill", "read", "write"}:
                    wrong.append(f"{mod}:{node.lineno} calls os.{attr}")
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "open":
                wrong.append(f"{mod}:{node.lineno} opens a file")
    assert not wrong, "\n".join(wrong)


def _docstring_lines(node: ast.AST) -> int:
    """Lines of docstrings inside ``node`` (its own and its methods'): documentation and
    examples are not what makes a function or class hard to follow, so they do not count
    against its size (a module's size counts every line)."""
    total = 0
    for sub in ast.walk(node):
        body = getattr(sub, "body", None)
        if not isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or not body:
            continue
        first = body[0]
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            total += (first.end_lineno or first.lineno) - first.lineno + 1
    return total


def _walk(mod: str, node: ast.AST, prefix: str) -> Iterator[tuple[str, str, str, int, int]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{child.name}"
            end = child.end_lineno or child.lineno
            first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
            length = end - first + 1 - _docstring_lines(child)
            if isinstance(child, ast.ClassDef):
                yield mod, "class", name, length, MAX_CLASS_LINES
            else:
                yield mod, "function", name, length, MAX_FUNCTION_LINES
            yield from _walk(mod, child, name + ".")


def _sizes() -> Iterator[tuple[str, str, str, int, int]]:
    for mod, path in MODULES.items():
        text = path.read_text()
        yield mod, "module", mod, len(text.splitlines()), MAX_MODULE_LINES
        yield from _walk(mod, ast.parse(text), "")


@pytest.mark.parametrize("kind", ["module", "class", "function"])
def test_nothing_outgrows_a_reader(kind: str) -> None:
    wrong = [
        f"{mod} {name}: {length} lines (limit {limit})"
        for mod, k, name, length, limit in _sizes()
        if k == kind and length > limit and (mod, name) not in LONGER_ALLOWED
    ]
    assert not wrong, "\n".join(wrong)
