"""The one copy loop (wedguard.io.copy.copy_stream) under adversarial sources and destinations.

Every copying path (guard.copyfileobj, Session.copyfileobj, guard.pipe, GuardedFile.write,
wedguard copy) goes through copy_stream. The generated suite below runs
``GENERATED_CASES`` copies (the figure in docs/reliability.md) through short reads, short
writes, destinations that keep the objects they are given, sources that reuse their
buffers, read-only and readinto-only sources, empty and large inputs, random chunk sizes
and non-blocking writers, and checks each byte: what the destination holds, the count
returned and the session's report.
"""

from __future__ import annotations

import doctest
import errno
import io
import os
import random
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wedguard as wg
import wedguard.io.copy
from page_cache import SyncSpy
from wedguard.io.copy import MAX_IDLE_WRITES, copy_stream, keeps_nothing
from wedguard.io.writeback import WindowedWriter
from wedguard.runtime.session import SlotTimeout
from wedguard.testing import FakeClock, RecordingSink

ROOT = Path(__file__).resolve().parents[1]

# cases per generated test; their sum is the figure docs/reliability.md quotes
CASES = {
    "any_source_any_destination": 3000,
    "keeping_destinations": 2500,
    "short_writes": 2000,
    "non_blocking": 1500,
    "pipe_and_wrapper": 1000,
}
GENERATED_CASES = sum(CASES.values())


def quiet_guard(rate: str = "off", **kw: Any) -> wg.Guard:
    kw.setdefault("calendar", None)
    kw.setdefault("sources", [])
    kw.setdefault("sinks", [])
    kw.setdefault("breaker", None)
    kw.setdefault("clock", FakeClock())
    return wg.Guard(rate=rate, **kw)


def generated(name: str) -> Any:
    return settings(
        max_examples=CASES[name],
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- sources ------------------------------------------------------------------------------


class Source:
    """Reads ``data`` in pieces of at most the scripted sizes (short reads).

    ``kind``: "read" (read only), "readinto" (readinto only), "both", "recycling"
    (read returns one bytearray it overwrites on the next call), "view" (read
    returns a memoryview of a buffer it reuses).
    """

    def __init__(self, data: bytes, pieces: list[int], kind: str) -> None:
        self._data = data
        self._pos = 0
        # at most about 400 reads per copy, so a large input stays quick
        self._pieces = [max(p, len(data) // 400) for p in pieces] or [len(data) or 1]
        self._calls = 0
        self._scratch = bytearray()
        if kind in ("read", "both", "recycling", "view"):
            self.read = self._read
        if kind in ("readinto", "both"):
            self.readinto = self._readinto
        self.kind = kind

    def _take(self, n: int) -> bytes:
        cap = self._pieces[self._calls % len(self._pieces)]
        self._calls += 1
        piece = self._data[self._pos : self._pos + min(n, cap)]
        self._pos += len(piece)
        return piece

    def _read(self, n: int = -1) -> Any:
        piece = self._take(len(self._data) if n < 0 else n)
        if self.kind == "recycling":
            self._scratch[:] = b"\xee" * len(self._scratch)  # the old chunk is garbage now
            self._scratch[:] = piece
            return self._scratch
        if self.kind == "view":
            self._scratch[:] = piece
            return memoryview(self._scratch)
        return piece

    def _readinto(self, buf: Any) -> int:
        piece = self._take(len(buf))
        buf[: len(piece)] = piece
        return len(piece)


# -- destinations -------------------------------------------------------------------------


class Keeper:
    """Keeps every object it is given; takes as many bytes as scripted (short writes).

    What it holds is read only at the end, so a buffer changed after write() returned
    shows up as corrupted bytes. ``returns``: "count" (how many it took), "none"
    (returns nothing: took all).
    """

    def __init__(self, takes: list[int], returns: str = "count") -> None:
        self.kept: list[tuple[Any, int]] = []
        self._takes = takes or [1 << 30]
        self._calls = 0
        self._returns = returns

    def write(self, b: Any) -> int | None:
        size = memoryview(b).nbytes
        if self._returns == "none":
            self.kept.append((b, size))
            return None
        take = self._takes[self._calls % len(self._takes)]
        self._calls += 1
        took = min(size, take)
        self.kept.append((b, took))
        return took

    def close(self) -> None:
        pass

    def value(self) -> bytes:
        return b"".join(bytes(memoryview(b).cast("B")[:took]) for b, took in self.kept)


class NonBlockingRaw(io.RawIOBase):
    """A raw stream in non-blocking mode: it takes scripted amounts and, at the
    scripted call, nothing (write() returns None, as FileIO does on EAGAIN)."""

    def __init__(self, takes: list[int], stall_at: int) -> None:
        self.out = bytearray()
        self._takes = takes or [1 << 30]
        self._calls = 0
        self._stall_at = stall_at

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int | None:  # type: ignore[override]
        call = self._calls
        self._calls += 1
        if call == self._stall_at:
            return None
        took = min(memoryview(b).nbytes, self._takes[call % len(self._takes)])
        self.out += bytes(memoryview(b).cast("B")[:took])
        return took


# -- strategies ---------------------------------------------------------------------------


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """Empty, small, or large (up to 120 KB of random bytes from a drawn seed)."""
    size = draw(
        st.one_of(
            st.just(0),
            st.integers(1, 64),
            st.integers(65, 4096),
            st.integers(4097, 120_000),
        )
    )
    if size <= 64:
        return draw(st.binary(min_size=size, max_size=size))
    return random.Random(draw(st.integers(0, 2**32))).randbytes(size)


@st.composite
def chunk_sizes(draw: st.DrawFn, data: bytes) -> int:
    """A chunk size; at most about 300 chunks per copy, so each case stays quick."""
    low = max(1, len(data) // 300)
    return draw(st.one_of(st.integers(low, low + 64), st.integers(low, max(low, 2 * len(data)))))


def _floor(sizes: list[int], payload: bytes) -> list[int]:
    """Short writes, but at most about 400 per copy (a 0 stays a 0)."""
    return [w and max(w, len(payload) // 400) for w in sizes]


def _script(seed: int, low: int) -> list[int]:
    """Up to 6 read or write sizes from a seed: tiny, page-sized or large, mixed.

    Drawn from one integer, so generating a case costs little next to running it."""
    rng = random.Random(seed)
    return [
        rng.choice((rng.randint(low, 16), rng.randint(low, 4096), rng.randint(low, 70_000)))
        for _ in range(rng.randint(0, 6))
    ]


pieces = st.integers(0, 2**32).map(lambda seed: _script(seed, 1))
takes = st.integers(0, 2**32).map(lambda seed: _script(seed, 0))
rates = st.sampled_from(["off", "100MB/s"])


def copy_in_session(guard: wg.Guard, src: Any, dst: Any, length: int, how: str) -> tuple[int, int]:
    """Copy through one of the public paths; return (count returned, session bytes)."""
    with guard.session("copy") as s:
        if how == "session":
            n = s.copyfileobj(src, dst, length)
        elif how == "joined":
            n = guard.copyfileobj(src, dst, length)
        elif how == "pipe":
            n = guard.pipe(src, dst, chunk_size=length, flush=False)
        else:
            n = copy_stream(s, src, dst, length)
    return n, int(s.report().bytes)


paths = st.sampled_from(["session", "joined", "pipe", "loop"])


# -- the generated suite ------------------------------------------------------------------


@pytest.mark.generated
def test_generated_any_source_any_destination() -> None:
    """Short reads, every kind of source, a destination that copies (BytesIO, where the
    buffer is reused) or one that keeps what it gets: the destination holds the source,
    the count and the report equal its length."""
    cases = corrupted = 0

    @generated("any_source_any_destination")
    @given(
        st.data(),
        payloads(),
        pieces,
        st.sampled_from(["read", "readinto", "both", "recycling", "view", "bytesio"]),
        st.sampled_from(["bytesio", "keeper", "keeper-none"]),
        paths,
        rates,
    )
    def case(
        data: st.DataObject,
        payload: bytes,
        reads: list[int],
        kind: str,
        dst_kind: str,
        how: str,
        rate: str,
    ) -> None:
        nonlocal cases, corrupted
        length = data.draw(chunk_sizes(payload))
        src = io.BytesIO(payload) if kind == "bytesio" else Source(payload, reads, kind)
        dst: Any = (
            io.BytesIO()
            if dst_kind == "bytesio"
            else Keeper([], "none" if dst_kind == "keeper-none" else "count")
        )
        n, reported = copy_in_session(quiet_guard(rate), src, dst, length, how)
        got = dst.getvalue() if dst_kind == "bytesio" else dst.value()
        corrupted += _diff(got, payload)
        assert got == payload
        assert n == reported == len(payload)
        cases += 1  # a case that ran to the end

    case()
    assert (cases, corrupted) == (CASES["any_source_any_destination"], 0)


@pytest.mark.generated
def test_generated_keeping_destinations_never_see_a_buffer_change() -> None:
    """Destinations that keep every object they are given, from sources that reuse
    their buffers (readinto, a recycled bytearray, a view): every kept object still
    holds its chunk after the copy."""
    cases = corrupted = 0

    @generated("keeping_destinations")
    @given(
        st.data(),
        payloads(),
        pieces,
        st.sampled_from(["readinto", "both", "recycling", "view", "bytesio"]),
        paths,
        rates,
    )
    def case(
        data: st.DataObject, payload: bytes, reads: list[int], kind: str, how: str, rate: str
    ) -> None:
        nonlocal cases, corrupted
        length = data.draw(chunk_sizes(payload))
        src = io.BytesIO(payload) if kind == "bytesio" else Source(payload, reads, kind)
        dst = Keeper([])
        n, reported = copy_in_session(quiet_guard(rate), src, dst, length, how)
        for b, _ in dst.kept:  # nothing it keeps may change under it later
            assert isinstance(b, bytes) or memoryview(b).readonly
        corrupted += _diff(dst.value(), payload)
        assert dst.value() == payload
        assert n == reported == len(payload)
        cases += 1  # a case that ran to the end

    case()
    assert (cases, corrupted) == (CASES["keeping_destinations"], 0)


@pytest.mark.generated
def test_generated_short_writes_are_completed() -> None:
    """Writers that take part of each chunk (down to 0 bytes at a time): the loop
    writes the rest, so nothing is lost and nothing is counted twice."""
    cases = corrupted = 0

    @generated("short_writes")
    @given(
        st.data(),
        payloads(),
        pieces,
        takes,
        st.sampled_from(["read", "readinto", "both", "recycling", "bytesio"]),
        paths,
        rates,
    )
    def case(
        data: st.DataObject,
        payload: bytes,
        reads: list[int],
        writes: list[int],
        kind: str,
        how: str,
        rate: str,
    ) -> None:
        nonlocal cases, corrupted
        length = data.draw(chunk_sizes(payload))
        src = io.BytesIO(payload) if kind == "bytesio" else Source(payload, reads, kind)
        # a keeper taking scripted amounts; never 0 forever (at least one take > 0)
        writes = _floor(writes, payload)
        dst = Keeper([max(1, len(payload) // 200 + 1) if not any(writes) else w for w in writes])
        n, reported = copy_in_session(quiet_guard(rate), src, dst, length, how)
        corrupted += _diff(dst.value(), payload)
        assert dst.value() == payload
        assert n == reported == len(payload)
        cases += 1  # a case that ran to the end

    case()
    assert (cases, corrupted) == (CASES["short_writes"], 0)


@pytest.mark.generated
def test_generated_non_blocking_destination_fails_clearly() -> None:
    """A raw destination in non-blocking mode that takes nothing (write() returns None)
    ends the copy with BlockingIOError; its characters_written, the session's report
    and what the destination holds agree, byte for byte."""
    cases = corrupted = 0

    @generated("non_blocking")
    @given(
        st.data(),
        payloads(),
        pieces,
        takes,
        st.integers(0, 40),
        st.sampled_from(["read", "readinto", "both", "bytesio"]),
        paths,
        rates,
    )
    def case(
        data: st.DataObject,
        payload: bytes,
        reads: list[int],
        writes: list[int],
        stall_at: int,
        kind: str,
        how: str,
        rate: str,
    ) -> None:
        nonlocal cases, corrupted
        length = data.draw(chunk_sizes(payload))
        src = io.BytesIO(payload) if kind == "bytesio" else Source(payload, reads, kind)
        dst = NonBlockingRaw(_floor([w or 1 for w in writes], payload), stall_at)
        guard = quiet_guard(rate)
        with guard.session("copy") as s:
            try:
                if how == "pipe":
                    n = guard.pipe(src, dst, chunk_size=length, flush=False)
                else:
                    n = s.copyfileobj(src, dst, length)
            except BlockingIOError as exc:
                failure: BlockingIOError | None = exc
                n = exc.characters_written
            else:
                failure = None
            reported = s.report().bytes
        if failure is not None:
            assert failure.errno == errno.EAGAIN
            assert "non-blocking" in str(failure)
        corrupted += _diff(bytes(dst.out), payload[:n])
        assert bytes(dst.out) == payload[:n]
        assert reported == n
        cases += 1  # a case that ran to the end

    case()
    assert (cases, corrupted) == (CASES["non_blocking"], 0)


@pytest.mark.generated
def test_generated_pipe_and_file_wrapper() -> None:
    """guard.pipe (read what is available, flush each chunk) outside a session, and
    writes through guard.wrap, with short writes: every byte arrives, counted once."""
    cases = corrupted = 0

    @generated("pipe_and_wrapper")
    @given(
        st.data(),
        payloads(),
        pieces,
        takes,
        st.sampled_from(["read", "readinto", "both", "recycling"]),
        st.booleans(),
    )
    def case(
        data: st.DataObject,
        payload: bytes,
        reads: list[int],
        writes: list[int],
        kind: str,
        wrapped: bool,
    ) -> None:
        nonlocal cases, corrupted
        length = data.draw(chunk_sizes(payload))
        sink = RecordingSink()
        guard = quiet_guard(sinks=[sink])
        dst = Keeper(_floor([w or 1 for w in writes], payload))
        src = Source(payload, reads, kind)
        if wrapped:
            with guard.wrap(dst, name="wrapped") as f:
                n = 0
                while chunk := src.read(length) if hasattr(src, "read") else _readinto(src):
                    assert f.write(bytes(chunk)) == len(chunk)
                    n += len(chunk)
        else:
            n = guard.pipe(src, dst, chunk_size=length)
        (report,) = sink.of_kind("session") or [None]
        corrupted += _diff(dst.value(), payload)
        assert dst.value() == payload
        assert n == len(payload)
        if report is not None:  # a wrapper that never wrote opened no session
            assert report.bytes == n
        cases += 1  # a case that ran to the end

    case()
    assert (cases, corrupted) == (CASES["pipe_and_wrapper"], 0)


def _readinto(src: Source) -> bytes:
    buf = bytearray(4096)
    return bytes(buf[: src.readinto(buf)])


def _diff(got: bytes, want: bytes) -> int:
    """Bytes that differ, counting missing or extra bytes as corrupted."""
    if got == want:
        return 0
    return sum(a != b for a, b in zip(got, want, strict=False)) + abs(len(got) - len(want))


# -- the findings, one regression test each -------------------------------------------------


def test_a_destination_that_keeps_its_chunks_gets_each_chunk() -> None:
    """An upload queue that keeps the objects it is given: before, every part it held
    was the last chunk (one buffer reused under it)."""
    data = b"".join(bytes([i]) * 1000 for i in range(10))
    parts: list[Any] = []

    class Queue:
        def write(self, b: Any) -> int:
            parts.append(b)
            return len(b)

    guard = quiet_guard()
    assert guard.copyfileobj(io.BytesIO(data), Queue(), 1000) == len(data)
    assert [bytes(p) for p in parts] == [bytes([i]) * 1000 for i in range(10)]


def test_a_short_writing_raw_file_gets_every_byte(tmp_path: Path) -> None:
    """A raw file object (no buffering) whose write() takes at most 4 KiB at a time:
    before, the rest of each chunk was lost and the full length reported."""
    data = os.urandom(300_000)

    class Trickle(io.RawIOBase):
        def __init__(self, fd: int) -> None:
            self.fd = fd

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:  # type: ignore[override]
            return os.write(self.fd, memoryview(b)[:4096])

    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        sink = RecordingSink()
        guard = quiet_guard(sinks=[sink])
        assert guard.copyfileobj(io.BytesIO(data), Trickle(fd), 64 * 1024) == len(data)
    finally:
        os.close(fd)
    assert path.read_bytes() == data
    assert sink.of_kind("session")[0].bytes == len(data)


def test_a_non_blocking_pipe_fails_clearly_and_counts_what_went_through() -> None:
    """A raw pipe in non-blocking mode takes 64 KiB of a 1 MiB chunk, then nothing:
    before, the copy went on and reported 1 MiB. Now it raises BlockingIOError whose
    characters_written is exactly what the reader gets."""
    data = os.urandom(1 << 20)
    r, w = os.pipe()
    os.set_blocking(w, False)
    sink = RecordingSink()
    guard = quiet_guard(sinks=[sink])
    with open(w, "wb", buffering=0) as dst, pytest.raises(BlockingIOError) as info:
        guard.copyfileobj(io.BytesIO(data), dst, 1 << 20)
    got = bytearray()
    with open(r, "rb") as reader:
        while chunk := reader.read(1 << 16):
            got += chunk
    written = info.value.characters_written
    assert 0 < written < len(data)
    assert bytes(got) == data[:written]
    assert sink.of_kind("session")[0].bytes == written


def test_a_pipe_with_a_slow_reader_gets_every_byte_through_short_writes() -> None:
    """A blocking pipe: the loop keeps writing while a slow reader drains it."""
    data = os.urandom(3 << 20)
    r, w = os.pipe()
    got = bytearray()

    def drain() -> None:
        with open(r, "rb", buffering=0) as reader:
            while chunk := reader.read(10_000):
                got.extend(chunk)

    t = threading.Thread(target=drain)
    t.start()
    with open(w, "wb", buffering=0) as dst:
        assert quiet_guard().pipe(io.BytesIO(data), dst, chunk_size="1MiB") == len(data)
    t.join(10)
    assert bytes(got) == data


def test_pipe_inside_a_session_joins_it_instead_of_taking_a_second_slot() -> None:
    """guard.pipe inside a session with max_concurrent=1: before, it waited for a
    second slot (SlotTimeout here, forever without a timeout)."""
    guard = quiet_guard(max_concurrent=1, slot_timeout=0.5)
    out = io.BytesIO()
    with guard.session("dump") as s:
        assert guard.pipe(io.BytesIO(b"x" * 5000), out) == 5000
        assert guard.copyfileobj(io.BytesIO(b"y" * 10), out) == 10
        assert s.report().bytes == 5010
    assert out.getvalue() == b"x" * 5000 + b"y" * 10
    # it joins only the caller's own session: another thread still needs a slot
    errors: list[BaseException] = []

    def elsewhere() -> None:
        try:
            guard.pipe(io.BytesIO(b"z"), io.BytesIO())
        except SlotTimeout as exc:
            errors.append(exc)

    with guard.session("other"):
        t = threading.Thread(target=elsewhere)
        t.start()
        t.join(10)
    assert len(errors) == 1


async def test_pipe_inside_an_async_session_joins_it() -> None:
    """The task's session (async with) is joined the same way, without a second slot."""
    guard = quiet_guard(max_concurrent=1, slot_timeout=0.5)
    out = io.BytesIO()
    async with guard.session("upload") as s:
        assert guard.pipe(io.BytesIO(b"x" * 3000), out, chunk_size=1000) == 3000
        assert guard.copyfileobj(io.BytesIO(b"y" * 30), out, 7) == 30
        assert s.report().bytes == 3030
    assert out.getvalue() == b"x" * 3000 + b"y" * 30


def test_a_guarded_file_writes_everything_and_counts_it_once() -> None:
    """GuardedFile.write over a raw object that takes 3 bytes at a time: it used to pass
    the short count back (the caller wrote the rest again, counted twice)."""
    dst = Keeper([3])
    sink = RecordingSink()
    guard = quiet_guard(sinks=[sink])
    with guard.wrap(dst) as f:
        assert f.write(b"0123456789") == 10
        assert f.write(bytearray(b"abc")) == 3
        assert f.write(b"") == 0
    assert dst.value() == b"0123456789abc"
    assert sink.of_kind("session")[0].bytes == 13


def test_a_guarded_file_over_a_non_blocking_raw_says_so() -> None:
    """A raw object returning None took nothing: the wrapper used to report the full
    length; now BlockingIOError says how much was taken, and only that is counted."""
    raw = NonBlockingRaw([4], stall_at=2)
    guard = quiet_guard()
    with guard.session("s") as s:
        f = guard.wrap(raw)
        with pytest.raises(BlockingIOError) as info:
            f.write(b"0123456789")
        assert info.value.characters_written == 8
        assert bytes(raw.out) == b"01234567"
        assert s.report().bytes == 8


# -- stops and faults in the middle of a copy ---------------------------------------------


class StopAfter:
    """A destination that stops the guard once it holds ``limit`` bytes, taking at
    most ``take`` bytes per write()."""

    def __init__(self, guard: wg.Guard, limit: int, take: int) -> None:
        self.guard = guard
        self.limit = limit
        self.take = take
        self.out = bytearray()

    def write(self, b: Any) -> int:
        piece = bytes(memoryview(b)[: self.take])
        self.out += piece
        if len(self.out) >= self.limit:
            self.guard.stop("incident")
        return len(piece)


@pytest.mark.parametrize("take", [1000, 333, 1 << 20])
@pytest.mark.parametrize("rate", ["off", "1MB/s"])
def test_emergency_stop_leaves_exactly_what_was_reported(take: int, rate: str) -> None:
    """A stop in the middle of a copy: the chunk in hand is finished, the next is not
    started, and the destination holds exactly the bytes the session reports."""
    data = os.urandom(50_000)
    sink = RecordingSink()
    guard = quiet_guard(rate, sinks=[sink])
    dst = StopAfter(guard, 12_345, take)
    with pytest.raises(wg.EmergencyStop, match="incident"):
        guard.copyfileobj(io.BytesIO(data), dst, 4096)
    (report,) = sink.of_kind("session")
    assert report.outcome == "stopped"
    assert report.bytes == len(dst.out) == 16_384  # whole chunks: 4 of 4096
    assert bytes(dst.out) == data[: len(dst.out)]


def test_emergency_stop_through_a_pipe_in_a_session() -> None:
    data = os.urandom(100_000)
    guard = quiet_guard()
    dst = StopAfter(guard, 30_000, 1000)
    with pytest.raises(wg.EmergencyStop), guard.session("dump") as s:
        guard.pipe(io.BytesIO(data), dst, chunk_size=8192)
    assert s.report().bytes == len(dst.out) == 32_768
    assert bytes(dst.out) == data[: len(dst.out)]


class FullDisk:
    """A destination with room for ``room`` bytes: it takes what fits (a short write),
    then raises ENOSPC, as a full disk does."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.out = bytearray()

    def write(self, b: Any) -> int:
        left = self.room - len(self.out)
        if left <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        piece = bytes(memoryview(b)[:left])
        self.out += piece
        return len(piece)


@pytest.mark.parametrize("room", [0, 1, 4095, 4096, 10_000])
def test_a_full_disk_mid_chunk_is_reported_as_what_was_written(room: int) -> None:
    data = os.urandom(20_000)
    guard = quiet_guard()
    dst = FullDisk(room)
    with guard.session("s") as s:
        with pytest.raises(OSError, match="No space") as info:
            s.copyfileobj(io.BytesIO(data), dst, 4096)
        assert info.value.errno == errno.ENOSPC
        assert s.report().bytes == len(dst.out) == room
    assert bytes(dst.out) == data[:room]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_dev_full_counts_nothing() -> None:
    """A real full device: nothing written, nothing counted."""
    guard = quiet_guard()
    with guard.session("s") as s, open("/dev/full", "wb", buffering=0) as dst:
        with pytest.raises(OSError) as info:
            s.copyfileobj(io.BytesIO(b"x" * 10_000), dst, 4096)
        assert info.value.errno == errno.ENOSPC
        assert s.report().bytes == 0


# -- edges --------------------------------------------------------------------------------


def test_a_non_blocking_source_with_nothing_to_read_is_an_error_not_the_end() -> None:
    """read() returning None used to end the copy as if the source were exhausted."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.write(w, b"first")
    out = io.BytesIO()
    with open(r, "rb", buffering=0) as src, pytest.raises(BlockingIOError) as info:
        quiet_guard().copyfileobj(src, out, 1024)
    os.close(w)
    assert info.value.characters_written == 5
    assert out.getvalue() == b"first"


def test_a_writer_that_takes_nothing_forever_fails_instead_of_spinning() -> None:
    with pytest.raises(OSError, match=f"took nothing {MAX_IDLE_WRITES} times"):
        quiet_guard().copyfileobj(io.BytesIO(b"abc"), Keeper([0]), 10)


@pytest.mark.parametrize("bad", [-1, 11])
def test_a_writer_returning_a_length_it_was_not_given_fails(bad: int) -> None:
    class Liar:
        def write(self, b: Any) -> int:
            return bad

    guard = quiet_guard()
    with guard.session("s") as s:
        with pytest.raises(OSError, match=r"write\(\) returned"):
            s.copyfileobj(io.BytesIO(b"0123456789"), Liar(), 10)
        assert s.report().bytes == 0


def test_writers_returning_nothing_or_true_took_everything() -> None:
    """A plain writer with no return value (tarfile's streams, upload queues) took the
    chunk, as shutil.copyfileobj assumes; True is no count either."""

    class Writer:
        def __init__(self, answer: Any) -> None:
            self.answer = answer
            self.out: list[bytes] = []

        def write(self, b: Any) -> Any:
            self.out.append(bytes(b))
            return self.answer

    for answer in (None, True):
        dst = Writer(answer)
        assert quiet_guard().copyfileobj(io.BytesIO(b"x" * 2500), dst, 1000) == 2500
        assert b"".join(dst.out) == b"x" * 2500


def test_text_streams_and_objects_without_read_or_write_are_config_errors() -> None:
    guard = quiet_guard()
    for src, dst, field in (
        (io.StringIO("x"), io.BytesIO(), "src"),
        (io.BytesIO(b"x"), io.StringIO(), "dst"),
        (object(), io.BytesIO(), "src"),
        (io.BytesIO(b"x"), object(), "dst"),
    ):
        with pytest.raises(wg.ConfigError) as info:
            guard.copyfileobj(src, dst)
        assert info.value.field == field


def test_a_source_returning_more_than_asked_into_the_buffer_fails() -> None:
    class Bad:
        def readinto(self, b: Any) -> int:
            return len(b) + 1

    with pytest.raises(OSError, match=r"readinto\(\) returned"):
        quiet_guard().copyfileobj(Bad(), io.BytesIO(), 10)


def test_only_destinations_that_copy_reuse_the_buffer(tmp_path: Path) -> None:
    with open(tmp_path / "a", "wb") as buffered, open(tmp_path / "b", "wb", buffering=0) as raw:
        assert keeps_nothing(buffered)
        assert keeps_nothing(raw)
    assert keeps_nothing(io.BytesIO())

    class MyBytesIO(io.BytesIO):
        pass

    keeping_raw = io.BufferedWriter(NonBlockingRaw([], -1))
    assert not keeps_nothing(MyBytesIO())  # a subclass may keep what it is given
    assert not keeps_nothing(keeping_raw)  # its raw may keep the views it is handed
    assert not keeps_nothing(Keeper([]))
    with open(tmp_path / "c", "wb") as f:
        assert keeps_nothing(WindowedWriter(f))  # writes through to a file that copies

    class MyFileIO(io.FileIO):  # may keep the views it is handed
        pass

    with io.BufferedWriter(MyFileIO(tmp_path / "d", "wb")) as subclassed:
        assert not keeps_nothing(WindowedWriter(subclassed))
    with pytest.raises(wg.ConfigError, match="a regular file"):
        WindowedWriter(keeping_raw)  # type: ignore[arg-type]


def test_copy_job_writes_each_file_back_while_it_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``CopyJob``'s default: each file written back a window at a time as it is
    copied (not all at its fsync), every byte in place; ``writeback=None``: none."""
    from wedguard.jobs import CopyJob as _CopyJob

    src = tmp_path / "big"
    src.write_bytes(os.urandom(6 << 20))
    spy = SyncSpy(monkeypatch)
    guard = quiet_guard()
    with guard.session("copy") as s:
        _CopyJob(s, guard).copy_file(src, tmp_path / "windowed")
        assert spy.starts[:2] == [(0, 1 << 20), (1 << 20, 1 << 20)]
        assert len(spy.starts) >= 5
        before = len(spy.calls)
        _CopyJob(s, guard, writeback=None).copy_file(src, tmp_path / "plain")
        assert len(spy.calls) == before
        with pytest.raises(wg.ConfigError, match="writeback: 10 is not valid"):
            _CopyJob(s, guard, writeback=10)
    assert (tmp_path / "windowed").read_bytes() == src.read_bytes()
    assert (tmp_path / "plain").read_bytes() == src.read_bytes()


def test_cli_copy_counts_one_operation_per_file_and_every_byte(tmp_path: Path) -> None:
    """wedguard copy goes through the same loop: every byte, one op per file."""
    from wedguard.jobs import CopyJob as _CopyJob

    (tmp_path / "src").mkdir()
    files = {"a": os.urandom(3_000_000), "b": b"", "c": b"tiny"}
    for name, body in files.items():
        (tmp_path / "src" / name).write_bytes(body)
    guard = quiet_guard()
    with guard.session("copy") as s:
        job = _CopyJob(s, guard, chunk=1 << 20)
        for src, dst in job.plan(tmp_path / "src", tmp_path / "dst"):
            job.copy_file(src, dst)
        report = s.report()
    for name, body in files.items():
        assert (tmp_path / "dst" / name).read_bytes() == body
    assert job.bytes == report.bytes == sum(map(len, files.values()))
    assert report.ops == 3


def test_docstring_examples() -> None:
    result = doctest.testmod(wedguard.io.copy, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_the_reliability_page_quotes_this_suite() -> None:
    """docs/reliability.md states the number of generated cases this file runs."""
    text = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    section = text.split("## Copies", 1)[1].split("\n## ", 1)[0]
    figures = {int(m.replace(",", "")) for m in re.findall(r"\b\d{1,3}(?:,\d{3})+\b", section)}
    assert GENERATED_CASES in figures
    assert "0 corrupted" in section
    assert "tests/test_copy_loop.py" in section


def test_the_benchmark_page_quotes_the_copy_results() -> None:
    """benchmarks/README.md shows the copy figures benchmarks/guard.py wrote."""
    import json

    results = json.loads((ROOT / "benchmarks" / "results" / "guard.json").read_text("utf-8"))
    page = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    section = page.split("## Guard (`benchmarks/guard.py`)", 1)[1].split("<!-- section:", 1)[0]
    tables = results["copy"]["tables"]
    assert len(tables) == 3
    for table in tables:
        for row in table["rows"]:
            line = (
                f"| {row['what']} | {row['gib_per_s']:.2f} | {row['vs_shutil'] * 100:.1f} % "
                f"| {row['cpu_vs_shutil'] * 100:.1f} % |"
            )
            assert line in section, line
