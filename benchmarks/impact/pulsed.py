"""The harm measured causally: production's latency while the backup runs, against the
same production in the seconds around it while the backup is held stopped.

``python benchmarks/impact/pulsed.py`` (about 20 minutes) writes ``pulsed.json`` next
to this script and rewrites the figures the docs quote from it.

``run.py`` compares whole runs: production alone in one run, with a backup in another,
and the machine's drift between them (a shared host: ±21 % on p95 over three repeats)
is as large as the harm being measured. Here one run holds both. Production serves
its Poisson load for the whole run; the backup runs beside it and the harness holds it
stopped (SIGSTOP, SIGCONT: every thread, the guard's too) in windows of ``--window``
seconds, ON and OFF in pairs whose order is drawn at random. The first ``--settle``
seconds of each window are left out (the disk's queue and the dirty pages of the
window before drain meanwhile). The harm is production's p95 (and p99) over the ON
windows' requests against the OFF windows' requests, with a 95 % interval from
resampling the pairs. The drift of the machine falls on both sides alike.

A scenario without a backup (``none``: the same windows, nothing stopped) is the A/A
row: the method's own noise. The scenarios are ``run.py``'s, by name.

Run: ``python pulsed.py [--seconds 120] [--window 2] [--settle 0.5]
[--scenarios none,b,c,...]``.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from array import array
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import harness
import run as impact

HERE = Path(__file__).resolve().parent
DEFAULT = ("none", "b", "c", "d10", "dk", "e", "e2", "g5", "z")
"""The A/A row, the unguarded backup, nice + ionice, static limits (10 %; 30 % in small
chunks), wedguard's defaults, with nice + ionice, with a +5 % latency limit, and a
backup that only sleeps."""


def schedule(
    start: float, seconds: float, window: float, rng: random.Random
) -> list[tuple[float, float, bool]]:
    """Windows ``(start, end, on)`` covering ``seconds`` from ``start``: pairs of one
    ON and one OFF window in an order drawn per pair."""
    out: list[tuple[float, float, bool]] = []
    t = start
    pairs = int(seconds // (2 * window))
    for _ in range(pairs):
        first = rng.random() < 0.5
        for on in (first, not first):
            out.append((t, t + window, on))
            t += window
    return out


def pulse(pid: int | None, windows: list[tuple[float, float, bool]]) -> None:
    """Hold process ``pid`` stopped in the OFF windows, running in the ON ones."""
    for start, _end, on in windows:
        impact.sleep_until(start)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGCONT if on else signal.SIGSTOP)
            except ProcessLookupError:
                return
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def harm(
    recs: list[tuple[float, float]],
    windows: list[tuple[float, float, bool]],
    settle: float,
    rng: random.Random,
    resamples: int = 2000,
) -> dict[str, Any]:
    """p95 and p99 of the ON windows' requests over the OFF windows', with 95 %
    intervals from resampling the (ON, OFF) pairs."""
    per: list[list[float]] = [[] for _ in windows]
    starts = [w[0] for w in windows]
    for s, lat in recs:
        i = bisect.bisect_right(starts, s) - 1
        if 0 <= i < len(windows) and windows[i][0] + settle <= s < windows[i][1]:
            per[i].append(lat)
    pairs = []
    for k in range(0, len(windows) - 1, 2):
        a, b = (k, k + 1) if windows[k][2] else (k + 1, k)
        pairs.append((per[a], per[b]))

    def ratio(sel: list[tuple[list[float], list[float]]], q: float) -> float:
        on = sorted(x for p in sel for x in p[0])
        off = sorted(x for p in sel for x in p[1])
        return harness.quantile(on, q) / harness.quantile(off, q)

    out: dict[str, Any] = {"pairs": len(pairs)}
    for q, key in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        point = ratio(pairs, q)
        boots = sorted(ratio([rng.choice(pairs) for _ in pairs], q) for _ in range(resamples))
        out[key] = {
            "ratio": point,
            "low": boots[int(0.025 * resamples)],
            "high": boots[int(0.975 * resamples) - 1],
        }
    on = sorted(x for p in pairs for x in p[0])
    off = sorted(x for p in pairs for x in p[1])
    out["requests"] = {"on": len(on), "off": len(off)}
    out["ms"] = {
        "on": {
            k: harness.quantile(on, q) * 1e3
            for k, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
        },
        "off": {
            k: harness.quantile(off, q) * 1e3
            for k, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
        },
    }
    return out


def one(
    bench: impact.Bench,
    sc: dict[str, Any] | None,
    seconds: float,
    window: float,
    settle: float,
    rng: random.Random,
) -> dict[str, Any]:
    """One scenario: its windows, production's latency in each, the backup's bytes."""
    tag = "none" if sc is None else sc["name"]
    lat_file = bench.shm / f"pulsed-{tag}.bin"
    tl = bench.shm / f"pulsed-{tag}.json"
    t_load = time.monotonic() + 0.8
    start = t_load + 2.0  # the load settles first
    windows = schedule(start, seconds, window, rng)
    stop = windows[-1][1]
    lg = bench.loadgen(t_load, stop - t_load + 0.2, lat_file)
    bk = None
    if sc is not None and sc["backup"] is not None:
        bk = impact.spawn(bench.backup_args(sc["backup"], start, stop, tl, sc), bench.log)
    pulse(None if bk is None else bk.pid, windows)
    try:
        lg.wait(30)
    except subprocess.TimeoutExpired:
        impact.end(lg)
    moved = 0.0
    if bk is not None:
        try:
            bk.wait(10)
        except subprocess.TimeoutExpired:
            impact.end(bk)
        moved = float(json.loads(tl.read_text())["bytes"])
    raw: array[float] = array("d")
    with open(lat_file, "rb") as f:
        raw.frombytes(f.read())
    lat_file.unlink()
    recs = [(raw[i], raw[i + 1]) for i in range(0, len(raw), 2)]
    res = harm(recs, windows, settle, rng)
    on_time = sum(w[1] - w[0] for w in windows if w[2])
    res.update(
        scenario=tag,
        what="no backup: the same windows (A/A)" if sc is None else sc["what"],
        throughput=moved / on_time,
        kept=moved / on_time / bench.speed if bench.speed else 0.0,
    )
    p95, p99 = res["p95"], res["p99"]
    print(
        f"  {tag:5s} p95 x{p95['ratio']:.3f} [{p95['low']:.3f}, {p95['high']:.3f}]"
        f"  p99 x{p99['ratio']:.3f} [{p99['low']:.3f}, {p99['high']:.3f}]"
        f"  kept {res['kept']:.0%}  ({res['pairs']} pairs)",
        flush=True,
    )
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=float, default=120.0, help="seconds of windows per scenario")
    p.add_argument("--window", type=float, default=2.0, help="seconds per ON or OFF window")
    p.add_argument(
        "--settle", type=float, default=0.5, help="seconds left out at each window's start"
    )
    p.add_argument("--scenarios", default=",".join(DEFAULT))
    p.add_argument("--rate", type=float, default=200.0, help="production requests per second")
    p.add_argument("--profile", default="mixed", choices=impact.PROFILES)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=HERE / "pulsed.json")
    args = p.parse_args(argv)
    names = [x.strip() for x in args.scenarios.split(",") if x.strip()]
    known = {sc["name"]: sc for sc in (*impact.scenarios(False, args.profile), *impact.mechanism())}
    bad = [n for n in names if n != "none" and n not in known]
    if bad:
        p.error(f"--scenarios: unknown {', '.join(bad)} (known: none, {', '.join(known)})")
    harness.reset_priority()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    ns = argparse.Namespace(quick=False, rate=args.rate, measure=args.seconds, repeats=1)
    bench = impact.Bench(ns)
    rng = random.Random(args.seed)
    results: list[dict[str, Any]] = []
    started = datetime.now(timezone.utc)
    load0 = os.getloadavg()[0]
    try:
        bench.calibrate(3.0)
        print(f"backup alone {bench.speed / 1e6:.0f} MB/s", flush=True)
        bench.start_server(args.profile)
        order = list(names)
        rng.shuffle(order)
        for name in order:
            sc = known.get(name)
            if sc is not None and sc["family"] == "guard":
                bench.baseline(8.0)  # the guard's analyser learns production as it is now
            results.append(one(bench, sc, args.seconds, args.window, args.settle, rng))
    finally:
        bench.close()
    out = {
        "when": started.isoformat(timespec="seconds"),
        "seconds_per_scenario": args.seconds,
        "window": args.window,
        "settle": args.settle,
        "profile": args.profile,
        "rate": args.rate,
        "backup_alone_bytes_per_s": bench.speed,
        "io_scheduler": bench.io_scheduler,
        "load": [load0, os.getloadavg()[0]],
        "scenarios": {r["scenario"]: r for r in results},
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
