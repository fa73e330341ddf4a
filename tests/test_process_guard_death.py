"""A child the guard paces is never left stopped, whatever kills the guarding process.

Fault injection with real processes: a guarding interpreter paces a real child (a
Python program writing a counter) with SIGSTOP/SIGCONT at a low byte rate, so that the
child is stopped and resumed every few tens of milliseconds; the test SIGKILLs the
guarding process at a random moment and reads ``/proc/<pid>/stat`` of the child. The
guards run in parallel batches so that the whole file takes a few seconds.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import pytest

import wedguard as wg
from conftest_redis import key, redis_server
from wedguard.config import Config
from wedguard.errors import ConfigError
from wedguard.io.process import GuardedProcess

__all__ = ["key", "redis_server"]  # fixtures used below

pytestmark = pytest.mark.skipif(
    not os.path.isdir("/proc/self"), reason="reads process states from /proc"
)

SRC = str(Path(__file__).resolve().parent.parent / "src")

# the child: a counter line of ~100 bytes every millisecond, flushed; about 100 kB/s
# when nothing limits it, so a 20 kB/s budget keeps it stopped most of the time
COUNTER = r"""
import sys, time
pad = "x" * 90
i = 0
while True:
    sys.stdout.write(f"{i:08d} {pad}\n"); sys.stdout.flush()
    i += 1
    time.sleep(0.001)
"""

# the guarding process: paces the child, prints the pids of the child and its watchdog,
# and goes on pacing until it is killed
GUARD = r"""
import subprocess, sys
import wedguard as wg
counter, out, mode, rate = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
guard = wg.Guard(rate=rate, calendar=None, sources=[], sinks=[])
with open(out, "wb") as f:
    child = guard.popen(
        [sys.executable, counter], stdout=f, stderr=subprocess.DEVNULL,
        on_guard_death=mode, interval=0.02, kill_grace=2,
    )
    dog = child._watchdog.helper.pid if child._watchdog is not None else 0
    print(child.pid, dog, flush=True)
    child.wait()
"""


def state(pid: int) -> str:
    """The process state letter from /proc/<pid>/stat ("" when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return ""
    return stat[stat.rindex(b")") + 2 :].split()[0].decode()


def threads(pid: int) -> dict[str, str]:
    """Each thread of ``pid``: its name, state letter and where it sleeps in the kernel."""
    out = {}
    for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
        try:
            name = (task / "comm").read_text().strip()
            wchan = (task / "wchan").read_text().strip()
        except OSError:
            continue
        out[f"{task.name} {name}"] = f"{state(int(task.name))} {wchan}"
    return out


def gone(pid: int) -> bool:
    return state(pid) in ("", "Z", "X")


def wait_for(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


@attrs.define
class Killed:
    """One guarding process killed, and what became of its child."""

    child: int
    watchdog: int
    out: Path
    state_at_kill: str = ""
    states_after: list[str] = attrs.Factory(list)
    grew: bool = False


@pytest.fixture
def scripts(tmp_path: Path) -> tuple[Path, Path]:
    counter, guard = tmp_path / "counter.py", tmp_path / "guard.py"
    counter.write_text(COUNTER)
    guard.write_text(GUARD)
    return counter, guard


def env(**extra: str) -> dict[str, str]:
    path = SRC + os.pathsep + os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": path, **extra}


def announced(guard: subprocess.Popen[bytes]) -> tuple[int, int]:
    """The pids of the child and its watchdog, as the guarding script prints them."""
    assert guard.stdout is not None
    line = guard.stdout.readline().split()
    assert len(line) == 2, guard.communicate(timeout=10)[1]
    return int(line[0]), int(line[1])


def kill_one(
    argv: list[str],
    out: Path,
    rng: random.Random,
    reap: list[int],
    *,
    expect: str,
    sig: int = signal.SIGKILL,
    pids: Callable[[subprocess.Popen[bytes]], tuple[int, int]] = announced,
    stdout: Any = subprocess.PIPE,
    environ: dict[str, str] | None = None,
) -> Killed:
    """Start a guarding process, let it pace its child a random while, kill it with
    ``sig``; then watch the child: ``expect`` is "running" or "gone"."""
    guard = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.DEVNULL, env=environ or env())
    try:
        child, dog = pids(guard)
        reap.extend(p for p in (child, dog) if p)
        # a random moment while it is pacing: the child is stopped and resumed every
        # few tens of milliseconds
        time.sleep(rng.uniform(0.1, 0.6))
        killed = Killed(child, dog, out, state_at_kill=state(child))
        guard.send_signal(sig)
        try:
            guard.wait(20)
        except subprocess.TimeoutExpired:  # pragma: no cover - say where it hangs
            raise AssertionError(
                f"{killed}: the guarding process still runs: {threads(guard.pid)}"
            ) from None
    finally:
        if guard.poll() is None:  # pragma: no cover - only if an assertion failed above
            guard.kill()
            guard.wait()
        if guard.stdout is not None:
            guard.stdout.close()
    if expect == "gone":
        wait_for(lambda: gone(child), 10.0)
        killed.states_after.append(state(child))
        return killed
    # it must be running again within moments, and stay running
    wait_for(lambda: state(child) not in ("T", "t"), 5.0)
    before = size(out)
    for _ in range(5):
        time.sleep(0.05)
        killed.states_after.append(state(child))
    killed.grew = wait_for(lambda: size(out) > before + 2000, 5.0)
    return killed


def in_parallel(n: int, one: Callable[[int], Killed]) -> list[Killed]:
    with ThreadPoolExecutor(max_workers=6) as pool:
        return list(pool.map(one, range(n)))


def guard_argv(scripts: tuple[Path, Path], out: Path, mode: str, rate: str = "20kB/s") -> list[str]:
    counter, guard = scripts
    return [sys.executable, str(guard), str(counter), str(out), mode, rate]


def assert_running(runs: list[Killed]) -> None:
    for run in runs:
        assert len(run.states_after) == 5, run
        assert all(s not in ("T", "t", "") for s in run.states_after), run
        assert run.grew, run


def assert_gone(runs: list[Killed]) -> None:
    for run in runs:
        assert run.states_after in (["Z"], [""], ["X"]), run


def assert_nothing_left(runs: list[Killed]) -> None:
    """The watchdogs are gone once they have done their work."""
    for run in runs:
        if run.watchdog:
            assert wait_for(lambda r=run: gone(r.watchdog), 10.0), run  # type: ignore[misc]


def stopped_at_kill(runs: list[Killed]) -> int:
    return sum(r.state_at_kill == "T" for r in runs)


# -- SIGKILL of the guarding process ----------------------------------------------------------


def test_sigkill_of_the_guard_never_leaves_the_child_stopped(
    scripts: tuple[Path, Path], tmp_path: Path, reap: list[int]
) -> None:
    """12 guards SIGKILLed at random moments while they pace their child: every child
    is running again (never in state T) and writes on, unthrottled."""
    rng = random.Random(20261206)
    seeds = [rng.random() for _ in range(12)]

    def one(i: int) -> Killed:
        out = tmp_path / f"out-{i}.txt"
        argv = guard_argv(scripts, out, "resume")
        return kill_one(argv, out, random.Random(seeds[i]), reap, expect="running")

    runs = in_parallel(12, one)
    assert_running(runs)
    # the kills did land while children were stopped, not only while they ran
    assert stopped_at_kill(runs) >= 3, [r.state_at_kill for r in runs]
    assert_nothing_left(runs)


def test_sigkill_of_the_guard_ends_the_child_with_terminate(
    scripts: tuple[Path, Path], tmp_path: Path, reap: list[int]
) -> None:
    """on_guard_death="terminate": 10 guards SIGKILLed at random moments; every child
    is gone (resumed, then SIGTERM), none is left stopped."""
    rng = random.Random(7)
    seeds = [rng.random() for _ in range(10)]

    def one(i: int) -> Killed:
        out = tmp_path / f"out-{i}.txt"
        argv = guard_argv(scripts, out, "terminate")
        return kill_one(argv, out, random.Random(seeds[i]), reap, expect="gone")

    runs = in_parallel(10, one)
    assert_gone(runs)
    assert stopped_at_kill(runs) >= 2, [r.state_at_kill for r in runs]
    assert_nothing_left(runs)


def test_off_leaves_a_stopped_child_stopped(
    scripts: tuple[Path, Path], tmp_path: Path, reap: list[int]
) -> None:
    """What the watchdog prevents: with on_guard_death="off", a guard SIGKILLed while
    its child is stopped leaves it in state T (the test then resumes and ends it)."""
    out = tmp_path / "out.txt"
    proc = subprocess.Popen(
        guard_argv(scripts, out, "off", "1kB/s"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env(),
    )
    assert proc.stdout is not None
    with proc.stdout:
        child, dog = announced(proc)
        reap.append(child)
        assert dog == 0
        assert wait_for(lambda: state(child) == "T", 10.0)
        proc.kill()
        proc.wait(10)
    time.sleep(0.3)
    assert state(child) == "T"


def cli_pids(proc: subprocess.Popen[bytes]) -> tuple[int, int]:
    """The child and the watchdog of a `wedguard run` process, found in /proc."""

    def children() -> list[int]:
        found = []
        for task in Path(f"/proc/{proc.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(p) for p in (task / "children").read_text().split()]
        return found

    def cmdline(pid: int) -> bytes:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return b""

    def started() -> bool:  # both forked, and the command has exec'd (its cmdline says so)
        found = children()
        return len(found) == 2 and any(cmdline(p).endswith(b"counter.py\0") for p in found)

    assert wait_for(started, 20.0), children()
    (child,) = [p for p in children() if cmdline(p).endswith(b"counter.py\0")]
    (dog,) = [p for p in children() if p != child]
    return child, dog


def test_wedguard_run_killed_by_sigkill_resumes_its_command(
    scripts: tuple[Path, Path], tmp_path: Path, reap: list[int]
) -> None:
    """`wedguard run -- CMD` SIGKILLed at random moments while it paces CMD: CMD runs
    on (4 runs)."""
    counter, _guard = scripts
    config = tmp_path / "quiet.toml"
    config.write_text('sources = []\n[calendar]\npreset = "none"\n')
    environ = env(WEDGUARD_RUN_DIR=str(tmp_path / "run"))
    wedguard = [sys.executable, "-m", "wedguard", "run", "-c", str(config)]
    rng = random.Random(11)
    seeds = [rng.random() for _ in range(4)]

    def one(i: int) -> Killed:
        out = tmp_path / f"out-{i}.txt"
        argv = [*wedguard, "--rate", "20kB/s", "--", sys.executable, str(counter)]
        with out.open("wb") as f:
            return kill_one(
                argv,
                out,
                random.Random(seeds[i]),
                reap,
                expect="running",
                pids=cli_pids,
                stdout=f,
                environ=environ,
            )

    runs = in_parallel(4, one)
    assert_running(runs)
    assert_nothing_left(runs)


def test_wedguard_run_on_guard_death_terminate(
    scripts: tuple[Path, Path], tmp_path: Path, reap: list[int]
) -> None:
    """`wedguard run --on-guard-death terminate`, and the same from `[run]` in the
    configuration: SIGKILLed, its command is ended."""
    counter, _guard = scripts
    quiet = 'sources = []\n[calendar]\npreset = "none"\n'
    flag, file = tmp_path / "flag.toml", tmp_path / "file.toml"
    flag.write_text(quiet + '[run]\non_guard_death = "resume"\n')  # the flag wins
    file.write_text(quiet + '[run]\non_guard_death = "terminate"\n')
    environ = env(WEDGUARD_RUN_DIR=str(tmp_path / "run"))
    runs = []
    for i, options in enumerate(
        (["-c", str(flag), "--on-guard-death", "terminate"], ["-c", str(file)])
    ):
        out = tmp_path / f"out-{i}.txt"
        argv = [sys.executable, "-m", "wedguard", "run", *options, "--rate", "20kB/s", "--"]
        with out.open("wb") as f:
            runs.append(
                kill_one(
                    [*argv, sys.executable, str(counter)],
                    out,
                    random.Random(i),
                    reap,
                    expect="gone",
                    pids=cli_pids,
                    stdout=f,
                    environ=environ,
                )
            )
    assert_gone(runs)
    assert_nothing_left(runs)


# -- SIGTERM and SIGINT: the handlers resume the child and forward the signal ---------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_sigint_of_the_guard_resumes_and_forwards(
    scripts: tuple[Path, Path], tmp_path: Path, reap: list[int], sig: int
) -> None:
    """SIGTERM/SIGINT to the guarding process at a random moment of its pacing: the
    child is resumed and gets the signal (it ends), and the watchdog exits."""
    runs = []
    for i in range(2):
        out = tmp_path / f"out-{i}.txt"
        argv = guard_argv(scripts, out, "resume")
        runs.append(kill_one(argv, out, random.Random(i), reap, expect="gone", sig=sig))
    assert_gone(runs)
    assert_nothing_left(runs)


# -- the watchdog on its own -----------------------------------------------------------------

# a child that starts a grandchild in a session of its own (outside its process group)
# and prints both pids
FAMILY = r"""
import subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                              start_new_session=True)
print(grandchild.pid, flush=True)
time.sleep(60)
"""


def test_the_watchdog_resumes_the_group_its_descendants_and_the_cgroup(
    tmp_path: Path, reap: list[int]
) -> None:
    """The guard's end of the pipe closes without "done": the watchdog thaws the
    cgroup, gives its processes back to the parent cgroup, and sends SIGCONT to the
    child's group and to a descendant that left the group."""
    from wedguard.io.watchdog import _Watchdog

    child = subprocess.Popen(
        [sys.executable, "-c", FAMILY], stdout=subprocess.PIPE, start_new_session=True
    )
    reap.append(child.pid)
    assert child.stdout is not None
    with child.stdout:
        grandchild = int(child.stdout.readline())
    reap.append(grandchild)
    group = tmp_path / "parent" / "wedguard-test"  # stands in for a cgroup v2 directory
    group.mkdir(parents=True)
    (group / "cgroup.freeze").write_text("1")
    (group / "cgroup.procs").write_text(f"{child.pid}\n")
    for pid in (child.pid, grandchild):
        os.kill(pid, signal.SIGSTOP)
    assert wait_for(lambda: state(child.pid) == "T" and state(grandchild) == "T")
    dog = _Watchdog("resume", 1.0)
    dog.tell(f"pid {child.pid}")
    dog.tell(f"cgroup {group}")
    assert dog._w is not None
    os.close(dog._w)  # as the kernel does when the guarding process dies
    dog._w = None
    assert dog.helper.wait(10) == 0
    assert state(child.pid) not in ("T", "t", "")
    assert state(grandchild) not in ("T", "t", "")
    assert (group / "cgroup.freeze").read_text() == "0"
    assert (tmp_path / "parent" / "cgroup.procs").read_text() == str(child.pid)
    child.kill()
    child.wait()


def test_the_watchdog_told_done_touches_nothing(tmp_path: Path, reap: list[int]) -> None:
    from wedguard.io.watchdog import _Watchdog

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    reap.append(child.pid)
    os.kill(child.pid, signal.SIGSTOP)
    assert wait_for(lambda: state(child.pid) == "T")
    dog = _Watchdog("terminate", 1.0)
    dog.tell(f"pid {child.pid}")
    dog.close()
    assert dog.helper.returncode == 0
    time.sleep(0.2)
    assert state(child.pid) == "T"  # a stopped child stays as the guard left it
    child.kill()
    child.wait()


# -- SIGKILL of the child ------------------------------------------------------------------------


def test_sigkill_of_the_child_while_paced_ends_its_run_cleanly(
    scripts: tuple[Path, Path], tmp_path: Path, reap: list[int]
) -> None:
    """8 children SIGKILLed at random moments while the guard paces them (the OOM
    killer, an operator's ``kill -9``), most while stopped: ``wait()`` gives -9 at once,
    the report says so, the watchdog exits, and the guard's only slot is free again."""
    counter, _ = scripts
    rng = random.Random(16)
    guard = wg.Guard(
        rate="20kB/s", calendar=None, sources=[], sinks=[], max_concurrent=1, slot_timeout=2
    )
    stopped = 0
    for i in range(8):
        with open(tmp_path / f"out{i}", "wb") as f:
            child = guard.popen(
                [sys.executable, str(counter)], stdout=f, stderr=subprocess.DEVNULL, interval=0.02
            )
            reap.append(child.pid)
            assert child._watchdog is not None
            dog = child._watchdog.helper.pid
            reap.append(dog)
            time.sleep(rng.uniform(0.1, 0.4))
            stopped += state(child.pid) == "T"
            os.kill(child.pid, signal.SIGKILL)
            started = time.monotonic()
            assert child.wait(timeout=10) == -signal.SIGKILL
            assert time.monotonic() - started < 2.0
        assert child.report().returncode == -signal.SIGKILL
        assert wait_for(lambda d=dog: gone(d), 10.0)  # type: ignore[misc]
    assert stopped >= 1  # the kills did land while children were stopped
    with guard.session("after"):  # the slot was given back each time
        pass
    done = guard.run([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), 9)"])
    assert done.returncode == -signal.SIGKILL


# -- the defaults and their checks --------------------------------------------------------------


def quiet_guard(**kwargs: object) -> wg.Guard:
    return wg.Guard(rate="off", calendar=None, sources=[], sinks=[], **kwargs)  # type: ignore[arg-type]


def test_the_watchdog_is_on_by_default_and_ends_quietly() -> None:
    guard = quiet_guard()
    done = guard.run([sys.executable, "-c", "pass"])
    assert done.report.on_guard_death == "resume"
    assert done.report.to_dict()["on_guard_death"] == "resume"
    with guard.popen([sys.executable, "-c", "import time; time.sleep(0.2)"]) as child:
        assert child._watchdog is not None
        helper = child._watchdog.helper
        assert helper.poll() is None
    assert helper.returncode == 0  # told "done": it exits without touching anything
    off = guard.run([sys.executable, "-c", "pass"], on_guard_death="off")
    assert off.report.on_guard_death == "off"
    legacy = guard.run([sys.executable, "-c", "pass"], watchdog=False)
    assert legacy.report.on_guard_death == "off"


# a host of a fleet: one shared slot with a one-second lease; it runs the counter
FLEET_HOST = r"""
import subprocess, sys
import wedguard as wg
from wedguard.distributed import RedisCoordinator
url, prefix, counter, out = sys.argv[1:5]
coord = RedisCoordinator(url, prefix)
coord.slots(1, lease=1.0, name="fleet")
guard = wg.Guard(rate="20kB/s", calendar=None, sources=[], sinks=[], name="fleet",
                 max_concurrent=1, coordinator=coord)
with open(out, "wb") as f:
    child = guard.popen([sys.executable, counter], stdout=f, stderr=subprocess.DEVNULL)
    print(child.pid, child._watchdog.helper.pid, child.on_guard_death, flush=True)
    child.wait()
"""


def test_a_shared_slot_never_runs_two_backups_after_its_holder_dies(
    scripts: tuple[Path, Path], tmp_path: Path, reap: list[int], redis_server: Any, key: str
) -> None:
    """max_concurrent=1 over Redis: host A runs a child and is SIGKILLed; its lease
    lapses and host B takes the slot. By default (``auto``: the child holds a shared
    slot) A's child is ended before that, so two backups never run at once."""
    pytest.importorskip("redis")
    from wedguard.distributed import RedisCoordinator

    counter, _guard = scripts
    script = tmp_path / "host.py"
    script.write_text(FLEET_HOST)
    out = tmp_path / "out.txt"
    host_a = subprocess.Popen(
        [sys.executable, str(script), redis_server.url, key, str(counter), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env(),
    )
    assert host_a.stdout is not None
    with host_a.stdout:
        pid, dog, death = host_a.stdout.readline().split()
        child = int(pid)
        reap.extend((child, int(dog)))
        assert death == b"terminate"
        time.sleep(0.3)
        host_a.kill()
        host_a.wait(10)
    coord = RedisCoordinator(redis_server.url, key)
    try:
        coord.slots(1, lease=1.0, name="fleet")
        host_b = wg.Guard(
            rate="off",
            calendar=None,
            sources=[],
            sinks=[],
            name="fleet",
            max_concurrent=1,
            coordinator=coord,
        )
        try:
            with host_b.session("b"):
                # B holds the one slot: A's child must not be running beside it
                assert gone(child), state(child)
        finally:
            host_b.close()
    finally:
        coord.close()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"on_guard_death": "explode"}, "on_guard_death"),
        ({"on_guard_death": None}, "on_guard_death"),
        ({"watchdog": "yes"}, "watchdog"),
        ({"watchdog": False, "on_guard_death": "terminate"}, "watchdog"),
    ],
)
def test_bad_on_guard_death(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        GuardedProcess(quiet_guard(), [sys.executable, "-c", "pass"], **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_config_run_on_guard_death(tmp_path: Path) -> None:
    config = Config.from_dict({"run": {"on_guard_death": "terminate"}}, path="w.toml")
    assert config.run.on_guard_death == "terminate"
    assert 'on_guard_death = "terminate"' in config.render()
    assert Config.from_dict({}, path="w.toml").run.on_guard_death == "auto"
    with pytest.raises(ConfigError, match=r"run\.on_guard_death"):
        Config.from_dict({"run": {"on_guard_death": "maybe"}}, path="w.toml")
    with pytest.raises(ConfigError, match=r"run\.watchdog"):
        Config.from_dict({"run": {"watchdog": True}}, path="w.toml")
