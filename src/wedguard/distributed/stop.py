"""An emergency stop that every host sees: one Redis key."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Any

from wedguard.clock import Clock, check_clock
from wedguard.distributed.link import DEFAULT_PROBE_INTERVAL, DEFAULT_TIMEOUT, RedisLink
from wedguard.errors import ConfigError
from wedguard.interfaces import Sink

__all__ = ["RedisStopFlag"]


class RedisStopFlag:
    """A shared stop flag: :meth:`set` on any host, every guard reading it stops.

    Args:
        client: a :class:`redis.Redis` client, a ``redis://`` URL, or a
            :class:`RedisLink` shared with other distributed objects.
        key: the Redis key of the flag.
        max_age: :meth:`is_set` answers from a reading at most this many seconds old,
            so a hot loop may ask on every chunk without a round trip each time
            (``0``: always ask Redis). With the default 0.5 s a stop reaches every
            host within a second.
        timeout: as for :class:`RedisLink` (ignored when ``client`` is one).
        probe_interval: as for :class:`RedisLink` (ignored when ``client`` is one).
        sinks: as for :class:`RedisLink` (ignored when ``client`` is one).
        clock: where time comes from (for ``max_age``).

    While Redis is unreachable :meth:`is_set` keeps answering with the last reading
    (False if there was none), and :meth:`set` / :meth:`clear` return False.

    Example::

        flag = RedisStopFlag(redis.Redis(), "wedguard:stop")
        flag.set("database failover in progress")     # on any host
        if flag.is_set():                              # on every host, within 1 s
            raise EmergencyStop(flag.reason or "")

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_checked", "_clock", "_key", "_link", "_lock", "_max_age", "_reason", "_set")

    def __init__(
        self,
        client: Any,
        key: str,
        *,
        max_age: float = 0.5,
        timeout: float = DEFAULT_TIMEOUT,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
        sinks: Iterable[Sink] = (),
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(key, str) or not key:
            raise ConfigError("key", key, "a non-empty string")
        if isinstance(max_age, bool) or not isinstance(max_age, (int, float)) or not max_age >= 0:
            raise ConfigError("max_age", max_age, "seconds >= 0")
        self._clock: Clock = check_clock(clock)
        self._link = RedisLink.of(
            client,
            timeout=timeout,
            probe_interval=probe_interval,
            sinks=sinks,
            clock=self._clock,
            name=key,
        )
        self._key = key
        self._max_age = float(max_age)
        self._checked = -float("inf")
        self._set = False
        self._reason: str | None = None
        self._lock = threading.Lock()

    @property
    def key(self) -> str:
        return self._key

    @property
    def link(self) -> RedisLink:
        return self._link

    def set(self, reason: str = "") -> bool:
        """Raise the flag for every host; returns False if Redis could not be reached."""
        value = json.dumps({"reason": str(reason)})
        ok, _ = self._link.try_call(lambda client: client.set(self._key, value))
        if ok:
            self._seen(True, str(reason))
        return ok

    def clear(self) -> bool:
        """Lower the flag for every host; returns False if Redis could not be reached."""
        ok, _ = self._link.try_call(lambda client: client.delete(self._key))
        if ok:
            self._seen(False, None)
        return ok

    def _seen(self, is_set: bool, reason: str | None) -> None:
        with self._lock:
            self._set = is_set
            self._reason = reason
            self._checked = self._clock.monotonic()

    def refresh(self) -> bool:
        """Read the flag from Redis now; returns whether it is set (last reading if offline)."""
        answered, raw = self._link.try_call(lambda client: client.get(self._key))
        if not answered:
            return self._set
        if raw is None:  # the key is absent: not set
            self._seen(False, None)
            return False
        try:
            reason = str(json.loads(raw)["reason"])
        except (ValueError, TypeError, KeyError):
            reason = raw.decode() if isinstance(raw, bytes) else str(raw)
        self._seen(True, reason)
        return True

    def is_set(self) -> bool:
        """Whether the flag is raised, from a reading at most ``max_age`` seconds old."""
        if self._clock.monotonic() - self._checked < self._max_age:
            return self._set
        return self.refresh()

    @property
    def reason(self) -> str | None:
        """Why the flag was raised (None when it is not set)."""
        return self._reason if self.is_set() else None

    def __repr__(self) -> str:
        return f"RedisStopFlag(key={self._key!r}, set={self._set})"
