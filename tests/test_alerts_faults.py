"""Alerts under faults: a spool that cannot be written, SIGKILL, clock jumps."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from fault_helpers import FullDisk, SpoolFault, can_mount, full_disk, remount, tmpfs
from wedguard.errors import ConfigError
from wedguard.runtime.alerts import SPOOL_ALERT_KEY, Alert, AlertDispatcher, Notification, Severity
from wedguard.sinks.spool import Spool
from wedguard.testing import FakeClock, RecordingSink

__all__ = ["full_disk"]  # the fixture, imported to be used

HIGH, LOW = Severity.HIGH, Severity.LOW


def keys(sink: RecordingSink, *, firing: bool = True) -> list[str]:
    return [
        a.key
        for n in sink.events
        if isinstance(n, Notification)
        for a in n.alerts
        if a.firing == firing
    ]


def wait_for(predicate: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def replay(path: Path) -> dict[tuple[str, str], dict[str, object]]:
    """What the spool file holds for the next process (read without opening a Spool,
    which would compact it)."""
    pending: dict[tuple[str, str], dict[str, object]] = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec["op"] == "add":
            pending[(rec["id"], rec["sink"])] = rec["event"]
        elif rec["op"] == "done":
            pending.pop((rec["id"], rec["sink"]), None)
    return pending


# -------------------------------------------------------------- a failing spool


def test_a_full_disk_starves_no_sink_and_flush_says_so(
    full_disk: FullDisk, caplog: pytest.LogCaptureFixture
) -> None:
    pager, chat, log_sink = RecordingSink(), RecordingSink(), RecordingSink()
    spool = full_disk.dir / "alerts.spool"
    with AlertDispatcher(
        routes={HIGH: [pager, chat], LOW: [log_sink]}, group_wait=0.05, spool=spool
    ) as d:
        full_disk.fill()
        with caplog.at_level(logging.ERROR, logger="wedguard.alerts"):
            d.fire(Alert("photos/halt", HIGH, "backup halted"))
            d.fire(Alert("photos/slow", LOW, "backup slowed"))
            # group_wait passes: every sink gets its alert without a flush
            assert wait_for(
                lambda: "photos/halt" in keys(pager) and "photos/slow" in keys(log_sink)
            )
            assert not d.flush(5)  # delivered, but not durable as the spool promises
        assert "photos/halt" in keys(chat)
        assert SPOOL_ALERT_KEY in keys(pager)
        assert SPOOL_ALERT_KEY in keys(chat)
        assert d.spool_error is not None
        assert d.spool_error.errno == errno.ENOSPC
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert errors
        assert "alert spool" in errors[0].getMessage()
        assert "ENOSPC" in errors[0].getMessage()

        full_disk.free()
        d.fire(Alert("photos/after", HIGH, "later"))
        assert d.flush(5)  # the spool works again: the truth is True
        assert d.spool_error is None
        assert SPOOL_ALERT_KEY in keys(pager, firing=False)  # resolved
        assert "photos/after" in keys(pager)
    assert Spool(spool).pending() == []


@pytest.mark.parametrize(
    "code", [errno.ENOSPC, errno.EROFS, errno.EIO, errno.EACCES], ids=errno.errorcode.get
)
def test_every_spool_fault_degrades_to_memory_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    fault = SpoolFault(monkeypatch, code)
    down, up = RecordingSink(), RecordingSink()
    spool = tmp_path / "alerts.spool"
    d = AlertDispatcher(
        routes={HIGH: [up]}, group_wait=0.05, group_interval=0.1, spool=spool, spool_retry=0.05
    )
    try:
        fault.on = True
        assert not d.fire(
            Alert("a", HIGH, "x", labels={"session": "a"}), durable=True
        )  # not durable: says so
        assert not d.flush(5)
        assert keys(up).count("a") == 1
        assert SPOOL_ALERT_KEY in keys(up)
        assert d.spool_error is not None
        assert d.spool_error.errno == code
        fault.on = False
        # the worker tries the file again by itself, and resolves its own alert
        assert wait_for(lambda: SPOOL_ALERT_KEY in keys(up, firing=False))
        assert d.spool_error is None
        assert d.fire(Alert("b", HIGH, "y", labels={"session": "b"}), durable=True)
        assert d.flush(5)
        assert keys(up).count("a") == 1
        assert keys(up).count("b") == 1
    finally:
        d.close()
    del down
    assert Spool(spool).pending() == []


def test_what_waited_in_memory_reaches_the_spool_when_it_recovers(
    full_disk: FullDisk,
) -> None:
    """A notification held for a receiver that is down while the disk was full is
    written to the spool once the disk has room, so a crash after that loses nothing."""

    class Down:
        name = "pager"

        def send(self, event: object) -> None:
            raise OSError("receiver down")

    spool = full_disk.dir / "alerts.spool"
    d = AlertDispatcher(routes={HIGH: [Down()]}, group_wait=0, spool=spool, backoff=0.05)
    try:
        full_disk.fill()
        d.fire(Alert("held", HIGH, "x"))
        assert not d.flush(0.5)
        assert d.spool_error is not None
        full_disk.free()
        assert not d.flush(0.5)  # recovered, but the receiver still has nothing
        assert d.spool_error is None
        held = [e for (_i, sink), e in replay(spool).items() if sink == "pager"]
        assert any(a["key"] == "held" for e in held for a in e["alerts"])  # type: ignore[attr-defined]
    finally:
        d.close(0)
    got = RecordingSink()
    got.name = "pager"  # type: ignore[attr-defined]
    with AlertDispatcher(routes={HIGH: [got]}, group_wait=0, spool=spool) as d2:
        assert d2.flush(5)
    assert "held" in keys(got)


def test_a_spool_on_read_only_media_still_delivers_what_it_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opened where nothing can be written (a tmpfs remounted read-only, else EROFS
    injected): the pending records are read and delivered, the spool says it is not
    durable, nothing raises."""
    first = RecordingSink()
    first.name = "pager"  # type: ignore[attr-defined]
    note = Notification("HIGH{}", "HIGH", (Alert("k", HIGH, "x"),))
    with contextlib.ExitStack() as stack:
        media = stack.enter_context(tmpfs(tmp_path / "media")) if can_mount() else tmp_path
        writer = Spool(media / "alerts.spool")
        writer.add("n1", "pager", note.to_dict())
        writer.close()
        if can_mount():
            remount(media, "ro")
        else:
            SpoolFault(monkeypatch, errno.EROFS).on = True
        with AlertDispatcher(routes={HIGH: [first]}, spool=media / "alerts.spool") as d:
            assert d.spool_error is not None
            assert d.spool_error.errno == errno.EROFS
            assert not d.flush(5)
    assert "k" in keys(first)
    assert SPOOL_ALERT_KEY in keys(first)


def test_durable_needs_a_spool() -> None:
    with (
        AlertDispatcher(routes={HIGH: [RecordingSink()]}) as d,
        pytest.raises(ConfigError, match="durable"),
    ):
        d.fire(Alert("a", HIGH, "x", labels={"session": "a"}), durable=True)
    with pytest.raises(ConfigError, match="spool_retry"):
        AlertDispatcher(routes={HIGH: [RecordingSink()]}, spool_retry=0)


# -------------------------------------------------------------- SIGKILL

# A parent that imports wedguard once and forks the children (it has no thread of its
# own, so forking is safe): each child opens a dispatcher on its own spool, fires
# alerts with durable=True and writes "fired N KEY" the moment fire() returns; the test
# SIGKILLs it as soon as it has read that line for 1 to 5 alerts.
FORKER = """
import os, sys
from wedguard.runtime.alerts import Alert, AlertDispatcher, Severity
from wedguard.testing import RecordingSink

def child(n, spool):
    d = AlertDispatcher(routes={Severity.HIGH: [RecordingSink()]}, group_wait=3600,
                        spool=spool)
    for i in range(1000):
        key = f"c{n}/{i}"
        if d.fire(Alert(key, Severity.HIGH, "halted"), durable=True):
            os.write(1, f"fired {n} {os.getpid()} {key}\\n".encode())
    os._exit(3)

for line in sys.stdin:
    batch = [item.split("=", 1) for item in line.split()]
    pids = {}
    for n, spool in batch:
        pid = os.fork()
        if pid == 0:
            child(n, spool)
        pids[pid] = n
    for pid, n in pids.items():
        _, status = os.waitpid(pid, 0)
        os.write(1, f"exit {n} {status}\\n".encode())
"""

KILLS = 50
PARALLEL = 10


def test_sigkill_right_after_a_durable_fire_loses_no_alert(tmp_path: Path) -> None:
    """50 child processes fire with durable=True and are SIGKILLed the moment fire()
    returns (after 1 to 5 alerts, 10 children at a time); a dispatcher restarted on
    each child's spool delivers every alert that fire() returned for, once."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    forker = subprocess.Popen(
        [sys.executable, "-c", FORKER], env=env, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert forker.stdin is not None
    assert forker.stdout is not None
    acknowledged: dict[str, list[str]] = {}
    statuses: dict[str, int] = {}
    try:
        for start in range(0, KILLS, PARALLEL):
            names = [str(n) for n in range(start, min(KILLS, start + PARALLEL))]
            wanted = {name: 1 + int(name) % 5 for name in names}
            forker.stdin.write(" ".join(f"{n}={tmp_path / n}.spool" for n in names) + "\n")
            forker.stdin.flush()
            while len(statuses) < int(names[-1]) + 1:
                what, name, *rest = forker.stdout.readline().split()
                if what == "exit":
                    statuses[name] = int(rest[0])
                    continue
                got = acknowledged.setdefault(name, [])
                if len(got) < wanted[name]:  # past that, the kill is on its way
                    got.append(rest[1])
                    if len(got) == wanted[name]:
                        os.kill(int(rest[0]), signal.SIGKILL)
    finally:
        forker.stdin.close()
        forker.wait(30)
        forker.stdout.close()
    assert len(statuses) == KILLS
    assert all(os.WIFSIGNALED(s) and os.WTERMSIG(s) == signal.SIGKILL for s in statuses.values())
    lost: list[str] = []
    for name, fired_keys in acknowledged.items():
        sink = RecordingSink()
        with AlertDispatcher(
            routes={HIGH: [sink]}, group_wait=3600, spool=tmp_path / f"{name}.spool"
        ) as d:
            assert d.flush(10)
        told = keys(sink)
        assert len(told) == len(set(told))  # each alert told once
        lost.extend(k for k in fired_keys if k not in told)
    assert sum(len(v) for v in acknowledged.values()) == sum(1 + n % 5 for n in range(KILLS))
    assert lost == []


def test_a_durable_fire_is_on_disk_when_it_returns(tmp_path: Path) -> None:
    spool = tmp_path / "alerts.spool"
    d = AlertDispatcher(routes={HIGH: [RecordingSink()]}, group_wait=3600, spool=spool)
    try:
        assert d.fire(Alert("k", HIGH, "x"), durable=True)
        held = replay(spool)
        assert any(e.get("key") == "k" for e in held.values())
    finally:
        d.close(0)


# -------------------------------------------------------------- clock jumps


class JumpingClock(FakeClock):
    """A fake clock whose wall time can jump back or forth while monotonic time,
    as on a real host, only moves forward."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = timedelta(0)

    def now(self):  # type: ignore[no-untyped-def]
        return super().now() + self.offset


def test_wall_clock_jumps_lose_and_duplicate_no_alert() -> None:
    clock = JumpingClock()
    sink = RecordingSink()
    fired: list[str] = []
    with AlertDispatcher(routes={HIGH: [sink]}, group_wait=30, clock=clock) as d:
        for step, jump in enumerate([0, -3600, 3600, 3600, -3600, -3600, 0]):
            clock.offset += timedelta(seconds=jump)
            for i in range(3):
                key = f"s{step}/{i}"
                d.fire(Alert(key, HIGH, "x", labels={"session": f"s{step}"}))
                fired.append(key)
            clock.advance(31)
            d.wake()
        assert d.flush(5)
    told = keys(sink)
    assert sorted(told) == sorted(fired)  # every alert once: none lost, none twice


def test_a_spool_unreadable_at_open_keeps_its_records_when_it_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spool file that cannot be read at open is never replaced by the records
    of this process alone: once it can be read and written, both are kept."""
    path = tmp_path / "alerts.spool"
    old = Spool(path)
    old.add("old", "pager", {"n": 1})
    old.close()
    real_open = open

    def unreadable(file: object, *args: object, **kwargs: object) -> object:
        if str(file) == str(path):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", unreadable)
    spool = Spool(path)
    assert not spool.durable
    assert spool.error is not None
    assert spool.error.errno == errno.EACCES
    spool.add("new", "pager", {"n": 2})
    monkeypatch.undo()
    assert spool.recover()
    spool.close()
    assert sorted(i for i, _s, _e in Spool(path).pending()) == ["new", "old"]


def test_a_jsonl_sink_on_a_full_disk_is_retried_not_torn(
    full_disk: FullDisk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alerts to a JSON Lines file on a full disk: flush says they are not there, the
    dispatcher retries, and once there is room every notification is in the file,
    one whole JSON object per line."""
    from wedguard.sinks import JsonlSink

    if not full_disk.real:  # the same fault for the sink's file: a torn line, then ENOSPC
        real_open = JsonlSink._open

        class Full:
            def __init__(self, f: Any) -> None:
                self.f = f

            def write(self, data: bytes) -> int:
                if full_disk.full:
                    self.f.write(data[: len(data) // 2])
                    self.f.flush()
                    raise OSError(errno.ENOSPC, "No space left on device")
                return int(self.f.write(data))

            def __getattr__(self, name: str) -> Any:
                return getattr(self.f, name)

        monkeypatch.setattr(JsonlSink, "_open", lambda self: Full(real_open(self)))
    path = full_disk.dir / "alerts.jsonl"
    sink = JsonlSink(path)
    with AlertDispatcher(
        routes={HIGH: [sink]},
        group_wait=0,
        spool=full_disk.dir / "alerts.spool",
        backoff=0.02,
        backoff_max=0.05,
    ) as d:
        full_disk.fill()
        d.fire(Alert("during", HIGH, "x", labels={"session": "a"}))
        assert not d.flush(0.5)
        assert sink.errors > 0
        full_disk.free()
        assert d.flush(5)
    sink.close()
    records = [json.loads(line) for line in path.read_text().splitlines()]  # none torn
    told = [a["key"] for r in records if r.get("kind") == "notification" for a in r["alerts"]]
    assert "during" in told


# -------------------------------------------------------------- names planted in a shared directory


def test_a_spool_never_writes_through_planted_names(tmp_path: Path) -> None:
    """A spool in a directory others may write (``/tmp``): links planted at its name and
    at the name its rewrite used to take (``<spool>.tmp``), and a FIFO, are replaced or
    left alone, never followed: the files they point at keep their bytes and mode."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep\n")
    os.chmod(victim, 0o644)
    path = tmp_path / "alerts.spool"
    (tmp_path / "alerts.spool.tmp").symlink_to(victim)
    path.symlink_to(victim)
    spool = Spool(path)
    try:
        assert spool.add("n1", "slack", {"kind": "notification"})
        assert spool.durable
    finally:
        spool.close()
    assert victim.read_bytes() == b"keep\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert not path.is_symlink()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Spool(path).pending() == [("n1", "slack", {"kind": "notification"})]
    fifo = tmp_path / "fifo.spool"
    os.mkfifo(fifo)
    spool = Spool(fifo)  # used to block for ever in open()
    try:
        assert spool.add("n2", "slack", {"kind": "notification"})
    finally:
        spool.close()
    assert Spool(fifo).pending() == [("n2", "slack", {"kind": "notification"})]
