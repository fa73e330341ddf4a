"""Helpers the sources share: counters that wrap or reset, calls with a deadline, this
process's cgroup."""

from __future__ import annotations

import http.client
import math
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from wedguard import _checks
from wedguard._checks import MAX_TIMEOUT as _MAX
from wedguard.errors import ConfigError
from wedguard.redact import redact_url

__all__ = ["TimedCall", "counter_delta", "http_request", "own_cgroup", "percentile"]

_WRAP32: Final = 2**32

#: the most of a probed service's answer read (its latency is the time to the status
#: line and this much of the body; an endless body must not hold the probe)
MAX_BODY_BYTES: Final = 1 << 20

#: the most of a body that is used (a metrics page: large servers expose megabytes)
MAX_READ_BODY_BYTES: Final = 64 << 20


def counter_delta(prev: float, cur: float) -> float:
    """How much a monotonic counter advanced from ``prev`` to ``cur``.

    A counter that went backwards either wrapped at 2**32 (a 32-bit kernel counter;
    taken as a wrap when the wrapped distance is plausible, below 2**31) or was reset,
    in which case what it counts now is what happened since the reset (Prometheus'
    rule).
    """
    if cur >= prev:
        return cur - prev
    if prev < _WRAP32:
        wrapped = cur + _WRAP32 - prev
        if 0 <= wrapped < 2**31:
            return wrapped
    return cur if cur > 0 else 0.0


def own_cgroup(proc_self: str = "/proc/self/cgroup") -> str | None:
    """This process's cgroup v2 path (``/system.slice/x.service``), from the unified
    hierarchy's ``0::`` line; None when it cannot be read or has none."""
    try:
        with open(proc_self, encoding="ascii") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        return None
    return None


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, linearly interpolated."""
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def check_timeout(value: object, field: str = "timeout") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= _MAX:
        raise ConfigError(field, value, f"a number of seconds > 0 and <= {_MAX:g}")
    return float(value)


def check_quantile(value: object, field: str = "percentile") -> float:
    """A quantile as a fraction (0.95) or a percentage (95)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(field, value, "a quantile in (0, 1] or a percentage in (1, 100]")
    q = _checks.real(value, field, "a quantile in (0, 1] or a percentage in (1, 100]")
    if 1 < q <= 100:
        q /= 100
    if not 0 < q <= 1:
        raise ConfigError(field, value, "a quantile in (0, 1] or a percentage in (1, 100]")
    return q


class TimedCall:
    """Run a callable in a daemon worker thread and wait for it at most ``timeout``.

    ``run()`` returns ``(ok, result_or_exception, seconds)``. A call that overruns is
    abandoned (threads cannot be killed) and reported as a timeout; while it is still
    running the next ``run()`` reports at once that the previous call is stuck, so a
    hanging callable never piles up threads.
    """

    __slots__ = ("_fn", "_name", "_pending", "timeout")

    def __init__(self, fn: Callable[[], Any], timeout: float, name: str) -> None:
        self._fn = fn
        self.timeout = timeout
        self._name = name
        self._pending: threading.Event | None = None

    def run(self) -> tuple[bool, Any, float]:
        pending = self._pending
        if pending is not None:
            if not pending.is_set():
                return False, TimeoutError("the previous call is still running"), 0.0
            self._pending = None
        done = threading.Event()
        box: list[tuple[bool, Any, float]] = []
        fn = self._fn

        def target() -> None:
            t0 = time.perf_counter()
            try:
                result = fn()
            except BaseException as exc:  # reported, never raised out of sample()
                box.append((False, exc, time.perf_counter() - t0))
            else:
                box.append((True, result, time.perf_counter() - t0))
            finally:
                done.set()

        worker = threading.Thread(target=target, name=self._name, daemon=True)
        try:
            worker.start()
        except RuntimeError as exc:  # cannot start a thread (interpreter exiting)
            return False, exc, 0.0
        if not done.wait(self.timeout):
            self._pending = done
            return False, TimeoutError(f"no answer within {self.timeout:g} s"), self.timeout
        return box[0]


def http_request(
    url: str,
    *,
    method: str,
    timeout: float,
    headers: Mapping[str, str],
    context: ssl.SSLContext | None,
    read_body: bool = False,
) -> tuple[int, bytes, float]:
    """One request on a fresh connection: ``(status, body, seconds)``; raises on failure."""
    parts = urlsplit(url)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=timeout, context=context
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    t0 = time.perf_counter()
    try:
        conn.request(method, path, headers=dict(headers))
        resp = conn.getresponse()
        # an endless body must not hold the probe
        body = resp.read(MAX_READ_BODY_BYTES if read_body else MAX_BODY_BYTES)
        elapsed = time.perf_counter() - t0
        return resp.status, body if read_body else b"", elapsed
    finally:
        conn.close()


def check_url(url: object, field: str = "url") -> str:
    """``url`` when it is an http(s) URL with a host and a valid port; the
    :class:`ConfigError` shows it with its secrets hidden (:func:`~wedguard.redact.redact_url`)."""
    if not isinstance(url, str):
        raise ConfigError(field, url, "an http:// or https:// URL")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ConfigError(field, redact_url(url), "an http:// or https:// URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(field, redact_url(url), "an http:// or https:// URL")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ConfigError(field, redact_url(url), "a URL with a valid port") from None
    return url
