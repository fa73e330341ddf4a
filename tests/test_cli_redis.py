"""Many hosts on one Redis from the configuration file and the command line:
``[redis]`` gives every guard the fleet's budget, slots and stop flag; ``wedguard
stop``/``resume``/``status`` raise, lower and show the fleet's stop flag."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest_redis import RedisServer, redis_server
from wedguard.config import load_config

__all__ = ["redis_server"]  # the fixture, used below

SRC = str(Path(__file__).resolve().parent.parent / "src")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("WEDGUARD_")}
    e["PYTHONPATH"] = SRC + os.pathsep + e.get("PYTHONPATH", "")
    e["WEDGUARD_RUN_DIR"] = str(tmp_path / "run")
    return e


def wedguard(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wedguard", *args],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def fleet_config(tmp_path: Path, server: RedisServer, prefix: str) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(
        'sources = []\n[calendar]\npreset = "none"\n[guard]\nrate = "20MB/s"\n'
        f'[redis]\nurl = "{server.url}"\nprefix = "{prefix}"\nname = "backup"\n'
        "fallback_share = 0.5\n"
    )
    return path


def test_the_file_gives_the_guard_a_coordinator(redis_server: RedisServer, tmp_path: Path) -> None:
    config = load_config(fleet_config(tmp_path, redis_server, "cfg-test"))
    assert config.redis is not None
    assert config.redis["prefix"] == "cfg-test"
    assert '[redis]\nurl = "redis://127.0.0.1:' in config.render()
    with config.assemble(sinks=[]) as built:
        guard = built.guard
        assert guard.coordinator is not None
        assert guard.name == "backup"
        with guard.session("photos") as s:
            s.throttle(1000)
    client = redis_server.client()
    assert any(k.startswith(b"cfg-test:bucket:backup") for k in client.keys("cfg-test:*"))


def test_stop_resume_and_status_reach_the_fleet(
    redis_server: RedisServer, tmp_path: Path, env: dict[str, str]
) -> None:
    config = fleet_config(tmp_path, redis_server, "cli-fleet")
    src = tmp_path / "data.bin"
    src.write_bytes(os.urandom(50_000))
    stopped = wedguard(env, "stop", "-c", str(config), "--reason", "database failover")
    assert stopped.returncode == 0, stopped.stderr
    assert "fleet stop flag cli-fleet:stop raised" in stopped.stdout
    status = wedguard(env, "status", "-c", str(config))
    assert "fleet stop flag cli-fleet:stop: raised (database failover)" in status.stdout
    blocked = wedguard(env, "copy", str(src), str(tmp_path / "out.bin"), "-c", str(config))
    assert blocked.returncode == 3, blocked.stderr
    assert "fleet stop: database failover" in blocked.stderr
    # the stop file of this host is there too; lift both
    resumed = wedguard(env, "resume", "-c", str(config))
    assert resumed.returncode == 0, resumed.stderr
    assert "fleet stop flag cli-fleet:stop lowered" in resumed.stdout
    assert "lowered" in wedguard(env, "status", "-c", str(config)).stdout
    done = wedguard(env, "copy", str(src), str(tmp_path / "out.bin"), "-c", str(config), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["copied"] == 1
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()


def test_an_unreachable_redis_is_one_line_and_exit_1(tmp_path: Path, env: dict[str, str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "gone.toml"
    config.write_text(f'[redis]\nurl = "redis://127.0.0.1:{port}/0"\ntimeout = 0.2\n')
    out = wedguard(env, "stop", "-c", str(config), "--reason", "x")
    assert out.returncode == 1
    assert "Redis could not be reached" in out.stderr
