"""The operator's switches outside the API: the stop file and SIGUSR1/SIGUSR2.

:class:`StopFileSwitch` looks at the stop file (one ``lstat``, at most every
``stop_check_interval``): while it is there and nobody else's, the guard is stopped. A
stop file that does not count (someone else's, in a directory others control) is
ignored, logged and alerted. :class:`SignalSwitch` installs the signal handlers on
request; each hands its work to a short-lived thread, so a signal arriving while the
main thread holds the guard's lock cannot deadlock.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from wedguard import _fs
from wedguard.errors import ConfigError
from wedguard.policy.alerting import Severity

if TYPE_CHECKING:
    from wedguard.runtime.core import GuardCore

__all__ = ["SignalSwitch", "StopFileSwitch"]

log = logging.getLogger("wedguard.guard")


class StopFileSwitch:
    """The stop file of one guard.

    Attributes:
        path: the stop file.
        stop: the stop reason while the file is there ("" otherwise).
        problem: why a stop file found there does not count ("" when none).
    """

    def __init__(self, core: GuardCore, path: str) -> None:
        self.core = core
        self.path = path
        self.watch = _fs.StopFile(path)
        self.stop = ""
        self.problem = ""

    def present(self) -> bool:
        """One lstat of the stop file (no lock needed): True when it is there and ours
        (or root's), in a directory nobody else controls."""
        present = self.watch.present()
        if self.watch.problem != self.problem:
            self._note_problem(self.watch.problem)
        return present

    def _note_problem(self, problem: str) -> None:
        """A stop file that does not count appeared (or went): log it and alert."""
        core = self.core
        with core.lock:
            if problem == self.problem:
                return
            self.problem = problem
            if problem:
                log.warning("%s: ignored", problem)
                core.alerts.fire(
                    "stop-file",
                    Severity.HIGH,
                    f"{problem}: ignored, the backup goes on",
                    core.clock.now(),
                    labels={"stop_file": self.path},
                )
            else:
                core.alerts.resolve("stop-file", core.clock.now())

    def check(self, present: bool | None = None) -> None:
        """Take in the stop file's presence (one stat unless ``present`` is known): a
        change stops or resumes (lock held)."""
        if present is None:
            present = self.present()
        if present and not self.stop:
            self.stop = f"stop file {self.path} exists"
            self.core.refresh_now()
        elif not present and self.stop:
            self.stop = ""
            self.core.refresh_now()

    def poll(self) -> None:
        """The sampler's look (no lock held): the stat without the lock, the lock only
        for a change."""
        present = self.present()
        if present != bool(self.stop):
            with self.core.lock:
                self.check(present)


class SignalSwitch:
    """SIGUSR1 calls ``stop("SIGUSR1")``, SIGUSR2 ``resume()`` (main thread only)."""

    def __init__(self, stop: Callable[[str], None], resume: Callable[[], None]) -> None:
        self._stop = stop
        self._resume = resume
        self.installed: dict[int, Any] = {}

    def install(self) -> None:
        """Install the handlers (once); the previous ones are kept for :meth:`uninstall`."""
        usr1 = getattr(signal, "SIGUSR1", None)
        usr2 = getattr(signal, "SIGUSR2", None)
        if usr1 is None or usr2 is None:  # pragma: no cover - not POSIX
            raise ConfigError("signals", True, "a POSIX platform with SIGUSR1/SIGUSR2")
        stop, resume = self._stop, self._resume

        def on_usr1(signum: int, frame: FrameType | None) -> None:
            threading.Thread(target=stop, args=("SIGUSR1",), daemon=True).start()

        def on_usr2(signum: int, frame: FrameType | None) -> None:
            threading.Thread(target=resume, daemon=True).start()

        if self.installed:
            return  # already ours
        if threading.current_thread() is not threading.main_thread():
            raise ConfigError("signals", True, "installing handlers from the main thread")
        self.installed[usr1] = signal.signal(usr1, on_usr1)
        self.installed[usr2] = signal.signal(usr2, on_usr2)

    def uninstall(self) -> None:
        """Restore the handlers that were there before :meth:`install`."""
        for signum, previous in self.installed.items():
            signal.signal(signum, previous)
        self.installed.clear()
