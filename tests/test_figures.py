"""Every measured figure the README and the docs quote is the one its results file holds.

Pages mark figures with ``<!-- fig FILE KEY FORMAT -->value<!-- /fig -->``;
``benchmarks/figures.py`` writes them from the results files the benchmark scripts
write. This test fails when a page and its results disagree.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from script_helpers import load_script

TOP = Path(__file__).resolve().parent.parent


def _figures() -> ModuleType:
    return load_script(TOP / "benchmarks" / "figures.py", "bench_figures")


def test_pages_agree_with_their_results_files() -> None:
    figures = _figures()
    wrong = [
        f"{page.name}: {m.group(2)} shows {m.group(4)!r}, results say {want!r}"
        for page in figures.pages()
        if page.exists()
        for m, want in figures.figures(page)
        if m.group(4) != want
    ]
    assert wrong == []


def test_the_import_figures_are_marked() -> None:
    """The README quotes the import time from benchmarks/results/import.json."""
    figures = _figures()
    marked = [m.group(1) for m, _ in figures.figures(TOP / "README.md")]
    assert "results/import.json" in marked


def test_a_changed_figure_is_caught(tmp_path: Path) -> None:
    """The check is not vacuous: a figure edited by hand is reported."""
    figures = _figures()
    page = TOP / "README.md"
    m, want = next(iter(figures.figures(page)))
    edited = m.group(0).replace(f"-->{m.group(4)}<!--", f"-->{want}0<!--")
    fake = tmp_path / "page.md"
    fake.write_text(edited)
    [(m2, want2)] = list(figures.figures(fake))
    assert m2.group(4) != want2


def test_every_mark_on_the_pages_is_read() -> None:
    """A mark the pattern cannot read (two spaces, a missing key) would never be checked."""
    figures = _figures()
    for page in figures.pages():
        if page.exists():
            text = page.read_text(encoding="utf-8")
            assert text.count("<!-- fig ") == len(figures.MARK.findall(text)), page.name


def test_a_malformed_mark_fails_the_check(tmp_path: Path, monkeypatch: Any) -> None:
    figures = _figures()
    page = tmp_path / "page.md"
    page.write_text("run of <!-- fig impact/pulsed-cpus.json when  -->0<!-- /fig -->\n")
    monkeypatch.setattr(figures, "pages", lambda: iter([page]))
    monkeypatch.setattr(figures, "TOP", tmp_path)
    assert figures.main(["--check"]) == 1


def test_the_reliability_goals_name_tests_that_exist() -> None:
    """docs/reliability.md's Goals cite ``file::test`` (``::test``: the same file as the
    one before it); each names a test function of that file, and every goal is there."""
    import re

    page = (TOP / "docs" / "reliability.md").read_text(encoding="utf-8")
    goals = page.split("\n## Goals\n", 1)[1].split("\n## ", 1)[0]
    cited = []
    for line in goals.splitlines():
        current = None
        for m in re.finditer(r"`(test_[a-z0-9_]+\.py)?::(test_[a-z0-9_]+)`", line):
            current = m.group(1) or current
            assert current is not None, line
            cited.append((current, m.group(2)))
    assert len(cited) >= 30
    missing = [
        (file, name)
        for file, name in cited
        if f"def {name}(" not in (TOP / "tests" / file).read_text(encoding="utf-8")
    ]
    assert missing == []
    for goal in ("10,000 generated copies", "99 %", "50 SIGKILLs", "starved", "20 SIGKILLs",
                 "tracebacks", "planted secret", "regression test"):  # fmt: skip
        assert goal in goals, goal
