"""What the pages say about the code, held to the code.

A reader who turns a logger up by the name a page gives must see the lines the page
promises: every logger a page names is one the package logs on.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NAMED_LOGGER = re.compile(r"`(wedguard[\w.]*)`\s+logger")


def loggers_in_the_package() -> set[str]:
    """The logger names the package's modules log on (``getLogger("...")``), and the
    logging sink's default one."""
    from wedguard.sinks import LoggingSink

    names = {LoggingSink().logger.name}
    for path in (ROOT / "src" / "wedguard").rglob("*.py"):
        names.update(re.findall(r'getLogger\("([\w.]+)"\)', path.read_text(encoding="utf-8")))
    return names


NAMED = [
    (page.relative_to(ROOT).as_posix(), m.group(1))
    for page in PAGES
    for m in NAMED_LOGGER.finditer(page.read_text(encoding="utf-8"))
]


def test_the_pages_name_loggers() -> None:
    assert {name for _page, name in NAMED} >= {"wedguard.events", "wedguard.guard"}


@pytest.mark.parametrize(("page", "name"), NAMED, ids=[f"{p}:{n}" for p, n in NAMED])
def test_a_logger_a_page_names_is_one_the_package_logs_on(page: str, name: str) -> None:
    assert name in loggers_in_the_package(), f"{page} names the {name} logger"


NAMED_FILES = sorted(
    {
        (page.relative_to(ROOT).as_posix(), m.group(1))
        for page in PAGES
        for m in re.finditer(r"`((?:tests|benchmarks)/[\w/.-]+\.(?:py|json))`", page.read_text())
    }
)


@pytest.mark.parametrize(("page", "path"), NAMED_FILES, ids=[f"{p}:{f}" for p, f in NAMED_FILES])
def test_a_test_or_benchmark_a_page_names_exists(page: str, path: str) -> None:
    """A figure held to a test or a benchmark names one that is there."""
    assert (ROOT / path).is_file(), f"{page} names {path}"
