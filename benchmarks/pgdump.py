"""pg_dump beside a live PostgreSQL load: the load's query latency with and without the guard.

Run: ``PYTHONPATH=src python benchmarks/pgdump.py`` (about 12 minutes on two busy cores;
``--quick``: about two). Starts a PostgreSQL cluster of its own (the test suite's
helper: initdb, a free loopback port, as the ``postgres`` user when run as root) in
``--cache`` and fills it once (``--scale`` MB of tables; later runs reuse it). Writes
``benchmarks/results/pgdump.json`` and prints a Markdown table.

The load: ``--threads`` client threads in a process of their own (so that neither the
GIL nor the guard's threads sit between the load and the server), open-loop at
``--rate`` transactions per second in all. Each transaction is an indexed ``SELECT`` of
an account, an ``UPDATE`` of it and an ``INSERT`` into a history table; its latency is
measured from the time it was *scheduled*, so a stall that delays the following
transactions counts against them too (no coordinated omission).

Each trial is two windows on one load process: the load alone for ``--window``
seconds (the reference), then the scenario. A machine shared with other jobs changes
from minute to minute; the two windows of a trial, back to back, share it, so each
scenario is judged against its own reference (p50/p95/p99 over the reference's).
Scenarios, each repeat in a shuffled order:

* ``alone_again``: the load alone again (A/A: the noise floor of the comparison);
* ``unguarded``: the load and ``pg_dump -Fc`` of the whole database;
* ``nice``: the same dump at ``nice 19`` in the idle I/O class;
* ``nice_backend``: ``nice`` and the dump's server backend lowered too (nice 19, idle
  I/O), by a ``PostgresSource(lower_backends="pg_dump")`` sampled once a second;
* ``guarded_run``: ``guard.run([pg_dump ...])`` with a guard reading
  ``PostgresSource`` of the same database, default thresholds (``db.latency_s`` at
  most +20 % over its baseline), a calendar that makes every hour PEAK and no byte
  budget (``rate="off"``): the guard paces the dump by what the database says;
* ``guarded_backend``: ``guarded_run`` whose source has ``lower_backends="pg_dump"``;
* ``guarded_idle``: ``guarded_backend`` with the backend under ``SCHED_IDLE`` too
  (``BackendPriority(sched_idle=True)``) and ``pg_dump`` run as ``chrt --idle 0
  pg_dump ...`` (both run only on a core nothing else wants);
* ``guarded_stream`` (only when named in ``--scenarios``): ``guard.stream([pg_dump
  -Fc], path)`` with the ``guarded_run`` guard;
* ``guarded_probe`` (only when named): ``guarded_run`` whose source's probe is a
  statement like the load's own (``query=LOAD_QUERY``, an indexed ``SELECT`` of an
  account) instead of ``SELECT 1``, judged against a baseline of that statement,
  learned the same way (``probe_q_ms``: what it read).

The guard's baseline is learned from the source once a second while the load runs
alone (``--baseline`` seconds before the first repeat, and during every reference
window), as a host that samples between backups would. Latency percentiles are those
of the transactions scheduled in the window. Reported: each scenario's ratios (median
and range over repeats), the dump's duration, and the medians of ``db.latency_s``
(what the guard judges) and ``db.statement_mean_s`` (``pg_stat_statements``) that a
``PostgresSource`` read once a second in each window. Every dump is checked with
``pg_restore --list``; the last repeat's guarded dumps are restored into a new
database (as the superuser: the dump holds ``CREATE EXTENSION pg_stat_statements``)
and their tables compared with the source's (row counts, and the checksum of every
table the load does not write).

Goal: the guarded dump keeps the load's p95 within +20 % of the load alone, where the
unguarded dump does not. Shared, noisy machines: read the A/A row first.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "pgdump.json"
GOAL_P95 = 1.20
SCENARIOS = (
    "alone_again",
    "unguarded",
    "nice",
    "nice_backend",
    "guarded_run",
    "guarded_backend",
    "guarded_idle",
)
OPTIONAL = ("guarded_stream", "guarded_probe")  # only when named in --scenarios
# the probe of ``guarded_probe``: a statement like the load's own
LOAD_QUERY = "SELECT balance FROM accounts WHERE id = 4242"
STATIC_TABLES = ("photos", "messages")  # the load never writes them
CALENDAR = "Mon-Sun 00:00-24:00 peak"

FILL = """
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE TABLE accounts (id int PRIMARY KEY, couple text NOT NULL, balance bigint NOT NULL,
                       updated timestamptz NOT NULL DEFAULT now());
INSERT INTO accounts SELECT i, 'couple ' || i, 0, now() FROM generate_series(1, 100000) i;
CREATE TABLE history (id bigserial PRIMARY KEY, account_id int NOT NULL, delta int NOT NULL,
                      at timestamptz NOT NULL DEFAULT now(), note text);
CREATE INDEX history_account ON history (account_id);
CREATE TABLE photos (id int PRIMARY KEY, couple_id int NOT NULL, caption text,
                     data bytea NOT NULL);
CREATE INDEX photos_couple ON photos (couple_id);
CREATE TABLE messages (id int PRIMARY KEY, couple_id int NOT NULL, body text NOT NULL);
CREATE INDEX messages_couple ON messages (couple_id);
"""

# one batch of bulk data: about 1 MB of bytea (incompressible) and 1 MB of text
BATCH = """
INSERT INTO photos
SELECT i, 1 + i % 100000, 'photo ' || i, gen_random_bytes(1000)
FROM generate_series({lo}, {lo} + 999) i;
INSERT INTO messages
SELECT i, 1 + i % 100000,
       'See you at the venue at ' || (i % 24) || ':00, ' || repeat(md5(i::text), 30)
FROM generate_series({lo}, {lo} + 999) i;
"""


# -- the load (a process of its own) ---------------------------------------------------------


def load_worker(dsn: str, rate: float, threads: int, accounts: int) -> None:
    """Open-loop transactions until stdin closes; then print the latencies as JSON:
    ``{"t": [scheduled monotonic times], "lat": [seconds], "errors": n}``."""
    import psycopg

    sched: list[list[float]] = [[] for _ in range(threads)]
    lats: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    stop = threading.Event()
    start = time.monotonic() + 0.5
    period = threads / rate

    def run(i: int) -> None:
        rnd = random.Random(i)
        with psycopg.connect(dsn) as conn:
            k = 0
            while not stop.is_set():
                at = start + (k + i / threads) * period
                k += 1
                delay = at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                account = rnd.randrange(1, accounts + 1)
                delta = rnd.randrange(-100, 100)
                try:
                    with conn.transaction():
                        conn.execute(
                            "SELECT balance FROM accounts WHERE id = %s", (account,)
                        ).fetchone()
                        conn.execute(
                            "UPDATE accounts SET balance = balance + %s, updated = now() "
                            "WHERE id = %s",
                            (delta, account),
                        )
                        conn.execute(
                            "INSERT INTO history (account_id, delta, note) VALUES (%s, %s, %s)",
                            (account, delta, "deposit"),
                        )
                except psycopg.Error:
                    errors[i] += 1
                    continue
                sched[i].append(at)
                lats[i].append(time.monotonic() - at)

    workers = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    sys.stdin.read()  # until the parent closes it
    stop.set()
    for w in workers:
        w.join(10)
    pairs = sorted(
        (t, lat) for s, la in zip(sched, lats, strict=True) for t, lat in zip(s, la, strict=True)
    )
    json.dump(
        {"t": [p[0] for p in pairs], "lat": [p[1] for p in pairs], "errors": sum(errors)},
        sys.stdout,
    )


class Load:
    """The load generator process: start, let it warm up, stop and read its latencies."""

    def __init__(self, dsn: str, rate: float, threads: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", "--dsn", dsn, "--rate", str(rate),
             "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    def stop(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        out, _ = self.proc.communicate("", timeout=60)
        if self.proc.returncode != 0:
            raise RuntimeError(f"the load generator failed ({self.proc.returncode})")
        return dict(json.loads(out))


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0, "p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    s = sorted(values)

    def q(p: float) -> float:
        return 1000 * s[min(len(s) - 1, int(p * len(s)))]

    return {"n": len(s), "p50_ms": q(0.50), "p95_ms": q(0.95), "p99_ms": q(0.99)}


# -- the server -----------------------------------------------------------------------------


@contextlib.contextmanager
def cached_server(cache: Path, scale_mb: int) -> Iterator[Any]:
    """The test suite's throwaway cluster, but kept in ``cache`` and filled once."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    import conftest_postgres as helper

    bindir = helper.find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    run_as = "postgres" if os.geteuid() == 0 else None
    marker = cache / f"filled-{scale_mb}MB"
    if not marker.exists():
        shutil.rmtree(cache, ignore_errors=True)
    fresh = not marker.exists()
    cache.mkdir(parents=True, exist_ok=True)
    server = helper.PostgresServer(bindir, cache, run_as)
    if fresh:
        if run_as is not None:
            import pwd

            entry = pwd.getpwnam(run_as)
            os.chown(cache, entry.pw_uid, entry.pw_gid)
        server.init()
    else:  # the same cluster on a port free now
        if server.running():  # left behind by an interrupted run
            server.stop("fast")
        with open(server.data / "postgresql.conf", "a", encoding="utf-8") as f:
            f.write(f"port = {server.port}\n")
    server.start()
    try:
        if fresh:
            server.setup()
            fill(server, scale_mb)
            marker.write_text(f"{scale_mb}\n")
        yield server
    finally:
        server.stop("fast")


def fill(server: Any, scale_mb: int) -> None:
    t0 = time.monotonic()
    with server.admin() as conn:
        conn.execute(FILL)
        conn.execute(f"ALTER TABLE accounts OWNER TO {server_user()}")
        for t in ("history", "photos", "messages"):
            conn.execute(f"ALTER TABLE {t} OWNER TO {server_user()}")
        for b in range(max(1, scale_mb // 2)):  # a batch is about 2 MB on disk
            conn.execute(BATCH.replace("{lo}", str(b * 1000 + 1)))
        conn.execute("DROP EXTENSION pgcrypto")  # only the fill needs it
        conn.execute("VACUUM ANALYZE")
    print(f"filled {scale_mb} MB in {time.monotonic() - t0:.0f} s", file=sys.stderr)


def server_user() -> str:
    import conftest_postgres as helper

    return str(helper.APP_USER)


# -- the guard -----------------------------------------------------------------------------


def guard_source(dsn: str, scenario: str) -> Any:
    """The ``PostgresSource`` a guarded scenario's guard reads: ``SELECT 1`` (or, for
    ``guarded_probe``, ``LOAD_QUERY``), lowering the dump's backend for
    ``guarded_backend`` (nice 19, idle I/O, every core) and ``guarded_idle``
    (``SCHED_IDLE`` too), confining it to the last core for a ``pinned`` scenario
    (``cpus=1``), and as ``BackendPriority()`` comes for ``guarded_auto_backend`` (nice
    19, idle I/O, every core but the first)."""
    from wedguard.sources import PostgresSource
    from wedguard.sources.pg_backends import BackendPriority

    pinned = "pinned" in scenario
    lowers = scenario in (
        "guarded_backend", "guarded_idle", "guarded_auto_backend", "guarded_auto_fair"
    ) or pinned  # fmt: skip
    priority = BackendPriority(cpus=None)  # nice 19, idle I/O, on every core
    if scenario == "guarded_idle":
        priority = BackendPriority(sched_idle=True, cpus=None)
    elif pinned:  # only confined: pg_dump's core, the last one (as Guard(cpus=1))
        # pinned_idle...: SCHED_IDLE as well (pinned_dump_idle: pg_dump alone)
        idle = "idle" in scenario and "dump_idle" not in scenario
        short = 0.0001 if scenario.endswith("_short") else None  # the shortest slice
        priority = BackendPriority(nice=None, ionice=None, sched_idle=idle, cpus=1, cpu_slice=short)
        if scenario == "pinned_lowered":  # as it comes: nice 19, idle I/O
            priority = BackendPriority(cpus=1)
    elif scenario == "guarded_auto_backend":  # as it comes: nice 19, idle I/O, confined
        priority = BackendPriority()
    elif scenario == "guarded_auto_fair":  # confined as it comes, its priority left
        priority = BackendPriority(nice=None, ionice=None)
    return PostgresSource(
        dsn,
        query=LOAD_QUERY if scenario == "guarded_probe" else "SELECT 1",
        lower_backends="pg_dump" if lowers else None,
        backend_priority=priority if lowers else None,
    )


def make_guard(source: Any, baseline: Any, cpus: int | str | None = None, rate: Any = "off") -> Any:
    """The guard of every guarded scenario: ``rate="off"`` unless given, ``source``
    alone, the default thresholds judged against ``baseline`` (learned while the load
    ran alone), every hour PEAK, no sinks; ``cpus=None`` (every core) unless given."""
    import wedguard as wg

    return wg.Guard(
        rate=rate,
        calendar=wg.PeakHourCalendar.parse(CALENDAR, tz="UTC"),
        sources=[source],
        analyzer=wg.ImpactAnalyzer(wg.Thresholds(), baseline=baseline),
        sinks=[],
        cpus=cpus,
    )


# -- the scenarios --------------------------------------------------------------------------


class Bench:
    def __init__(self, server: Any, args: argparse.Namespace, workdir: Path) -> None:
        import conftest_postgres as helper
        import wedguard as wg
        from wedguard.sources import PostgresSource

        self.wg = wg
        self.server = server
        self.args = args
        self.workdir = workdir
        self.dsn = server.dsn()  # with the password: the load and the source
        self.dump_dsn = f"postgresql://{helper.APP_USER}@127.0.0.1:{server.port}/{helper.DATABASE}"
        self.env = {**os.environ, "PGPASSWORD": helper.APP_PASSWORD}
        self.pg_dump = os.path.join(server.bindir, "pg_dump")
        self.pg_restore = os.path.join(server.bindir, "pg_restore")
        self.calendar = wg.PeakHourCalendar.parse(CALENDAR, tz="UTC")
        # the baseline: learned from the source while the load runs alone
        self.learner = wg.ImpactAnalyzer(wg.Thresholds())
        self.learn_source = PostgresSource(self.dsn)
        # guarded_probe's baseline: the load-like statement, learned the same way
        self.learner_q = wg.ImpactAnalyzer(wg.Thresholds())
        self.learn_q = (
            PostgresSource(self.dsn, query=LOAD_QUERY, statements=False)
            if "guarded_probe" in args.scenarios
            else None
        )
        self.probed_q: list[float] = []
        self.window = 5.0
        self.probed: list[float] = []  # db.latency_s seen by the 1 Hz probe, this window
        self.stmt: list[float] = []  # db.statement_mean_s (pg_stat_statements), this window

    def argv(self, path: Path | None, *, idle: bool = False) -> list[str]:
        out = [] if path is None else ["-f", str(path)]
        chrt = ["chrt", "--idle", "0"] if idle else []
        return [*chrt, self.pg_dump, "-Fc", *out, "-d", self.dump_dsn]

    def warm(self) -> tuple[int, int, int, float]:
        """The server's version and the database's size in bytes; then a dump alone (no
        load), which warms the caches: its size in bytes and the seconds it took."""
        with self.server.admin() as conn:
            version = int(conn.info.server_version)
            db_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        t0 = time.monotonic()
        warm = self.workdir / "warm.dump"
        subprocess.run(self.argv(warm), env=self.env, check=True, timeout=600)
        took = time.monotonic() - t0
        dump_bytes = warm.stat().st_size
        warm.unlink()
        return version, int(db_bytes), dump_bytes, took

    def learn(self, seconds: float) -> None:
        """Baseline samples once a second (the guard's own cadence) for ``seconds``."""
        end = time.monotonic() + seconds
        next_at = time.monotonic()
        while next_at < end:
            sample = self.learn_source.sample()
            self.learner.observe_baseline(sample)
            self.record(sample)
            if self.learn_q is not None:
                self.learner_q.observe_baseline(self.record_q())
            next_at += 1.0
            time.sleep(max(0.0, min(next_at, end) - time.monotonic()))

    def probe(self, stop: threading.Event) -> None:
        """What the probe reads once a second while a dump runs (not learned)."""
        while not stop.wait(1.0):
            self.record(self.learn_source.sample())
            if self.learn_q is not None:
                self.record_q()

    def record_q(self) -> Any:
        assert self.learn_q is not None
        sample = self.learn_q.sample()
        if "db.latency_s" in sample:
            self.probed_q.append(sample["db.latency_s"])
        return sample

    def record(self, sample: Any) -> None:
        if "db.latency_s" in sample:
            self.probed.append(sample["db.latency_s"])
        if "db.statement_mean_s" in sample:
            self.stmt.append(sample["db.statement_mean_s"])

    def guard(self, source: Any, learner: Any = None) -> Any:
        return make_guard(source, (learner or self.learner).baseline)

    def niced(self, path: Path, lower: Any) -> None:
        """pg_dump at nice 19 in the idle I/O class; with ``lower``, a source sampled
        once a second that lowers the dump's backend the same way."""
        import psutil

        proc = subprocess.Popen(self.argv(path), env=self.env)
        p = psutil.Process(proc.pid)
        p.nice(19)
        p.ionice(psutil.IOPRIO_CLASS_IDLE)
        while lower is not None:
            lower.sample()
            try:
                proc.wait(1.0)
                break
            except subprocess.TimeoutExpired:
                continue
        if proc.wait(600) != 0:
            raise RuntimeError(f"pg_dump failed ({proc.returncode})")

    @staticmethod
    def reported(r: Any) -> dict[str, Any]:
        """What ``guard.run``'s report says about how the dump was held back."""
        return {
            "paused_s": {k: round(v, 2) for k, v in r.paused.items()},
            "pauses": r.pauses,
            "cpu_s": round(r.cpu_seconds, 2),
            "nice": r.nice,
            "ionice": r.ionice,
            "freeze": r.freeze,
        }

    def dump(self, scenario: str, path: Path) -> dict[str, Any]:
        """Run one dump the scenario's way; what happened to it."""

        info: dict[str, Any] = {}
        if scenario == "unguarded":
            subprocess.run(self.argv(path), env=self.env, check=True, timeout=600)
        elif scenario == "nice":
            self.niced(path, None)
        elif scenario == "nice_backend":
            with guard_source(self.dsn, "guarded_backend") as lower:  # nice 19, idle I/O
                self.niced(path, lower)
        else:
            lowers = scenario in ("guarded_backend", "guarded_idle")
            idle = scenario == "guarded_idle"
            source = guard_source(self.dsn, scenario)
            guard = self.guard(source, self.learner_q if scenario == "guarded_probe" else None)
            verdicts: dict[str, int] = {}
            lowered: set[int] = set()
            done = threading.Event()

            def watch() -> None:  # what the guard decided, twice a second
                while not done.wait(0.5):
                    d = guard.decision()
                    verdicts[d.verdict.name] = verdicts.get(d.verdict.name, 0) + 1
                    lowered.update(source.backends_lowered)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            try:
                if scenario != "guarded_stream":
                    argv = self.argv(path, idle=idle)
                    try:
                        ran = guard.run(argv, env=self.env, timeout=self.args.max_dump)
                    except subprocess.TimeoutExpired:
                        # held back past --max-dump: the window counts, the dump is gone
                        info["timed_out"] = True
                    else:
                        if ran.returncode != 0:
                            raise RuntimeError(f"pg_dump failed ({ran.returncode})")
                        info.update(self.reported(ran.report))
                else:
                    guard.stream(self.argv(None), path, env=self.env)
            finally:
                done.set()
                watcher.join()
                guard.close()
            if lowers:
                info["backends_lowered"] = len(lowered)
                if source.backend_error:
                    raise RuntimeError(source.backend_error)
            total = sum(verdicts.values()) or 1
            info["verdicts"] = {k: round(v / total, 3) for k, v in sorted(verdicts.items())}
        if info.get("timed_out"):
            path.unlink(missing_ok=True)
            return info
        listed = subprocess.run(
            [self.pg_restore, "--list", str(path)], capture_output=True, text=True, timeout=60
        )
        info["toc_ok"] = listed.returncode == 0 and "TABLE DATA public photos" in listed.stdout
        info["bytes"] = path.stat().st_size
        return info

    def one(self, scenario: str, repeat: int) -> dict[str, Any]:
        """One trial: the load alone for ``window`` seconds (the reference; the guard's
        baseline learns from it), then the scenario, on the same load process, so that
        the two windows share whatever else the machine is doing."""
        load = Load(self.dsn, self.args.rate, self.args.threads)
        time.sleep(self.args.warmup)
        row: dict[str, Any] = {"repeat": repeat, "scenario": scenario}
        path = self.workdir / f"{scenario}-{repeat}.dump"
        stop = threading.Event()
        prober = threading.Thread(target=self.probe, args=(stop,), daemon=True)
        self.probed, self.stmt, self.probed_q = [], [], []
        r0 = time.monotonic()
        try:
            self.learn(self.window)
            r1 = t0 = time.monotonic()
            ref_probes = self.seen()
            self.probed, self.stmt, self.probed_q = [], [], []
            if scenario == "alone_again":
                self.learn(self.window)
            else:
                prober.start()
                row.update(self.dump(scenario, path))
        finally:
            t1 = time.monotonic()
            stop.set()
            if prober.is_alive():
                prober.join()
            lat = load.stop()
        row.update(self.seen())
        row["seconds"] = round(t1 - t0, 2)
        row["errors"] = lat["errors"]
        pairs = list(zip(lat["t"], lat["lat"], strict=True))
        row.update(percentiles([x for t, x in pairs if t0 <= t <= t1]))
        row["ref"] = {**percentiles([x for t, x in pairs if r0 <= t < r1]), **ref_probes}
        keep = scenario.startswith("guarded") and repeat == self.args.repeats - 1
        if path.exists() and not keep:
            path.unlink()
        return row

    def seen(self) -> dict[str, Any]:
        """What the 1 Hz source read in the window: medians and maxima, ms."""
        out: dict[str, Any] = {}
        for key, values in (
            ("probe_ms", self.probed),
            ("stmt_ms", self.stmt),
            ("probe_q_ms", self.probed_q),
        ):
            if values:
                out[key] = {
                    "median": round(1000 * statistics.median(values), 3),
                    "max": round(1000 * max(values), 3),
                }
        return out

    def verify(self, path: Path) -> dict[str, Any]:
        """Restore ``path`` into a new database; compare the static tables' checksums
        and every table's presence with the source."""
        db = f"restored_{uuid.uuid4().hex[:8]}"
        with self.server.admin("postgres") as conn:
            conn.execute(f"CREATE DATABASE {db} OWNER {server_user()}")
        try:
            restored = subprocess.run(
                [self.pg_restore, "--exit-on-error", "-h", str(self.server.sockets),
                 "-p", str(self.server.port), "-U", "postgres", "-d", db, str(path)],
                env=self.env, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            if restored.returncode != 0:
                return {"restored": False, "error": restored.stderr[-500:]}
            same = {t: self.checksum(db, t) == self.checksum(None, t) for t in STATIC_TABLES}
            with self.server.admin(db) as conn:
                accounts = conn.execute("SELECT count(*) FROM accounts").fetchone()[0]
            return {"restored": True, "static_tables_equal": same, "accounts": accounts}
        finally:
            with self.server.admin("postgres") as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")

    def checksum(self, db: str | None, table: str) -> tuple[int, str]:
        with self.server.admin(db) if db else self.server.admin() as conn:
            row = conn.execute(
                f"SELECT count(*), md5(string_agg(md5(t::text), '' ORDER BY id)) FROM {table} t"
            ).fetchone()
        return int(row[0]), str(row[1])


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def ran(runs: list[dict[str, Any]]) -> list[str]:
    """The scenarios in ``runs``, in the order of the tables."""
    return [s for s in (*SCENARIOS, *OPTIONAL) if any(r["scenario"] == s for r in runs)]


def summarize(runs: list[dict[str, Any]], repeats: int) -> dict[str, Any]:
    """Per scenario, median and range over repeats of each percentile over its trial's
    own reference window (``ratio``), of the milliseconds, of the dump's seconds and of
    what the source read (``probe_ms``, ``stmt_ms``; ``ref_*``: in the reference)."""
    out: dict[str, Any] = {}
    for scenario in ran(runs):
        rows = {r["repeat"]: r for r in runs if r["scenario"] == scenario}
        entry: dict[str, Any] = {}
        for q in ("p50", "p95", "p99"):
            ratios = [rows[i][f"{q}_ms"] / rows[i]["ref"][f"{q}_ms"] for i in range(repeats)]
            entry[f"{q}_ratio"] = spread(ratios)
            entry[f"{q}_ms"] = spread([rows[i][f"{q}_ms"] for i in range(repeats)])
            entry[f"ref_{q}_ms"] = spread([rows[i]["ref"][f"{q}_ms"] for i in range(repeats)])
        entry["seconds"] = spread([rows[i]["seconds"] for i in range(repeats)])
        for key in ("probe_ms", "stmt_ms", "probe_q_ms"):
            for where, name in (
                (rows, key),
                ({i: r["ref"] for i, r in rows.items()}, f"ref_{key}"),
            ):
                seen = [where[i][key]["median"] for i in range(repeats) if key in where[i]]
                if seen:
                    entry[name] = spread(seen)
        out[scenario] = entry
    return out


def table(r: dict[str, Any]) -> str:
    rows = [
        "| scenario | p50 × | p95 × [range] | p99 × | p95 ms | dump s [range] | probe ms "
        "| ref probe ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario in r["summary"]:
        s = r["summary"][scenario]
        p95 = s["p95_ratio"]
        dump = s["seconds"]
        rows.append(
            f"| {scenario} | {s['p50_ratio']['median']:.2f} | {p95['median']:.2f} "
            f"[{p95['min']:.2f}, {p95['max']:.2f}] | {s['p99_ratio']['median']:.2f} | "
            f"{s['p95_ms']['median']:.1f} | "
            + (
                f"{dump['median']:.1f} [{dump['min']:.1f}, {dump['max']:.1f}]"
                if not scenario.startswith("alone")
                else ""
            )
            + f" | {s['probe_ms']['median']:.3f} | {s['ref_probe_ms']['median']:.3f} |"
        )
    g = r["goal"]
    rows.append("")
    rows.append(
        f"goal (guarded p95 × ≤ {g['p95_limit']:.2f} where unguarded exceeds it): "
        + ("met" if g["met"] else "not met")
        + f"; with the backend lowered: {'met' if g['backend_met'] else 'not met'}; "
        + ", ".join(
            f"{k[:-4]} {v:.2f}" for k, v in g.items() if k.endswith("_p95") and k != "aa_p95"
        )
    )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small database, one repeat")
    parser.add_argument("--repeats", type=int, default=None, help="default 3 (quick: 1)")
    parser.add_argument("--scale", type=int, default=None, help="MB of bulk data (default 240)")
    parser.add_argument("--rate", type=float, default=100.0, help="transactions per second")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before")
    parser.add_argument(
        "--window", type=float, default=None, help="reference seconds (default: the first "
        "dump's duration, 5 to 10)"
    )  # fmt: skip
    parser.add_argument("--baseline", type=float, default=None, help="seconds (default 30)")
    parser.add_argument("--max-dump", type=float, default=300.0, help="seconds a dump may take")
    parser.add_argument("--seed", type=int, default=None, help="the scenarios' order")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, from {', '.join((*SCENARIOS, *OPTIONAL))} "
        "(each trial starts with its own load-alone reference)",
    )
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "wedguard-bench-pgdump"
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the full restores")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        load_worker(args.dsn, args.rate, args.threads, 100000)
        return
    args.repeats = args.repeats or (1 if args.quick else 3)
    chosen = [s for s in args.scenarios.split(",") if s]
    unknown = set(chosen) - {*SCENARIOS, *OPTIONAL}
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    args.scale = args.scale or (40 if args.quick else 120)
    args.baseline = args.baseline if args.baseline is not None else (10 if args.quick else 30)
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    order = random.Random(seed)
    started = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]

    with contextlib.ExitStack() as stack:
        server = stack.enter_context(cached_server(args.cache / f"{args.scale}MB", args.scale))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wedguard-dump-")))
        bench = Bench(server, args, workdir)
        stack.callback(bench.learn_source.close)
        if bench.learn_q is not None:
            stack.callback(bench.learn_q.close)
        # a first dump warms the caches and sets how long the load-alone windows last
        version, db_bytes, dump_bytes, took = bench.warm()
        bench.window = args.window if args.window is not None else min(10.0, max(5.0, took))
        print(f"database {db_bytes / 1e6:.0f} MB, dump {dump_bytes / 1e6:.0f} MB in "
              f"{took:.1f} s; learning the baseline", file=sys.stderr)  # fmt: skip
        load = Load(bench.dsn, args.rate, args.threads)
        try:
            time.sleep(args.warmup)
            bench.learn(args.baseline)
        finally:
            load.stop()
        runs: list[dict[str, Any]] = []
        for repeat in range(args.repeats):
            scenarios = list(chosen)
            order.shuffle(scenarios)
            for scenario in scenarios:
                row = bench.one(scenario, repeat)
                runs.append(row)
                print(json.dumps(row), file=sys.stderr)
                time.sleep(1.0)
        verified: dict[str, Any] = {}
        if not args.no_verify:
            for scenario in (s for s in chosen if s.startswith("guarded")):
                last = workdir / f"{scenario}-{args.repeats - 1}.dump"
                verified[scenario] = bench.verify(last) if last.exists() else {"timed_out": True}

    summary = summarize(runs, args.repeats)
    limit = GOAL_P95
    p95 = {k: v["p95_ratio"]["median"] for k, v in summary.items()}
    g_run = p95.get("guarded_run", float("nan"))
    g_backend = p95.get("guarded_backend", float("nan"))
    unguarded = p95.get("unguarded", float("nan"))
    dumps = [r for r in runs if not r["scenario"].startswith("alone") and not r.get("timed_out")]
    results = {
        "benchmark": "pgdump",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {platform.system()}",
        "python": platform.python_version(),
        "server_version": version,
        "load_average": {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]},
        "wall_s": round(time.monotonic() - started, 1),
        "config": {
            "quick": args.quick,
            "repeats": args.repeats,
            "seed": seed,
            "scale_mb": args.scale,
            "database_mb": round(db_bytes / 1e6, 1),
            "dump_mb": round(dump_bytes / 1e6, 1),
            "load_tx_per_s": args.rate,
            "load_threads": args.threads,
            "alone_window_s": round(bench.window, 1),
            "first_dump_s": round(took, 1),
            "baseline_probe_ms": round(
                1000 * bench.learner.baseline.stats["db.latency_s"].median, 3
            ),
            "baseline_s": args.baseline,
            "calendar": CALENDAR,
            "guard": 'rate="off", PostgresSource, Thresholds() defaults (db.latency_s +20 %)',
            "backend_priority": "nice 19, idle I/O (BackendPriority())",
        },
        "runs": runs,
        "summary": summary,
        "dumps_checked": len(dumps),
        "dumps_timed_out": sum(1 for r in runs if r.get("timed_out")),
        "dumps_corrupt": sum(1 for r in dumps if not r.get("toc_ok")),
        "verified": verified,
        "goal": {
            "p95_limit": limit,
            **{f"{k}_p95": v for k, v in p95.items()},
            "aa_p95": p95.get("alone_again", float("nan")),
            "unguarded_exceeds": unguarded > limit,
            **{f"{k}_met": v <= limit for k, v in p95.items() if k.startswith("guarded")},
            "met": g_run <= limit < unguarded,
            "backend_met": g_backend <= limit < unguarded,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
