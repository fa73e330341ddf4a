"""The control socket end to end: real Unix sockets on 127.0.0.1's filesystem cousin."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import wedguard as wg
from wedguard.runtime.control_socket import COMMANDS, ControlServer, send_command

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="Unix sockets")


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory (Unix socket paths are limited to 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="wg") as d:
        yield Path(d)


@pytest.fixture
def guard(sock_dir: Path) -> Iterator[wg.Guard]:
    g = wg.Guard(
        rate="50MB/s",
        calendar=None,
        sources=[],
        sinks=[],
        control_socket=sock_dir / "wg.sock",
    )
    yield g
    g.close()


def path_of(guard: wg.Guard) -> Path:
    server = guard._control
    assert isinstance(server, ControlServer)
    return server.path


def ask(guard: wg.Guard, line: str) -> str:
    return send_command(path_of(guard), line, timeout=5.0)


def test_socket_is_owner_only_and_removed_on_close(sock_dir: Path) -> None:
    path = sock_dir / "wg.sock"
    g = wg.Guard(rate="off", calendar=None, sources=[], sinks=[], control_socket=path)
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()
    g.close()
    assert not path.exists()


def test_status_text_and_json(guard: wg.Guard) -> None:
    text = ask(guard, "status")
    assert "state: running" in text
    assert "decision: OPEN/OK at 50 MB/s" in text
    assert "rate limit 50 MB/s" in text
    assert "children: 0" in text
    for line in ("json status", "status json"):
        data = json.loads(ask(guard, line))
        assert data["ok"] is True
        assert data["command"] == "status"
        assert data["decision"]["level"] == "OPEN"
        assert data["rates"]["configured"] == 50_000_000.0
        assert data["sessions"] == {"active": 0, "waiting": 0, "names": []}
        assert data["children"] == []
        assert data["reasons"] == ["rate limit 50 MB/s"]


def test_status_lists_sessions_and_children(guard: wg.Guard) -> None:
    code = "import time; time.sleep(30)"
    with guard.session("photos"), guard.popen([sys.executable, "-c", code], name="dump") as child:
        data = json.loads(ask(guard, "json status"))
        assert data["sessions"]["active"] == 2
        assert sorted(data["sessions"]["names"]) == ["dump", "photos"]
        assert [c["pid"] for c in data["children"]] == [child.pid]
        # The interpreter's start reads megabytes of modules (counted as I/O), which a
        # share of 25 MB/s may pause briefly; once asleep the child runs and stays running.
        deadline = time.monotonic() + 10.0
        while data["children"][0]["state"] != "running" and time.monotonic() < deadline:
            assert data["children"][0]["state"] == "paused (rate)"
            time.sleep(0.05)
            data = json.loads(ask(guard, "json status"))
        assert data["children"][0]["state"] == "running"
        assert any(r.startswith("child dump") for r in data["reasons"])
        assert f"dump (pid {child.pid}): running" in ask(guard, "status")
        child.abort("done")
        child.wait(10)


def test_status_names_a_protected_call_running_outside_a_session(guard: wg.Guard) -> None:
    """The call holds a slot without a session: status counts it and names it."""
    seen: list[dict[str, Any]] = []

    @guard.protect(cost=100, name="upload")
    def upload() -> None:
        seen.append(json.loads(ask(guard, "json status"))["sessions"])

    upload()
    assert seen == [{"active": 1, "waiting": 0, "names": ["upload"]}]
    assert json.loads(ask(guard, "json status"))["sessions"]["active"] == 0


def test_throttle_and_no_throttle(guard: wg.Guard) -> None:
    assert ask(guard, "throttle busy hour") == "ok: throttled (busy hour)"
    d = guard.decision()
    assert d.on_hold
    assert d.paused
    assert d.stop_reason == "busy hour"
    assert ask(guard, "no-throttle") == "ok: throttle lifted"
    assert not guard.decision().paused


def test_no_throttle_keeps_a_stop(guard: wg.Guard) -> None:
    ask(guard, "throttle")
    ask(guard, "stop incident 42")
    ask(guard, "no-throttle")
    d = guard.decision()
    assert d.stopped
    assert not d.on_hold
    assert d.stop_reason == "incident 42"


def test_stop_and_resume(guard: wg.Guard) -> None:
    assert ask(guard, "stop incident 42") == "ok: stopped (incident 42)"
    assert guard.stopped
    with pytest.raises(wg.EmergencyStop, match="incident 42"), guard.session() as s:
        s.throttle(1)
    assert "state: stopped (incident 42)" in ask(guard, "status")
    assert ask(guard, "resume") == "ok: resumed"
    assert not guard.stopped
    assert ask(guard, "stop") == "ok: stopped"
    assert guard.decision().stop_reason == "stopped from the control socket"


def test_rate_is_applied_live(guard: wg.Guard) -> None:
    assert ask(guard, "rate=5MB/s") == "ok: rate 5 MB/s"
    assert guard.rate == 5_000_000.0
    assert guard.decision().rate == 5_000_000.0
    assert ask(guard, "rate=10Mbit/s") == "ok: rate 1.25 MB/s"
    assert ask(guard, "RATE = off").startswith("ok: rate")
    assert guard.rate == float("inf")
    data = json.loads(ask(guard, "json rate=2MB/s"))
    assert data == {"command": "rate", "ok": True, "message": "rate 2 MB/s", "rate": 2e6}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("rate=fast", "'fast'"),
        ("rate=0", "0"),
        ("rate=", "rate"),
        ("rate=-5MB/s", "-5MB/s"),
    ],
)
def test_bad_rate_gets_an_error_naming_the_value(guard: wg.Guard, line: str, expected: str) -> None:
    reply = ask(guard, line)
    assert reply.startswith("error: rate:")
    assert expected in reply
    assert guard.rate == 50_000_000.0


def test_unknown_and_empty_commands_get_an_error_line(guard: wg.Guard) -> None:
    assert ask(guard, "selfdestruct now") == ("error: unknown command 'selfdestruct now'; try help")
    assert ask(guard, "") == "error: empty request; try help"
    data = json.loads(ask(guard, "json bogus"))
    assert data["ok"] is False
    assert "unknown command" in data["error"]
    assert not guard.stopped


def test_help_lists_every_command(guard: wg.Guard) -> None:
    reply = ask(guard, "help")
    for command in COMMANDS:
        assert command in reply


def test_panic_stops_and_ends_children(guard: wg.Guard) -> None:
    code = "import time; time.sleep(30)"
    child = guard.popen([sys.executable, "-c", code], kill_grace=1.0)
    try:
        reply = ask(guard, "panic disk full")
        assert reply == "ok: stopped, 1 child process(es) ended"
        assert guard.stopped
        assert guard.decision().stop_reason == "panic: disk full"
        assert child.wait(10) != 0
        assert child.report().aborted == "panic: disk full"
    finally:
        child.close()


def test_several_requests_on_one_connection(guard: wg.Guard) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(os.fspath(path_of(guard)))
        s.sendall(b"rate=1MB/s\nstop\nresume\n")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert data.decode().splitlines() == ["ok: rate 1 MB/s", "ok: stopped", "ok: resumed"]


def read_all(s: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def test_oversized_request_is_refused_and_the_connection_closed(guard: wg.Guard) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(os.fspath(path_of(guard)))
        # no newline: the server must not wait for one
        with contextlib.suppress(BrokenPipeError):
            s.sendall(b"stop " + b"x" * 10_000)
        reply = read_all(s)
    assert reply == b"error: request too long (at most 4096 bytes)\n"
    assert not guard.stopped
    # a long line with its newline is refused too
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(os.fspath(path_of(guard)))
        s.sendall(b"stop " + b"y" * 5000 + b"\n")
        reply = read_all(s)
    assert reply.startswith(b"error: request too long")
    assert not guard.stopped
    assert ask(guard, "status").startswith("state: running")


def test_a_client_that_sends_nothing_does_not_hold_the_guard(sock_dir: Path) -> None:
    g = wg.Guard(rate="off", calendar=None, sources=[], sinks=[])
    server = ControlServer(g, sock_dir / "c.sock", client_timeout=0.5)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
            idle.settimeout(5)
            idle.connect(os.fspath(server.path))
            # others are served while it hangs, and the guard works
            assert send_command(server.path, "stop", timeout=2) == "ok: stopped"
            assert send_command(server.path, "resume", timeout=2) == "ok: resumed"
            with g.session() as s:
                s.throttle(10)
            # and it is cut off
            assert read_all(idle) == b"error: timed out waiting for the client\n"
    finally:
        server.close()
        g.close()


def test_too_many_clients_are_refused(sock_dir: Path) -> None:
    g = wg.Guard(rate="off", calendar=None, sources=[], sinks=[])
    server = ControlServer(g, sock_dir / "c.sock", max_clients=1, client_timeout=5)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as first:
            first.connect(os.fspath(server.path))
            time.sleep(0.1)
            assert send_command(server.path, "status", timeout=2) == (
                "error: too many clients; try again"
            )
    finally:
        server.close()


def test_stale_socket_is_replaced_and_a_live_one_refused(sock_dir: Path) -> None:
    path = sock_dir / "wg.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(os.fspath(path))
    stale.close()  # the file stays, nobody listens
    g = wg.Guard(rate="off", calendar=None, sources=[], sinks=[], control_socket=path)
    try:
        assert send_command(path, "resume") == "ok: resumed"
        with pytest.raises(wg.ConfigError, match="no running guard listens"):
            ControlServer(g, path)
    finally:
        g.close()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda d: d / "missing" / "wg.sock", "existing directory"),
        (lambda d: d / ("x" * 120), "at most 107 bytes"),
        (lambda d: d / "file", "not a file"),
        (lambda d: "/", "naming a file, not a directory"),
        (lambda d: f"{d}/", "naming a file, not a directory"),
        (lambda d: d / "..", "naming a file, not a directory"),
        (lambda d: "", "filesystem path"),
        (lambda d: 42, "filesystem path"),
    ],
)
def test_bad_paths_raise_config_error(sock_dir: Path, make: Any, match: str) -> None:
    (sock_dir / "file").write_text("not a socket")
    g = wg.Guard(rate="off", calendar=None, sources=[], sinks=[])
    with pytest.raises(wg.ConfigError, match=match) as info:
        ControlServer(g, make(sock_dir))
    assert info.value.field == "control_socket"
    assert (sock_dir / "file").read_text() == "not a socket"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mode": 0}, "mode"),
        ({"mode": 0o1777}, "mode"),
        ({"max_request": 10}, "max_request"),
        ({"client_timeout": 0}, "client_timeout"),
        ({"client_timeout": "soon"}, "client_timeout"),
        ({"max_clients": 0}, "max_clients"),
    ],
)
def test_bad_options_raise_config_error(sock_dir: Path, kwargs: Any, field: str) -> None:
    g = wg.Guard(rate="off", calendar=None, sources=[], sinks=[])
    with pytest.raises(wg.ConfigError) as info:
        ControlServer(g, sock_dir / "wg.sock", **kwargs)
    assert info.value.field == field
    assert not (sock_dir / "wg.sock").exists()


def test_send_command_errors(sock_dir: Path) -> None:
    with pytest.raises(wg.ConfigError, match="line"):
        send_command(sock_dir / "wg.sock", "stop\nresume")
    with pytest.raises(wg.ConfigError, match="timeout"):
        send_command(sock_dir / "wg.sock", "status", timeout=0)
    with pytest.raises(FileNotFoundError):
        send_command(sock_dir / "wg.sock", "status")


def test_send_command_times_out_on_a_silent_server(sock_dir: Path) -> None:
    path = sock_dir / "silent.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(os.fspath(path))
        silent.listen(1)
        with pytest.raises(TimeoutError):
            send_command(path, "status", timeout=0.3)


def test_another_user_cannot_connect(sock_dir: Path) -> None:
    """Mode 0600: a process running as another user is refused by the filesystem."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to another user")
    g = wg.Guard(rate="off", calendar=None, sources=[], sinks=[])
    os.chmod(sock_dir, 0o755)
    server = ControlServer(g, sock_dir / "wg.sock")
    code = (
        "import os, socket, sys; os.setgid(65534); os.setuid(65534); "
        "s = socket.socket(socket.AF_UNIX); "
        'exec(\'try:\\n s.connect(sys.argv[1]); print("connected")\\n'
        'except PermissionError: print("denied")\')'
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, os.fspath(server.path)],
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert done.stdout.strip() == "denied", done.stderr
    finally:
        server.close()


def test_another_user_is_refused_even_with_a_loose_mode(sock_dir: Path) -> None:
    """Owner only: the peer's user id is checked as well (SO_PEERCRED on Linux)."""
    if os.geteuid() != 0 or not hasattr(socket, "SO_PEERCRED"):
        pytest.skip("needs root on Linux to connect as another user")
    g = wg.Guard(rate="off", calendar=None, sources=[], sinks=[])
    os.chmod(sock_dir, 0o755)
    server = ControlServer(g, sock_dir / "wg.sock", mode=0o666)
    code = (
        "import os, socket, sys; os.setgid(65534); os.setuid(65534); "
        "s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1]); "
        "s.sendall(b'stop\\n'); print(s.recv(100).decode().strip())"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, os.fspath(server.path)],
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert done.stdout.strip() == "error: permission denied", done.stderr
        assert not g.stopped
    finally:
        server.close()
