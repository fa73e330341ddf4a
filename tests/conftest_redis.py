"""A real redis-server for the distributed tests, started on a free loopback port.

Import the fixtures into a test module (``from conftest_redis import redis_server``).
When ``redis-server`` is not installed the tests that use them are skipped with a
clear reason, except when ``WEDGUARD_REQUIRE_REDIS=1`` (set by ``.ci/run``), where a
missing server fails them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REQUIRE = os.environ.get("WEDGUARD_REQUIRE_REDIS") == "1"


def _missing(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"{reason} (WEDGUARD_REQUIRE_REDIS=1 makes this a failure)", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process that a test may stop and start again on the same port."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 5.0) -> None:
        """Start the server and wait until it answers PING."""
        import redis

        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=0.2, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"redis-server did not start on port {self.port}"
                        ) from None
                    time.sleep(0.01)
        finally:
            client.close()

    def stop(self) -> None:
        """Kill the server at once (as a crash would) and wait for it to exit."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait(timeout=5)
            self.proc = None

    def client(self, **kwargs: object) -> object:
        import redis

        kwargs.setdefault("socket_timeout", 1.0)
        kwargs.setdefault("socket_connect_timeout", 1.0)
        return redis.Redis(port=self.port, **kwargs)  # type: ignore[arg-type]


def _server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    try:
        import redis  # noqa: F401
    except ImportError:
        _missing("redis-py is not installed (pip install 'wedguard[redis]')")
    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if binary is None:
        _missing("redis-server is not installed (Debian: apt-get install redis-server)")
        return  # pragma: no cover - _missing raises
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server shared by the tests of one module (use distinct keys)."""
    yield from _server(tmp_path_factory)


@pytest.fixture
def own_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which the test may stop and restart."""
    yield from _server(tmp_path_factory)


_counter = 0


@pytest.fixture
def key(request: pytest.FixtureRequest) -> str:
    """A Redis key no other test uses."""
    global _counter
    _counter += 1
    return f"test:{request.node.name}:{_counter}"
