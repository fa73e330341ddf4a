"""PostgresSource against a real PostgreSQL server that the tests start.

What a user watching a production database would check: the latency and the load
figures follow what the server does (connections, lock waits, commits, deadlocks,
temporary files, statement times), and every fault (the server down, the connection
limit reached, a probe slower than its timeout) reads as an error, never as OK and never
as an exception, with the password nowhere in sight.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import urllib.parse

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import wedguard as wg
from conftest_postgres import APP_PASSWORD, DATABASE, PostgresServer, postgres_server
from wedguard.config import Config
from wedguard.sources import PostgresSource
from wedguard.sources.postgres import redact_dsn
from wedguard.testing import FakeClock

__all__ = ["postgres_server"]

GAUGES = ("db.connections_active", "db.connections_waiting", "db.connections_used_ratio")
# what the server answers a role without superuser rights when only reserved slots are left
FULL = "remaining connection slots are reserved"
RATES = ("db.commits_per_s", "db.blks_read_per_s", "db.deadlocks_per_s", "db.temp_bytes_per_s")


@pytest.fixture
def sources() -> Iterator[list[PostgresSource]]:
    """Sources a test builds; closed at its end."""
    made: list[PostgresSource] = []
    yield made
    for s in made:
        s.close()


def source(made: list[PostgresSource], dsn: str, **kwargs: Any) -> PostgresSource:
    s = PostgresSource(dsn, **kwargs)
    made.append(s)
    return s


def wait_until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def stat_database(server: PostgresServer, column: str) -> int:
    """A counter of the test database, read from another database (so that reading it
    adds no commit to the test database)."""
    with server.admin("postgres") as conn:
        row = conn.execute(
            f"SELECT {column} FROM pg_stat_database WHERE datname = %s", (DATABASE,)
        ).fetchone()
    return int(row[0])


# -- what a sample reports --------------------------------------------------------------


def test_a_sample_reports_latency_and_connection_figures(
    postgres_server: PostgresServer, sources: list[PostgresSource]
) -> None:
    db = source(sources, postgres_server.dsn())
    first = db.sample()
    assert 0 < first["db.latency_s"] < 1.0
    assert set(GAUGES) <= set(first)
    assert not any(k.endswith(".error") for k in first)
    # rates need two samples
    assert not set(RATES) & set(first)
    assert set(RATES) <= set(db.sample())
    assert db.connected
    assert db.last_error is None


def test_the_default_thresholds_judge_its_latency_at_peak(
    postgres_server: PostgresServer, sources: list[PostgresSource]
) -> None:
    """What the source reports as latency is what the default thresholds judge at PEAK
    (+20 % over the baseline): ten quiet samples, then a probe ten times slower."""
    (rule,) = (r for r in wg.Thresholds().rules(wg.Level.PEAK) if r.metric == "db.latency_s")
    assert (rule.kind, rule.limit) == ("relative", 0.2)
    db = source(sources, postgres_server.dsn())
    analyzer = wg.ImpactAnalyzer(min_samples=3)
    for _ in range(10):
        analyzer.observe_baseline(db.sample())
    slow = source(sources, postgres_server.dsn(), query="SELECT pg_sleep(0.05)")
    verdicts = [analyzer.assess(slow.sample(), wg.Level.PEAK) for _ in range(4)]
    assert verdicts[-1].verdict != wg.Verdict.OK
    assert any("db.latency_s" in r for r in verdicts[-1].reasons)


def test_used_ratio_counts_client_connections_over_max_connections(
    postgres_server: PostgresServer, sources: list[PostgresSource]
) -> None:
    db = source(sources, postgres_server.dsn())
    before = db.sample()["db.connections_used_ratio"]
    extra = [postgres_server.app() for _ in range(4)]
    try:
        during = db.sample()["db.connections_used_ratio"]
    finally:
        for conn in extra:
            conn.close()
    assert during == pytest.approx(before + 4 / 20)
    assert during * 20 == pytest.approx(round(during * 20))  # whole backends over 20


def test_connections_active_counts_other_running_statements(
    postgres_server: PostgresServer, sources: list[PostgresSource]
) -> None:
    db = source(sources, postgres_server.dsn())
    assert db.sample()["db.connections_active"] == 0  # its own backend is not counted
    conns = [postgres_server.app() for _ in range(2)]
    workers = [threading.Thread(target=c.execute, args=("SELECT pg_sleep(1.5)",)) for c in conns]
    for w in workers:
        w.start()
    try:
        wait_until(lambda: db.sample()["db.connections_active"] == 2)
    finally:
        for w in workers:
            w.join(10)
        for c in conns:
            c.close()
    assert db.sample()["db.connections_active"] == 0


def test_lock_contention_raises_connections_waiting(
    postgres_server: PostgresServer, sources: list[PostgresSource]
) -> None:
    """A backend holding a table lock makes three others queue: the source sees them
    waiting, and sees the queue drain when the lock is released."""
    with postgres_server.app() as setup:
        setup.execute("CREATE TABLE IF NOT EXISTS locked_guests (id int)")
    db = source(sources, postgres_server.dsn())
    assert db.sample()["db.connections_waiting"] == 0
    holder = postgres_server.app(autocommit=False)
    holder.execute("LOCK TABLE locked_guests IN ACCESS EXCLUSIVE MODE")
    waiters = [postgres_server.app() for _ in range(3)]
    threads = [
        threading.Thread(target=w.execute, args=("SELECT count(*) FROM locked_guests",))
        for w in waiters
    ]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: db.sample()["db.connections_waiting"] == 3)
        sample = db.sample()
        assert sample["db.connections_active"] >= 3  # waiting on a lock is still active
    finally:
        holder.rollback()
        for t in threads:
            t.join(10)
        holder.close()
        for w in waiters:
            w.close()
    assert db.sample()["db.connections_waiting"] == 0


def test_rates_follow_commits_deadlocks_temp_files_and_reads(
    postgres_server: PostgresServer, sources: list[PostgresSource]
) -> None:
    """Per-second rates over the interval between two samples (a fake clock makes the
    interval exactly 10 s), from what other connections did in it."""
    clock = FakeClock()
    with postgres_server.app() as setup:
        setup.execute("DROP TABLE IF EXISTS rsvp, seating")
        setup.execute("CREATE TABLE rsvp (id int PRIMARY KEY, n int)")
        setup.execute("INSERT INTO rsvp VALUES (1, 0), (2, 0)")
        # bigger than a quarter of shared_buffers (16MB): a scan reads it through a ring
        setup.execute(
            "CREATE TABLE seating AS SELECT g, repeat('x', 200) AS pad "
            "FROM generate_series(1, 40000) g"
        )
    db = source(sources, postgres_server.dsn(), monotonic=clock.monotonic)
    db.sample()
    commits0 = stat_database(postgres_server, "xact_commit")
    deadlocks0 = stat_database(postgres_server, "deadlocks")

    with postgres_server.app() as conn:
        for i in range(200):
            conn.execute("UPDATE rsvp SET n = %s WHERE id = 1", (i,))
        conn.execute("SET work_mem = '64kB'")
        conn.execute("SELECT count(*) FROM (SELECT g FROM seating ORDER BY pad, g DESC) s")
        conn.execute("SELECT count(*) FROM seating")
    deadlock(postgres_server)
    # backends publish their statistics when they end (at the latest once a second)
    wait_until(lambda: stat_database(postgres_server, "xact_commit") >= commits0 + 200)
    wait_until(lambda: stat_database(postgres_server, "deadlocks") > deadlocks0)
    wait_until(lambda: stat_database(postgres_server, "temp_bytes") > 0)

    clock.advance(10.0)
    sample = db.sample()
    assert 20.0 <= sample["db.commits_per_s"] <= 22.0  # 200 and the source's own few
    assert sample["db.deadlocks_per_s"] == pytest.approx(0.1)
    assert sample["db.temp_bytes_per_s"] * 10 > 1_000_000  # the sort spilled megabytes
    assert sample["db.blks_read_per_s"] * 10 > 100  # the scan read blocks in

    clock.advance(10.0)
    quiet = db.sample()
    assert quiet["db.deadlocks_per_s"] == 0
    assert quiet["db.temp_bytes_per_s"] == 0
    assert quiet["db.commits_per_s"] < 1.0


def deadlock(server: PostgresServer) -> None:
    """Two transactions that take rows 1 and 2 in opposite orders: one is chosen as the
    deadlock victim (deadlock_timeout is 100 ms on the test server)."""
    a, b = server.app(autocommit=False), server.app(autocommit=False)
    errors: list[BaseException] = []
    try:
        a.execute("UPDATE rsvp SET n = n WHERE id = 1")
        b.execute("UPDATE rsvp SET n = n WHERE id = 2")

        def second(conn: Any, row: int) -> None:
            try:
                conn.execute("UPDATE rsvp SET n = n WHERE id = %s", (row,))
            except psycopg.errors.DeadlockDetected as exc:
                errors.append(exc)
            finally:
                conn.rollback()

        t = threading.Thread(target=second, args=(a, 2))
        t.start()
        time.sleep(0.05)
        second(b, 1)
        t.join(10)
    finally:
        a.close()
        b.close()
    assert len(errors) == 1


# -- pg_stat_statements -----------------------------------------------------------------


def test_statement_mean_comes_from_pg_stat_statements(
    postgres_server: PostgresServer, sources: list[PostgresSource]
) -> None:
    """With the extension installed the mean statement time of the interval is
    reported: twenty 20 ms statements (and the source's own quick ones) come out
    near 20 ms. Without it (the server lacks contrib) no statement time is made up."""
    clock = FakeClock()
    db = source(sources, postgres_server.dsn(), monotonic=clock.monotonic)
    db.sample()
    with postgres_server.app() as conn:
        for _ in range(20):
            conn.execute("SELECT pg_sleep(0.02)")
    clock.advance(5.0)
    sample = db.sample()
    if not postgres_server.statements:
        assert "db.statement_mean_s" not in sample
        return
    assert 0.015 < sample["db.statement_mean_s"] < 0.03
    clock.advance(5.0)
    assert db.sample()["db.statement_mean_s"] < 0.005  # only the source's own statements


def test_without_the_extension_in_the_database_no_statement_time(
    postgres_server: PostgresServer, sources: list[PostgresSource]
) -> None:
    """pg_stat_statements is created in the test database only: a source on another
    database reports everything else and no statement time."""
    dsn = (
        f"host={postgres_server.sockets} port={postgres_server.port} user=postgres dbname=postgres"
    )
    db = source(sources, dsn)
    db.sample()
    sample = db.sample()
    assert "db.statement_mean_s" not in sample
    assert set(RATES) | set(GAUGES) <= set(sample)
    assert source(sources, postgres_server.dsn(), statements=False).sample().keys() == (
        {"db.latency_s", *GAUGES}
    )


# -- faults -----------------------------------------------------------------------------


def test_server_stopped_mid_run_reads_as_error_then_recovers_with_backoff(
    postgres_server: PostgresServer, sources: list[PostgresSource]
) -> None:
    clock = FakeClock()
    db = source(
        sources, postgres_server.dsn(), backoff=1.0, backoff_max=4.0, monotonic=clock.monotonic
    )
    analyzer = wg.ImpactAnalyzer(clock=clock)
    for _ in range(3):
        sample = db.sample()
        analyzer.observe_baseline(sample)
        clock.advance(1.0)
    assert db.attempts == 1
    postgres_server.stop()
    try:
        down = db.sample()  # the query on the lost connection fails
        # every metric it reported before is now an error, none a value
        assert down == {k + ".error": 1.0 for k in sample if not k.endswith(".idle")}
        assert {"db.latency_s.error", *(m + ".error" for m in GAUGES + RATES)} <= set(down)
        verdict = analyzer.assess(down)
        assert verdict.verdict != wg.Verdict.OK
        assert "db.latency_s" in verdict.missing
        assert db.last_error is not None
        assert not db.connected

        attempts = []
        for step in (0.0, 0.0, 0.5, 0.5, 1.0, 1.0, 2.0, 4.0, 2.0, 2.0):
            clock.advance(step)
            assert db.sample().get("db.latency_s.error") == 1.0
            attempts.append(db.attempts)
        # reconnects at once, then after 1, 2, 4 and 4 s (capped)
        assert attempts == [2, 2, 2, 3, 3, 4, 4, 5, 5, 6]
        assert "Connection refused" in (db.last_error or "")
        db.sample()
        assert db.last_error is not None
        assert db.last_error.startswith("reconnecting in 4.0 s; OperationalError")
        assert db.last_error.count("reconnecting") == 1
    finally:
        postgres_server.start()
    clock.advance(4.0)
    back = db.sample()
    assert back["db.latency_s"] > 0
    assert db.attempts == 7
    assert db.last_error is None
    assert analyzer.assess(back).missing == ()


def test_connection_limit_reached_is_a_clear_error(
    postgres_server: PostgresServer, sources: list[PostgresSource]
) -> None:
    clock = FakeClock()
    held = source(sources, postgres_server.dsn())
    held.sample()
    fillers = []
    try:
        refusal = ""
        while len(fillers) < 30:
            try:
                fillers.append(postgres_server.app())
            except psycopg.OperationalError as exc:
                refusal = str(exc)
                break
        assert FULL in refusal
        late = source(sources, postgres_server.dsn(), monotonic=clock.monotonic)
        t0 = time.monotonic()
        refused = late.sample()
        assert time.monotonic() - t0 < 2.0
        assert refused == {"db.latency_s.error": 1.0}
        assert FULL in (late.last_error or "")
        # the source that was already connected keeps measuring: the server is full
        # to all but the superusers' reserved slots (3 of 20)
        assert held.sample()["db.connections_used_ratio"] >= 17 / 20
    finally:
        for conn in fillers:
            conn.close()
    clock.advance(1.0)
    wait_until(lambda: "db.latency_s" in late.sample(), timeout=5)


def test_a_probe_slower_than_its_timeout_is_an_error_within_the_timeout(
    postgres_server: PostgresServer, sources: list[PostgresSource]
) -> None:
    slow = source(sources, postgres_server.dsn(), query="SELECT pg_sleep(3)", timeout=0.5)
    for _ in range(3):
        t0 = time.monotonic()
        sample = slow.sample()
        elapsed = time.monotonic() - t0
        assert sample == {"db.latency_s.error": 1.0}
        assert elapsed < 0.5 + 0.3
        time.sleep(0.3)
    assert slow.last_error is not None
    assert slow.attempts == 1  # a cancelled statement keeps the connection

    def sleepers() -> int:
        with postgres_server.admin() as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(3)%'"
                " AND state = 'active'"
            ).fetchone()
        return int(row[0])

    # the server cancels the probe at statement_timeout: nothing is left running
    wait_until(lambda: sleepers() == 0, timeout=3)


def test_a_wrong_password_is_an_error(
    postgres_server: PostgresServer, sources: list[PostgresSource]
) -> None:
    dsn = postgres_server.dsn(password="not-the-password")
    db = source(sources, dsn)
    assert db.sample() == {"db.latency_s.error": 1.0}
    assert "password authentication failed" in (db.last_error or "")
    assert "not-the-password" not in (db.last_error or "")


# -- secrets ----------------------------------------------------------------------------


def test_the_password_never_appears(
    postgres_server: PostgresServer,
    sources: list[PostgresSource],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    kv = (
        f"host=127.0.0.1 port={postgres_server.port} dbname={DATABASE} user=app "
        f"password={APP_PASSWORD}"
    )
    seen: list[str] = []
    for dsn in (postgres_server.dsn(), kv):
        db = source(sources, dsn, backoff=0.01)
        seen.append(repr(db))
        db.sample()
        postgres_server.stop()
        try:
            db.sample()
            seen.append(db.last_error or "")
            db.sample()
            seen.append(db.last_error or "")
        finally:
            postgres_server.start()
    by_kwarg = source(sources, f"host=127.0.0.1 port=1 user=app password={APP_PASSWORD}x")
    by_kwarg.sample()
    seen += [repr(by_kwarg), by_kwarg.last_error or ""]
    for bad in (
        f"host=x password {APP_PASSWORD}",
        f"host=x passwrd={APP_PASSWORD}",
        f"postgresql://app:{APP_PASSWORD}@[::1/db",
        f"postgresql://app:{APP_PASSWORD}@h/db?bogus=1",
    ):
        with pytest.raises(wg.ConfigError) as info:
            PostgresSource(bad)
        seen.append(str(info.value))
        assert info.value.field == "dsn"
    seen += [r.getMessage() for r in caplog.records]
    assert any("password authentication failed" in s or "Connection refused" in s for s in seen)
    for text in seen:
        assert APP_PASSWORD not in text


SHOWN_PARTS = (
    "postgresql://monitor:***@db.internal:5432/wed",
    "host=db.internal port=5432 user=monitor password=*** dbname=wed",
)


@given(
    password=st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=8, max_size=24
    )
)
def test_redact_dsn_hides_any_password(password: str) -> None:
    """Whatever characters a password has, both DSN forms (as libpq quotes it) hide it,
    and libpq reads the same password back from the original."""
    # a password that is a piece of the rest of the DSN ("postgres", "internal") cannot be
    # told apart from it; every other one must be gone
    assume(not any(password in part for part in SHOWN_PARTS))
    quoted = "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"
    kv = f"host=db.internal port=5432 user=monitor password={quoted} dbname=wed"
    url = f"postgresql://monitor:{urllib.parse.quote(password, safe='')}@db.internal:5432/wed"
    for dsn in (kv, url):
        assert psycopg.conninfo.conninfo_to_dict(dsn)["password"] == password
        redacted = redact_dsn(dsn)
        assert password not in redacted
        assert "***" in redacted
        assert "db.internal" in redacted
        assert "monitor" in redacted


# -- construction -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"dsn": b"host=x"}, "dsn"),
        ({"dsn": "host=x", "timeout": 0}, "timeout"),
        ({"dsn": "host=x", "timeout": float("inf")}, "timeout"),
        ({"dsn": "host=x", "name": ""}, "name"),
        ({"dsn": "host=x", "name": "db."}, "name"),
        ({"dsn": "host=x", "query": "  "}, "query"),
        ({"dsn": "host=x", "backoff": -1}, "backoff"),
        ({"dsn": "host=x", "backoff": 5, "backoff_max": 1}, "backoff_max"),
        ({"dsn": "host=x", "password": ""}, "password"),
        ({"dsn": "host=x", "monotonic": 3}, "monotonic"),
        ({"dsn": "host=x bogus=1"}, "dsn"),
    ],
)
def test_bad_arguments_are_config_errors(kwargs: dict[str, Any], field: str) -> None:
    dsn = kwargs.pop("dsn")
    with pytest.raises(wg.ConfigError) as info:
        PostgresSource(dsn, **kwargs)
    assert info.value.field == field


def test_building_a_source_does_no_io() -> None:
    db = PostgresSource("host=127.0.0.1 port=1 user=nobody", timeout=0.5)
    assert db.attempts == 0
    assert not db.connected


def test_psycopg_is_needed_only_to_build_a_source(monkeypatch: pytest.MonkeyPatch) -> None:
    code = (
        "import sys, wedguard, wedguard.sources\n"
        "from wedguard.sources import PostgresSource\n"
        "assert 'psycopg' not in sys.modules, 'psycopg imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(wg.__file__).resolve().parents[1])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    with pytest.raises(wg.ConfigError, match=r"wedguard\[postgres\]") as info:
        PostgresSource("host=x")
    assert info.value.field == "PostgresSource"


def test_a_closed_source_reports_errors(
    postgres_server: PostgresServer, sources: list[PostgresSource]
) -> None:
    with PostgresSource(postgres_server.dsn()) as db:
        assert "db.latency_s" in db.sample()
    assert not db.connected
    assert db.sample() == {"db.latency_s.error": 1.0, **{g + ".error": 1.0 for g in GAUGES}}


def test_name_prefixes_every_metric(
    postgres_server: PostgresServer, sources: list[PostgresSource]
) -> None:
    db = source(sources, postgres_server.dsn(), name="orders_db")
    db.sample()
    assert all(k.startswith("orders_db.") for k in db.sample())


# -- configuration ----------------------------------------------------------------------


def test_a_config_file_builds_a_postgres_source(
    postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEDDING_DB_DSN", postgres_server.dsn())
    config = Config.from_dict(
        {
            "calendar": {"preset": "none"},
            "sources": [{"type": "postgres", "dsn_env": "WEDDING_DB_DSN", "timeout": 1.5}],
        }
    )
    with config.assemble(sinks=[]) as built:
        (db,) = (s for s in built.guard._sources if isinstance(s, PostgresSource))
        assert db.timeout == 1.5
        assert "db.latency_s" in db.sample()
        db.close()
    assert APP_PASSWORD not in config.render()


def test_a_config_file_refuses_a_password_in_the_dsn() -> None:
    with pytest.raises(wg.ConfigError) as info:
        Config.from_dict(
            {"sources": [{"type": "postgres", "dsn": f"postgresql://app:{APP_PASSWORD}@h/db"}]}
        )
    assert "dsn" in info.value.field
    assert APP_PASSWORD not in str(info.value)
    with pytest.raises(wg.ConfigError) as both:
        Config.from_dict({"sources": [{"type": "postgres"}]})
    assert "dsn" in both.value.field


def test_the_how_to_configuration_builds(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TOML in docs/howto-postgres.md is a valid file that watches the server."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "howto-postgres.md").read_text()
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    monkeypatch.setenv("WEDGUARD_DB_DSN", postgres_server.dsn())
    config = Config.from_dict(tomllib.loads(block))
    assert config.thresholds.limit("db.connections_waiting") == 3
    with config.assemble(sinks=[]) as built:
        (db,) = (s for s in built.guard._sources if isinstance(s, PostgresSource))
        assert "db.connections_waiting" in db.sample()
        db.close()


def test_a_config_file_takes_the_password_from_the_environment(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dsn in the file, password_env in the environment: checked without the
    environment (``env=False``), connected with it."""
    table = {
        "calendar": {"preset": "none"},
        "sources": [
            {
                "type": "postgres",
                "dsn": postgres_server.dsn(password=None),
                "password_env": "WEDDING_DB_PASSWORD",
                "name": "wed",
            }
        ],
    }
    monkeypatch.delenv("WEDDING_DB_PASSWORD", raising=False)
    Config.from_dict(table, env=False)  # nothing read from the environment
    with pytest.raises(wg.ConfigError, match="WEDDING_DB_PASSWORD"):
        Config.from_dict(table)
    monkeypatch.setenv("WEDDING_DB_PASSWORD", APP_PASSWORD)
    with Config.from_dict(table).assemble(sinks=[]) as built:
        (db,) = (s for s in built.guard._sources if isinstance(s, PostgresSource))
        assert "wed.latency_s" in db.sample()
        assert APP_PASSWORD not in repr(db)
        db.close()


def test_a_driver_message_quoting_the_url_hides_the_encoded_password(
    sources: list[PostgresSource], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL carries its password percent-encoded: a message quoting the URL used to
    keep it (only the decoded form was replaced)."""
    import psycopg

    dsn = "postgresql://app:s3cr%40t%20pw@127.0.0.1:1/app"

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise psycopg.OperationalError(f"could not connect with {dsn} (password 's3cr@t pw')")

    monkeypatch.setattr(psycopg, "connect", refuse)
    db = source(sources, dsn, backoff=0.01)
    assert db.sample() == {"db.latency_s.error": 1.0}
    why = db.last_error or ""
    assert why.startswith("OperationalError: could not connect with postgresql://app:")
    for form in ("s3cr%40t", "s3cr@t", "%20pw"):
        assert form not in why
