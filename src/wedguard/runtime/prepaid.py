"""The bytes a protected call has paid for, spent by the file objects it wraps.

``@guard.protect(cost=...)`` takes the call's cost from the budget before the call.
File objects wrapped with :meth:`Guard.wrap` inside that call (or handed to it as an
argument) then draw on what was paid first, so the same bytes are not charged twice;
only I/O beyond the cost is throttled again, by the call's session.
"""

from __future__ import annotations

import contextvars
import math
import threading
from typing import Any

__all__ = ["Prepaid", "current"]

_CURRENT: contextvars.ContextVar[Prepaid | None] = contextvars.ContextVar(
    "wedguard_prepaid", default=None
)


class Prepaid:
    """A session's ``throttle`` with ``left`` bytes already paid for."""

    __slots__ = ("_lock", "left", "session")

    def __init__(self, session: Any, left: float) -> None:
        self.session = session
        self.left = float(left)
        self._lock = threading.Lock()

    def throttle(self, n: float, ops: int = 0, *, size: float | None = None) -> float:
        """Spend what was paid first; throttle the rest through the session."""
        if isinstance(n, bool) or not isinstance(n, (int, float)) or not 0 <= n < math.inf:
            return float(self.session.throttle(n, ops, size=size))  # it says what is wrong
        with self._lock:
            take = min(max(float(n), 0.0), self.left)
            self.left -= take
        rest = n - take
        if rest > 0 or ops:
            return float(self.session.throttle(rest, ops, size=size))
        return 0.0

    def refund(self, n: float) -> None:
        """``n`` bytes charged here were never written (a failed write): they are paid
        for again, so writing them once more does not charge them twice."""
        with self._lock:
            self.left += n

    def enter(self) -> contextvars.Token[Prepaid | None]:
        return _CURRENT.set(self)

    @staticmethod
    def leave(token: contextvars.Token[Prepaid | None]) -> None:
        _CURRENT.reset(token)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    def __repr__(self) -> str:
        return f"Prepaid({self.session!r}, left={self.left:g})"


def current() -> Prepaid | None:
    """The prepaid budget of the protected call the caller is inside, if any."""
    return _CURRENT.get()
