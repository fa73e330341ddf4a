"""The open-loop load generator (its own process).

Requests are sent on a Poisson schedule fixed in advance (exponential gaps at the given
rate), each on a keep-alive connection that is free at that moment (a new one is
opened when none is). A request's latency is measured from its *scheduled* send time,
so a client or server that stalls cannot hide the requests it delayed (no coordinated
omission). A request that fails or takes longer than the timeout counts as the timeout.

Results go to a file on tmpfs as (scheduled monotonic time, latency) pairs of doubles.

Run: ``python loadgen.py --port P --rate 200 --start-at T --duration S --out FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import sys
import time
from array import array
from pathlib import Path

import harness

REQUEST = b"GET /work HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def schedule(rate: float, start: float, duration: float, seed: int) -> list[float]:
    """Poisson send times in ``[start, start + duration)`` at ``rate`` per second."""
    if not rate > 0:
        raise ValueError(f"rate={rate!r}: requests per second > 0")
    rng = random.Random(seed)
    out: list[float] = []
    t = start + rng.expovariate(rate)
    end = start + duration
    while t < end:
        out.append(t)
        t += rng.expovariate(rate)
    return out


class Client:
    """Keep-alive HTTP/1.1 connections to production, reused when idle."""

    def __init__(self, port: int, timeout: float, max_conns: int) -> None:
        self.port = port
        self.timeout = timeout
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(max_conns)

    async def _one(self) -> None:
        conn = self.idle.pop() if self.idle else None
        if conn is None:
            conn = await asyncio.open_connection("127.0.0.1", self.port)
            sock = conn[1].get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader, writer = conn
        writer.write(REQUEST)
        length = -1
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("closed")
            if line in (b"\r\n", b"\n"):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length < 0:
            raise ConnectionError("no length")
        await reader.readexactly(length)
        self.idle.append(conn)

    async def request(self) -> bool:
        async with self.slots:
            try:
                await asyncio.wait_for(self._one(), self.timeout)
            except (OSError, asyncio.TimeoutError, ConnectionError, ValueError):
                return False
            return True


async def run(
    port: int, times: list[float], timeout: float, max_conns: int
) -> tuple[array[float], int]:
    client = Client(port, timeout, max_conns)
    out: array[float] = array("d")
    failures = 0
    loop = asyncio.get_running_loop()
    clock_offset = time.monotonic() - loop.time()  # loop.time() is monotonic too

    async def fire(sched: float) -> None:
        nonlocal failures
        ok = await client.request()
        lat = loop.time() + clock_offset - sched
        if not ok:
            failures += 1
            lat = max(lat, timeout)
        out.append(sched)
        out.append(lat)

    tasks = set()
    for sched in times:
        delay = sched - (loop.time() + clock_offset)
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(fire(sched))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=timeout + 1)
    for _, writer in client.idle:
        writer.close()
    return out, failures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--start-at", type=float, required=True, help="time.monotonic() to start")
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--max-conns", type=int, default=64)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    harness.reset_priority()
    times = schedule(args.rate, args.start_at, args.duration, args.seed)
    out, failures = asyncio.run(run(args.port, times, args.timeout, args.max_conns))
    tmp = args.out.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        out.tofile(f)
    tmp.replace(args.out)
    print(f"sent {len(times)} failures {failures}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
