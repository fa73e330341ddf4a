"""The breaker's state as values: :class:`BreakerState`, the transition table,
:class:`BreakerRecord` (what a storage keeps), :class:`BreakerEvent` (what listeners
hear) and the storage interface with its in-memory implementation."""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final, Protocol, TypeAlias, runtime_checkable

import attrs

from wedguard.errors import ConfigError

__all__ = [
    "CLOSED",
    "HALF_OPEN",
    "OPEN",
    "BreakerEvent",
    "BreakerRecord",
    "BreakerState",
    "BreakerStorage",
    "Exclusion",
    "MemoryBreakerStorage",
]

Exclusion: TypeAlias = type[BaseException] | Callable[[BaseException], bool]
"""An ``exclude=`` entry: an exception type, or a predicate that returns True for an
exception that must not count as a failure."""


class BreakerState(enum.Enum):
    """Where a circuit breaker stands.

    * ``CLOSED``: calls go through; failures are counted.
    * ``OPEN``: calls are refused with :class:`~wedguard.CircuitOpenError` until the
      recovery timeout has passed.
    * ``HALF_OPEN``: a limited number of trial calls go through; their outcome closes
      the breaker or opens it again.
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"

    def __str__(self) -> str:
        return self.name


CLOSED: Final = BreakerState.CLOSED
OPEN: Final = BreakerState.OPEN
HALF_OPEN: Final = BreakerState.HALF_OPEN


# -- the transition table --------------------------------------------------------------
#
# The counters decide *when* an event happens; this table alone decides *where* the
# breaker goes. Pairs that are not in the table change nothing (a failure while OPEN,
# say, comes from a call admitted before the breaker opened and is ignored).
#
#   (state,      event)               -> new state   rule
_TRANSITIONS: Final[dict[tuple[BreakerState, str], BreakerState]] = {
    # failure_threshold consecutive failures (or, in failure-rate mode, the failure
    # rate over the window reached the threshold with at least minimum_calls calls)
    (CLOSED, "too_many_failures"): OPEN,
    # recovery_timeout has passed on the clock since the breaker opened
    (OPEN, "recovery_timeout"): HALF_OPEN,
    # a trial call failed: open again, with a fresh recovery timer
    (HALF_OPEN, "trial_failed"): OPEN,
    # success_threshold consecutive trial calls succeeded
    (HALF_OPEN, "trials_succeeded"): CLOSED,
    # by hand: trip(reason) opens from any state (restarting the timer)
    (CLOSED, "trip"): OPEN,
    (OPEN, "trip"): OPEN,
    (HALF_OPEN, "trip"): OPEN,
    # by hand: reset() closes from any state (clearing every counter)
    (CLOSED, "reset"): CLOSED,
    (OPEN, "reset"): CLOSED,
    (HALF_OPEN, "reset"): CLOSED,
}


# -- values ----------------------------------------------------------------------------


@attrs.frozen(slots=True)
class BreakerRecord:
    """The whole state of one breaker, as a storage keeps it.

    A record is never changed in place: the breaker reads one, computes the next and
    asks the storage to :meth:`~BreakerStorage.compare_and_set` it.

    Attributes:
        state: where the breaker stands.
        version: bumped by every write; the compare-and-set compares it.
        generation: bumped by every change of state. A call's outcome counts only if
            the breaker is still in the generation that admitted the call.
        failures: consecutive failures counted while CLOSED.
        successes: consecutive successful trial calls while HALF_OPEN.
        trials: trial calls admitted and not yet finished while HALF_OPEN.
        opened_at: ``clock.monotonic()`` when the breaker last opened.
        reason: why the breaker is in its state, for people.

    .. versionadded:: 0.1.0
    """

    state: BreakerState = CLOSED
    version: int = 0
    generation: int = 0
    failures: int = 0
    successes: int = 0
    trials: int = 0
    opened_at: float = 0.0
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable mapping, for storages that keep records as text.

        >>> BreakerRecord(OPEN, version=3, opened_at=12.5).to_dict()["state"]
        'open'
        """
        return {
            "state": self.state.value,
            "version": self.version,
            "generation": self.generation,
            "failures": self.failures,
            "successes": self.successes,
            "trials": self.trials,
            "opened_at": self.opened_at,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BreakerRecord:
        """The record :meth:`to_dict` gave; missing keys take their defaults.

        Raises:
            ConfigError: a value is of the wrong kind.
        """
        try:
            return cls(
                state=BreakerState(data.get("state", "closed")),
                version=int(data.get("version", 0)),
                generation=int(data.get("generation", 0)),
                failures=int(data.get("failures", 0)),
                successes=int(data.get("successes", 0)),
                trials=int(data.get("trials", 0)),
                opened_at=float(data.get("opened_at", 0.0)),
                reason=str(data.get("reason", "")),
            )
        except (TypeError, ValueError):
            raise ConfigError(
                "record", dict(data), "a mapping from BreakerRecord.to_dict()"
            ) from None


@attrs.frozen(slots=True)
class BreakerEvent:
    """A breaker changed state; what listeners and sinks receive.

    It satisfies the :class:`~wedguard.Event` protocol (``kind == "breaker"``,
    :meth:`to_dict`), so it can be handed to any sink.

    Attributes:
        breaker: the breaker's name.
        old: the state it left.
        new: the state it entered.
        reason: why, for people (``"3 consecutive failures (last: TimeoutError)"``).
        at: when, as an aware datetime from the breaker's clock.

    Example::

        >>> from datetime import datetime, timezone
        >>> event = BreakerEvent("db", BreakerState.CLOSED, BreakerState.OPEN,
        ...                      "tripped by hand",
        ...                      datetime(2026, 1, 5, tzinfo=timezone.utc))
        >>> event.kind, event.to_dict()["new"]
        ('breaker', 'OPEN')

    .. versionadded:: 0.1.0
    """

    breaker: str
    old: BreakerState
    new: BreakerState
    reason: str
    at: datetime

    @property
    def kind(self) -> str:
        """Always ``"breaker"``."""
        return "breaker"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable mapping of the event."""
        return {
            "kind": "breaker",
            "breaker": self.breaker,
            "old": self.old.name,
            "new": self.new.name,
            "reason": self.reason,
            "at": self.at.isoformat(),
        }


# -- storage ---------------------------------------------------------------------------


@runtime_checkable
class BreakerStorage(Protocol):
    """Where a breaker's :class:`BreakerRecord` lives.

    ``load()`` returns the current record; it is called on every guarded call, so it
    must be quick (a shared storage may serve it from a short-lived local copy).
    ``compare_and_set(expected_version, new)`` stores ``new`` only if the stored record's
    version is still ``expected_version`` and says whether it did; it must be atomic.
    A record that was never written reads as ``BreakerRecord()`` (closed, version 0).

    ``opened_at`` is a reading of the breaker's clock, so breakers sharing a storage
    must share a clock too.

    Example::

        >>> storage = MemoryBreakerStorage()
        >>> record = storage.load()
        >>> storage.compare_and_set(record.version, BreakerRecord(version=1))
        True
        >>> storage.compare_and_set(record.version, BreakerRecord(version=1))
        False

    .. versionadded:: 0.1.0
    """

    def load(self) -> BreakerRecord: ...

    def compare_and_set(self, expected_version: int, new: BreakerRecord) -> bool: ...


class MemoryBreakerStorage:
    """The default storage: one record in this process's memory.

    ``load()`` is a plain attribute read; ``compare_and_set`` takes a short lock.

    Args:
        record: the starting record (default: closed, version 0).

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_lock", "_record")

    def __init__(self, record: BreakerRecord | None = None) -> None:
        if record is not None and not isinstance(record, BreakerRecord):
            raise ConfigError("record", record, "a BreakerRecord or None")
        self._record = BreakerRecord() if record is None else record
        self._lock = threading.Lock()

    def load(self) -> BreakerRecord:
        """The current record."""
        return self._record

    def compare_and_set(self, expected_version: int, new: BreakerRecord) -> bool:
        """Store ``new`` if the stored version is ``expected_version``."""
        with self._lock:
            if self._record.version != expected_version:
                return False
            self._record = new
            return True

    def __repr__(self) -> str:
        return f"MemoryBreakerStorage({self._record!r})"
