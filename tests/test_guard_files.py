"""guard.wrap and guard.copyfileobj with real files: shutil, tarfile, hashlib, uploads."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wedguard as wg
from wedguard.testing import FakeClock, RecordingSink

MB = 1_000_000


def make_guard(clock: FakeClock, **kw: object) -> wg.Guard:
    kw.setdefault("calendar", None)
    kw.setdefault("sources", [])
    kw.setdefault("sinks", [])
    kw.setdefault("breaker", None)
    return wg.Guard(clock=clock, **kw)  # type: ignore[arg-type]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(5):
        (root / f"img{i}.jpg").write_bytes(os.urandom(100_000 + i * 7919))
    (root / "notes.txt").write_text("first dance at 19:30\n" * 50)
    return root


def test_copyfileobj_copies_exactly_at_the_rate(clock: FakeClock, tmp_path: Path) -> None:
    data = os.urandom(3 * MB + 12345)
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    src.write_bytes(data)
    guard = make_guard(clock, rate="1MB/s")
    with src.open("rb") as fsrc, dst.open("wb") as fdst:
        copied = guard.copyfileobj(fsrc, fdst, length=256 * 1024)
    assert copied == len(data)
    assert dst.read_bytes() == data
    # everything beyond the first 0.2 MB burst went at 1 MB/s (the last chunk, which
    # may be debt, is not waited for)
    assert clock.monotonic() == pytest.approx((len(data) - 200_000) / MB, abs=0.27)


def test_copyfileobj_without_readinto_and_into_a_session(clock: FakeClock) -> None:
    class ReadOnly:
        def __init__(self, data: bytes) -> None:
            self._buf = io.BytesIO(data)

        def read(self, n: int = -1) -> bytes:
            return self._buf.read(n)

    guard = make_guard(clock)
    out = io.BytesIO()
    with guard.session("s") as s:
        assert s.copyfileobj(ReadOnly(b"abc" * 1000), out, length=100) == 3000
        assert guard.copyfileobj(io.BytesIO(b"xyz"), out, session=s) == 3
    assert out.getvalue() == b"abc" * 1000 + b"xyz"
    assert s.report().bytes == 3003
    with pytest.raises(wg.ConfigError, match="length"):
        guard.copyfileobj(io.BytesIO(), io.BytesIO(), length=0)
    with guard.session("t") as t:
        for bad in (0, -1, True, 2.5):
            with pytest.raises(wg.ConfigError, match="length"):
                t.copyfileobj(io.BytesIO(b"x"), io.BytesIO(), length=bad)  # type: ignore[arg-type]


def test_wrap_works_with_shutil_copyfileobj(clock: FakeClock, tmp_path: Path) -> None:
    data = os.urandom(2 * MB)
    (tmp_path / "a").write_bytes(data)
    sink = RecordingSink()
    guard = make_guard(clock, rate="1MB/s", sinks=[sink])
    with guard.wrap((tmp_path / "a").open("rb")) as f, (tmp_path / "b").open("wb") as out:
        shutil.copyfileobj(f, out, 64 * 1024)
        assert f.session.report().bytes == len(data)
    assert (tmp_path / "b").read_bytes() == data
    assert clock.monotonic() == pytest.approx((len(data) - 200_000) / MB, abs=0.07)
    (report,) = sink.of_kind("session")
    assert report.to_dict()["bytes"] == len(data)
    assert report.to_dict()["name"].endswith("a")
    assert guard.active_sessions == 0


def test_wrap_write_side_with_tarfile(clock: FakeClock, tree: Path, tmp_path: Path) -> None:
    """A tar archive written through a throttled file object, in both tar modes."""
    guard = make_guard(clock, rate="1MB/s")
    size = sum(p.stat().st_size for p in tree.iterdir())
    for mode in ("w", "w|gz"):
        archive = tmp_path / f"photos.{mode.replace('|', '')}.tar"
        with (
            guard.wrap(archive.open("wb"), name="tar") as f,
            tarfile.open(fileobj=f, mode=mode) as tar,
        ):
            tar.add(tree, arcname="photos")
        with tarfile.open(archive) as tar:
            names = sorted(m.name for m in tar.getmembers() if m.isfile())
            assert names == sorted(f"photos/{p.name}" for p in tree.iterdir())
            for p in tree.iterdir():
                member = tar.extractfile(f"photos/{p.name}")
                assert member is not None
                assert member.read() == p.read_bytes()
    assert clock.monotonic() > size / MB  # the uncompressed pass alone paces this


def test_wrap_read_side_with_tarfile(clock: FakeClock, tree: Path, tmp_path: Path) -> None:
    archive = tmp_path / "photos.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tree, arcname="photos")
    guard = make_guard(clock, rate="10MB/s")
    with guard.wrap(archive.open("rb")) as f, tarfile.open(fileobj=f, mode="r") as tar:
        member = tar.extractfile("photos/notes.txt")
        assert member is not None
        assert member.read() == (tree / "notes.txt").read_bytes()
        assert f.session is not None
        assert f.session.bytes > 0


def test_wrap_in_a_hashlib_loop(clock: FakeClock) -> None:
    data = os.urandom(MB)
    guard = make_guard(clock, rate="1MB/s")
    h = hashlib.sha256()
    with guard.session("hash") as s, guard.wrap(io.BytesIO(data), session=s) as f:
        for chunk in iter(lambda: f.read(64 * 1024), b""):
            h.update(chunk)
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()
    assert s.report().bytes == len(data)
    assert clock.monotonic() == pytest.approx(0.8, abs=0.07)


def test_wrap_like_an_upload_client(clock: FakeClock) -> None:
    """What boto3's upload_fileobj does: seek/tell to size it, then readinto a buffer."""
    data = os.urandom(500_000)
    guard = make_guard(clock, rate="1MB/s")
    f = guard.wrap(io.BytesIO(data), name="s3://bucket/key")
    f.seek(0, io.SEEK_END)
    total = f.tell()
    f.seek(0)
    buf = bytearray(100_000)
    parts = []
    while True:
        k = f.readinto(buf)
        if not k:
            break
        parts.append(bytes(buf[:k]))
    f.close()
    assert total == len(data)
    assert b"".join(parts) == data
    assert f.closed
    assert clock.monotonic() == pytest.approx(0.3)
    assert guard.active_sessions == 0


def test_wrapped_file_passes_everything_else_through(clock: FakeClock, tmp_path: Path) -> None:
    path = tmp_path / "lines.txt"
    path.write_bytes(b"one\ntwo\nthree\n")
    guard = make_guard(clock)
    with guard.wrap(path.open("rb")) as f:
        assert f.name == str(path)
        assert f.readable()
        assert not f.writable()
        assert f.seekable()
        assert isinstance(f.fileno(), int)
        assert f.readline() == b"one\n"
        assert list(f) == [b"two\n", b"three\n"]
        f.seek(0)
        assert f.readlines() == [b"one\n", b"two\n", b"three\n"]
        f.seek(0)
        assert f.read1(3) == b"one"
        assert f.session.bytes == 14  # read again after a seek back: counted once
    assert f.closed
    out = io.BytesIO()
    with guard.wrap(out) as w:
        w.writelines([b"a", b"bc"])
        assert w.write(memoryview(b"def")) == 3
        assert out.getvalue() == b"abcdef"
        assert w.session.ops == 0


def test_stop_leaves_exactly_the_written_chunks(clock: FakeClock) -> None:
    guard = make_guard(clock, rate="off")
    out = io.BytesIO()

    class Src:
        calls = 0

        def read(self, n: int) -> bytes:
            Src.calls += 1
            if Src.calls == 4:
                guard.stop("mid-copy")
            return bytes([Src.calls]) * n

    with pytest.raises(wg.EmergencyStop):
        guard.copyfileobj(Src(), out, length=1000)
    assert out.getvalue() == b"\x01" * 1000 + b"\x02" * 1000 + b"\x03" * 1000


@given(
    st.integers(0, 5),
    st.lists(
        st.tuples(st.one_of(st.none(), st.integers(0, 3000)), st.integers(0, 700)), max_size=12
    ),
)
@settings(max_examples=150, deadline=None)
def test_each_byte_of_a_wrapped_file_is_counted_once(start: int, steps: list) -> None:
    """Reads, seeks back and forth and reads again: the session counts exactly the
    distinct bytes of the file that were read, whatever the order."""
    data = bytes(range(256)) * 8  # 2048 bytes
    guard = make_guard(FakeClock(), rate="off")
    raw = io.BytesIO(data)
    raw.seek(start)
    seen: set[int] = set()
    pos = start
    with guard.wrap(raw) as f:
        for where, size in steps:
            if where is not None:
                pos = f.seek(where)
            chunk = f.read(size)
            assert chunk == data[pos : pos + size]
            seen.update(range(pos, pos + len(chunk)))
            pos += len(chunk)
        counted = f.session.bytes if f.session is not None else 0
    assert counted == len(seen)
