"""HttpProbe: request latency to a production endpoint, standard library only."""

from __future__ import annotations

import ssl
from collections.abc import Container, Mapping

from wedguard.errors import ConfigError
from wedguard.redact import redact_url
from wedguard.sources._util import (
    TimedCall,
    check_quantile,
    check_timeout,
    check_url,
    http_request,
    percentile,
)

__all__ = ["HttpProbe"]


class ProbeFailed(Exception):
    """A probe request got an unexpected status."""


class HttpProbe:
    """Measures request latency to a production health or API endpoint.

    Each sample sends ``burst`` requests one after the other (each on a fresh
    connection) and reports the ``percentile`` of their latencies as ``metric``. One
    synthetic request says little about what production's users see; a small burst per
    sample and a high percentile say more (better still is the service's own latency:
    :class:`~wedguard.sources.ServiceLatencySource`).

    A timeout, a connection error or a status outside ``expect`` in any request of the
    burst is a failed probe: ``{metric + ".error": 1.0}`` and no value. ``sample()``
    never raises and returns within ``timeout`` (the whole burst shares it): the
    requests run in a worker thread.

    Args:
        url: ``http://`` or ``https://`` URL.
        timeout: seconds for the whole burst (default 2).
        method: HTTP method (default ``"GET"``).
        expect: the statuses that count as success (default ``range(200, 400)``).
        metric: the metric name (default ``"api.latency_s"``).
        burst: requests per sample (default 1).
        percentile: which latency of the burst to report: a fraction (``0.95``) or a
            percentage (``95``); default the median.
        headers: extra request headers.
        context: an :class:`ssl.SSLContext` for https (default: the system's).

    Example::

        probe = HttpProbe("http://127.0.0.1:8080/health", timeout=1.0, burst=5, percentile=95)
        probe.sample()   # {'api.latency_s': 0.0123} or {'api.latency_s.error': 1.0}

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "_call",
        "_context",
        "_headers",
        "burst",
        "expect",
        "method",
        "metric",
        "percentile",
        "timeout",
        "url",
    )

    def __init__(
        self,
        url: str,
        timeout: float = 2.0,
        method: str = "GET",
        expect: Container[int] = range(200, 400),
        metric: str = "api.latency_s",
        burst: int = 1,
        percentile: float = 0.5,
        *,
        headers: Mapping[str, str] | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = check_url(url)
        self.timeout = check_timeout(timeout)
        if not isinstance(method, str) or not method.isalpha():
            raise ConfigError("method", method, "an HTTP method such as 'GET' or 'HEAD'")
        self.method = method.upper()
        if not hasattr(expect, "__contains__"):
            raise ConfigError("expect", expect, "a container of status codes, e.g. range(200, 400)")
        self.expect = expect
        if not isinstance(metric, str) or not metric:
            raise ConfigError("metric", metric, "a metric name such as 'api.latency_s'")
        self.metric = metric
        if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= 1000:
            raise ConfigError("burst", burst, "an integer from 1 to 1000")
        self.burst = burst
        self.percentile = check_quantile(percentile)
        if headers is not None and not isinstance(headers, Mapping):
            raise ConfigError("headers", headers, "a mapping of header to value")
        self._headers = {"User-Agent": "wedguard-probe", **(headers or {})}
        self._context = context
        self._call = TimedCall(self._burst, self.timeout, "wedguard-http-probe")

    def _burst(self) -> list[float]:
        out = []
        for _ in range(self.burst):
            status, _body, seconds = http_request(
                self.url,
                method=self.method,
                timeout=self.timeout,
                headers=self._headers,
                context=self._context,
            )
            if status not in self.expect:
                raise ProbeFailed(f"status {status}")
            out.append(seconds)
        return out

    def sample(self) -> Mapping[str, float]:
        """``{metric: seconds}`` or ``{metric + ".error": 1.0}``."""
        try:
            ok, result, _ = self._call.run()
            if ok:
                return {self.metric: percentile(result, self.percentile)}
        except Exception:  # pragma: no cover - defensive: sample() never raises
            pass
        return {self.metric + ".error": 1.0}

    def __repr__(self) -> str:
        return (
            f"HttpProbe({redact_url(self.url)!r}, timeout={self.timeout:g}, method={self.method!r}, "
            f"metric={self.metric!r}, burst={self.burst})"
        )
