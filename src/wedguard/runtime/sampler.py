"""The background sampler: one thread per guard while sessions run.

Every ``sample_interval`` it reads the sources (without the guard's lock), has the
core judge the sample and recompute the decision; every ``stop_check_interval`` it
looks at the stop file and the fleet's stop flag. The thread outlives the last
session by one ``sample_interval`` (idle, sampling nothing), so back-to-back
sessions, such as one per protected call, reuse it.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from wedguard.runtime.core import GuardCore

__all__ = ["Sampler"]

log = logging.getLogger("wedguard.guard")

_INF: Final = float("inf")


class Sampler:
    """The sampler thread of one guard (started and stopped with the lock held)."""

    def __init__(self, core: GuardCore) -> None:
        self.core = core
        self.thread: threading.Thread | None = None
        self.wake = threading.Event()
        self.closing = False
        #: the thread's name (the guard names it after itself)
        self.thread_name = f"wedguard-sampler-{id(self):x}"

    def start(self) -> None:
        """Sample now: wake the sampler thread, or start one (lock held)."""
        self.wake.set()
        if self.thread is None:
            self.closing = False
            self.thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
            self.thread.start()

    def stop(self) -> threading.Thread | None:
        """Let the thread end now (lock held); returns it, to be joined."""
        self.closing = True
        self.wake.set()
        return self.thread

    def _idle(self, now: float, idle_since: float | None) -> tuple[bool, float | None, bool]:
        """(end the thread, idle since, sample at once) for this turn (lock held)."""
        core = self.core
        if self.closing:
            return True, idle_since, False
        if not core.slots.active:
            if idle_since is None:
                return False, now, False
            return now - idle_since >= core.settings.interval, idle_since, False
        fresh = idle_since is not None or self.wake.is_set()  # a session (re)started
        return False, None, fresh

    def _loop(self) -> None:
        core = self.core
        interval = core.settings.interval
        checks = core.checks_stops
        next_sample = next_check = -_INF
        idle_since: float | None = None
        while True:
            try:
                with core.lock:
                    now = core.now()
                    end, idle_since, fresh = self._idle(now, idle_since)
                    # protected calls' accounts: those due, and all once calls stopped
                    core.settle_calls(None if end else now)
                    if end:
                        self.thread = None
                        return
                    if fresh:
                        next_sample = next_check = now
                    self.wake.clear()
                if idle_since is not None:
                    # idle: no sample, but the stops are still looked at, so that a
                    # session starting back to back (which wakes no one) meets them
                    until = idle_since + interval
                    if checks:
                        if now >= next_check:
                            next_check = now + core.settings.stop_interval
                            core.poll_stops()
                        until = min(until, next_check)
                    self.wake.wait(max(0.0, until - core.now()))
                    continue
                if checks and now >= next_check:
                    next_check = now + core.settings.stop_interval
                    core.poll_stops()
                if now >= next_sample:
                    next_sample = now + interval
                    core.sample_step()
            except Exception:  # pragma: no cover - never let the sampler die
                log.exception("sampler step failed")
            due = next_sample if not checks else min(next_sample, next_check)
            self.wake.wait(max(0.0, due - core.now()))
