"""The pg_dump runs side by side: ``benchmarks/results/pgdump-runs.json`` is what
``benchmarks/pgdump_runs.py`` computes from the runs' own results files, so a page
quoting it can never disagree with the runs it summarises."""

from __future__ import annotations

import json
from pathlib import Path

from script_helpers import load_script

ROOT = Path(__file__).resolve().parent.parent
runs = load_script(ROOT / "benchmarks" / "pgdump_runs.py", "bench_pgdump_runs")


def test_the_summary_is_recomputed_from_every_runs_results() -> None:
    stored = json.loads((ROOT / "benchmarks" / "results" / "pgdump-runs.json").read_text())
    assert stored == runs.summary(runs.runs())


def test_each_scenario_counts_every_run_it_was_measured_in() -> None:
    found = runs.runs()
    out = runs.summary(found)
    assert out["runs"] == len(found) > 0
    for scenario, entry in out["scenarios"].items():
        files = [
            name
            for name, data in found
            if scenario in data["scenarios"] and (name, scenario) not in runs.BEFORE
        ]
        assert entry["files"] == files
        assert entry["runs"] == len(files)
        ratios = [dict(found)[f]["scenarios"][scenario]["p99"]["ratio"] for f in files]
        assert entry["p99"]["least"] == round(min(ratios), 3)
        assert entry["p99"]["most"] == round(max(ratios), 3)


def test_a_run_meets_the_goal_only_by_every_intervals_upper_end() -> None:
    def scenario(p95: float, p99: float, kept: float) -> dict[str, object]:
        return {"p95": {"high": p95}, "p99": {"high": p99}, "kept": kept}

    assert runs.met(scenario(1.05, 1.25, 0.30))
    assert not runs.met(scenario(1.051, 1.25, 0.30))
    assert not runs.met(scenario(1.05, 1.26, 0.30))
    assert not runs.met(scenario(1.05, 1.25, 0.29))


def test_a_busy_core_without_a_backup_never_counts_as_a_backup_meeting_the_goal() -> None:
    busy = {
        "p50": {"ratio": 1.0, "low": 1.0, "high": 1.0},
        "p95": {"ratio": 1.0, "low": 0.99, "high": 1.01},
        "p99": {"ratio": 1.0, "low": 0.99, "high": 1.01},
        "kept": 1.0,
    }
    none = {**busy}
    none.pop("kept")
    data = {"date": "2026-12-07 00:00 UTC", "scenarios": {"none": none, "busy_core": busy}}
    out = runs.summary([("pgdump-x.json", data)])
    assert out["scenarios"]["busy_core"]["goal_met"] == 1
    assert out["goal_met_in_any_run"] is False
    assert out["p99_shown_within_goal_in_any_run"] is False
