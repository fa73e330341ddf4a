"""The headline benchmark: production latency while a backup runs, guarded and unguarded.

``python benchmarks/impact/run.py`` (about half an hour) or ``--quick`` (a few minutes:
one repeat, short runs, a smoke test only). Also ``nox -s bench_impact [-- --quick]``.

Production (``service.py``) serves an open-loop Poisson load (``loadgen.py``) on
127.0.0.1 while a backup (``backup.py``) runs beside it in one of these scenarios,
back to back in shuffled order, repeated, every ratio taken against the production
alone run of the same repeat and profile:

a    production alone               a2   production alone again (A/A: the noise floor)
b    backup unguarded               c    nice 19 + ionice idle
d    a static byte-rate limit at 30 %; d10, d50, d70 at 10, 50, 70 % (the static curve)
e    wedguard, default controller and analyser
f    e with a calendar BLACKOUT in the middle of the run (it must pause and resume)
e2   e with the session thread lowered: Guard(nice=19, ionice=True)
es   e shaped: Guard(shaping=True, sched_idle=True), the host's pressure judged too,
     chunks of the guard's size (its two loops and causal pauses)
g5, g25, g100   wedguard with a latency limit of +5, +25, +100 % (the guard's curve)
ca   c with the backup's autogroup (its session) at nice 19
i    SCHED_IDLE alone (every thread of the backup), unpaced; ia: with its autogroup at 19
k    small chunks alone (128 KiB reads), unpaced
ik   SCHED_IDLE and small chunks, unpaced
dk   d with 128 KiB chunks (smooth pacing); dik: the same in SCHED_IDLE
z    a backup that only sleeps: d's wake-ups without any I/O or CPU (the frontier)

Production has three profiles (``--profiles``): ``mixed`` (the default, every scenario),
``cpu`` and ``disk`` (the stand-ins only). Each repeat runs every profile. With
``--max-repeats`` above ``--repeats`` it keeps repeating until the A/A interval of the
mixed profile's p95 is within ±2 % or ``--minutes`` runs out.

It writes ``RESULTS.md``, ``results.json`` (and ``results-profiles.json`` when the run
measured the cpu and disk profiles), ``tradeoff.png`` and ``timeline.png`` next
to this script, appends to ``history.jsonl`` and, after a full run, rewrites the
figures the README and the docs quote (``benchmarks/figures.py``).
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


_GUARDED = ("e", "e2", "es")  # wedguard's own settings besides the sweep

SMALL = 128 * 1024
"""The small chunk of the stand-ins k, ik, dk, dik."""
STATIC_LEVELS = (0.1, 0.3, 0.5, 0.7)
"""Static limits as shares of the backup's speed alone: the static curve."""
PROFILES = ("mixed", "cpu", "disk")
PROFILE_SCENARIOS = ("a", "a2", "b", "c", "ca", "d", "i", "ia", "k", "ik", "dik", "z")
"""The scenarios run for the ``cpu`` and ``disk`` profiles (``mixed`` runs them all)."""
OLD_NAMES = {"g0.05": "g5", "g0.25": "g25", "g1": "g100", "g0.5": "g50"}
"""Scenario names of earlier records (keys with dots cannot be quoted by the figures)."""


def mechanism() -> list[dict[str, Any]]:
    """The backup's work taken apart (``pulsed.py --scenarios``, unguarded, unpaced):
    each part of it alone, to see which one production feels."""
    unpaced = ["--mode", "unguarded"]
    return [
        {"name": "mr", "what": "reads only (1 MiB, uncached)", "family": "mechanism",
         "backup": [*unpaced, "--parts", "read"]},
        {"name": "mc", "what": "compression only (one chunk, in memory)", "family": "mechanism",
         "backup": [*unpaced, "--parts", "compress"]},
        {"name": "mw", "what": "writes only (fsync every 16 MiB)", "family": "mechanism",
         "backup": [*unpaced, "--parts", "write"]},
        {"name": "mrw", "what": "reads and writes, no compression", "family": "mechanism",
         "backup": [*unpaced, "--parts", "read,write"]},
        {"name": "mrk", "what": "reads only, 128 KiB", "family": "mechanism",
         "backup": [*unpaced, "--parts", "read", "--chunk", str(SMALL)]},
    ]  # fmt: skip


def scenarios(quick: bool, profile: str = "mixed") -> list[dict[str, Any]]:
    """Every scenario: name, what it is, its family, the backup's arguments (None: none).

    Families: ``alone``, ``unguarded``, ``priority`` (nice/ionice), ``static`` (with its
    ``level``), ``guard`` (with ``sweep``, the latency limit, for the g curve),
    ``standin`` (SCHED_IDLE, small chunks and their combinations) and ``sleep``.
    """
    fast = ["--sample-interval", "0.5", "--window", "5", "--min-dwell", "2"]
    sweep = [0.05, 0.5] if quick else [0.05, 0.25, 1.0]
    small = ["--chunk", str(SMALL)]
    idle = ["--sched-idle"]
    group = ["--autogroup-nice", "19"]
    out: list[dict[str, Any]] = [
        {"name": "a", "what": "production alone", "family": "alone", "backup": None},
        {
            "name": "a2",
            "what": "production alone again (A/A)",
            "family": "alone",
            "backup": None,
        },
        {"name": "b", "what": "unguarded", "family": "unguarded", "backup": ["--mode", "unguarded"]},
        {"name": "c", "what": "nice 19 + ionice idle", "family": "priority", "backup": ["--mode", "nice"]},
        {
            "name": "d",
            "what": "static limit (30 % of unguarded speed)",
            "family": "static",
            "level": 0.3,
            "backup": ["static"],
        },
        {"name": "e", "what": "wedguard defaults", "family": "guard", "backup": ["guard"]},
        {
            "name": "f",
            "what": "wedguard defaults + BLACKOUT mid-run",
            "family": "guard",
            "backup": ["blackout"],
        },
        {
            "name": "e2",
            "what": "wedguard defaults, session thread at nice 19 + idle I/O",
            "family": "guard",
            "backup": ["guard", "--nice", "19", "--ionice"],
        },
        {
            "name": "es",
            "what": "wedguard shaped: two loops, causal pauses, SCHED_IDLE, its chunk sizes",
            "family": "guard",
            "backup": ["guard", "--shaping", "--guard-sched-idle"],
        },
    ]  # fmt: skip
    out.extend(
        {
            "name": f"g{round(limit * 100)}",
            "what": f"wedguard, 0.5 s samples, window 5, dwell 2 s, limit +{limit:.0%}",
            "family": "guard",
            "backup": ["guard", "--api-limit", str(limit), *fast],
            "sweep": limit,
        }
        for limit in sweep
    )
    levels = (0.1, 0.7) if quick else tuple(x for x in STATIC_LEVELS if x != 0.3)
    out.extend(
        {
            "name": f"d{round(level * 100)}",
            "what": f"static limit ({level:.0%} of unguarded speed)",
            "family": "static",
            "level": level,
            "backup": ["static"],
        }
        for level in levels
    )
    out += [
        {"name": "ca", "what": "nice 19 + ionice idle, its autogroup at nice 19",
         "family": "priority", "backup": ["--mode", "nice", *group]},
        {"name": "i", "what": "SCHED_IDLE, unpaced", "family": "standin",
         "backup": ["--mode", "unguarded", *idle]},
        {"name": "ia", "what": "SCHED_IDLE, its autogroup at nice 19, unpaced",
         "family": "standin", "backup": ["--mode", "unguarded", *idle, *group]},
        {"name": "k", "what": "128 KiB chunks, unpaced", "family": "standin",
         "backup": ["--mode", "unguarded", *small]},
        {"name": "ik", "what": "SCHED_IDLE + 128 KiB chunks, unpaced", "family": "standin",
         "backup": ["--mode", "unguarded", *idle, *small]},
        {"name": "dk", "what": "static limit 30 %, 128 KiB chunks", "family": "standin",
         "level": 0.3, "backup": ["static", *small]},
        {"name": "dik", "what": "static limit 30 %, SCHED_IDLE + 128 KiB chunks",
         "family": "standin", "level": 0.3, "backup": ["static", *idle, *small]},
        {"name": "z", "what": "a backup that only sleeps (d's wake-ups, no I/O, no CPU)",
         "family": "sleep", "level": 0.3, "backup": ["sleep"]},
        {"name": "p", "what": "confined to one core, unpaced", "family": "standin",
         "backup": ["--mode", "unguarded", "--cpus", "1"]},
        {"name": "ep", "what": "wedguard defaults, cpus=1", "family": "guard",
         "backup": ["guard", "--guard-cpus", "1"]},
    ]  # fmt: skip
    if profile != "mixed":
        out = [sc for sc in out if sc["name"] in PROFILE_SCENARIOS]
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
        self.measure = 4.0 if self.quick else args.measure
        self.repeats = 1 if self.quick else args.repeats  # the repeats done, in the end
        self.profile = "mixed"
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
        self.autogroups = harness.autogroup_enabled()
        self.io_scheduler = harness.io_scheduler(self.data)

    def start_server(self, profile: str = "mixed") -> None:
        end(self.server)
        self.profile = profile
        ready = self.shm / "server.json"
        ready.unlink(missing_ok=True)
        self.server = spawn(
            ["service.py", "--data", str(self.data), "--ready", str(ready), "--profile", profile],
            self.log,
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

    def backup_args(
        self,
        spec: list[str],
        start: float,
        stop: float,
        tl: Path,
        sc: dict[str, Any] | None = None,
    ) -> list[str]:
        common = [
            "backup.py",
            "--data", str(self.data),
            "--out", str(harness.DATA_DIR / f"backup-{os.getpid()}.z"),
            "--timeline", str(tl),
            "--start-at", repr(start),
            "--stop-at", repr(stop),
        ]  # fmt: skip
        kind, rest = spec[0], spec[1:]
        level = 0.3 if sc is None else float(sc.get("level", 0.3))
        guard = [
            "--mode", "guard",
            "--port", str(self.port),
            "--ceiling", repr(self.speed),
        ]  # fmt: skip
        if kind in ("static", "sleep"):
            return [*common, "--mode", kind, "--limit", repr(level * self.speed), *rest]
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
            bk = spawn(self.backup_args(sc["backup"], start, stop, tl, sc), self.log)
        pids = [p.pid for p in (self.server, lg, bk) if p is not None] + [os.getpid()]
        server = [self.server.pid] if self.server is not None else []
        sleep_until(start)
        busy0, ours0, prod0 = busy_seconds(), our_seconds(pids), our_seconds(server)
        load0 = os.getloadavg()[0]
        sleep_until(stop - 0.05)
        busy1, ours1, prod1 = busy_seconds(), our_seconds(pids), our_seconds(server)
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
            "profile": self.profile,
            "repeat": repeat,
            "requests": len(window),
            "p50": p50,
            "p95": p95,
            "p99": p99,
            "outside_cores": outside,
            "load": (load0 + os.getloadavg()[0]) / 2,
            # production's own CPU per request served: how CPU-bound the profile is
            "prod_cpu_ms": (prod1 - prod0) * 1e3 / max(1, len(window)),
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
            res["policy"] = info.get("policy", -1)
            res["policies"] = info.get("policies", [])
            res["threads"] = info.get("threads", 0)
            res["chunk"] = info.get("chunk", 0)
            res["autogroup_nice"] = info.get("autogroup_nice", 0)
            res["error"] = info.get("error", "")
        print(
            f"  {self.profile[:5]:5s} {tag:8s} p50 {p50 * 1e3:6.2f} ms  p95 {p95 * 1e3:6.2f} ms  p99 {p99 * 1e3:7.2f} ms"
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
    """Per scenario: percentiles, inflation over (a) per repeat, pooled with intervals.

    ``runs`` are one profile's runs (every ratio is over (a) of the same repeat).
    """
    by = {(r["scenario"], r["repeat"]): r for r in runs}
    repeats = sorted({r["repeat"] for r in runs})
    out: dict[str, Any] = {}
    for sc in scs:
        name = sc["name"]
        mine = [by[(name, k)] for k in repeats if (name, k) in by and ("a", k) in by]
        if not mine:
            continue
        row: dict[str, Any] = {
            "what": sc["what"],
            "family": sc.get("family", ""),
            "level": sc.get("level"),
            "sweep": sc.get("sweep"),
            "n": len(mine),
        }
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
            if ("b", r["repeat"]) in by and by[("b", r["repeat"])]["throughput"] > 0
        ]
        row["shares"] = shares
        row["share"] = sum(shares) / len(shares) if shares else math.nan
        row["share_spread"] = harness.spread(shares)
        row["flagged"] = sum(1 for r in mine if r["flagged"])
        row["outside"] = [r["outside_cores"] for r in mine]
        cpu = [r["prod_cpu_ms"] for r in mine if "prod_cpu_ms" in r]
        row["prod_cpu_ms"] = sum(cpu) / len(cpu) if cpu else math.nan
        row["policies"] = sorted({p for r in mine for p in r.get("policies", [])})
        out[name] = row
    return out


def fmt_ratio(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.2f}"


def guarded_names(scs: list[dict[str, Any]]) -> list[str]:
    """wedguard's own settings: the defaults, the lowered thread and the sweep."""
    return [sc["name"] for sc in scs if sc["name"] in _GUARDED or sc.get("sweep") is not None]


def paced_names(scs: list[dict[str, Any]]) -> list[str]:
    """Every scenario in which a backup moves data (not alone, not the sleeping one)."""
    return [sc["name"] for sc in scs if sc.get("family", "x") not in ("alone", "sleep")]


def best_point(
    summary: dict[str, Any], names: list[str], key: str, share: float = 0.30
) -> tuple[str, float, float]:
    """(name, pooled inflation, share) of the least ``key`` inflation among ``names``
    keeping at least ``share`` of the unguarded throughput; ("none", NaN, NaN) if none."""
    pts = [
        (summary[n][key + "_pooled"][0], summary[n]["share"], n)
        for n in names
        if n in summary and summary[n]["share"] >= share
    ]
    if not pts:
        return ("none", math.nan, math.nan)
    y, kept, n = min(pts)
    return (n, y, kept)


def headline(summary: dict[str, Any], scs: list[dict[str, Any]]) -> dict[str, Any]:
    """Flat figures of one profile's summary, for the pages (keys without dots)."""
    h: dict[str, Any] = {}
    aa = summary.get("a2")
    for key in ("p95", "p99"):
        iv = harness.repeat_interval(aa[key + "_ratios"] if aa else [])
        h[f"aa_{key}"] = aa[key + "_pooled"][0] if aa else math.nan
        h[f"aa_{key}_half"] = iv["half"]
        h[f"aa_{key}_needed"] = iv["needed"]
    half = h["aa_p95_half"]
    h["aa_within_2pct"] = "unknown" if math.isnan(half) else ("yes" if half <= 0.02 else "no")
    h["repeats"] = aa["n"] if aa else 0
    guarded = [n for n in guarded_names(scs) if n in summary]
    ok = [
        n
        for n in guarded
        if summary[n]["p95_pooled"][0] <= 1.05
        and summary[n]["p99_pooled"][0] <= 1.25
        and summary[n]["share"] >= 0.30
    ]
    h["goal"] = "met" if ok else "not met"
    h["goal_by"] = ", ".join(ok) if ok else "none"
    paced = paced_names(scs)
    for key in ("p95", "p99"):
        n, y, kept = best_point(summary, paced, key)
        h[f"best_{key}_by"], h[f"best_{key}"], h[f"best_{key}_share"] = n, y, kept
        n, y, kept = best_point(summary, guarded, key)
        h[f"guard_best_{key}_by"], h[f"guard_best_{key}"], h[f"guard_best_{key}_share"] = (
            n,
            y,
            kept,
        )
    rivals = [
        sc["name"]
        for sc in scs
        if sc.get("family") in ("priority", "static", "standin") and sc["name"] in summary
    ]
    for key in ("p95", "p99"):
        curve = [(summary[n]["share"], summary[n][key + "_pooled"][0]) for n in guarded]
        beat = [
            n
            for n in rivals
            if not harness.dominated((summary[n]["share"], summary[n][key + "_pooled"][0]), curve)
        ]
        # the stand-ins that no wedguard point matches (as much kept, no more inflation)
        h[f"undominated_{key}"] = ", ".join(beat) or "none"
    z = summary.get("z")
    h["sleep_p95"] = z["p95_pooled"][0] if z else math.nan
    h["sleep_p99"] = z["p99_pooled"][0] if z else math.nan
    a = summary.get("a")
    h["alone_p50_ms"] = a["p50"] * 1e3 if a else math.nan
    h["alone_p95_ms"] = a["p95"] * 1e3 if a else math.nan
    h["alone_cpu_ms"] = a["prod_cpu_ms"] if a else math.nan
    h["alone_cpu_share"] = a["prod_cpu_ms"] / (a["p50"] * 1e3) if a and a["p50"] > 0 else math.nan
    outside = [x for r in summary.values() for x in r["outside"]]
    h["outside_median"] = harness.quantile(sorted(outside), 0.5) if outside else math.nan
    h["outside_max"] = max(outside) if outside else math.nan
    h["flagged"] = sum(r["flagged"] for r in summary.values())
    h["runs"] = sum(r["n"] for r in summary.values())
    return h


def _curve(summary: dict[str, Any], names: list[str], key: str) -> list[tuple[Any, ...]]:
    return sorted((summary[n]["share"], *summary[n][key + "_pooled"], n) for n in names)


def plot(
    summaries: dict[str, dict[str, Any]],
    runs: list[dict[str, Any]],
    scs_by: dict[str, list[dict[str, Any]]],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    profiles = list(summaries)
    fig, axes = plt.subplots(len(profiles), 2, figsize=(12, 4.8 * len(profiles)), squeeze=False)
    colors = {
        "a2": "grey", "b": "red", "c": "orange", "e": "green", "e2": "darkgreen", "es": "olive", "f": "teal",
        "i": "magenta", "k": "saddlebrown", "ik": "crimson", "dk": "slateblue",
        "dik": "navy", "z": "black",
    }  # fmt: skip
    for row, profile in enumerate(profiles):
        summary, scs = summaries[profile], scs_by[profile]
        static = [sc["name"] for sc in scs if sc.get("family") == "static"]
        sweep = [sc["name"] for sc in scs if sc.get("sweep") is not None]
        for ax, key, goal in ((axes[row][0], "p95", 1.05), (axes[row][1], "p99", 1.25)):
            for name, color in colors.items():
                if name not in summary:
                    continue
                r = summary[name]
                share = 0.0 if name in ("a2", "z") else r["share"]
                y, lo, hi = r[key + "_pooled"]
                ax.errorbar(
                    [share], [y], yerr=[[y - lo], [hi - y]],
                    fmt="x" if name == "z" else "o", color=color, capsize=3,
                    label=f"{name}: {r['what']}",
                )  # fmt: skip
            for names, color, label in (
                (static, "purple", "d: static limit, 10–70 %"),
                (sweep, "blue", "g: wedguard, latency limit sweep"),
            ):
                pts = _curve(summary, names, key)
                if not pts:
                    continue
                ax.errorbar(
                    [p[0] for p in pts], [p[1] for p in pts],
                    yerr=[[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]],
                    fmt="-s", color=color, capsize=3, label=label,
                )  # fmt: skip
                for pt in pts:
                    ax.annotate(pt[4], (pt[0], pt[1]), textcoords="offset points", xytext=(4, 4))
            ax.axhline(goal, color="black", lw=0.8, ls="--")
            ax.axvline(0.3, color="black", lw=0.8, ls=":")
            ax.axhline(1.0, color="grey", lw=0.5)
            ax.set_xlabel("backup throughput kept (share of unguarded)")
            ax.set_ylabel(f"{key} inflation over (a), pooled, 95 % CI")
            ax.set_title(f"{profile} production — {key}: goal ≤ {goal} at ≥ 30 %")
        axes[row][0].legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    fig.savefig(OUT / "tradeoff.png", dpi=100)
    plt.close(fig)

    summary = summaries.get("mixed") or next(iter(summaries.values()))
    mixed = [r for r in runs if r.get("profile", "mixed") == "mixed"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 6), sharex=True)
    for col, name in enumerate(("e", "f")):
        run = next((r for r in mixed if r["scenario"] == name and "timeline" in r), None)
        if run is None:
            continue
        base = next(r for r in mixed if r["scenario"] == "a" and r["repeat"] == run["repeat"])
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
    guarded = guarded_names(scs)
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
    rivals = [n for n in ("c", "d") if n in summary] + [
        sc["name"]
        for sc in scs
        if sc.get("family") in ("priority", "static", "standin")
        and sc["name"] in summary
        and sc["name"] not in ("c", "d")
    ]
    for rival in rivals:
        r = summary[rival]
        d95 = harness.dominated((r["share"], r["p95_pooled"][0]), curve)
        d99 = harness.dominated((r["share"], r["p99_pooled"][0]), curve99)
        lines.append(
            f"- ({rival}) {r['what']}: kept {r['share']:.0%}, p95 ×{r['p95_pooled'][0]:.2f}, "
            f"p99 ×{r['p99_pooled'][0]:.2f}; a wedguard point keeps at least as much with no "
            f"more inflation: p95 {'yes' if d95 else 'no'}, p99 {'yes' if d99 else 'no'}."
        )
    return lines


def frontier_lines(summary: dict[str, Any], h: dict[str, Any]) -> list[str]:
    """The physical frontier: a backup that only sleeps, and the best any pacing did."""
    lines = []
    if "z" in summary:
        lines.append(
            f"- A backup that only sleeps (z: d's wake-ups, no I/O, no CPU): p95 "
            f"×{h['sleep_p95']:.2f}, p99 ×{h['sleep_p99']:.2f}."
        )
    for key, goal in (("p95", 1.05), ("p99", 1.25)):
        if h[f"best_{key}_by"] == "none":
            lines.append(f"- No scenario kept 30 % of the unguarded throughput ({key}).")
            continue
        lines.append(
            f"- The least {key} inflation of any backup keeping ≥ 30 %: "
            f"({h[f'best_{key}_by']}) ×{h[f'best_{key}']:.2f} at {h[f'best_{key}_share']:.0%}"
            + (
                f" — within the goal (≤ {goal})."
                if h[f"best_{key}"] <= goal
                else f" — above the goal (≤ {goal}): no pacing measured here reaches it."
            )
        )
    return lines


def compare(summary: dict[str, Any], x: str, y: str, noise: float) -> str:
    """``y`` against ``x`` (pooled p95 and p99 of y over those of x), judged on ``noise``.

    ``noise`` is the A/A half-width (a fraction): a ratio within it is not a difference.
    """
    if x not in summary or y not in summary:
        return f"({y}) against ({x}): not measured."
    parts = []
    for key in ("p95", "p99"):
        rx, ry = summary[x][key + "_pooled"][0], summary[y][key + "_pooled"][0]
        r = ry / rx if rx > 0 else math.nan
        if math.isnan(r) or math.isnan(noise):
            word = "noise unknown"
        elif r < 1 / (1 + noise):
            word = "lower, beyond the A/A interval"
        elif r > 1 + noise:
            word = "higher, beyond the A/A interval"
        else:
            word = "within the A/A interval"
        parts.append(f"{key} ×{ry:.2f} vs ×{rx:.2f} ({word})")
    sx, sy = summary[x]["share"], summary[y]["share"]
    return f"({y}) against ({x}): " + "; ".join(parts) + f"; kept {sy:.0%} vs {sx:.0%}."


def hypothesis_lines(summaries: dict[str, dict[str, Any]], heads: dict[str, Any]) -> list[str]:
    """The research notes' hypotheses, each as the comparisons that test it."""
    tests = [
        ("Sleep-then-burst vs streaming and smooth pacing (1 MiB paced at 30 % against "
         "unpaced, and against 128 KiB paced at 30 %)", [("b", "d"), ("d", "dk")]),
        ("SCHED_IDLE (the backup's threads in the idle CPU policy)",
         [("b", "i"), ("k", "ik"), ("dk", "dik"), ("c", "i")]),
        ("Autogroups (the backup in its own session: the nice value of its autogroup "
         "against the nice value of its process)", [("c", "ca"), ("i", "ia"), ("b", "ca")]),
        ("Small chunks (128 KiB instead of 1 MiB)", [("b", "k"), ("i", "ik"), ("d", "dk")]),
        ("Stand-ins combined against the static limit", [("d", "dik")]),
    ]  # fmt: skip
    out = [
        "## The hypotheses",
        "",
        "Each line: pooled inflation of the second scenario against the first, and whether "
        "their ratio lies beyond the A/A half-width of the same profile (the interval over "
        "repeats; with it unknown or wide, read the difference as not measured).",
        "",
    ]
    for title, pairs in tests:
        out += [f"**{title}.**", ""]
        for profile, summary in summaries.items():
            noise = heads[profile]["aa_p95_half"]
            for x, y in pairs:
                if x in summary and y in summary:
                    out.append(f"- {profile}: " + compare(summary, x, y, noise))
        out.append("")
    out += [
        "**CPU against disk harm** (which resource the backup takes from production): "
        "production's own CPU per request and its share of the median latency alone, and "
        "the inflation the unpaced backup, nice + ionice, SCHED_IDLE and small chunks "
        "cause in each profile.",
        "",
        "| profile | CPU ms / request | CPU share of p50 | (b) p95 × | (c) p95 × | (i) p95 × | "
        "(k) p95 × | (ik) p95 × | A/A ± |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for profile, summary in summaries.items():
        h = heads[profile]
        cells = [
            fmt_ratio(summary[n]["p95_pooled"][0]) if n in summary else "–"
            for n in ("b", "c", "i", "k", "ik")
        ]
        out.append(
            f"| {profile} | {h['alone_cpu_ms']:.2f} | {h['alone_cpu_share']:.0%} | "
            + " | ".join(cells)
            + f" | {h['aa_p95_half']:.1%} |"
        )
    return [*out, ""]


def history_record(
    bench: Bench,
    summaries: dict[str, dict[str, Any]],
    runs: list[dict[str, Any]],
    started: datetime,
    load: tuple[float, float],
) -> dict[str, Any]:
    outside = sorted(r["outside_cores"] for r in runs)

    def points(summary: dict[str, Any]) -> dict[str, list[float]]:
        return {
            name: [round(r["share"], 3), round(r["p95_pooled"][0], 3), round(r["p99_pooled"][0], 3)]
            for name, r in summary.items()
        }

    main_profile = "mixed" if "mixed" in summaries else next(iter(summaries))
    return {
        "date": f"{started:%Y-%m-%d %H:%M}",
        "load": [round(load[0], 1), round(load[1], 1)],
        "outside": round(harness.quantile(outside, 0.5), 2),
        "repeats": bench.repeats,
        "measure": bench.measure,
        "speed": round(bench.speed / 1e6, 1),
        "baseline": "per repeat",
        "scenarios": points(summaries[main_profile]),
        "profiles": {p: points(s) for p, s in summaries.items() if p != main_profile},
    }


def read_history() -> list[dict[str, Any]]:
    """The full runs so far, with earlier scenario names brought up to date."""
    path = OUT / "history.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            h = json.loads(line)
            h["scenarios"] = {OLD_NAMES.get(k, k): v for k, v in h["scenarios"].items()}
            out.append(h)
    return out


def history_table(history: list[dict[str, Any]]) -> list[str]:
    if not history:
        return ["(none yet)"]
    names: list[str] = []
    for h in history:
        names += [n for n in h["scenarios"] if n != "a" and n not in names]
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
    pooled = {n: across_runs(history, n) for n in guarded_names(scs)}
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


def history_summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Flat figures over every full run, for the pages: counts and pooled points."""
    names: list[str] = []
    for h in history:
        names += [n for n in h["scenarios"] if n not in names]
    pooled = {}
    for n in names:
        v = across_runs(history, n)
        if v is not None:
            runs = sum(1 for h in history if n in h["scenarios"])
            pooled[n] = {"share": v[0], "p95": v[1], "p99": v[2], "runs": runs}
    return {
        "runs": len(history),
        "repeats": sum(h["repeats"] for h in history),
        "first": history[0]["date"] if history else "",
        "last": history[-1]["date"] if history else "",
        "pooled": pooled,
    }


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
        rows_after = [row for row in tl if row[0] > blk[-1][0]]
        chunk = r.get("chunk") or 1 << 20
        paused = moved == 0 or (moved <= chunk and len(blk) > 1 and blk[1][1] == blk[-1][1])
        if paused and after > 0:
            verdict = "paused and resumed." + (
                " (One chunk granted before it began was read at its start.)" if moved else ""
            )
        elif paused and rows_after and all(row[3] >= 2 for row in rows_after):
            verdict = "paused; after it the analyser's verdict held the rate at 0 to the end."
        else:
            verdict = "**did not pause and resume**."
        line = (
            f"- Repeat {r['repeat']}: BLACKOUT from {blk[0][0]:.1f} s to {blk[-1][0]:.1f} s; "
            f"read meanwhile {moved / 1e6:.1f} MB, after it {after / 1e6:.1f} MB: " + verdict
        )
        if r.get("error"):
            line += f" The backup failed: `{r['error'].strip().splitlines()[-1]}`."
        out.append(line)
    return [*out, ""]


def scenario_table(summary: dict[str, Any], scs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| scenario | p50 ms | p95 ms | p99 ms | p50 × | p95 × pooled [95 % CI] | p95 × spread | "
        "p99 × pooled [95 % CI] | p99 × spread | backup MB/s | share of (b) | flagged |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for sc in scs:
        if sc["name"] not in summary:
            continue
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
    return lines


def aa_lines(summary: dict[str, Any], h: dict[str, Any]) -> list[str]:
    aa = summary["a2"]
    p95, lo95, hi95 = aa["p95_pooled"]
    p99, lo99, hi99 = aa["p99_pooled"]
    n = aa["n"]
    if math.isnan(h["aa_p95_half"]):
        over = "one repeat: the interval over repeats is unknown."
    else:
        over = (
            f"over the {n} repeats the 95 % interval of the A/A p95 ratio is "
            f"±{h['aa_p95_half']:.1%} (p99 ±{h['aa_p99_half']:.1%}); "
            + (
                "within ±2 %."
                if h["aa_within_2pct"] == "yes"
                else f"±2 % would take about {h['aa_p95_needed']:.0f} repeats at this spread."
            )
        )
    return [
        f"(a2) against (a): p95 ×{p95:.3f} pooled [{lo95:.3f}, {hi95:.3f}], per repeat "
        + ", ".join(f"{x:.3f}" for x in aa["p95_ratios"])
        + f"; p99 ×{p99:.3f} [{lo99:.3f}, {hi99:.3f}], per repeat "
        + ", ".join(f"{x:.3f}" for x in aa["p99_ratios"])
        + f". The bootstrap interval covers the sampling noise within each run; {over}",
    ]


def write_report(
    bench: Bench,
    summaries: dict[str, dict[str, Any]],
    heads: dict[str, Any],
    runs: list[dict[str, Any]],
    scs_by: dict[str, list[dict[str, Any]]],
    started: datetime,
    elapsed: float,
    load: tuple[float, float],
) -> None:
    flagged = sum(1 for r in runs if r["flagged"])
    outside = [r["outside_cores"] for r in runs]
    loads = [r["load"] for r in runs if "load" in r]
    main_profile = "mixed" if "mixed" in summaries else next(iter(summaries))
    summary, scs = summaries[main_profile], scs_by[main_profile]
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
        f"{load[0]:.1f} at the start, {load[1]:.1f} at the end"
        + (f" ({min(loads):.1f}–{max(loads):.1f} during the runs)" if loads else "")
        + f". CPU used outside the experiment: {min(outside):.2f}–{max(outside):.2f} cores per "
        f"run (median {harness.quantile(sorted(outside), 0.5):.2f}); {flagged} of {len(runs)} "
        f"runs above {OUTSIDE_LIMIT} cores are flagged (kept in the figures, marked in "
        "results.json).",
        f"- Scheduling: autogroups {'on' if bench.autogroups else 'off'} "
        "(every process of the experiment starts its own session, so with autogroups on "
        "each is its own autogroup and a process's nice value counts only inside it); "
        f"the data set's disk uses the `{bench.io_scheduler or '?'}` I/O scheduler.",
        f"- Production profiles: {', '.join(summaries)}. `mixed`: {bench.rate:g} req/s "
        "open-loop Poisson, each request SHA-256 over 64 KiB, a JSON round trip of about "
        "4 KB and 4 random 4 KiB reads "
        f"({'O_DIRECT' if bench.direct else 'pages dropped with posix_fadvise'}) from a "
        f"{bench.data.stat().st_size >> 20} MiB data set; `cpu`: SHA-256 over 2 MiB and "
        "the JSON round trip, no reads; `disk`: 8 random 4 KiB reads, no hashing. The "
        "`cpu` and `disk` profiles run the stand-ins only.",
        f"- Backup: 1 MiB sequential reads (128 KiB in k, ik, dk, dik), zlib level 1, fsync "
        f"every 16 MiB; alone it reads {bench.speed / 1e6:.0f} MB/s. The static limits (d…) "
        "are shares of that; the guard's budget (its `rate`) is all of it. SCHED_IDLE is "
        "set on every thread of the backup; the policies its threads ended with are in "
        "results.json.",
        f"- {bench.repeats} repeats of {sum(len(v) for v in scs_by.values())} scenario runs "
        f"per repeat in shuffled order; {bench.measure:g} s measured per run after "
        f"{bench.warm:g} s of load alone. Latency is measured from each request's "
        "scheduled send time.",
        "- The guard's baseline (production's p95 alone, sampled as the guard samples) is "
        "recorded afresh before every repeat: "
        + ", ".join(
            f"{m * 1e3:.2f} ms ± {sp * 1e3:.2f} ({n} samples)" for m, sp, n in bench.baselines
        )
        + ".",
        "- Ratios are over (a) of the same repeat and profile. *Spread*: smallest–largest "
        "over repeats. *Pooled*: geometric mean over repeats, with a 95 % bootstrap "
        "interval (requests resampled within each run).",
        "",
    ]
    for profile, s in summaries.items():
        lines += [
            f"## Production profile `{profile}`",
            "",
            *scenario_table(s, scs_by[profile]),
            "",
            "**Noise floor (A/A).** " + aa_lines(s, heads[profile])[0],
            "",
            "**The frontier.**",
            "",
            *frontier_lines(s, heads[profile]),
            "",
        ]
    lines += [
        "## Against the goal (mixed production)",
        "",
        *verdicts(summary, scs),
        *history_verdict(read_history(), scs),
        "",
        "![trade-off](tradeoff.png)",
        "",
        "![timeline](timeline.png)",
        "",
        *hypothesis_lines(summaries, heads),
        "## Every full run so far (mixed production)",
        "",
        "Each cell: p95 × / p99 × pooled over (a) of the same repeats, and the share of "
        "unguarded throughput kept. Kept by `history.jsonl`, one line per full run.",
        "",
        *history_table(read_history()),
        "",
    ]
    lines += blackout_lines([r for r in runs if r.get("profile", "mixed") == main_profile])
    (OUT / "RESULTS.md").write_text("\n".join(lines))


def results_json(
    bench: Bench,
    summaries: dict[str, dict[str, Any]],
    heads: dict[str, Any],
    runs: list[dict[str, Any]],
    started: datetime,
    elapsed: float,
    load: tuple[float, float],
) -> dict[str, Any]:
    """What ``results.json`` holds: the main profile's ``summary`` and ``headline`` at
    the top (every figure a page quotes has a flat key), the other profiles under
    ``profiles``, the pooled record of every full run under ``history``, the runs."""
    main_profile = "mixed" if "mixed" in summaries else next(iter(summaries))
    head = dict(heads[main_profile])
    outside = sorted(r["outside_cores"] for r in runs)
    head.update(
        {
            "date": f"{started:%Y-%m-%d %H:%M}",
            "minutes": elapsed / 60,
            "quick": bench.quick,
            "repeats": bench.repeats,
            "measure_s": bench.measure,
            "runs": len(runs),
            "scenarios": sum(len(s) for s in summaries.values()),
            "profiles": ", ".join(summaries),
            "load_start": load[0],
            "load_end": load[1],
            "outside_median": harness.quantile(outside, 0.5),
            "outside_max": outside[-1],
            "flagged": sum(1 for r in runs if r["flagged"]),
            "speed_mbs": bench.speed / 1e6,
            "rate": bench.rate,
            "autogroups": "on" if bench.autogroups else "off",
            "io_scheduler": bench.io_scheduler or "unknown",
        }
    )
    history = read_history()
    return {
        "summary": summaries[main_profile],
        "headline": head,
        "profiles": {
            p: {"summary": s, "headline": heads[p]}
            for p, s in summaries.items()
            if p != main_profile
        },
        "history": history_summary(history),
        "runs": [{k: v for k, v in r.items() if k != "latencies"} for r in runs],
    }


def write_figures() -> None:
    """Rewrite the figures the README and the docs quote (``benchmarks/figures.py``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_figures", HERE.parent / "figures.py")
    assert spec is not None
    assert spec.loader is not None
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    figures.main([])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="a few minutes: a smoke test")
    p.add_argument("--repeats", type=int, default=3, help="at least this many repeats")
    p.add_argument(
        "--max-repeats",
        type=int,
        default=None,
        help="repeat until the A/A interval of p95 is within ±2 %% or this many repeats "
        "(default: --repeats)",
    )
    p.add_argument(
        "--minutes", type=float, default=0.0, help="start no repeat that would end later"
    )
    p.add_argument("--measure", type=float, default=13.0, help="seconds measured per run")
    p.add_argument("--profiles", default=",".join(PROFILES), help="production profiles")
    p.add_argument("--rate", type=float, default=200.0, help="production requests per second")
    p.add_argument("--seed", type=int, default=None, help="the shuffle's seed")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="report folder (default: here; "
        "with --quick: wedguard-impact-quick in the temporary folder)",
    )
    p.add_argument(
        "--reanalyse",
        type=Path,
        default=None,
        help="write the report from the runs a previous run kept (see RAW), run nothing",
    )
    args = p.parse_args(argv)
    profiles = [x.strip() for x in args.profiles.split(",") if x.strip()]
    bad = [x for x in profiles if x not in PROFILES]
    if bad or not profiles:
        p.error(f"--profiles {args.profiles!r}: some of {', '.join(PROFILES)}")
    global OUT
    OUT = args.out or (
        Path(tempfile.gettempdir()) / "wedguard-impact-quick" if args.quick else HERE
    )
    OUT.mkdir(parents=True, exist_ok=True)
    if args.reanalyse is not None:
        report(json.loads(args.reanalyse.read_text()))
        return 0
    harness.reset_priority()
    # SIGTERM ends the run like Ctrl-C: production is ended by its PID on the way out
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = datetime.now(timezone.utc)
    t0 = time.monotonic()
    load0 = os.getloadavg()[0]
    bench = Bench(args)
    least = bench.repeats
    most = least if bench.quick else max(least, args.max_repeats or least)
    scs_by = {pr: scenarios(args.quick, pr) for pr in profiles}
    rng = random.Random(args.seed)
    runs: list[dict[str, Any]] = []
    done = 0
    try:
        bench.calibrate(2.0 if bench.quick else 3.0)
        print(f"backup alone {bench.speed / 1e6:.0f} MB/s", flush=True)
        while done < most:
            began = time.monotonic()
            for profile in profiles:
                bench.start_server(profile)
                scs = scs_by[profile]
                if guarded_names(scs) or any(sc["name"] == "f" for sc in scs):
                    # a fresh baseline for every repeat: the machine's other load drifts,
                    # and a baseline minutes old reads the backup's harm as normal
                    bench.baseline(3.0 if bench.quick else 8.0)
                order = list(scs)
                rng.shuffle(order)
                print(
                    f"repeat {done + 1} ({profile}, O_DIRECT {bench.direct}): "
                    + " ".join(sc["name"] for sc in order),
                    flush=True,
                )
                runs.extend(bench.run(sc, done) for sc in order)
            done += 1
            took = time.monotonic() - began
            if done >= least:
                first = profiles[0]
                mine = [r for r in runs if r["profile"] == first]
                aa = harness.repeat_interval(analyse(mine, scs_by[first])["a2"]["p95_ratios"])
                print(f"after {done} repeats: A/A p95 ±{aa['half']:.1%}", flush=True)
                if aa["half"] <= 0.02:
                    break
            if args.minutes and time.monotonic() - t0 + took > args.minutes * 60:
                print(f"stopping after {done} repeats: --minutes {args.minutes:g}", flush=True)
                break
    except BaseException:
        if bench.log.exists():
            print(bench.log.read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        bench.close()
    bench.repeats = done
    state = {
        "runs": runs,
        "profiles": profiles,
        "quick": bench.quick,
        "started": started.isoformat(),
        "seconds": time.monotonic() - t0,
        "load": [load0, os.getloadavg()[0]],
        **{k: getattr(bench, k) for k in BENCH_STATE},
        "data": str(bench.data),
    }
    # kept until the report is written: --reanalyse rebuilds the report from it
    RAW.write_text(json.dumps(state))
    report(state)
    return 0


BENCH_STATE = (
    "repeats",
    "measure",
    "warm",
    "speed",
    "rate",
    "direct",
    "baselines",
    "autogroups",
    "io_scheduler",
)
RAW = Path(tempfile.gettempdir()) / "wedguard-impact-runs.json"
"""Every run's record (latencies included) of the last run, until its report is written."""


def report(state: dict[str, Any]) -> None:
    """Analyse the runs of ``state`` and write every output of the benchmark."""
    from types import SimpleNamespace

    bench: Any = SimpleNamespace(
        quick=state["quick"],
        data=Path(state["data"]),
        **{k: state[k] for k in BENCH_STATE},
    )
    bench.baselines = [tuple(x) for x in bench.baselines]
    runs, profiles = state["runs"], state["profiles"]
    started = datetime.fromisoformat(state["started"])
    load = (state["load"][0], state["load"][1])
    scs_by = {pr: scenarios(bench.quick, pr) for pr in profiles}
    summaries = {
        pr: analyse([r for r in runs if r["profile"] == pr], scs_by[pr]) for pr in profiles
    }
    heads = {pr: headline(summaries[pr], scs_by[pr]) for pr in profiles}
    with open(OUT / "history.jsonl", "a") as f:
        f.write(json.dumps(history_record(bench, summaries, runs, started, load)) + "\n")
    plot(summaries, runs, scs_by)
    elapsed = state["seconds"]
    write_report(bench, summaries, heads, runs, scs_by, started, elapsed, load)
    doc = results_json(bench, summaries, heads, runs, started, elapsed, load)
    (OUT / "results.json").write_text(json.dumps(doc, indent=1, default=str))
    if doc.get("profiles"):  # the cpu and disk profiles: the pages quote the last run of them
        (OUT / "results-profiles.json").write_text(json.dumps(doc, indent=1, default=str))
    print((OUT / "RESULTS.md").read_text())
    if OUT == HERE and not bench.quick:
        write_figures()
    RAW.unlink(missing_ok=True)
    print(f"written to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
