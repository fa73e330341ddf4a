"""Lowering a session thread's CPU and I/O priority, on real threads."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

import psutil
import pytest

import wedguard as wg
from wedguard.io import priority
from wedguard.testing import FakeClock

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread on Linux")

T = TypeVar("T")


def in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` on a new thread (priorities changed there die with it)."""
    out: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    if errors:
        raise errors[0]
    return out[0]


def my_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def my_io_class() -> int:
    return int(psutil.Process(threading.get_native_id()).ionice().ioclass)


def restored_or_logged(before: int, after: int, caplog: pytest.LogCaptureFixture) -> None:
    """Back where it was, or (unprivileged) still lowered and said so."""
    if after != before:
        assert "stays at nice" in caplog.text


@linux
def test_lowered_then_restored(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wedguard.priority")

    def body() -> tuple[int, int, int, int, int, wg.priority.Applied]:
        nice0, io0 = my_nice(), my_io_class()
        with priority.lowered(nice=5, ionice=True) as applied:
            nice1, io1 = my_nice(), my_io_class()
        return nice0, nice1, my_nice(), io0, io1, applied

    nice0, nice1, nice2, io0, io1, applied = in_thread(body)
    assert nice1 == min(19, nice0 + 5)
    assert applied.nice == nice1
    assert io1 == psutil.IOPRIO_CLASS_IDLE
    assert applied.ionice == "idle"
    assert applied.note == ""
    restored_or_logged(nice0, nice2, caplog)
    assert io0 != psutil.IOPRIO_CLASS_IDLE


@linux
def test_only_the_calling_thread_changes() -> None:
    main_before = my_nice()
    seen: dict[str, int] = {}
    inside = threading.Event()
    leave = threading.Event()

    def backup() -> None:
        with priority.lowered(nice=10, ionice=False):
            seen["backup"] = my_nice()
            inside.set()
            leave.wait(5)

    t = threading.Thread(target=backup)
    t.start()
    assert inside.wait(5)
    seen["main"] = my_nice()
    leave.set()
    t.join(5)
    assert seen["main"] == main_before
    assert seen["backup"] == min(19, main_before + 10)


@linux
def test_calls_nest_and_the_outermost_restores(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wedguard.priority")

    def body() -> tuple[int, int, int, int]:
        before = my_nice()
        priority.lower(4, ionice=False)
        priority.lower(9, ionice=False)  # nested: the outer values hold
        inner = my_nice()
        priority.restore()
        still = my_nice()
        priority.restore()
        return before, inner, still, my_nice()

    before, inner, still, after = in_thread(body)
    assert inner == still == min(19, before + 4)
    restored_or_logged(before, after, caplog)


@pytest.mark.parametrize("bad", [-1, 20, True, 2.5, "5"])
def test_bad_niceness_is_a_config_error(bad: object) -> None:
    with pytest.raises(wg.ConfigError) as info:
        priority.lower(bad)  # type: ignore[arg-type]
    assert info.value.field == "nice"
    with pytest.raises(wg.ConfigError) as info:
        wg.Guard(calendar=None, sources=[], sinks=[], nice=bad)  # type: ignore[arg-type]
    assert info.value.field == "nice"


def test_ionice_must_be_a_bool() -> None:
    with pytest.raises(wg.ConfigError) as info:
        wg.Guard(calendar=None, sources=[], sinks=[], ionice="yes")  # type: ignore[arg-type]
    assert info.value.field == "ionice"


@linux
def test_a_guard_lowers_the_thread_that_runs_its_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="wedguard.priority")
    guard = wg.Guard(
        rate="off", calendar=None, sources=[], sinks=[], clock=FakeClock(), nice=7, ionice=True
    )

    def body() -> tuple[int, int, int, int, wg.priority.Applied | None]:
        before = my_nice()
        with guard.session("backup") as s:
            s.throttle(1000)
            inside, io_inside = my_nice(), my_io_class()
        return before, inside, io_inside, my_nice(), s.priority

    before, inside, io_inside, after, applied = in_thread(body)
    assert inside == min(19, before + 7)
    assert io_inside == psutil.IOPRIO_CLASS_IDLE
    assert applied is not None
    assert applied.nice == inside
    restored_or_logged(before, after, caplog)


@linux
def test_leaving_a_session_twice_restores_once() -> None:
    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[], clock=FakeClock(), nice=3)

    def body() -> tuple[int, int, int]:
        before = my_nice()
        with priority.lowered(nice=6, ionice=False):  # the host's own lowering
            s = guard.session("backup")
            s.__enter__()
            s.__exit__(None, None, None)
            s.__exit__(None, None, None)  # e.g. a file wrapper's finalizer as well
            still = my_nice()
        return before, still, my_nice()

    before, still, _after = in_thread(body)
    assert still == min(19, before + 6)  # the outer lowering is intact


def test_by_default_a_guard_leaves_threads_alone() -> None:
    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[], clock=FakeClock())

    def body() -> tuple[int, int, wg.priority.Applied | None]:
        before = my_nice()
        with guard.session("backup") as s:
            inside = my_nice()
        return before, inside, s.priority

    before, inside, applied = in_thread(body)
    assert inside == before
    assert applied is None


@linux
async def test_async_sessions_leave_the_event_loop_thread_alone() -> None:
    guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[], nice=10, ionice=True)
    before = my_nice()
    async with guard.session("upload") as s:
        await s.throttle_async(1000)
        assert my_nice() == before
    assert s.priority is None
    guard.close()


CHILD = """
import logging, os, sys, threading
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
from wedguard.io import priority  # everything imported before the privileges go
os.setgid(65534)
os.setuid(65534)
tid = threading.get_native_id()
before = os.getpriority(os.PRIO_PROCESS, tid)
with priority.lowered(nice=5, ionice=False) as applied:
    inside = os.getpriority(os.PRIO_PROCESS, tid)
print("RESULT", before, inside, os.getpriority(os.PRIO_PROCESS, tid), applied.nice)
"""


@linux
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to drop")
def test_an_unprivileged_thread_stays_lowered_and_says_so() -> None:
    import subprocess

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=30
    )
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT"))
    before, inside, after, applied = (int(v) for v in line.split()[1:])
    assert inside == applied == before + 5
    assert after == inside  # an unprivileged process cannot raise its priority back
    assert "stays at nice" in out.stdout


@linux
def test_sched_idle_entered_and_left_nesting_with_nice(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wedguard.priority")

    def body() -> tuple[int | None, int | None, int | None, int | None, priority.Applied]:
        before = priority.scheduler_policy()
        with priority.lowered(nice=0, ionice=False, sched_idle=True) as applied:
            inside = priority.scheduler_policy()
            with priority.lowered(nice=3, ionice=False):  # nested: the outer values hold
                nested = priority.scheduler_policy()
        return before, inside, nested, priority.scheduler_policy(), applied

    before, inside, nested, after, applied = in_thread(body)
    assert inside == nested == os.SCHED_IDLE
    assert applied.sched_idle
    assert applied.nice is None
    assert after == before or "stays in SCHED_IDLE" in caplog.text
    with pytest.raises(wg.ConfigError) as info:
        priority.lower(nice=0, ionice=False, sched_idle="yes")  # type: ignore[arg-type]
    assert info.value.field == "sched_idle"


IDLE_CHILD = """
import logging, os, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
from wedguard.io import priority
os.setgid(65534)
os.setuid(65534)
with priority.lowered(nice=0, ionice=False, sched_idle=True) as applied:
    inside = os.sched_getscheduler(0)
print("RESULT", inside, os.sched_getscheduler(0), int(applied.sched_idle))
"""


@linux
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to drop")
def test_an_unprivileged_thread_enters_sched_idle_and_says_when_it_stays() -> None:
    import subprocess

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", IDLE_CHILD], capture_output=True, text=True, env=env, timeout=30
    )
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT"))
    inside, after, applied = (int(v) for v in line.split()[1:])
    assert inside == os.SCHED_IDLE  # entering needs no privilege
    assert applied == 1
    # leaving needs CAP_SYS_NICE or an RLIMIT_NICE that allows it: back, or said so
    assert after == os.SCHED_OTHER or "stays in SCHED_IDLE" in out.stdout
