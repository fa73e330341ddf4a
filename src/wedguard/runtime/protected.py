"""Running one protected call: what ``guard.protect`` needs around the call.

Giving a breaker back the trial it granted, the breaker's own
:class:`~wedguard.CircuitOpenError`, and lending a protected call's prepaid budget to
the guard's wrapped files among its arguments.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, cast

from wedguard.errors import CircuitOpenError
from wedguard.interfaces import Breaker

if TYPE_CHECKING:
    from wedguard.runtime.guard import Guard
    from wedguard.runtime.prepaid import Prepaid
    from wedguard.runtime.session import Session

__all__ = ["bind_files", "give_back", "open_error", "unbind_files"]


def give_back(b: Breaker | None) -> None:
    """Give back what ``b.allow()`` took for a call that will not be made (a breaker
    without ``release()`` keeps it)."""
    release = getattr(b, "release", None)
    if callable(release):
        release()


def open_error(b: Breaker, retry: float) -> CircuitOpenError:
    """The breaker's own CircuitOpenError (with its reason), or one built here."""
    make = getattr(b, "_open_error", None)
    if callable(make):
        with contextlib.suppress(Exception):
            exc = make()
            if isinstance(exc, CircuitOpenError):
                return exc
    record = getattr(b, "record", None)
    return CircuitOpenError(b.name, retry, str(getattr(record, "reason", "") or ""))


def bind_files(guard: Guard, prepaid: Prepaid, args: Any, kwargs: Any) -> list[Any]:
    """Let this guard's wrapped files among a protected call's arguments spend what
    the call paid for (the call's session, not one of their own); returns them."""
    from wedguard.io.fileobj import GuardedFile

    bound = []
    for value in (*args, *kwargs.values()):
        if isinstance(value, GuardedFile) and value._guard is guard and value._session is None:
            value._session = cast("Session", prepaid)
            bound.append(value)
    return bound


def unbind_files(bound: list[Any]) -> None:
    for value in bound:
        value._session = None
