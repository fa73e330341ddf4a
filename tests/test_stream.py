"""`guard.stream(argv, dst)`: a command's output through the guard, with real children.

Each failure a hand-written `Popen` loop gets wrong is tried: an emergency stop, a
destination that fails (`/dev/full`), a command that fails, Ctrl-C; the command is
never left running, and a path destination never holds a partial dump under its name.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import wedguard as wg
from page_cache import SyncSpy, pages_of, resident_pages
from wedguard.io.stream import CommandFailed

# A producer writing N bytes of a known pattern, in 64 KiB pieces; it records its pid.
PRODUCER = """
import os, sys
n, pidfile = int(sys.argv[1]), sys.argv[2]
open(pidfile, "w").write(str(os.getpid()))
block = bytes(range(256)) * 256
while n > 0:
    k = min(n, len(block))
    sys.stdout.buffer.write(block[:k])
    n -= k
sys.stdout.flush()
"""


def expected(n: int) -> bytes:
    block = bytes(range(256)) * 256
    return (block * (n // len(block) + 1))[:n]


def guard(rate: str = "off") -> wg.Guard:
    return wg.Guard(rate=rate, calendar=None, sources=[], sinks=[])


def gone(pidfile: Path, within: float = 10.0) -> bool:
    """The producer whose pid is in ``pidfile`` has exited (and was reaped)."""
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except FileNotFoundError:
            return True
        if state == "Z":
            time.sleep(0.02)
            continue
        time.sleep(0.02)
    return False


def producer(n: int, pidfile: Path) -> list[str]:
    return [sys.executable, "-c", PRODUCER, str(n), str(pidfile)]


def test_a_dump_arrives_whole_and_only_then_under_its_name(tmp_path: Path) -> None:
    out = tmp_path / "app.dump"
    written = guard().stream(producer(3_000_000, tmp_path / "pid"), out)
    assert written == 3_000_000
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(expected(3_000_000)).digest()
    assert not (tmp_path / "app.dump.partial").exists()


def test_a_dump_reaches_the_disk_as_it_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default the file is written back a window at a time and leaves the page
    cache (a dirty page cannot be dropped); ``writeback=None`` leaves it to the kernel."""
    n = 16 << 20
    windowed, plain = tmp_path / "windowed.dump", tmp_path / "plain.dump"
    spy = SyncSpy(monkeypatch)
    assert guard().stream(producer(n, tmp_path / "pid"), windowed) == n
    # written back while it was written, 1 MiB at a time, not all at its end
    assert spy.starts[:3] == [(0, 1 << 20), (1 << 20, 1 << 20), (2 << 20, 1 << 20)]
    assert len(spy.starts) >= 15
    assert guard().stream(producer(n, tmp_path / "pid"), plain, writeback=None) == n
    assert resident_pages(windowed) < pages_of(n) // 4  # before reading them back
    assert resident_pages(plain) > pages_of(n) // 2
    assert windowed.read_bytes() == plain.read_bytes() == expected(n)
    small = tmp_path / "small.dump"  # a window of 64 KiB: the same, in smaller steps
    assert guard().stream(producer(n, tmp_path / "pid"), small, writeback="64KiB") == n
    assert resident_pages(small) < pages_of(n) // 4


def test_an_emergency_stop_ends_the_command_and_says_stopped(tmp_path: Path) -> None:
    """At 1 MB/s a 50 MB dump takes long; a stop mid-way raises EmergencyStop (not
    'the dump failed'), ends the producer and leaves no file under the dump's name."""
    g = guard("1MB/s")
    out = tmp_path / "app.dump"
    threading.Timer(0.5, g.stop, args=("incident 42",)).start()
    with pytest.raises(wg.EmergencyStop, match="incident 42"):
        g.stream(producer(50_000_000, tmp_path / "pid"), out)
    assert gone(tmp_path / "pid")
    assert not out.exists()
    assert not (tmp_path / "app.dump.partial").exists()


def test_a_failing_destination_ends_the_command_instead_of_hanging(tmp_path: Path) -> None:
    """/dev/full refuses every write: the error surfaces at once and the producer,
    which would block forever on a full pipe, is ended."""
    started = time.monotonic()
    with open("/dev/full", "wb") as full, pytest.raises(OSError) as info:
        guard().stream(producer(50_000_000, tmp_path / "pid"), full)
    assert info.value.errno == 28  # ENOSPC
    assert time.monotonic() - started < 15
    assert gone(tmp_path / "pid")


def test_a_failing_command_says_why_and_leaves_no_dump(tmp_path: Path) -> None:
    script = "import sys; sys.stdout.write('half'); sys.stderr.write('pg_dump: error: no such database\\n'); sys.exit(1)"
    out = tmp_path / "app.dump"
    with pytest.raises(CommandFailed) as info:
        guard().stream([sys.executable, "-c", script], out)
    assert info.value.returncode == 1
    assert "no such database" in str(info.value)
    assert isinstance(info.value, subprocess.CalledProcessError)
    assert not out.exists()
    assert not (tmp_path / "app.dump.partial").exists()


def test_an_existing_dump_is_kept_when_the_new_one_fails(tmp_path: Path) -> None:
    out = tmp_path / "app.dump"
    out.write_bytes(b"yesterday's dump")
    with pytest.raises(CommandFailed):
        guard().stream([sys.executable, "-c", "import sys; sys.exit(3)"], out)
    assert out.read_bytes() == b"yesterday's dump"


def test_the_copy_is_throttled_by_the_guard(tmp_path: Path) -> None:
    g = wg.Guard(rate="2MB/s", calendar=None, sources=[], sinks=[])
    started = time.monotonic()
    g.stream(producer(2_000_000, tmp_path / "pid"), tmp_path / "out")
    assert time.monotonic() - started >= 0.7  # 2 MB at 2 MB/s after a 0.4 MB burst


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"argv": "pg_dump app"}, "argv"),
        ({"argv": []}, "argv"),
        ({"argv": ["pg_dump", "a\0b"]}, "argv"),
        ({"dst": "/nonexistent/dir/app.dump"}, "dst"),
        ({"dst": 42}, "dst"),
        ({"grace": -1}, "grace"),
        ({"writeback": 100}, "writeback"),
        ({"writeback": "soon"}, "writeback"),
    ],
)
def test_bad_arguments_are_config_errors(
    kwargs: dict[str, Any], field: str, tmp_path: Path
) -> None:
    args: dict[str, Any] = {"argv": ["true"], "dst": tmp_path / "x", **kwargs}
    with pytest.raises(wg.ConfigError) as info:
        guard().stream(args.pop("argv"), args.pop("dst"), **args)
    assert info.value.field == field


def test_interrupting_the_copy_ends_the_command(tmp_path: Path) -> None:
    """A KeyboardInterrupt (Ctrl-C) in the middle of the copy ends the producer too."""
    g = guard("1MB/s")

    class Interrupting:
        def __init__(self) -> None:
            self.calls = 0

        def write(self, data: Any) -> int:
            self.calls += 1
            if self.calls == 3:
                raise KeyboardInterrupt
            return memoryview(data).nbytes

    with pytest.raises(KeyboardInterrupt):
        g.stream(producer(50_000_000, tmp_path / "pid"), Interrupting())
    assert gone(tmp_path / "pid")
    assert os.path.exists(tmp_path / "pid")


def test_a_failed_command_keeps_the_password_in_its_argv_to_itself(tmp_path: Path) -> None:
    """The error's repr showed the command line as given, a DSN's password included,
    and its message the command's last stderr line as written."""
    dsn = "postgresql://backup:hunter2@127.0.0.1/app"
    script = f"import sys; sys.stderr.write('invalid connection {dsn}\\n'); sys.exit(2)"
    with pytest.raises(CommandFailed) as info:
        guard().stream([sys.executable, "-c", script, dsn], tmp_path / "app.dump")
    assert info.value.cmd[-1] == dsn  # the attribute stays as given
    for text in (repr(info.value), str(info.value)):
        assert "hunter2" not in text
    assert "postgresql://backup:***@127.0.0.1/app" in repr(info.value)
    assert "invalid connection postgresql://backup:***@127.0.0.1/app" in str(info.value)


def test_a_link_planted_at_the_partial_name_is_not_written_through(tmp_path: Path) -> None:
    """A dump into a directory others may write: a link planted at ``<dst>.partial``
    is not followed; the stream fails, the file the link points at keeps its bytes."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep\n")
    out = tmp_path / "db.dump"
    Path(f"{out}.partial").symlink_to(victim)
    with pytest.raises(OSError):
        guard().stream([sys.executable, "-c", "print('dump')"], out)
    assert victim.read_bytes() == b"keep\n"
    assert not out.exists()
