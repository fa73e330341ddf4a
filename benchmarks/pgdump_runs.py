"""Every run of the causal pg_dump benchmark side by side: how far one scenario's
figures move from run to run, against how far one run's interval says they may.

Run: ``python benchmarks/pgdump_runs.py`` (reads, measures nothing; a second).
Reads every ``benchmarks/results/pgdump-*.json`` written by ``pgdump_pulsed.py`` and
writes ``benchmarks/results/pgdump-runs.json``: per scenario the runs it was measured
in, its p95 and p99 ratios (least, median, most) and their intervals' widest half
width, the share of the unguarded dump's throughput it kept, how many runs showed
its p99 within issue 18's ``P99_GOAL`` by the interval's upper end, how many its p95
within ``P95_GOAL`` keeping ``KEPT_GOAL``, and how many met the whole goal (p95 within +5 % and p99 within +25 % by their upper ends, keeping at
least 30 %); and the A/A rows' half widths. The scenarios' definitions are in
``pgdump_pulsed.py``. Left out (``BEFORE``): the confined scenarios of the run before
the backend was confined at its start (``pgdump-pinned.json``: the backend ran on
every core for up to a second of each dump); otherwise a scenario's configuration
did not change between the runs listed, but the machine's other load did, and the
database grew between the earliest and the latest. The mechanism scenarios (busy
cores, no backup: every name starting ``busy``) are listed but never count as a
backup meeting the goal.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
OUT = RESULTS / "pgdump-runs.json"
P95_GOAL, P99_GOAL, KEPT_GOAL = 1.05, 1.25, 0.30  # issue 18
# runs whose scenario of that name was configured otherwise than today's
BEFORE = {
    ("pgdump-pinned.json", "pinned"),
    ("pgdump-pinned.json", "guarded_pinned"),
    ("pgdump-pinned.json", "guarded_pinned_share"),
}


def runs(results: Path = RESULTS) -> list[tuple[str, dict[str, Any]]]:
    """Each ``pgdump_pulsed.py`` results file (name, contents), oldest first."""
    found = []
    for path in sorted(results.glob("pgdump-*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("benchmark") == "pgdump-pulsed":
            found.append((path.name, data))
    return sorted(found, key=lambda item: (item[1]["date"], item[0]))


def spread(values: list[float]) -> dict[str, float]:
    """Least, median and most of ``values``, rounded to 3 places.

    >>> spread([1.5, 1.2, 1.3])
    {'least': 1.2, 'median': 1.3, 'most': 1.5}
    """
    return {
        "least": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "most": round(max(values), 3),
    }


def met(s: dict[str, Any]) -> bool:
    """Issue 18's whole goal by the intervals' upper ends, in one run's scenario."""
    return (
        s["p95"]["high"] <= P95_GOAL
        and s["p99"]["high"] <= P99_GOAL
        and (s.get("kept") or 0.0) >= KEPT_GOAL
    )


def summary(found: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The scenarios measured in the runs ``found``, each across its runs."""
    by: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for name, data in found:
        for scenario, s in data["scenarios"].items():
            if (name, scenario) in BEFORE:
                continue
            by.setdefault(scenario, []).append((name, s))
    scenarios: dict[str, Any] = {}
    for scenario, rows in sorted(by.items()):
        entry: dict[str, Any] = {"runs": len(rows), "files": [name for name, _ in rows]}
        for q in ("p95", "p99"):
            entry[q] = spread([s[q]["ratio"] for _, s in rows])
            entry[q]["widest_half_width"] = round(
                max((s[q]["high"] - s[q]["low"]) / 2 for _, s in rows), 3
            )
        if scenario != "none" and all(s.get("kept") is not None for _, s in rows):
            entry["kept"] = spread([s["kept"] for _, s in rows])
        entry["p99_shown_within_goal"] = sum(s["p99"]["high"] <= P99_GOAL for _, s in rows)
        entry["p95_goal_met"] = sum(
            s["p95"]["high"] <= P95_GOAL and (s.get("kept") or 0.0) >= KEPT_GOAL for _, s in rows
        )
        entry["goal_met"] = sum(met(s) for _, s in rows)
        scenarios[scenario] = entry
    aa = [
        round((data["scenarios"]["none"]["p95"]["high"] - data["scenarios"]["none"]["p95"]["low"]) / 2, 4)
        for _, data in found
        if "none" in data["scenarios"]
    ]  # fmt: skip
    backups = {k: e for k, e in scenarios.items() if k != "none" and not k.startswith("busy")}
    # the lowest p99 of any backup in any run keeping at least KEPT_GOAL, by its point
    lowest = min(
        (
            {"scenario": k, "file": name, **s["p99"], "kept": s["kept"]}
            for k in backups
            for name, s in by[k]
            if (s.get("kept") or 0.0) >= KEPT_GOAL
        ),
        key=lambda e: e["ratio"],
        default=None,
    )
    shown = any(e["p99_shown_within_goal"] for e in backups.values())
    whole = any(e["goal_met"] for e in backups.values())
    return {
        "benchmark": "pgdump-runs",
        "runs": len(found),
        "files": [name for name, _ in found],
        "first": found[0][1]["date"] if found else None,
        "last": found[-1][1]["date"] if found else None,
        "goal": {"p95": P95_GOAL, "p99": P99_GOAL, "kept": KEPT_GOAL},
        "aa_half_width": {**spread(aa), "runs": len(aa), "within_2pc": sum(h <= 0.02 for h in aa)},
        "goal_met_in_any_run": whole,
        "p99_shown_within_goal_in_any_run": shown,
        # words for the pages
        "goal_says": "met in some run" if whole else "met in no run",
        "p99_says": "shown in some run" if shown else "shown in no run",
        "lowest_p99_kept": lowest,
        "best_p99_median": min(
            ({"scenario": k, **e["p99"]} for k, e in backups.items() if e["runs"] >= 2),
            key=lambda e: e["median"],
            default=None,
        ),
        "scenarios": scenarios,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    out = summary(runs())
    args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    for name, e in out["scenarios"].items():
        print(
            f"{name:24s} runs {e['runs']}  p99 x{e['p99']['median']:.2f} "
            f"[{e['p99']['least']:.2f}..{e['p99']['most']:.2f}]  p95 x{e['p95']['median']:.2f}"
            f"  shown<=1.25: {e['p99_shown_within_goal']}  goal met: {e['goal_met']}"
        )


if __name__ == "__main__":
    main()
