"""The live guarded children of this process: never left stopped, whatever ends it.

Every :class:`~wedguard.io.child.GuardedProcess` registers here while it runs: at
interpreter exit (:func:`thaw_all`, registered with :mod:`atexit`) and on a termination
signal (SIGTERM, SIGINT, SIGHUP, SIGQUIT, then forwarded to the children's process
groups) each is resumed. :func:`guarded_children` lists a guard's children for the
control socket.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import threading
import weakref
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from wedguard.interfaces import GuardLike
    from wedguard.io.child import GuardedProcess

__all__ = ["TERMINATION_SIGNALS", "guarded_children", "thaw_all"]

TERMINATION_SIGNALS: Final = tuple(
    s
    for s in (
        getattr(signal, "SIGTERM", None),
        getattr(signal, "SIGINT", None),
        getattr(signal, "SIGHUP", None),
        getattr(signal, "SIGQUIT", None),
    )
    if s is not None
)
"""The signals the guarding process forwards to its children (after resuming them)."""

_LIVE: set[GuardedProcess] = set()
_LIVE_LOCK = threading.RLock()
_BY_GUARD: weakref.WeakKeyDictionary[Any, set[GuardedProcess]] = weakref.WeakKeyDictionary()
_PREVIOUS_HANDLERS: dict[int, Any] = {}
_ATEXIT_DONE = False


def thaw_all() -> None:
    """Resume every child this process guards (registered with :mod:`atexit`)."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for child in live:
        child._release_hold()


def _on_termination_signal(signum: int, frame: FrameType | None) -> None:
    with _LIVE_LOCK:
        live = [c for c in _LIVE if c._forward]
    if live:
        # a handler must not wait for a lock the interrupted code may hold: a short
        # thread resumes the children and forwards the signal
        def forward() -> None:
            for child in live:
                child._forward_signal(signum)

        threading.Thread(target=forward, name="wedguard-forward", daemon=True).start()
        return
    # no child left (the handler outlived them): behave as the previous handler would
    previous = _PREVIOUS_HANDLERS.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def register(child: GuardedProcess) -> None:
    global _ATEXIT_DONE
    with _LIVE_LOCK:
        if not _ATEXIT_DONE:
            atexit.register(thaw_all)
            _ATEXIT_DONE = True
        _LIVE.add(child)
        _BY_GUARD.setdefault(child.guard, set()).add(child)
        if child._forward:
            if threading.current_thread() is threading.main_thread():
                if not _PREVIOUS_HANDLERS:
                    for sig in TERMINATION_SIGNALS:
                        _PREVIOUS_HANDLERS[sig] = signal.signal(sig, _on_termination_signal)
            else:
                child._note("termination signals are not forwarded: not started in the main thread")


def unregister(child: GuardedProcess) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(child)
        mine = _BY_GUARD.get(child.guard)
        if mine is not None:
            mine.discard(child)
        if (
            _PREVIOUS_HANDLERS
            and not any(c._forward for c in _LIVE)
            and threading.current_thread() is threading.main_thread()
        ):
            for sig, previous in _PREVIOUS_HANDLERS.items():
                with contextlib.suppress(ValueError, TypeError):
                    signal.signal(sig, previous)
            _PREVIOUS_HANDLERS.clear()


def guarded_children(guard: GuardLike) -> list[GuardedProcess]:
    """The children running under ``guard`` now."""
    with _LIVE_LOCK:
        return sorted(_BY_GUARD.get(guard, ()), key=lambda c: c.pid)
