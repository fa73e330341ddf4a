"""The progress line of `wedguard copy`: what a person watching the terminal reads."""

from __future__ import annotations

import io
import os
from pathlib import Path

import wedguard as wg
from wedguard.jobs import Progress as _Progress
from wedguard.jobs import planned_bytes as _planned_bytes
from wedguard.testing import FakeClock


class Ticker:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def progress(total: float | None, done: list[float], ticker: Ticker) -> _Progress:
    guard = wg.Guard(rate="1MB/s", calendar=None, sources=[], sinks=[], clock=FakeClock())
    return _Progress(io.StringIO(), guard, lambda: done[0], total=total, clock=ticker)


def test_the_rate_is_smoothed_over_seconds_not_flipping_with_each_chunk() -> None:
    """1 MiB chunks a second, the line drawn every half second: the rate shown stays
    near 1 MiB/s instead of alternating between twice that and 0."""
    ticker, done = Ticker(), [0.0]
    bar = progress(None, done, ticker)
    shown = []
    for step in range(1, 41):
        ticker.now += 0.5
        if step % 2 == 0:
            done[0] += 2**20
        shown.append(bar.rate())
    settled = shown[20:]
    assert min(settled) > 0.8 * 2**20
    assert max(settled) < 1.2 * 2**20


def test_the_line_says_done_of_total_percentage_time_left_and_the_reason() -> None:
    ticker, done = Ticker(), [0.0]
    bar = progress(10e6, done, ticker)
    for _ in range(8):
        ticker.now += 1.0
        done[0] += 1e6
    line = bar.line()
    assert "8 MB of 10 MB (80%)" in line
    assert "1 MB/s" in line
    assert "2s left" in line
    assert "OPEN/OK" in line
    assert "rate limit 1 MB/s" in line  # the reason in force, even when not waiting


def test_without_a_total_the_line_shows_what_it_knows() -> None:
    ticker, done = Ticker(), [5e6]
    line = progress(None, done, ticker).line()
    assert "5 MB" in line
    assert "%" not in line
    assert "left" not in line


def test_planned_bytes_counts_what_the_copy_will_move(tmp_path: Path) -> None:
    """Regular files not already at the destination; a file already copied (same size
    and time) is not counted again."""
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "one.bin").write_bytes(b"x" * 1000)
    (src / "a" / "two.bin").write_bytes(b"y" * 500)
    os.symlink("one.bin", src / "link")
    dst = tmp_path / "dst"
    assert _planned_bytes(src, dst) == 1500
    (dst / "a").mkdir(parents=True)
    (dst / "a" / "two.bin").write_bytes(b"y" * 500)
    st = (src / "a" / "two.bin").stat()
    os.utime(dst / "a" / "two.bin", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _planned_bytes(src, dst) == 1000
    assert _planned_bytes(src / "one.bin", dst) == 1000
    assert _planned_bytes(tmp_path / "missing", dst) is None
