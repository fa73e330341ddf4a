"""The world the documentation's snippets run in.

The pages speak to a reader's machine: `/var/lib/wedguard/history.db`, a Redis server
called `backup-redis`, an S3 bucket, a health endpoint on port 8080. The snippet tests
run every page against real local stand-ins for those things: the paths are moved under
a temporary directory, and the servers are real ones on 127.0.0.1 (an HTTP health and
metrics endpoint, redis-server, an S3 server, a one-table SQLite "database"). The
names a snippet takes from its surroundings (`chunks`, `dst`, `s3`, `photos`...) are
given real values here, so that what the page shows is what runs.
"""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from conftest_s3 import s3_client, s3_server

__all__ = ["http_server", "names", "rewrite", "s3_client", "s3_server"]

# Paths the pages use, moved under the test's directory (a trailing slash keeps the
# rest of the path).
PATHS = (
    "/var/lib/wedguard/",
    "/var/log/wedguard/",
    "/var/lib/node_exporter/textfile/",
    "/run/backup/",
    "/run/wedguard/",
    "/backup/",
)
FILES = ("/run/wedguard.stop",)

METRICS = """\
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{handler="/api",le="0.05"} 90
http_request_duration_seconds_bucket{handler="/api",le="0.1"} 99
http_request_duration_seconds_bucket{handler="/api",le="+Inf"} 100
http_request_duration_seconds_sum{handler="/api"} 3.1
http_request_duration_seconds_count{handler="/api"} 100
"""


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = METRICS.encode() if self.path.startswith("/metrics") else b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # a Slack-style webhook: take the message
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@contextlib.contextmanager
def http_server() -> Iterator[str]:
    """A health, metrics and webhook endpoint on 127.0.0.1; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def files(root: Path, count: int = 3, size: int = 200_000) -> list[Path]:
    """A few files of random bytes under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(count):
        path = root / f"IMG_{i:04d}.jpg"
        path.write_bytes(os.urandom(size))
        made.append(path)
    return made


def names(tmp: Path, *, http: str, s3: Any, redis_url: str, redis_port: int) -> dict[str, Any]:
    """The names snippets take from their surroundings, with real values."""
    import logging

    import wedguard as wg
    from wedguard.sinks import JsonlSink
    from wedguard.testing import FakeClock, RecordingSink

    photos = files(tmp / "photos")
    for bucket in ("backups", "photos"):
        with contextlib.suppress(Exception):
            s3.create_bucket(Bucket=bucket)
    database = sqlite3.connect(":memory:", check_same_thread=False)

    class HTTPError(Exception):
        def __init__(self, status: int) -> None:
            super().__init__(status)
            self.status = status

    class Request:
        body = b"{}"
        headers: dict[str, str] = {}  # noqa: RUF012

    class Uploader:
        """Somewhere a stream is written to: a directory standing in for a store."""

        def open(self, name: str, mode: str = "wb") -> Any:
            return open(tmp / "uploaded" / name, mode)

    (tmp / "uploaded").mkdir()
    (tmp / "copies").mkdir()
    (tmp / "dump.sql").write_bytes(os.urandom(100_000))
    (tmp / "backup").mkdir(exist_ok=True)
    (tmp / "backup" / "app.dump").write_bytes(os.urandom(300_000))
    (tmp / "backup" / "photos.tar").write_bytes(os.urandom(300_000))
    (tmp / "backup.src").write_bytes(os.urandom(300_000))
    (tmp / "rules.txt").write_text('Mon-Sun 06:00-22:00 peak 10Mbit/s name="peak hours"\n')

    def upload(path: Any, data: bytes = b"") -> None:
        s3.put_object(Bucket="backups", Key=Path(path).name, Body=data or Path(path).read_bytes())

    clock = FakeClock()
    return {
        "os": os,
        "io": io,
        "wg": wg,
        "chunks": [os.urandom(64 * 1024) for _ in range(4)],
        "chunk": os.urandom(64 * 1024),
        "dst": io.BytesIO(),
        "src_path": str(tmp / "backup.src"),
        "dst_path": str(tmp / "backup.copy"),
        "photos": photos,
        "archives": photos,
        "paths": photos,
        "target": lambda path: tmp / "copies" / Path(path).name,
        "key_for": lambda path: f"photos/{Path(path).name}",
        "s3": s3,
        "bucket": "backups",
        "upload": upload,
        "client": s3,
        "uploader": Uploader(),
        "conn": database,
        "request": Request(),
        "HTTPError": HTTPError,
        "do_the_work": lambda: None,
        "sink": RecordingSink(),
        "slack_sink": JsonlSink(tmp / "slack.jsonl"),
        "pager": JsonlSink(tmp / "pager.jsonl"),
        "calendar": wg.PeakHourCalendar.default(tz="Europe/London"),
        "clock": clock,
        "throttler": wg.TokenBucketThrottler("50MB/s", clock=clock),
        "log": logging.getLogger("wedguard.docs"),
        "HTTP": http,
        "REDIS_URL": redis_url,
        "REDIS_PORT": redis_port,
    }


def rewrite(code: str, tmp: Path, *, http: str, redis_url: str, redis_port: int) -> str:
    """The snippet with the reader's paths and hosts replaced by the local stand-ins."""
    for path in PATHS:
        local = str(tmp / path.strip("/")) + "/"
        Path(local).mkdir(parents=True, exist_ok=True)
        code = code.replace(f'"{path}', f'"{local}')
    for path in FILES:
        code = code.replace(f'"{path}"', f'"{tmp / Path(path).name}"')
    code = code.replace("redis://backup-redis:6379/0", redis_url)
    code = code.replace('host="backup-redis"', f'host="127.0.0.1", port={redis_port}')
    code = code.replace("http://127.0.0.1:8080", http).replace("http://127.0.0.1:9100", http)
    return code.replace("https://app.internal", http)
