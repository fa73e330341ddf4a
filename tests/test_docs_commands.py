"""The command lines of the newcomer's pages run as the pages show them.

``test_docs_snippets`` runs every Python and TOML block. This file runs the shell
blocks a newcomer meets first (the README's command line, the tutorial's and the
command-line page's ``wedguard run``, ``wedguard throttle``, the calendar how-to's
check, the alerts how-to's check), in a shell, with the page's own configuration file as ``wedguard.toml``, against
local stand-ins: the test PostgreSQL for ``pg_dump``, an HTTP health endpoint for the
probe, a webhook for Slack, an S3 server for ``aws s3 cp``, Redis for a fleet. Every command must succeed; the output a block shows
(except process ids) must be what the command prints. A guard runs in the background
(``wedguard run -- sleep``) so that the commands that act on "the running guards"
have one, as a reader's would.

The other shell blocks (benchmarks, the fault campaigns, Redis fleets, S3 targets,
sockets spoken to with ``socat``) are not run here; ``NOT_RUN`` names them and a test
keeps that list exact, so a new block is either run or listed on purpose.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import docs_world
from conftest_postgres import APP_PASSWORD, PostgresServer, postgres_server  # noqa: F401
from conftest_redis import RedisServer, redis_server  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
SHELL = ("sh", "console")
EXAMPLE = "docs/wedguard.example.toml"

#: the blocks run (by page and first line), and the configuration file each runs with:
#: the page's first TOML block, or the example file
RUN: dict[str, str] = {
    "README.md: wedguard config check wedguard.toml": "README.md",
    "docs/tutorial.md: wedguard run --config wedguard.toml -- pg_dump": EXAMPLE,
    "docs/cli.md: wedguard run --config wedguard.toml -- pg_dump": EXAMPLE,
    "docs/howto-postgres.md: wedguard run --cpus 1 --config wedguard.toml": EXAMPLE,
    "docs/cli.md: wedguard throttle 5MB/s": EXAMPLE,
    "docs/cli.md: wedguard calendar --config wedguard.toml --at": EXAMPLE,
    "docs/howto-calendar.md: wedguard calendar --config wedguard.toml --at": (
        "docs/howto-calendar.md"
    ),
    "docs/howto-alerts.md: SLACK_WEBHOOK_URL=https://hooks": "docs/howto-alerts.md",
    "docs/cli.md: pg_dump -Fc app | wedguard pipe": EXAMPLE,
    "docs/processes.md: pg_dump -Fc app | wedguard pipe": EXAMPLE,
    "docs/howto-postgres.md: pg_dump -Fc app | wedguard pipe": EXAMPLE,
    "docs/howto-redis.md: wedguard stop --config fleet.toml": "docs/howto-redis.md",
}

#: shell blocks not run here (by page and first line), and why
NOT_RUN: dict[str, str] = {
    "README.md: python -m pip install . && wedguard demo": "installs the package, runs nox",
    "docs/tutorial.md: python -m pip install .": "installs the package",
    "docs/benchmark-impact.md: nox -s bench_impact": "a benchmark of half an hour",
    "docs/benchmark-impact.md: PYTHONPATH=src python benchmarks/impact/pulsed.py          # about 20 minutes": "a benchmark of twenty minutes",
    "docs/calendar.md: wedguard config check wedguard.toml": "its output is elided",
    "docs/configuration.md: wedguard config check wedguard.toml": "the file is not shown",
    "docs/configuration.md: SLACK_WEBHOOK_URL=https://hooks": "its output is elided",
    "docs/howto-postgres.md: export WEDGUARD_DB_DSN": "the how-to's monitoring role",
    "docs/howto-s3-target.md: export AWS_ENDPOINT_URL": "an S3 endpoint (see test_s3_cli)",
    "docs/processes.md: echo status | socat": "needs socat and nc",
    "docs/reliability.md: PYTHONPATH=src python benchmarks/guard_death.py": "minutes of faults",
    "docs/reliability.md: PYTHONPATH=src python benchmarks/alerts_durability.py": "a benchmark",
    "docs/reliability.md: PYTHONPATH=src python -m pytest tests/test_history_faults": "tests",
    "docs/reliability.md: PYTHONPATH=src python -m pytest tests/test_copy_loop": "tests",
    "docs/reliability.md: pytest tests/test_fuzz_config.py": "tests",
}


def key(page: str, code: str) -> str:
    """The name a block goes by here: its page and the start of its first line."""
    first = code.splitlines()[0].removeprefix("$ ")
    for name in [*RUN, *NOT_RUN]:
        prefix = name.split(": ", 1)[1]
        if name.startswith(page + ": ") and first.startswith(prefix):
            return name
    return f"{page}: {first}"


def shell_blocks() -> dict[str, tuple[str, str]]:
    """``page: first line`` -> (language, code) of every sh and console block of the README and
    the docs."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = {}
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            if m.group(1) in SHELL:
                found[key(page.relative_to(ROOT).as_posix(), m.group(2))] = (m.group(1), m.group(2))
    return found


def configuration(where: str) -> str:
    """The example file, or the first TOML block of the page ``where``."""
    text = (ROOT / where).read_text(encoding="utf-8")
    if where.endswith(".toml"):
        return text
    return next(m.group(2) for m in FENCE.finditer(text) if m.group(1) == "toml")


def steps(code: str, console: bool) -> list[tuple[str, list[str]]]:
    """(command, the output lines shown after it) of a block."""
    if not console:
        return [(line, []) for line in code.splitlines() if line.strip()]
    out: list[tuple[str, list[str]]] = []
    for line in code.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif line.strip():
            out[-1][1].append(line)
    return out


def local(command: str, tmp: Path) -> str:
    """The command with the reader's paths moved under ``tmp``."""
    for path in ("/srv/", "/mnt/", "/backup/"):
        command = command.replace(f" {path}", f" {tmp}{path}")
    return command


#: the blocks that act on "the running guards"
ON_A_RUNNING_GUARD = (
    "README.md: wedguard config check wedguard.toml",
    "docs/cli.md: wedguard throttle 5MB/s",
)


@contextlib.contextmanager
def running_guard(tmp: Path, env: dict[str, Any], needed: bool) -> Iterator[None]:
    """A guard at work in the background (``wedguard run -- sleep``), when ``needed``."""
    if not needed:
        yield
        return
    running = subprocess.Popen(
        [sys.executable, "-m", "wedguard", "run", "--config", "wedguard.toml", "--", "sleep", "60"],
        cwd=tmp,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not list((tmp / "rundir").rglob("*.sock")):
            assert running.poll() is None, running.communicate()[1]
            assert time.monotonic() < deadline, "the background guard did not start"
            time.sleep(0.05)
        yield
    finally:
        running.send_signal(signal.SIGTERM)
        try:
            running.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            running.kill()
            running.communicate()


def test_every_shell_block_is_run_or_listed() -> None:
    blocks = set(shell_blocks())
    assert set(RUN) <= blocks
    assert blocks - set(RUN) == set(NOT_RUN)


@pytest.fixture(scope="module")
def health() -> Iterator[str]:
    with docs_world.http_server() as url:
        yield url


@pytest.fixture(scope="module")
def s3() -> Iterator[tuple[str, Any]]:
    """An S3 server with the pages' bucket ``backups``: its endpoint and a client."""
    with docs_world.s3_server() as endpoint:
        client = docs_world.s3_client(endpoint)
        client.create_bucket(Bucket="backups")
        yield endpoint, client


@pytest.mark.timeout(180)
@pytest.mark.parametrize("where", sorted(RUN))
def test_the_pages_commands_run_as_shown(
    where: str,
    health: str,
    s3: tuple[str, Any],
    redis_server: RedisServer,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    postgres_server: PostgresServer,  # noqa: F811 - the fixture imported above
) -> None:
    with postgres_server.admin("postgres") as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'app'").fetchone():
            conn.execute("CREATE DATABASE app OWNER app")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "wedguard"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m wedguard "$@"\n')
    shim.chmod(0o755)
    env: dict[str, Any] = {k: v for k, v in os.environ.items() if not k.startswith("WEDGUARD_")}
    env.pop("PYTHONWARNINGS", None)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env['PATH']}",
        PYTHONPATH=f"{SRC}{os.pathsep}{env.get('PYTHONPATH', '')}",
        WEDGUARD_RUN_DIR=str(tmp_path / "rundir"),
        PGHOST="127.0.0.1",
        PGPORT=str(postgres_server.port),
        PGUSER="app",
        PGPASSWORD=APP_PASSWORD,
        SLACK_WEBHOOK_URL=health + "/slack",
        AWS_ENDPOINT_URL=s3[0],
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        WEDGUARD_REDIS_URL=f"redis://127.0.0.1:{redis_server.port}/0",
    )
    env.pop("XDG_RUNTIME_DIR", None)
    toml = docs_world.rewrite(
        configuration(RUN[where]), tmp_path, http=health, redis_url="", redis_port=0
    )
    for name in ("wedguard.toml", "fleet.toml"):  # the names the pages give the file
        (tmp_path / name).write_text(toml)
    docs_world.files(tmp_path / "srv" / "photos")
    for d in ("backup", "mnt/backup"):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    with running_guard(tmp_path, env, needed=where in ON_A_RUNNING_GUARD):
        language, code = shell_blocks()[where]
        for command, shown in steps(code, console=language == "console"):
            done = subprocess.run(
                ["bash", "-c", "set -e -o pipefail; " + local(command, tmp_path)],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, f"{where}: {command}\n{done.stdout}{done.stderr}"
            got = (done.stdout + done.stderr).splitlines()
            for want in (line for line in shown if line != "..."):  # "...": lines left out
                pattern = re.escape(want).replace("4242", r"\d+")
                assert any(re.fullmatch(pattern, line) for line in got), (want, got)
            for key in re.findall(r"s3://backups/(\S+)", command):  # the upload arrived
                s3[1].head_object(Bucket="backups", Key=key)
                s3[1].delete_object(Bucket="backups", Key=key)
