"""guard.run / guard.popen: real children, real time, each test a few seconds at most."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import psutil
import pytest

import wedguard as wg
from wedguard.io.freezing import _CgroupFreezer
from wedguard.io.process import GuardedProcess, run_guarded
from wedguard.levels import Level
from wedguard.testing import RecordingSink

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups and signals")

# A child writing numbered lines with flush; on SIGTERM it writes "got SIGTERM" and
# exits 0 (so a stopped child that is never resumed could not answer).
WRITER = r"""
import signal, sys, time
def on_term(signum, frame):
    sys.stdout.write("got SIGTERM\n"); sys.stdout.flush(); sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
count = int(sys.argv[1]) if len(sys.argv) > 1 else 10**9
pause = float(sys.argv[2]) if len(sys.argv) > 2 else 0.002
width = int(sys.argv[3]) if len(sys.argv) > 3 else 20
pad = "x" * width
for i in range(count):
    sys.stdout.write(f"{i:08d} {pad}\n"); sys.stdout.flush()
    time.sleep(pause)
"""


@pytest.fixture
def writer(tmp_path: Path) -> Path:
    path = tmp_path / "writer.py"
    path.write_text(WRITER)
    return path


def quiet_guard(**kwargs: Any) -> wg.Guard:
    kwargs.setdefault("rate", "off")
    kwargs.setdefault("calendar", None)
    kwargs.setdefault("sources", [])
    kwargs.setdefault("sinks", [])
    return wg.Guard(**kwargs)


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def wait_for(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def is_stopped(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_STOPPED
    except psutil.NoSuchProcess:
        return False


# -- passing through what subprocess.run passes through -----------------------------------


def test_exit_code_and_output_pass_through() -> None:
    """returncode, stdout, stderr, input, text, cwd and env behave as subprocess.run's."""
    guard = quiet_guard()
    code = (
        "import os, sys; data = sys.stdin.read(); "
        "print(data.upper(), os.getcwd(), os.environ['WG_TEST']); "
        "print('to stderr', file=sys.stderr); sys.exit(7)"
    )
    done = guard.run(
        [sys.executable, "-c", code],
        input="hello",
        capture_output=True,
        text=True,
        cwd="/",
        env={**os.environ, "WG_TEST": "yes"},
    )
    assert isinstance(done, subprocess.CompletedProcess)
    assert done.returncode == 7
    assert done.stdout == "HELLO / yes\n"
    assert done.stderr == "to stderr\n"
    assert done.report.returncode == 7
    assert done.report.argv[0] == sys.executable
    with pytest.raises(subprocess.CalledProcessError) as info:
        guard.run([sys.executable, "-c", "raise SystemExit(3)"], check=True)
    assert info.value.returncode == 3


def test_stdout_to_a_file_and_binary_capture(tmp_path: Path) -> None:
    guard = quiet_guard()
    out = tmp_path / "out.bin"
    with out.open("wb") as f:
        done = guard.run([sys.executable, "-c", "import sys; sys.stdout.write('abc')"], stdout=f)
    assert done.stdout is None
    assert out.read_bytes() == b"abc"
    done = guard.run([sys.executable, "-c", "print('x')"], stdout=subprocess.PIPE)
    assert done.stdout == b"x\n"


def test_timeout_kills_the_child_and_raises(reap: list[int]) -> None:
    guard = quiet_guard()
    code = "import os, time; print(os.getpid(), flush=True); time.sleep(30)"
    with pytest.raises(subprocess.TimeoutExpired) as info:
        guard.run([sys.executable, "-c", code], timeout=1.0, capture_output=True)
    pid = int(info.value.stdout.split()[0])
    reap.append(pid)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert guard.active_sessions == 0


def test_a_session_is_held_while_the_child_runs(writer: Path) -> None:
    """The child takes a concurrency slot named after it; the slot is freed after."""
    guard = quiet_guard()
    with guard.popen([sys.executable, str(writer), "5"], stdout=subprocess.DEVNULL) as child:
        assert guard.active_sessions == 1
        assert child.name == Path(sys.executable).name
        child.wait(10)
    assert guard.active_sessions == 0


# -- priority -----------------------------------------------------------------------------


def test_child_is_niced_and_in_the_idle_io_class(writer: Path) -> None:
    guard = quiet_guard()
    base = os.getpriority(os.PRIO_PROCESS, 0)
    with guard.popen([sys.executable, str(writer), "50"], stdout=subprocess.DEVNULL) as child:
        proc = psutil.Process(child.pid)
        assert proc.nice() == min(19, base + 10)
        if hasattr(psutil, "IOPRIO_CLASS_IDLE"):
            assert proc.ionice().ioclass == psutil.IOPRIO_CLASS_IDLE
        child.wait(10)
    report = child.report()
    assert report.nice == min(19, base + 10)
    assert report.ionice == ("idle" if hasattr(psutil, "IOPRIO_CLASS_IDLE") else None)


def test_priority_degrades_quietly_and_says_so(
    writer: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the privilege the child still runs; the report and decision say why."""

    def refuse(*args: Any) -> None:
        raise PermissionError(1, "Operation not permitted")

    def refuse_ionice(self: psutil.Process, *args: Any) -> None:
        raise psutil.AccessDenied(self.pid)

    monkeypatch.setattr(os, "setpriority", refuse)
    monkeypatch.setattr(psutil.Process, "ionice", refuse_ionice)
    guard = quiet_guard()
    with guard.popen([sys.executable, str(writer), "5"], stdout=subprocess.DEVNULL) as child:
        reasons = child.decision().reasons
        child.wait(10)
    report = child.report()
    assert report.returncode == 0
    assert report.nice is None
    assert report.ionice is None
    assert any(n.startswith("not niced") for n in report.notes)
    assert any("idle I/O class not allowed" in n for n in report.notes)
    assert any("not niced" in r for r in reasons)


# -- pausing --------------------------------------------------------------------------------


def test_stop_pauses_the_child_and_resume_resumes_it(
    writer: Path, tmp_path: Path, reap: list[int]
) -> None:
    """No progress while the guard is stopped; progress again after resume."""
    out = tmp_path / "out.txt"
    guard = quiet_guard()
    with out.open("wb") as f, guard.popen([sys.executable, str(writer)], stdout=f) as child:
        reap.append(child.pid)
        wait_for(lambda: lines(out) > 20)
        guard.stop("maintenance")
        wait_for(lambda: child.stopped and is_stopped(child.pid))
        assert child.paused_cause == "stop"
        time.sleep(0.1)
        before = lines(out)
        time.sleep(0.6)
        assert lines(out) == before, "the child made progress while stopped"
        guard.resume()
        wait_for(lambda: lines(out) > before + 20)
        assert not is_stopped(child.pid)
        child.abort("done")
        child.wait(10)
    report = child.report()
    assert report.pauses >= 1
    assert report.paused["stop"] >= 0.6
    assert report.freeze in ("signal", "cgroup")


@attrs.frozen
class _Window:
    level: Level
    rate: float | None
    start: datetime
    end: datetime
    reason: str = "test"
    cpu_share: float | None = None


class SwitchCalendar:
    """A calendar whose level the test sets; windows last 50 ms so it is re-read."""

    def __init__(self) -> None:
        self.level = Level.OPEN

    def at(self, when: datetime) -> _Window:
        return _Window(self.level, None, when, when + timedelta(seconds=0.05))


def test_blackout_pauses_the_child(writer: Path, tmp_path: Path, reap: list[int]) -> None:
    out = tmp_path / "out.txt"
    cal = SwitchCalendar()
    guard = quiet_guard(calendar=cal)
    with out.open("wb") as f, guard.popen([sys.executable, str(writer)], stdout=f) as child:
        reap.append(child.pid)
        wait_for(lambda: lines(out) > 10)
        cal.level = Level.BLACKOUT
        wait_for(lambda: child.paused_cause == "calendar")
        wait_for(lambda: is_stopped(child.pid))
        before = lines(out)
        time.sleep(0.4)
        assert lines(out) == before
        cal.level = Level.OPEN
        wait_for(lambda: lines(out) > before + 10)
        child.abort("done")
        child.wait(10)
    assert child.report().paused["calendar"] > 0.3


class SwitchAnalyzer:
    """An analyser whose verdict the test sets."""

    def __init__(self) -> None:
        self.verdict = wg.Verdict.OK

    def assess(self, sample: Any, level: Level = Level.OPEN) -> Any:
        verdict = self.verdict
        return type("A", (), {"verdict": verdict, "reasons": ("api +40 %",)})()


def test_halt_pauses_the_child(writer: Path, tmp_path: Path, reap: list[int]) -> None:
    out = tmp_path / "out.txt"
    analyzer = SwitchAnalyzer()
    guard = quiet_guard(
        sources=[wg.testing.ScriptedSource([{"api.latency_s": 0.1}])],
        analyzer=analyzer,
        controller=None,
        sample_interval=0.05,
    )
    with out.open("wb") as f, guard.popen([sys.executable, str(writer)], stdout=f) as child:
        reap.append(child.pid)
        wait_for(lambda: lines(out) > 10)
        analyzer.verdict = wg.Verdict.HALT
        wait_for(lambda: child.paused_cause == "impact")
        wait_for(lambda: is_stopped(child.pid))
        analyzer.verdict = wg.Verdict.OK
        wait_for(lambda: child.paused_cause is None)
        before = lines(out)
        wait_for(lambda: lines(out) > before + 10)
        child.abort("done")
        child.wait(10)
    assert child.report().paused["impact"] > 0


def test_a_throttle_without_a_byte_budget_slows_the_child_from_its_own_rate(
    writer: Path, tmp_path: Path, reap: list[int]
) -> None:
    """With ``rate="off"`` the controller's first cut starts from the rate the backup
    achieved. A child's I/O counts toward its session while it runs, so a THROTTLE
    halves the child's speed instead of pacing it at a byte or so a second."""
    out = tmp_path / "out.txt"
    analyzer = SwitchAnalyzer()
    guard = quiet_guard(
        sources=[wg.testing.ScriptedSource([{"api.latency_s": 0.1}])],
        analyzer=analyzer,
        sample_interval=0.1,
    )
    argv = [sys.executable, str(writer), str(10**9), "0.001", "990"]  # about 1 MB/s
    with out.open("wb") as f, guard.popen(argv, stdout=f) as child:
        reap.append(child.pid)
        wait_for(lambda: out.stat().st_size > 100_000, timeout=10)
        time.sleep(0.5)  # a few samples see what the child achieves
        analyzer.verdict = wg.Verdict.THROTTLE
        wait_for(lambda: guard.decision().rate < math.inf)
        allowed = guard.decision().rate
        time.sleep(0.3)
        s0, t0 = out.stat().st_size, time.monotonic()
        time.sleep(1.5)
        s1, t1 = out.stat().st_size, time.monotonic()
        child.abort("done")
        child.wait(10)
    assert allowed > 50_000, f"allowed {allowed:.1f} B/s"
    assert (s1 - s0) / (t1 - t0) > 25_000


def test_a_paused_guard_stops_the_child_from_the_start(writer: Path, reap: list[int]) -> None:
    guard = quiet_guard()
    guard.hold("not yet")
    child = guard.popen([sys.executable, str(writer)], stdout=subprocess.DEVNULL)
    reap.append(child.pid)
    try:
        assert child.stopped
        wait_for(lambda: is_stopped(child.pid))
        guard.release_hold()
        wait_for(lambda: not child.stopped)
        assert not is_stopped(child.pid)
    finally:
        child.abort("done")
        child.wait(10)
        child.close()


# -- rate ----------------------------------------------------------------------------------


def test_child_io_is_duty_cycled_to_the_guard_rate(
    writer: Path, tmp_path: Path, reap: list[int]
) -> None:
    """The only long test: 200 kB/s for ~5 s, within +-10 %, from the child's own output.

    The child alone would write about 1 MB/s (1000-byte lines every 0.5 ms)."""
    rate = 200_000.0
    out = tmp_path / "out.txt"
    guard = quiet_guard(rate=rate)
    argv = [sys.executable, str(writer), str(10**9), "0.0005", "990"]
    with out.open("wb") as f, guard.popen(argv, stdout=f) as child:
        reap.append(child.pid)
        # interpreter start-up reads count too: measure once the child writes
        wait_for(lambda: out.stat().st_size > 0, timeout=10)
        time.sleep(0.5)
        s0, t0 = out.stat().st_size, time.monotonic()
        time.sleep(5.0)
        s1, t1 = out.stat().st_size, time.monotonic()
        child.abort("done")
        child.wait(10)
    measured = (s1 - s0) / (t1 - t0)
    assert rate * 0.9 <= measured <= rate * 1.1, f"{measured:.0f} B/s against {rate:.0f}"
    report = child.report()
    assert report.paused["rate"] > 2.0
    assert report.io_counter in ("bytes", "chars")


def test_io_rate_cap_and_live_rate_change(writer: Path, tmp_path: Path, reap: list[int]) -> None:
    """io_rate caps the child under the guard's rate; set_rate applies live."""
    out = tmp_path / "out.txt"
    guard = quiet_guard(rate="20kB/s")
    argv = [sys.executable, str(writer), str(10**9), "0.0005", "990"]
    with out.open("wb") as f, guard.popen(argv, stdout=f, io_rate="1MB/s") as child:
        reap.append(child.pid)
        wait_for(lambda: child.paused_cause == "rate")
        assert any("20 kB/s" in r for r in child.reasons())
        guard.set_rate("off")
        wait_for(lambda: any("1 MB/s" in r for r in child.reasons()))
        child.abort("done")
        child.wait(10)


def test_cpu_share_caps_a_busy_child_at_peak(reap: list[int]) -> None:
    """A CPU-bound child at PEAK with a 5 % share is stopped for CPU most of the time."""
    cal = SwitchCalendar()
    cal.level = Level.PEAK
    guard = quiet_guard(calendar=cal)
    busy = [sys.executable, "-c", "while True: pass"]
    with guard.popen(busy, cpu_share=0.05) as child:
        reap.append(child.pid)
        wait_for(lambda: child.paused_cause == "cpu")
        time.sleep(1.0)
        report = child.report()
        child.abort("done")
        child.wait(10)
    assert report.paused.get("cpu", 0) > 0.5
    assert any("CPU capped" in r for r in child.reasons())


# -- maximum pause -------------------------------------------------------------------------


def test_aborted_after_the_maximum_pause(writer: Path, tmp_path: Path) -> None:
    """A tiny max_pause: an alert, then the child is resumed and ended (it answers
    SIGTERM itself, so it was resumed first)."""
    sink = RecordingSink()
    guard = quiet_guard(sinks=[sink])
    out = tmp_path / "out.txt"

    def stop_when_running() -> None:
        wait_for(lambda: lines(out) > 5)
        guard.stop("long maintenance")

    threading.Thread(target=stop_when_running, daemon=True).start()
    with out.open("wb") as f:
        done = guard.run(
            [sys.executable, str(writer)],
            stdout=f,
            max_pause=0.3,
            on_max_pause="abort",
            kill_grace=2.0,
            timeout=20,
        )
    assert done.returncode == 0
    assert out.read_bytes().endswith(b"got SIGTERM\n")
    assert "max_pause" in done.report.aborted
    assert done.report.longest_pause >= 0.3
    alerts = [e for e in sink.of_kind("alert") if "max-pause" in e.key]
    assert alerts
    assert alerts[0].severity is wg.Severity.HIGH
    assert alerts[0].labels["process"] == done.report.name


def test_maximum_pause_alerts_then_resolves_without_abort(writer: Path, reap: list[int]) -> None:
    sink = RecordingSink()
    guard = quiet_guard(sinks=[sink])
    guard.stop("maintenance")
    with guard.popen([sys.executable, str(writer)], stdout=subprocess.DEVNULL, max_pause=0.2) as c:
        reap.append(c.pid)
        wait_for(lambda: any("max-pause" in e.key for e in sink.of_kind("alert")))
        assert c.returncode is None
        assert is_stopped(c.pid)
        guard.resume()
        wait_for(lambda: any(not e.firing for e in sink.of_kind("alert") if "max-pause" in e.key))
        c.abort("done")
        c.wait(10)
    assert c.report().aborted == "done"


# -- never left stopped ---------------------------------------------------------------------


def test_never_left_stopped_when_the_guarding_code_raises(
    writer: Path, tmp_path: Path, reap: list[int]
) -> None:
    """The child is resumed before it is ended: it answers SIGTERM itself."""
    out = tmp_path / "out.txt"
    guard = quiet_guard()
    seen: list[GuardedProcess] = []

    def host() -> None:
        with out.open("wb") as f, guard.popen([sys.executable, str(writer)], stdout=f) as child:
            seen.append(child)
            reap.append(child.pid)
            wait_for(lambda: lines(out) > 5)
            guard.stop("maintenance")
            wait_for(lambda: child.stopped and is_stopped(child.pid))
            raise RuntimeError("host failed")

    with pytest.raises(RuntimeError, match="host failed"):
        host()
    child = seen[0]
    assert child.returncode == 0
    assert out.read_bytes().endswith(b"got SIGTERM\n")
    assert not is_stopped(child.pid)
    assert guard.active_sessions == 0


PARENT_RAISES = r"""
import subprocess, sys, threading, time
import wedguard as wg
guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[])
guard.stop("maintenance")
out = open(sys.argv[2], "wb")
started = []
def run():
    guard.run(
        [sys.executable, sys.argv[1]],
        stdout=out,
        stderr=subprocess.DEVNULL,
        forward_signals=False,
    )
threading.Thread(target=run, daemon=True).start()
from wedguard.io.process import guarded_children
while not guarded_children(guard) or not guarded_children(guard)[0].stopped:
    time.sleep(0.01)
print(guarded_children(guard)[0].pid, flush=True)
time.sleep(0.2)
raise RuntimeError("the host crashed")
"""


def test_never_left_stopped_when_the_guarding_process_exits_on_an_error(
    writer: Path, tmp_path: Path, reap: list[int]
) -> None:
    """An unhandled exception ends the guarding interpreter; atexit resumes the child."""
    script = tmp_path / "parent.py"
    script.write_text(PARENT_RAISES)
    out = tmp_path / "out.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, str(script), str(writer), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert "the host crashed" in done.stderr
    pid = int(done.stdout.split()[0])
    reap.append(pid)
    wait_for(lambda: psutil.pid_exists(pid) and not is_stopped(pid))
    before = lines(out)
    wait_for(lambda: lines(out) > before + 5)


PARENT_KILLED = r"""
import os, signal, subprocess, sys, time
import wedguard as wg
guard = wg.Guard(rate="off", calendar=None, sources=[], sinks=[])
out = open(sys.argv[2], "wb")
child = guard.popen(
    [sys.executable, sys.argv[1]], stdout=out, stderr=subprocess.DEVNULL, watchdog=True
)
while os.path.getsize(sys.argv[2]) < 100:
    time.sleep(0.01)
guard.stop("maintenance")
while not child.stopped:
    time.sleep(0.01)
print(child.pid, flush=True)
time.sleep(0.2)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_watchdog_resumes_the_child_after_a_sigkill_of_the_guarding_process(
    writer: Path, tmp_path: Path, reap: list[int]
) -> None:
    """SIGKILL runs no handler; the watchdog sees its pipe close and resumes the child."""
    script = tmp_path / "parent.py"
    script.write_text(PARENT_KILLED)
    out = tmp_path / "out.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, str(script), str(writer), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode == -signal.SIGKILL
    pid = int(done.stdout.split()[0])
    reap.append(pid)
    wait_for(lambda: psutil.pid_exists(pid) and not is_stopped(pid))
    before = lines(out)
    wait_for(lambda: lines(out) > before + 5)


def test_watchdog_ends_quietly_with_the_child(writer: Path) -> None:
    guard = quiet_guard()
    with guard.popen(
        [sys.executable, str(writer), "3"], stdout=subprocess.DEVNULL, watchdog=True
    ) as child:
        assert child._watchdog is not None
        helper = child._watchdog.helper
        child.wait(10)
    assert helper.returncode == 0
    assert child._watchdog is None


def test_termination_signals_are_forwarded_after_resuming(writer: Path, tmp_path: Path) -> None:
    """SIGTERM to the guarding process: the stopped child is resumed and gets SIGTERM."""
    out = tmp_path / "out.txt"
    guard = quiet_guard()
    previous = signal.getsignal(signal.SIGTERM)
    pid: list[int] = []

    def later() -> None:
        from wedguard.io.process import guarded_children

        wait_for(lambda: bool(guarded_children(guard)))
        child = guarded_children(guard)[0]
        pid.append(child.pid)
        wait_for(lambda: lines(out) > 5)  # its SIGTERM handler is in place
        guard.stop("maintenance")
        wait_for(lambda: child.stopped and is_stopped(child.pid))
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=later, daemon=True).start()
    with out.open("wb") as f:
        done = guard.run([sys.executable, str(writer)], stdout=f, timeout=20)
    assert done.returncode == 0
    assert done.report.signals == ("SIGTERM",)
    assert out.read_bytes().endswith(b"got SIGTERM\n")
    assert signal.getsignal(signal.SIGTERM) == previous


def test_signals_not_forwarded_when_asked(writer: Path) -> None:
    guard = quiet_guard()
    previous = signal.getsignal(signal.SIGTERM)
    with guard.popen(
        [sys.executable, str(writer), "3"], stdout=subprocess.DEVNULL, forward_signals=False
    ) as child:
        assert signal.getsignal(signal.SIGTERM) == previous
        child.wait(10)


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"nice": -1}, "nice"),
        ({"nice": 20}, "nice"),
        ({"nice": True}, "nice"),
        ({"io_rate": "fast"}, "io_rate"),
        ({"io_rate": 0}, "io_rate"),
        ({"cpu_share": 0}, "cpu_share"),
        ({"cpu_share": 1.5}, "cpu_share"),
        ({"max_pause": 0}, "max_pause"),
        ({"max_pause": "soon"}, "max_pause"),
        ({"on_max_pause": "explode"}, "on_max_pause"),
        ({"freeze": "ice"}, "freeze"),
        ({"interval": 0}, "interval"),
        ({"kill_grace": -1}, "kill_grace"),
        ({"name": ""}, "name"),
        ({"start_new_session": False}, "start_new_session"),
        ({"preexec_fn": print}, "preexec_fn"),
    ],
)
def test_bad_options_raise_config_error_before_starting(kwargs: Any, field: str) -> None:
    guard = quiet_guard()
    with pytest.raises(wg.ConfigError) as info:
        guard.popen([sys.executable, "-c", "pass"], **kwargs)
    assert info.value.field == field
    assert repr(kwargs[field]) in str(info.value)
    assert guard.active_sessions == 0


@pytest.mark.parametrize("argv", ["echo hi", [], None])
def test_bad_argv_raises_config_error(argv: Any) -> None:
    with pytest.raises(wg.ConfigError, match="argv"):
        quiet_guard().run(argv)


def test_run_rejects_conflicting_arguments() -> None:
    guard = quiet_guard()
    with pytest.raises(wg.ConfigError, match="capture_output"):
        guard.run([sys.executable, "-c", "pass"], capture_output=True, stdout=subprocess.PIPE)
    with pytest.raises(wg.ConfigError, match="stdin"):
        guard.run([sys.executable, "-c", "pass"], input=b"x", stdin=subprocess.PIPE)
    with pytest.raises(wg.ConfigError, match="timeout"):
        guard.run([sys.executable, "-c", "pass"], timeout=-1)


def test_forced_cgroup_freezer_without_cgroup_v2_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("wedguard.io.process.CGROUP_ROOT", tmp_path)

    def unavailable(pid: int, root: Path = tmp_path) -> _CgroupFreezer:
        raise OSError("no cgroup v2 hierarchy")

    monkeypatch.setattr(_CgroupFreezer, "create", staticmethod(unavailable))
    guard = quiet_guard()
    with pytest.raises(wg.ConfigError, match="freeze"):
        guard.popen([sys.executable, "-c", "import time; time.sleep(5)"], freeze="cgroup")
    assert guard.active_sessions == 0


def test_cgroup_freezer_writes_the_freeze_file(tmp_path: Path) -> None:
    """The cgroup v2 protocol: a child cgroup, the pid in cgroup.procs, freeze 1/0."""
    root = tmp_path / "cgroup"
    own = ""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            own = line[3:].strip().lstrip("/")
    parent = root / own
    parent.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu io memory\n")
    group = parent / f"wedguard-{os.getpid()}-{os.getpid()}"
    with pytest.raises(OSError, match=r"cgroup\.freeze"):  # a kernel without the freezer
        _CgroupFreezer.create(os.getpid(), root=root)
    group.mkdir()  # cgroupfs makes the interface files with the directory
    (group / "cgroup.freeze").write_text("0")
    freezer = _CgroupFreezer.create(os.getpid(), root=root)
    assert (group / "cgroup.procs").read_text().split()[0] == str(os.getpid())
    freezer.freeze()
    assert (group / "cgroup.freeze").read_text() == "1"
    freezer.thaw()
    assert (group / "cgroup.freeze").read_text() == "0"
    freezer.close()


def test_report_is_an_event_and_serialises(writer: Path) -> None:
    sink = RecordingSink()
    guard = quiet_guard(sinks=[sink])
    done = run_guarded(guard, [sys.executable, str(writer), "3"], stdout=subprocess.DEVNULL)
    assert guard.flush(5.0)
    reports = sink.of_kind("process")
    assert reports
    assert reports[-1].pid == done.report.pid
    data = done.report.to_dict()
    assert data["returncode"] == 0
    assert data["pid"] == done.report.pid
    assert "exit 0" in str(done.report)
    assert isinstance(GuardedProcess, type)


def test_leaving_the_with_block_waits_for_the_child(writer: Path) -> None:
    guard = quiet_guard()
    with guard.popen([sys.executable, str(writer), "20"], stdout=subprocess.DEVNULL) as child:
        pass
    assert child.returncode == 0
    assert child.report().returncode == 0


def test_a_handler_left_behind_passes_signals_to_the_previous_one(writer: Path) -> None:
    """Children closed from another thread cannot restore the handlers; a signal then
    goes to the handler that was there before, never into a void."""
    import wedguard.io.children as process

    got: list[int] = []
    previous = signal.signal(signal.SIGHUP, lambda signum, frame: got.append(signum))
    try:
        guard = quiet_guard()
        child = guard.popen([sys.executable, str(writer), "3"], stdout=subprocess.DEVNULL)
        child.wait(10)
        t = threading.Thread(target=child.close)
        t.start()
        t.join(10)
        assert signal.getsignal(signal.SIGHUP) is process._on_termination_signal
        os.kill(os.getpid(), signal.SIGHUP)
        wait_for(lambda: got == [signal.SIGHUP])
    finally:
        for sig, handler in process._PREVIOUS_HANDLERS.items():
            signal.signal(sig, handler)
        process._PREVIOUS_HANDLERS.clear()
        signal.signal(signal.SIGHUP, previous)


def test_a_child_nobody_waits_for_frees_its_slot_when_it_ends(writer: Path) -> None:
    sink = RecordingSink()
    guard = quiet_guard(sinks=[sink])
    child = guard.popen([sys.executable, str(writer), "3"], stdout=subprocess.DEVNULL)
    wait_for(lambda: guard.active_sessions == 0)
    assert child.returncode == 0
    guard.flush(5.0)
    assert [r.pid for r in sink.of_kind("process")] == [child.pid]
    child.close()  # a second close is harmless


class CapCalendar:
    """PEAK with a rate cap the test sets (None: OPEN, no cap)."""

    def __init__(self, cap: float | None) -> None:
        self.cap = cap

    def at(self, when: datetime) -> _Window:
        level = Level.OPEN if self.cap is None else Level.PEAK
        return _Window(level, self.cap, when, when + timedelta(seconds=0.05))


def test_the_calendar_cap_applies_live(writer: Path, reap: list[int]) -> None:
    cal = CapCalendar(20_000.0)
    guard = quiet_guard(calendar=cal)
    argv = [sys.executable, str(writer), str(10**9), "0.0005", "990"]
    with guard.popen(argv, stdout=subprocess.DEVNULL, cpu_share=None) as child:
        reap.append(child.pid)
        wait_for(lambda: any("duty-cycled to 20 kB/s" in r for r in child.reasons()))
        wait_for(lambda: child.paused_cause == "rate")
        cal.cap = None
        wait_for(lambda: not any("duty-cycled" in r for r in child.reasons()))
        child.abort("done")
        child.wait(10)
    assert child.report().paused["rate"] > 0


@pytest.mark.parametrize("call", ["run", "wait", "returncode"])
def test_a_short_child_reports_all_of_its_io(tmp_path: Path, call: str) -> None:
    """A child that writes and exits between two readings still reports what it
    wrote: its last counters are read before it is reaped, whoever reaps it."""
    target = tmp_path / "out.bin"
    argv = [sys.executable, "-c", f"open({str(target)!r}, 'wb').write(b'x' * 3_000_000)"]
    guard = quiet_guard()
    if call == "run":
        report = run_guarded(guard, argv).report
    else:
        child = GuardedProcess(guard, argv)
        if call == "wait":
            child.wait(30)
        else:
            deadline = time.monotonic() + 30
            while child.returncode is None and time.monotonic() < deadline:
                time.sleep(0.01)
        child.close()
        report = child.report()
    assert report.returncode == 0
    assert report.io_bytes >= 3_000_000
