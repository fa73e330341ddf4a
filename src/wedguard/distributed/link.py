"""One Redis connection with fault handling, shared by the distributed objects.

Every call to Redis goes through :meth:`RedisLink.call` with a local fallback. When a
call fails (Redis unreachable, too slow, restarting) the link goes *offline*: the call
and every later one are served by their fallbacks at once, and one caller at a time
probes Redis again every ``probe_interval`` seconds. The first success brings the link
back *online*. Each transition is logged once and told to the sinks as an
:class:`~wedguard.Alert` (firing when Redis is lost, resolved when it is back).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar

from wedguard.clock import Clock, check_clock
from wedguard.errors import ConfigError
from wedguard.interfaces import Sink
from wedguard.policy.alerting import Alert, Severity
from wedguard.redact import redact_text, redact_url

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("wedguard.distributed needs redis-py: pip install 'wedguard[redis]'") from exc

__all__ = ["RedisLink", "bounded_client"]

log = logging.getLogger("wedguard.distributed")

T = TypeVar("T")

DEFAULT_TIMEOUT: Final = 0.25
"""Seconds a connect or a reply may take before Redis counts as unreachable."""
DEFAULT_PROBE_INTERVAL: Final = 1.0
"""Seconds between attempts to reach Redis again while it is offline."""

FAULTS: Final = (redis.RedisError, OSError)
"""What counts as Redis failing (connection, timeout, loading, script errors)."""


def _check_seconds(field: str, value: float, *, allow_zero: bool = False) -> float:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and (value >= 0 if allow_zero else value > 0)
        and value < float("inf")
    )
    if not ok:
        raise ConfigError(
            field, value, "a finite number of seconds " + (">= 0" if allow_zero else "> 0")
        )
    return float(value)


def _client_secrets(client: Any) -> tuple[str, ...]:
    """The password a redis-py client connects with (hidden from messages), if any."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    password = kwargs.get("password") if isinstance(kwargs, dict) else None
    return (password,) if isinstance(password, str) and password else ()


# the fallback of a call whose caller reads None as "Redis did not answer"
def _none() -> None:
    return None


def bounded_client(client: Any, timeout: float) -> Any:
    """A client like ``client`` whose calls give up after ``timeout`` seconds, no retries.

    A plain :class:`redis.Redis` is rebuilt on a new connection pool with the same
    connection settings, ``socket_timeout`` and ``socket_connect_timeout`` capped at
    ``timeout`` and retries switched off (redis-py's default retries would hold a
    caller for seconds). Any other client (a subclass, a cluster client, a fake) is
    returned as given: configure its timeouts yourself.
    """
    if type(client) is not redis.Redis:
        return client
    pool = client.connection_pool
    if type(pool) not in (redis.ConnectionPool, redis.BlockingConnectionPool):
        return client
    kwargs = dict(pool.connection_kwargs)
    for name in ("socket_timeout", "socket_connect_timeout"):
        current = kwargs.get(name)
        kwargs[name] = timeout if current is None else min(float(current), timeout)
    kwargs["retry"] = Retry(NoBackoff(), 0)
    kwargs["retry_on_timeout"] = False
    kwargs.pop("retry_on_error", None)
    extra: dict[str, Any] = {}
    if isinstance(pool, redis.BlockingConnectionPool):
        # waiting for a free connection counts against the same bound
        waits = getattr(pool, "timeout", None)
        extra["timeout"] = timeout if waits is None else min(float(waits), timeout)
    try:
        new_pool = type(pool)(
            connection_class=pool.connection_class,
            max_connections=pool.max_connections,
            **extra,
            **kwargs,
        )
        return redis.Redis(connection_pool=new_pool)
    except Exception:  # pragma: no cover - an unusual pool: keep the caller's client
        log.warning("could not bound the Redis client's timeouts; using it as given")
        return client


class RedisLink:
    """A Redis client plus the knowledge of whether Redis is reachable right now.

    Args:
        client: a :class:`redis.Redis` client, or a URL such as
            ``"redis://host:6379/0"``.
        timeout: the longest one connect or one reply may take, in seconds. A plain
            ``redis.Redis`` client is rebuilt with these timeouts and without retries
            (see :func:`bounded_client`), so one call never holds its caller for
            more than about twice this.
        probe_interval: while offline, how often one caller tries Redis again.
        sinks: told of each transition with an :class:`~wedguard.Alert`.
        clock: where time comes from (for the probe interval).
        name: names the link in logs and alerts.

    Example::

        >>> link = RedisLink("redis://127.0.0.1:1/0", timeout=0.1)   # nothing listens
        >>> link.call(lambda c: c.ping(), lambda: "fallback")
        'fallback'
        >>> link.online
        False

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "_clock",
        "_last_error",
        "_listeners",
        "_lock",
        "_next_probe",
        "_online",
        "_probe_lock",
        "_sinks",
        "client",
        "name",
        "probe_interval",
        "timeout",
    )

    @classmethod
    def of(
        cls,
        client: Any,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
        sinks: Iterable[Sink] = (),
        clock: Clock | None = None,
        name: str = "redis",
    ) -> RedisLink:
        """``client`` itself when it is already a link (shared as given), else a new link."""
        if isinstance(client, cls):
            return client
        return cls(
            client,
            timeout=timeout,
            probe_interval=probe_interval,
            sinks=sinks,
            clock=clock,
            name=name,
        )

    def __init__(
        self,
        client: Any,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
        sinks: Iterable[Sink] = (),
        clock: Clock | None = None,
        name: str = "redis",
    ) -> None:
        self.timeout = _check_seconds("timeout", timeout)
        self.probe_interval = _check_seconds("probe_interval", probe_interval, allow_zero=True)
        if isinstance(client, str):
            try:
                client = redis.Redis.from_url(
                    client,
                    socket_timeout=self.timeout,
                    socket_connect_timeout=self.timeout,
                    retry=Retry(NoBackoff(), 0),
                )
            except ValueError:
                # not chained: redis-py's message may quote the URL, password and all
                raise ConfigError(
                    "url", redact_url(client), "a redis://, rediss:// or unix:// URL"
                ) from None
        elif client is None or not hasattr(client, "register_script"):
            shown = redact_text(client) if isinstance(client, bytes) else client
            raise ConfigError("client", shown, "a redis.Redis client or a redis:// URL")
        else:
            client = bounded_client(client, self.timeout)
        self.client: Any = client
        self.name = name
        self._sinks = tuple(sinks)
        self._clock: Clock = check_clock(clock)
        self._online = True
        self._next_probe = 0.0
        self._last_error: BaseException | None = None
        self._lock = threading.Lock()
        self._probe_lock = threading.Lock()
        self._listeners: list[Callable[[bool, BaseException | None], None]] = []

    @property
    def online(self) -> bool:
        """False while Redis is unreachable and calls are served by their fallbacks."""
        return self._online

    @property
    def last_error(self) -> BaseException | None:
        """The error that took the link offline most recently."""
        return self._last_error

    def add_listener(self, callback: Callable[[bool, BaseException | None], None]) -> None:
        """Call ``callback(online, error)`` on each transition (errors it raises are logged)."""
        self._listeners.append(callback)

    def call(self, fn: Callable[[Any], T], fallback: Callable[[], T]) -> T:
        """``fn(client)`` when Redis answers, else ``fallback()``; never raises a Redis fault.

        While offline, ``fallback()`` is used at once, except for one caller per
        ``probe_interval`` who tries Redis first.
        """
        if self._online:
            try:
                return fn(self.client)
            except FAULTS as exc:
                self._went_offline(exc)
                return fallback()
        if self._clock.monotonic() < self._next_probe or not self._probe_lock.acquire(
            blocking=False
        ):
            return fallback()
        try:
            try:
                result = fn(self.client)
            except FAULTS as exc:
                self._next_probe = self._clock.monotonic() + self.probe_interval
                self._last_error = exc
                return fallback()
            self._came_back()
            return result
        finally:
            self._probe_lock.release()

    def try_call(self, fn: Callable[[Any], T]) -> tuple[bool, T | None]:
        """``(True, fn(client))`` when Redis answers, ``(False, None)`` when it does not."""
        marker: list[T] = []

        def run(client: Any) -> bool:
            marker.append(fn(client))
            return True

        if self.call(run, lambda: False):
            return True, marker[0]
        return False, None

    # -- transitions ---------------------------------------------------------------

    def _went_offline(self, exc: BaseException) -> None:
        with self._lock:
            self._last_error = exc
            self._next_probe = self._clock.monotonic() + self.probe_interval
            if not self._online:
                return
            self._online = False
        log.warning(
            "Redis %s is unreachable (%s: %s); using the local fallback budget",
            self.name,
            type(exc).__name__,
            redact_text(exc, _client_secrets(self.client)),
        )
        self._tell(False, exc)

    def _came_back(self) -> None:
        with self._lock:
            if self._online:
                return
            self._online = True
        log.info("Redis %s is reachable again; back to the shared budget", self.name)
        self._tell(True, None)

    def _alert(self) -> Alert:
        return Alert(
            f"redis-unreachable:{self.name}",
            Severity.HIGH,
            f"Redis {self.name} is unreachable; each host runs on its local fallback budget",
            details="" if self._last_error is None else f"{type(self._last_error).__name__}",
            labels={"component": "distributed", "redis": self.name},
            started_at=self._clock.now(),
        )

    def _tell(self, online: bool, exc: BaseException | None) -> None:
        alert = self._alert()
        if online:
            alert = alert.resolved(self._clock.now())
        for sink in self._sinks:
            try:
                sink.emit(alert)
            except Exception:
                log.exception("sink %r failed to take the Redis alert", sink)
        for callback in list(self._listeners):
            try:
                callback(online, exc)
            except Exception:
                log.exception("listener %r failed", callback)

    def close(self) -> None:
        """Close the client's connections."""
        close = getattr(self.client, "close", None)
        if close is not None:
            with contextlib.suppress(*FAULTS):
                close()

    def __repr__(self) -> str:
        state = "online" if self._online else "offline"
        return f"RedisLink(name={self.name!r}, {state}, timeout={self.timeout:g})"
