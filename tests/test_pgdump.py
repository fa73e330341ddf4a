"""pg_dump under the guard, against a real PostgreSQL server: every dump restores.

A database of a few MB (three tables, an index, text and bytea) is dumped by
``guard.run``, ``guard.stream`` and ``wedguard run`` (with a configuration whose
PostgreSQL source reads the same database); each dump is restored with ``pg_restore``
into a new database and every table's row count and content checksum must match the
source. An emergency stop mid-dump ends ``pg_dump`` (no dump under the final name; the
command line exits 3), and a low guard rate stretches the dump accordingly.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import wedguard as wg
from conftest_postgres import APP_PASSWORD, APP_USER, PostgresServer, postgres_server
from wedguard.io.stream import CommandFailed
from wedguard.sources import PostgresSource

__all__ = ["postgres_server"]

SRC = str(Path(__file__).resolve().parent.parent / "src")
SOURCE_DB = "pgdump_src"
TABLES = ("couples", "photos", "vendors")

FILL = """
CREATE TABLE couples (id int PRIMARY KEY, name text NOT NULL, wedding date, notes text);
INSERT INTO couples
SELECT i, 'couple ' || i, date '2027-01-01' + (i % 700), repeat(md5(i::text), 4)
FROM generate_series(1, 20000) AS i;

CREATE TABLE photos (id int PRIMARY KEY, couple_id int NOT NULL REFERENCES couples,
                     caption text, data bytea NOT NULL);
INSERT INTO photos
SELECT i, 1 + i % 20000, 'photo ' || i || E' \u00e9t\u00e9 \\ , "quoted"',
       (SELECT decode(string_agg(md5(i::text || '/' || j::text), ''), 'hex')
        FROM generate_series(1, 64) AS j)
FROM generate_series(1, 2000) AS i;
CREATE INDEX photos_couple ON photos (couple_id);

CREATE TABLE vendors (id int PRIMARY KEY, name text, category text, price numeric(10, 2));
INSERT INTO vendors
SELECT i, 'vendor ' || i, (ARRAY['flowers', 'music', 'venue', 'photo'])[1 + i % 4],
       (i * 37 % 100000) / 100.0
FROM generate_series(1, 3000) AS i;
ANALYZE;
"""


def _dsn(server: PostgresServer, db: str) -> str:
    """A URL DSN without the password (pg_dump reads PGPASSWORD from its environment)."""
    return f"postgresql://{APP_USER}@127.0.0.1:{server.port}/{db}"


def _env() -> dict[str, str]:
    return {**os.environ, "PGPASSWORD": APP_PASSWORD}


def _program(server: PostgresServer, name: str) -> str:
    """pg_dump / pg_restore of the server's own version (next to its postgres)."""
    path = os.path.join(server.bindir, name)
    assert os.access(path, os.X_OK), f"{name} is not installed next to the server ({path})"
    return path


def _contents(server: PostgresServer, db: str) -> dict[str, tuple[int, str]]:
    """Each table's row count and the md5 of its rows in id order."""
    out: dict[str, tuple[int, str]] = {}
    with server.admin(db) as conn:
        for table in TABLES:
            row = conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY id), '')) "
                f"FROM {table} t"
            ).fetchone()
            out[table] = (int(row[0]), str(row[1]))
    return out


def _indexes(server: PostgresServer, db: str) -> list[str]:
    with server.admin(db) as conn:
        rows = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
    return [r[0] for r in rows]


def _dump_backends(server: PostgresServer) -> list[int]:
    """pg_dump's sessions on the server."""
    with server.admin("postgres") as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'pg_dump'"
        ).fetchall()
    return [r[0] for r in rows]


def _wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def source_db(postgres_server: PostgresServer) -> Iterator[dict[str, tuple[int, str]]]:
    """The database to dump, filled once; yields its tables' counts and checksums."""
    with postgres_server.admin("postgres") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {SOURCE_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {SOURCE_DB} OWNER {APP_USER}")
    import psycopg

    with psycopg.connect(_dsn(postgres_server, SOURCE_DB), password=APP_PASSWORD) as conn:
        conn.execute(FILL)
    try:
        yield _contents(postgres_server, SOURCE_DB)
    finally:
        with postgres_server.admin("postgres") as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {SOURCE_DB} WITH (FORCE)")


@pytest.fixture
def restore(postgres_server: PostgresServer) -> Iterator[Callable[[Path], dict[str, Any]]]:
    """pg_restore a dump into a new database; the restored tables and indexes."""
    made: list[str] = []

    def restore_into_new_database(dump: Path) -> dict[str, Any]:
        db = f"restored_{uuid.uuid4().hex[:12]}"
        with postgres_server.admin("postgres") as conn:
            conn.execute(f"CREATE DATABASE {db} OWNER {APP_USER}")
        made.append(db)
        done = subprocess.run(
            [_program(postgres_server, "pg_restore"), "--exit-on-error", "--no-owner",
             "-d", _dsn(postgres_server, db), str(dump)],
            env=_env(), capture_output=True, text=True, timeout=50,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return {
            "tables": _contents(postgres_server, db),
            "indexes": _indexes(postgres_server, db),
        }

    yield restore_into_new_database
    with postgres_server.admin("postgres") as conn:
        for db in made:
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


@pytest.fixture
def guard(postgres_server: PostgresServer) -> Iterator[wg.Guard]:
    """A guard reading the dumped database, no calendar, no byte budget."""
    source = PostgresSource(_dsn(postgres_server, SOURCE_DB), password=APP_PASSWORD)
    g = wg.Guard(rate="off", calendar=None, sources=[source], sinks=[])
    try:
        yield g
    finally:
        g.close()


def _pg_dump(server: PostgresServer, *options: str) -> list[str]:
    return [_program(server, "pg_dump"), "-Fc", *options, "-d", _dsn(server, SOURCE_DB)]


def _expected(source: dict[str, tuple[int, str]]) -> dict[str, Any]:
    return {"tables": source, "indexes": ["couples_pkey", "photos_couple", "photos_pkey",
                                          "vendors_pkey"]}  # fmt: skip


# -- every way of dumping restores to the same content -------------------------------------


def test_the_source_database_is_the_size_the_tests_assume(
    postgres_server: PostgresServer, source_db: dict[str, tuple[int, str]]
) -> None:
    with postgres_server.admin(SOURCE_DB) as conn:
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    assert size > 5_000_000
    assert {t: n for t, (n, _) in source_db.items()} == {
        "couples": 20000, "photos": 2000, "vendors": 3000
    }  # fmt: skip


def test_guard_run_pg_dump_restores_to_the_same_content(
    postgres_server: PostgresServer,
    source_db: dict[str, tuple[int, str]],
    guard: wg.Guard,
    restore: Callable[[Path], dict[str, Any]],
    tmp_path: Path,
) -> None:
    dump = tmp_path / "wed.dump"
    done = guard.run(_pg_dump(postgres_server, "-f", str(dump)), env=_env(), capture_output=True)
    assert done.returncode == 0, done.stderr
    assert done.report.returncode == 0
    assert done.report.io_bytes > 0
    assert restore(dump) == _expected(source_db)


def test_guard_stream_pg_dump_restores_to_the_same_content(
    postgres_server: PostgresServer,
    source_db: dict[str, tuple[int, str]],
    guard: wg.Guard,
    restore: Callable[[Path], dict[str, Any]],
    tmp_path: Path,
) -> None:
    dump = tmp_path / "wed.dump"
    written = guard.stream(_pg_dump(postgres_server), dump, env=_env())
    assert written == dump.stat().st_size > 1_000_000
    assert not dump.with_name("wed.dump.partial").exists()
    assert restore(dump) == _expected(source_db)


def _cli_env(postgres_server: PostgresServer, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in _env().items() if not k.startswith("WEDGUARD_")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["WEDGUARD_RUN_DIR"] = str(tmp_path / "run")
    env["WEDGUARD_DB_DSN"] = _dsn(postgres_server, SOURCE_DB)
    env.pop("XDG_RUNTIME_DIR", None)
    return env


def _cli_config(tmp_path: Path, rate: str, *, lower: bool = False) -> Path:
    config = tmp_path / "wedguard.toml"
    config.write_text(
        f'[guard]\nrate = "{rate}"\n'
        '[calendar]\npreset = "none"\n'
        '[[sources]]\ntype = "postgres"\ndsn_env = "WEDGUARD_DB_DSN"\n'
        'password_env = "PGPASSWORD"\ntimeout = 2.0\n'
        + ('lower_backends = "pg_dump"\n' if lower else "")
    )
    return config


def test_wedguard_run_pg_dump_with_a_postgres_source_restores_to_the_same_content(
    postgres_server: PostgresServer,
    source_db: dict[str, tuple[int, str]],
    restore: Callable[[Path], dict[str, Any]],
    tmp_path: Path,
) -> None:
    env = _cli_env(postgres_server, tmp_path)
    config = _cli_config(tmp_path, "off")
    checked = subprocess.run(
        [sys.executable, "-m", "wedguard", "config", "check", str(config)],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    dump = tmp_path / "wed.dump"
    done = subprocess.run(
        [sys.executable, "-m", "wedguard", "run", "-c", str(config), "--report", "--",
         *_pg_dump(postgres_server, "-f", str(dump))],
        env=env, capture_output=True, text=True, timeout=50,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "pg_dump (pid" in done.stderr
    assert "exit 0 after" in done.stderr
    assert APP_PASSWORD not in done.stderr + done.stdout
    assert restore(dump) == _expected(source_db)


def test_wedguard_run_lowers_the_dumps_server_backend_and_the_dump_restores(
    postgres_server: PostgresServer,
    source_db: dict[str, tuple[int, str]],
    restore: Callable[[Path], dict[str, Any]],
    tmp_path: Path,
) -> None:
    """``lower_backends = "pg_dump"``: while the dump runs (paced to a few seconds),
    the server process serving it runs at nice 19 in the idle I/O class."""
    env = _cli_env(postgres_server, tmp_path)
    config = _cli_config(tmp_path, "1MB/s", lower=True)
    dump = tmp_path / "wed.dump"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wedguard", "run", "-c", str(config), "--",
         *_pg_dump(postgres_server, "-f", str(dump))],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen: set[tuple[int, int]] = set()

    def lowered() -> bool:
        for pid in _dump_backends(postgres_server):
            with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
                seen.add((os.getpriority(os.PRIO_PROCESS, pid), psutil.Process(pid).ionice()[0]))
        return (19, psutil.IOPRIO_CLASS_IDLE) in seen

    try:
        _wait_for(lowered, timeout=20)
        _out, err = proc.communicate(timeout=50)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "cannot lower" not in err
    assert restore(dump) == _expected(source_db)


def test_a_failing_pg_dump_leaves_no_dump_and_says_why(
    postgres_server: PostgresServer,
    source_db: dict[str, tuple[int, str]],
    guard: wg.Guard,
    tmp_path: Path,
) -> None:
    dump = tmp_path / "wed.dump"
    with pytest.raises(CommandFailed) as caught:
        guard.stream(_pg_dump(postgres_server, "-t", "no_such_table"), dump, env=_env())
    assert caught.value.returncode != 0
    assert "no matching tables were found" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


# -- an emergency stop ends the dump ---------------------------------------------------------


def test_a_stop_mid_stream_ends_pg_dump_and_leaves_no_dump(
    postgres_server: PostgresServer,
    source_db: dict[str, tuple[int, str]],
    guard: wg.Guard,
    tmp_path: Path,
) -> None:
    dump = tmp_path / "wed.dump"
    partial = tmp_path / "wed.dump.partial"
    guard.set_rate("300kB/s")  # the dump takes about 10 s: the stop lands in the middle
    started = threading.Event()

    def stop_once_it_writes() -> None:
        _wait_for(lambda: partial.exists() and partial.stat().st_size > 100_000)
        started.set()
        guard.stop("failover")

    stopper = threading.Thread(target=stop_once_it_writes, daemon=True)
    stopper.start()
    t0 = time.monotonic()
    with pytest.raises(wg.EmergencyStop):
        guard.stream(_pg_dump(postgres_server), dump, env=_env())
    stopper.join(5)
    assert started.is_set()
    assert time.monotonic() - t0 < 8.0
    assert not dump.exists()
    assert not partial.exists()
    assert not [p for p in psutil.Process().children(recursive=True) if p.name() == "pg_dump"]
    _wait_for(lambda: _dump_backends(postgres_server) == [], timeout=10)


def test_wedguard_stop_panic_mid_dump_ends_pg_dump_exit_3(
    postgres_server: PostgresServer,
    source_db: dict[str, tuple[int, str]],
    tmp_path: Path,
) -> None:
    env = _cli_env(postgres_server, tmp_path)
    config = _cli_config(tmp_path, "300kB/s")
    dump = tmp_path / "wed.dump"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wedguard", "run", "-c", str(config), "--",
         *_pg_dump(postgres_server, "-f", str(dump))],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def wedguard(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "wedguard", *args, "-c", str(config)],
            env=env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip

    try:
        _wait_for(lambda: dump.exists() and dump.stat().st_size > 100_000)
        status = json.loads(wedguard("status", "--json").stdout)
        (running,) = status["guards"]
        assert [c["name"] for c in running["children"]] == ["pg_dump"]
        stopped = wedguard("stop", "--panic", "--reason", "failover")
        assert stopped.returncode == 0, stopped.stderr
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 3, err
    assert "stopped: panic: failover" in err
    _wait_for(lambda: _dump_backends(postgres_server) == [], timeout=10)


# -- a low rate stretches the dump -----------------------------------------------------------


def test_a_low_guard_rate_paces_the_dump(
    postgres_server: PostgresServer,
    source_db: dict[str, tuple[int, str]],
    restore: Callable[[Path], dict[str, Any]],
    tmp_path: Path,
) -> None:
    """At a rate that allows the dump's bytes in about 2 s, it takes about 2 s, where
    unlimited it takes a fraction of that; paced, it still restores. (A guard with no
    source: the rate alone paces, no latency verdict or baseline warm-up mixes in.)"""
    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[])
    fast = tmp_path / "fast.dump"
    t0 = time.monotonic()
    size = guard.stream(_pg_dump(postgres_server), fast, env=_env())
    unlimited = time.monotonic() - t0
    # about 2 s paced, and at least 2.5 times the unlimited dump on a busy machine
    rate = size / max(2.0, 2.5 * unlimited)
    guard.set_rate(rate)

    slow = tmp_path / "slow.dump"
    t0 = time.monotonic()
    assert abs(guard.stream(_pg_dump(postgres_server), slow, env=_env()) - size) < 1000
    streamed = time.monotonic() - t0

    ran = tmp_path / "ran.dump"
    t0 = time.monotonic()
    done = guard.run(_pg_dump(postgres_server, "-f", str(ran)), env=_env(), capture_output=True)
    run_for = time.monotonic() - t0
    assert done.returncode == 0, done.stderr
    assert abs(ran.stat().st_size - size) < 1000

    # the budget's burst is at most a fraction of a second's worth
    assert streamed >= 0.8 * size / rate > unlimited
    assert run_for >= 0.8 * size / rate
    assert done.report.paused.get("rate", 0.0) > 0.5
    assert restore(slow) == _expected(source_db)
    guard.close()
