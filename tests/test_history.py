"""MetricsStore: recording, aggregation in SQL, retention, threads, bad files."""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from wedguard import Alert, ConfigError, Severity, WedguardError
from wedguard.history import (
    Bucket,
    HistoryError,
    MetricsStore,
    StoreCorruptError,
    StoreLockedError,
)
from wedguard.testing import FakeClock

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)  # a Monday


def quantile(values: list[float], p: float) -> float:
    """Reference percentile: linear interpolation between closest ranks."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * p
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@pytest.fixture
def store(clock: FakeClock) -> MetricsStore:
    s = MetricsStore(":memory:", retention="30d", clock=clock)
    yield s  # type: ignore[misc]
    s.close()


# ------------------------------------------------------------------ construction


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"retention": "soon"}, "retention"),
        ({"retention": 0}, "retention"),
        ({"retention": -5}, "retention"),
        ({"session_retention": "x"}, "session_retention"),
        ({"prune_every": 0}, "prune_every"),
        ({"prune_every": 1.5}, "prune_every"),
        ({"timeout": -1}, "timeout"),
    ],
)
def test_bad_arguments_name_field_and_value(kwargs: dict[str, object], field: str) -> None:
    """Bad constructor input raises ConfigError naming the field and quoting the value."""
    with pytest.raises(ConfigError) as info:
        MetricsStore(":memory:", **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert repr(next(iter(kwargs.values()))) in str(info.value)


def test_bad_path_is_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        MetricsStore(42)  # type: ignore[arg-type]
    assert info.value.field == "path"


def test_retention_is_parsed(store: MetricsStore) -> None:
    assert MetricsStore(":memory:").retention == 7 * 86400  # the documented default
    assert store.retention == 30 * 86400
    assert "30d" in repr(store) or "720h" in repr(store) or "30 d" in repr(store)


def test_naive_datetime_is_rejected(store: MetricsStore) -> None:
    with pytest.raises(ConfigError) as info:
        store.record({"cpu.percent": 1.0}, at=datetime(2026, 1, 5))
    assert info.value.field == "at"
    with pytest.raises(ConfigError):
        store.aggregate("cpu.percent", since=datetime(2026, 1, 5))


@pytest.mark.parametrize(
    "sample",
    [{"cpu.percent": "high"}, {"cpu.percent": True}, {"": 1.0}, [("cpu.percent", 1.0)]],
)
def test_bad_samples_are_rejected(store: MetricsStore, sample: object) -> None:
    with pytest.raises(ConfigError):
        store.record(sample, at=T0)  # type: ignore[arg-type]
    assert store.count() == 0


def test_failed_readings_are_not_history(store: MetricsStore) -> None:
    """A nan reading (a probe that failed) is skipped, never stored as a value."""
    store.record({"cpu.percent": math.nan, "api.latency_s": 0.2}, at=T0)
    assert store.metrics() == ["api.latency_s"]


def test_record_defaults_to_the_clock(store: MetricsStore, clock: FakeClock) -> None:
    clock.advance(3600 * 5 + 30)
    store.record({"cpu.percent": 7.0})
    (row,) = store.aggregate("cpu.percent", "1h")
    assert row.start == T0 + timedelta(hours=5)


# ------------------------------------------------------------------- aggregation


def test_aggregate_buckets_and_stats(store: MetricsStore) -> None:
    """Each bucket carries mean, p50, p95, max, count, and buckets align to the epoch."""
    for i in range(10):
        store.record({"api.latency_s": float(i + 1)}, at=T0 + timedelta(minutes=2, seconds=i))
    store.record({"api.latency_s": 100.0}, at=T0 + timedelta(minutes=7))
    rows = store.aggregate("api.latency_s", "5min")
    assert [r.start for r in rows] == [T0, T0 + timedelta(minutes=5)]
    first = rows[0]
    assert isinstance(first, Bucket)
    assert (first.mean, first.p50, first.max, first.count, first.min) == (5.5, 5.5, 10.0, 10, 1.0)
    assert first.p95 == pytest.approx(9.55)
    assert (rows[1].count, rows[1].p50, rows[1].p95) == (1, 100.0, 100.0)


@pytest.mark.parametrize(
    ("bucket", "width"),
    [("1min", 60), ("5min", 300), ("1h", 3600), ("1d", 86400), (900, 900), ("2d", 172800)],
)
def test_bucket_widths(store: MetricsStore, bucket: str | int, width: int) -> None:
    start = T0 + timedelta(seconds=width * 3)
    store.record({"m": 1.0}, at=start + timedelta(seconds=width / 2))
    store.record({"m": 3.0}, at=start + timedelta(seconds=width - 0.5))
    store.record({"m": 5.0}, at=start + timedelta(seconds=width))
    rows = store.aggregate("m", bucket)
    assert [(r.start, r.count, r.mean) for r in rows] == [
        (start, 2, 2.0),
        (start + timedelta(seconds=width), 1, 5.0),
    ]


@pytest.mark.parametrize("bucket", ["7min", "0s", "-1h", "1.5s", "fortnightly", 0])
def test_bad_bucket(store: MetricsStore, bucket: object) -> None:
    with pytest.raises(ConfigError) as info:
        store.aggregate("m", bucket)  # type: ignore[arg-type]
    assert info.value.field == "bucket"
    assert repr(bucket) in str(info.value)


def test_aggregate_since_until_and_unknown_metric(store: MetricsStore) -> None:
    for h in range(6):
        store.record({"m": float(h)}, at=T0 + timedelta(hours=h))
    rows = store.aggregate("m", "1h", since=T0 + timedelta(hours=2), until=T0 + timedelta(hours=4))
    assert [r.mean for r in rows] == [2.0, 3.0]
    assert store.aggregate("nothing", "1h") == []


def test_aggregate_before_the_epoch_floors(store: MetricsStore) -> None:
    """Buckets floor, also for instants before 1970 (no truncation towards zero)."""
    at = datetime(1969, 12, 31, 23, 30, tzinfo=timezone.utc)
    store.record({"m": 1.0}, at=at)
    (row,) = store.aggregate("m", "1h")
    assert row.start == datetime(1969, 12, 31, 23, tzinfo=timezone.utc)


samples_strategy = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=4 * 3600 - 1),
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    ),
    min_size=1,
    max_size=60,
)


@given(samples=samples_strategy, bucket=st.sampled_from(["1min", "5min", "1h"]))
def test_aggregate_matches_a_python_reference(
    samples: list[tuple[int, float]], bucket: str
) -> None:
    """Whatever the samples, SQL buckets equal a direct computation in Python."""
    width = {"1min": 60, "5min": 300, "1h": 3600}[bucket]
    expected: dict[int, list[float]] = defaultdict(list)
    with MetricsStore(":memory:", retention="3650d", clock=FakeClock()) as store:
        for offset, value in samples:
            store.record({"m": value}, at=T0 + timedelta(seconds=offset))
            expected[offset // width].append(value)
        rows = store.aggregate("m", bucket)
    assert [r.start for r in rows] == [T0 + timedelta(seconds=k * width) for k in sorted(expected)]
    for row, key in zip(rows, sorted(expected), strict=True):
        values = expected[key]
        assert row.count == len(values)
        assert row.max == max(values)
        assert row.min == min(values)
        assert row.mean == pytest.approx(sum(values) / len(values), rel=1e-9, abs=1e-6)
        assert row.p50 == pytest.approx(quantile(values, 0.5), rel=1e-9, abs=1e-6)
        assert row.p95 == pytest.approx(quantile(values, 0.95), rel=1e-9, abs=1e-6)
        assert row.min <= row.p50 <= row.p95 <= row.max


def test_aggregate_does_not_load_rows_into_python(store: MetricsStore) -> None:
    """One row per bucket crosses from SQLite into Python, however many samples."""
    store.record_many((T0 + timedelta(seconds=s), {"m": float(s % 97)}) for s in range(0, 7200, 2))
    fetched: list[int] = []
    original = store._read

    def counting(sql: str, params: object = ()) -> list[object]:
        rows = original(sql, params)  # type: ignore[arg-type]
        fetched.append(len(rows))
        return rows

    store._read = counting  # type: ignore[method-assign]
    rows = store.aggregate("m", "1h")
    assert [r.count for r in rows] == [1800, 1800]
    assert fetched == [2]


# --------------------------------------------------------------------- retention


def test_prune_on_demand_counts_rows(clock: FakeClock) -> None:
    store = MetricsStore(":memory:", retention="1h", clock=clock, prune_every=10**6)
    clock.advance(86400)
    now = clock.now()
    store.record({"a": 1.0, "b": 2.0}, at=now - timedelta(hours=3))
    store.record({"a": 1.0}, at=now - timedelta(minutes=30))
    store.record_event(Alert("k", Severity.LOW, "old"), at=now - timedelta(hours=2))
    assert store.prune() == 3
    assert store.count() == 1
    assert store.events() == []
    assert store.prune() == 0
    store.close()


def test_prune_is_automatic_every_n_records(clock: FakeClock) -> None:
    store = MetricsStore(":memory:", retention="1h", clock=clock, prune_every=5)
    clock.advance(86400)
    for i in range(4):
        store.record({"m": 1.0}, at=clock.now() - timedelta(hours=5, minutes=i))
    assert store.count() == 4  # not yet: four records
    store.record({"m": 1.0}, at=clock.now())
    assert store.count() == 1  # the fifth record pruned the old ones
    store.close()


def test_prune_on_open(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "h.db"
    with MetricsStore(path, retention="30d", clock=clock) as store:
        store.record({"m": 1.0}, at=T0 - timedelta(days=3))
        store.record({"m": 2.0}, at=T0)
    with MetricsStore(path, retention="1d", clock=clock) as store:
        assert store.count() == 1


def test_automatic_pruning_keeps_the_last_stretch_when_samples_stop(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Idle weeks do not erase history: automatic pruning counts back from the newest sample."""
    path = tmp_path / "h.db"
    with MetricsStore(path, retention="2d", clock=clock, prune_every=3) as store:
        store.record({"m": 1.0}, at=T0 - timedelta(days=30))
        store.record({"m": 1.0}, at=T0 - timedelta(days=29))
        store.record({"m": 1.0}, at=T0 - timedelta(days=20))  # the third: pruned
        assert store.span() == (T0 - timedelta(days=20), T0 - timedelta(days=20))
    with MetricsStore(path, retention="2d", clock=clock) as store:  # pruned on open
        assert store.count() == 1
        assert store.prune() == 1  # asked explicitly: now is what counts
        assert store.count() == 0


def test_prune_with_explicit_now(store: MetricsStore) -> None:
    store.record({"m": 1.0}, at=T0)
    assert store.prune(now=T0 + timedelta(days=29)) == 0  # retention is 30 days
    assert store.prune(now=T0 + timedelta(days=31)) == 1
    with pytest.raises(ConfigError):
        store.prune(now=datetime(2026, 1, 1))


def test_prune_removes_old_rows_even_when_nothing_is_newer(clock: FakeClock) -> None:
    store = MetricsStore(":memory:", clock=clock)  # default retention: 7 days
    store.record({"m": 1.0}, at=clock.now() - timedelta(days=8))
    assert store.prune() == 1
    store.close()


class StoreAgainstModel(RuleBasedStateMachine):
    """The store behaves as a plain list of (time, metric, value) with a cutoff."""

    @initialize()
    def setup(self) -> None:
        self.clock = FakeClock()
        self.clock.advance(10 * 86400)
        self.store = MetricsStore(":memory:", retention="1d", clock=self.clock, prune_every=7)
        self.model: list[tuple[float, str, float]] = []
        self.records = 0

    def _prune_model(self, *, automatic: bool) -> int:
        if not self.model:
            return 0
        anchor = self.clock.now().timestamp()
        if automatic:
            anchor = min(anchor, max(t for t, _, _ in self.model))
        kept = [row for row in self.model if row[0] >= anchor - 86400]
        removed = len(self.model) - len(kept)
        self.model = kept
        return removed

    @rule(
        hours_ago=st.integers(min_value=0, max_value=60),
        metric=st.sampled_from(["a", "b"]),
        value=st.floats(min_value=-100, max_value=100, allow_nan=False),
    )
    def record(self, hours_ago: int, metric: str, value: float) -> None:
        at = self.clock.now() - timedelta(hours=hours_ago)
        self.store.record({metric: value}, at=at)
        self.model.append((at.timestamp(), metric, value))
        self.records += 1
        if self.records == 7:  # automatic pruning every 7 records
            self._prune_model(automatic=True)
            self.records = 0

    @rule(hours=st.integers(min_value=0, max_value=30))
    def advance(self, hours: int) -> None:
        self.clock.advance(hours * 3600)

    @rule()
    def prune(self) -> None:
        assert self.store.prune() == self._prune_model(automatic=False)
        self.records = 0

    @invariant()
    def same_contents(self) -> None:
        for metric in ("a", "b"):
            values = [v for _, m, v in self.model if m == metric]
            rows = self.store.aggregate(metric, "1d")
            assert sum(r.count for r in rows) == len(values)
            if values:
                assert max(r.max for r in rows) == max(values)

    def teardown(self) -> None:
        self.store.close()


TestStoreAgainstModel = StoreAgainstModel.TestCase


# ------------------------------------------------------------- events, closing


def test_events_are_stored_with_kind_and_dict(store: MetricsStore) -> None:
    alert = Alert("photos/halt", Severity.HIGH, "halted", started_at=T0)
    store.record_event(alert)
    store.record_event({"kind": "breaker", "old": "CLOSED", "new": "OPEN"}, at=T0)
    (stored,) = store.events("alert")
    assert stored.at == T0  # taken from the event's own started_at
    assert stored.data["summary"] == "halted"
    assert [e.kind for e in store.events()] == ["alert", "breaker"]
    with pytest.raises(ConfigError):
        store.record_event({"no": "kind"})
    with pytest.raises(ConfigError):
        store.record_event(object())  # type: ignore[arg-type]


def test_closed_store_raises(store: MetricsStore) -> None:
    store.close()
    store.close()  # idempotent
    assert store.closed
    with pytest.raises(HistoryError, match="closed"):
        store.record({"m": 1.0}, at=T0)
    with pytest.raises(HistoryError, match="closed"):
        store.aggregate("m")


def test_persistence_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with MetricsStore(path, retention="3650d") as store:
        store.record({"m": 2.0}, at=T0)
    with MetricsStore(str(path), retention="3650d") as store:
        assert store.aggregate("m", "1d")[0].mean == 2.0
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


# ------------------------------------------------------------------ bad files


def test_garbage_file_raises_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a database at all \x00\xff" * 200)
    with pytest.raises(StoreCorruptError) as info:
        MetricsStore(path)
    assert isinstance(info.value, WedguardError)
    assert info.value.path == str(path)
    assert "not a readable SQLite database" in str(info.value)


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreCorruptError, match="customers"):
        MetricsStore(path)


def test_locked_file_raises_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    MetricsStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreLockedError) as info:
            MetricsStore(path, timeout=0.05)
        assert isinstance(info.value, HistoryError)
        assert "locked" in str(info.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    MetricsStore(path, timeout=0.05).close()  # free again


def test_unopenable_path(tmp_path: Path) -> None:
    with pytest.raises(HistoryError):
        MetricsStore(tmp_path / "missing-dir" / "h.db")


# ----------------------------------------------------------------------- threads


def test_one_writer_and_several_readers(tmp_path: Path) -> None:
    """A writer thread records while reader threads aggregate; nobody errs or waits."""
    store = MetricsStore(tmp_path / "h.db", retention="3650d", prune_every=50)
    errors: list[BaseException] = []
    done = threading.Event()
    seen: list[int] = []

    def writer() -> None:
        try:
            for i in range(400):
                store.record({"m": float(i)}, at=T0 + timedelta(seconds=i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    def reader() -> None:
        try:
            last = 0
            give_up = time.monotonic() + 20  # a safety net if the writer died, not a timing
            while (not done.is_set() or last < 400) and time.monotonic() < give_up:
                rows = store.aggregate("m", "1h")
                total = sum(r.count for r in rows)
                assert total >= last  # readers never see history shrink
                last = total
            seen.append(last)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    store.close()
    assert errors == []
    assert seen == [400, 400, 400]


def test_memory_store_is_shared_by_threads(store: MetricsStore) -> None:
    def work(k: int) -> None:
        for i in range(50):
            store.record({"m": float(i)}, at=T0 + timedelta(seconds=k * 100 + i))
            store.aggregate("m", "1h")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert store.count("m") == 150


def test_readers_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    """WAL: while another connection holds the write lock, reads go on (and see commits only)."""
    path = tmp_path / "h.db"
    store = MetricsStore(path, retention="3650d", timeout=0.05)
    store.record({"m": 1.0}, at=T0)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute(
        "INSERT INTO samples (metric_id, ts, value) VALUES (1, ?, 9.0)", (T0.timestamp(),)
    )
    try:
        assert [r.count for r in store.aggregate("m", "1h")] == [1]
        with pytest.raises(StoreLockedError):
            store.record({"m": 2.0}, at=T0)  # our writer does wait, up to the timeout
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    store.record({"m": 2.0}, at=T0)
    assert store.count("m") == 2
    store.close()


def test_reader_connections_are_pooled(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path / "h.db")
    threads = [threading.Thread(target=store.metrics) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert 1 <= len(store._idle) <= 4
    store.close()
    assert store._idle == []


def test_damaged_pages_are_found_when_asked(tmp_path: Path) -> None:
    """A valid header with garbage inside: verify=True refuses it at open."""
    path = tmp_path / "damaged.db"
    with MetricsStore(path, retention="3650d") as store:
        store.record_many((T0 + timedelta(seconds=i), {"m": float(i)}) for i in range(5000))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 8 * page
    data[3 * page : 6 * page] = b"\xa5" * (3 * page)
    path.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError) as info:
        MetricsStore(path, verify=True)
    assert isinstance(info.value, WedguardError)
    assert "damaged" in str(info.value)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    MetricsStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.commit()
    conn.close()
    with pytest.raises(HistoryError, match="newer wedguard"):
        MetricsStore(path)


def test_a_dropped_store_closes_its_connections(tmp_path: Path) -> None:
    """No leaked handles (and no ResourceWarning) when a store is dropped without close()."""
    import gc

    store = MetricsStore(tmp_path / "h.db")
    store.metrics()
    writer, (reader,) = store._writer, store._idle
    del store
    gc.collect()
    for conn in (writer, reader):
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
