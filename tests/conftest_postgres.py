"""A real PostgreSQL server for the PostgreSQL tests, one per test session.

Import the fixture into a test module (``from conftest_postgres import postgres_server``).
The server is a fresh cluster (``initdb``) in a temporary directory, listening on a free
loopback port and on a unix socket in that directory. PostgreSQL refuses to run as root,
so when the tests run as root the cluster belongs to the ``postgres`` system user and
its programs run as that user.

When the PostgreSQL server programs are not installed the tests that use the fixture
are skipped with a clear reason, except when ``WEDGUARD_REQUIRE_POSTGRES=1`` (set by
``.ci/run``), where a missing server fails them.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest_redis import _free_port

REQUIRE = os.environ.get("WEDGUARD_REQUIRE_POSTGRES") == "1"
PROGRAMS = ("initdb", "pg_ctl", "postgres")

APP_USER = "app"
APP_PASSWORD = "wed-s3cret-pw"
DATABASE = "wedguard"


def _missing(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"{reason} (WEDGUARD_REQUIRE_POSTGRES=1 makes this a failure)", pytrace=False)
    pytest.skip(reason)


def _has_programs(bindir: str) -> bool:
    return all(os.access(os.path.join(bindir, p), os.X_OK) for p in PROGRAMS)


def find_bindir() -> str | None:
    """The directory holding initdb, pg_ctl and postgres: pg_config's, then Debian's
    versioned directories (newest first), then PATH."""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(out.stdout.strip())

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return 0.0

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(os.path.dirname(os.path.realpath(initdb)))
    return next((c for c in candidates if c and _has_programs(c)), None)


class PostgresServer:
    """One PostgreSQL cluster that a test may stop and start again on the same port.

    Roles: the superuser ``postgres`` (trusted on the unix socket) and ``app`` (password
    ``APP_PASSWORD``, member of ``pg_monitor``), who owns the database ``wedguard``.
    """

    def __init__(self, bindir: str, directory: Path, run_as: str | None) -> None:
        self.bindir = bindir
        self.directory = directory
        self.data = directory / "data"
        self.sockets = directory / "sockets"
        self.log = directory / "server.log"
        self.port = _free_port()
        self.run_as = run_as
        self.statements = False

    def _run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        if self.run_as is not None:
            kwargs = {"user": self.run_as, "group": self.run_as, "extra_groups": []}
        return subprocess.run(
            [os.path.join(self.bindir, argv[0]), *argv[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            **kwargs,
        )

    def init(self) -> None:
        """initdb and the test server's settings."""
        self.sockets.mkdir()
        if self.run_as is not None:
            entry = pwd.getpwnam(self.run_as)
            for path in (self.directory, self.sockets):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        )
        sharedir = Path(self.bindir).parent / "share"
        self.statements = _statements_shipped(self.bindir, sharedir)
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.sockets}'",
            "max_connections": "20",
            "shared_buffers": "16MB",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "deadlock_timeout": "'100ms'",
            "log_min_messages": "warning",
        }
        if self.statements:
            settings["shared_preload_libraries"] = "'pg_stat_statements'"
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as f:
            f.writelines(f"{k} = {v}\n" for k, v in settings.items())

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30", "start")

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (``immediate``: at once, as a crash would) and wait for it."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def running(self) -> bool:
        try:
            self._run("pg_ctl", "-D", str(self.data), "status")
        except subprocess.CalledProcessError:
            return False
        return True

    def dsn(self, *, user: str = APP_USER, password: str | None = APP_PASSWORD) -> str:
        """A URL DSN over TCP (password authentication) to the test database."""
        auth = user if password is None else f"{user}:{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{DATABASE}"

    def admin(self, dbname: str = DATABASE) -> Any:
        """A superuser connection (autocommit) over the unix socket."""
        import psycopg

        return psycopg.connect(
            host=str(self.sockets),
            port=self.port,
            user="postgres",
            dbname=dbname,
            autocommit=True,
            connect_timeout=5,
        )

    def app(self, **kwargs: Any) -> Any:
        """A connection as ``app`` (autocommit unless told) over TCP."""
        import psycopg

        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.dsn(), connect_timeout=5, **kwargs)

    def setup(self) -> None:
        with self.admin("postgres") as conn:
            conn.execute(f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}'")
            conn.execute(f"GRANT pg_monitor TO {APP_USER}")
            conn.execute(f"CREATE DATABASE {DATABASE} OWNER {APP_USER}")
        if self.statements:
            with self.admin() as conn:
                conn.execute("CREATE EXTENSION pg_stat_statements")


def _statements_shipped(bindir: str, sharedir: Path) -> bool:
    """Whether pg_stat_statements (contrib) is installed next to this server."""
    dirs = [sharedir / "extension"]
    pg_config = os.path.join(bindir, "pg_config")
    if os.access(pg_config, os.X_OK):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--sharedir"], capture_output=True, text=True, timeout=10, check=True
            )
            dirs.insert(0, Path(out.stdout.strip()) / "extension")
    return any((d / "pg_stat_statements.control").exists() for d in dirs)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server shared by the whole test session (use distinct table names;
    a test that stops it starts it again)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing("psycopg is not installed (pip install 'wedguard[postgres]')")
    bindir = find_bindir()
    if bindir is None:
        _missing("the PostgreSQL server is not installed (Debian: apt-get install postgresql)")
        return  # pragma: no cover - _missing raises
    run_as: str | None = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _missing("running as root and there is no 'postgres' user to run the server as")
        run_as = "postgres"
    # not under pytest's per-user temporary root (mode 0700): the server's user must reach it
    directory = Path(tempfile.mkdtemp(prefix="wedguard-pg-"))
    server = PostgresServer(bindir, directory, run_as)
    try:
        server.init()
        server.start()
        try:
            server.setup()
            yield server
        finally:
            if server.running():
                server.stop("fast")
    except subprocess.CalledProcessError as exc:
        log = server.log.read_text(errors="replace") if server.log.exists() else ""
        raise RuntimeError(f"{exc.cmd[0]} failed: {exc.stderr}\n{log}") from None
    finally:
        shutil.rmtree(directory, ignore_errors=True)
