"""``WindowedWriter``: a file written to the disk a window at a time.

What a user checks: every byte arrives in order; the bytes not yet on the disk stay
within two windows (and a write); the page cache does not keep what was synced; a
full or read-only disk is an error at the write or close that meets it; a bad window
or file is a clear error.
"""

from __future__ import annotations

import errno
import io
import mmap
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fault_helpers import can_mount, fill, remount, tmpfs
from page_cache import SyncSpy, resident_pages
from wedguard.errors import ConfigError
from wedguard.io import writeback
from wedguard.io.writeback import DEFAULT_WINDOW, WindowedWriter, check_window


def test_every_byte_arrives_in_order(tmp_path: Path) -> None:
    data = os.urandom(5 * DEFAULT_WINDOW + 12_345)
    path = tmp_path / "dump"
    with open(path, "wb") as f:
        out = WindowedWriter(f)
        for i in range(0, len(data), 65536):
            assert out.write(data[i : i + 65536]) == len(data[i : i + 65536])
        out.close()
    assert path.read_bytes() == data
    assert out.written == out.synced == len(data)


@settings(max_examples=60, deadline=None)
@given(
    chunks=st.lists(st.integers(min_value=0, max_value=40_000), min_size=1, max_size=40),
    window=st.integers(min_value=4096, max_value=32_768),
)
def test_bytes_not_on_the_disk_stay_within_two_windows(
    tmp_path_factory: pytest.TempPathFactory, chunks: list[int], window: int
) -> None:
    path = tmp_path_factory.mktemp("wb") / "f"
    expected = bytearray()
    with open(path, "wb") as f:
        out = WindowedWriter(f, window=window)
        for n in chunks:
            block = bytes([n % 251]) * n
            out.write(block)
            expected += block
            # what is not known to be on the disk: the window in flight and the one
            # being filled, however large the write
            assert out.written - out.synced < 2 * window
            assert out.synced % window == 0
        out.close()
    assert out.synced == out.written == len(expected)
    assert path.read_bytes() == expected


def test_writes_after_existing_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows count from where the file was when the writer took it."""
    spy = SyncSpy(monkeypatch)
    path = tmp_path / "f"
    with open(path, "wb") as f:
        f.write(b"head")
        out = WindowedWriter(f, window=4096)
        out.write(b"a" * 10_000)
        out.close()
    assert path.read_bytes() == b"head" + b"a" * 10_000
    assert spy.starts[0] == (4, 8192)  # the first two whole windows, after the head
    assert min(o for o, _, _ in spy.calls) == 4


def test_a_file_opened_for_appending_is_written_back_where_its_bytes_land(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shell's ``>> app.dump``: the descriptor's position is 0 until the first write,
    the bytes land at the end; the windows are the new bytes, not the old content."""
    path = tmp_path / "app.dump"
    old = os.urandom(1_100_000)
    path.write_bytes(old)
    spy = SyncSpy(monkeypatch)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND), "wb") as f:
        assert f.tell() == 0
        out = WindowedWriter(f, window=4096)
        for _ in range(4):
            out.write(b"n" * 4096)
        out.close()
    assert path.read_bytes() == old + b"n" * 16384
    assert spy.starts[0] == (len(old), 4096)
    assert all(o >= len(old) for o, _, _ in spy.calls)


def test_a_pipe_is_refused(tmp_path: Path) -> None:
    r, w = os.pipe()
    try:
        with os.fdopen(w, "wb") as f, pytest.raises(ConfigError, match=r"file: .* a regular file"):
            WindowedWriter(f)
    finally:
        os.close(r)


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="Linux page cache")
def test_synced_windows_leave_the_page_cache(tmp_path: Path) -> None:
    path = tmp_path / "dump"
    size = 16 * DEFAULT_WINDOW
    with open(path, "wb") as f:
        out = WindowedWriter(f)
        for _ in range(size // 65536):
            out.write(b"\1" * 65536)
        out.close()
    pages = size // mmap.PAGESIZE
    assert resident_pages(path) < pages // 4  # dropped: a plain write leaves all of it
    plain = tmp_path / "plain"
    plain.write_bytes(b"\1" * size)
    assert resident_pages(plain) > pages // 2
    # drop=False keeps them
    kept = tmp_path / "kept"
    with open(kept, "wb") as f:
        out = WindowedWriter(f, drop=False)
        out.write(b"\1" * size)
        out.close()
    assert resident_pages(kept) > pages // 2


def test_close_is_durable_and_counts_the_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr(writeback, "_datasync", synced.append)
    with open(tmp_path / "f", "wb") as f:
        out = WindowedWriter(f, window=4096)
        out.write(b"x" * 5000)
        assert out.synced == 0  # one window started, none waited for yet
        out.close()
        assert synced == [f.fileno()]
    assert out.synced == 5000


@pytest.mark.parametrize("kernel", ["absent", "ENOSYS"])
def test_without_sync_file_range_each_window_is_fdatasynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel: str
) -> None:
    """Where the call does not exist (not Linux), or the kernel refuses it (``ENOSYS``,
    an emulated kernel): no error, every byte, the same bound by ``fdatasync`` per
    window, and a refused call is not tried again."""
    import ctypes

    tried: list[int] = []

    def unsupported(fd: int, offset: int, length: int, flags: int) -> int:
        tried.append(flags)
        ctypes.set_errno(errno.ENOSYS)
        return -1

    monkeypatch.setattr(writeback, "_sync_file_range", None if kernel == "absent" else unsupported)
    calls: list[int] = []
    monkeypatch.setattr(writeback, "_datasync", calls.append)
    path = tmp_path / "f"
    with open(path, "wb") as f:
        out = WindowedWriter(f, window=4096)
        for _ in range(6):
            out.write(b"y" * 4096)
        assert out.synced == 5 * 4096
        assert len(calls) == 5  # windows 1-5 as they filled
        out.close()
    assert path.read_bytes() == b"y" * 6 * 4096
    assert len(calls) == 6  # the last at close, once
    assert out.synced == 6 * 4096
    assert tried == ([] if kernel == "absent" else [2])  # refused once, never asked again
    assert writeback._sync_file_range is None


def test_no_window_writes_plainly_and_fsyncs_at_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``window=None``: nothing synced while writing, the whole file fsync'ed at close."""
    spy = SyncSpy(monkeypatch)
    fsynced: list[int] = []
    monkeypatch.setattr(writeback.os, "fsync", fsynced.append)
    with open(tmp_path / "f", "wb") as f:
        out = WindowedWriter(f, None)
        for _ in range(4):
            out.write(b"p" * DEFAULT_WINDOW)
        assert (out.synced, spy.calls, fsynced) == (0, [], [])
        out.close()
        assert fsynced == [f.fileno()]
    assert out.synced == out.written == 4 * DEFAULT_WINDOW
    assert (tmp_path / "f").read_bytes() == b"p" * 4 * DEFAULT_WINDOW


@pytest.mark.skipif(writeback._sync_file_range is None, reason="sync_file_range: Linux")
def test_a_failing_writeback_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk's error (EIO) surfaces from the write that waits for it, with its errno."""
    real = writeback._sync_file_range
    assert real is not None

    def failing(fd: int, offset: int, length: int, flags: int) -> int:
        if flags & 4:  # waiting for a window: the disk failed it
            import ctypes

            ctypes.set_errno(errno.EIO)
            return -1
        return real(fd, offset, length, flags)

    monkeypatch.setattr(writeback, "_sync_file_range", failing)
    with open(tmp_path / "f", "wb") as f:
        out = WindowedWriter(f, window=4096)
        out.write(b"z" * 4096)  # the first window is started, not waited for
        with pytest.raises(OSError) as info:
            out.write(b"z" * 4096)
    assert info.value.errno == errno.EIO
    assert "sync_file_range" in str(info.value)


@pytest.mark.skipif(not can_mount(), reason="needs root to mount a small tmpfs")
def test_a_full_disk_fails_the_write(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "256k") as small:
        fill(small)
        with open(small / "dump", "wb") as f:
            out = WindowedWriter(f, window=4096)
            with pytest.raises(OSError) as info:
                out.write(b"a" * 65536)  # larger than the buffer: written at once
            assert info.value.errno == errno.ENOSPC


@pytest.mark.skipif(not can_mount(), reason="needs root to mount a small tmpfs")
def test_read_only_media_refuse_the_file(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "256k") as ro:
        remount(ro, "ro")
        with pytest.raises(OSError) as info:
            open(ro / "dump", "wb")  # noqa: SIM115
        assert info.value.errno == errno.EROFS


@pytest.mark.parametrize(
    ("value", "expected"),
    [(4096, 4096), ("1MiB", 1 << 20), ("256KiB", 262_144), (65536.0, 65536)],
)
def test_window_sizes(value: object, expected: int) -> None:
    assert check_window(value) == expected


@pytest.mark.parametrize("value", [0, 100, 4095, -1, True, None, "lots", [1], "1KiB"])
def test_bad_windows_name_the_field_and_the_value(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        check_window(value)
    assert str(info.value).startswith(f"window: {value!r} is not valid")
    assert "at least 4 KiB" in str(info.value)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file: "):
        WindowedWriter(io.BytesIO().getvalue())  # type: ignore[arg-type]
    with open(tmp_path / "f", "wb") as f:
        with pytest.raises(ConfigError, match="drop: 'yes' is not valid"):
            WindowedWriter(f, drop="yes")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="window: 10 is not valid"):
            WindowedWriter(f, window=10)
