"""Copy a generated data set through a 10 MB/s budget and show the rate achieved.

Run it with ``python examples/guarded_copy.py [--rate 10MB/s] [--size 30MB]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import wedguard as wg

CHUNK = 256 * 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", default="10MB/s", help="the byte budget (default 10MB/s)")
    parser.add_argument("--size", default="30MB", help="how much data to copy (default 30MB)")
    args = parser.parse_args(argv)
    try:
        rate = wg.parse_rate(args.rate, field="--rate")
        size = wg.parse_size(args.size, field="--size")
    except wg.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    bucket = wg.TokenBucketThrottler(rate)
    with tempfile.TemporaryDirectory(prefix="wedguard-example-") as tmp:
        src = os.path.join(tmp, "data.bin")
        dst = os.path.join(tmp, "copy.bin")
        with open(src, "wb") as f:
            remaining = size
            while remaining:
                block = os.urandom(min(CHUNK, remaining))
                f.write(block)
                remaining -= len(block)
        print(f"copying {wg.format_size(size)} at most {wg.format_rate(rate)}")
        start = time.monotonic()
        done = 0
        waited = 0.0
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            while chunk := fin.read(CHUNK):
                waited += bucket.acquire(len(chunk))
                fout.write(chunk)
                done += len(chunk)
                elapsed = time.monotonic() - start
                if sys.stdout.isatty():
                    print(
                        f"\r{wg.format_size(done):>10} {done * 100 // size:3d} %"
                        f"  {wg.format_rate(done / max(elapsed, 1e-9)):>12}",
                        end="",
                        flush=True,
                    )
            fout.flush()
            os.fsync(fout.fileno())
        elapsed = time.monotonic() - start
        if sys.stdout.isatty():
            print()
        with open(src, "rb") as a, open(dst, "rb") as b:
            identical = a.read() == b.read()
    achieved = size / elapsed
    print(
        f"copied {wg.format_size(size)} in {elapsed:.2f} s: {wg.format_rate(achieved)} "
        f"({achieved / rate:.3f} of the budget; burst {wg.format_size(bucket.burst)}), "
        f"waited {waited:.2f} s, copy identical: {identical}"
    )
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
