"""The pg_dump benchmark's summary is what its own runs say.

``benchmarks/results/pgdump.json`` holds every run (one scenario of one repeat) and the
summary the docs quote; the summary recomputed from the runs must be the one stored, and
the goal's verdict must follow from it, so neither can be edited apart from the other.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

from script_helpers import load_script

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "pgdump.json"


def load_benchmark() -> ModuleType:
    return load_script(ROOT / "benchmarks" / "pgdump.py", "bench_pgdump")


def test_the_summary_is_recomputed_from_the_runs() -> None:
    bench = load_benchmark()
    r = json.loads(RESULTS.read_text())
    repeats = r["config"]["repeats"]
    assert len(r["runs"]) == repeats * len(bench.SCENARIOS)
    assert bench.summarize(r["runs"], repeats) == r["summary"]
    goal = r["goal"]
    s = r["summary"]
    assert goal["guarded_run_p95"] == s["guarded_run"]["p95_ratio"]["median"]
    assert goal["unguarded_p95"] == s["unguarded"]["p95_ratio"]["median"]
    assert goal["aa_p95"] == s["alone_again"]["p95_ratio"]["median"]
    assert goal["met"] == (goal["guarded_run_p95"] <= goal["p95_limit"] < goal["unguarded_p95"])
    assert goal["backend_met"] == (
        goal["guarded_backend_p95"] <= goal["p95_limit"] < goal["unguarded_p95"]
    )
    assert goal["guarded_backend_p95"] == s["guarded_backend"]["p95_ratio"]["median"]
    # every scenario is judged against the load alone just before it, on the same load
    assert all(run["ref"]["n"] > 0 for run in r["runs"])
    dumps = [run for run in r["runs"] if not run["scenario"].startswith("alone")]
    assert r["dumps_checked"] == len(dumps)
    assert r["dumps_corrupt"] == sum(1 for run in dumps if not run["toc_ok"])


def test_percentiles_are_nearest_rank_in_milliseconds() -> None:
    bench = load_benchmark()
    p = bench.percentiles([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert p == {"n": 100, "p50_ms": 51.0, "p95_ms": 96.0, "p99_ms": 100.0}
    assert bench.percentiles([])["n"] == 0
