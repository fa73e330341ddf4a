"""A real S3-compatible server (moto's) on 127.0.0.1 and a fault-injecting proxy.

Import what a test module needs (``from conftest_s3 import s3_server, FaultProxy``).
``FaultProxy`` sits between boto3 and the server: it forwards every request and
counts it, and on request answers 500/503 or stalls past the client's read timeout,
for every request or only for those a predicate picks (e.g. part 3 of an upload).
"""

from __future__ import annotations

import contextlib
import http.client
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 server on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_client(endpoint: str, **config: Any) -> Any:
    """A boto3 S3 client for ``endpoint``; ``config`` goes to ``botocore.config.Config``."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(**config) if config else None,
    )


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """One moto server for a test module (tests use buckets of their own)."""
    with s3_server() as endpoint:
        yield endpoint


class Request:
    """One request the proxy saw: method, path, query (first values) and body size."""

    def __init__(self, method: str, path: str, query: dict[str, str], size: int) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.size = size

    @property
    def part(self) -> int | None:
        """The part number of an ``UploadPart`` request, else None."""
        if self.method == "PUT" and "partNumber" in self.query:
            return int(self.query["partNumber"])
        return None

    def __repr__(self) -> str:
        return f"Request({self.method} {self.path} {self.query} {self.size}B)"


Fault = str  # "500", "503" or "stall"


class FaultProxy:
    """A threading HTTP proxy on 127.0.0.1 that forwards to ``upstream``.

    ``mode`` (``None``, ``"500"``, ``"503"``, ``"stall"``) applies to every request;
    ``rule(request) -> mode | None`` picks requests one by one. A stall holds the
    request for ``stall_seconds`` and then closes the connection without answering.
    ``requests`` lists what arrived, ``faults`` how many were failed.
    """

    def __init__(self, upstream: str, *, stall_seconds: float = 2.0) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.mode: Fault | None = None
        self.rule: Callable[[Request], Fault | None] | None = None
        self.stall_seconds = stall_seconds
        self.requests: list[Request] = []
        self.faults = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
                req = Request(self.command, split.path, query, len(body))
                with proxy._lock:
                    proxy.requests.append(req)
                fault = proxy.mode or (proxy.rule(req) if proxy.rule else None)
                if fault is not None:
                    with proxy._lock:
                        proxy.faults += 1
                    if fault == "stall":
                        proxy._closing.wait(proxy.stall_seconds)
                        self.close_connection = True
                        return
                    payload = (
                        b"<?xml version='1.0' encoding='UTF-8'?><Error>"
                        b"<Code>InternalError</Code><Message>injected</Message></Error>"
                    )
                    if fault == "503":
                        payload = payload.replace(b"InternalError", b"SlowDown")
                    self.send_response(int(fault))
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(payload)
                    self.close_connection = True
                    return
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("expect", "connection", "transfer-encoding")
                }
                conn = http.client.HTTPConnection(
                    proxy.upstream_host, proxy.upstream_port, timeout=10
                )
                try:
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(k, v)
                # a HEAD answer has no body but the object's length
                length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def do_GET(self) -> None:
                self._handle()

            def do_PUT(self) -> None:
                self._handle()

            def do_POST(self) -> None:
                self._handle()

            def do_DELETE(self) -> None:
                self._handle()

            def do_HEAD(self) -> None:
                self._handle()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def count(self, predicate: Callable[[Request], bool]) -> int:
        with self._lock:
            return sum(1 for r in self.requests if predicate(r))

    def part_puts(self) -> list[int]:
        """Part numbers of the ``UploadPart`` requests seen, in order."""
        with self._lock:
            return [r.part for r in self.requests if r.part is not None]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.faults = 0

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def fault_proxy(upstream: str, **kwargs: Any) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream, **kwargs).start()
    try:
        yield proxy
    finally:
        proxy.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
