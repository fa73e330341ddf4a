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


def _scenario(p95: float, p99: float, kept: float | None, half: float = 0.01) -> dict[str, object]:
    out: dict[str, object] = {
        q: {"ratio": r, "low": r - half, "high": r + half}
        for q, r in (("p50", 1.0), ("p95", p95), ("p99", p99))
    }
    if kept is not None:
        out["kept"] = kept
    return out


def test_the_counts_and_spreads_follow_from_the_runs() -> None:
    found = [
        ("pgdump-a.json", {"date": "2026-12-07 01:00 UTC", "scenarios": {
            "none": _scenario(1.0, 1.0, None, half=0.02),
            "pinned": _scenario(1.0, 1.4, 0.9),
        }}),
        ("pgdump-b.json", {"date": "2026-12-07 02:00 UTC", "scenarios": {
            "none": _scenario(1.0, 1.0, None, half=0.05),
            "pinned": _scenario(1.06, 1.2, 0.8),
            "guarded": _scenario(1.0, 1.1, 0.2),
        }}),
    ]  # fmt: skip
    out = runs.summary(found)
    pinned = out["scenarios"]["pinned"]
    assert pinned["runs"] == 2
    assert pinned["p99"] == {"least": 1.2, "median": 1.3, "most": 1.4, "widest_half_width": 0.01}
    assert pinned["kept"] == {"least": 0.8, "median": 0.85, "most": 0.9}
    assert pinned["p95_goal_met"] == 1  # 1.01 in the first run; 1.07 is over
    assert pinned["p99_shown_within_goal"] == 1  # 1.21 in the second
    assert pinned["goal_met"] == 0  # never both in one run
    assert out["scenarios"]["guarded"]["goal_met"] == 0  # kept 20 %
    assert out["aa_half_width"]["least"] == 0.02
    assert out["aa_half_width"]["most"] == 0.05
    assert out["aa_half_width"]["within_2pc"] == 1
    # the lowest p99 of a backup keeping 30 %: not the guarded one's (it kept 20 %)
    assert out["lowest_p99_kept"]["scenario"] == "pinned"
    assert out["lowest_p99_kept"]["file"] == "pgdump-b.json"
    assert out["p99_says"] == "shown in some run"
    assert out["goal_says"] == "met in no run"


def test_every_mechanism_scenario_is_named_as_one() -> None:
    from script_helpers import load_script as load

    pulsed = load(ROOT / "benchmarks" / "pgdump_pulsed.py", "bench_pgdump_pulsed")
    assert all(name.startswith("busy") for name in pulsed.MECHANISM)
    assert not any(name.startswith("busy") for name in pulsed.SCENARIOS)
