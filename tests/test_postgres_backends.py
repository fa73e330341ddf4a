"""The PostgreSQL backend that serves a dump, lowered and restored, against a real server.

What a database operator would check: while ``pg_dump`` runs, the server process that
serves it (and no other) runs at nice 19 in the idle I/O class; afterwards it runs as
before; the dump restores to the same content; and where the system does not allow
the change, the error names the backend, its OS user and what would allow it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest_postgres import APP_PASSWORD, APP_USER, PostgresServer, postgres_server
from wedguard.config import Config
from wedguard.errors import ConfigError
from wedguard.io.priority import set_slice, slice_of
from wedguard.sources import PostgresSource
from wedguard.sources.pg_backends import (
    BackendLowerer,
    BackendPriority,
    BackendPriorityError,
    ForkWatch,
    pid_span,
    split_backends,
)

__all__ = ["postgres_server"]

DB = "backends_src"
FILL = """
CREATE TABLE letters (id int PRIMARY KEY, body text NOT NULL);
INSERT INTO letters SELECT i, repeat(md5(i::text), 20) FROM generate_series(1, 20000) i;
"""


# -- the pure part ---------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=19))
def test_a_niceness_from_0_to_19_is_accepted(nice: int) -> None:
    assert BackendPriority(nice=nice).nice == nice


@given(st.one_of(st.integers().filter(lambda n: not 0 <= n <= 19), st.booleans(), st.floats()))
def test_any_other_niceness_is_refused_naming_the_field(nice: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        BackendPriority(nice=nice)
    assert caught.value.field == "backend_priority.nice"


@pytest.mark.parametrize(
    "kwargs", [{"ionice": "best-effort"}, {"ionice": ""}, {"sched_idle": 1}, {"sched_idle": None}]
)
def test_an_unknown_io_class_or_policy_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        BackendPriority(**kwargs)


@given(st.sets(st.integers(1, 50)), st.sets(st.integers(1, 50)))
def test_split_backends_lowers_each_new_backend_once_and_forgets_ended_ones(
    current: set[int], lowered: set[int]
) -> None:
    new, gone = split_backends(current, lowered)
    assert set(new) | (lowered & current) == current
    assert not set(new) & lowered
    assert set(gone) == lowered - current
    assert new == sorted(new)
    assert gone == sorted(gone)


@given(
    st.integers(2, 5000),
    st.data(),
    st.integers(0, 100),
)
def test_pid_span_lists_each_id_handed_out_once_wrapping_past_pid_max(
    pid_max: int, data: st.DataObject, limit: int
) -> None:
    since = data.draw(st.integers(1, pid_max - 1))
    last = data.draw(st.integers(1, pid_max - 1))
    span = pid_span(since, last, pid_max=pid_max, limit=limit)
    handed_out = (last - since) % (pid_max - 1)  # ids run 1 .. pid_max - 1, then wrap
    if handed_out > limit:
        assert span is None
        return
    assert span is not None
    assert len(span) == len(set(span)) == handed_out
    assert all(1 <= pid < pid_max for pid in span)
    assert since not in span
    if span:
        assert span[-1] == last
        assert span == sorted(span) or last < since  # in order, unless it wrapped


def test_a_fork_watch_sees_its_parents_new_children_only() -> None:
    watch = ForkWatch(os.getppid())  # another process's children: none started by us
    mine = subprocess.Popen(["sleep", "5"])
    try:
        assert watch.new() == []
        own = ForkWatch(os.getpid())
        child = subprocess.Popen(["sleep", "5"])
        try:
            assert own.new() == [child.pid]
            assert own.new() == []  # each child once
        finally:
            child.kill()
            child.wait()
    finally:
        mine.kill()
        mine.wait()


def test_a_fork_watch_says_when_too_many_were_started_to_look_at() -> None:
    watch = ForkWatch(os.getpid(), limit=1)
    children = [subprocess.Popen(["true"]) for _ in range(3)]
    for child in children:
        child.wait()
    assert watch.new() is None  # the caller asks the server for the whole list instead
    assert watch.new() == []


@pytest.mark.parametrize("bad", [0, -1, "fast", True, float("inf"), float("nan")])
def test_a_bad_backend_watch_is_refused_naming_the_field(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"^backend_watch: "):
        PostgresSource("host=/nowhere dbname=x", lower_backends="pg_dump", backend_watch=bad)  # type: ignore[arg-type]


def test_the_source_refuses_a_bad_application_name_or_a_priority_without_one() -> None:
    with pytest.raises(ConfigError) as caught:
        PostgresSource("dbname=x", lower_backends="  ")
    assert caught.value.field == "lower_backends"
    with pytest.raises(ConfigError) as caught:
        PostgresSource("dbname=x", backend_priority=BackendPriority())
    assert caught.value.field == "backend_priority"


def test_a_process_that_is_not_a_postgres_backend_is_never_touched() -> None:
    me = os.getpid()
    before = os.getpriority(os.PRIO_PROCESS, me)
    with pytest.raises(BackendPriorityError) as caught:
        BackendLowerer().update([me])
    assert caught.value.pid == me
    assert "not postgres" in str(caught.value)
    assert os.getpriority(os.PRIO_PROCESS, me) == before
    ended = subprocess.Popen(["true"])
    ended.wait()
    with pytest.raises(BackendPriorityError, match="no such process on this host"):
        BackendLowerer().update([ended.pid])


def test_the_configuration_key_builds_a_lowering_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEDGUARD_TEST_DSN", "host=/nowhere dbname=x")

    def config(name: str) -> Config:
        source = {"type": "postgres", "dsn_env": "WEDGUARD_TEST_DSN", "lower_backends": name}
        return Config.from_dict({"calendar": {"preset": "none"}, "sources": [source]})

    with config("pg_dump").assemble(sinks=[]) as built:
        (db,) = (s for s in built.guard._sources if isinstance(s, PostgresSource))
        assert db.lower_backends == "pg_dump"
    with pytest.raises(ConfigError) as caught:
        config("")
    assert "lower_backends" in caught.value.field


@pytest.mark.parametrize(("written", "watch"), [("50ms", 0.05), (0.2, 0.2), (False, None)])
def test_the_configuration_sets_how_often_new_backends_are_looked_for(
    monkeypatch: pytest.MonkeyPatch, written: object, watch: float | None
) -> None:
    import tomllib

    monkeypatch.setenv("WEDGUARD_TEST_DSN", "host=/nowhere dbname=x")
    source = {"type": "postgres", "dsn_env": "WEDGUARD_TEST_DSN", "lower_backends": "pg_dump"}
    config = Config.from_dict(
        {"calendar": {"preset": "none"}, "sources": [{**source, "backend_watch": written}]}
    )
    with config.assemble(sinks=[]) as built:
        (db,) = (s for s in built.guard._sources if isinstance(s, PostgresSource))
        assert db.backend_watch == watch
    again = Config.from_dict(tomllib.loads(config.render()))  # renders back as it was read
    assert again.render() == config.render()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"lower_backends": "pg_dump", "backend_watch": True}, "a duration > 0"),
        ({"lower_backends": "pg_dump", "backend_watch": 0}, "a duration > 0"),
        ({"backend_watch": "50ms"}, "lower_backends set beside it"),
    ],
)
def test_a_bad_backend_watch_in_the_file_names_the_key(
    options: dict[str, Any], expected: str
) -> None:
    source = {"type": "postgres", "dsn": "host=/nowhere dbname=x", **options}
    with pytest.raises(ConfigError) as caught:
        Config.from_dict({"calendar": {"preset": "none"}, "sources": [source]})
    assert caught.value.field.endswith("sources[0].backend_watch")
    assert expected in str(caught.value)


# -- against the server ----------------------------------------------------------------------


def _dsn(server: PostgresServer, db: str) -> str:
    return f"postgresql://{APP_USER}@127.0.0.1:{server.port}/{db}"


@pytest.fixture(scope="module")
def database(postgres_server: PostgresServer) -> Iterator[str]:
    """A database of about 13 MB of text: a dump of it fills any pipe it writes to."""
    with postgres_server.admin("postgres") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB} OWNER {APP_USER}")
    import psycopg

    with psycopg.connect(_dsn(postgres_server, DB), password=APP_PASSWORD) as conn:
        conn.execute(FILL)
    try:
        yield DB
    finally:
        with postgres_server.admin("postgres") as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def _backends(server: PostgresServer, application_name: str) -> list[int]:
    with server.admin("postgres") as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application_name,)
        ).fetchall()
    return [r[0] for r in rows]


def _wait_for(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)
    return found


def _priority(pid: int) -> tuple[int, int, int]:
    """nice, I/O class, scheduling policy."""
    return (
        os.getpriority(os.PRIO_PROCESS, pid),
        int(psutil.Process(pid).ionice().ioclass),
        os.sched_getscheduler(pid),
    )


@pytest.fixture
def blocked_dump(postgres_server: PostgresServer, database: str) -> Iterator[dict[str, Any]]:
    """``pg_dump -Fc`` writing into a pipe nobody reads yet: it and its backend wait,
    the backend mid-``COPY``. Yields the process and its backend's pid."""
    proc = subprocess.Popen(
        [os.path.join(postgres_server.bindir, "pg_dump"), "-Fc", "-d",
         _dsn(postgres_server, database)],
        env={**os.environ, "PGPASSWORD": APP_PASSWORD}, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        (backend,) = _wait_for(lambda: _backends(postgres_server, "pg_dump"))
        yield {"proc": proc, "backend": backend}
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _restores_to_the_same_rows(server: PostgresServer, dump: bytes, db: str) -> bool:
    new = f"restored_{uuid.uuid4().hex[:12]}"
    with server.admin("postgres") as conn:
        conn.execute(f"CREATE DATABASE {new} OWNER {APP_USER}")
    try:
        done = subprocess.run(
            [os.path.join(server.bindir, "pg_restore"), "--exit-on-error", "--no-owner",
             "-d", _dsn(server, new)],
            input=dump, env={**os.environ, "PGPASSWORD": APP_PASSWORD},
            capture_output=True, timeout=50,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        sums = []
        for name in (db, new):
            with server.admin(name) as conn:
                sums.append(
                    conn.execute(
                        "SELECT count(*), md5(string_agg(md5(t::text), '' ORDER BY id)) "
                        "FROM letters t"
                    ).fetchone()
                )
        return sums[0] == sums[1] and sums[0][0] == 20000
    finally:
        with server.admin("postgres") as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {new} WITH (FORCE)")


def test_the_backend_of_a_running_dump_is_lowered_then_restored_and_the_dump_restores(
    postgres_server: PostgresServer, database: str, blocked_dump: dict[str, Any]
) -> None:
    backend = blocked_dump["backend"]
    before = _priority(backend)
    assert before[0] == 0
    with postgres_server.app() as production:
        other = production.execute("SELECT pg_backend_pid()").fetchone()[0]
        source = PostgresSource(
            _dsn(postgres_server, database), password=APP_PASSWORD, lower_backends="pg_dump"
        )
        try:
            sample = source.sample()
            assert sample["db.backends_lowered"] == 1.0
            assert "db.latency_s" in sample
            assert source.backends_lowered == [backend]
            assert source.backend_error is None
            nice, ioclass, policy = _priority(backend)
            assert nice == 19
            assert ioclass == psutil.IOPRIO_CLASS_IDLE
            assert policy == before[2]
            assert _priority(other) == before  # production's backend is left alone
            assert source.sample()["db.backends_lowered"] == 1.0  # lowered once, kept
        finally:
            source.close()
    assert _priority(backend) == before
    dump, _ = blocked_dump["proc"].communicate(timeout=50)
    assert blocked_dump["proc"].returncode == 0
    assert _restores_to_the_same_rows(postgres_server, dump, database)


def test_sched_idle_is_set_and_restored_when_asked(
    postgres_server: PostgresServer, database: str, blocked_dump: dict[str, Any]
) -> None:
    backend = blocked_dump["backend"]
    before = _priority(backend)
    lowerer = BackendLowerer(BackendPriority(nice=None, ionice=None, sched_idle=True))
    assert lowerer.update([backend]) == [backend]
    assert _priority(backend) == (before[0], before[1], os.SCHED_IDLE)
    assert lowerer.update([backend]) == []  # already lowered
    assert lowerer.restore() == [backend]
    assert _priority(backend) == before
    assert lowerer.lowered == []


def _kernels_own_slice() -> float | None:
    """The slice a new process runs on (the kernel's own)."""
    proc = subprocess.Popen(["sleep", "5"])
    try:
        return slice_of(proc.pid)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(slice_of() is None, reason="per-task CPU slices are Linux 6.12+")
@pytest.mark.parametrize("sched_idle", [False, True], ids=["alone", "with-sched-idle"])
def test_a_short_slice_is_set_and_the_kernels_own_restored(
    postgres_server: PostgresServer,
    database: str,
    blocked_dump: dict[str, Any],
    sched_idle: bool,
) -> None:
    backend = blocked_dump["backend"]
    before = _priority(backend)
    assert set_slice(backend, 0.0005) == ""  # one of its own: not kept
    lowerer = BackendLowerer(
        BackendPriority(nice=None, ionice=None, sched_idle=sched_idle, cpus=None, cpu_slice=0.0001)
    )
    assert lowerer.update([backend]) == [backend]
    assert slice_of(backend) == pytest.approx(0.0001)  # set first: SCHED_IDLE keeps it
    idle = (before[0], before[1], os.SCHED_IDLE)
    assert _priority(backend) == (idle if sched_idle else before)  # nothing else changed
    assert lowerer.restore() == [backend]
    assert _priority(backend) == before
    assert slice_of(backend) == _kernels_own_slice()
    dump, _ = blocked_dump["proc"].communicate(timeout=50)
    assert blocked_dump["proc"].returncode == 0
    assert _restores_to_the_same_rows(postgres_server, dump, database)


@pytest.mark.parametrize("bad", [0.5, 0, "1ms", True])
def test_a_bad_slice_is_refused_naming_the_field(bad: object) -> None:
    with pytest.raises(ConfigError) as caught:
        BackendPriority(cpu_slice=bad)
    assert caught.value.field == "backend_priority.cpu_slice"


def test_cpus_confines_the_backend_to_the_dumps_cores_and_restores_it(
    postgres_server: PostgresServer, database: str, blocked_dump: dict[str, Any]
) -> None:
    backend = blocked_dump["backend"]
    before = os.sched_getaffinity(backend)
    last = max(os.sched_getaffinity(0))
    lowerer = BackendLowerer(BackendPriority(nice=None, ionice=None, cpus=1))
    assert lowerer.update([backend]) == [backend]
    assert os.sched_getaffinity(backend) == {last}  # as Guard(cpus=1) confines pg_dump
    assert _priority(backend)[0] == 0  # nothing else changed
    assert lowerer.restore() == [backend]
    assert os.sched_getaffinity(backend) == before
    dump, _ = blocked_dump["proc"].communicate(timeout=50)
    assert blocked_dump["proc"].returncode == 0
    assert _restores_to_the_same_rows(postgres_server, dump, database)


def test_cores_the_system_refuses_leave_the_backend_as_it_was(
    postgres_server: PostgresServer,
    database: str,
    blocked_dump: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import errno

    backend = blocked_dump["backend"]
    before = _priority(backend)
    real = os.sched_setaffinity

    def outside_the_cpuset(pid: int, cpus: Any) -> None:
        if pid == backend:  # as for a server whose cgroup allows other cores only
            raise OSError(errno.EINVAL, "Invalid argument")
        real(pid, cpus)

    monkeypatch.setattr(os, "sched_setaffinity", outside_the_cpuset)
    lowerer = BackendLowerer(BackendPriority(cpus=1))  # nice 19 and idle I/O first
    with pytest.raises(BackendPriorityError, match=r"Invalid argument \(cpus \["):
        lowerer.update([backend])
    assert _priority(backend) == before  # the nice and I/O class put back too
    assert lowerer.lowered == []


@pytest.mark.parametrize("bad", [0, "1", True, [], [4096]])
def test_a_bad_cpus_is_refused_naming_the_field(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"^backend_priority\.cpus: "):
        BackendPriority(cpus=bad)


def test_a_backend_whose_dump_ended_is_forgotten(
    postgres_server: PostgresServer, database: str, blocked_dump: dict[str, Any]
) -> None:
    source = PostgresSource(
        _dsn(postgres_server, database), password=APP_PASSWORD, lower_backends="pg_dump"
    )
    try:
        assert source.sample()["db.backends_lowered"] == 1.0
        blocked_dump["proc"].communicate(timeout=50)
        _wait_for(lambda: not _backends(postgres_server, "pg_dump"))
        assert source.sample()["db.backends_lowered"] == 0.0
        assert source.backends_lowered == []
    finally:
        source.close()


@contextlib.contextmanager
def _new_dump(server: PostgresServer, db: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A ``pg_dump`` started now, waiting on a pipe nobody reads: it and its backend's pid."""
    proc = subprocess.Popen(
        [os.path.join(server.bindir, "pg_dump"), "-Fc", "-d", _dsn(server, db)],
        env={**os.environ, "PGPASSWORD": APP_PASSWORD}, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        (backend,) = _wait_for(lambda: _backends(server, "pg_dump"))
        yield proc, backend
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        _wait_for(lambda: not _backends(server, "pg_dump"))


def _confining_source(server: PostgresServer, db: str, **kwargs: Any) -> PostgresSource:
    return PostgresSource(
        _dsn(server, db),
        password=APP_PASSWORD,
        lower_backends="pg_dump",
        backend_priority=BackendPriority(nice=None, ionice=None, cpus=1),
        **kwargs,
    )


def test_a_dump_started_between_samples_is_confined_before_the_next_sample(
    postgres_server: PostgresServer, database: str
) -> None:
    last = max(os.sched_getaffinity(0))
    source = _confining_source(postgres_server, database, backend_watch=0.05)
    try:
        assert source.sample()["db.backends_lowered"] == 0.0  # no dump yet; the watch starts
        with postgres_server.app() as production:  # a production connection opened meanwhile
            other = production.execute("SELECT pg_backend_pid()").fetchone()[0]
            with _new_dump(postgres_server, database) as (_proc, backend):
                started = time.monotonic()
                _wait_for(lambda: os.sched_getaffinity(backend) == {last}, timeout=0.9)
                waited = time.monotonic() - started  # no sample was taken in between
                assert source.backends_lowered == [backend]
                assert os.sched_getaffinity(other) == os.sched_getaffinity(0)  # untouched
                assert source.sample()["db.backends_lowered"] == 1.0  # kept, not lowered twice
            assert waited < 0.9
    finally:
        source.close()
    assert not any(t.name.endswith("-watch") and t.is_alive() for t in threading.enumerate())


def test_the_watch_is_stopped_and_its_backend_restored_by_close(
    postgres_server: PostgresServer, database: str
) -> None:
    source = _confining_source(postgres_server, database, backend_watch=0.05)
    source.sample()
    with _new_dump(postgres_server, database) as (proc, backend):
        _wait_for(lambda: source.backends_lowered == [backend], timeout=0.9)
        assert len(os.sched_getaffinity(backend)) == 1
        source.close()
        assert os.sched_getaffinity(backend) == os.sched_getaffinity(0)  # restored
        assert source.backends_lowered == []
        watch = [t for t in threading.enumerate() if t.name == "wedguard-postgres-db-watch"]
        assert not watch
        proc.stdout.read()  # type: ignore[union-attr]
        assert proc.wait(timeout=50) == 0


def test_without_a_watch_a_new_backend_waits_for_the_next_sample(
    postgres_server: PostgresServer, database: str
) -> None:
    last = max(os.sched_getaffinity(0))
    source = _confining_source(postgres_server, database, backend_watch=None)
    try:
        source.sample()
        with _new_dump(postgres_server, database) as (_proc, backend):
            time.sleep(0.5)
            assert os.sched_getaffinity(backend) == os.sched_getaffinity(0)
            assert source.sample()["db.backends_lowered"] == 1.0
            assert os.sched_getaffinity(backend) == {last}
    finally:
        source.close()


def test_the_watch_outlives_a_lost_connection(
    postgres_server: PostgresServer, database: str
) -> None:
    """Fault injection: the source's own backend is terminated under the watch; the next
    sample connects again and a dump started after it is still confined between samples."""
    last = max(os.sched_getaffinity(0))
    source = _confining_source(postgres_server, database, backend_watch=0.05)
    try:
        source.sample()
        own = _wait_for(lambda: _backends(postgres_server, "wedguard"))
        with postgres_server.admin("postgres") as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) pid", (own,))
        with _new_dump(postgres_server, database) as (_proc, backend):
            time.sleep(0.3)  # the watch asks on a dead connection and goes on
            _wait_for(lambda: "db.latency_s" in source.sample(), timeout=10)  # connected again
            assert source.backends_lowered == [backend]  # that sample lowered this one
        with _new_dump(postgres_server, database) as (_proc, backend):
            _wait_for(lambda: os.sched_getaffinity(backend) == {last}, timeout=0.9)
    finally:
        source.close()


def test_a_backend_in_a_cpuset_apart_from_the_dumps_cores_is_lowered_not_confined(
    postgres_server: PostgresServer, database: str, blocked_dump: dict[str, Any]
) -> None:
    """As for a server whose cgroup allows it the first core only: the default
    ``"all-but-one"`` has no core in common with it, and the backend is still niced."""
    backend = blocked_dump["backend"]
    first = min(os.sched_getaffinity(0))
    os.sched_setaffinity(backend, {first})
    lowerer = BackendLowerer(BackendPriority())
    assert lowerer.update([backend]) == [backend]
    assert os.sched_getaffinity(backend) == {first}  # left where the server allows it
    assert _priority(backend)[0] == 19
    assert lowerer.restore() == [backend]
    assert _priority(backend)[0] == 0
    os.sched_setaffinity(backend, os.sched_getaffinity(0))


def test_a_backend_lowered_by_the_watch_is_kept_by_a_sample_that_read_before_it(
    postgres_server: PostgresServer, database: str, blocked_dump: dict[str, Any]
) -> None:
    backend = blocked_dump["backend"]
    lowerer = BackendLowerer(BackendPriority(nice=None, ionice=None, cpus=1))
    read_before = time.monotonic()  # a sample's list, read before the backend was lowered
    assert lowerer.add([backend]) == [backend]
    assert lowerer.add([backend]) == []
    assert lowerer.update([], seen_at=read_before) == []
    assert lowerer.lowered == [backend]  # kept: the list was older than the lowering
    assert lowerer.update([], seen_at=time.monotonic()) == []
    assert lowerer.lowered == []  # a newer list without it: ended, forgotten
    assert lowerer.restore() == []
    os.sched_setaffinity(backend, os.sched_getaffinity(0))


def _as_nobody(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``work`` in a child process with the rights of the OS user ``nobody``
    (this process runs as root); what it returned."""
    import pwd

    entry = pwd.getpwnam("nobody")
    read, write = os.pipe()
    with warnings.catch_warnings():  # forking a process with threads: the child only
        warnings.simplefilter("ignore", DeprecationWarning)  # runs ``work`` and exits
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.setgroups([])
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            os.write(write, json.dumps(work()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return dict(json.loads(out))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_without_the_right_to_lower_it_the_error_says_what_is_missing(
    postgres_server: PostgresServer,
    database: str,
    blocked_dump: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caught = caplog
    backend = blocked_dump["backend"]
    before = _priority(backend)
    dsn = _dsn(postgres_server, database)

    def attempt() -> dict[str, Any]:
        out: dict[str, Any] = {}
        caught.clear()
        try:
            BackendLowerer().update([backend])
        except BackendPriorityError as exc:
            out["raised"] = {"message": str(exc), "pid": exc.pid, "owner": exc.owner}
        source = PostgresSource(dsn, password=APP_PASSWORD, lower_backends="pg_dump")
        out["sample"] = dict(source.sample())
        out["backend_error"] = source.backend_error
        source.close()
        out["warnings"] = [r.getMessage() for r in caught.records]
        return out

    got = _as_nobody(attempt)
    server_user = psutil.Process(backend).username()
    raised = got["raised"]
    assert raised["pid"] == backend
    assert raised["owner"] == server_user
    assert f"PostgreSQL backend {backend} (run by the OS user {server_user!r})" in raised["message"]
    assert "Operation not permitted" in raised["message"]
    assert f"run the guard as root, as the OS user {server_user!r}" in raised["message"]
    # the source goes on measuring and says why the backends stay as they are
    assert got["sample"]["db.backends_lowered.error"] == 1.0
    assert "db.latency_s" in got["sample"]
    assert "run the guard as root" in got["backend_error"]
    assert APP_PASSWORD not in got["backend_error"]
    # nothing was changed, so nothing is said to stay lowered
    assert not [w for w in got["warnings"] if "stays lowered" in w]
    assert [w for w in got["warnings"] if "cannot lower the priority" in w]
    assert _priority(backend) == before
