"""A circuit breaker's state shared by many hosts: a BreakerStorage in Redis.

:class:`~wedguard.CircuitBreaker` keeps its whole state in one
:class:`~wedguard.BreakerRecord` and changes it only by compare-and-set against the
version it read. :class:`RedisBreakerStorage` serves that protocol from one Redis hash,
the compare-and-set being one atomic Lua script, so every host's breaker of the same
key opens, half-opens and closes together.

A record's ``opened_at`` is a reading of the breaker's local monotonic clock, which
means nothing on another host. The storage therefore keeps the *server's* time of
opening and converts on the way in and out: the recovery timer runs on the Redis
server's clock, however skewed the hosts' clocks are.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, Final

from wedguard.clock import Clock, check_clock
from wedguard.distributed.link import (
    DEFAULT_PROBE_INTERVAL,
    DEFAULT_TIMEOUT,
    RedisLink,
    _check_seconds,
    _none,
)
from wedguard.errors import ConfigError
from wedguard.interfaces import Sink
from wedguard.policy.breaker import BreakerRecord, BreakerState

__all__ = ["RedisBreakerStorage"]

# KEYS[1] the record's hash
# ARGV    op ('load' or 'cas'), expected version, then the new record:
#         state, version, generation, failures, successes, trials, age of opened_at
#         (seconds before now), reason
# returns {stored (0/1), server now, state, version, generation, failures, successes,
#          trials, opened (server seconds, '' if never written), reason}
BREAKER_LUA: Final = r"""
if redis.replicate_commands then pcall(redis.replicate_commands) end
local key, op = KEYS[1], ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local fields = {'state', 'version', 'generation', 'failures', 'successes', 'trials', 'opened', 'reason'}
local cur = redis.call('HMGET', key, unpack(fields))
local stored = 0
if op == 'cas' and (tonumber(cur[2]) or 0) == tonumber(ARGV[2]) then
  local opened = string.format('%.17g', now - tonumber(ARGV[9]))
  cur = {ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], opened, ARGV[10]}
  redis.call('HSET', key, 'state', cur[1], 'version', cur[2], 'generation', cur[3],
    'failures', cur[4], 'successes', cur[5], 'trials', cur[6], 'opened', cur[7],
    'reason', cur[8])
  stored = 1
end
local out = {stored, string.format('%.17g', now)}
for i = 1, 8 do out[i + 2] = cur[i] or '' end
return out
"""

_STATES: Final = {state.value: state for state in BreakerState}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisBreakerStorage:
    """A :class:`~wedguard.BreakerStorage` in a Redis hash, shared by every host.

    Args:
        client: a :class:`redis.Redis` client, a ``redis://`` URL, or a
            :class:`RedisLink` shared with other distributed objects.
        key: the Redis key of the record's hash.
        max_age: :meth:`load` (called on every guarded call) answers from a reading
            at most this many seconds old; ``0`` reads Redis every time. A failed
            compare-and-set always refreshes the reading.
        clock: the breaker's clock (the same object the breaker is given), used to
            convert ``opened_at`` to and from the server's time.
        timeout: as for :class:`RedisLink` (ignored when ``client`` is one).
        probe_interval: as for :class:`RedisLink` (ignored when ``client`` is one).
        sinks: as for :class:`RedisLink` (ignored when ``client`` is one).

    While Redis is unreachable the breaker runs on the last record it read, as a
    local breaker (compare-and-set against that copy); when Redis is back, the shared
    record is read again and wins.

    Example::

        import redis
        import wedguard as wg
        from wedguard.distributed import RedisBreakerStorage

        storage = RedisBreakerStorage(redis.Redis(), "wedguard:breaker:upload")
        breaker = wg.CircuitBreaker("upload", storage=storage)   # on every host

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_checked", "_clock", "_key", "_link", "_lock", "_max_age", "_record", "_script")

    def __init__(
        self,
        client: Any,
        key: str,
        *,
        max_age: float = 0.25,
        clock: Clock | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
        sinks: Iterable[Sink] = (),
    ) -> None:
        if not isinstance(key, str) or not key:
            raise ConfigError("key", key, "a non-empty string")
        max_age = _check_seconds("max_age", max_age, allow_zero=True)
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
        self._max_age = max_age
        self._script: Any = self._link.client.register_script(BREAKER_LUA)
        self._record = BreakerRecord()
        self._checked = -float("inf")
        self._lock = threading.Lock()

    @property
    def key(self) -> str:
        return self._key

    @property
    def link(self) -> RedisLink:
        return self._link

    def _decode(self, reply: list[Any]) -> BreakerRecord:
        if not _text(reply[2]):
            return BreakerRecord()
        server_now = float(reply[1])
        opened = _text(reply[8])
        opened_at = 0.0 if not opened else self._clock.monotonic() - (server_now - float(opened))
        return BreakerRecord(
            state=_STATES[_text(reply[2])],
            version=int(reply[3]),
            generation=int(reply[4]),
            failures=int(reply[5]),
            successes=int(reply[6]),
            trials=int(reply[7]),
            opened_at=opened_at,
            reason=_text(reply[9]),
        )

    def _keep(self, record: BreakerRecord) -> None:
        self._record = record
        self._checked = self._clock.monotonic()

    def load(self) -> BreakerRecord:
        """The shared record (from a reading at most ``max_age`` old); never raises."""
        if self._clock.monotonic() - self._checked < self._max_age:
            return self._record
        reply = self._link.call(
            lambda client: self._script(keys=(self._key,), args=("load", -1), client=client),
            _none,
        )
        if reply is None:
            return self._record  # offline: the last record read, kept locally
        record = self._decode(reply)
        with self._lock:
            self._keep(record)
        return record

    def compare_and_set(self, expected_version: int, new: BreakerRecord) -> bool:
        """Store ``new`` if the shared record's version is ``expected_version`` (atomic)."""
        age = self._clock.monotonic() - new.opened_at
        args = (
            "cas",
            expected_version,
            new.state.value,
            new.version,
            new.generation,
            new.failures,
            new.successes,
            new.trials,
            repr(age),
            new.reason,
        )
        reply = self._link.call(
            lambda client: self._script(keys=(self._key,), args=args, client=client), _none
        )
        with self._lock:
            if reply is None:  # offline: compare-and-set against the local copy
                if self._record.version != expected_version:
                    return False
                self._record = new
                return True
            stored = int(reply[0]) == 1
            self._keep(new if stored else self._decode(reply))
            return stored

    def __repr__(self) -> str:
        return (
            f"RedisBreakerStorage(key={self._key!r}, {self._record.state}, v{self._record.version})"
        )
