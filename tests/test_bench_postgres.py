"""The PostgreSQL figures in the docs are the ones benchmarks/postgres.py measured.

``benchmarks/results/postgres.json`` is written by the benchmark; the how-to and the
benchmarks README must quote its figures as the benchmark formats them, so a page
cannot keep an old figure after a new run (or invent one).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from script_helpers import load_script

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "postgres.json"
PAGES = [ROOT / "docs" / "howto-postgres.md", ROOT / "benchmarks" / "README.md"]


def load_benchmark() -> ModuleType:
    return load_script(ROOT / "benchmarks" / "postgres.py", "bench_postgres")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_page_quotes_the_measured_figures(page: Path) -> None:
    results = json.loads(RESULTS.read_text())
    text = page.read_text()
    figures = load_benchmark().figures(results)
    assert len(figures) >= 7
    for name, figure in figures.items():
        assert f"{figure}" in text, f"{page.name} does not quote the {name}: {figure}"
    assert results["date"] in text


def test_the_results_meet_the_goals_the_pages_claim() -> None:
    results = json.loads(RESULTS.read_text())
    goals = results["goals"]
    assert goals["sample_met"] == (
        results["cpu_1hz"]["sample_ms_median"] <= goals["sample_ms"]
        and all(s["source"]["median"] <= goals["sample_ms"] for s in results["sample_ms"].values())
    )
    assert goals["cpu_met"] == (results["cpu_1hz"]["total_percent"] < goals["cpu_percent"])
    for page in PAGES:
        met = "met" if goals["sample_met"] and goals["cpu_met"] else "not met"
        assert f"goals {met}" in page.read_text(), page.name
