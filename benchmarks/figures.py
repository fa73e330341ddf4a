"""Figures in the README and the docs, written from the benchmarks' results files.

A page marks each measured figure::

    import takes <!-- fig results/import.json median_ms.wedguard .0f -->34<!-- /fig --> ms

``FILE`` is relative to ``benchmarks/``, ``KEY`` a dotted path into its JSON (list
items by number), ``FORMAT`` an optional format spec (``.2f``, ``,.0f``, ``.0%``).
``python benchmarks/figures.py`` rewrites every marked figure from its results file;
``--check`` only reports the figures that differ, and those a results file does not
hold (``tests/test_figures.py`` runs it, so a page can never disagree with the results
it quotes, nor quote a figure that was not measured).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TOP = Path(__file__).resolve().parent.parent
MARK = re.compile(r"<!-- fig (\S+) (\S+)(?: (\S+))? -->(.*?)<!-- /fig -->", re.S)


def pages() -> Iterator[Path]:
    yield TOP / "README.md"
    yield from sorted((TOP / "docs").glob("*.md"))
    yield TOP / "benchmarks" / "README.md"


def lookup(data: Any, key: str) -> Any:
    for part in key.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def render(file: str, key: str, spec: str | None) -> str:
    try:
        data = json.loads((TOP / "benchmarks" / file).read_text(encoding="utf-8"))
        value = lookup(data, key)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        return f"<no {key} in {file}: {type(exc).__name__}>"
    return format(value, spec) if spec else str(value)


def figures(page: Path) -> Iterator[tuple[re.Match[str], str]]:
    """Each marked figure of ``page`` and the text its results file gives it."""
    for m in MARK.finditer(page.read_text(encoding="utf-8")):
        yield m, render(m.group(1), m.group(2), m.group(3))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="report differences only")
    args = parser.parse_args(argv)
    differ = 0
    for page in pages():
        if not page.exists():
            continue
        text = page.read_text(encoding="utf-8")
        new = MARK.sub(
            lambda m: (
                f"<!-- fig {m.group(1)} {m.group(2)}"
                + (f" {m.group(3)}" if m.group(3) else "")
                + f" -->{render(m.group(1), m.group(2), m.group(3))}<!-- /fig -->"
            ),
            text,
        )
        marks = text.count("<!-- fig ")
        found = len(MARK.findall(text))
        if marks != found:  # a mark the pattern does not read is never checked
            differ += 1
            print(f"{page.relative_to(TOP)}: {marks - found} figure mark(s) malformed")
        for m, want in figures(page):
            if want.startswith("<no "):  # a figure its results file does not hold
                differ += 1
                print(f"{page.relative_to(TOP)}: {m.group(2)}: {want}")
            elif m.group(4) != want:
                differ += 1
                print(
                    f"{page.relative_to(TOP)}: {m.group(2)} shows {m.group(4)!r}, results say {want!r}"
                )
        if new != text and not args.check:
            page.write_text(new, encoding="utf-8")
    return 1 if differ and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
