"""The watchdog: what resumes (or ends) a guarded child when the guarding process dies.

What no code in the guarding process can cover (a ``SIGKILL``, the OOM killer) a small
helper process covers: it waits on a pipe whose write end only the guarding process
holds, and when the pipe closes without a goodbye it thaws the child and, with
``on_guard_death="terminate"``, ends it.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from typing import Final

from wedguard.errors import ConfigError

__all__ = ["WATCHDOG_MODES"]

# The watchdog: a tiny interpreter (``python -I -S``) started before the child. It reads
# from a pipe whose write end only the guarding process holds: "pid N" (the child's
# process group), "cgroup PATH" (its freezer, if any), "done" (the guard ended normally:
# exit quietly). End of file without "done" means the guarding process died, however it
# died (SIGKILL, the OOM killer): the kernel closed the pipe. A parent that is no longer
# the guard (a fork of the guard may hold the pipe open) is checked once a second.
# Then it thaws the cgroup, sends SIGCONT to the group and to every descendant of it,
# and with "terminate" also SIGTERM, then SIGKILL after the grace period.
_WATCHDOG: Final = r"""
import os, select, signal, sys, time
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
    signal.signal(s, signal.SIG_IGN)
mode, grace, guard = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
buf = b""
while True:
    ready = select.select([0], [], [], 1.0)[0]
    if not ready:
        if os.getppid() != guard:
            break
        continue
    data = os.read(0, 4096)
    if not data:
        break
    buf += data
    if buf.endswith(b"done\n"):
        sys.exit(0)
lines = buf.decode("utf-8", "replace").splitlines()
if "done" in lines:
    sys.exit(0)
pgid, cgroup = 0, ""
for line in lines:
    key, _, value = line.partition(" ")
    if key == "pid":
        pgid = int(value)
    elif key == "cgroup":
        cgroup = value
if pgid <= 0:
    sys.exit(0)

def tree():
    # the group's members and every descendant of them (some leave the group)
    parents, members = {}, set()
    try:
        names = os.listdir("/proc")
    except OSError:
        return members
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open("/proc/" + name + "/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        pid = int(name)
        if fields[0] == b"Z":
            continue
        parents[pid] = int(fields[1])
        if int(fields[2]) == pgid:
            members.add(pid)
    grown = True
    while grown:
        grown = False
        for pid, ppid in parents.items():
            if ppid in members and pid not in members:
                members.add(pid)
                grown = True
    return members

def send(sig):
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass
    for pid in tree():
        try:
            os.kill(pid, sig)
        except OSError:
            pass

def thaw():
    if cgroup:
        try:
            with open(os.path.join(cgroup, "cgroup.freeze"), "w") as f:
                f.write("0")
        except OSError:
            pass
    send(signal.SIGCONT)

def alive():
    if tree():
        return True
    try:
        os.killpg(pgid, 0)
    except OSError:
        return False
    return not os.path.isdir("/proc")

thaw()
if mode == "terminate":
    send(signal.SIGTERM)
    send(signal.SIGCONT)
    end = time.monotonic() + grace
    while alive() and time.monotonic() < end:
        time.sleep(0.02)
    if alive():
        send(signal.SIGKILL)
if cgroup:
    # give the child back to the guard's cgroup, so the empty one can go
    try:
        with open(os.path.join(cgroup, "cgroup.procs")) as f:
            pids = f.read().split()
        for pid in pids:
            with open(os.path.join(os.path.dirname(cgroup), "cgroup.procs"), "w") as f:
                f.write(pid)
    except OSError:
        pass
    for _ in range(50):
        try:
            os.rmdir(cgroup)
            break
        except FileNotFoundError:
            break
        except OSError:
            time.sleep(0.02)
"""

WATCHDOG_MODES: Final = ("resume", "terminate")


class _Watchdog:
    """The guarding process's side of the watchdog: the helper and the pipe's write end.

    Cost: one small interpreter per child (started with ``-I -S``: no site packages,
    about 10 ms of CPU and 8-10 MB of memory), asleep in ``select`` with one wake-up a
    second; nothing is left behind after :meth:`close`.
    """

    __slots__ = ("_w", "helper", "mode")

    def __init__(self, mode: str, grace: float) -> None:
        r, w = os.pipe()
        try:
            self.helper = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _WATCHDOG, mode, repr(grace), str(os.getpid())],
                stdin=r,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            os.close(w)
            raise
        finally:
            os.close(r)
        self.mode = mode
        self._w: int | None = w

    def tell(self, line: str) -> None:
        """Pass one line to the helper (``pid N``, ``cgroup PATH``)."""
        if self._w is not None:
            with contextlib.suppress(OSError):
                os.write(self._w, (line + "\n").encode())

    def close(self, timeout: float = 2.0) -> None:
        """The guard ends normally: the helper exits without touching the child."""
        w, self._w = self._w, None
        if w is None:
            return
        with contextlib.suppress(OSError):
            os.write(w, b"done\n")
        os.close(w)
        try:
            self.helper.wait(timeout)
        except subprocess.TimeoutExpired:  # pragma: no cover - a helper that hangs
            self.helper.kill()
            self.helper.wait()


def _check_on_guard_death(value: object, watchdog: object) -> str:
    """``on_guard_death`` checked against the older ``watchdog`` flag."""
    if not isinstance(value, str) or value not in ("auto", *WATCHDOG_MODES, "off"):
        raise ConfigError("on_guard_death", value, "'auto', 'resume', 'terminate' or 'off'")
    if watchdog is not None and not isinstance(watchdog, bool):
        raise ConfigError("watchdog", watchdog, "True, False or None")
    if watchdog is False:
        if value in WATCHDOG_MODES:
            raise ConfigError("watchdog", watchdog, f"not False with on_guard_death={value!r}")
        return "off"
    return value
