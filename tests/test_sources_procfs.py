"""SystemSource's direct /proc reading: exact figures from a fake procfs, the same
figures as psutil on the real machine, psutil where procfs is missing."""

from __future__ import annotations

import gc
import os
import pathlib
import sys

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wedguard.sources import SystemSource
from wedguard.testing import FakeClock

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="procfs is Linux's")

# a disk name the source accepts as a whole disk on this machine (it checks /sys/block)
_DISK = next(
    (d for d in sorted(os.listdir("/sys/block")) if not d.startswith(("loop", "ram", "zram")))
    if os.path.isdir("/sys/block")
    else "sda",
    "sda",
)

_NET_HEAD = (
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets"
    " errs drop fifo colls carrier compressed\n"
)


def _write_proc(
    root: pathlib.Path,
    *,
    busy: int,
    idle: int,
    total_kb: int = 8_000_000,
    avail_kb: int = 6_000_000,
    disk: tuple[int, int, int] = (0, 0, 0),
    net: list[tuple[int, int]] | None = None,
) -> None:
    """A procfs with ``busy`` jiffies of user time and ``idle`` of idle + iowait."""
    (root / "net").mkdir(parents=True, exist_ok=True)
    # user nice system idle iowait irq softirq steal guest guest_nice; guests are
    # already in user and are not counted twice
    half = idle // 2
    (root / "stat").write_text(
        f"cpu  {busy} 0 0 {idle - half} {half} 0 0 0 7 3\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 1 2 3\n"
    )
    (root / "meminfo").write_text(
        f"MemTotal:       {total_kb} kB\nMemFree:        10 kB\nMemAvailable:   {avail_kb} kB\n"
        "Buffers:          1 kB\n"
    )
    rd, wr, ticks = disk
    (root / "diskstats").write_text(
        "   7       0 loop0 5 0 999 0 5 0 999 0 0 9 0 0 0 0 0\n"
        f" 253       0 {_DISK} 10 0 {rd} 0 20 0 {wr} 0 0 {ticks} 0 0 0 0 0 0 0\n"
        f" 253       1 {_DISK}1 10 0 {rd} 0 20 0 {wr} 0 0 {ticks} 0 0 0 0 0 0 0\n"
    )
    lines = "".join(
        f"  if{i}: {recv} 1 0 0 0 0 0 0 {sent} 1 0 0 0 0 0 0\n"
        for i, (recv, sent) in enumerate(net or [(0, 0)])
    )
    (root / "net" / "dev").write_text(_NET_HEAD + lines)


@linux
def test_fake_procfs_gives_exact_rates(tmp_path: pathlib.Path) -> None:
    clock = FakeClock()
    _write_proc(tmp_path, busy=1000, idle=3000, net=[(100, 200), (1_000, 2_000)])
    src = SystemSource(procfs=tmp_path, cgroup=False, monotonic=clock.monotonic)
    assert "via='procfs'" in repr(src)
    clock.advance(2.0)
    _write_proc(
        tmp_path,
        busy=1300,  # 300 of 400 jiffies busy
        idle=3100,
        avail_kb=2_000_000,
        disk=(2048, 4096, 500),  # sectors of 512 bytes; 500 ms busy in 2 s
        net=[(300, 1_200), (1_000, 3_000)],
    )
    s = src.sample()
    assert s["cpu.percent"] == pytest.approx(75.0)
    assert s["mem.used_bytes"] == (8_000_000 - 2_000_000) * 1024
    assert s["mem.percent"] == pytest.approx(75.0)
    # the partition and the loop device are not counted again
    assert s["disk.read_bytes_per_s"] == pytest.approx(2048 * 512 / 2)
    assert s["disk.write_bytes_per_s"] == pytest.approx(4096 * 512 / 2)
    assert s["disk.busy_percent"] == pytest.approx(25.0)
    assert s["net.recv_bytes_per_s"] == pytest.approx(200 / 2)
    assert s["net.sent_bytes_per_s"] == pytest.approx(2_000 / 2)
    assert not any(k.endswith(".error") for k in s)


@linux
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start=st.integers(0, 2**48),  # far beyond a real host's counters
    busy=st.integers(0, 10**6),
    idle=st.integers(1, 10**6),
    sent=st.integers(0, 2**40),
    recv=st.integers(0, 2**40),
    dt=st.floats(0.05, 100.0),
)
def test_procfs_rates_are_counter_deltas_over_time(
    tmp_path_factory: pytest.TempPathFactory,
    start: int,
    busy: int,
    idle: int,
    sent: int,
    recv: int,
    dt: float,
) -> None:
    root = tmp_path_factory.mktemp("proc")
    clock = FakeClock()
    _write_proc(root, busy=start, idle=start, net=[(start, start)])
    src = SystemSource(procfs=root, cgroup=False, disks=False, monotonic=clock.monotonic)
    clock.advance(dt)
    _write_proc(root, busy=start + busy, idle=start + idle, net=[(start + recv, start + sent)])
    s = src.sample()
    assert s["cpu.percent"] == pytest.approx(busy / (busy + idle) * 100.0)
    assert s["net.sent_bytes_per_s"] == pytest.approx(sent / dt)
    assert s["net.recv_bytes_per_s"] == pytest.approx(recv / dt)


@linux
def test_procfs_reads_what_psutil_reads() -> None:
    src = SystemSource(cgroup=False)
    proc = src._proc
    assert proc is not None
    before = psutil.net_io_counters()
    sent, recv = proc.network()
    after = psutil.net_io_counters()
    assert before.bytes_sent <= sent <= after.bytes_sent
    assert before.bytes_recv <= recv <= after.bytes_recv

    total, avail = proc.memory()
    vm = psutil.virtual_memory()
    assert total == vm.total
    assert abs(avail - vm.available) < 64 * 2**20  # read a moment apart

    ours = proc.disks(src._whole_disk)
    theirs = psutil.disk_io_counters(perdisk=True)
    for name, (rd, wr, busy) in ours.items():
        assert rd <= theirs[name].read_bytes <= rd + 2**20
        assert wr <= theirs[name].write_bytes
        assert busy <= theirs[name].busy_time
    assert set(ours) == {n for n in theirs if src._whole_disk(n)}

    t = psutil.cpu_times()
    all_ticks, idle_ticks = proc.cpu()
    hz = os.sysconf("SC_CLK_TCK")
    expected_idle = (t.idle + t.iowait) * hz
    assert abs(idle_ticks - expected_idle) <= 2 * hz  # two seconds of idle on 2 cores at most
    assert all_ticks >= idle_ticks


def test_without_procfs_psutil_reads(tmp_path: pathlib.Path) -> None:
    src = SystemSource(procfs=tmp_path / "nowhere", cgroup=False)
    assert "via='psutil'" in repr(src)
    s = src.sample()
    assert 0.0 < s["mem.percent"] <= 100.0
    assert SystemSource(procfs=None)._proc is None


@linux
def test_a_part_procfs_cannot_parse_is_an_error_not_a_crash(tmp_path: pathlib.Path) -> None:
    clock = FakeClock()
    _write_proc(tmp_path, busy=10, idle=10)
    src = SystemSource(procfs=tmp_path, cgroup=False, monotonic=clock.monotonic)
    (tmp_path / "meminfo").write_text("nothing useful\n")
    (tmp_path / "stat").write_text("garbage\n")
    clock.advance(1.0)
    s = src.sample()
    assert s["mem.percent.error"] == 1.0
    assert s["cpu.percent.error"] == 1.0
    assert "net.sent_bytes_per_s" in s  # the parts that can be read still are


def _open_under(root: pathlib.Path) -> int:
    """How many of this process's file descriptors point into ``root``."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        n += target.startswith(str(root))
    return n


@linux
def test_the_files_close_with_the_source(tmp_path: pathlib.Path) -> None:
    _write_proc(tmp_path, busy=1, idle=1)
    src = SystemSource(procfs=tmp_path, cgroup=False)
    assert _open_under(tmp_path) == 4
    del src
    gc.collect()
    assert _open_under(tmp_path) == 0
