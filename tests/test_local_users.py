"""Nobody else's hand on the switch: other local users cannot steer a guard.

Another user is uid 65534 (nobody): as root, files are handed to it with ``chown`` and
a server runs as it in a child process. Without root, the same checks are made on
what an unprivileged user can set up (modes, links) and on faked credentials; the
tests that need a second real user say so in their marker.
"""

from __future__ import annotations

import doctest
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import wedguard as wg
import wedguard._fs as fs
import wedguard.control as control
from wedguard.testing import FakeClock, RecordingSink

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
STRANGER = 65534
as_root = pytest.mark.skipif(not ROOT, reason="needs root to act as another user (uid 65534)")
pytestmark = pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX user ids")


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


def test_check_peer_compares_user_ids() -> None:
    control.check_peer("/x.sock", 1000, 1000)
    control.check_peer("/x.sock", None, 1000)  # unknown: nothing to compare
    with pytest.raises(control.UntrustedPeerError, match="uid 0"):
        control.check_peer("/x.sock", 0, 1000)  # root's server is not the user's guard


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
    warned = [r.getMessage() for r in caplog.records if str(stop) in r.getMessage()]
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
def test_a_stop_file_where_others_may_write_is_refused(tmp_path: Path, bits: int) -> None:
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
    # the sticky bit (like /tmp) makes the directory fine
    os.chmod(shared, bits | stat.S_ISVTX)
    wg.Guard(rate="off", calendar=None, sources=[], sinks=[], stop_file=stop).close()


@as_root
def test_a_stop_file_in_a_strangers_directory_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    give_away(theirs)
    stop = theirs / "wedguard.stop"
    with pytest.raises(wg.ConfigError, match=f"{theirs} is owned by uid {STRANGER}"):
        wg.Guard(rate="off", calendar=None, sources=[], sinks=[], stop_file=stop)


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


@pytest.mark.parametrize("module", [fs, control])
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0
