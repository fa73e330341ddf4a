"""How long `import wedguard` takes, against `import json, logging`, in one run.

Each import runs in a fresh interpreter (`python -X importtime` is not used: it adds
its own cost); the rounds alternate the two so that the machine's drift falls on both.
Also records which heavy modules `import wedguard` loads (it should load none).
Writes ``benchmarks/results/import.json``.

    python benchmarks/import_time.py [--rounds 40] [--previous REF]

``--previous REF`` (for example ``main``) also times ``import wedguard`` from that
commit's sources, in the same rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from _previous import checkout

HEAVY = ("sqlite3", "subprocess", "psutil", "asyncio", "threading", "ssl", "email",
         "matplotlib", "redis", "psycopg")  # fmt: skip
CASES = {  # results key: code timed
    "python": "pass",
    "json_logging": "import json, logging",
    "wedguard": "import wedguard",
    "wedguard_guard": "import wedguard; wedguard.Guard",
}
TIMER = "import time; t = time.perf_counter(); {code}; print((time.perf_counter() - t) * 1e3)"


SRC = str(Path(__file__).resolve().parent.parent / "src")


def once(code: str, src: str = SRC) -> float:
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run(
        [sys.executable, "-c", TIMER.format(code=code)],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    return float(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--previous", metavar="REF", help="also time this commit's wedguard")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "import.json"))
    args = parser.parse_args()
    cases = {name: (code, SRC) for name, code in CASES.items()}
    scratch = tempfile.TemporaryDirectory()
    if args.previous:
        old = checkout(args.previous, scratch.name)
        cases["previous"] = ("import wedguard", old)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, (code, src) in cases.items():
            times[name].append(once(code, src))
    scratch.cleanup()
    loaded = subprocess.run(
        [sys.executable, "-c",
         f"import sys, wedguard; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    medians = {name: statistics.median(v) for name, v in times.items()}
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "rounds": args.rounds,
        "median_ms": {k: round(v, 2) for k, v in medians.items()},
        "spread_ms": {k: [round(min(v), 2), round(max(v), 2)] for k, v in times.items()},
        "previous": args.previous,
        "wedguard_vs_json_logging": round(medians["wedguard"] / medians["json_logging"], 2),
        "heavy_modules_loaded": [m for m in loaded.split(",") if m],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for name, value in medians.items():
        print(f"{name:<16} {value:7.2f} ms  (range {min(times[name]):.2f}-{max(times[name]):.2f})")
    print(f"wedguard / json+logging: {result['wedguard_vs_json_logging']}x; heavy modules "
          f"loaded: {result['heavy_modules_loaded'] or 'none'}")  # fmt: skip


if __name__ == "__main__":
    main()
