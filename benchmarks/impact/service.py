"""Production: a small HTTP service on 127.0.0.1 (its own process).

What each ``GET /work`` does is the production *profile* (``--profile``):

* ``mixed`` (the default): CPU work (SHA-256 over 64 KiB, a JSON round trip of about
  4 KB) and 4 random 4 KiB reads from the data set;
* ``cpu``: SHA-256 over 2 MiB and the JSON round trip, no reads: a backup can harm
  it only through the CPU;
* ``disk``: 8 random 4 KiB reads and a small JSON answer, no hashing: a backup harms it
  mostly through the disk queue.

The reads are uncached (O_DIRECT where the file system allows it, else the pages are
dropped after each read), so they really reach the disk. ``GET /metrics``
exposes the latency of every request served as a Prometheus histogram
(``http_request_duration_seconds``), so a backup can read production's own rolling
p95 with :class:`wedguard.sources.ServiceLatencySource`.

Run: ``python service.py --data FILE --ready FILE [--profile cpu]`` (the port is
written to the ready file once the server listens). It serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mmap
import os
import random
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType

import harness

READS_PER_REQUEST = 4
HASH_BYTES = 64 * 1024

PROFILES: dict[str, dict[str, int]] = {
    "mixed": {"hash": HASH_BYTES, "reads": READS_PER_REQUEST, "json": 1},
    "cpu": {"hash": 2 << 20, "reads": 0, "json": 1},
    "disk": {"hash": 0, "reads": 8, "json": 0},
}
"""Per profile: bytes hashed, random 4 KiB reads and whether the JSON round trip runs."""


class Histogram:
    """A cumulative latency histogram (thread-safe), rendered in Prometheus text."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        lo, hi = 0, len(self.bounds)
        while lo < hi:  # the first bound >= seconds
            mid = (lo + hi) // 2
            if self.bounds[mid] < seconds:
                lo = mid + 1
            else:
                hi = mid
        with self.lock:
            self.counts[lo] += 1
            self.total += seconds

    def render(self, name: str) -> str:
        with self.lock:
            counts = list(self.counts)
            total = self.total
        lines = [f"# HELP {name} Request latency.", f"# TYPE {name} histogram"]
        cum = 0
        for bound, c in zip(self.bounds, counts[:-1], strict=True):
            cum += c
            lines.append(f'{name}_bucket{{le="{bound:g}"}} {cum}')
        cum += counts[-1]
        lines.append(f'{name}_bucket{{le="+Inf"}} {cum}')
        lines.append(f"{name}_sum {total:.6f}")
        lines.append(f"{name}_count {cum}")
        return "\n".join(lines) + "\n"


class Production:
    """The work one request does; shared by the handler threads."""

    def __init__(self, data: Path, profile: str = "mixed") -> None:
        if profile not in PROFILES:
            raise ValueError(f"profile={profile!r}: one of {', '.join(PROFILES)}")
        self.profile = profile
        self.hash_bytes = PROFILES[profile]["hash"]
        self.reads_per_request = PROFILES[profile]["reads"]
        self.json_trip = bool(PROFILES[profile]["json"])
        self.reads = 0  # block reads done so far
        self.hashed = 0  # bytes hashed so far
        self.fd, self.direct = harness.open_uncached(data)
        self.blocks = os.fstat(self.fd).st_size // harness.BLOCK
        self.local = threading.local()
        self.hist = Histogram(harness.BUCKETS)
        rng = random.Random(5)
        self.doc = {
            "couple": "".join(rng.choices("abcdefghij", k=24)),
            "guests": [
                {"name": f"guest {i}", "table": i % 12, "rsvp": bool(i % 3), "diet": "none"}
                for i in range(48)
            ],
        }
        self.payload = os.urandom(max(1, self.hash_bytes))

    def work(self) -> bytes:
        buf = getattr(self.local, "buf", None)
        if buf is None:
            buf = self.local.buf = mmap.mmap(-1, harness.BLOCK)
        rng = random.random
        digest = hashlib.sha256(self.payload if self.hash_bytes else b"")
        self.hashed += self.hash_bytes
        for _ in range(self.reads_per_request):
            block = int(rng() * self.blocks)
            os.preadv(self.fd, [buf], block * harness.BLOCK)
            if not self.direct:
                harness.drop_pages(self.fd, block * harness.BLOCK, harness.BLOCK)
            digest.update(buf[:64])
        self.reads += self.reads_per_request
        if not self.json_trip:
            return json.dumps({"ok": True, "digest": digest.hexdigest()}).encode()
        doc = json.loads(json.dumps(self.doc))
        doc["digest"] = digest.hexdigest()
        return json.dumps({"ok": True, "digest": doc["digest"], "n": len(doc["guests"])}).encode()


def make_handler(prod: Production) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls on keep-alive

        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                body = prod.hist.render(harness.HISTOGRAM).encode()
                ctype = "text/plain; version=0.0.4"
                start = None
            else:
                start = time.perf_counter()
                body = prod.work()
                ctype = "application/json"
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            if start is not None:
                prod.hist.observe(time.perf_counter() - start)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--ready", required=True, type=Path)
    p.add_argument("--profile", choices=sorted(PROFILES), default="mixed")
    args = p.parse_args(argv)
    prio = harness.reset_priority()
    prod = Production(args.data, args.profile)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(prod))
    server.daemon_threads = True
    server.request_queue_size = 256

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    info = {
        "port": server.server_address[1],
        "pid": os.getpid(),
        "direct": prod.direct,
        "profile": prod.profile,
        **prio,
    }
    tmp = args.ready.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(args.ready)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
