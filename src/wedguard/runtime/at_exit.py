"""Guards still open when the interpreter exits are closed, so no event is lost.

A guard registers itself here (weakly: registration never keeps a guard alive) and
unregisters in :meth:`Guard.close`. At interpreter exit each guard still open is
closed with a bounded wait: its queued events reach the sinks, the sinks flush.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from typing import Any

__all__ = ["forget", "remember"]

_open: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()
_registered = False


def remember(guard: Any) -> None:
    """Close ``guard`` at interpreter exit unless it was closed before."""
    global _registered
    with _lock:
        _open.add(guard)
        if not _registered:
            atexit.register(_close_all)
            _registered = True


def forget(guard: Any) -> None:
    with _lock:
        _open.discard(guard)


def _close_all() -> None:
    with _lock:
        guards = list(_open)
        _open.clear()
    for guard in guards:
        try:
            guard._close_at_exit()
        except Exception:  # pragma: no cover - never fail the interpreter's exit
            logging.getLogger("wedguard.guard").exception("closing %r at exit failed", guard)
