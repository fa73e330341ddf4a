"""A token bucket shared by many hosts through Redis.

The bucket's state lives in one Redis hash and every operation is one atomic Lua
script that reads the *Redis server's* clock (``TIME``), never a client's: hosts with
skewed clocks still share one exact budget. The arithmetic is the local
:class:`~wedguard.TokenBucketThrottler`'s: FIFO places, requests larger than the burst
served through debt, a burst of 0.2 s of the rate unless given, rate 0 pauses and
``math.inf`` lets everything through.

When Redis is unreachable or slow, each host falls back within one call to a local
bucket running at ``fallback_share`` of the global rate, alerts once, and returns to
the shared budget as soon as Redis answers again.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Iterable
from typing import Any, Final

from wedguard import _checks
from wedguard.clock import Clock, check_clock, clock_asleep, clock_wait
from wedguard.distributed.link import (
    DEFAULT_PROBE_INTERVAL,
    DEFAULT_TIMEOUT,
    RedisLink,
    _check_seconds,
    _none,
)
from wedguard.errors import ConfigError, ThrottleTimeout
from wedguard.interfaces import Sink
from wedguard.policy.bucket import (
    BURST_FLOOR,
    BURST_SPAN,
    TokenBucketThrottler,
)
from wedguard.units import parse_rate

__all__ = ["DEFAULT_FALLBACK_SHARE", "RedisTokenBucket"]

DEFAULT_FALLBACK_SHARE: Final = 0.1
"""Share of the global rate each host may use while Redis is unreachable."""

_INF: Final = math.inf

# One script serves every operation, so each is a single atomic round trip.
# KEYS[1]  the bucket's hash
# KEYS[2]  (op 'lease' only) the sorted set of the hosts that leased lately
# ARGV     op, x (units or a place), rate, given burst, timeout, sync
#          rate -1 = unlimited; given burst 0 = follow the rate; timeout -1 = none;
#          sync 1 = make the stored rate and burst this caller's (set_rate semantics)
#          (op 'lease': 'reserve' that also records ARGV[7], a host, and counts the
#          hosts seen within ARGV[8] seconds)
# returns  {status, wait, position, rate, burst, available, hosts} as strings
BUCKET_LUA: Final = r"""
if redis.replicate_commands then pcall(redis.replicate_commands) end
local key, op = KEYS[1], ARGV[1]
local x = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local SPAN, FLOOR, INF = 0.2, 1.0, math.huge

local function eff_burst(rate, given)
  if given > 0 then return given end
  if rate < 0 then return INF end
  return math.max(rate * SPAN, FLOOR)
end

local s = redis.call('HMGET', key, 'rate', 'given', 'c0', 't0', 'consumed')
local rate, given, c0, t0, consumed
local dirty = false
if s[1] then
  rate, given = tonumber(s[1]), tonumber(s[2])
  c0, t0, consumed = tonumber(s[3]), tonumber(s[4]), tonumber(s[5])
  if now < t0 then now = t0 end -- the server's clock stepped back: no time passes
else
  rate, given = tonumber(ARGV[3]), tonumber(ARGV[4])
  consumed, t0, dirty = 0, now, true
  c0 = eff_burst(rate, given) -- a new bucket starts full
  if c0 == INF then c0 = 0 end
end
local burst = eff_burst(rate, given)

local function credit()
  local c = c0 + rate * (now - t0)
  local cap = consumed + burst
  if c >= cap then
    c0, t0, dirty = cap, now, true
    return cap
  end
  return c
end

local function set_rate(nr, ng)
  local nb = eff_burst(nr, ng)
  if rate < 0 then
    c0 = consumed + nb
    if nb == INF then c0 = consumed end
  else
    c0 = credit()
    if c0 > consumed + nb then c0 = consumed + nb end
  end
  t0, rate, given, burst, dirty = now, nr, ng, nb, true
end

-- the counters are cumulative: a shortfall within their rounding error (a few units
-- in the last place of the larger counter) is no shortfall
local function slack()
  return 8.9e-16 * math.max(1, math.abs(consumed))
end

local function wait_for(position, c)
  local short = position - c
  if short <= slack() then return 0 end
  if rate > 0 then return short / rate end
  return INF
end

if ARGV[6] == '1' then
  local nr, ng = tonumber(ARGV[3]), tonumber(ARGV[4])
  if nr ~= rate or ng ~= given then set_rate(nr, ng) end
end

local status, wait, position = 1, 0, 0
if op == 'cancel' then
  consumed, dirty = consumed - x, true
elseif rate >= 0 then
  if op == 'try' then
    local c = credit()
    local need = x
    if need > burst then need = burst end
    if c - consumed + slack() >= need then
      consumed, dirty = consumed + x, true
    else
      status = 0
    end
  elseif op == 'reserve' or op == 'place' or op == 'lease' then
    local c = credit()
    local need = x
    if need > burst then need = burst end
    position = consumed + need
    wait = wait_for(position, c)
    local timeout = tonumber(ARGV[5])
    if op == 'place' and timeout >= 0 and wait > timeout then
      status = 0
    else
      consumed, dirty = consumed + x, true
    end
  elseif op == 'remaining' then
    wait = wait_for(x, credit())
  end
end

local available = INF
if rate >= 0 then available = credit() - consumed end
if dirty then
  redis.call('HSET', key, 'rate', string.format('%.17g', rate), 'given', string.format('%.17g', given),
    'c0', string.format('%.17g', c0), 't0', string.format('%.17g', t0),
    'consumed', string.format('%.17g', consumed))
end

local function fmt(v)
  if v == INF then return 'inf' end
  if v == -INF then return '-inf' end
  return string.format('%.17g', v)
end
local out_rate = rate
if rate < 0 then out_rate = INF end
-- a lease (wedguard.distributed.lease) also names its host: how many hosts leased lately
local hosts = 0
if op == 'lease' and KEYS[2] then
  redis.call('ZADD', KEYS[2], now, ARGV[7])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[8]))
  hosts = redis.call('ZCARD', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], 60000)
end
return {tostring(status), fmt(wait), fmt(position), fmt(out_rate), fmt(burst), fmt(available),
  tostring(hosts)}
"""


def _check_share(value: object) -> float:
    """``fallback_share`` as a float, or ConfigError: a share of the rate, 0 < share <= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError("fallback_share", value, "a share of the rate, 0 < share <= 1")
    return float(value)


def _arg(value: float) -> str:
    """A rate or burst as the script reads it (-1 for unlimited)."""
    return "-1" if value == _INF else repr(float(value))


class RedisTokenBucket:
    """A token bucket that many processes on many hosts share through Redis.

    It serves the same interface as :class:`~wedguard.TokenBucketThrottler` (the
    :class:`~wedguard.Throttler` protocol), with the same semantics, but its state is
    one Redis hash at ``key`` and its time is the Redis server's.

    Args:
        client: a :class:`redis.Redis` client, a ``redis://`` URL, or a
            :class:`RedisLink` shared with other distributed objects.
        key: the Redis key of the bucket's hash; every sharer uses the same key.
        rate: the *global* rate, units per second (a number or rate text such as
            ``"40MB/s"``); ``0`` pauses, ``math.inf`` or ``"off"`` means unlimited.
            The most recently configured sharer's rate wins: this one's is written
            on its first contact with Redis (credit earned so far is kept).
        burst: the most a full bucket gives at once; ``None`` follows the rate
            (0.2 s worth of it, at least one unit).
        fallback_share: while Redis is unreachable this host runs on a local bucket
            at this share of the global rate (``0 < share <= 1``; default 0.1).
        timeout: the longest one Redis call may take before Redis counts as
            unreachable (ignored when ``client`` is a :class:`RedisLink`).
        probe_interval: while Redis is unreachable, how often to try it again
            (ignored when ``client`` is a :class:`RedisLink`).
        recheck: a blocked caller asks Redis again at least this often, so a rate
            changed on another host reaches it within ``recheck`` seconds.
        sinks: told once (an :class:`~wedguard.Alert`) when Redis is lost and when
            it is back (ignored when ``client`` is a :class:`RedisLink`).
        clock: where local waiting time comes from (the bucket itself runs on the
            Redis server's clock).

    Example::

        import redis
        from wedguard.distributed import RedisTokenBucket

        bucket = RedisTokenBucket(redis.Redis(), "backup:budget", "40MB/s")
        for chunk in chunks:
            bucket.acquire(len(chunk))   # all hosts together stay within 40 MB/s
            upload(chunk)

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "__weakref__",
        "_arg_given",
        "_arg_rate",
        "_burst",
        "_clock",
        "_cond",
        "_fallback",
        "_generation",
        "_given",
        "_key",
        "_link",
        "_rate",
        "_rate_lock",
        "_rate_set",
        "_recheck",
        "_script",
        "_share",
        "_sync",
        "_unlimited_until",
        "_waiting",
    )

    def __init__(
        self,
        client: Any,
        key: str,
        rate: float | str,
        burst: float | str | None = None,
        *,
        fallback_share: float = DEFAULT_FALLBACK_SHARE,
        timeout: float = DEFAULT_TIMEOUT,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
        recheck: float = 0.5,
        sinks: Iterable[Sink] = (),
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(key, str) or not key:
            raise ConfigError("key", key, "a non-empty string")
        rate_value = parse_rate(rate, field="rate")
        given: float | None
        if burst is None:
            given = None
        else:
            given = parse_rate(burst, field="burst")
            if not 0 < given < _INF:
                raise ConfigError("burst", burst, "a finite number of units > 0, or None")
        share = _check_share(fallback_share)
        self._recheck = _check_seconds("recheck", recheck)
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
        self._share = share
        self._given = given
        self._rate = rate_value
        self._burst = self._local_burst(rate_value)
        self._arg_rate = _arg(rate_value)
        self._arg_given = "0" if given is None else repr(float(given))
        self._sync = "1"
        self._rate_lock = threading.Lock()  # a rate set here against a reply's (no I/O)
        self._rate_set = 0  # rates set here so far
        self._script: Any = self._link.client.register_script(BUCKET_LUA)
        self._fallback = TokenBucketThrottler(
            self._fallback_rate(rate_value),
            None if given is None else given * self._share,
            clock=self._clock,
        )
        self._cond = threading.Condition(threading.Lock())
        self._generation = 0
        self._waiting = 0
        self._unlimited_until = -_INF

    # -- properties -------------------------------------------------------------------

    @property
    def key(self) -> str:
        """The Redis key of the bucket's hash."""
        return self._key

    @property
    def link(self) -> RedisLink:
        """The Redis connection and its online/offline state."""
        return self._link

    @property
    def online(self) -> bool:
        """False while Redis is unreachable and the local fallback budget is in use."""
        return self._link.online

    @property
    def fallback(self) -> TokenBucketThrottler:
        """The local bucket used while Redis is unreachable."""
        return self._fallback

    @property
    def fallback_share(self) -> float:
        """The share of the global rate the fallback bucket runs at."""
        return self._share

    @property
    def rate(self) -> float:
        """The global rate as last seen in Redis (or as configured)."""
        return self._rate

    @property
    def burst(self) -> float:
        """The global burst as last seen in Redis (or as configured)."""
        return self._burst

    @property
    def available(self) -> float:
        """Units that could be taken now without waiting (the fallback's while offline)."""
        reply = self._call("state", 0.0, -1.0)
        if reply is None:
            return self._fallback.available
        return float(reply[5])

    @property
    def waiting(self) -> int:
        """How many callers of this object are blocked in :meth:`acquire` now."""
        return self._waiting

    # -- helpers ----------------------------------------------------------------------

    def _local_burst(self, rate: float) -> float:
        if self._given is not None:
            return self._given
        if rate == _INF:
            return _INF
        return max(rate * BURST_SPAN, BURST_FLOOR)

    def _fallback_rate(self, rate: float) -> float:
        return rate if rate == _INF else rate * self._share

    def _eval(
        self, client: Any, op: str, x: float, timeout: float, host: tuple[str, ...] = ()
    ) -> list[Any]:
        """One script call. ``host``: (hosts key, host, seconds) for op ``lease``.

        A rate set here while the call is in flight wins over the rate its reply
        carries, and is written by the next call (the reply read the old one)."""
        setting = self._rate_set
        reply: list[Any] = self._script(
            keys=(self._key, *host[:1]),
            args=(
                op,
                repr(float(x)),
                self._arg_rate,
                self._arg_given,
                repr(timeout),
                self._sync,
                *host[1:],
            ),
            client=client,
        )
        rate = float(reply[3])
        with self._rate_lock:
            if self._rate_set == setting:  # else: set meanwhile, still to be written
                self._sync = "0"
                if rate != self._rate:
                    self._seen_rate(rate, float(reply[4]))
            else:
                rate = self._rate
        if rate == _INF:
            # Unlimited: nothing to count. Skip Redis for `recheck` seconds, so an
            # unlimited budget costs no round trip per chunk; a rate set elsewhere
            # still arrives within `recheck` seconds.
            self._unlimited_until = self._clock.monotonic() + self._recheck
        return reply

    def _free(self) -> bool:
        """The global rate was unlimited at a reading younger than ``recheck``."""
        return self._rate == _INF and self._clock.monotonic() < self._unlimited_until

    def _seen_rate(self, rate: float, burst: float) -> None:
        """Follow a global rate: one another sharer set, or this one (:meth:`set_rate`)."""
        self._rate = rate
        self._burst = burst
        self._arg_rate = _arg(rate)
        self._fallback.set_rate(self._fallback_rate(rate))

    def _call(self, op: str, x: float, timeout: float) -> list[Any] | None:
        """One script call; None when Redis is unreachable (the link then goes offline)."""
        return self._link.call(lambda client: self._eval(client, op, x, timeout), _none)

    # -- the throttler interface ------------------------------------------------------

    def try_acquire(self, n: float = 1) -> bool:
        """Take ``n`` units if they are there now; never waits (one Redis round trip).

        While others wait their places come first, so this returns False rather than
        jumping the queue. While Redis is unreachable the fallback bucket answers.
        """
        _checks.units(n)  # a Redis round trip follows: the full check costs nothing here
        if self._free():
            return True
        reply = self._link.call(lambda client: self._eval(client, "try", n, -1.0), _none)
        if reply is None:
            return self._fallback.try_acquire(n)
        return reply[0] in (b"1", "1")

    def reserve(self, n: float = 1) -> float:
        """Take ``n`` units now and return how many seconds the caller must wait.

        Never sleeps (one Redis round trip); ``math.inf`` while the bucket is paused.
        """
        _checks.units(n)
        if self._free():
            return 0.0
        reply = self._call("reserve", n, -1.0)
        if reply is None:
            return self._fallback.reserve(n)
        return float(reply[1])

    def _begin(self, n: float, timeout: float | None) -> tuple[float, float] | None:
        """Reserve a place; (position, wait) or None when Redis is unreachable."""
        reply = self._call("place", n, -1.0 if timeout is None else float(timeout))
        if reply is None:
            return None
        wait = float(reply[1])
        if reply[0] not in (b"1", "1"):
            raise ThrottleTimeout(n, timeout or 0.0, wait)
        return float(reply[2]), wait

    def _give_back(self, n: float) -> None:
        self._call("cancel", n, -1.0)

    def acquire(self, n: float = 1, *, timeout: float | None = None) -> float:
        """Take ``n`` units, waiting for them if need be; returns the seconds waited.

        The place is reserved in Redis at once (FIFO across all hosts); the caller
        then waits locally, asking Redis again every ``recheck`` seconds so that a rate
        changed elsewhere reaches it. If the units cannot be had within ``timeout``,
        :class:`~wedguard.ThrottleTimeout` is raised and nothing is consumed. While
        Redis is unreachable the fallback bucket serves the call with the same timeout.
        """
        _checks.units(n)
        _checks.timeout(timeout)
        if self._free():
            return 0.0
        clock = self._clock
        start = now = clock.monotonic()
        placed = self._begin(n, timeout)
        if placed is None:
            return self._fallback.acquire(n, timeout=timeout)
        position, wait = placed
        if wait <= 0:
            return 0.0
        deadline = _INF if timeout is None else start + timeout
        with self._cond:
            self._waiting += 1
        try:
            while True:
                end = now + wait
                limit = min(wait, self._recheck, deadline - now)
                with self._cond:
                    generation = self._generation
                    clock_wait(clock, self._cond, limit)
                    changed = generation != self._generation
                now = clock.monotonic()
                if now >= end and not changed:
                    return now - start
                reply = self._call("remaining", position, -1.0)
                wait = max(end - now, 0.0) if reply is None else float(reply[1])
                if wait <= 0:
                    return now - start
                if now + wait > deadline:
                    raise ThrottleTimeout(n, timeout or 0.0, now + wait - start)
        except BaseException:
            self._give_back(n)  # nothing consumed: give the place back
            raise
        finally:
            with self._cond:
                self._waiting -= 1

    async def acquire_async(self, n: float = 1, *, timeout: float | None = None) -> float:
        """The asyncio form of :meth:`acquire`: Redis calls run in a worker thread.

        Cancelling the awaiting task gives the reserved units back.
        """
        _checks.units(n)
        _checks.timeout(timeout)
        if self._free():
            return 0.0
        clock = self._clock
        start = now = clock.monotonic()
        placed = await asyncio.to_thread(self._begin, n, timeout)
        if placed is None:
            return await self._fallback.acquire_async(n, timeout=timeout)
        position, wait = placed
        if wait <= 0:
            return 0.0
        deadline = _INF if timeout is None else start + timeout
        self._waiting += 1
        try:
            while True:
                end = now + wait
                generation = self._generation
                await clock_asleep(clock, min(wait, self._recheck, deadline - now))
                now = clock.monotonic()
                if now >= end and generation == self._generation:
                    return now - start
                reply = await asyncio.to_thread(self._call, "remaining", position, -1.0)
                wait = max(end - now, 0.0) if reply is None else float(reply[1])
                if wait <= 0:
                    return now - start
                if now + wait > deadline:
                    raise ThrottleTimeout(n, timeout or 0.0, now + wait - start)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(self._give_back, n))
            raise
        finally:
            self._waiting -= 1

    def set_rate(self, rate: float | str) -> None:
        """Change the global rate live for every sharer; credit earned so far is kept.

        ``0`` pauses, ``math.inf`` or ``"off"`` lets everything through. Waiters here
        recompute at once, waiters on other hosts within ``recheck`` seconds. While
        Redis is unreachable the change applies to the fallback bucket and is written
        to Redis when it is back.
        """
        self._set_rate_local(rate)
        self._call("state", 0.0, -1.0)
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def _set_rate_local(self, rate: float | str) -> float:
        """Take a new global rate here; the next Redis call writes it (no round trip)."""
        value = parse_rate(rate, field="rate")
        with self._rate_lock:
            self._seen_rate(value, self._local_burst(value))
            self._sync = "1"
            self._rate_set += 1
        self._unlimited_until = -_INF
        return value

    def __repr__(self) -> str:
        state = "online" if self._link.online else "offline (fallback)"
        return (
            f"{type(self).__name__}(key={self._key!r}, rate={self._rate:g}, "
            f"burst={self._burst:g}, {state})"
        )
