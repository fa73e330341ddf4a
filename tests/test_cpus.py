"""Confining a backup to some cores (``cpus``): the value, a session's thread, a
``guard.run`` child and what it starts, the CLI, and a PostgreSQL dump's backend."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wedguard as wg
from wedguard import _checks
from wedguard.errors import ConfigError
from wedguard.io import priority
from wedguard.testing import FakeClock

ALLOWED = frozenset(os.sched_getaffinity(0))
LAST = max(ALLOWED)
SRC = str(Path(__file__).resolve().parent.parent / "src")
AFFINITY = "import json, os; print(json.dumps(sorted(os.sched_getaffinity(0))))"


def _guard(**kwargs: Any) -> wg.Guard:
    return wg.Guard(rate="off", calendar=None, sources=[], sinks=[], clock=FakeClock(), **kwargs)


# -- the value ---------------------------------------------------------------------------------


@given(st.integers(min_value=1, max_value=4096))
def test_a_count_is_the_last_cores_this_process_may_use(n: int) -> None:
    cores = priority.check_cpus(n)
    assert cores == frozenset(sorted(ALLOWED)[-n:])
    assert len(cores) == min(n, len(ALLOWED))
    assert LAST in cores


def test_cpu_numbers_are_kept_as_given() -> None:
    assert priority.check_cpus([LAST]) == {LAST}
    assert priority.check_cpus(ALLOWED) == ALLOWED
    assert priority.check_cpus(None) is None


@pytest.mark.parametrize(
    "bad", [0, -1, True, False, 1.0, "1", b"1", [], set(), ["0"], [True], object()]
)
def test_anything_else_is_refused_naming_the_field(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"^cpus: .* expected a number of cores >= 1"):
        priority.check_cpus(bad)
    with pytest.raises(ConfigError, match=r"^cpus: "):
        _guard(cpus=bad)


def test_a_core_this_process_may_not_use_is_refused_with_the_ones_it_may() -> None:
    with pytest.raises(ConfigError, match=r"cpus: \[4096\] .* may use: \[") as err:
        _guard(cpus=[4096])
    assert str(sorted(ALLOWED)) in str(err.value)


# -- a session's thread ------------------------------------------------------------------------


def test_a_session_confines_its_thread_while_it_runs_and_restores_it() -> None:
    guard = _guard(cpus=1)
    assert guard.cpus == {LAST}
    other: list[set[int]] = []
    started: list[set[int]] = []
    go = threading.Event()

    def before() -> None:  # a thread of the process that was running already
        go.wait(10)
        other.append(os.sched_getaffinity(0))

    t = threading.Thread(target=before)
    t.start()
    with guard.session("photos") as s:
        assert os.sched_getaffinity(0) == {LAST}
        assert s.priority is not None
        assert s.priority.cpus == (LAST,)
        go.set()
        t.join()
        # a thread the session's thread starts is the backup's: it inherits the cores
        worker = threading.Thread(target=lambda: started.append(os.sched_getaffinity(0)))
        worker.start()
        worker.join()
        assert started == [{LAST}]
        with guard.session("inner"):  # nested: the outer one's cores hold
            assert os.sched_getaffinity(0) == {LAST}
        assert os.sched_getaffinity(0) == {LAST}
    assert os.sched_getaffinity(0) == ALLOWED
    assert other == [ALLOWED]  # another thread of the process is left alone
    guard.close()


def test_a_protected_call_runs_confined() -> None:
    guard = _guard(cpus=1)
    seen: list[set[int]] = []

    @guard.protect()
    def upload() -> None:
        seen.append(os.sched_getaffinity(0))

    upload()
    assert seen == [{LAST}]
    assert os.sched_getaffinity(0) == ALLOWED
    guard.close()


SPARE = frozenset(sorted(ALLOWED)[1:]) if len(ALLOWED) > 1 else None
"""A command's cores by default: every core but the first, where there are two or more."""


@pytest.mark.parametrize("cpus", ["auto", None, "all"])
def test_by_default_or_none_a_sessions_thread_stays_where_it_is(cpus: Any) -> None:
    guard = _guard() if cpus == "auto" else _guard(cpus=cpus)
    assert guard.cpus is None
    assert guard.child_cpus == (SPARE if cpus == "auto" else None)
    with guard.session("photos") as s:
        assert os.sched_getaffinity(0) == ALLOWED
        assert s.priority is None or s.priority.cpus is None
    guard.close()


def test_all_but_one_confines_a_sessions_thread_too() -> None:
    guard = _guard(cpus="all-but-one")
    assert guard.cpus == guard.child_cpus == SPARE
    with guard.session("photos"):
        assert os.sched_getaffinity(0) == (SPARE or ALLOWED)
    assert os.sched_getaffinity(0) == ALLOWED
    guard.close()


@pytest.mark.parametrize("bad", ["most", "auto ", 0, -1])
def test_a_bad_guard_cpus_names_auto_among_what_it_takes(bad: Any) -> None:
    with pytest.raises(ConfigError, match=r"^cpus: .*expected 'auto', a number of cores >= 1"):
        _guard(cpus=bad)


@given(st.sets(st.integers(0, 63), min_size=1))
def test_all_but_one_leaves_the_first_core_and_only_it(allowed: set[int]) -> None:
    cores = _checks.cpus("all-but-one", "cpus", frozenset(allowed))
    if len(allowed) == 1:
        assert cores is None  # nothing to leave: not confined
    else:
        assert cores == frozenset(allowed) - {min(allowed)}


def test_lower_and_restore_on_their_own() -> None:
    with priority.lowered(nice=0, ionice=False, cpus=frozenset({LAST})) as applied:
        assert applied.cpus == (LAST,)
        assert os.sched_getaffinity(0) == {LAST}
    assert os.sched_getaffinity(0) == ALLOWED


# -- a child -----------------------------------------------------------------------------------


def _run_affinity(guard: wg.Guard, **kwargs: Any) -> tuple[list[int], list[int], Any]:
    """The child's cores, its own child's, and the report."""
    code = (
        "import subprocess, sys\n"
        f"{AFFINITY}\n"
        "sys.stdout.flush()\n"
        f"subprocess.run([sys.executable, '-c', {AFFINITY!r}])\n"
    )
    done = guard.run([sys.executable, "-c", code], capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, done.stderr
    mine, grandchild = (json.loads(line) for line in done.stdout.splitlines())
    return mine, grandchild, done.report


def test_a_child_and_what_it_starts_run_on_the_guards_cores() -> None:
    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[], cpus=1)
    mine, grandchild, report = _run_affinity(guard)
    assert mine == grandchild == [LAST]
    assert report.cpus == (LAST,)
    assert report.to_dict()["cpus"] == [LAST]
    assert f"confined to cores {LAST}" in str(report)
    assert os.sched_getaffinity(0) == ALLOWED  # the calling thread got its cores back
    guard.close()


def test_a_child_may_ask_for_other_cores_or_none() -> None:
    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[], cpus=1)
    mine, _, report = _run_affinity(guard, cpus=None)
    assert mine == sorted(ALLOWED)
    assert report.cpus is None
    assert report.to_dict()["cpus"] is None
    first = min(ALLOWED)
    mine, _, report = _run_affinity(guard, cpus=[first])
    assert mine == [first]
    assert report.cpus == (first,)
    with pytest.raises(ConfigError, match=r"^cpus: 0 "):
        guard.run([sys.executable, "-c", "pass"], cpus=0)
    guard.close()


def test_a_default_guard_leaves_production_a_core_from_a_childs_first_instruction() -> None:
    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[])
    mine, grandchild, report = _run_affinity(guard)
    assert mine == grandchild == sorted(SPARE or ALLOWED)
    assert report.cpus == (tuple(sorted(SPARE)) if SPARE else None)
    guard.close()


def test_a_guard_with_cpus_all_leaves_a_child_on_every_core() -> None:
    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[], cpus="all")
    mine, grandchild, report = _run_affinity(guard)
    assert mine == grandchild == sorted(ALLOWED)
    assert report.cpus is None
    guard.close()


# -- the CLI -----------------------------------------------------------------------------------


def _cli(*args: str, tmp_path: Any) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEDGUARD_")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["WEDGUARD_RUN_DIR"] = str(tmp_path / "run")
    env.pop("XDG_RUNTIME_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "wedguard", *args],
        capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path,
    )  # fmt: skip


def test_wedguard_run_cpus_confines_the_command(tmp_path: Any) -> None:
    done = _cli("run", "--cpus", "1", "--report", "--", sys.executable, "-c", AFFINITY,
                tmp_path=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [LAST]
    assert f"confined to cores {LAST}" in done.stderr


def test_wedguard_run_refuses_a_bad_count(tmp_path: Any) -> None:
    done = _cli("run", "--cpus", "0", "--", sys.executable, "-c", "pass", tmp_path=tmp_path)
    assert done.returncode == 2
    assert "--cpus: '0' is not valid; expected a number of cores >= 1" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("text", ["+1", " 1", "1_0", "１", "-1", "1.0", ""])
def test_a_count_is_digits_only(text: str) -> None:
    from wedguard.cli.run import _cores

    with pytest.raises(argparse.ArgumentTypeError, match="expected a number of cores >= 1"):
        _cores(text)


@given(st.integers(min_value=1, max_value=10**6))
def test_any_positive_count_in_digits_is_taken(n: int) -> None:
    from wedguard.cli.run import _cores

    assert _cores(str(n)) == n


# -- the configuration file --------------------------------------------------------------------


def test_the_guard_table_takes_cpus_and_renders_it_back() -> None:
    import tomllib

    from wedguard.config import Config

    config = Config.from_dict({"sources": [], "guard": {"cpus": 1}}, path="w.toml")
    assert config.guard.cpus == 1
    with config.assemble(clock=FakeClock()) as built:
        assert built.guard.cpus == {LAST}
    again = Config.from_dict(tomllib.loads(config.render()), path="again.toml")
    assert again.guard.cpus == 1
    listed = Config.from_dict({"sources": [], "guard": {"cpus": [LAST]}}, path="w.toml")
    assert listed.guard.cpus == (LAST,)
    assert Config.from_dict(tomllib.loads(listed.render()), path="a.toml").guard.cpus == (LAST,)
    for bad in (0, "1", [], [4096], True):
        with pytest.raises(ConfigError, match=r"^w\.toml: guard\.cpus: "):
            Config.from_dict({"sources": [], "guard": {"cpus": bad}}, path="w.toml")


def test_a_file_without_cpus_leaves_production_a_core_and_all_turns_it_off() -> None:
    import tomllib

    from wedguard.config import Config

    default = Config.from_dict({"sources": []}, path="w.toml")
    assert default.guard.cpus == "auto"
    with default.assemble(clock=FakeClock()) as built:
        assert built.guard.cpus is None  # the guard Guard() builds
        assert built.guard.child_cpus == SPARE
    assert "cpus" not in tomllib.loads(default.render()).get("guard", {})
    off = Config.from_dict({"sources": [], "guard": {"cpus": "all"}}, path="w.toml")
    with off.assemble(clock=FakeClock()) as built:
        assert built.guard.cpus is built.guard.child_cpus is None
    rendered = tomllib.loads(off.render())
    assert rendered["guard"]["cpus"] == "all"
    assert Config.from_dict(rendered, path="again.toml").guard.cpus == "all"
    with pytest.raises(ConfigError, match=r"expected 'auto', a number of cores"):
        Config.from_dict({"sources": [], "guard": {"cpus": "most"}}, path="w.toml")


def test_wedguard_run_cpus_all_leaves_the_command_on_every_core(tmp_path: Any) -> None:
    done = _cli("run", "--cpus", "all", "--", sys.executable, "-c", AFFINITY, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == sorted(ALLOWED)
    default = _cli("run", "--", sys.executable, "-c", AFFINITY, tmp_path=tmp_path)
    assert default.returncode == 0, default.stderr
    assert json.loads(default.stdout) == sorted(SPARE or ALLOWED)


# -- inside a confined session -----------------------------------------------------------------


def test_inside_a_confined_session_the_process_cores_still_count() -> None:
    guard = _guard(cpus=1)
    with guard.session("photos"):
        assert priority.check_cpus(len(ALLOWED)) == ALLOWED  # not the thread's one core
        assert priority.check_cpus(list(ALLOWED)) == ALLOWED
        assert priority.cores_before() == ALLOWED
    assert priority.cores_before() is None
    guard.close()


def test_the_guards_own_helpers_are_not_confined_with_the_child() -> None:
    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[], cpus=1)
    child = guard.popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        monitor = next(t for t in threading.enumerate() if t.name == f"wedguard-child-{child.pid}")
        assert monitor.native_id is not None
        assert os.sched_getaffinity(monitor.native_id) == ALLOWED  # it pauses the child
        assert os.sched_getaffinity(child.pid) == {LAST}
    finally:
        child.kill("the test is over")
        child.wait()
    guard.close()


def test_a_streamed_command_runs_on_the_guards_cores() -> None:
    import io

    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[], cpus=1)
    out = io.BytesIO()
    guard.stream([sys.executable, "-c", AFFINITY], out)
    assert json.loads(out.getvalue()) == [LAST]
    guard.close()


def test_lower_takes_a_count_as_check_cpus_does() -> None:
    with priority.lowered(nice=0, ionice=False, cpus=1) as applied:
        assert applied.cpus == (LAST,)
    assert os.sched_getaffinity(0) == ALLOWED
    with pytest.raises(ConfigError, match=r"^cpus: 0 "):
        priority.lower(nice=0, ionice=False, cpus=0)


def test_a_childs_bad_cpus_names_the_choices() -> None:
    guard = _guard()
    with pytest.raises(ConfigError, match=r"^cpus: 0 .* expected 'guard', a number of cores"):
        guard.popen([sys.executable, "-c", "pass"], cpus=0)
    guard.close()


def test_the_postgres_source_table_takes_backend_cpus() -> None:
    from wedguard.config import Config

    table = {"type": "postgres", "dsn": "postgresql://app@127.0.0.1:9/app"}
    with pytest.raises(ConfigError, match=r"sources\[0\]\.backend_cpus: 1 .*lower_backends"):
        Config.from_dict({"sources": [{**table, "backend_cpus": 1}]}, path="w.toml")
    with pytest.raises(ConfigError, match=r"sources\[0\]\.backend_cpus: 0 "):
        Config.from_dict(
            {"sources": [{**table, "lower_backends": "pg_dump", "backend_cpus": 0}]},
            path="w.toml",
        )
    config = Config.from_dict(
        {"sources": [{**table, "lower_backends": "pg_dump", "backend_cpus": 1}]}, path="w.toml"
    )
    with config.assemble(clock=FakeClock()) as built:
        (source,) = built.guard.host.settings.sources
        assert source._lowerer.priority.cpus == {LAST}
        assert source._lowerer.priority.nice == 19  # lowered as well


def test_a_session_for_a_child_leaves_its_thread_alone() -> None:
    guard = _guard(cpus=1, nice=5)
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    with guard.session("pg_dump", lower_thread=False) as s:
        assert os.sched_getaffinity(0) == ALLOWED
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before
        assert s.priority is None
    real = wg.Guard(rate="off", calendar=None, sources=[], sinks=[], cpus=1, nice=5)
    child = real.popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:  # guard.popen's caller goes on with its own work, at its own priority
        assert os.sched_getaffinity(0) == ALLOWED
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before
    finally:
        child.kill("the test is over")
        child.wait()
    real.close()
    guard.close()
