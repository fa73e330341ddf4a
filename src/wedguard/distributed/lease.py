"""Credit leased from a shared Redis bucket in blocks, so that chunks cost no round trip.

A :class:`LeasedBucket` stands in front of a :class:`RedisTokenBucket`. Callers take
units from a local account (:meth:`~LeasedBucket.try_acquire`,
:meth:`~LeasedBucket.reserve`: no Redis, a few hundred nanoseconds); the account is
filled by :meth:`~LeasedBucket.refresh`, which reserves a *block* of units in the shared
bucket in one round trip, the block sized to about ``period`` seconds of this host's
recent demand. The block takes its place in the shared bucket's FIFO queue like any
other request, so the Redis server's clock still decides when its units may be used:
the fleet's budget holds exactly as with one round trip per chunk.

The bounds:

* at most one block fetch per ``period`` (0.2 s) while the host has demand, plus a
  write when the rate changes here and a check every ``recheck`` seconds while the
  shared rate is paused or unlimited;
* a block is at most ``period`` seconds of the global rate (the shared bucket's
  default burst), and credit not used for ``idle`` seconds (or when the guard's last
  session ends) is given back to the shared bucket;
* a caller whose units the leased blocks do not cover yet waits for the next fetch at
  the estimated share; when the estimate was short, it goes up to one chunk early and
  the next block pays that debt, so the host is ahead of the shared bucket by at most
  one chunk per session, never by a growing amount;
* a rate set on another host reaches this one with its next block (within
  ``period`` while it has demand).

Refreshing is the caller's business and happens with no other lock held: the guard
calls :meth:`~LeasedBucket.refresh` from the session's thread before and after its
locked step, and from its sampler. While Redis is unreachable the bucket's local
fallback serves every call, as :class:`RedisTokenBucket` does.
"""

from __future__ import annotations

import collections
import math
import threading
import uuid
from typing import Any, Final

from wedguard import _checks
from wedguard.distributed.bucket import RedisTokenBucket
from wedguard.distributed.link import RedisLink, _check_seconds
from wedguard.errors import ConfigError

__all__ = ["DEFAULT_LEASE_PERIOD", "LeasedBucket"]

DEFAULT_LEASE_PERIOD: Final = 0.2
"""Seconds: at most one block per period; a block is about this long of the demand."""
DEFAULT_LEASE_IDLE: Final = 1.0
"""Seconds without a take after which leased credit goes back to the shared bucket."""

_INF: Final = math.inf
_FLOOR: Final = 0.02  # the smallest block: this many seconds of the global rate


class LeasedBucket:
    """A local account of units leased in blocks from a :class:`RedisTokenBucket`.

    Args:
        bucket: the shared bucket the blocks are reserved in.
        period: the least time between two block fetches, and the length of demand a
            block covers (at most ``period`` seconds of the global rate).
        idle: credit not taken for this long is given back at the next refresh.

    It serves :meth:`try_acquire`, :meth:`reserve` and :meth:`set_rate` without a
    round trip, and :meth:`refresh` (one round trip when one is due, none
    otherwise). ``round_trips`` counts the Redis calls it made.

    Example::

        coord = RedisCoordinator("redis://backup-redis:6379/0")
        lease = coord.lease("40MB/s")        # the shared bucket, leased in blocks
        lease.refresh(len(chunk))            # no lock held: a round trip when due
        time.sleep(lease.reserve(len(chunk)))
        upload(chunk)

    .. versionadded:: 0.2.0
    """

    __slots__ = (
        "__weakref__",
        "_bucket",
        "_clock",
        "_demand",
        "_flight",
        "_granted",
        "_host",
        "_hosts",
        "_idle",
        "_last_take",
        "_last_wait",
        "_link",
        "_lock",
        "_low",
        "_mark_t",
        "_mark_taken",
        "_mono",
        "_next_check",
        "_next_due",
        "_next_fetch",
        "_next_probe",
        "_pending",
        "_pending_units",
        "_period",
        "_rate",
        "_taken",
        "_target",
        "_used",
        "round_trips",
    )

    def __init__(
        self,
        bucket: RedisTokenBucket,
        *,
        period: float = DEFAULT_LEASE_PERIOD,
        idle: float = DEFAULT_LEASE_IDLE,
    ) -> None:
        if not isinstance(bucket, RedisTokenBucket):
            raise ConfigError("bucket", bucket, "a RedisTokenBucket")
        self._period = _check_seconds("period", period)
        self._idle = _check_seconds("idle", idle)
        self._bucket = bucket
        self._link: RedisLink = bucket.link
        self._clock = bucket._clock
        self._mono = self._clock.monotonic
        self._lock = threading.Lock()  # the account; never held across a Redis call
        self._flight = threading.Lock()  # one Redis call at a time
        self._granted = 0.0  # units of blocks whose wait in Redis is over
        self._taken = 0.0  # units taken here
        self._pending: collections.deque[tuple[float, float]] = collections.deque()
        self._pending_units = 0.0  # units of blocks still waiting: (due, units)
        self._rate = bucket.rate
        self._demand = 0.0
        self._mark_t = -_INF
        self._mark_taken = 0.0
        self._target = self._low = 0.0
        self._retarget(0.0)  # the first block: the floor; it grows with the demand
        self._next_fetch = -_INF
        self._next_due = _INF  # when the first pending block's wait is over
        self._next_check = -_INF
        self._next_probe = -_INF
        self._last_take = -_INF
        self._last_wait = 0.0  # the wait Redis gave the last block
        self._hosts = 1  # hosts that leased from the bucket within the last second
        self._host = (f"{bucket.key}:hosts", uuid.uuid4().hex, "1")
        self._used = False
        self.round_trips = 0

    # -- properties -------------------------------------------------------------------

    @property
    def bucket(self) -> RedisTokenBucket:
        """The shared bucket the blocks come from."""
        return self._bucket

    @property
    def rate(self) -> float:
        """The global rate as last seen in Redis (or as set here)."""
        return self._rate

    @property
    def online(self) -> bool:
        return self._link.online

    @property
    def credit(self) -> float:
        """Units leased and not taken yet (negative: taken ahead of the blocks)."""
        with self._lock:
            return self._granted + self._pending_units - self._taken

    @property
    def block(self) -> float:
        """The size of the next block (about ``period`` seconds of the demand)."""
        return self._target

    # -- local: no Redis --------------------------------------------------------------

    def _floor(self) -> float:
        rate = self._rate
        if rate <= 0 or rate == _INF:
            return 0.0
        return max(rate * _FLOOR, 1.0)

    def _retarget(self, target: float) -> None:
        """The next block's size, within [a floor, ``period`` of the global rate]."""
        self._target = min(max(self._floor(), target), self._cap())
        # a rate set here and not yet in Redis: no take without the slow way (refresh)
        self._low = _INF if self._bucket._sync == "1" else self._target

    def _settle_state(self) -> None:
        """After a change of the blocks or a call to Redis (lock held)."""
        self._next_due = self._pending[0][0] if self._pending else _INF
        if not self._pending:
            self._pending_units = 0.0
        self._retarget(self._target)

    def _absorb(self, now: float) -> None:
        """Blocks whose wait is over become credit (lock held)."""
        pending = self._pending
        while pending and pending[0][0] <= now:
            units = pending.popleft()[1]
            self._granted += units
            self._pending_units -= units
        if pending:
            self._next_due = pending[0][0]
        else:
            self._pending_units = 0.0
            self._next_due = _INF

    def _due(self, now: float, hint: float) -> bool:
        """Whether a Redis call is due now for a caller about to take ``hint``."""
        if not self._link.online:
            return now >= self._next_probe
        bucket = self._bucket
        if bucket._sync == "1":
            return True  # a rate set here is not in Redis yet
        rate = self._rate
        if rate == _INF or rate <= 0:
            return self._used and now >= self._next_check
        if now < self._next_fetch:
            return False
        surplus = self._granted + self._pending_units - self._taken - hint
        if hint <= 0 and self._idle_at(now):
            return surplus >= 1.0  # give idle credit back
        return surplus < self._low

    def _idle_at(self, now: float) -> bool:
        """No take for ``idle`` seconds and nobody waiting for a block."""
        return -_INF < self._last_take <= now - self._idle and self._taken <= self._granted

    def due(self, hint: float = 0.0) -> bool:
        """Whether :meth:`refresh` would call Redis now (cheap; no lock)."""
        return self._due(self._clock.monotonic(), hint)

    def try_acquire(self, n: float = 1) -> bool:
        """Take ``n`` units from leased credit that is there now; False when there is
        not enough, or when a refresh is due (the caller then takes the slow way).

        While Redis is unreachable the fallback bucket answers.
        """
        if not self._link._online:
            return self._bucket.fallback.try_acquire(n)
        with self._lock:
            now = self._mono()
            if now >= self._next_due:
                self._absorb(now)
            left = self._granted - self._taken - n
            if (
                left >= 0
                and n >= 0
                and (now < self._next_fetch or left + self._pending_units >= self._low)
            ):
                self._taken += n
                self._last_take = now
                return True
            return False  # (also while unlimited: the slow way counts nothing)

    def untake(self, n: float) -> None:
        """Give back ``n`` units just taken by :meth:`try_acquire` (not used after all)."""
        if not self._link._online:
            return  # the fallback bucket has no way back; its credit is local anyway
        with self._lock:
            if self._rate != _INF:
                self._taken -= n

    def reserve(self, n: float = 1) -> float:
        """Take ``n`` units now and return the seconds to wait before using them.

        Units the leased blocks cover wait for their block's place in Redis; units
        beyond them wait for the next fetch and then their time at the global rate.
        ``math.inf`` while the shared rate is 0. Never calls Redis.
        """
        n = _checks.units(n)
        if not self._link._online:
            return self._bucket.fallback.reserve(n)
        with self._lock:
            now = self._clock.monotonic()
            rate = self._rate
            if rate == _INF:
                self._used = True
                return 0.0
            self._absorb(now)
            self._taken += n
            self._last_take = now
            self._used = True
            short = self._taken - self._granted
            if short <= 1e-9:
                return 0.0
            if rate <= 0:
                return _INF
            covered = 0.0
            last_due = now
            for due, units in self._pending:
                covered += units
                last_due = due
                if covered >= short - 1e-9:
                    return max(due - now, 0.0)
            # beyond the blocks: after the next one, at this host's share of the rate
            start = max(last_due, self._next_fetch, now)
            return start - now + (short - covered) * self._hosts / rate

    def set_rate(self, rate: float | str) -> None:
        """Change the global rate; written to Redis by the next :meth:`refresh`."""
        value = self._bucket._set_rate_local(rate)
        with self._lock:
            self._rate = value
            self._retarget(self._target)
            self._next_check = self._next_fetch = -_INF

    def _cap(self) -> float:
        rate = self._rate
        return _INF if rate == _INF else rate * self._period

    # -- Redis ------------------------------------------------------------------------

    def refresh(self, hint: float = 0.0) -> bool:
        """Make the Redis call that is due, if one is: fetch a block, write a rate set
        here, give idle credit back, or read a paused or unlimited rate.

        Call it with no lock held. ``hint``: units the caller is about to take. It
        waits for a call in flight only when the leased credit cannot cover ``hint``.
        Returns whether it called Redis.
        """
        now = self._clock.monotonic()
        if not self._due(now, hint):
            return False
        with self._lock:
            uncovered = hint > 0 and self._granted + self._pending_units - self._taken < hint
        if not self._flight.acquire(blocking=uncovered):
            return False
        try:
            now = self._clock.monotonic()
            if not self._due(now, hint):
                return False
            self._call(now, hint)
            return True
        finally:
            self._flight.release()

    def settle(self) -> bool:
        """Give credit not taken back to the shared bucket now (the last session
        ended); returns whether it called Redis."""
        with self._flight:
            with self._lock:
                surplus = self._granted + self._pending_units - self._taken
            if surplus <= 0 or not self._link.online or self._rate == _INF:
                return False
            return self._give_back(surplus)

    def _redis(self, op: str, x: float) -> list[Any] | None:
        """One script call (flight held); None when Redis did not answer."""
        bucket = self._bucket
        host = self._host if op == "lease" else ()

        def run(client: Any) -> list[Any]:
            self.round_trips += 1
            return bucket._eval(client, op, x, -1.0, host)

        reply: list[Any] | None = self._link.call(run, _none)
        if reply is None:
            self._next_probe = self._clock.monotonic() + self._link.probe_interval
        else:
            rate = float(reply[3])
            with self._lock:
                if rate != self._rate:
                    self._rate = rate
                    self._retarget(self._target)
        return reply

    def _give_back(self, units: float) -> bool:
        """Return ``units`` of leased credit, the latest blocks first (flight held)."""
        if self._redis("cancel", units) is None:
            return False
        with self._lock:
            left = units
            while left > 1e-9 and self._pending:
                due, block = self._pending.pop()
                if block > left:
                    self._pending.append((due, block - left))
                    self._pending_units -= left
                    left = 0.0
                else:
                    self._pending_units -= block
                    left -= block
            self._granted -= left
            self._settle_state()
        return True

    def _call(self, now: float, hint: float) -> None:
        """The due call (flight held)."""
        with self._lock:
            self._absorb(now)
            rate = self._rate
            surplus = self._granted + self._pending_units - self._taken
            idle = self._idle_at(now) and hint <= 0
            if idle:
                self._demand = 0.0
                self._retarget(0.0)
            elif self._mark_t > -_INF and now > self._mark_t:
                # the demand since the last block: up at once, down gently; a block
                # covers two periods of it. A host that ran out of credit while Redis
                # had plenty (its last block came without a wait) is limited by its
                # own blocks, not by the fleet: it quadruples the block instead.
                recent = (self._taken - self._mark_taken) / (now - self._mark_t)
                self._demand = max(recent, 0.5 * (self._demand + recent))
                target = 2.0 * self._demand * self._period
                if self._last_wait < self._period * 0.25:
                    if surplus - hint <= 0:
                        target = max(target, 4.0 * self._target)
                else:
                    # blocks queue in Redis: the fleet is the limit. Blocks of two
                    # periods of an equal share keep every host's requests alike, so
                    # the FIFO queue shares the rate evenly between the hosts.
                    target = min(target, 2.0 * self._rate / self._hosts * self._period)
                self._retarget(target)
            self._mark_t, self._mark_taken = now, self._taken
            # top the credit up to one block: at most a block in use and a block
            # waiting its turn in Redis
            need = 0.0 if idle else self._target
            need = need + hint - surplus
        if rate == _INF or rate <= 0:
            self._read(now)
            return
        if idle and surplus > 0:
            self._give_back(surplus)
            with self._lock:
                self._next_fetch = now + self._period
                self._settle_state()
            return
        if need <= 0:  # a rate to write, or a probe while Redis is away
            self._read(now)
            return
        reply = self._redis("lease", need)
        if reply is None:
            return
        self._hosts = max(1, int(reply[6]))
        wait = float(reply[1])
        rate = float(reply[3])
        if rate == _INF:  # unlimited: Redis counted nothing, nothing to owe
            with self._lock:
                self._granted = self._taken
                self._pending.clear()
                self._next_check = now + self._bucket._recheck
                self._settle_state()
            return
        if wait == _INF:  # paused meanwhile: take the place back
            self._redis("cancel", need)
            with self._lock:
                self._next_check = now + self._bucket._recheck
                self._settle_state()
            return
        with self._lock:
            self._last_wait = wait
            self._pending.append((now + wait, need))
            self._pending_units += need
            self._next_fetch = now + self._period
            self._settle_state()

    def _read(self, now: float) -> None:
        """Read (and write, when set here) the shared rate (flight held)."""
        self._redis("state", 0.0)
        with self._lock:
            self._next_check = now + self._bucket._recheck
            if self._rate == _INF:
                self._granted = self._taken
                self._pending.clear()
            self._settle_state()

    def __repr__(self) -> str:
        state = "online" if self._link.online else "offline (fallback)"
        return (
            f"LeasedBucket(key={self._bucket.key!r}, rate={self._rate:g}, "
            f"block={self._target:g}, {state})"
        )


def _none() -> None:
    return None
