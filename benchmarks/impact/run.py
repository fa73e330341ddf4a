"""The headline benchmark: production latency while a backup runs, guarded and unguarded.

``python benchmarks/impact/run.py`` (about 10 minutes) or ``--quick`` (about a minute:
one repeat, short runs, a smoke test only). Also ``nox -s bench_impact [-- --quick]``.

Production (``service.py``) serves an open-loop Poisson load (``loadgen.py``) on
127.0.0.1 while a backup (``backup.py``) runs beside it in one of these scenarios,
back to back in shuffled order, repeated, every ratio taken against the production
alone run of the same repeat:

a   production alone               a2  production alone again (A/A: the noise floor)
b   backup unguarded               c   nice 19 + ionice idle
d   a static byte-rate limit       e   wedguard, default controller and analyser
f   e with a calendar BLACKOUT in the middle of the run (it must pause and resume)
e2  e with the session thread lowered: Guard(nice=19, ionice=True)
g   wedguard at several settings of the latency limit (the trade-off curve)

It writes ``RESULTS.md``, ``results.json``, ``tradeoff.png`` and ``timeline.png`` next
to this script.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import harness
import psutil

HERE = Path(__file__).resolve().parent
PY = sys.executable
OUT = HERE
"""Where the report goes (``--quick`` writes elsewhere, so it never replaces the record)."""
OUTSIDE_LIMIT = 0.5
"""Cores used by processes outside the experiment above which a run is flagged."""


# -- configuration ------------------------------------------------------------------------


_GUARDED = ("e", "e2")  # wedguard's own settings besides the sweep


def scenarios(quick: bool) -> list[dict[str, Any]]:
    """Every scenario: name, what it is, the backup's arguments (None: no backup)."""
    fast = ["--sample-interval", "0.5", "--window", "5", "--min-dwell", "2"]
    sweep = [0.05, 0.5] if quick else [0.05, 0.25, 1.0]
    out: list[dict[str, Any]] = [
        {"name": "a", "what": "production alone", "backup": None},
        {"name": "a2", "what": "production alone again (A/A)", "backup": None},
        {"name": "b", "what": "unguarded", "backup": ["--mode", "unguarded"]},
        {"name": "c", "what": "nice 19 + ionice idle", "backup": ["--mode", "nice"]},
        {"name": "d", "what": "static limit (30 % of unguarded speed)", "backup": ["static"]},
        {"name": "e", "what": "wedguard defaults", "backup": ["guard"]},
        {"name": "f", "what": "wedguard defaults + BLACKOUT mid-run", "backup": ["blackout"]},
        {
            "name": "e2",
            "what": "wedguard defaults, session thread at nice 19 + idle I/O",
            "backup": ["guard", "--nice", "19", "--ionice"],
        },
    ]
    out.extend(
        {
            "name": f"g{limit:g}",
            "what": f"wedguard, 0.5 s samples, window 5, dwell 2 s, limit +{limit:.0%}",
            "backup": ["guard", "--api-limit", str(limit), *fast],
            "sweep": limit,
        }
        for limit in sweep
    )
    return out


# -- process handling ---------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """The environment of every child: this checkout's ``src`` first on the path."""
    env = dict(os.environ)
    paths = [str(HERE.parent.parent / "src")]
    paths += [str(Path(p).resolve()) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as f:
        return subprocess.Popen(
            [PY, *args],
            cwd=HERE,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=child_env(),
        )


def end(proc: subprocess.Popen[bytes] | None, grace: float = 3.0) -> None:
    """End one process we started, by its PID: SIGTERM, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def sleep_until(t: float) -> None:
    d = t - time.monotonic()
    if d > 0:
        time.sleep(d)


def busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine so far (all cores)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    v = [int(x) for x in fields]
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)
    return busy / os.sysconf("SC_CLK_TCK")


def our_seconds(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


# -- one run ------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick: bool = args.quick
        self.rate: float = args.rate
        self.warm = 1.0 if self.quick else 2.0
        self.measure = 4.0 if self.quick else 13.0
        self.repeats = 1 if self.quick else args.repeats
        self.shm = Path(harness.SHM_ROOT) / f"wedguard-impact-{os.getpid()}"
        self.shm.mkdir(parents=True, exist_ok=True)
        self.log = self.shm / "processes.log"
        size = (256 if self.quick else 1024) << 20
        self.data = harness.ensure_data(harness.DATA_DIR / f"data-{size >> 20}MiB.bin", size)
        self.server: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.direct = False
        self.speed = 0.0
        self.seq = 0
        self.baselines: list[tuple[float, float, int]] = []

    def start_server(self) -> None:
        ready = self.shm / "server.json"
        self.server = spawn(
            ["service.py", "--data", str(self.data), "--ready", str(ready)], self.log
        )
        deadline = time.monotonic() + 20
        while not ready.exists():
            if time.monotonic() > deadline or self.server.poll() is not None:
                raise RuntimeError(f"production did not start; see {self.log}")
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        self.port = int(info["port"])
        self.direct = bool(info["direct"])

    def loadgen(self, start: float, duration: float, out: Path) -> subprocess.Popen[bytes]:
        self.seq += 1
        return spawn(
            [
                "loadgen.py",
                "--port", str(self.port),
                "--rate", str(self.rate),
                "--start-at", repr(start),
                "--duration", repr(duration),
                "--seed", str(self.seq),
                "--out", str(out),
            ],
            self.log,
        )  # fmt: skip

    def backup_args(self, spec: list[str], start: float, stop: float, tl: Path) -> list[str]:
        common = [
            "backup.py",
            "--data", str(self.data),
            "--out", str(harness.DATA_DIR / f"backup-{os.getpid()}.z"),
            "--timeline", str(tl),
            "--start-at", repr(start),
            "--stop-at", repr(stop),
        ]  # fmt: skip
        kind, rest = spec[0], spec[1:]
        guard = [
            "--mode", "guard",
            "--port", str(self.port),
            "--ceiling", repr(self.speed),
        ]  # fmt: skip
        if kind == "static":
            return [*common, "--mode", "static", "--limit", repr(0.3 * self.speed)]
        if kind == "guard":
            interval = "0.5" if "--sample-interval" in rest else "1.0"
            return [*common, *guard, "--baseline", str(self.shm / f"base-{interval}.json"), *rest]
        if kind == "blackout":
            a, b = 0.3 * self.measure, 0.6 * self.measure
            return [
                *common, *guard,
                "--baseline", str(self.shm / "base-1.0.json"),
                "--blackout", f"{a!r},{b!r}",
                *rest,
            ]  # fmt: skip
        return [*common, *spec]

    def baseline(self, seconds: float) -> None:
        """Record the analyser's baseline: production alone, sampled as the guard will."""
        import wedguard as wg
        from wedguard.sources import ServiceLatencySource

        url = f"http://127.0.0.1:{self.port}/metrics"
        srcs = {
            iv: (ServiceLatencySource(url, histogram=harness.HISTOGRAM), wg.ImpactAnalyzer())
            for iv in (0.5, 1.0)
        }
        start = time.monotonic() + 0.5
        lg = self.loadgen(start, seconds + 0.5, self.shm / "baseline.bin")
        sleep_until(start + 0.5)
        nxt = {iv: time.monotonic() for iv in srcs}
        stop = start + seconds
        while time.monotonic() < stop:
            for iv, (src, an) in srcs.items():
                if time.monotonic() >= nxt[iv]:
                    an.observe_baseline(src.sample())
                    nxt[iv] += iv
            time.sleep(0.02)
        lg.wait(30)
        for iv, (_, an) in srcs.items():
            (self.shm / f"base-{iv:.1f}.json").write_text(an.baseline.to_json())
        stats = an.baseline.get("api.latency_s")
        if stats is not None:
            self.baselines.append((stats.median, stats.spread, stats.count))

    def calibrate(self, seconds: float) -> None:
        """The backup's own speed, alone: the static limit and the guard's budget."""
        tl = self.shm / "calibrate.json"
        start = time.monotonic() + 0.8
        args = self.backup_args(["--mode", "unguarded"], start, start + seconds, tl)
        proc = spawn(args, self.log)
        proc.wait(seconds + 20)
        self.speed = json.loads(tl.read_text())["bytes"] / seconds

    def run(self, sc: dict[str, Any], repeat: int) -> dict[str, Any]:
        tag = f"{sc['name']}-{repeat}"
        lat_file = self.shm / f"lat-{tag}.bin"
        tl = self.shm / f"tl-{tag}.json"
        t_load = time.monotonic() + 0.8
        start, stop = t_load + self.warm, t_load + self.warm + self.measure
        lg = self.loadgen(t_load, self.warm + self.measure, lat_file)
        bk = None
        if sc["backup"] is not None:
            bk = spawn(self.backup_args(sc["backup"], start, stop, tl), self.log)
        pids = [p.pid for p in (self.server, lg, bk) if p is not None] + [os.getpid()]
        sleep_until(start)
        busy0, ours0 = busy_seconds(), our_seconds(pids)
        sleep_until(stop - 0.05)
        busy1, ours1 = busy_seconds(), our_seconds(pids)
        outside = max(0.0, (busy1 - busy0) - (ours1 - ours0)) / (stop - 0.05 - start)
        try:
            lg.wait(self.measure + 15)
        except subprocess.TimeoutExpired:
            end(lg)
        if bk is not None:
            try:
                bk.wait(5)
            except subprocess.TimeoutExpired:
                end(bk)
        raw: array[float] = array("d")
        with open(lat_file, "rb") as f:
            raw.frombytes(f.read())
        lat_file.unlink()
        recs = [(raw[i], raw[i + 1]) for i in range(0, len(raw), 2)]
        window = [lat for s, lat in recs if start <= s < stop]
        p50, p95, p99 = harness.percentiles(window)
        res: dict[str, Any] = {
            "scenario": sc["name"],
            "repeat": repeat,
            "requests": len(window),
            "p50": p50,
            "p95": p95,
            "p99": p99,
            "outside_cores": outside,
            "flagged": outside > OUTSIDE_LIMIT,
            "throughput": 0.0,
            "latencies": window,
        }
        if bk is not None:
            info = json.loads(tl.read_text())
            res["throughput"] = info["bytes"] / self.measure
            res["nice"] = info["nice"]
            res["io_class"] = info["io_class"]
            res["timeline"] = [[row[0] - start, *row[1:]] for row in info["timeline"]]
            res["latency_p95_1s"] = harness.window_quantiles(
                [(s, lat) for s, lat in recs if s < stop], start, 1.0, 0.95
            )
            res["waited"] = info["waited"]
            res["error"] = info.get("error", "")
        print(
            f"  {tag:8s} p50 {p50 * 1e3:6.2f} ms  p95 {p95 * 1e3:6.2f} ms  p99 {p99 * 1e3:7.2f} ms"
            f"  backup {res['throughput'] / 1e6:6.1f} MB/s  outside {outside:4.2f} cores"
            + ("  FLAGGED" if res["flagged"] else ""),
            flush=True,
        )
        return res

    def close(self) -> None:
        end(self.server)
        shutil.rmtree(self.shm, ignore_errors=True)


# -- the report -----------------------------------------------------------------------------


def analyse(runs: list[dict[str, Any]], scs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per scenario: percentiles, inflation over (a) per repeat, pooled with intervals."""
    by = {(r["scenario"], r["repeat"]): r for r in runs}
    repeats = sorted({r["repeat"] for r in runs})
    out: dict[str, Any] = {}
    for sc in scs:
        name = sc["name"]
        mine = [by[(name, k)] for k in repeats if (name, k) in by]
        row: dict[str, Any] = {"what": sc["what"], "sweep": sc.get("sweep"), "n": len(mine)}
        pairs = [(r["latencies"], by[("a", r["repeat"])]["latencies"]) for r in mine]
        pooled = harness.bootstrap_ratios(pairs, (0.5, 0.95, 0.99), seed=len(name))
        for q, key in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
            row[key] = sum(r[key] for r in mine) / len(mine)
            ratios = [r[key] / by[("a", r["repeat"])][key] for r in mine]
            row[key + "_ratios"] = ratios
            row[key + "_spread"] = harness.spread(ratios)
            row[key + "_pooled"] = pooled[q]
        row["throughput"] = sum(r["throughput"] for r in mine) / len(mine)
        shares = [
            r["throughput"] / by[("b", r["repeat"])]["throughput"]
            for r in mine
            if by[("b", r["repeat"])]["throughput"] > 0
        ]
        row["shares"] = shares
        row["share"] = sum(shares) / len(shares) if shares else math.nan
        row["share_spread"] = harness.spread(shares)
        row["flagged"] = sum(1 for r in mine if r["flagged"])
        row["outside"] = [r["outside_cores"] for r in mine]
        out[name] = row
    return out


def fmt_ratio(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.2f}"


def plot(summary: dict[str, Any], runs: list[dict[str, Any]], scs: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    colors = {
        "a2": "grey",
        "b": "red",
        "c": "orange",
        "d": "purple",
        "e": "green",
        "e2": "darkgreen",
        "f": "teal",
    }
    sweep = [sc["name"] for sc in scs if sc.get("sweep") is not None]
    for ax, key, goal in ((axes[0], "p95", 1.05), (axes[1], "p99", 1.25)):
        for name, color in colors.items():
            r = summary[name]
            share = 0.0 if name == "a2" else r["share"]
            y, lo, hi = r[key + "_pooled"]
            ax.errorbar(
                [share], [y], yerr=[[y - lo], [hi - y]], fmt="o", color=color, capsize=3,
                label=f"{name}: {r['what']}",
            )  # fmt: skip
        pts = sorted((summary[n]["share"], *summary[n][key + "_pooled"], n) for n in sweep)
        if pts:
            ax.errorbar(
                [p[0] for p in pts], [p[1] for p in pts],
                yerr=[[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]],
                fmt="-s", color="blue", capsize=3, label="g: wedguard, latency limit sweep",
            )  # fmt: skip
            for p in pts:
                ax.annotate(p[4], (p[0], p[1]), textcoords="offset points", xytext=(4, 4))
        ax.axhline(goal, color="black", lw=0.8, ls="--")
        ax.axvline(0.3, color="black", lw=0.8, ls=":")
        ax.axhline(1.0, color="grey", lw=0.5)
        ax.set_xlabel("backup throughput kept (share of unguarded)")
        ax.set_ylabel(f"production {key} inflation over (a), pooled, 95 % CI")
        ax.set_title(f"{key}: goal ≤ {goal} at ≥ 30 % throughput")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(OUT / "tradeoff.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(2, 2, figsize=(11, 6), sharex=True)
    for col, name in enumerate(("e", "f")):
        run = next((r for r in runs if r["scenario"] == name and "timeline" in r), None)
        if run is None:
            continue
        base = next(r for r in runs if r["scenario"] == "a" and r["repeat"] == run["repeat"])
        lat = run["latency_p95_1s"]
        ax = axes[0][col]
        ax.plot([t for t, _ in lat], [v * 1e3 for _, v in lat], "-o", ms=3, label="p95 per second")
        ax.axhline(base["p95"] * 1e3, color="grey", ls="--", label="p95 of (a), same repeat")
        ax.set_ylabel("production latency (ms)")
        ax.set_title(f"({name}) {summary[name]['what']}, repeat {run['repeat']}")
        ax.legend(fontsize=7)
        tl = run["timeline"]
        ax = axes[1][col]
        ts = [row[0] for row in tl]
        allowed = [min(row[2], 2 * summary["b"]["throughput"]) / 1e6 for row in tl]
        got = [0.0] + [
            (tl[i][1] - tl[i - 1][1]) / max(1e-9, tl[i][0] - tl[i - 1][0]) / 1e6
            for i in range(1, len(tl))
        ]
        ax.step(ts, allowed, where="post", label="allowed rate (decision)")
        ax.plot(ts, got, alpha=0.6, label="backup read rate")
        blk = [row[0] for row in tl if len(row) > 4 and row[4] >= 2]
        if blk:
            ax.axvspan(min(blk), max(blk), color="black", alpha=0.1, label="BLACKOUT")
        ax.set_ylabel("MB/s")
        ax.set_xlabel("seconds into the run")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "timeline.png", dpi=110)
    plt.close(fig)


def verdicts(summary: dict[str, Any], scs: list[dict[str, Any]]) -> list[str]:
    guarded = [sc["name"] for sc in scs if sc["name"] in _GUARDED or sc.get("sweep") is not None]
    lines = []
    ok = [
        n
        for n in guarded
        if summary[n]["p95_pooled"][0] <= 1.05
        and summary[n]["p99_pooled"][0] <= 1.25
        and summary[n]["share"] >= 0.30
    ]
    lines.append(
        "- **Goal (pooled p95 ≤ 1.05 and p99 ≤ 1.25 at ≥ 30 % of unguarded throughput): "
        + (f"met** by {', '.join(ok)}." if ok else "not met** by any wedguard setting measured.")
    )
    curve = [(summary[n]["share"], summary[n]["p95_pooled"][0]) for n in guarded]
    curve99 = [(summary[n]["share"], summary[n]["p99_pooled"][0]) for n in guarded]
    for rival in ("c", "d"):
        r = summary[rival]
        d95 = harness.dominated((r["share"], r["p95_pooled"][0]), curve)
        d99 = harness.dominated((r["share"], r["p99_pooled"][0]), curve99)
        lines.append(
            f"- ({rival}) {r['what']}: kept {r['share']:.0%}, p95 ×{r['p95_pooled'][0]:.2f}, "
            f"p99 ×{r['p99_pooled'][0]:.2f}; a wedguard point keeps at least as much with no "
            f"more inflation: p95 {'yes' if d95 else 'no'}, p99 {'yes' if d99 else 'no'}."
        )
    return lines


def history_record(
    bench: Bench,
    summary: dict[str, Any],
    runs: list[dict[str, Any]],
    started: datetime,
    load: tuple[float, float],
) -> dict[str, Any]:
    outside = sorted(r["outside_cores"] for r in runs)
    return {
        "date": f"{started:%Y-%m-%d %H:%M}",
        "load": [round(load[0], 1), round(load[1], 1)],
        "outside": round(harness.quantile(outside, 0.5), 2),
        "repeats": bench.repeats,
        "measure": bench.measure,
        "speed": round(bench.speed / 1e6, 1),
        "baseline": "per repeat",
        "scenarios": {
            name: [round(r["share"], 3), round(r["p95_pooled"][0], 3), round(r["p99_pooled"][0], 3)]
            for name, r in summary.items()
        },
    }


def read_history() -> list[dict[str, Any]]:
    path = OUT / "history.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def history_table(history: list[dict[str, Any]]) -> list[str]:
    if not history:
        return ["(none yet)"]
    names = [n for n in history[-1]["scenarios"] if n != "a"]
    head = "| run (UTC) | outside cores | " + " | ".join(f"({n})" for n in names) + " |"
    lines = [head, "|---|---:|" + "---|" * len(names)]
    for h in history:
        cells = []
        for n in names:
            v = h["scenarios"].get(n)
            cells.append("–" if v is None else f"{v[1]:.2f} / {v[2]:.2f} @ {v[0]:.0%}")
        lines.append(
            f"| {h['date']} ({h['repeats']}×{h['measure']:g} s, baseline "
            f"{h.get('baseline', 'at start')}) | {h['outside']:.2f} | " + " | ".join(cells) + " |"
        )
    if len(history) > 1:
        cells = []
        for n in names:
            v = across_runs(history, n)
            cells.append("–" if v is None else f"**{v[1]:.2f} / {v[2]:.2f} @ {v[0]:.0%}**")
        lines.append(
            f"| **all {len(history)} runs** (geometric mean) | | " + " | ".join(cells) + " |"
        )
    return lines


def history_verdict(history: list[dict[str, Any]], scs: list[dict[str, Any]]) -> list[str]:
    """The goal judged on every full run pooled (geometric means over runs)."""
    if len(history) < 2:
        return []
    guarded = [sc["name"] for sc in scs if sc["name"] in _GUARDED or sc.get("sweep") is not None]
    pooled = {n: across_runs(history, n) for n in guarded}
    ok = [
        n
        for n, v in pooled.items()
        if v is not None and v[1] <= 1.05 and v[2] <= 1.25 and v[0] >= 0.30
    ]
    parts = [
        f"{n} p95 ×{v[1]:.2f}, p99 ×{v[2]:.2f} at {v[0]:.0%}"
        for n, v in pooled.items()
        if v is not None
    ]
    return [
        f"- Over all {len(history)} full runs ({sum(h['repeats'] for h in history)} repeats): "
        + (f"goal **met** by {', '.join(ok)}" if ok else "goal **not met**")
        + f" ({'; '.join(parts)})."
    ]


def across_runs(history: list[dict[str, Any]], name: str) -> tuple[float, float, float] | None:
    """(mean share, geometric mean p95 ×, geometric mean p99 ×) of ``name`` over runs."""
    vals = [h["scenarios"][name] for h in history if name in h["scenarios"]]
    vals = [v for v in vals if all(x == x for x in v) and v[1] > 0 and v[2] > 0]
    if not vals:
        return None
    share = sum(v[0] for v in vals) / len(vals)
    g95 = math.exp(sum(math.log(v[1]) for v in vals) / len(vals))
    g99 = math.exp(sum(math.log(v[2]) for v in vals) / len(vals))
    return (share, g95, g99)


def blackout_lines(runs: list[dict[str, Any]]) -> list[str]:
    """Did every (f) run pause through its BLACKOUT and resume after it?"""
    out = ["## Blackout (f)", ""]
    for r in runs:
        if r["scenario"] != "f" or "timeline" not in r:
            continue
        tl = r["timeline"]
        blk = [row for row in tl if len(row) > 4 and row[4] >= 2]
        if not blk:
            out.append(f"- Repeat {r['repeat']}: the BLACKOUT was never seen in force.")
            continue
        moved = blk[-1][1] - blk[0][1]
        after = tl[-1][1] - blk[-1][1]
        line = (
            f"- Repeat {r['repeat']}: BLACKOUT from {blk[0][0]:.1f} s to {blk[-1][0]:.1f} s; "
            f"read meanwhile {moved / 1e6:.1f} MB, after it {after / 1e6:.1f} MB: "
            + (
                "paused and resumed."
                if moved == 0 and after > 0
                else "**did not pause and resume**."
            )
        )
        if r.get("error"):
            line += f" The backup failed: `{r['error'].strip().splitlines()[-1]}`."
        out.append(line)
    return [*out, ""]


def write_report(
    bench: Bench,
    summary: dict[str, Any],
    runs: list[dict[str, Any]],
    scs: list[dict[str, Any]],
    started: datetime,
    elapsed: float,
    load: tuple[float, float],
) -> None:
    aa = summary["a2"]
    flagged = sum(1 for r in runs if r["flagged"])
    outside = [r["outside_cores"] for r in runs]
    lines = [
        "# Impact benchmark: production latency while a backup runs",
        "",
        "Written by `benchmarks/impact/run.py`"
        + (
            " in `--quick` mode (a smoke test: one short repeat; do not read the figures)"
            if bench.quick
            else ""
        )
        + ".",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; took {elapsed / 60:.1f} min.",
        f"- Machine: {os.cpu_count()} cores, shared with other work; load average "
        f"{load[0]:.1f} at the start, {load[1]:.1f} at the end. CPU used outside the "
        f"experiment: {min(outside):.2f}–{max(outside):.2f} cores per run "
        f"(median {harness.quantile(sorted(outside), 0.5):.2f}); {flagged} of {len(runs)} runs "
        f"above {OUTSIDE_LIMIT} cores are flagged (kept in the figures, marked in results.json).",
        f"- Production: {bench.rate:g} req/s open-loop Poisson, each request SHA-256 over 64 KiB, "
        f"a JSON round trip of about 4 KB and 4 random 4 KiB reads "
        f"({'O_DIRECT' if bench.direct else 'pages dropped with posix_fadvise'}) from a "
        f"{bench.data.stat().st_size >> 20} MiB data set.",
        f"- Backup: 1 MiB sequential reads, zlib level 1, fsync every 16 MiB; alone it "
        f"reads {bench.speed / 1e6:.0f} MB/s. The static limit (d) is 30 % of that; the "
        f"guard's budget (its `rate`) is all of it.",
        f"- {bench.repeats} repeats of {len(scs)} scenarios in shuffled order; "
        f"{bench.measure:g} s measured per run after {bench.warm:g} s of load alone. "
        "Latency is measured from each request's scheduled send time.",
        "- The guard's baseline (production's p95 alone, sampled as the guard samples) is "
        "recorded afresh before every repeat: "
        + ", ".join(
            f"{m * 1e3:.2f} ms ± {sp * 1e3:.2f} ({n} samples)" for m, sp, n in bench.baselines
        )
        + ".",
        "- Ratios are over (a) of the same repeat. *Spread*: smallest–largest over repeats. "
        "*Pooled*: geometric mean over repeats, with a 95 % bootstrap interval "
        "(requests resampled within each run).",
        "",
        "| scenario | p50 ms | p95 ms | p99 ms | p50 × | p95 × pooled [95 % CI] | p95 × spread | "
        "p99 × pooled [95 % CI] | p99 × spread | backup MB/s | share of (b) | flagged |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for sc in scs:
        r = summary[sc["name"]]
        p95, lo95, hi95 = r["p95_pooled"]
        p99, lo99, hi99 = r["p99_pooled"]
        s95, s99 = r["p95_spread"], r["p99_spread"]
        lines.append(
            f"| ({sc['name']}) {r['what']} | {r['p50'] * 1e3:.2f} | {r['p95'] * 1e3:.2f} | "
            f"{r['p99'] * 1e3:.2f} | {fmt_ratio(r['p50_pooled'][0])} | "
            f"{p95:.3f} [{lo95:.3f}, {hi95:.3f}] | {s95[0]:.2f}–{s95[1]:.2f} | "
            f"{p99:.3f} [{lo99:.3f}, {hi99:.3f}] | {s99[0]:.2f}–{s99[1]:.2f} | "
            f"{r['throughput'] / 1e6:.1f} | {r['share']:.0%} | {r['flagged']}/{r['n']} |"
        )
    p95, lo95, hi95 = aa["p95_pooled"]
    p99, lo99, hi99 = aa["p99_pooled"]
    lines += [
        "",
        "## Noise floor (A/A)",
        "",
        f"(a2) against (a): p95 ×{p95:.3f} pooled [{lo95:.3f}, {hi95:.3f}], per repeat "
        + ", ".join(f"{x:.3f}" for x in aa["p95_ratios"])
        + f"; p99 ×{p99:.3f} [{lo99:.3f}, {hi99:.3f}], per repeat "
        + ", ".join(f"{x:.3f}" for x in aa["p99_ratios"])
        + ". The bootstrap interval covers the sampling noise within each run; the spread "
        "of the A/A ratios over repeats is the drift of the shared machine between runs "
        "and is the honest noise floor: differences inside it are not measured here.",
        "",
        "## Every full run so far",
        "",
        "Each cell: p95 × / p99 × pooled over (a) of the same repeats, and the share of "
        "unguarded throughput kept. Kept by `history.jsonl`, one line per full run.",
        "",
        *history_table(read_history()),
        "",
        "## Against the goal",
        "",
        *verdicts(summary, scs),
        *history_verdict(read_history(), scs),
        "",
        "![trade-off](tradeoff.png)",
        "",
        "![timeline](timeline.png)",
        "",
    ]
    lines += blackout_lines(runs)
    (OUT / "RESULTS.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="about a minute: a smoke test")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rate", type=float, default=200.0, help="production requests per second")
    p.add_argument("--seed", type=int, default=None, help="the shuffle's seed")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="report folder (default: here; "
        "with --quick: wedguard-impact-quick in the temporary folder)",
    )
    args = p.parse_args(argv)
    global OUT
    OUT = args.out or (
        Path(tempfile.gettempdir()) / "wedguard-impact-quick" if args.quick else HERE
    )
    OUT.mkdir(parents=True, exist_ok=True)
    harness.reset_priority()
    started = datetime.now(timezone.utc)
    t0 = time.monotonic()
    load0 = os.getloadavg()[0]
    bench = Bench(args)
    scs = scenarios(args.quick)
    rng = random.Random(args.seed)
    runs: list[dict[str, Any]] = []
    try:
        bench.start_server()
        bench.calibrate(2.0 if bench.quick else 3.0)
        print(
            f"production on 127.0.0.1:{bench.port} (O_DIRECT: {bench.direct}); "
            f"backup alone {bench.speed / 1e6:.0f} MB/s",
            flush=True,
        )
        for k in range(bench.repeats):
            # a fresh baseline for every repeat: the machine's other load drifts, and a
            # baseline minutes old reads the backup's harm as normal (or noise as harm)
            bench.baseline(3.0 if bench.quick else 8.0)
            order = list(scs)
            rng.shuffle(order)
            print(
                f"repeat {k + 1}/{bench.repeats}: {' '.join(sc['name'] for sc in order)}",
                flush=True,
            )
            runs.extend(bench.run(sc, k) for sc in order)
    except BaseException:
        if bench.log.exists():
            print(bench.log.read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        bench.close()
    summary = analyse(runs, scs)
    with open(OUT / "history.jsonl", "a") as f:
        load = (load0, os.getloadavg()[0])
        f.write(json.dumps(history_record(bench, summary, runs, started, load)) + "\n")
    plot(summary, runs, scs)
    write_report(
        bench, summary, runs, scs, started, time.monotonic() - t0, (load0, os.getloadavg()[0])
    )
    slim = [{k: v for k, v in r.items() if k != "latencies"} for r in runs]
    (OUT / "results.json").write_text(
        json.dumps({"summary": summary, "runs": slim}, indent=1, default=str)
    )
    print((OUT / "RESULTS.md").read_text())
    print(f"written to {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
