"""HttpProbe and ServiceLatencySource against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from wedguard import ConfigError, Source
from wedguard.sources import HttpProbe, ServiceLatencySource
from wedguard.sources.service import histogram_quantile, parse_histogram

BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0)


class State:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.delays: list[float] = []
        self.buckets = dict.fromkeys([*BOUNDS, math.inf], 0)
        self.other = dict.fromkeys([*BOUNDS, math.inf], 0)
        self.metrics_status = 200
        self.hits = 0


class Handler(BaseHTTPRequestHandler):
    state: State

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes = b"ok") -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        st = self.state
        st.hits += 1
        if self.path == "/ok":
            self._send(200)
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/slow":
            time.sleep(0.1)
            self._send(200)
        elif self.path == "/vary":
            time.sleep(st.delays.pop(0) if st.delays else 0.0)
            self._send(200)
        elif self.path == "/fail":
            self._send(503)
        elif self.path == "/hang":
            st.release.wait(5)
            self._send(200)
        elif self.path == "/metrics":
            self._send(st.metrics_status, exposition(st).encode())
        else:
            self._send(404)

    def do_HEAD(self) -> None:
        self._send(204, b"")


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gave up on /hang: expected


def exposition(st: State) -> str:
    lines = [
        "# HELP http_request_duration_seconds Request latency.",
        "# TYPE http_request_duration_seconds histogram",
    ]
    for handler, buckets in (("/api", st.buckets), ("/static", st.other)):
        cum = 0
        for le, n in buckets.items():
            cum += n
            le_text = "+Inf" if math.isinf(le) else f"{le:g}"
            lines.append(
                f'http_request_duration_seconds_bucket{{handler="{handler}",le="{le_text}"}} {cum}'
            )
        lines.append(f'http_request_duration_seconds_count{{handler="{handler}"}} {cum}')
    lines.append('http_request_duration_seconds_created{handler="/api"} 1.7e9')
    lines.append("process_cpu_seconds_total 12.5")
    return "\n".join(lines) + "\n"


@pytest.fixture
def server() -> Iterator[tuple[str, State]]:
    state = State()
    handler = type("H", (Handler,), {"state": state})
    srv = QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", state
    finally:
        state.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(2)


# ----------------------------------------------------------------- HttpProbe


def test_http_probe_measures_latency(server: tuple[str, State]) -> None:
    url, _ = server
    probe = HttpProbe(url + "/slow", timeout=2)
    assert isinstance(probe, Source)
    s = probe.sample()
    assert 0.09 < s["api.latency_s"] < 2
    assert "api.latency_s" in HttpProbe(url + "/ok").sample()
    assert "api.latency_s" in HttpProbe(url + "/redirect").sample()  # 3xx is fine by default
    assert "api.latency_s" in HttpProbe(url + "/ok", method="HEAD", expect={204}).sample()


def test_http_probe_bad_status_is_a_failed_probe(server: tuple[str, State]) -> None:
    url, _ = server
    assert HttpProbe(url + "/fail").sample() == {"api.latency_s.error": 1.0}
    assert HttpProbe(url + "/nope", metric="web.latency_s").sample() == {"web.latency_s.error": 1.0}
    assert HttpProbe(url + "/redirect", expect=range(200, 300)).sample() == {
        "api.latency_s.error": 1.0
    }


def test_http_probe_connection_refused_is_a_failed_probe() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    assert HttpProbe(f"http://127.0.0.1:{port}/", timeout=1).sample() == {
        "api.latency_s.error": 1.0
    }


def test_http_probe_hanging_endpoint_does_not_block_past_timeout(
    server: tuple[str, State],
) -> None:
    url, state = server
    probe = HttpProbe(url + "/hang", timeout=0.3)
    t0 = time.monotonic()
    assert probe.sample() == {"api.latency_s.error": 1.0}
    assert time.monotonic() - t0 < 1.5
    state.release.set()


def test_http_probe_burst_reports_a_percentile(server: tuple[str, State]) -> None:
    url, state = server
    state.delays = [0.0, 0.0, 0.0, 0.0, 0.2]
    high = HttpProbe(url + "/vary", burst=5, percentile=100).sample()
    assert high["api.latency_s"] >= 0.19
    state.delays = [0.0, 0.0, 0.0, 0.0, 0.2]
    hits = state.hits
    median = HttpProbe(url + "/vary", burst=5, percentile=0.5).sample()
    assert median["api.latency_s"] < 0.15
    assert state.hits - hits == 5


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"url": "ftp://x/"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "http://h:99999/"}, "url"),
        ({"timeout": -1}, "timeout"),
        ({"method": "GET /"}, "method"),
        ({"burst": 0}, "burst"),
        ({"percentile": 0}, "percentile"),
        ({"percentile": 101}, "percentile"),
        ({"metric": ""}, "metric"),
        ({"expect": 200}, "expect"),
    ],
)
def test_http_probe_bad_arguments(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"url": "http://127.0.0.1/", **kwargs}
    with pytest.raises(ConfigError) as info:
        HttpProbe(**args)  # type: ignore[arg-type]
    assert info.value.field == field


# ------------------------------------------------------ ServiceLatencySource


def test_parse_histogram_and_quantiles() -> None:
    st = State()
    st.buckets.update({0.05: 50, 0.1: 40, 0.5: 10})
    b = parse_histogram(exposition(st), "http_request_duration_seconds", {"handler": "/api"})
    assert b == {0.05: 50, 0.1: 90, 0.25: 90, 0.5: 100, 1.0: 100, math.inf: 100}
    assert histogram_quantile(0.5, b) == pytest.approx(0.05)
    assert histogram_quantile(0.95, b) == pytest.approx(0.25 + 0.25 * 0.5)
    assert histogram_quantile(0.99, {1.0: 10, math.inf: 100}) == 1.0  # in +Inf: top bound
    assert histogram_quantile(0.5, {}) is None
    assert parse_histogram(
        'x_bucket{le="0.1",a="q\\"}"} 4\nx_bucket{le="+Inf",a="q\\"}"} 5', "x"
    ) == {
        0.1: 4,
        math.inf: 5,
    }


def test_service_latency_from_bucket_deltas(server: tuple[str, State]) -> None:
    url, st = server
    src = ServiceLatencySource(url + "/metrics", labels={"handler": "/api"})
    assert isinstance(src, Source)
    st.buckets.update({0.05: 1000})  # history before we started: must not count
    assert src.sample() == {"api.latency_s.idle": 1.0}
    st.buckets[0.05] += 80
    st.buckets[0.25] += 20
    st.other[1.0] += 1000  # another handler, filtered out
    s = src.sample()
    assert s["api.latency_s.requests"] == 100
    assert s["api.latency_s.p50"] == pytest.approx(0.05 * 50 / 80)
    # p95: rank 95 of 100 falls in (0.1, 0.25]: 15 of those 20
    assert s["api.latency_s.p95"] == pytest.approx(0.1 + 0.15 * 15 / 20)
    assert s["api.latency_s"] == s["api.latency_s.p95"]
    assert s["api.latency_s.p99"] == pytest.approx(0.1 + 0.15 * 19 / 20)
    # no traffic: idle, not an error and not a stale value
    assert src.sample() == {"api.latency_s.idle": 1.0, "api.latency_s.requests": 0.0}
    # a restart resets the counters: count what happened since
    st.buckets = dict.fromkeys([*BOUNDS, math.inf], 0)
    st.buckets[1.0] = 10
    s = src.sample()
    assert s["api.latency_s.requests"] == 10
    assert 0.5 < s["api.latency_s"] <= 1.0


def test_service_latency_whole_service_and_errors(server: tuple[str, State]) -> None:
    url, st = server
    src = ServiceLatencySource(url + "/metrics", metric="svc.latency_s", quantile=99)
    src.sample()
    st.buckets[0.1] += 10
    st.other[0.5] += 10
    s = src.sample()
    assert s["svc.latency_s.requests"] == 20
    assert s["svc.latency_s"] == s["svc.latency_s.p99"]
    st.metrics_status = 500
    assert src.sample() == {"svc.latency_s.error": 1.0}
    missing = ServiceLatencySource(url + "/metrics", histogram="nope_seconds")
    assert missing.sample() == {"api.latency_s.error": 1.0}
    hanging = ServiceLatencySource(url + "/hang", timeout=0.3)
    t0 = time.monotonic()
    assert hanging.sample() == {"api.latency_s.error": 1.0}
    assert time.monotonic() - t0 < 1.5


def test_service_latency_from_a_prometheus_client_registry() -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    registry = prometheus_client.CollectorRegistry()
    h = prometheus_client.Histogram(
        "http_request_duration_seconds", "latency", ["method"], registry=registry
    )
    src = ServiceLatencySource(callback=lambda: prometheus_client.generate_latest(registry))
    assert src.sample() == {"api.latency_s.error": 1.0}  # no series yet
    h.labels("GET").observe(0.01)
    assert src.sample() == {"api.latency_s.idle": 1.0}
    for _ in range(99):
        h.labels("GET").observe(0.2)
    s = src.sample()
    assert s["api.latency_s.requests"] == 99
    assert 0.1 < s["api.latency_s"] <= 0.25


def test_service_latency_from_percentiles_callback() -> None:
    src = ServiceLatencySource(callback=lambda: {"p50": 0.05, "p95": 0.2, "p99": 0.4})
    assert src.sample() == {
        "api.latency_s": 0.2,
        "api.latency_s.p50": 0.05,
        "api.latency_s.p95": 0.2,
        "api.latency_s.p99": 0.4,
    }

    def broken() -> dict[str, float]:
        raise OSError("no stats")

    assert ServiceLatencySource(callback=broken).sample() == {"api.latency_s.error": 1.0}
    assert ServiceLatencySource(callback=lambda: {"p50": 0.1}).sample() == {
        "api.latency_s.error": 1.0
    }


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({}, "url"),
        ({"url": "http://x/", "callback": lambda: ""}, "url"),
        ({"callback": 3}, "callback"),
        ({"callback": lambda: "", "histogram": "bad name"}, "histogram"),
        ({"callback": lambda: "", "quantile": 0}, "quantile"),
        ({"callback": lambda: "", "labels": {"a": 1}}, "labels"),
        ({"callback": lambda: "", "min_requests": 0}, "min_requests"),
    ],
)
def test_service_latency_bad_arguments(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        ServiceLatencySource(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_a_service_that_never_ends_its_answer_does_not_hold_the_probe() -> None:
    """A service that streams its body for ever: the probe reads at most 1 MiB of it
    (the timeout bounds each read only) and reports a latency."""

    class Endless(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(2000):  # 128 MB over 20 s: each read gets data in time
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    time.sleep(0.01)
            except OSError:
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        probe = HttpProbe(f"http://127.0.0.1:{server.server_port}/", timeout=2)
        started = time.monotonic()
        sample = probe.sample()
        assert time.monotonic() - started < 10
        assert "api.latency_s" in sample
    finally:
        server.shutdown()
        server.server_close()
