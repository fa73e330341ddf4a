"""Nobody else's hand on the switch: other local users cannot steer a guard.

Another user is uid 65534 (nobody): as root, files are handed to it with ``chown`` and
a server runs as it in a child process. Without root, the same checks are made on
what an unprivileged user can set up (modes, links) and on faked credentials; the
tests that need a second real user say so in their marker.
"""

from __future__ import annotations

import doctest
import json
import logging
import os
import re
import shutil
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
import wedguard._fs as fs
import wedguard.runtime.control_socket as control
from wedguard.cli import main
from wedguard.jobs import StatusFile as _StatusFile
from wedguard.testing import FakeClock, RecordingSink

SRC = str(Path(__file__).resolve().parent.parent / "src")
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
STRANGER = 65534
as_root = pytest.mark.skipif(not ROOT, reason="needs root to act as another user (uid 65534)")
pytestmark = pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX user ids")


def wedguard(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wedguard", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("WEDGUARD_")}
    e["PYTHONPATH"] = SRC + os.pathsep + e.get("PYTHONPATH", "")
    e["WEDGUARD_RUN_DIR"] = str(tmp_path / "run")
    e.pop("XDG_RUNTIME_DIR", None)
    return e


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file only its owner may read or write, that nothing may overwrite."""
    path = tmp_path / "shadow"
    path.write_text("precious\n")
    os.chmod(path, 0o600)
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def give_away(path: Path) -> None:
    os.lchown(path, STRANGER, STRANGER)


# -- the run directory -----------------------------------------------------------------------


def test_the_run_directory_and_its_new_parents_are_made_0700(
    env: dict[str, str], tmp_path: Path
) -> None:
    run = tmp_path / "a" / "b" / "run"
    out = wedguard({**env, "WEDGUARD_RUN_DIR": str(run)}, "stop", "--reason", "drill")
    assert out.returncode == 0, out.stderr
    for d in (tmp_path / "a", tmp_path / "a" / "b", run):
        assert mode(d) == 0o700, d
    assert mode(run / "stop") == 0o600
    assert (run / "stop").read_text() == "drill\n"


@as_root
def test_a_run_directory_in_tmp_made_by_another_user_is_refused(
    env: dict[str, str], tmp_path: Path, victim: Path
) -> None:
    """The default run directory ``<tmp>/wedguard-<uid>`` (no XDG_RUNTIME_DIR: cron,
    services, root), made first by someone else with a planted ``stop`` link."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    os.chmod(tmp, 0o1777)  # like /tmp
    run = tmp / f"wedguard-{os.geteuid()}"
    run.mkdir()
    os.chmod(run, 0o777)
    (run / "stop").symlink_to(victim)
    give_away(run / "stop")
    give_away(run)
    e = {k: v for k, v in env.items() if k != "WEDGUARD_RUN_DIR"}
    e["TMPDIR"] = str(tmp)
    for args in (("stop",), ("status",), ("resume",), ("throttle", "1MB/s")):
        out = wedguard(e, *args)
        assert out.returncode == 2, (args, out.stderr)
        line = one_line(out.stderr)
        assert f"run directory: '{run}' is not valid" in line
        assert f"{run} is owned by uid {STRANGER}" in line
    src = tmp_path / "data.bin"
    src.write_bytes(b"x" * 1000)
    copied = wedguard(e, "copy", str(src), str(tmp_path / "out.bin"))
    assert copied.returncode == 2
    assert f"{run} is owned by uid {STRANGER}" in one_line(copied.stderr)
    assert not (tmp_path / "out.bin").exists()
    assert victim.read_text() == "precious\n"
    assert os.path.islink(run / "stop")


@pytest.mark.parametrize("how", ["0777", "0755", "symlink", "file"])
def test_a_run_directory_others_may_use_is_refused(
    env: dict[str, str], tmp_path: Path, victim: Path, how: str
) -> None:
    run = tmp_path / "run"
    if how == "symlink":
        real = tmp_path / "elsewhere"
        real.mkdir(mode=0o700)
        (real / "stop").symlink_to(victim)
        run.symlink_to(real)
        why = f"{run} is a symbolic link"
    elif how == "file":
        run.write_text("")
        why = f"{run} is not a directory"
    else:
        run.mkdir()
        os.chmod(run, int(how, 8))
        (run / "stop").symlink_to(victim)
        why = f"{run} has mode {how}: group and others may use it"
    out = wedguard(env, "stop")
    assert out.returncode == 2
    line = one_line(out.stderr)
    assert line.startswith(f"wedguard: run directory: '{run}' is not valid")
    assert why in line
    assert victim.read_text() == "precious\n"
    assert wedguard(env, "status").returncode == 2


def test_a_run_directory_below_a_directory_others_may_change_is_refused(
    env: dict[str, str], tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # anyone may rename our directory away and put theirs
    run = shared / "run"
    out = wedguard({**env, "WEDGUARD_RUN_DIR": str(run)}, "stop")
    assert out.returncode == 2
    line = one_line(out.stderr)
    assert f"{shared} is writable by group and others (mode 0777) without the sticky bit" in line
    assert not run.exists()


def test_a_planted_stop_link_in_our_run_directory_is_replaced_not_followed(
    env: dict[str, str], tmp_path: Path, victim: Path
) -> None:
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    (run / "stop").symlink_to(victim)
    out = wedguard(env, "stop", "--reason", "incident 7")
    assert out.returncode == 0, out.stderr
    assert victim.read_text() == "precious\n"
    assert not os.path.islink(run / "stop")
    assert (run / "stop").read_text() == "incident 7\n"
    assert mode(run / "stop") == 0o600
    assert sorted(p.name for p in run.iterdir()) == ["stop"]  # no temporary file left


# -- status files ------------------------------------------------------------------------------


def test_status_files_are_0600_and_planted_links_are_not_followed(
    tmp_path: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEDGUARD_RUN_DIR", str(tmp_path / "run"))
    guards = tmp_path / "run" / "guards"
    guards.mkdir(parents=True, mode=0o700)
    os.chmod(tmp_path / "run", 0o700)
    pid = os.getpid()
    (guards / f"{pid}.tmp").symlink_to(victim)  # the name the status file once went through
    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[])
    with _StatusFile(guard, "copy a b") as status:
        assert victim.read_text() == "precious\n"
        assert not os.path.islink(status.path)
        assert mode(status.path) == 0o600
        assert json.loads(status.path.read_text())["command"] == "copy a b"
        # a link put where the status file is gets replaced, not written through
        status.path.unlink()
        status.path.symlink_to(victim)
        status.write()
        assert victim.read_text() == "precious\n"
        assert mode(status.path) == 0o600
    assert sorted(p.name for p in guards.iterdir()) == [f"{pid}.tmp"]


def test_a_running_guard_keeps_its_status_file_0600(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('sources = []\n[calendar]\npreset = "none"\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "wedguard", "run", "-c", str(config), "--",
         sys.executable, "-c", "import time; time.sleep(60)"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    status = tmp_path / "run" / "guards" / f"{proc.pid}.json"
    try:
        deadline = time.monotonic() + 20
        while not status.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert mode(status) == 0o600
        assert mode(status.parent) == 0o700
        assert mode(status.parent.parent) == 0o700
        assert json.loads(status.read_text())["pid"] == proc.pid
        ended = wedguard(env, "stop", "--panic")
        assert ended.returncode == 0, ended.stderr
        _out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 3, err


# -- the control socket ------------------------------------------------------------------------

_STRANGER_SERVER = r"""
import json, os, socket, sys
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sys.argv[1])
srv.listen(8)
print("ready", flush=True)
while True:
    conn, _ = srv.accept()
    with conn:
        conn.settimeout(2)
        try:
            data = conn.recv(4096)
        except OSError:
            data = b""
        print("got", repr(data), flush=True)
        reply = {"ok": True, "command": "stop", "message": "stopped"}
        try:
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass
"""


@pytest.fixture
def stranger_socket() -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """A control socket served by a process running as uid 65534 that claims that
    everything was stopped."""
    base = Path(tempfile.mkdtemp(prefix="wg"))  # short: Unix socket paths are limited
    os.chmod(base, 0o755)
    home = base / "s"
    home.mkdir()
    give_away(home)
    path = home / "ctl.sock"
    proc = subprocess.Popen(
        [sys.executable, "-c", _STRANGER_SERVER, str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr
        assert os.stat(path).st_uid == STRANGER
        yield path, proc
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def _requests(proc: subprocess.Popen[str]) -> list[str]:
    """What the stranger's server received (after it was ended)."""
    proc.kill()
    out, _err = proc.communicate(timeout=10)
    return [line for line in out.splitlines() if line.startswith("got") and line != "got b''"]


@as_root
def test_stop_does_not_trust_a_strangers_control_socket(
    env: dict[str, str], stranger_socket: tuple[Path, subprocess.Popen[str]]
) -> None:
    path, proc = stranger_socket
    out = wedguard(env, "stop", "--socket", str(path))
    assert out.returncode == 1
    assert "stopped" not in out.stdout
    line = one_line(out.stderr)
    assert f"{path}: the control socket is served by uid {STRANGER}" in line
    assert "not trusted" in line
    assert _requests(proc) == []  # not even the reason was sent


@as_root
def test_a_status_entry_pointing_at_a_strangers_socket_is_not_trusted(
    env: dict[str, str], tmp_path: Path, stranger_socket: tuple[Path, subprocess.Popen[str]]
) -> None:
    """A guard's ``control`` entry naming someone else's socket: ``wedguard stop``
    does not print "stopped" for it and fails."""
    path, proc = stranger_socket
    guards = tmp_path / "run" / "guards"
    guards.mkdir(parents=True, mode=0o700)
    os.chmod(guards.parent, 0o700)
    entry = {"pid": proc.pid, "command": "copy", "started": "?", "control": str(path)}
    fs.write_file(guards, f"{proc.pid}.json", json.dumps(entry).encode(), private=True)
    out = wedguard(env, "stop")
    assert out.returncode == 1
    assert f"pid {proc.pid}: stopped" not in out.stdout
    assert f"pid {proc.pid}: {path}: the control socket is served by uid {STRANGER}" in out.stderr
    status = wedguard(env, "status")
    assert f"control socket: {path}: the control socket is served by uid {STRANGER}" in (
        status.stdout
    )
    assert _requests(proc) == []


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[wg.Guard, Path]]:
    base = Path(tempfile.mkdtemp(prefix="wg"))
    path = base / "wg.sock"
    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[], control_socket=path)
    try:
        yield guard, path
    finally:
        guard.close()
        shutil.rmtree(base, ignore_errors=True)


def test_send_command_talks_only_to_a_server_of_the_expected_user(
    served: tuple[wg.Guard, Path],
) -> None:
    guard, path = served
    me = os.geteuid()
    other = me + 1
    with pytest.raises(control.UntrustedPeerError) as caught:
        control.send_command(path, "stop", peer_uid=other)
    assert caught.value.uid == me
    assert caught.value.expected == other
    assert isinstance(caught.value, PermissionError)
    assert f"served by uid {me}" in str(caught.value)
    assert not guard.decision().stopped  # nothing was sent
    assert control.send_command(path, "stop", peer_uid=me) == "ok: stopped"
    assert guard.decision().stopped
    with pytest.raises(wg.ConfigError, match="peer_uid"):
        control.send_command(path, "status", peer_uid="root")  # type: ignore[arg-type]


def test_stop_fails_when_the_socket_reports_another_user(
    served: tuple[wg.Guard, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The credentials the kernel reports for the server say uid 65534: the command
    line refuses it and says so (a faked credential: no second user needed)."""
    guard, path = served
    monkeypatch.setattr(control, "_peer_uid", lambda sock: STRANGER)
    code = main(["stop", "--socket", str(path), "--reason", "drill"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "stopped" not in out
    assert f"the control socket is served by uid {STRANGER}" in err
    assert not guard.decision().stopped


def test_check_peer_compares_user_ids() -> None:
    control.check_peer("/x.sock", 1000, 1000)
    control.check_peer("/x.sock", None, 1000)  # unknown: nothing to compare
    with pytest.raises(control.UntrustedPeerError, match="uid 0"):
        control.check_peer("/x.sock", 0, 1000)  # root's server is not the user's guard


# -- the stop file -----------------------------------------------------------------------------


def make_guard(stop: Path, sink: RecordingSink, clock: FakeClock) -> wg.Guard:
    return wg.Guard(rate="1MB/s", calendar=None, sources=[], sinks=[sink], breaker=None,
                    clock=clock, stop_file=stop)  # fmt: skip


def run_for(guard: wg.Guard, clock: FakeClock, seconds: float = 1.0) -> None:
    """A session moving data for ``seconds`` on the fake clock (stop checks included)."""
    with guard.session("photos") as s:
        for _ in range(int(seconds * 10)):
            s.throttle(1000)
            clock.advance(0.1)


def stop_alerts(sink: RecordingSink) -> list[Any]:
    return [e for e in sink.of_kind("alert") if getattr(e, "key", "") == "wedguard/stop-file"]


@as_root
@pytest.mark.parametrize("planted", ["file", "link to a root file"])
def test_a_strangers_stop_file_in_a_sticky_directory_is_ignored_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, planted: str
) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp: allowed, only files of ours or root's count
    stop = shared / "wedguard.stop"
    clock, sink = FakeClock(), RecordingSink()
    guard = make_guard(stop, sink, clock)
    if planted == "file":
        stop.write_text("gotcha")
    else:
        stop.symlink_to("/")  # owned by root: a followed link would look like root's
    give_away(stop)
    with caplog.at_level(logging.WARNING, logger="wedguard"):
        run_for(guard, clock)
    assert not guard.decision().stopped
    warned = [  # the guard's own warning; the logging sink also logs the alert, apart
        r.getMessage()
        for r in caplog.records
        if str(stop) in r.getMessage() and r.name != "wedguard.events"
    ]
    assert len(warned) == 1, warned  # once, not at every check
    assert f"owned by uid {STRANGER}" in warned[0]
    (alert,) = stop_alerts(sink)
    assert alert.firing
    assert str(stop) in alert.summary
    # the stranger's file gone and one of ours there: it stops, the alert is resolved
    stop.unlink()
    stop.write_text("ours")
    with pytest.raises(wg.EmergencyStop, match="stop file"):
        run_for(guard, clock)
    assert [a.firing for a in stop_alerts(sink)] == [True, False]


def test_a_stop_file_of_another_owner_is_ignored_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The same without root: the file system reports the stop file as uid 65534's."""
    stop = tmp_path / "wedguard.stop"
    clock, sink = FakeClock(), RecordingSink()
    guard = make_guard(stop, sink, clock)
    stop.write_text("gotcha")
    real_lstat = os.lstat

    def lstat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        st = real_lstat(path, *args, **kwargs)
        if os.fspath(path) != str(stop):
            return st
        fields = list(st)
        fields[4] = fields[5] = STRANGER  # st_uid, st_gid
        return os.stat_result(fields)

    monkeypatch.setattr(os, "lstat", lstat)
    with caplog.at_level(logging.WARNING, logger="wedguard"):
        run_for(guard, clock)
    assert not guard.decision().stopped
    assert [a.firing for a in stop_alerts(sink)] == [True]
    assert any(f"owned by uid {STRANGER}" in r.getMessage() for r in caplog.records)
    monkeypatch.undo()
    with pytest.raises(wg.EmergencyStop, match="stop file"):
        run_for(guard, clock)


@pytest.mark.parametrize("bits", [0o777, 0o775, 0o757], ids=oct)
def test_a_stop_file_where_others_may_write_is_refused(
    env: dict[str, str], tmp_path: Path, bits: int
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, bits)
    stop = shared / "wedguard.stop"
    with pytest.raises(wg.ConfigError) as caught:
        wg.Guard(rate="off", calendar=None, sources=[], sinks=[], stop_file=stop)
    assert caught.value.field == "stop_file"
    assert caught.value.value == str(stop)
    assert f"{shared} is writable by" in str(caught.value)
    assert "without the sticky bit" in str(caught.value)
    # below such a directory, too: it can be renamed away and replaced
    with pytest.raises(wg.ConfigError, match=f"{shared} is writable"):
        wg.Guard(rate="off", calendar=None, sources=[], sinks=[], stop_file=shared / "a" / "b")
    out = wedguard(env, "stop", "--stop-file", str(stop))
    assert out.returncode == 2
    assert f"--stop-file: '{stop}' is not valid" in one_line(out.stderr)
    assert not stop.exists()
    # the sticky bit (like /tmp) makes the directory fine
    os.chmod(shared, bits | stat.S_ISVTX)
    wg.Guard(rate="off", calendar=None, sources=[], sinks=[], stop_file=stop).close()
    assert wedguard(env, "stop", "--stop-file", str(stop)).returncode == 0
    assert stop.exists()


@as_root
def test_a_stop_file_in_a_strangers_directory_is_refused(
    env: dict[str, str], tmp_path: Path
) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    give_away(theirs)
    stop = theirs / "wedguard.stop"
    with pytest.raises(wg.ConfigError, match=f"{theirs} is owned by uid {STRANGER}"):
        wg.Guard(rate="off", calendar=None, sources=[], sinks=[], stop_file=stop)
    config = tmp_path / "c.toml"
    config.write_text(f'[guard]\nstop_file = "{stop}"\n')
    out = wedguard(env, "stop", "-c", str(config))
    assert out.returncode == 2
    assert f"guard.stop_file: '{stop}' is not valid" in out.stderr
    assert not stop.exists()


@as_root
def test_status_shows_a_strangers_stop_file_as_ignored(env: dict[str, str], tmp_path: Path) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    stop = shared / "wedguard.stop"
    stop.write_text("gotcha\n")
    give_away(stop)
    out = wedguard(env, "status", "--stop-file", str(stop), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["stopped"] is False
    assert f"owned by uid {STRANGER}" in data["ignored"]


def test_a_stop_file_appearing_after_its_directory_was_opened_up_is_ignored(
    tmp_path: Path,
) -> None:
    """The directory is checked again when a stop file shows up in it."""
    d = tmp_path / "d"
    d.mkdir(mode=0o700)
    stop = d / "wedguard.stop"
    clock, sink = FakeClock(), RecordingSink()
    guard = make_guard(stop, sink, clock)
    os.chmod(d, 0o777)
    stop.write_text("")
    run_for(guard, clock)
    assert not guard.decision().stopped
    (alert,) = stop_alerts(sink)
    assert f"{d} is writable by group and others" in alert.summary
    os.chmod(d, 0o700)
    with pytest.raises(wg.EmergencyStop):
        run_for(guard, clock)


def test_stop_never_creates_the_stop_files_directory(env: dict[str, str], tmp_path: Path) -> None:
    stop = tmp_path / "nonexistent" / "dir" / "stop"
    out = wedguard(env, "stop", "--stop-file", str(stop))
    assert out.returncode == 2
    line = one_line(out.stderr)
    assert f"the directory {stop.parent} does not exist" in line
    assert not (tmp_path / "nonexistent").exists()
    # from the configuration, the same
    config = tmp_path / "c.toml"
    config.write_text(f'[guard]\nstop_file = "{stop}"\n')
    out = wedguard(env, "stop", "-c", str(config))
    assert out.returncode == 2
    assert f"the directory {stop.parent} does not exist" in out.stderr
    assert not (tmp_path / "nonexistent").exists()


# -- the pure checks -------------------------------------------------------------------------


def _st(mode: int, uid: int) -> os.stat_result:
    return os.stat_result((mode, 1, 1, 1, uid, uid, 0, 0, 0, 0))


@pytest.mark.parametrize(
    ("st_mode", "uid", "me", "fine"),
    [
        (0o40700, 1000, 1000, True),
        (0o40755, 1000, 1000, False),  # readable by others: status files, socket paths
        (0o40700, 65534, 1000, False),
        (0o40700, 0, 1000, False),  # not even root's: the run directory is the user's
        (0o120777, 1000, 1000, False),  # a link
        (0o100600, 1000, 1000, False),  # a file
    ],
)
def test_private_problem(st_mode: int, uid: int, me: int, fine: bool) -> None:
    assert (fs.private_problem("/r", _st(st_mode, uid), me) == "") is fine


@pytest.mark.parametrize(
    ("st_mode", "uid", "fine"),
    [
        (0o40755, 1000, True),
        (0o40755, 0, True),
        (0o41777, 0, True),  # /tmp
        (0o41777, 65534, False),  # sticky, but someone else's
        (0o40775, 1000, False),
        (0o40757, 0, False),
        (0o40755, 65534, False),
        (0o120777, 0, True),  # root's link: its target is checked on the resolved path
        (0o120777, 65534, False),
        (0o100644, 1000, False),
    ],
)
def test_strict_modes_for_each_directory_on_the_way(st_mode: int, uid: int, fine: bool) -> None:
    assert (fs._dir_problem("/d", _st(st_mode, uid), 1000) == "") is fine


def test_path_problem_walks_every_directory_up_to_the_root(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    me = os.geteuid()
    assert fs.path_problem(deep, me) == ""
    if me != 0:  # a pretended other user sees our directories as someone else's
        assert "is owned by" in fs.path_problem(deep, me + 1)
    os.chmod(tmp_path / "a", 0o777)
    assert fs.path_problem(deep, me).startswith(f"{tmp_path / 'a'} is writable")
    with pytest.raises(FileNotFoundError):
        fs.path_problem(tmp_path / "missing" / "x", me)


def test_read_file_refuses_links_and_fifos(tmp_path: Path, victim: Path) -> None:
    (tmp_path / "link").symlink_to(victim)
    with pytest.raises(OSError):
        fs.read_file(tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError, match="not a regular file"):
        fs.read_file(tmp_path / "fifo")  # at once: never blocks waiting for a writer
    assert fs.read_file(victim) == b"precious\n"


def test_a_write_that_fails_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "run"
    fs.private_dir(d, create=True)

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError, match="No space"):
        fs.write_file(d, "stop", b"x", private=True)
    assert list(d.iterdir()) == []


# -- docs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", [fs, control])
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0


def test_no_example_puts_the_stop_file_where_anyone_may_write() -> None:
    root = Path(__file__).resolve().parent.parent
    pages = [root / "README.md", root / "docs" / "wedguard.example.toml",
             *sorted((root / "docs").glob("*.md"))]  # fmt: skip
    shared = re.compile(r"stop_file\s*=\s*[\"'](/tmp|/var/tmp|/dev/shm)/")
    offenders = [
        f"{p.name}: {line.strip()}"
        for p in pages
        for line in p.read_text().splitlines()
        if shared.search(line)
    ]
    assert offenders == []


def test_no_example_puts_any_file_where_anyone_may_write() -> None:
    """The example configuration's event log and history live where only the user may
    write: a name in /tmp can be created first by anyone (a link, or a file of theirs)."""
    root = Path(__file__).resolve().parent.parent
    pages = [root / "README.md", root / "docs" / "wedguard.example.toml",
             *sorted((root / "docs").glob("*.md"))]  # fmt: skip
    shared = re.compile(r"^\s*(path|spool|stop_file)\s*=\s*[\"'](/tmp|/var/tmp|/dev/shm)/")
    offenders = [
        f"{p.name}: {line.strip()}"
        for p in pages
        for line in p.read_text().splitlines()
        if shared.search(line)
    ]
    assert offenders == []


def test_the_example_configuration_works_without_a_shared_stop_file(tmp_path: Path) -> None:
    from wedguard.config import load_config

    config = load_config(Path(__file__).resolve().parent.parent / "docs" / "wedguard.example.toml",
                         env=False)  # fmt: skip
    stop = config.guard.stop_file
    assert stop is None or not stop.startswith(("/tmp/", "/var/tmp/"))


def test_config_check_refuses_a_stop_file_in_a_directory_others_control(tmp_path: Path) -> None:
    """What Guard(stop_file=...) refuses at run time, `config check` refuses first."""
    from wedguard.config import load_config

    shared = tmp_path / "open"
    shared.mkdir()
    os.chmod(shared, 0o777)  # writable by everyone, not sticky: anyone could plant a stop
    path = tmp_path / "wedguard.toml"
    path.write_text(f'[guard]\nstop_file = "{shared / "stop"}"\n')
    with pytest.raises(wg.ConfigError) as caught:
        load_config(path)
    assert "guard.stop_file" in str(caught.value)
    assert str(shared) in str(caught.value)
    os.chmod(shared, 0o700)
    assert load_config(path).guard.stop_file == str(shared / "stop")


# -- temporary names beside files a guard writes -------------------------------------------------


def test_copy_never_writes_through_a_link_planted_at_its_temporary_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``wedguard copy`` into a directory others may write: a link planted at the
    temporary name of a file (``.wedguard-tmp.<name>``) is not written through; that
    file fails, the file the link points at keeps its bytes."""
    from wedguard.jobs import TMP_PREFIX

    monkeypatch.setenv("WEDGUARD_RUN_DIR", str(tmp_path / "run"))
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "db.dump").write_bytes(b"backup data\n")
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep\n")
    (dst / f"{TMP_PREFIX}db.dump").symlink_to(victim)
    config = tmp_path / "wedguard.toml"
    config.write_text('sources = []\nsinks = []\n[calendar]\npreset = "none"\n')
    code = main(["copy", str(src), str(dst), "--config", str(config)])
    capsys.readouterr()
    assert victim.read_bytes() == b"keep\n"
    assert code != 0
    assert not (dst / "db.dump").exists()


def test_a_saved_baseline_never_writes_through_a_planted_temporary_name(tmp_path: Path) -> None:
    """``save_baseline(path)`` writes a temporary file of a random name, created
    exclusively: a link at the name it used to take (``<path>.tmp``) is left alone."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep\n")
    path = tmp_path / "baseline.json"
    Path(f"{path}.tmp").symlink_to(victim)
    analyzer = wg.ImpactAnalyzer()
    analyzer.save_baseline(path)
    assert victim.read_bytes() == b"keep\n"
    assert json.loads(path.read_text()) is not None
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".baseline")] == []


def test_a_new_history_database_is_0600(tmp_path: Path) -> None:
    """The history holds command lines and session reports: a new database file and
    its WAL files are the user's alone, whatever the umask."""
    from wedguard.history import MetricsStore

    old = os.umask(0o022)
    try:
        store = MetricsStore(tmp_path / "history.db")
        store.record({"cpu": 1.0})
        made = sorted(p for p in tmp_path.iterdir() if p.name.startswith("history.db"))
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in made}
        store.close()
    finally:
        os.umask(old)
    assert modes.get("history.db") == 0o600, modes
    assert set(modes.values()) == {0o600}, modes
