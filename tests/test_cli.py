"""The wedguard command, end to end through ``python -m wedguard`` in a subprocess."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from page_cache import pages_of, resident_pages

SRC = str(Path(__file__).resolve().parent.parent / "src")
EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "wedguard.example.toml"
QUIET = 'sources = []\n[calendar]\npreset = "none"\n'


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: the package on the path, a private run directory."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("WEDGUARD_")}
    e["PYTHONPATH"] = SRC + os.pathsep + e.get("PYTHONPATH", "")
    e["WEDGUARD_RUN_DIR"] = str(tmp_path / "run")
    e.pop("XDG_RUNTIME_DIR", None)
    return e


def wedguard(
    env: dict[str, str], *args: str, timeout: float = 30.0, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wedguard", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "wedguard", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def make_tree(root: Path, files: int = 3, size: int = 100_000) -> dict[str, bytes]:
    contents = {}
    for i in range(files):
        sub = root / ("a" if i % 2 else "b") / "deep"
        sub.mkdir(parents=True, exist_ok=True)
        data = os.urandom(size + i)
        path = sub / f"f{i}.bin"
        path.write_bytes(data)
        os.chmod(path, 0o640 if i % 2 else 0o604)
        os.utime(path, ns=(1_700_000_000_123_456_789 + i, 1_700_000_000_987_654_321 + i))
        contents[str(path.relative_to(root))] = data
    return contents


def quiet_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "wedguard.toml"
    path.write_text(QUIET + extra)
    return path


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# -- usage ---------------------------------------------------------------------------------


def test_usage_errors_exit_2_and_version_exits_0(env: dict[str, str]) -> None:
    for args in ((), ("copy",), ("frobnicate",), ("copy", "a", "b", "--rate")):
        out = wedguard(env, *args)
        assert out.returncode == 2
        assert one_line(out.stderr).startswith("wedguard")
        assert out.stderr.rstrip().endswith("--help)")
    version = wedguard(env, "--version")
    assert version.returncode == 0
    assert version.stdout.startswith("wedguard ")
    helped = wedguard(env, "--help")
    assert helped.returncode == 0
    for command in ("demo", "copy", "run", "calendar", "stop", "resume", "status", "throttle",
                    "report", "windows", "config"):  # fmt: skip
        assert command in helped.stdout


# -- copy ----------------------------------------------------------------------------------


def test_copy_a_tree_keeps_contents_modes_and_times_then_skips_it(
    env: dict[str, str], tmp_path: Path
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    contents = make_tree(src)
    config = quiet_config(tmp_path)
    done = wedguard(env, "copy", str(src), str(dst), "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "copied 3 file(s)" in done.stdout
    assert "\r" not in done.stdout + done.stderr  # no progress line without a terminal
    for rel, data in contents.items():
        s, d = src / rel, dst / rel
        assert d.read_bytes() == data
        assert d.stat().st_mode == s.stat().st_mode
        assert d.stat().st_mtime_ns == s.stat().st_mtime_ns
    assert not [p for p in dst.rglob("*") if ".wedguard-tmp." in p.name]
    again = wedguard(env, "copy", str(src), str(dst), "--config", str(config), "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert (report["copied"], report["skipped"], report["bytes"]) == (0, 3, 0)
    assert report["report"]["outcome"] == "done"


def test_copy_copies_again_a_file_whose_size_or_time_changed(
    env: dict[str, str], tmp_path: Path
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, files=2)
    config = quiet_config(tmp_path)
    assert wedguard(env, "copy", str(src), str(dst), "-c", str(config)).returncode == 0
    changed = next(iter(sorted(src.rglob("*.bin"))))
    changed.write_bytes(b"new contents")
    out = wedguard(env, "copy", str(src), str(dst), "-c", str(config), "--json")
    report = json.loads(out.stdout)
    assert (report["copied"], report["skipped"]) == (1, 1)
    assert (dst / changed.relative_to(src)).read_bytes() == b"new contents"


def test_copy_one_file_into_a_directory_or_to_a_name_with_a_rate(
    env: dict[str, str], tmp_path: Path
) -> None:
    src = tmp_path / "one.bin"
    src.write_bytes(os.urandom(600_000))
    (tmp_path / "into").mkdir()
    config = quiet_config(tmp_path)
    out = wedguard(env, "copy", str(src), str(tmp_path / "into"), "-c", str(config), "--json",
                   "--rate", "1MB/s")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "into" / "one.bin").read_bytes() == src.read_bytes()
    report = json.loads(out.stdout)["report"]
    assert report["bytes"] == 600_000
    named = wedguard(env, "copy", str(src), str(tmp_path / "named.bin"), "-c", str(config))
    assert named.returncode == 0
    assert (tmp_path / "named.bin").read_bytes() == src.read_bytes()


def test_copy_writes_each_file_back_as_it_goes_or_leaves_it_to_the_kernel(
    env: dict[str, str], tmp_path: Path
) -> None:
    """By default a copied file leaves the page cache window by window (it was written
    back, a dirty page cannot be dropped); ``--writeback off`` keeps the old way."""
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(12 << 20))
    config = quiet_config(tmp_path)
    for name, extra in (("windowed.bin", []), ("plain.bin", ["--writeback", "off"])):
        out = wedguard(env, "copy", str(src), str(tmp_path / name), "-c", str(config), *extra)
        assert out.returncode == 0, out.stderr
    windowed, plain = tmp_path / "windowed.bin", tmp_path / "plain.bin"
    assert resident_pages(windowed) < pages_of(12 << 20) // 4  # before reading them back
    assert resident_pages(plain) > pages_of(12 << 20) // 2
    assert windowed.read_bytes() == plain.read_bytes() == src.read_bytes()
    bad = wedguard(env, "copy", str(src), str(tmp_path / "x"), "-c", str(config),
                   "--writeback", "1KiB")  # fmt: skip
    assert bad.returncode == 2
    assert "--writeback: '1KiB' is not valid; expected a size of at least 4 KiB" in bad.stderr


def test_files_failing_in_a_row_open_the_circuit_exit_4(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Three files that cannot be written, one after the other, open the breaker: the
    copy ends with exit code 4 before trying the rest."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    for i in range(5):
        (src / f"f{i}.bin").write_bytes(b"x" * 1000)
    for i in range(3):  # the temporary names are taken: writing them fails
        (dst / f".wedguard-tmp.f{i}.bin").mkdir(parents=True)
    config = quiet_config(tmp_path)
    out = wedguard(env, "copy", str(src), str(dst), "-c", str(config), "--json")
    assert out.returncode == 4, out.stderr
    report = json.loads(out.stdout)
    assert report["copied"] == 0
    assert len(report["failed"]) == 3
    assert "circuit 'guard' is open" in report["error"]
    assert not (dst / "f3.bin").exists()
    assert out.stderr.splitlines()[-1].startswith("wedguard: circuit 'guard' is open")


def test_copy_refuses_a_destination_inside_its_source_and_leaves_out_fifos(
    env: dict[str, str], tmp_path: Path
) -> None:
    src = tmp_path / "src"
    make_tree(src, files=2)
    inside = wedguard(env, "copy", str(src), str(src / "backup"))
    assert inside.returncode == 2
    assert "is inside" in one_line(inside.stderr)
    assert not (src / "backup").exists()
    os.mkfifo(src / "a" / "pipe")
    config = quiet_config(tmp_path)
    out = wedguard(env, "copy", str(src), str(tmp_path / "dst"), "-c", str(config), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["copied"] == 2
    assert report["special"] == [str(src / "a" / "pipe")]
    assert not (tmp_path / "dst" / "a" / "pipe").exists()


def test_copy_errors_are_one_line_with_a_traceback_only_under_debug(
    env: dict[str, str], tmp_path: Path
) -> None:
    missing = wedguard(env, "copy", str(tmp_path / "nope"), str(tmp_path / "dst"))
    assert missing.returncode == 2
    assert "no such file or directory" in one_line(missing.stderr)
    debug = wedguard(env, "--debug", "copy", str(tmp_path / "nope"), str(tmp_path / "dst"))
    assert debug.returncode == 2
    assert "Traceback" in debug.stderr
    debug_after = wedguard(env, "copy", "--debug", str(tmp_path / "nope"), str(tmp_path / "d"))
    assert "Traceback" in debug_after.stderr
    src = tmp_path / "f"
    src.write_bytes(b"x")
    bad_rate = wedguard(env, "copy", str(src), str(tmp_path / "g"), "--rate", "fast")
    assert bad_rate.returncode == 2
    assert "--rate: 'fast' is not valid" in one_line(bad_rate.stderr)
    bad = tmp_path / "bad.toml"
    bad.write_text('[guard]\nrate = "10 parsecs"\n')
    bad_config = wedguard(env, "copy", str(src), str(tmp_path / "g"), "--config", str(bad))
    assert bad_config.returncode == 2
    assert one_line(bad_config.stderr) == (
        f"wedguard: {bad}: guard.rate: '10 parsecs' is not valid; expected a rate such as "
        "'10MB/s', '10Mbit/s', '512KiB/s' or 'off'"
    )
    assert not (tmp_path / "g").exists()


def test_an_interrupted_copy_stops_with_exit_3_and_resumes_where_it_was(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Stop a running copy with `wedguard stop`; see it in `status`; `resume`; the
    second run skips what the first finished and copies the rest."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    # 8 MB at 400 kB/s: still copying when the slowest machine gets to `stop`
    contents = make_tree(src, files=8, size=1_000_000)
    config = quiet_config(tmp_path, '[guard]\nrate = "400kB/s"\n')
    proc = start(env, "copy", str(src), str(dst), "-c", str(config), "--json")
    try:
        wait_for(lambda: len(list(dst.rglob("f*.bin"))) >= 1)
        status = wedguard(env, "status", "--json")
        assert status.returncode == 0
        guards = json.loads(status.stdout)["guards"]
        assert [g["pid"] for g in guards] == [proc.pid]
        assert guards[0]["decision"]["reasons"] == ["rate limit 400 kB/s"]
        text = wedguard(env, "status").stdout
        assert f"pid {proc.pid}: copy" in text
        assert "- rate limit 400 kB/s" in text
        stopped = wedguard(env, "stop", "--reason", "database maintenance")
        assert stopped.returncode == 0
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == 3, err
    assert "wedguard: stopped: " in err
    first = json.loads(out)
    assert first["exit_code"] == 3
    assert first["report"]["outcome"] == "stopped"
    assert 1 <= first["copied"] < 8
    assert not [p for p in dst.rglob("*") if ".wedguard-tmp." in p.name]
    status = wedguard(env, "status")
    assert "present (database maintenance)" in status.stdout
    assert "no running guards" in status.stdout
    # still stopped: a new copy stops at once
    blocked = wedguard(env, "copy", str(src), str(dst), "-c", str(config), "--json")
    assert blocked.returncode == 3
    assert json.loads(blocked.stdout)["exit_code"] == 3
    assert "wedguard: stopped: stop file" in one_line(blocked.stderr)
    assert wedguard(env, "resume").returncode == 0
    assert "absent" in wedguard(env, "status").stdout
    second = wedguard(env, "copy", str(src), str(dst), "-c", str(config), "--json", "--rate",
                      "20MB/s")  # fmt: skip
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert report["skipped"] == first["copied"]
    assert report["copied"] == 8 - first["copied"]
    for rel, data in contents.items():
        assert (dst / rel).read_bytes() == data


@pytest.mark.parametrize(
    ("signum", "code", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_ctrl_c_or_sigterm_leaves_no_partial_file(
    env: dict[str, str], tmp_path: Path, signum: int, code: int, word: str
) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3_000_000))
    config = quiet_config(tmp_path, '[guard]\nrate = "1MB/s"\n')
    proc = start(env, "copy", str(src), str(tmp_path / "out.bin"), "-c", str(config))
    try:
        wait_for(lambda: any(".wedguard-tmp." in p.name for p in tmp_path.iterdir()))
        proc.send_signal(signum)
        _out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == code
    assert one_line(err) == f"wedguard: {word}"
    assert not (tmp_path / "out.bin").exists()
    assert not [p for p in tmp_path.iterdir() if ".wedguard-tmp." in p.name]


def test_copy_shows_a_live_progress_line_on_a_terminal(env: dict[str, str], tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(1_500_000))
    config = quiet_config(tmp_path, '[guard]\nrate = "1MB/s"\n')
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wedguard", "copy", str(src), str(tmp_path / "o"), "-c",
             str(config)],
            env=env, stdin=slave, stdout=slave, stderr=slave,
        )  # fmt: skip
        os.close(slave)
        chunks = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 4096)
                except OSError:
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        proc.wait(timeout=10)
    finally:
        os.close(master)
    text = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, text
    assert "\r" in text
    assert "allowed 1 MB/s" in text
    assert "OPEN/OK" in text
    assert "copied 1 file(s)" in text


# -- run -----------------------------------------------------------------------------------


def test_run_passes_the_exit_code_and_output_through(env: dict[str, str], tmp_path: Path) -> None:
    config = quiet_config(tmp_path)
    ok = wedguard(env, "run", "-c", str(config), "--report", "--", sys.executable, "-c",
                  "print('hello')")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "hello"
    assert "exit 0 after" in ok.stderr  # the child's report
    failed = wedguard(env, "run", "-c", str(config), "--", sys.executable, "-c",
                      "import sys; sys.exit(5)")  # fmt: skip
    assert failed.returncode == 5
    nothing = wedguard(env, "run", "-c", str(config))
    assert nothing.returncode == 2
    assert "give the command after '--'" in one_line(nothing.stderr)
    missing = wedguard(env, "run", "-c", str(config), "--", str(tmp_path / "no-such-program"))
    assert missing.returncode == 2


def test_run_pauses_the_command_in_a_blackout_and_panic_ends_it(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Under a BLACKOUT the child is paused (it prints almost nothing); status shows
    it; `stop --panic` ends it through the guard's control socket: exit code 3."""
    config = tmp_path / "blackout.toml"
    config.write_text('sources = []\n[calendar]\nrules = "Mon-Sun 00:00-24:00 blackout"\n')
    ticker = "import time\nfor i in range(400):\n    print(i, flush=True)\n    time.sleep(0.01)\n"
    proc = start(env, "run", "-c", str(config), "--", sys.executable, "-c", ticker)
    try:
        wait_for(lambda: "child" in wedguard(env, "status").stdout)
        time.sleep(1.0)  # unpaused, the child would print about 100 lines by now
        status = json.loads(wedguard(env, "status", "--json").stdout)
        (running,) = status["guards"]
        assert running["pid"] == proc.pid
        assert running["decision"]["level"] == "BLACKOUT"
        assert [c["state"] for c in running["children"]] == ["paused (calendar)"]
        stopped = wedguard(env, "stop", "--panic", "--reason", "enough")
        assert stopped.returncode == 0, stopped.stderr
        assert f"pid {proc.pid}: stopped, 1 child process(es) ended" in stopped.stdout
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 3, err
    assert len(out.split()) < 20
    assert "wedguard: stopped: panic: enough" in err


def test_throttle_changes_a_running_guards_rate(env: dict[str, str], tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    # 8 MB at 300 kB/s: still copying when the slowest machine gets to `stop`
    make_tree(src, files=8, size=1_000_000)
    config = quiet_config(tmp_path, '[guard]\nrate = "300kB/s"\n')
    proc = start(env, "copy", str(src), str(dst), "-c", str(config))
    try:
        wait_for(lambda: bool(json.loads(wedguard(env, "status", "--json").stdout)["guards"]))
        changed = wedguard(env, "throttle", "200kB/s")
        assert changed.returncode == 0, changed.stderr
        assert changed.stdout.strip() == f"pid {proc.pid}: rate 200 kB/s"
        (running,) = json.loads(wedguard(env, "status", "--json").stdout)["guards"]
        assert running["reasons"] == ["rate limit 200 kB/s"]
        assert wedguard(env, "stop", "--pid", str(proc.pid)).returncode == 0
        _out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == 3, err
    other = wedguard(env, "throttle", "1MB/s", "--socket", str(tmp_path / "nobody.sock"))
    assert other.returncode == 1
    assert "cannot reach" in other.stderr


def test_pipe_copies_stdin_to_stdout_through_a_guard(env: dict[str, str]) -> None:
    data = os.urandom(300_000)
    done = subprocess.run(
        [sys.executable, "-m", "wedguard", "pipe", "--rate", "10MB/s"],
        input=data, env=env, capture_output=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == data


# -- calendar ------------------------------------------------------------------------------


def test_calendar_at_a_time_and_the_week(env: dict[str, str]) -> None:
    at = wedguard(env, "calendar", "-c", str(EXAMPLE), "--at", "2026-06-13T12:00")
    assert at.returncode == 0, at.stderr
    assert at.stdout.startswith("Sat 2026-06-13 12:00 BST: BLACKOUT until Sun 2026-06-14 00:00")
    assert "wedding Saturdays" in at.stdout
    peak = wedguard(env, "calendar", "-c", str(EXAMPLE), "--at", "2026-01-06 09:00")
    assert "PEAK 1.25 MB/s until Tue 2026-01-06 22:00" in peak.stdout
    week = wedguard(env, "calendar", "-c", str(EXAMPLE), "--at", "2026-06-10T12:00", "--week")
    lines = week.stdout.splitlines()
    days = {line.split()[0] for line in lines[3:] if line.strip()}
    assert days == {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}
    assert any(line.startswith("Sat 2026-06-13 08:00") and "BLACKOUT" in line for line in lines)
    default = wedguard(env, "calendar", "--at", "2026-01-06T03:00+00:00")
    assert "OPEN" in default.stdout
    from_env = wedguard({**env, "WEDGUARD_CONFIG": str(EXAMPLE)}, "calendar", "--at",
                        "2026-06-13T12:00")  # fmt: skip
    assert "wedding Saturdays" in from_env.stdout
    bad = wedguard(env, "calendar", "--at", "teatime")
    assert bad.returncode == 2
    assert "--at: 'teatime' is not valid" in one_line(bad.stderr)


def test_calendar_refuses_a_local_time_that_never_happens(env: dict[str, str]) -> None:
    """01:30 on the night the London clocks go forward does not exist: an error, not a
    silent move; 01:30 on the night they go back happens twice: the first one."""
    gap = wedguard(env, "calendar", "-c", str(EXAMPLE), "--at", "2026-03-29T01:30")
    assert gap.returncode == 2
    assert "the clocks skip" in one_line(gap.stderr)
    twice = wedguard(env, "calendar", "-c", str(EXAMPLE), "--at", "2026-10-25T01:30")
    assert twice.returncode == 0, twice.stderr
    assert twice.stdout.startswith("Sun 2026-10-25 01:30 BST")


# -- stop, resume, status, throttle ----------------------------------------------------------


def test_stop_resume_and_status_on_a_given_stop_file(env: dict[str, str], tmp_path: Path) -> None:
    stop = tmp_path / "x" / "wedguard.stop"
    assert "absent" in wedguard(env, "status", "--stop-file", str(stop)).stdout
    # the stop file's directory is not created: a typo must not go unnoticed
    missing = wedguard(env, "stop", "--stop-file", str(stop))
    assert missing.returncode == 2
    assert f"the directory {stop.parent} does not exist" in one_line(missing.stderr)
    assert not stop.parent.exists()
    stop.parent.mkdir(mode=0o700)
    assert (
        wedguard(env, "stop", "--stop-file", str(stop), "--reason", "incident 42").returncode == 0
    )
    assert stop.read_text().strip() == "incident 42"
    status = json.loads(wedguard(env, "status", "--stop-file", str(stop), "--json").stdout)
    assert status == {"stop_file": str(stop), "stopped": True, "reason": "incident 42",
                      "guards": []}  # fmt: skip
    assert wedguard(env, "resume", "--stop-file", str(stop)).returncode == 0
    assert not stop.exists()
    again = wedguard(env, "resume", "--stop-file", str(stop))
    assert again.returncode == 0
    assert "absent: not stopped by it" in again.stdout
    # the config's stop_file is the default
    config = tmp_path / "c.toml"
    config.write_text(f'[guard]\nstop_file = "{tmp_path / "from-config.stop"}"\n')
    assert wedguard(env, "stop", "-c", str(config)).returncode == 0
    assert (tmp_path / "from-config.stop").exists()


def test_throttle_without_a_running_guard_is_a_clear_error(env: dict[str, str]) -> None:
    out = wedguard(env, "throttle", "5MB/s")
    assert out.returncode == 2
    assert "throttle: no running guard was found" in one_line(out.stderr)
    bad = wedguard(env, "throttle", "5 parsecs")
    assert bad.returncode == 2
    assert "RATE: '5 parsecs' is not valid" in one_line(bad.stderr)


# -- report and windows -----------------------------------------------------------------------


@pytest.fixture
def history(tmp_path: Path) -> Path:
    from wedguard.history import MetricsStore

    path = tmp_path / "history.db"
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    with MetricsStore(path, retention="30d") as store:
        for day in range(7):
            for hour in range(24):
                at = now - timedelta(days=day, hours=hour)
                load = 5.0 if at.hour in (2, 3, 4) else 60.0
                store.record({"cpu.percent": load}, at=at)
        store.record_session(
            {"kind": "session", "name": "contracts", "bytes": 5_000_000, "duration_s": 12.0,
             "wait_seconds": {"rate": 2.0}, "pauses": 1, "outcome": "done"},
            at=now - timedelta(hours=1),
        )  # fmt: skip
        store.record_session(photos_report(), at=now)
    return path


def photos_report() -> Any:
    """A real session report, timeline and all, made on a fake clock."""
    import wedguard as wg
    from wedguard.testing import FakeClock

    guard = wg.Guard(rate="1MB/s", calendar=None, sources=[], sinks=[], clock=FakeClock())
    with guard.session("photos") as s:
        for _ in range(10):
            s.throttle(500_000)
    return s.report()


def test_report_lists_stored_sessions(env: dict[str, str], history: Path) -> None:
    out = wedguard(env, "report", "--history", str(history))
    assert out.returncode == 0, out.stderr
    assert "photos" in out.stdout
    assert "contracts" in out.stdout
    assert "5 MB" in out.stdout
    drawn = wedguard(env, "report", "--history", str(history), "--name", "photos",
                     "--plot", str(history.parent / "photos.png"),
                     "--html", str(history.parent / "photos.html"))  # fmt: skip
    assert drawn.returncode == 0, drawn.stderr
    assert (history.parent / "photos.png").read_bytes()[:4] == b"\x89PNG"
    assert "<svg" in (history.parent / "photos.html").read_text()
    data = json.loads(wedguard(env, "report", "--history", str(history), "--json",
                               "--name", "photos").stdout)  # fmt: skip
    assert [d["name"] for d in data] == ["photos"]
    missing = wedguard(env, "report")
    assert missing.returncode == 2
    assert "no history database" in one_line(missing.stderr)


def test_windows_recommends_the_quiet_hours(
    env: dict[str, str], history: Path, tmp_path: Path
) -> None:
    out = wedguard(env, "windows", "--history", str(history), "--duration", "2h", "--count", "1",
                   "--tz", "UTC")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("1. ")
    ruled = wedguard(env, "windows", "--history", str(history), "--duration", "2h", "--count",
                     "1", "--tz", "UTC", "--rules", "blackout")  # fmt: skip
    assert ruled.returncode == 0, ruled.stderr
    rules = ruled.stdout.split("# calendar rules for these windows ([calendar] rules):\n")[1]
    import wedguard as wg

    calendar = wg.PeakHourCalendar.parse(rules, tz="UTC")
    levels = {r.level for r in calendar.rules}
    assert levels == {wg.Level.OPEN, wg.Level.BLACKOUT}
    args = ("windows", "--history", str(history), "--duration", "2h", "--json", "--tz", "UTC")
    data = json.loads(wedguard(env, *args).stdout)
    assert data[0]["expected_load"] == pytest.approx(5.0)
    assert data[0]["start"].endswith(("02:00", "03:00"))
    config = tmp_path / "h.toml"
    config.write_text(f'[history]\npath = "{history}"\n')
    via_config = wedguard(env, "windows", "-c", str(config), "--json")
    assert via_config.returncode == 0, via_config.stderr
    bad = wedguard(env, "windows", "--history", str(history), "--duration", "forever")
    assert bad.returncode == 2


# -- config check ---------------------------------------------------------------------------


def test_config_check_prints_the_effective_configuration(
    env: dict[str, str], tmp_path: Path
) -> None:
    out = wedguard(env, "config", "check", str(EXAMPLE))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith('[guard]\nrate = "50 MB/s"\n')
    assert "[[sources]]" in out.stdout
    assert out.stderr.strip() == f"{EXAMPLE}: OK"
    config = tmp_path / "secret.toml"
    config.write_text('[[sinks]]\ntype = "slack"\nurl_env = "TEST_WEDGUARD_SLACK"\n')
    unset = wedguard(env, "config", "check", str(config))
    assert unset.returncode == 2
    assert "sinks[0].url_env: 'TEST_WEDGUARD_SLACK'" in one_line(unset.stderr)
    lenient = wedguard(env, "config", "check", str(config), "--no-env")
    assert lenient.returncode == 0
    assert "# secret from $TEST_WEDGUARD_SLACK: NOT SET" in lenient.stdout
    secret_env: dict[str, Any] = {
        **env,
        "TEST_WEDGUARD_SLACK": "https://hooks.slack.com/T/B/topsecret",
    }
    shown = wedguard(secret_env, "config", "check", str(config), "--json")
    assert shown.returncode == 0
    assert "topsecret" not in shown.stdout + shown.stderr
    assert json.loads(shown.stdout)["sinks"][0] == {
        "type": "slack",
        "url_env": "TEST_WEDGUARD_SLACK",
        "alerts": "high",
    }
    bad = tmp_path / "bad.toml"
    bad.write_text("[guard]\nmax_concurrent = -1\n")
    failed = wedguard(env, "config", "check", str(bad))
    assert failed.returncode == 2
    assert failed.stdout == ""
    assert "guard.max_concurrent: -1 is not valid" in one_line(failed.stderr)
    assert wedguard(env, "config", "check", str(tmp_path / "none.toml")).returncode == 2


# -- demo ---------------------------------------------------------------------------------------


def test_demo_throttles_pauses_and_resumes_in_five_seconds(
    env: dict[str, str], tmp_path: Path
) -> None:
    out = wedguard(env, "demo", "--seconds", "5", "--out", str(tmp_path / "out"), timeout=60)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for expected in ("OPEN", "PEAK", "BLACKOUT", "paused", "production load ON",
                     "session report", "copy finished"):  # fmt: skip
        assert expected in text
    # the blackout paused the copy, and it went on after it
    assert text.index("BLACKOUT") < text.rindex("PEAK")
    assert "(calendar)" in text
    # the size it announces is the size it reports at the end
    announced = re.search(r"copying \d+ files \(([^)]+)\)", text)
    finished = re.search(r"copy finished: \d+ files, (.+)", text)
    assert announced
    assert finished
    assert announced.group(1) == finished.group(1).strip()
    picture = tmp_path / "out" / "wedguard-demo.png"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert wedguard(env, "demo", "--seconds", "0").returncode == 2


def test_the_demo_writes_html_when_matplotlib_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without matplotlib the report picture becomes a self-contained HTML page."""
    from wedguard import report as report_module
    from wedguard.demo import _picture

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise report_module.PlotUnavailable("matplotlib is not installed")

    monkeypatch.setattr(report_module, "plot_session", unavailable)
    path = _picture(photos_report(), tmp_path, [(0.0, 0.010), (1.0, 0.012)], 0.010)
    assert path == tmp_path / "wedguard-demo.html"
    assert "<svg" in path.read_text()


def test_at_accepts_a_time_today_a_weekday_this_week_or_an_iso_time() -> None:
    from zoneinfo import ZoneInfo

    from wedguard.cli.calendar import parse_at as _parse_at

    tz = ZoneInfo("Europe/London")
    today = datetime.now(tz).date()
    assert _parse_at("09:30", tz) == datetime.combine(today, datetime.min.time(), tz).replace(
        hour=9, minute=30
    )
    saturday = _parse_at("Sat 08:00", tz)
    assert saturday.weekday() == 5
    assert (saturday.hour, saturday.minute) == (8, 0)
    assert abs((saturday.date() - today).days) < 7
    assert _parse_at("2026-06-13 12:00", tz) == datetime(2026, 6, 13, 12, 0, tzinfo=tz)
    assert _parse_at("2026-06-13T12:00+00:00", tz) == datetime(
        2026, 6, 13, 12, 0, tzinfo=timezone.utc
    )
    import wedguard as wg

    for bad in ("teatime", "25:00", "Caturday 10:00", "Sat 26:00"):
        with pytest.raises(wg.ConfigError, match="--at"):
            _parse_at(bad, tz)


def test_socket_commands_steer_any_guard_that_serves_one(
    env: dict[str, str], tmp_path: Path
) -> None:
    """status, throttle, stop and resume with --socket reach a guard built by a host
    program with control_socket=..."""
    import wedguard as wg

    sock = tmp_path / "host.sock"
    guard = wg.Guard(rate="5MB/s", calendar=None, sources=[], sinks=[], control_socket=sock)
    try:
        status = wedguard(env, "status", "--socket", str(sock))
        assert status.returncode == 0, status.stderr
        assert "OPEN/OK at 5 MB/s" in status.stdout
        assert "- rate limit 5 MB/s" in status.stdout
        throttled = wedguard(env, "throttle", "3MB/s", "--socket", str(sock))
        assert throttled.returncode == 0, throttled.stderr
        assert guard.rate == 3e6
        stopped = wedguard(env, "stop", "--socket", str(sock), "--reason", "host maintenance")
        assert stopped.returncode == 0, stopped.stderr
        assert guard.decision().stopped
        assert guard.decision().stop_reason == "host maintenance"
        assert not (tmp_path / "run" / "stop").exists()  # --socket: the socket only
        assert wedguard(env, "resume", "--socket", str(sock)).returncode == 0
        assert not guard.decision().stopped
    finally:
        guard.close()
    gone = wedguard(env, "status", "--socket", str(sock))
    assert gone.returncode == 2
    assert "cannot reach" in one_line(gone.stderr)


def test_report_pictures_show_production_latency_from_the_history(
    env: dict[str, str], tmp_path: Path
) -> None:
    """`wedguard report --html` draws the latency the history holds for the session,
    with the baseline measured before it."""
    from wedguard.history import MetricsStore

    report = photos_report()
    started = report.started_at
    path = tmp_path / "history.db"
    with MetricsStore(path, retention="30d") as store:
        for seconds, value in ((-600, 0.05), (-300, 0.05), (-60, 0.05), (2, 0.08), (4, 0.09)):
            store.record({"api.latency_s": value}, at=started + timedelta(seconds=seconds))
        store.record_session(report, at=started + timedelta(seconds=report.duration))
    page = tmp_path / "photos.html"
    out = wedguard(env, "report", "--history", str(path), "--html", str(page))
    assert out.returncode == 0, out.stderr
    text = page.read_text()
    assert re.search(r'data-series="latency" data-x="2 4" data-y="0.08 0.09"', text)
    assert 'data-series="baseline" data-y="0.05"' in text


def test_copy_never_replaces_a_device_fifo_or_socket_named_as_its_destination(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The copy renames a new file over its destination: given a FIFO (or, as root,
    ``/dev/null``) it would put a regular file in its place. It refuses instead."""
    src = tmp_path / "a.txt"
    src.write_bytes(b"data\n")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    config = quiet_config(tmp_path)
    out = wedguard(env, "copy", str(src), str(fifo), "--config", str(config))
    assert out.returncode == 2, out.stderr
    assert f"{fifo} exists and is not a regular file" in one_line(out.stderr)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert not [p for p in tmp_path.iterdir() if ".wedguard-tmp." in p.name]
