"""ServiceLatencySource: production's own latency, from its real traffic.

A service's own rolling p95 is the signal that best tracks the harm a backup does; a
synthetic probe request now and then is a poor substitute. This source scrapes a
Prometheus histogram (for example ``http_request_duration_seconds``) from the
service's ``/metrics`` endpoint and computes p50/p95/p99 over each interval from the
bucket deltas, as PromQL's ``histogram_quantile(rate(...))`` would. It needs no
Prometheus client library: the text format is parsed here.
"""

from __future__ import annotations

import math
import re
import ssl
from collections.abc import Callable, Mapping
from typing import Any, Final

from wedguard.errors import ConfigError
from wedguard.redact import redact_url
from wedguard.sources._util import (
    TimedCall,
    check_quantile,
    check_timeout,
    check_url,
    http_request,
)

__all__ = ["ServiceLatencySource", "histogram_quantile", "parse_histogram"]

_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_QUANTILES: Final = ((0.5, "p50"), (0.95, "p95"), (0.99, "p99"))


def _unescape(s: str) -> str:
    if "\\" not in s:
        return s
    return re.sub(r"\\[\\\"n]", lambda m: _UNESCAPE[m.group(0)], s)


def _labels(text: str) -> dict[str, str] | None:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = _LABEL.match(text, pos)
        if m is None:
            return None if text[pos:].strip() else out
        out[m.group(1)] = _unescape(m.group(2))
        pos = m.end()
    return out


def _float(text: str) -> float:
    t = text.strip()
    if t in ("+Inf", "Inf", "inf", "+inf"):
        return math.inf
    return float(t)


def parse_histogram(
    text: str, name: str, labels: Mapping[str, str] | None = None
) -> dict[float, float]:
    """Cumulative bucket counts of histogram ``name`` in Prometheus text format.

    Series whose labels include all of ``labels`` are summed, bucket by bucket, so
    ``{"handler": "/api"}`` selects one handler and ``None`` takes the whole service.
    Returns ``{le: count}`` (``le`` may be ``math.inf``); empty when absent. Malformed
    lines are skipped.

    >>> parse_histogram('''
    ... # TYPE rq histogram
    ... rq_bucket{le="0.1",path="/a"} 3
    ... rq_bucket{le="+Inf",path="/a"} 4
    ... rq_bucket{le="0.1",path="/b"} 1
    ... rq_bucket{le="+Inf",path="/b"} 1
    ... ''', "rq")
    {0.1: 4.0, inf: 5.0}
    """
    prefix = name + "_bucket"
    want = dict(labels or {})
    out: dict[float, float] = {}
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        rest = line[len(prefix) :]
        if rest.startswith("{"):
            end = rest.rfind("}")
            if end < 0:
                continue
            lab = _labels(rest[1:end])
            value_part = rest[end + 1 :]
        elif rest[:1] in (" ", "\t"):
            lab = {}
            value_part = rest
        else:
            continue  # another metric sharing the prefix
        if lab is None or "le" not in lab:
            continue
        if any(lab.get(k) != v for k, v in want.items()):
            continue
        fields = value_part.split()
        if not fields:
            continue
        try:
            le = _float(lab["le"])
            count = _float(fields[0])
        except ValueError:
            continue
        if math.isnan(le) or not math.isfinite(count):
            continue
        out[le] = out.get(le, 0.0) + count
    return dict(sorted(out.items()))


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The ``q`` quantile from cumulative ``{le: count}``, as PromQL computes it.

    Linear interpolation inside the bucket; a quantile that falls in the ``+Inf``
    bucket is the largest finite bound. None when the histogram is empty.

    >>> histogram_quantile(0.5, {0.1: 50, 0.2: 100, math.inf: 100})
    0.1
    >>> histogram_quantile(0.75, {0.1: 50, 0.2: 100, math.inf: 100})
    0.15000000000000002
    """
    items = sorted(buckets.items())
    if not items:
        return None
    # make the counts cumulative-monotonic (series may be scraped mid-update)
    cum = 0.0
    fixed: list[tuple[float, float]] = []
    for le, c in items:
        cum = max(cum, c)
        fixed.append((le, cum))
    total = fixed[-1][1]
    if total <= 0:
        return None
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in fixed:
        if c >= rank and c > 0:
            if math.isinf(le):
                finite = [b for b, _ in fixed if math.isfinite(b)]
                return finite[-1] if finite else None
            lower = prev_le if prev_le < le else min(0.0, le)
            if c == prev_c:
                return le
            return lower + (le - lower) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return None


class ServiceLatencySource:
    """The service's own latency percentiles over each sampling interval.

    Give either ``url`` (a Prometheus ``/metrics`` endpoint, scraped with the standard
    library) or ``callback``: a host function returning either the exposition text (for
    example ``prometheus_client.generate_latest(registry)``) or ready percentiles
    ``{"p50": s, "p95": s, "p99": s}``.

    Each sample reports, for the requests served since the previous sample,
    ``metric`` (the ``quantile``, p95 by default), ``metric.p50``, ``metric.p95``,
    ``metric.p99`` and ``metric.requests``. From a histogram the percentiles come from
    the bucket deltas; a counter reset (a restarted service: a count went down, or the
    buckets changed) starts the interval afresh from the new counts. An interval with
    fewer than ``min_requests`` requests is carried into the next one and reported as
    ``metric.idle`` (nothing to judge, but nothing failed); so is the first scrape,
    which only sets the starting point. A scrape that fails, times out or finds no such
    histogram is reported as ``metric.error``.

    Args:
        url: the ``/metrics`` URL.
        callback: instead of ``url``: a function returning text or percentiles.
        histogram: the histogram's name (without ``_bucket``).
        metric: the metric name reported (default ``"api.latency_s"``).
        quantile: which percentile ``metric`` itself carries (default 0.95).
        labels: only series with these labels (``{"handler": "/api"}``); all by default.
        timeout: seconds for a scrape or callback (default 2).
        min_requests: requests an interval needs to be judged (default 1).

    Example::

        src = ServiceLatencySource("http://127.0.0.1:9100/metrics",
                                   histogram="http_request_duration_seconds")
        src.sample()   # first: {'api.latency_s.idle': 1.0}
        src.sample()   # {'api.latency_s': 0.21, 'api.latency_s.p50': 0.08, ...}

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "_call",
        "_context",
        "_prev",
        "callback",
        "histogram",
        "labels",
        "metric",
        "min_requests",
        "quantile",
        "timeout",
        "url",
    )

    def __init__(
        self,
        url: str | None = None,
        *,
        callback: Callable[[], str | bytes | Mapping[str, float]] | None = None,
        histogram: str = "http_request_duration_seconds",
        metric: str = "api.latency_s",
        quantile: float = 0.95,
        labels: Mapping[str, str] | None = None,
        timeout: float = 2.0,
        min_requests: int = 1,
        context: ssl.SSLContext | None = None,
    ) -> None:
        if (url is None) == (callback is None):
            shown = redact_url(url) if isinstance(url, str) else url
            raise ConfigError("url", shown, "exactly one of url or callback")
        if url is not None:
            check_url(url)
        if callback is not None and not callable(callback):
            raise ConfigError("callback", callback, "a callable taking no arguments")
        if not isinstance(histogram, str) or not re.fullmatch(
            r"[A-Za-z_:][A-Za-z0-9_:]*", histogram
        ):
            raise ConfigError("histogram", histogram, "a Prometheus metric name")
        if not isinstance(metric, str) or not metric:
            raise ConfigError("metric", metric, "a metric name such as 'api.latency_s'")
        if labels is not None and (
            not isinstance(labels, Mapping)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
        ):
            raise ConfigError("labels", labels, "a mapping of label name to value (strings)")
        if isinstance(min_requests, bool) or not isinstance(min_requests, int) or min_requests < 1:
            raise ConfigError("min_requests", min_requests, "an integer >= 1")
        self.url = url
        self.callback = callback
        self.histogram = histogram
        self.metric = metric
        self.quantile = check_quantile(quantile, "quantile")
        self.labels = dict(labels or {})
        self.timeout = check_timeout(timeout)
        self.min_requests = min_requests
        self._context = context
        self._prev: dict[float, float] | None = None
        self._call = TimedCall(self._fetch, self.timeout, "wedguard-service-latency")

    def _fetch(self) -> Any:
        if self.callback is not None:
            return self.callback()
        assert self.url is not None
        status, body, _ = http_request(
            self.url,
            method="GET",
            timeout=self.timeout,
            headers={"Accept": "text/plain", "User-Agent": "wedguard"},
            context=self._context,
            read_body=True,
        )
        if not 200 <= status < 300:
            raise ValueError(f"status {status}")
        return body

    def sample(self) -> Mapping[str, float]:
        """The interval's percentiles, ``metric.idle`` or ``metric.error``."""
        m = self.metric
        try:
            ok, result, _ = self._call.run()
            if not ok:
                return {m + ".error": 1.0}
            if isinstance(result, Mapping):
                return self._from_percentiles(result)
            text = result.decode("utf-8", "replace") if isinstance(result, bytes) else result
            if not isinstance(text, str):
                return {m + ".error": 1.0}
            return self._from_buckets(parse_histogram(text, self.histogram, self.labels))
        except Exception:  # sample() never raises
            return {m + ".error": 1.0}

    def _from_percentiles(self, given: Mapping[str, float]) -> Mapping[str, float]:
        m = self.metric
        out: dict[str, float] = {}
        for key, value in given.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                out[f"{m}.{key}"] = float(value)
        want = f"p{self.quantile * 100:g}"
        if f"{m}.{want}" not in out:
            return {m + ".error": 1.0}
        out[m] = out[f"{m}.{want}"]
        return out

    def _from_buckets(self, now: dict[float, float]) -> Mapping[str, float]:
        m = self.metric
        if not now:
            return {m + ".error": 1.0}
        prev = self._prev
        if prev is None:
            self._prev = now
            return {m + ".idle": 1.0}
        if prev.keys() != now.keys() or any(now[k] < prev[k] for k in now):
            delta = dict(now)  # counter reset: count what happened since
        else:
            delta = {k: now[k] - prev[k] for k in now}
        total = max(delta.values())
        if total < self.min_requests:
            if delta is now:  # a reset with too little traffic: restart from here
                self._prev = now
            return {m + ".idle": 1.0, m + ".requests": total}
        self._prev = now
        out = {m + ".requests": total}
        for q, key in _QUANTILES:
            v = histogram_quantile(q, delta)
            if v is not None:
                out[f"{m}.{key}"] = v
        v = histogram_quantile(self.quantile, delta)
        if v is None:
            return {m + ".error": 1.0}
        out[m] = v
        return out

    def __repr__(self) -> str:
        where = repr(redact_url(self.url)) if self.url is not None else "callback"
        return (
            f"ServiceLatencySource({where}, histogram={self.histogram!r}, metric={self.metric!r})"
        )
