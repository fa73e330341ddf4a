"""The Protocols at wedguard's edges.

A host plugs in its own sources, sinks, clocks and throttlers without subclassing
anything: any object with the right methods will do.

* :class:`Source` produces samples: a mapping of metric name to float.
* :class:`Sink` receives events (decisions, breaker transitions, alerts, metric points).
* :class:`Event` is what every event object offers a sink.
* :class:`Throttler` is the token-bucket interface, served locally by
  :class:`~wedguard.TokenBucketThrottler` and across hosts by the Redis bucket.
* :class:`Calendar` says which window (level, cap) holds at an instant.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from wedguard.clock import Clock

__all__ = ["Calendar", "Clock", "Event", "Sink", "Source", "Throttler"]

Sample = Mapping[str, float]
"""A set of metric readings taken at one moment, e.g. ``{"cpu.percent": 41.5}``."""


@runtime_checkable
class Source(Protocol):
    """Something that measures production or the backup.

    ``sample()`` never raises and never blocks past the source's own timeout. A reading
    that failed is reported as an error metric (``"<metric>.error": 1.0``), never as an
    exception and never as zero.

    Example::

        class QueueDepth:
            def sample(self) -> Mapping[str, float]:
                return {"queue.depth": float(len(my_queue))}
    """

    def sample(self) -> Mapping[str, float]: ...


@runtime_checkable
class Event(Protocol):
    """What a sink can rely on in every event.

    ``kind`` names the event type (``"decision"``, ``"breaker"``, ``"alert"``, ...);
    ``to_dict()`` gives a JSON-serialisable mapping, secrets already removed.
    """

    @property
    def kind(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class Sink(Protocol):
    """Something that receives events: a log, a file, a webhook, a metrics registry.

    ``emit`` must be quick; a sink that talks to the network queues the event and
    delivers it from its own worker, so a slow or failing sink never holds a backup.
    """

    def emit(self, event: Event) -> None: ...


@runtime_checkable
class Throttler(Protocol):
    """A token bucket: the interface both the local and the Redis bucket serve."""

    @property
    def rate(self) -> float: ...

    @property
    def burst(self) -> float: ...

    @property
    def available(self) -> float: ...

    def try_acquire(self, n: float = 1) -> bool: ...

    def acquire(self, n: float = 1, *, timeout: float | None = None) -> float: ...

    async def acquire_async(self, n: float = 1, *, timeout: float | None = None) -> float: ...

    def reserve(self, n: float = 1) -> float: ...

    def set_rate(self, rate: float | str) -> None: ...


@runtime_checkable
class Calendar(Protocol):
    """A calendar of windows: :class:`~wedguard.PeakHourCalendar`, or anything with
    ``at(when)`` returning a window whose ``.level`` is a :class:`~wedguard.Level`
    (and whose ``.end``, when it has one, is the next instant the answer may change).
    """

    def at(self, when: datetime) -> Any: ...
