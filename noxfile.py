"""Development tasks: ``nox`` runs lint, typecheck and tests.

Sessions: tests (current interpreter), tests_all (every CPython 3.10-3.13 found),
lint, typecheck, docs, bench, bench_impact.
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = False

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


def group(name: str) -> list[str]:
    return list(nox.project.dependency_groups(PYPROJECT, name))


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite on the current interpreter."""
    session.install("-e", ".", *group("test"))
    session.run("pytest", *session.posargs)


@nox.session(name="tests_all", python=PYTHONS)
def tests_all(session: nox.Session) -> None:
    """The test suite on every CPython 3.10-3.13 present."""
    session.install(".", *group("test"))
    session.run("pytest", "-q", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(*group("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on src/."""
    session.install("-e", ".", *group("typecheck"))
    session.run("mypy", "--strict", "src/wedguard")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with warnings as errors."""
    session.install("-e", ".", *group("docs"))
    session.run("mkdocs", "build", "--strict", "--site-dir", "build/site")


@nox.session
def bench(session: nox.Session) -> None:
    """Run the micro-benchmarks side by side with the peer libraries.

    ``nox -s bench -- throttle`` runs one of them.
    """
    session.install("-e", ".", *group("bench"))
    names = session.posargs or [
        "throttle",
        "breaker",
        "peak_calendar",
        "guard",
        "sources",
        "alerts",
        "history",
        "process",
        "distributed",
        "fleet",
        "postgres",
        "pacing",
        "guard_death",
    ]
    for name in names:
        script = f"benchmarks/{name}.py"
        if os.path.exists(script):
            session.run("python", script)


@nox.session(name="bench_impact")
def bench_impact(session: nox.Session) -> None:
    """The headline benchmark: production latency while a backup runs (about 30 min).

    ``nox -s bench_impact -- --quick`` is a smoke run of a few minutes that reports to a
    temporary folder; the full run rewrites ``benchmarks/impact/RESULTS.md``.
    """
    session.install("-e", ".[plot]")
    session.run("python", "benchmarks/impact/run.py", *session.posargs)
