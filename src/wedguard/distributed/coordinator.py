"""One object that gives a guard everything it shares with other hosts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wedguard.clock import Clock, check_clock
from wedguard.distributed.breaker import RedisBreakerStorage
from wedguard.distributed.bucket import DEFAULT_FALLBACK_SHARE, RedisTokenBucket, _check_share
from wedguard.distributed.lease import LeasedBucket
from wedguard.distributed.link import DEFAULT_PROBE_INTERVAL, DEFAULT_TIMEOUT, RedisLink
from wedguard.distributed.slots import RedisSlots
from wedguard.distributed.stop import RedisStopFlag
from wedguard.errors import ConfigError
from wedguard.interfaces import Sink

__all__ = ["RedisCoordinator"]


class RedisCoordinator:
    """The shared bucket, slots, breaker state and stop flag of a fleet, on one connection.

    Every key lives under ``prefix``: ``<prefix>:bucket:<name>``,
    ``<prefix>:slots:<name>``, ``<prefix>:breaker:<name>``, ``<prefix>:stop``. All objects share one
    :class:`RedisLink`, so Redis going away is noticed, alerted and recovered from
    once for all of them.

    Args:
        url_or_client: a ``redis://`` URL or a :class:`redis.Redis` client.
        prefix: the namespace of the keys; hosts that share a budget share a prefix.
        fallback_share: while Redis is unreachable, each host's buckets run at this
            share of their global rate (``0 < share <= 1``).
        fallback_slots: while Redis is unreachable, how many slots each host may use
            on its own (``0``: wait for Redis).
        timeout: the longest one Redis call may take before Redis counts as
            unreachable; a caller is never held longer than about twice this.
        probe_interval: while Redis is unreachable, how often to try it again.
        sinks: told once when Redis is lost and once when it is back.
        clock: where local time comes from.

    Example::

        coord = RedisCoordinator("redis://backup-redis:6379/0", fallback_share=0.125)
        bucket = coord.bucket("40MB/s")          # one budget for all hosts
        slots = coord.slots(limit=2)             # at most 2 backups at once
        stop = coord.stop_flag                   # `wedguard stop --redis URL` sets it
        breaker = wg.CircuitBreaker("upload", storage=coord.breaker_storage("upload"))

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "_breakers",
        "_buckets",
        "_clock",
        "_fallback_share",
        "_fallback_slots",
        "_leases",
        "_link",
        "_prefix",
        "_slots",
        "_stop",
    )

    def __init__(
        self,
        url_or_client: Any,
        prefix: str = "wedguard",
        *,
        fallback_share: float = DEFAULT_FALLBACK_SHARE,
        fallback_slots: int = 1,
        timeout: float = DEFAULT_TIMEOUT,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
        sinks: Iterable[Sink] = (),
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(prefix, str) or not prefix:
            raise ConfigError("prefix", prefix, "a non-empty string")
        share = _check_share(fallback_share)
        if (
            isinstance(fallback_slots, bool)
            or not isinstance(fallback_slots, int)
            or fallback_slots < 0
        ):
            raise ConfigError("fallback_slots", fallback_slots, "an integer >= 0")
        self._clock: Clock = check_clock(clock)
        self._link = RedisLink.of(
            url_or_client,
            timeout=timeout,
            probe_interval=probe_interval,
            sinks=sinks,
            clock=self._clock,
            name=prefix,
        )
        self._prefix = prefix
        self._fallback_share = share
        self._fallback_slots = fallback_slots
        self._buckets: dict[str, RedisTokenBucket] = {}
        self._leases: dict[str, LeasedBucket] = {}
        self._slots: dict[str, RedisSlots] = {}
        self._breakers: dict[str, RedisBreakerStorage] = {}
        self._stop = RedisStopFlag(self._link, f"{prefix}:stop", clock=self._clock)

    @property
    def link(self) -> RedisLink:
        """The shared connection; ``link.online`` says whether Redis is reachable."""
        return self._link

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def clock(self) -> Clock:
        """The clock the shared objects wait on (give a shared breaker this one)."""
        return self._clock

    @property
    def fallback_share(self) -> float:
        return self._fallback_share

    @property
    def online(self) -> bool:
        return self._link.online

    @property
    def stop_flag(self) -> RedisStopFlag:
        """The fleet's emergency stop (``<prefix>:stop``)."""
        return self._stop

    def bucket(
        self, rate: float | str, burst: float | str | None = None, *, name: str = "default"
    ) -> RedisTokenBucket:
        """The shared token bucket ``name`` (made on first use; later calls return it)."""
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = RedisTokenBucket(
                self._link,
                f"{self._prefix}:bucket:{name}",
                rate,
                burst,
                fallback_share=self._fallback_share,
                clock=self._clock,
            )
            self._buckets[name] = bucket
        return bucket

    def lease(
        self, rate: float | str, burst: float | str | None = None, *, name: str = "default"
    ) -> LeasedBucket:
        """The shared bucket ``name`` taken in leased blocks (made on first use).

        A :class:`~wedguard.Guard` with this coordinator takes its bytes and operations
        this way: a chunk costs no Redis round trip, a block one (at most one per
        0.2 s while the host has demand). See :class:`LeasedBucket`.
        """
        lease = self._leases.get(name)
        if lease is None:
            lease = LeasedBucket(self.bucket(rate, burst, name=name))
            self._leases[name] = lease
        return lease

    def slots(self, limit: int, lease: float = 30.0, *, name: str = "default") -> RedisSlots:
        """The shared concurrency slots ``name`` (made on first use)."""
        slots = self._slots.get(name)
        if slots is None:
            slots = RedisSlots(
                self._link,
                f"{self._prefix}:slots:{name}",
                limit,
                lease,
                fallback_limit=self._fallback_slots,
                clock=self._clock,
            )
            self._slots[name] = slots
        return slots

    def breaker_storage(self, name: str = "default") -> RedisBreakerStorage:
        """The shared circuit breaker state ``name``: pass it as ``storage=``.

        Give the breaker the coordinator's clock (the default system clock, unless
        one was given here).
        """
        storage = self._breakers.get(name)
        if storage is None:
            storage = RedisBreakerStorage(
                self._link, f"{self._prefix}:breaker:{name}", clock=self._clock
            )
            self._breakers[name] = storage
        return storage

    def stop(self, reason: str = "") -> bool:
        """Raise the fleet's stop flag; False if Redis could not be reached."""
        return self._stop.set(reason)

    def resume(self) -> bool:
        """Lower the fleet's stop flag; False if Redis could not be reached."""
        return self._stop.clear()

    def close(self) -> None:
        """Give leased credit back, release held slots and close the connection."""
        for leased in self._leases.values():
            leased.settle()
        for slots in self._slots.values():
            slots.close()
        self._link.close()

    def __enter__(self) -> RedisCoordinator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "online" if self._link.online else "offline"
        return f"RedisCoordinator(prefix={self._prefix!r}, {state})"
