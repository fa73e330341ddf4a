"""Many hosts, one budget: wedguard's policies shared through Redis (extra ``redis``).

* :class:`RedisTokenBucket`: the throttler interface, one budget for every host.
* :class:`LeasedBucket`: a shared bucket taken in leased blocks (one round trip per
  block, none per chunk); what a guard in fleet mode uses.
* :class:`RedisSlots`: at most ``limit`` holders at once, with leases.
* :class:`RedisStopFlag`: an emergency stop every host sees.
* :class:`RedisBreakerStorage`: one circuit breaker state for every host
  (compare-and-set in one Lua script).
* :class:`RedisCoordinator`: all of them on one connection under one key prefix.
* :class:`RedisLink`: the connection and its fault handling (local fallback when
  Redis is unreachable or slow, one alert, back to Redis when it answers again).

Importing :mod:`wedguard` never imports this package or redis-py.
"""

from __future__ import annotations

from wedguard.distributed.breaker import RedisBreakerStorage
from wedguard.distributed.bucket import DEFAULT_FALLBACK_SHARE, RedisTokenBucket
from wedguard.distributed.coordinator import RedisCoordinator
from wedguard.distributed.lease import DEFAULT_LEASE_PERIOD, LeasedBucket
from wedguard.distributed.link import RedisLink, bounded_client
from wedguard.distributed.slots import RedisSlots, SlotTimeout
from wedguard.distributed.stop import RedisStopFlag

__all__ = [
    "DEFAULT_FALLBACK_SHARE",
    "DEFAULT_LEASE_PERIOD",
    "LeasedBucket",
    "RedisBreakerStorage",
    "RedisCoordinator",
    "RedisLink",
    "RedisSlots",
    "RedisStopFlag",
    "RedisTokenBucket",
    "SlotTimeout",
    "bounded_client",
]
