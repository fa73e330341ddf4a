"""The exceptions wedguard raises, and how it warns of a renamed name.

Every exception derives from :class:`WedguardError`, so a host can catch the whole
family with one ``except``. Each carries the facts a handler needs as attributes, not
only in its message.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "CircuitOpenError",
    "ConfigError",
    "EmergencyStop",
    "HoldTimeout",
    "SlotTimeout",
    "ThrottleTimeout",
    "WedguardError",
    "renamed",
]

_MISSING = object()


_REPR_LIMIT = 200


def _short_repr(value: object) -> str:
    """``repr(value)``, cut to about 200 characters so that a wrong object passed by
    mistake (a whole record, a data set) names itself without flooding the message::

        >>> _short_repr("x" * 1000)[-30:]
        'xxxxxx… (str, 1002 characters)'
        >>> _short_repr([1, 2])
        '[1, 2]'
    """
    text = repr(value)
    if len(text) <= _REPR_LIMIT:
        return text
    return f"{text[:80]}… ({type(value).__name__}, {len(text)} characters)"


class WedguardError(Exception):
    """Base class of every error wedguard raises."""


class ConfigError(WedguardError, ValueError):
    """Bad input to a constructor, parser or configuration file.

    The message always names the field and quotes the value, and says what was
    expected::

        >>> raise ConfigError("rate", "10 parsecs", "a rate such as '10MB/s'")
        Traceback (most recent call last):
        ...
        wedguard.errors.ConfigError: rate: '10 parsecs' is not valid; expected a rate such as '10MB/s'

    Attributes:
        field: the parameter, key path or line that was wrong (may be empty).
        value: the offending value as given.
        expected: what would have been accepted.
    """

    field: str
    value: object
    expected: str

    def __init__(self, field: str, value: object = _MISSING, expected: str = "") -> None:
        self.field = field
        self.value = None if value is _MISSING else value
        self.expected = expected
        if value is _MISSING:
            # free-form message: ConfigError("calendar: no rules given")
            message = field
        else:
            shown = _short_repr(value)
            message = f"{field}: {shown} is not valid" if field else f"{shown} is not valid"
            if expected:
                message += f"; expected {expected}"
        super().__init__(message)


class ThrottleTimeout(WedguardError, TimeoutError):
    """A blocking acquire could not be served within its timeout.

    Nothing was consumed: the tokens are still in the bucket for other callers.

    Attributes:
        requested: how many units were asked for.
        timeout: the timeout the caller gave, in seconds.
        wait: how long the caller would have had to wait (``math.inf`` when paused).
    """

    def __init__(self, requested: float, timeout: float, wait: float) -> None:
        self.requested = requested
        self.timeout = timeout
        self.wait = wait
        super().__init__(
            f"could not acquire {requested:g} within {timeout:g} s (would wait {wait:g} s)"
        )


class SlotTimeout(ThrottleTimeout):
    """No concurrency slot came free within the timeout; the session did not start.

    A :class:`~wedguard.ThrottleTimeout` (and so a :class:`TimeoutError`): nothing is
    held. ``wedguard.distributed.SlotTimeout`` (the slots shared through Redis) is a
    subclass, so ``except wedguard.SlotTimeout`` catches both.

    Attributes:
        session: the session's name.
        timeout: the timeout, in seconds.
        limit: the guard's ``max_concurrent``.
        key: the Redis key of the shared slots, when those were full (else None).
    """

    def __init__(self, session: str, timeout: float, limit: int, *, key: str | None = None) -> None:
        super().__init__(1, timeout, math.inf)
        self.session = session
        self.limit = limit
        self.key = key
        where = "" if key is None else f" in {key!r}"
        self.args = (
            f"session {session!r}: no slot free{where} within {timeout:g} s "
            f"(at most {limit} sessions at once)",
        )


class CircuitOpenError(WedguardError):
    """The circuit breaker is open; the call was not made.

    Attributes:
        breaker: the breaker's name.
        retry_after: seconds until the breaker lets a trial call through.
    """

    def __init__(self, breaker: str, retry_after: float, reason: str = "") -> None:
        self.breaker = breaker
        self.retry_after = retry_after
        self.reason = reason
        message = f"circuit {breaker!r} is open; retry after {retry_after:.3g} s"
        if reason:
            message += f" ({reason})"
        super().__init__(message)


class EmergencyStop(WedguardError):
    """The guard was stopped; raised inside the protected work.

    The host's data stays exactly as written so far: wedguard only ever delays work.

    Attributes:
        reason: why the guard was stopped (as given to ``guard.stop``, or the stop file).
    """

    def __init__(self, reason: str = "") -> None:
        self.reason = reason
        super().__init__(f"emergency stop: {reason}" if reason else "emergency stop")


class HoldTimeout(WedguardError, TimeoutError):
    """The guard held the backup back longer than its ``max_hold``; the session ends.

    Raised inside the protected work (by ``throttle()``) instead of waiting forever
    for production to recover, or for a probe that never answers.

    Attributes:
        held: seconds the guard had held the backup back.
        cause: why: the decision's reason, e.g. ``"impact: HALT (api.latency_s probe
            failed 5 times in a row ...)"``.

    .. versionadded:: 0.2.0
    """

    def __init__(self, held: float, cause: str) -> None:
        self.held = held
        self.cause = cause
        super().__init__(f"held back for {held:.0f} s (max_hold), giving up: {cause or 'impact'}")


def renamed(
    module: str, names: Mapping[str, str], space: Mapping[str, Any]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` that gives each old name of ``names`` (old -> new) as
    the object the new name holds in ``space`` (the module's globals), warning with
    :class:`DeprecationWarning`; any other name is an AttributeError.

    >>> import warnings
    >>> get = renamed("m", {"Rule": "CalendarRule"}, {"CalendarRule": int})
    >>> with warnings.catch_warnings(record=True) as seen:
    ...     warnings.simplefilter("always")
    ...     get("Rule") is int, str(seen[0].message)
    (True, 'm.Rule is deprecated; use m.CalendarRule')
    """

    def get(name: str) -> Any:
        new = names.get(name)
        if new is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(
            f"{module}.{name} is deprecated; use {module}.{new}", DeprecationWarning, stacklevel=2
        )
        return space[new]

    return get
