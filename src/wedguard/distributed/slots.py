"""Concurrency slots shared by many hosts: a counting semaphore with leases in Redis.

Each holder is a member of a sorted set scored by the expiry of its lease (the Redis
server's time). A live holder renews its lease from a background thread; a holder that
dies stops renewing and its slot frees itself when the lease runs out. Waiters queue
with a ticket, so slots go to them in FIFO order across all hosts; a waiter that dies
loses its place shortly after it stops asking.

While Redis is unreachable the slots fall back to a local semaphore of
``fallback_limit`` slots (default 1), so a host never runs more than that on its own.
"""

from __future__ import annotations

import asyncio
import math
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Final

from wedguard.clock import Clock, check_clock, clock_asleep
from wedguard.distributed.link import DEFAULT_PROBE_INTERVAL, DEFAULT_TIMEOUT, RedisLink, _none
from wedguard.errors import ConfigError
from wedguard.errors import SlotTimeout as GuardSlotTimeout
from wedguard.interfaces import Sink

__all__ = ["RedisSlots", "SlotTimeout"]

# KEYS  holders (token -> lease expiry, ms), queue (token -> ticket),
#       queue expiry (token -> ms), ticket counter
# ARGV  op, limit, lease ms, waiter ttl ms, token...
# ops   try: take a slot if one is free and nobody waits; acquire: the same, but a
#       waiter that is not served takes (or keeps) its place in the queue; leave: give
#       up a place; release: free a slot; renew: extend the given holders' leases (a
#       holder whose lease ran out, e.g. across a Redis restart, is added back: it is
#       still running); count: nothing but the reply.
# reply {status, holders, waiters}
SLOTS_LUA: Final = r"""
if redis.replicate_commands then pcall(redis.replicate_commands) end
local holders, queue, qexp, seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local op, limit = ARGV[1], tonumber(ARGV[2])
local lease, wait_ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- leases and queue places that ran out belong to processes that died
redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
local gone = redis.call('ZRANGEBYSCORE', qexp, '-inf', now, 'LIMIT', 0, 1000)
for i = 1, #gone do
  redis.call('ZREM', queue, gone[i])
  redis.call('ZREM', qexp, gone[i])
end

local status = 0
local token = ARGV[5]
if op == 'try' or op == 'acquire' then
  local free = limit - redis.call('ZCARD', holders)
  local rank = redis.call('ZRANK', queue, token)
  if not rank then rank = redis.call('ZCARD', queue) end
  if rank < free then
    redis.call('ZADD', holders, now + lease, token)
    redis.call('ZREM', queue, token)
    redis.call('ZREM', qexp, token)
    status = 1
  elseif op == 'acquire' then
    if not redis.call('ZSCORE', queue, token) then
      redis.call('ZADD', queue, redis.call('INCR', seq), token)
    end
    redis.call('ZADD', qexp, now + wait_ttl, token)
  end
elseif op == 'leave' then
  redis.call('ZREM', queue, token)
  redis.call('ZREM', qexp, token)
elseif op == 'release' then
  status = redis.call('ZREM', holders, token)
elseif op == 'renew' then
  for i = 5, #ARGV do
    redis.call('ZADD', holders, now + lease, ARGV[i])
    status = status + 1
  end
end

local ttl = math.max(lease, wait_ttl) * 2 + 60000
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
return {status, redis.call('ZCARD', holders), redis.call('ZCARD', queue)}
"""


class SlotTimeout(GuardSlotTimeout):
    """No slot came free within the caller's timeout; nothing is held.

    A subclass of :class:`wedguard.SlotTimeout` (the guard's), and so a
    :class:`~wedguard.ThrottleTimeout` and a :class:`TimeoutError`: one
    ``except wedguard.SlotTimeout`` catches a full guard and full shared slots alike.

    Attributes:
        key: the slots' Redis key.
        timeout: the timeout the caller gave, in seconds.
        limit: how many holders the slots allow at once.
        session: the guard session that waited (the key when used on their own).
    """

    def __init__(
        self, key: str, timeout: float, limit: int = 0, *, session: str | None = None
    ) -> None:
        super().__init__(key if session is None else session, timeout, limit, key=key)
        message = f"no slot of {key!r} came free within {timeout:g} s"
        if session is not None:
            message = f"session {session!r}: " + message
        if limit:
            message += f" (at most {limit} at once)"
        self.args = (message,)


def _positive(field: str, value: object, *, integer: bool = False, zero: bool = False) -> None:
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    ok = (
        not isinstance(value, bool)
        and isinstance(value, kinds)
        and (value >= 0 if zero else value > 0)  # type: ignore[operator]
        and value < math.inf  # type: ignore[operator]
    )
    if not ok:
        what = "an integer" if integer else "a finite number"
        raise ConfigError(field, value, f"{what} {'>= 0' if zero else '> 0'}")


class RedisSlots:
    """At most ``limit`` holders at once across every host sharing ``key``.

    Args:
        client: a :class:`redis.Redis` client, a ``redis://`` URL, or a
            :class:`RedisLink` shared with other distributed objects.
        key: the prefix of the Redis keys (``<key>:holders``, ``<key>:queue``, ...).
        limit: how many holders at once (every sharer should give the same).
        lease: seconds a holder keeps its slot without renewing it. Live holders
            renew every ``lease / 3`` seconds from a background thread; a holder that
            dies frees its slot at most ``lease`` seconds later.
        poll: how often a waiting caller asks Redis again, in seconds.
        fallback_limit: slots this host may use on its own while Redis is
            unreachable (``0``: wait for Redis).
        timeout: as for :class:`RedisLink` (ignored when ``client`` is one).
        probe_interval: as for :class:`RedisLink` (ignored when ``client`` is one).
        sinks: as for :class:`RedisLink` (ignored when ``client`` is one).
        clock: where local waiting time comes from (leases run on the Redis
            server's clock).

    Example::

        slots = RedisSlots(redis.Redis(), "backup:running", limit=2)
        with slots:                  # waits, FIFO, until fewer than 2 run anywhere
            run_backup()
        if slots.try_acquire():      # never waits
            try:
                run_backup()
            finally:
                slots.release()

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        client: Any,
        key: str,
        limit: int,
        lease: float = 30.0,
        *,
        poll: float = 0.05,
        fallback_limit: int = 1,
        timeout: float = DEFAULT_TIMEOUT,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
        sinks: Iterable[Sink] = (),
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(key, str) or not key:
            raise ConfigError("key", key, "a non-empty string")
        _positive("limit", limit, integer=True)
        _positive("lease", lease)
        if lease < 0.01:
            raise ConfigError("lease", lease, "seconds >= 0.01")
        _positive("poll", poll)
        _positive("fallback_limit", fallback_limit, integer=True, zero=True)
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
        self._limit = limit
        self._lease = float(lease)
        self._poll = float(poll)
        self._fallback_limit = fallback_limit
        self._keys = (f"{key}:holders", f"{key}:queue", f"{key}:queue:ttl", f"{key}:ticket")
        self._lease_ms = str(max(1, round(lease * 1000)))
        self._wait_ttl_ms = str(round(max(1.0, 20 * poll) * 1000))
        self._script: Any = self._link.client.register_script(SLOTS_LUA)
        self._local = threading.BoundedSemaphore(fallback_limit) if fallback_limit else None
        self._held: dict[str, bool] = {}  # token -> held in Redis (else locally)
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._closed = threading.Event()

    # -- properties -------------------------------------------------------------------

    @property
    def key(self) -> str:
        return self._key

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def lease(self) -> float:
        return self._lease

    @property
    def link(self) -> RedisLink:
        return self._link

    @property
    def online(self) -> bool:
        """False while Redis is unreachable and the local fallback slots are in use."""
        return self._link.online

    @property
    def held(self) -> int:
        """How many slots this object holds now."""
        return len(self._held)

    @property
    def in_use(self) -> int:
        """Slots held across all hosts now (this host's local ones while offline)."""
        reply = self._run("count", "")
        if reply is None:
            with self._lock:
                return sum(not in_redis for in_redis in self._held.values())
        return int(reply[1])

    @property
    def waiting(self) -> int:
        """Callers queued for a slot across all hosts (0 while offline)."""
        reply = self._run("count", "")
        return 0 if reply is None else int(reply[2])

    # -- Redis ------------------------------------------------------------------------

    def _eval(self, client: Any, op: str, *tokens: str) -> list[Any]:
        reply: list[Any] = self._script(
            keys=self._keys,
            args=(op, self._limit, self._lease_ms, self._wait_ttl_ms, *tokens),
            client=client,
        )
        return reply

    def _run(self, op: str, *tokens: str) -> list[Any] | None:
        return self._link.call(lambda client: self._eval(client, op, *tokens), _none)

    # -- holding ----------------------------------------------------------------------

    def _take(self, token: str, reply: list[Any] | None) -> bool:
        """Record a slot won in Redis, or try the local one while offline."""
        if reply is None:
            if self._local is None or not self._local.acquire(blocking=False):
                return False
            with self._lock:
                self._held[token] = False
            return True
        if not int(reply[0]):
            return False
        with self._lock:
            self._held[token] = True
            if self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew_loop, name=f"wedguard-slots-{self._key}", daemon=True
                )
                self._renewer.start()
        return True

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody is queued for it; never waits."""
        token = uuid.uuid4().hex
        return self._take(token, self._run("try", token))

    def acquire(
        self, timeout: float | None = None, *, abort: Callable[[], bool] | None = None
    ) -> bool:
        """Take a slot, waiting in FIFO order for one to come free; returns True.

        Raises :class:`SlotTimeout` (a :class:`~wedguard.ThrottleTimeout`) when no
        slot came free within ``timeout`` seconds; nothing is held then. While Redis
        is unreachable a local fallback slot is taken instead when one is free.

        ``abort``, if given, is asked before each poll; when it returns True the
        caller gives up its place and ``acquire`` returns False, holding nothing (a
        guard passes its emergency stop here).
        """
        if timeout is not None:
            _positive("timeout", timeout, zero=True)
        clock = self._clock
        deadline = math.inf if timeout is None else clock.monotonic() + timeout
        token = uuid.uuid4().hex
        try:
            while True:
                if abort is not None and abort():
                    self._run("leave", token)
                    return False
                if self._take(token, self._run("acquire", token)):
                    return True
                now = clock.monotonic()
                if now >= deadline:
                    raise SlotTimeout(self._key, timeout or 0.0, self._limit)
                clock.sleep(min(self._poll, deadline - now))
        except BaseException:
            if token not in self._held:
                self._run("leave", token)
            raise

    async def acquire_async(
        self, timeout: float | None = None, *, abort: Callable[[], bool] | None = None
    ) -> bool:
        """The asyncio form of :meth:`acquire` (Redis calls run in a worker thread)."""
        if timeout is not None:
            _positive("timeout", timeout, zero=True)
        clock = self._clock
        deadline = math.inf if timeout is None else clock.monotonic() + timeout
        token = uuid.uuid4().hex
        try:
            while True:
                if abort is not None and await asyncio.to_thread(abort):
                    await asyncio.to_thread(self._run, "leave", token)
                    return False
                reply = await asyncio.to_thread(self._run, "acquire", token)
                if self._take(token, reply):
                    return True
                now = clock.monotonic()
                if now >= deadline:
                    raise SlotTimeout(self._key, timeout or 0.0, self._limit)
                await clock_asleep(clock, min(self._poll, deadline - now))
        except BaseException:
            if token not in self._held:
                await asyncio.shield(asyncio.to_thread(self._run, "leave", token))
            raise

    def release(self) -> None:
        """Free one slot this object holds (the most recently taken).

        Raises RuntimeError when it holds none.
        """
        with self._lock:
            if not self._held:
                raise RuntimeError(f"release() of {self._key!r} without a held slot")
            token, in_redis = self._held.popitem()
        if in_redis:
            self._run("release", token)  # if Redis is down, the lease frees it
        elif self._local is not None:
            self._local.release()

    @contextmanager
    def hold(self, timeout: float | None = None) -> Iterator[RedisSlots]:
        """``with slots.hold(timeout=60):`` takes a slot for the block."""
        self.acquire(timeout)
        try:
            yield self
        finally:
            self.release()

    def __enter__(self) -> RedisSlots:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    async def __aenter__(self) -> RedisSlots:
        await self.acquire_async()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.release)

    # -- leases -----------------------------------------------------------------------

    def _renew_loop(self) -> None:
        interval = self._lease / 3
        while not self._closed.wait(interval):
            with self._lock:
                tokens = [token for token, in_redis in self._held.items() if in_redis]
                if not tokens:
                    self._renewer = None
                    return
                # Under the lock, so a release cannot slip between the snapshot and
                # the renewal and be added back.
                self._run("renew", *tokens)
        with self._lock:
            self._renewer = None

    def close(self) -> None:
        """Release every slot this object holds and stop renewing leases."""
        while self._held:
            try:
                self.release()
            except RuntimeError:  # pragma: no cover - released concurrently
                break
        self._closed.set()

    def __repr__(self) -> str:
        state = "online" if self._link.online else "offline (fallback)"
        return (
            f"{type(self).__name__}(key={self._key!r}, limit={self._limit}, "
            f"lease={self._lease:g}, held={len(self._held)}, {state})"
        )
