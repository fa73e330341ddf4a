"""A task's CPU slice, set and read on real processes.

What a user of ``set_slice`` checks: the slice a process reads back is the one asked
for, nothing else about it changed (its niceness, its policy), what it starts runs on
the same slice, None gives the kernel's own back, and what cannot be done is said, not
raised: another user's process, a real-time task, a process that is gone, a kernel
without per-task slices.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wedguard import _slice
from wedguard.errors import ConfigError
from wedguard.io.priority import check_slice, set_slice, slice_of

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
needs_slices = pytest.mark.skipif(slice_of() is None, reason="per-task CPU slices: Linux 6.12+")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


# -- the pure part ---------------------------------------------------------------------------


@given(st.floats(min_value=0.0001, max_value=0.1))
def test_a_slice_from_a_tenth_of_a_millisecond_to_a_tenth_of_a_second_is_taken(
    seconds: float,
) -> None:
    assert check_slice(seconds) == seconds


@given(
    st.one_of(
        st.floats().filter(lambda x: not 0.0001 <= x <= 0.1),
        st.booleans(),
        st.text(max_size=5),
        st.just(0),
    )
)
def test_any_other_slice_is_refused_naming_the_field_and_the_bounds(bad: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        check_slice(bad, "guard.slice")
    assert caught.value.field == "guard.slice"
    assert "seconds from 0.0001 to 0.1, or None" in str(caught.value)


def test_none_is_the_kernels_own_slice() -> None:
    assert check_slice(None) is None


# -- real processes --------------------------------------------------------------------------


@needs_slices
def test_the_slice_read_back_is_the_one_set_and_nothing_else_changes(
    sleeper: subprocess.Popen[bytes],
) -> None:
    default = slice_of(sleeper.pid)
    assert default is not None
    os.setpriority(os.PRIO_PROCESS, sleeper.pid, 7)
    os.sched_setscheduler(sleeper.pid, os.SCHED_BATCH, os.sched_param(0))
    assert set_slice(sleeper.pid, 0.00025) == ""
    assert slice_of(sleeper.pid) == pytest.approx(0.00025)
    assert os.getpriority(os.PRIO_PROCESS, sleeper.pid) == 7
    assert os.sched_getscheduler(sleeper.pid) == os.SCHED_BATCH
    assert set_slice(sleeper.pid, None) == ""
    assert slice_of(sleeper.pid) == default  # the kernel's own again


@needs_slices
def test_what_a_process_starts_after_its_slice_was_set_runs_on_it() -> None:
    code = textwrap.dedent(
        """
        import subprocess, sys, threading
        from wedguard.io.priority import set_slice, slice_of
        assert set_slice(None, 0.0003) == ""
        seen = []
        t = threading.Thread(target=lambda: seen.append(slice_of()))
        t.start(); t.join()
        child = subprocess.run(
            [sys.executable, "-c", "from wedguard.io.priority import slice_of; print(slice_of())"],
            capture_output=True, text=True, check=True,
        )
        print(seen[0], child.stdout.strip())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    thread, child = map(float, done.stdout.split())
    assert thread == pytest.approx(0.0003)
    assert child == pytest.approx(0.0003)


@needs_slices
def test_a_real_time_task_keeps_its_policy_and_the_note_says_why(
    sleeper: subprocess.Popen[bytes],
) -> None:
    try:
        os.sched_setscheduler(sleeper.pid, os.SCHED_FIFO, os.sched_param(1))
    except PermissionError:
        pytest.fail("the suite runs as root (.ci/run); SCHED_FIFO was refused")
    note = set_slice(sleeper.pid, 0.0002)
    assert "takes no slice (SCHED_OTHER or SCHED_BATCH)" in note
    assert os.sched_getscheduler(sleeper.pid) == os.SCHED_FIFO
    assert slice_of(sleeper.pid) is None


@needs_slices
def test_a_task_in_sched_idle_takes_no_slice_and_one_set_before_is_kept(
    sleeper: subprocess.Popen[bytes],
) -> None:
    os.sched_setscheduler(sleeper.pid, os.SCHED_IDLE, os.sched_param(0))
    default = slice_of(sleeper.pid)
    note = set_slice(sleeper.pid, 0.0002)
    assert "takes no slice" in note
    assert slice_of(sleeper.pid) == default  # said, and nothing changed
    other = subprocess.Popen(["sleep", "60"])
    try:
        assert set_slice(other.pid, 0.0002) == ""
        os.sched_setscheduler(other.pid, os.SCHED_IDLE, os.sched_param(0))
        assert slice_of(other.pid) == pytest.approx(0.0002)
    finally:
        other.kill()
        other.wait()


def test_reset_on_fork_is_kept(sleeper: subprocess.Popen[bytes]) -> None:
    attr = _slice._sched_attr(sleeper.pid)
    attr.flags |= 0x01  # SCHED_FLAG_RESET_ON_FORK
    attr.size = 48
    assert _slice.libc().syscall(_slice._syscalls()[0], sleeper.pid, ctypes.byref(attr), 0) == 0
    set_slice(sleeper.pid, 0.0002)
    assert _slice._sched_attr(sleeper.pid).flags & 0x01


def test_a_process_that_is_gone_is_said_not_raised() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert slice_of(proc.pid) is None
    assert set_slice(proc.pid, 0.0002) == "no CPU slice set: No such process"


@needs_slices
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_another_users_process_is_left_and_the_note_says_why(
    sleeper: subprocess.Popen[bytes],
) -> None:
    nobody = pwd.getpwnam("nobody")
    before = slice_of(sleeper.pid)
    read, write = os.pipe()
    with warnings.catch_warnings():  # forking a process with threads: the child only
        warnings.simplefilter("ignore", DeprecationWarning)  # asks and exits
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            os.write(write, set_slice(sleeper.pid, 0.0002).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        note = f.read().decode()
    os.waitpid(pid, 0)
    assert note == "no CPU slice set: Operation not permitted"
    assert slice_of(sleeper.pid) == before


def test_a_kernel_without_per_task_slices_is_said_once_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # before Linux 6.12 sched_getattr reads a normal task's runtime as 0
    real = _slice._sched_attr

    def old_kernel(tid: int) -> Any:
        attr = real(tid)
        attr.runtime = 0
        return attr

    monkeypatch.setattr(_slice, "_sched_attr", old_kernel)
    assert slice_of() is None
    assert set_slice(None, 0.0002) == "the kernel has no per-task CPU slice (Linux 6.12+)"
    assert set_slice(None, None) == ""
