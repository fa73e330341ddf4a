"""History under faults: a lock held by another process, a full disk, read-only
media, a wall clock that jumps."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import wedguard as wg
from fault_helpers import can_mount, fill, remount, tmpfs
from wedguard.history import HistoryError, HistorySink, MetricsStore
from wedguard.policy.alerting import Alert
from wedguard.testing import FakeClock

T0 = datetime(2026, 1, 5, 1, 0, tzinfo=timezone.utc)

LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
conn.close()
"""


@contextlib.contextmanager
def locked_by_another_process(path: Path) -> Iterator[subprocess.Popen[str]]:
    """A second process holds ``BEGIN EXCLUSIVE`` on ``path`` until the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write("release\n")
            proc.stdin.close()
        proc.wait(30)
        assert proc.stdout is not None
        proc.stdout.close()


def stored(path: Path) -> list[tuple[float, float]]:
    with MetricsStore(path, read_only=True) as store:
        return [(at.timestamp(), v) for at, v in store.series("cpu.percent")]


# -------------------------------------------------------------- a lock held elsewhere


def test_rows_wait_out_a_lock_held_by_another_process(tmp_path: Path) -> None:
    """A lock held longer than the timeout no longer switches history off: the rows
    wait in the backlog and are written, in order, once the lock is released."""
    path = tmp_path / "history.db"
    alerts: list[Alert] = []
    clock = FakeClock(T0)
    history = HistorySink(path, alerts=alerts.append, clock=clock, timeout=0.1, retry=0)
    history.record({"cpu.percent": 1.0})
    with locked_by_another_process(path):
        for i in range(2, 6):
            clock.advance(60)
            history.record({"cpu.percent": float(i)})
        assert history.backlog == 4
        assert not history.available
        assert "locked" in str(history.failure)
        assert [a.key for a in alerts] == ["history/unavailable"]  # once, not per row
    clock.advance(60)
    history.record({"cpu.percent": 6.0})
    assert history.backlog == 0
    assert history.available
    assert [a.firing for a in alerts] == [True, False]  # resolved once written
    history.close()
    expected = [((T0 + timedelta(minutes=i)).timestamp(), float(i + 1)) for i in range(6)]
    assert stored(path) == expected  # every row, once, at the time it arrived


def test_a_locked_store_does_not_hold_the_backup_for_every_row(tmp_path: Path) -> None:
    """After one failed try the next rows go to the backlog at once (backoff)."""
    path = tmp_path / "history.db"
    history = HistorySink(path, timeout=0.2, retry=30)
    with locked_by_another_process(path):
        history.record({"cpu.percent": 1.0})  # waits the timeout once
        started = time.monotonic()
        for i in range(50):
            history.record({"cpu.percent": float(i)})
        assert time.monotonic() - started < 0.2 * 5
        assert history.backlog == 51
    assert history.flush()  # flush tries at once, whatever the backoff says
    assert len(stored(path)) == 51
    history.close()


def test_the_backlog_is_bounded_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    clock = FakeClock(T0)
    history = HistorySink(path, clock=clock, timeout=0.05, retry=30, backlog=3)
    with locked_by_another_process(path):
        for i in range(5):
            clock.advance(60)
            history.record({"cpu.percent": float(i)})
        assert (history.backlog, history.dropped) == (3, 2)
    assert history.flush()
    assert [v for _t, v in stored(path)] == [2.0, 3.0, 4.0]
    history.close()


# -------------------------------------------------------------- a full disk


class SmallDisk:
    """Where a store fills up: a 256 KiB tmpfs filled with a file (as root), else a
    database capped with ``max_page_count``, which gives SQLite's own SQLITE_FULL."""

    def __init__(self, directory: Path, real: bool) -> None:
        self.dir = directory
        self.real = real
        self._filler: Path | None = None
        self._store: MetricsStore | None = None

    def fill(self, store: MetricsStore) -> None:
        self._store = store
        if self.real:
            self._filler = fill(self.dir)
        else:
            pages = store._writer.execute("PRAGMA page_count").fetchone()[0]
            store._writer.execute(f"PRAGMA max_page_count={pages}")

    def free(self) -> None:
        if self._filler is not None:
            self._filler.unlink()
            self._filler = None
        elif self._store is not None:
            self._store._writer.execute("PRAGMA max_page_count=1073741823")


@contextlib.contextmanager
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    if can_mount():
        with tmpfs(tmp_path / "disk", size="256k") as disk:
            yield SmallDisk(disk, True)
    else:
        yield SmallDisk(tmp_path, False)


def write_until_it_fails(store: MetricsStore) -> None:
    for i in range(2000):  # past what the WAL and the pages already hold
        store.record({f"m{i % 50}": float(i), "cpu.percent": 1.0})


def test_a_full_disk_names_the_real_cause(tmp_path: Path) -> None:
    with small_disk(tmp_path) as disk:
        store = MetricsStore(disk.dir / "history.db", clock=FakeClock(T0))
        disk.fill(store)
        with pytest.raises(HistoryError) as info:
            write_until_it_fails(store)
        assert "database or disk is full" in str(info.value)
        assert "cannot rollback" not in str(info.value)
        assert info.value.transient
        disk.free()
        store.close()


def test_history_resumes_after_a_full_disk(tmp_path: Path) -> None:
    with small_disk(tmp_path) as disk:
        path = disk.dir / "history.db"
        alerts: list[Alert] = []
        clock = FakeClock(T0)
        history = HistorySink(path, alerts=alerts.append, clock=clock, retry=0)
        assert history.store is not None
        disk.fill(history.store)
        n = 0
        while history.backlog == 0 and n < 5000:
            clock.advance(1)
            history.record({"cpu.percent": float(n)})
            n += 1
        assert history.backlog == 1
        assert "database or disk is full" in alerts[0].details
        for _ in range(5):
            clock.advance(1)
            history.record({"cpu.percent": float(n)})
            n += 1
        assert history.backlog == 6
        disk.free()
        assert history.flush()
        history.close()
        values = [v for _t, v in stored(path)]
        assert values == [float(i) for i in range(n)]  # none lost, none twice
        assert [a.firing for a in alerts] == [True, False]


# -------------------------------------------------------------- read-only media


def make_history(path: Path) -> None:
    with MetricsStore(path, clock=FakeClock(T0)) as store:
        for hour in range(24 * 7):
            at = T0 - timedelta(hours=hour)
            store.record({"cpu.percent": 5.0 if at.hour in (2, 3, 4) else 60.0}, at=at)
        store.record_session(
            {"kind": "session", "name": "photos", "bytes": 5_000_000, "duration_s": 12.0,
             "outcome": "done"},
            at=T0,
        )  # fmt: skip


@contextlib.contextmanager
def read_only_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory holding a history database where SQLite cannot create the -shm.

    As root: a tmpfs remounted read-only (root ignores permissions). As another
    user: a directory with mode 0555. As root where mounting is not allowed: the
    error SQLite gives there ("unable to open database file") is injected into the
    plain ``mode=ro`` open.
    """
    if can_mount():
        with tmpfs(tmp_path / "media", size="4m") as media:
            make_history(media / "history.db")
            remount(media, "ro")
            yield media
        return
    media = tmp_path / "media"
    media.mkdir()
    make_history(media / "history.db")
    if os.geteuid() == 0:
        real_connect = sqlite3.connect

        def connect(database: str, *args: Any, **kwargs: Any) -> sqlite3.Connection:
            if kwargs.get("uri") and "mode=ro" in database and "immutable=1" not in database:
                raise sqlite3.OperationalError("unable to open database file")
            return real_connect(database, *args, **kwargs)

        monkeypatch.setattr(sqlite3, "connect", connect)
        yield media
        return
    media.chmod(0o555)
    try:
        yield media
    finally:
        media.chmod(0o755)


def test_readers_open_a_database_on_read_only_media(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from wedguard.cli import main

    with read_only_directory(tmp_path, monkeypatch) as media:
        path = media / "history.db"
        with MetricsStore(path, read_only=True) as store:
            assert store.read_only
            assert [s.name for s in store.sessions()] == ["photos"]
            assert store.count("cpu.percent") == 24 * 7
            with pytest.raises(HistoryError, match="read-only"):
                store.record({"cpu.percent": 1.0}, at=T0)
        capsys.readouterr()
        assert main(["report", "--history", str(path)]) == 0
        assert "photos" in capsys.readouterr().out
        argv = ["windows", "--history", str(path), "--duration", "2h", "--count", "1"]
        assert main([*argv, "--tz", "UTC"]) == 0
        assert capsys.readouterr().out.startswith("1. ")
        assert sorted(p.name for p in media.iterdir()) == ["history.db"]  # nothing written


def test_a_read_only_store_writes_nothing_on_writable_media(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    make_history(path)
    before = path.read_bytes()
    with MetricsStore(path, retention="1h", read_only=True, clock=FakeClock(T0)) as store:
        assert store.count() == 24 * 7  # no prune on open
        with pytest.raises(HistoryError, match="read-only"):
            store.prune()
    assert path.read_bytes() == before
    with pytest.raises(HistoryError, match="no such database"):
        MetricsStore(tmp_path / "missing.db", read_only=True)
    assert not (tmp_path / "missing.db").exists()


def test_a_read_only_store_opens_a_file_whose_name_is_not_utf8(tmp_path: Path) -> None:
    """A file name of arbitrary bytes (given as Python gives it, with surrogates) opens
    read-only as it opens for writing, instead of failing to quote it as a URI."""
    path = os.path.join(os.fsdecode(tmp_path), os.fsdecode(b"history-\xff.db"))
    make_history(Path(path))
    with MetricsStore(path, retention="1h", read_only=True, clock=FakeClock(T0)) as store:
        assert store.count() == 24 * 7


def test_a_read_only_store_refuses_what_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(HistoryError, match="not a metrics store"):
        MetricsStore(path, read_only=True)


# -------------------------------------------------------------- clock jumps


class JumpingClock(FakeClock):
    """A fake clock whose wall time jumps while monotonic time only moves forward."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return super().now() + self.offset


def test_wall_clock_jumps_lose_and_duplicate_no_row(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    clock = JumpingClock(T0)
    history = HistorySink(path, clock=clock, timeout=0.05, retry=0)
    expected: list[tuple[float, float]] = []
    n = 0
    for step, jump in enumerate([0, -3600, 3600, 3600, -3600, -3600, 0]):
        clock.offset += timedelta(seconds=jump)
        blocker = locked_by_another_process(path) if step == 3 else contextlib.nullcontext()
        with blocker:  # one step's rows wait in the backlog across the jump
            for _ in range(3):
                clock.advance(10)
                history.record({"cpu.percent": float(n)})
                expected.append((clock.now().timestamp(), float(n)))
                n += 1
    assert history.flush()
    history.close()
    assert sorted(stored(path)) == sorted(expected)


def test_the_configuration_file_sets_the_backlog_and_its_retries(tmp_path: Path) -> None:
    """[history] backlog, retry and retry_max reach the HistorySink; a retry longer
    than its maximum is refused by the check, not at run time."""
    from wedguard.config import load_config

    path = tmp_path / "wedguard.toml"
    db = tmp_path / "history.db"
    path.write_text(
        f'sources = []\n[history]\npath = "{db}"\nbacklog = 500\nretry = "2s"\nretry_max = "30s"\n'
    )
    with load_config(path).assemble(sinks=[]) as built:
        history = built.history
        assert history is not None
        assert (history._backlog_size, history._retry, history._retry_max) == (500, 2.0, 30.0)
    path.write_text(f'[history]\npath = "{db}"\nretry = "2m"\nretry_max = "30s"\n')
    with pytest.raises(wg.ConfigError, match=r"history\.retry_max"):
        load_config(path)
    path.write_text(f'[history]\npath = "{db}"\nbacklog = 0\n')
    with pytest.raises(wg.ConfigError, match=r"history\.backlog"):
        load_config(path)
